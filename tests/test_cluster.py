"""grade-class --scheduler: a class graded on a real Dask cluster (``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1) gives the local pool's results and loses no student.

The fast tests use the fake grader of conftest.py (the workers' grader processes import it from
tmp_path, as the local pool's do); the slow one grades two notebooks with the real isolated grader
on the cluster and on the local pool.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("distributed")

from conftest import (FAKE_GRADER, UID_COUNT, fake_catalogue, forger_cells, hand_in, leftovers, notebook,  # noqa: E402
                      uid_range, unique_tag)

from autograder import checklist, notebook as notebooks, provenance  # noqa: E402
from autograder.classroom import classrun, cli, cluster, server, store  # noqa: E402
from autograder.exercises import EXERCISES  # noqa: E402

FULL = sum(e.points for e in EXERCISES)
DASK = [str(Path(sys.executable).parent / "dask")]


def _start(args, log: Path, env: dict) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(DASK + args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)       # its own group: killed with its children


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


class Cluster:
    """A scheduler on loopback and the workers a test starts on it."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.file = root / "scheduler.json"
        self.workers = []
        self.env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="True", TF_CPP_MIN_LOG_LEVEL="3")
        self.scheduler = _start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(self.file)], root / "scheduler.log", self.env)
        deadline = time.monotonic() + 60
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]

    def start_workers(self, n: int, env: dict) -> list:
        started = [_start(["worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                           "--no-dashboard", "--local-directory", str(self.root / "workers")],
                          self.root / f"worker-{len(self.workers) + i}.log", dict(self.env, **env))
                   for i in range(n)]
        self.workers += started
        from distributed import Client
        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(sum(p.poll() is None for p in self.workers), timeout=90)
        return started

    def close(self) -> None:
        for proc in self.workers + [self.scheduler]:
            _kill(proc)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    cluster_ = Cluster(tmp_path_factory.mktemp("dask"))
    yield cluster_
    cluster_.close()


@pytest.fixture(scope="module")
def fake_workers(scheduler, tmp_path_factory):
    """Two workers for the fast tests, running the fake grader and a copy of the package, as on
    another machine (their grader hash is the copy's). The killing test is the last to use them."""
    root = tmp_path_factory.mktemp("fake-workers")
    (root / "fakemod").mkdir()
    (root / "fakemod" / "fake_isolated_grader.py").write_text(FAKE_GRADER)
    shutil.copytree(Path(provenance.__file__).parent, root / "installed" / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    log = root / "calls.jsonl"
    workers = scheduler.start_workers(2, {"FAKE_GRADER_LOG": str(log), "PYTHONPATH": os.pathsep.join(
        [str(root / "fakemod"), str(root / "installed")])})
    yield root, log, workers
    for proc in workers:
        _kill(proc)


@pytest.fixture
def fake_class(tmp_path, monkeypatch, scheduler, fake_workers):
    """A course folder, the fake grader here and on the two workers, and the cluster's address."""
    root, log, workers = fake_workers
    log.write_text("")
    monkeypatch.syspath_prepend(str(root / "fakemod"))
    monkeypatch.setenv("FAKE_GRADER_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(root / "fakemod"))          # for the local pool's grader processes
    monkeypatch.setattr(server, "GRADER", "fake_isolated_grader:grade_notebook")
    monkeypatch.setattr(checklist, "collect_checks", fake_catalogue)
    real_hash = provenance.grader_hash
    monkeypatch.setattr(provenance, "grader_hash", lambda package=None: real_hash(root / "installed" / "autograder"))
    course = tmp_path / "course"
    (course / "submitted").mkdir(parents=True)

    class Fake:
        address = scheduler.address
        worker_processes = workers

        @staticmethod
        def calls():
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

        @staticmethod
        def run(**kwargs):
            kwargs.setdefault("progress_stream", io.StringIO())
            return classrun.run(course, **kwargs)

    Fake.root = course
    return Fake


def by_student(rows) -> dict:
    return {r.student: (r.total, r.status, r.scores) for r in rows}


@pytest.mark.slow
def test_a_class_on_the_cluster_gets_the_local_pools_results(fake_class):
    course = fake_class.root
    hand_in(course, "ann")
    hand_in(course, "bob", notebook("ok:manual_batch_norm"), name="batchnorm-Copy1.ipynb")
    hand_in(course, "cat", notebook("ok:build_model_with_bn  SLOW"))
    hand_in(course, "dan", notebook("STUDENT_SIDE"))
    hand_in(course, "eve", raw=b'{"cells": [{"cell_type": "code", "sou')
    (course / "submitted" / "fay" / "batchnorm").mkdir(parents=True)
    local = fake_class.run(jobs=2)

    on_cluster = fake_class.run(scheduler=fake_class.address, force=True)
    assert by_student(on_cluster.rows) == by_student(local.rows)
    assert on_cluster.graded == 5 and not on_cluster.grader_errors
    assert {r.student: r.message for r in on_cluster.rows} == {r.student: r.message for r in local.rows}
    remote = [c for c in fake_class.calls() if any("autograder-dask-" in h for h in c["hide"])]
    assert len(remote) == 4                                # eve is read, and refused, on a worker
    assert all(c["given"] == "Notebook" and sorted(c["settings"]) == ["allow_unsandboxed", "cache_dir", "limits", "memo", "training_budget"]
               for c in remote)
    assert not list(course.rglob("*.tmp"))


def test_an_oversize_notebook_is_the_students_error_and_is_never_sent(fake_class, monkeypatch):
    course = fake_class.root
    hand_in(course, "ann")
    hand_in(course, "big", notebook("ok:all", outputs=["x" * 1000] * 20))
    monkeypatch.setattr(notebooks, "MAX_NOTEBOOK_BYTES", 10_000)       # here only: the workers keep 100 MB
    outcome = fake_class.run(scheduler=fake_class.address)
    rows = {r.student: r for r in outcome.rows}
    assert rows["ann"].total == FULL
    assert rows["big"].status == "error" and not rows["big"].grader_fault and "MB that is read" in rows["big"].message
    assert len(fake_class.calls()) == 1


@pytest.mark.slow
def test_the_cluster_run_resumes_and_regrades_what_changed(fake_class):
    course = fake_class.root
    for student in ("ann", "bob", "cat"):
        hand_in(course, student)
    assert fake_class.run(scheduler=fake_class.address).graded == 3
    again = fake_class.run(scheduler=fake_class.address)
    assert again.graded == 0 and again.resumed == 3 and len(fake_class.calls()) == 3
    hand_in(course, "bob", notebook("ok:build_modern_cnn  # changed"))
    assert fake_class.run(scheduler=fake_class.address).graded == 1
    assert "changed" in fake_class.calls()[-1]["code"]


@pytest.mark.slow
def test_a_crash_or_timeout_on_a_worker_is_an_error_row_and_the_worker_goes_on(fake_class):
    course = fake_class.root
    hand_in(course, "ann")
    hand_in(course, "crash", notebook("CRASH"))
    hand_in(course, "hang", notebook("HANG"))
    hand_in(course, "zed")
    outcome = fake_class.run(scheduler=fake_class.address, timeout=1)
    rows = {r.student: r for r in outcome.rows}
    assert rows["ann"].total == rows["zed"].total == FULL
    assert rows["crash"].status == "error" and "crashed" in rows["crash"].message
    assert rows["hang"].status == "error" and "longer than 1 s" in rows["hang"].message
    assert outcome.grader_errors == ["crash", "hang"]
    assert all(p.poll() is None for p in fake_class.worker_processes)


@pytest.mark.slow
def test_killing_a_worker_mid_class_loses_no_student(fake_class):
    course = fake_class.root
    students = [f"s{i:02d}" for i in range(8)]
    for student in students:
        hand_in(course, student, notebook(f"ok:all SLOW # {student}"))
    killed = []

    def kill_one_worker(row):
        if not killed:
            killed.append(fake_class.worker_processes[0])
            _kill(fake_class.worker_processes[0])

    outcome = fake_class.run(scheduler=fake_class.address, on_row=kill_one_worker)
    assert killed
    assert sorted(r.student for r in outcome.rows) == students
    for row in outcome.rows:       # the lost tasks were graded on the other worker, or are error rows
        assert row.total == FULL or (row.status == "error" and row.student in outcome.grader_errors)
    for student in students:
        assert store.result_path(course, student).is_file()


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2.0)
    hand_in(tmp_path, "ann")
    code = cli.main(["batchnorm", "--course-dir", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err


@pytest.mark.slow
def test_real_grading_on_the_cluster_matches_the_local_pool(tmp_path, monkeypatch):
    """Two real notebooks and a forger (issue 21: it kills its worker, forges "crashed" answers and
    leaves processes behind): the same results on the cluster and the local pool, and nothing of the
    forger's left on either."""
    from autograder import settings
    from autograder import synthetic_students as students
    from autograder.notebook import released_notebook
    if released_notebook() is None:
        pytest.skip("release/batchnorm/batchnorm.ipynb is not there yet")
    course = tmp_path / "course"
    for name in ("full_marks", "bn_ddof1"):
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / name / "batchnorm" / "batchnorm.ipynb")
    first_uid, tag, scratch = uid_range(), unique_tag(), tmp_path / "tmp"
    scratch.mkdir()
    forger = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in forger_cells(tag)])
    hand_in(course, "forger", forger)
    monkeypatch.setenv("BN_AUTOGRADER_UID_FIRST", str(first_uid))
    monkeypatch.setenv("BN_AUTOGRADER_UID_COUNT", str(UID_COUNT))
    monkeypatch.setenv("TMPDIR", str(scratch))           # the local pool's grader processes and the Dask workers
    found = settings.from_environ()
    cluster_ = Cluster(tmp_path / "dask")            # a cluster of its own: no fake workers on it
    try:
        cluster_.start_workers(2, {"TMPDIR": str(scratch)})
        on_cluster = classrun.run(course, scheduler=cluster_.address, settings=found, progress_stream=io.StringIO())
        assert not leftovers(first_uid, tag, scratch)
    finally:
        cluster_.close()
    local = classrun.run(course, jobs=2, force=True, settings=found, progress_stream=io.StringIO())
    assert not leftovers(first_uid, tag, scratch)
    assert by_student(on_cluster.rows) == by_student(local.rows)
    assert by_student(local.rows)["full_marks"][:2] == (FULL, "graded")
    total, status, scores = by_student(local.rows)["forger"]
    assert status == "graded" and scores["manual_batch_norm"] == 3.0, by_student(local.rows)["forger"]
