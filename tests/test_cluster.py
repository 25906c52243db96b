"""grade-class --scheduler: a class graded on a real Dask cluster (``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1) gives the local pool's results and loses no student.

The fast tests use the fake grader of conftest.py (the workers' grader processes import it from
tmp_path, as the local pool's do; the cluster and its fixtures are in conftest.py); the slow one
grades two notebooks with the real isolated grader on the cluster and on the local pool. The tests
that the local pool shares (resume, crashes and time-outs) are in test_grade_class.py,
parametrized over the backend.
"""

import io
import tempfile
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("distributed")

from autograder import notebook as notebooks
from autograder.classroom import classrun, cli, cluster, store
from autograder.exercises import EXERCISES

from conftest import (
    UID_COUNT,
    Cluster,
    forger_cells,
    hand_in,
    kill_group,
    leftovers,
    notebook,
    uid_range,
    unique_digits,
    worker_origin,
)

FULL = sum(e.points for e in EXERCISES)


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
    settings = ["allow_unsandboxed", "cache_dir", "limits", "memo", "training_budget"]
    assert all(c["given"] == "Notebook" and sorted(c["settings"]) == settings
               for c in remote)
    assert not list(course.rglob("*.tmp"))


def test_an_oversize_notebook_is_refused_as_the_students_error_before_sending(fake_class, monkeypatch):
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
def test_killing_a_worker_mid_class_loses_no_student(fake_class):
    course = fake_class.root
    students = [f"s{i:02d}" for i in range(8)]
    for student in students:
        hand_in(course, student, notebook(f"ok:all SLOW # {student} of {course}"))
    killed = []

    def kill_one_worker(row):
        if not killed:
            killed.append(fake_class.worker_processes[0])
            kill_group(fake_class.worker_processes[0])

    outcome = fake_class.run(scheduler=fake_class.address, on_row=kill_one_worker)
    assert killed
    assert sorted(r.student for r in outcome.rows) == students
    for row in outcome.rows:       # the lost tasks were graded on the other worker, or are error rows
        assert row.total == FULL or (row.status == "error" and row.student in outcome.grader_errors)
    for student in students:
        assert store.result_path(course, student).is_file()
    # the killed worker's task folder was in its own Dask folder (which Dask removes), not the system's
    assert not [path for path in Path(tempfile.gettempdir()).glob("autograder-dask-*/*.ipynb") if _of(course, path)]


def _of(course, path) -> bool:
    """Whether the notebook at ``path`` is one of ``course``'s (False once another process removed it)."""
    try:
        return str(course) in path.read_text(errors="replace")
    except OSError:
        return False


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
    first_uid, tag, scratch = uid_range(), unique_digits(), tmp_path / "tmp"
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
        assert store.read_result(course, "full_marks").timings.get(worker_origin()) == 1   # a Dask worker's zygote
    finally:
        cluster_.close()
    local = classrun.run(course, jobs=2, force=True, settings=found, progress_stream=io.StringIO())
    assert not leftovers(first_uid, tag, scratch)
    assert by_student(on_cluster.rows) == by_student(local.rows)
    assert by_student(local.rows)["full_marks"][:2] == (FULL, "graded")
    total, status, scores = by_student(local.rows)["forger"]
    assert status == "graded" and scores["manual_batch_norm"] == 3.0, by_student(local.rows)["forger"]
