"""grade-class: discovery, zips, old formats, resume, atomic writes, crashes, CSV, feedback.

Resume and crashes are tested on both backends, the local pool and a Dask cluster (``backend``).

The fast tests swap the grader for a fake (``server.GRADER`` points each grader process at a
module written into tmp_path: conftest.FAKE_GRADER), so they run the real grader processes, pool and
writers in seconds. The slow test grades synthetic students with the real isolated grader.
"""

import csv
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import markupsafe
import nbformat
import pytest

from autograder import check_catalogue, feedback, provenance
from autograder.atomic import write_atomic
from autograder.classroom import classrun, cli, collect, grades, pool, server, store
from autograder.classroom import written as written_module
from autograder.classroom.written import GradebookReading, Marked, WrittenGrade, WrittenScores
from autograder.errors import GRADER_SIDE_PREFIX, ArchiveUnusable, Side
from autograder.exercises import BY_ID, EXERCISE_IDS, EXERCISES, MANUAL_POINTS, WRITTEN_ANSWERS, WRITTEN_IDS
from autograder.results import CheckResult, Result, format_points
from autograder.settings import Settings

import fake_grader
from conftest import FAKE_GRADER, deep_folder_with_little_stack, fake_catalogue, hand_in, notebook, worker_origin

FULL = sum(e.points for e in EXERCISES)          # a full-marks total
pts = format_points                               # points as the CSV and the table write them


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A course folder and a fake grader; ``fake.calls()`` lists what the grader was asked to grade."""
    graded_calls = fake_grader.install(tmp_path, monkeypatch, FAKE_GRADER, "fake_isolated_grader", fake_catalogue)
    course = tmp_path / "course"
    (course / "submitted").mkdir(parents=True)

    class Fake:
        root = course

        calls = staticmethod(graded_calls)

        @staticmethod
        def run(**kwargs):
            kwargs.setdefault("jobs", 2)
            kwargs.setdefault("progress_stream", io.StringIO())
            return classrun.run(course, **kwargs)

    return Fake


@pytest.fixture(params=["pool", "cluster"])
def backend(request):
    """The fake grader's class graded by the local pool (``fake``, --jobs 2) or on a Dask cluster
    (conftest's ``fake_class``, --scheduler; skipped where distributed is not installed): ``name``,
    ``root``, ``calls()``, ``run(**kwargs)`` and ``goes_on()`` (whether every Dask worker still runs)."""
    if request.param == "pool":
        fake = request.getfixturevalue("fake")
        return SimpleNamespace(name="pool", root=fake.root, calls=fake.calls, run=fake.run, goes_on=lambda: True)
    on_cluster = request.getfixturevalue("fake_class")
    return SimpleNamespace(name="cluster", root=on_cluster.root, calls=on_cluster.calls,
                           run=lambda **kwargs: on_cluster.run(scheduler=on_cluster.address, **kwargs),
                           goes_on=lambda: all(p.poll() is None for p in on_cluster.worker_processes))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def temp_files(root):
    return [p for p in Path(root).rglob("*.tmp")]


def feedback_page(course, student):
    return (store.folder(course, student) / store.FEEDBACK_NAME).read_text()


# --- discovery -------------------------------------------------------------------------------------

def test_choose_notebook_explains_its_choice(tmp_path):
    folder = tmp_path / "submitted" / "ann" / "batchnorm"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hi")
    chosen, notes, error = collect.choose_notebook(folder)
    assert chosen is None and "no notebook" in error and "notes.txt" in error

    nbformat.write(notebook(), str(folder / "batchnorm-Copy1.ipynb"))
    chosen, notes, error = collect.choose_notebook(folder)
    assert chosen.name == "batchnorm-Copy1.ipynb" and error is None
    assert "batchnorm-Copy1.ipynb" in notes[0] and "not named batchnorm.ipynb" in notes[0]

    older = folder / "batchnorm-Copy2.ipynb"
    nbformat.write(notebook(), str(older))
    os.utime(older, (1_000_000, 1_000_000))
    chosen, notes, _ = collect.choose_notebook(folder)
    assert chosen.name == "batchnorm-Copy1.ipynb"
    assert "newest" in notes[0] and "batchnorm-Copy2.ipynb" in notes[0]

    nbformat.write(notebook(), str(folder / "batchnorm.ipynb"))
    os.utime(folder / "batchnorm.ipynb", (1_000_000, 1_000_000))
    chosen, notes, _ = collect.choose_notebook(folder)
    assert chosen.name == "batchnorm.ipynb"
    assert "3 notebooks" in notes[0] and "graded batchnorm.ipynb" in notes[0]

    (folder / ".ipynb_checkpoints").mkdir()
    nbformat.write(notebook(), str(folder / ".ipynb_checkpoints" / "batchnorm-checkpoint.ipynb"))
    assert "checkpoint" not in collect.choose_notebook(folder)[1][0]


def test_notebook_in_a_subfolder_is_found(tmp_path):
    folder = tmp_path / "submitted" / "ann" / "batchnorm"
    (folder / "work").mkdir(parents=True)
    nbformat.write(notebook(), str(folder / "work" / "batchnorm.ipynb"))
    chosen, notes, error = collect.choose_notebook(folder)
    assert chosen == folder / "work" / "batchnorm.ipynb" and error is None and "subfolder" in notes[0]


def test_discover_rows_for_every_student_folder(tmp_path):
    course = tmp_path
    hand_in(course, "ann")
    (course / "submitted" / "bob" / "batchnorm").mkdir(parents=True)
    (course / "submitted" / "cat" / "other_assignment").mkdir(parents=True)
    found = {s.student: s for s in collect.discover(course)}
    assert set(found) == {"ann", "bob"}
    assert found["ann"].notebook.name == "batchnorm.ipynb" and found["ann"].error is None
    assert found["bob"].notebook is None and "no notebook" in found["bob"].error


# --- a class through the pool ----------------------------------------------------------------------

def test_a_class_run_writes_its_files(fake):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "bob", notebook("ok:manual_batch_norm"), name="batchnorm-Copy1.ipynb")
    hand_in(course, "cat", notebook("ok:build_model_with_bn"))
    hand_in(course, "cat", notebook("ok:all"), name="scratch.ipynb")
    (course / "submitted" / "dan" / "batchnorm").mkdir(parents=True)           # nothing handed in
    hand_in(course, "eve", raw=b'{"cells": [{"cell_type": "code", "sou')      # truncated JSON

    outcome = fake.run()

    rows = {r["student"]: r for r in read_csv(course / "grades.csv")}
    with open(course / "grades.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["student", *EXERCISE_IDS, *WRITTEN_IDS, "auto", "auto_max", "manual", "manual_max", "total",
                      "max_total", "status", "error_side", "message"]
    assert list(rows) == ["ann", "bob", "cat", "dan", "eve"]
    manual, model = pts(BY_ID["manual_batch_norm"].points), pts(BY_ID["build_model_with_bn"].points)
    assert rows["ann"]["auto"] == pts(FULL) and rows["ann"]["message"] == ""
    assert rows["ann"]["status"] == "manual_pending" and rows["ann"]["manual"] == rows["ann"]["total"] == ""
    assert rows["bob"]["manual_batch_norm"] == manual and rows["bob"]["auto"] == manual
    assert "batchnorm-Copy1.ipynb" in rows["bob"]["message"]
    assert rows["cat"]["build_model_with_bn"] == model and rows["cat"]["auto"] == model
    assert "graded batchnorm.ipynb" in rows["cat"]["message"] and "scratch.ipynb" in rows["cat"]["message"]
    for student in ("dan", "eve"):
        assert rows[student]["status"] == "error" and rows[student]["auto"] == "0"
        assert rows[student]["auto_max"] == pts(FULL) and rows[student]["total"] == ""
    assert "no notebook" in rows["dan"]["message"]
    assert "not valid JSON" in rows["eve"]["message"]

    calls = fake.calls()
    assert len(calls) == 3                             # dan and eve never reach the grader
    for call in calls:                                 # read once, by the grader process, and hidden
        # the pool always sends the settings: each grader process's share of the cores is in its limits
        settings = ["allow_unsandboxed", "cache_dir", "limits", "memo", "training_budget"]
        assert call["given"] == "Notebook" and sorted(call["settings"]) == settings
        assert call["hide"][0] == str(course.resolve()) and Path(call["hide"][1]).parent.parent.name == "submitted"
    for student in rows:
        stored = store.read_result(course, student)
        # no gradebook in this course: every graded row waits for a person to grade the written answers
        assert {"graded": "manual_pending"}.get(stored.status.value, stored.status.value) == rows[student]["status"]
        assert stored.exercise_scores()["manual_batch_norm"] == float(rows[student]["manual_batch_norm"])
        page = feedback_page(course, student)
        assert "Batch normalization in NumPy" in page
    assert outcome.graded == 4 and outcome.resumed == 0 and not outcome.write_failures   # eve: read in a worker
    assert not temp_files(course)


@pytest.mark.slow
def test_resume_regrades_only_what_changed(backend, monkeypatch):
    course = backend.root
    for student in ("ann", "bob", "cat"):
        hand_in(course, student)
    assert backend.run().graded == 3
    assert len(backend.calls()) == 3

    again = backend.run()
    assert again.graded == 0 and again.resumed == 3 and len(backend.calls()) == 3
    assert [r.total for r in again.rows] == [FULL, FULL, FULL]

    hand_in(course, "bob", notebook("ok:build_modern_cnn  # changed"))
    third = backend.run()
    assert third.graded == 1 and len(backend.calls()) == 4
    assert "changed" in backend.calls()[-1]["code"]
    assert {r["student"]: r["auto"] for r in read_csv(course / "grades.csv")}["bob"] == \
        pts(BY_ID["build_modern_cnn"].points)
    if backend.name == "cluster":
        return      # its workers report their own grader's hash: a changed one here is not a regrade there

    monkeypatch.setattr(provenance, "grader_hash", lambda package=None: "checks-changed")
    assert backend.run().graded == 3 and len(backend.calls()) == 7

    assert backend.run(force=True).graded == 3 and len(backend.calls()) == 10


@pytest.mark.slow
def test_an_unreadable_gradebook_on_a_rerun_keeps_the_feedback_pages_and_is_said(fake, monkeypatch, capsys):
    course = fake.root
    hand_in(course, "ann")
    graded = GradebookReading(MappingProxyType({"ann": written(**{w.id: 2.0 for w in WRITTEN_ANSWERS})}))
    monkeypatch.setattr(written_module, "read_gradebook", lambda course, students=None: graded)
    fake.run()
    assert "not graded yet" not in feedback_page(course, "ann")
    locked = GradebookReading(problem="the nbgrader gradebook could not be read (database is locked)", unreadable=True)
    monkeypatch.setattr(written_module, "read_gradebook", lambda course, students=None: locked)
    again = fake.run()
    assert again.resumed == 1 and again.gradebook_problem == locked.problem
    assert "not graded yet" not in feedback_page(course, "ann")                 # the page a person's grades made
    assert fake.run(force=True).graded == 1 and "not graded yet" not in feedback_page(course, "ann")   # regraded
    assert {r["student"]: r["total"] for r in read_csv(course / "grades.csv")} == {"ann": ""}   # none made up
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "1"]) == 0
    assert "written answers: the nbgrader gradebook could not be read" in capsys.readouterr().err


@pytest.mark.slow
def test_a_crash_a_time_out_or_a_grader_bug_is_an_error_row_tried_again(backend):
    course = backend.root
    hand_in(course, "ann")
    hand_in(course, "crash", notebook("CRASH"))
    hand_in(course, "hang", notebook("HANG"))
    hand_in(course, "bug", notebook("RAISE"))
    hand_in(course, "zed")
    outcome = backend.run(timeout=1)
    rows = {r.student: r for r in outcome.rows}
    assert rows["ann"].total == rows["zed"].total == FULL, rows
    assert rows["crash"].status == "error" and "crashed" in rows["crash"].message
    assert "exit code 7" in rows["crash"].message
    assert rows["hang"].status == "error" and "longer than 1 s" in rows["hang"].message
    assert rows["bug"].status == "error" and "a bug in the grader" in rows["bug"].message
    assert outcome.grader_errors == ["bug", "crash", "hang"]
    assert backend.goes_on()        # on the cluster: every worker is still there
    # errors of the grader (not of the notebook) are tried again on the next run
    before = len(backend.calls())
    backend.run(timeout=1)
    assert sorted(c["code"] for c in backend.calls()[before:]) == ["CRASH", "HANG", "RAISE"]


@pytest.mark.slow
def test_only_grader_side_errors_are_graded_again(fake):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "gus", notebook("GRADER_SIDE"))
    hand_in(course, "sam", notebook("STUDENT_SIDE"))
    outcome = fake.run()
    rows = {r.student: r for r in outcome.rows}
    assert rows["gus"].status == rows["sam"].status == "error"
    assert rows["gus"].grader_fault and not rows["sam"].grader_fault
    assert outcome.grader_errors == ["gus"]
    assert store.read_result(course, "gus").error_side is Side.GRADER
    assert store.read_result(course, "sam").error_side is Side.STUDENT
    before = len(fake.calls())
    again = fake.run()
    assert [c["code"] for c in fake.calls()[before:]] == ["GRADER_SIDE"]
    assert again.resumed == 2 and again.grader_errors == ["gus"]


@pytest.mark.slow
def test_the_exit_message_says_how_to_grade_the_students_not_graded(fake, capsys):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "gus", notebook("GRADER_SIDE"))
    hand_in(course, "hal", notebook("CRASH"))
    hand_in(course, "sam", notebook("STUDENT_SIDE"))
    argv = ["batchnorm", "--course-dir", str(course), "--jobs", "1"]
    assert cli.main(argv) == cli.EXIT_NOT_GRADED != 0
    err = capsys.readouterr().err.split("NOT GRADED")[-1]
    assert "grader's side" in err and "gus, hal" in err and "sam" not in err
    assert f"python -m autograder grade-class batchnorm --course-dir {course} --jobs 1" in err

    hand_in(course, "gus")                                 # the cause is fixed: graded this time
    hand_in(course, "hal")
    assert cli.main(argv) == 0
    rows = {r["student"]: r for r in read_csv(course / "grades.csv")}
    assert rows["gus"]["auto"] == rows["hal"]["auto"] == pts(FULL)


def test_the_command_line_gives_the_grader_processes_its_settings(fake, monkeypatch):
    course = fake.root
    hand_in(course, "ann")
    monkeypatch.setenv("BN_AUTOGRADER_CELL_SECONDS", "7")
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "1", "--cache-dir", str(course / "c")]) == 0
    (call,) = fake.calls()
    assert sorted(call["settings"]) == ["allow_unsandboxed", "cache_dir", "limits", "memo", "training_budget"]
    assert call["settings"]["cache_dir"] == str(course / "c") and call["settings"]["limits"]["cell_seconds"] == 7.0
    assert call["settings"]["allow_unsandboxed"] is False


@pytest.mark.slow
def test_a_grader_that_cannot_load_or_start_gives_error_rows(fake, monkeypatch):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "bob")
    monkeypatch.setattr(server, "GRADER", "no_such_grader_module:grade_notebook")
    rows = fake.run().rows
    assert [r.status for r in rows] == ["error", "error"] and all(r.grader_fault for r in rows)
    assert "could not be loaded" in rows[0].message and "no_such_grader_module" in rows[0].message

    dying = Path(os.environ["FAKE_GRADER_LOG"]).parent / "fakemod" / "dies_on_import.py"
    dying.write_text("import os\nos._exit(5)\n")
    monkeypatch.setattr(server, "GRADER", "dies_on_import:grade_notebook")
    rows = fake.run().rows
    assert [r.status for r in rows] == ["error", "error"]
    assert all("no grader process could be started" in r.message for r in rows)
    assert fake.calls() == []


def test_a_grader_process_that_answers_garbage_is_a_grader_side_error(fake, monkeypatch):
    course = fake.root
    hand_in(course, "ann")
    garbage = Path(os.environ["FAKE_GRADER_LOG"]).parent / "fakemod" / "garbage_grader.py"
    # fd 3: the server's private reply channel (os.dup(1), the first free descriptor, at its start)
    garbage.write_text("import os\n\ndef grade_notebook(source, settings=None, **kwargs):\n"
                       "    os.write(3, b'{not a result}\\n')\n    os._exit(0)\n")
    monkeypatch.setattr(server, "GRADER", "garbage_grader:grade_notebook")
    (row,) = fake.run().rows
    assert row.grader_fault and "not a result" in row.message


@pytest.mark.slow
def test_grader_processes_serve_several_submissions_then_are_recycled(fake):
    course = fake.root
    for i in range(5):
        hand_in(course, f"s{i}")
    fake.run(jobs=1, max_tasks_per_worker=2)
    pids = [call["pid"] for call in fake.calls()]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


@pytest.mark.parametrize("verb", ["grade-class", "report", "similarity"])
def test_another_assignment_is_a_usage_error(verb, tmp_path, capsys):
    from autograder.__main__ import main
    (tmp_path / "submitted").mkdir()
    (tmp_path / store.OUTPUT_DIR).mkdir()
    assert main([verb, "nosuch", "--course-dir", str(tmp_path)]) == 2
    assert f"{verb}: unknown assignment 'nosuch'; this course has 'batchnorm'" in capsys.readouterr().err


@pytest.mark.slow
def test_exit_codes(fake, monkeypatch, capsys):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "eve", raw=b"\x00\x01 not a notebook")
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "eve" in out and "error" in out and f"{pts(FULL)}/{pts(FULL)}" in out
    assert cli.main(["nosuch", "--course-dir", str(course)]) == 2
    assert cli.main(["batchnorm", "--course-dir", str(course / "missing")]) == 2
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "0"]) == 2
    assert cli.main(["batchnorm", "--bogus-option"]) == 2
    empty = course.parent / "empty"
    empty.mkdir()
    assert cli.main(["batchnorm", "--course-dir", str(empty)]) == 2

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store, "write_atomic", refuse)
    assert cli.main(["batchnorm", "--course-dir", str(course), "--force"]) == 1


@pytest.mark.slow
def test_interrupted_run_keeps_what_finished(fake):
    course = fake.root
    for student in ("ann", "bob", "cat", "dan"):
        hand_in(course, student)
    seen = []

    def stop_after_first(row):
        seen.append(row.student)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake.run(jobs=1, on_row=stop_after_first)
    finished = [s for s in ("ann", "bob", "cat", "dan") if store.result_path(course, s).exists()]
    assert finished == seen == ["ann"]
    store.read_result(course, "ann")
    assert [r["student"] for r in read_csv(course / "grades.csv")] == ["ann"]
    assert not temp_files(course)

    calls = len(fake.calls())
    outcome = fake.run()
    assert outcome.resumed == 1 and outcome.graded == 3 and len(fake.calls()) == calls + 3


def test_atomic_writes_leave_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "out" / "grades.csv"
    write_atomic("old\n", target)

    real_fdopen = os.fdopen

    def failing_fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        original_write = f.write

        def write(text):
            original_write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")
        f.write = write
        return f

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    with pytest.raises(OSError):
        write_atomic("new contents\n" * 100, target)
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["grades.csv"]


# --- what students hand in -------------------------------------------------------------------------

@pytest.mark.slow
def test_nbformat_v3_is_converted_before_grading(fake):
    course = fake.root
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "batchnorm"},
          "worksheets": [{"metadata": {}, "cells": [
              {"cell_type": "markdown", "metadata": {}, "source": "# old"},
              {"cell_type": "code", "metadata": {}, "collapsed": False, "language": "python",
               "input": "ok:manual_batch_norm  # from 2014", "prompt_number": 3,
               "outputs": [{"output_type": "stream", "stream": "stdout", "text": "hello\n"}]}]}]}
    path = course / "submitted" / "old" / "batchnorm" / "batchnorm.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(v3))
    row = fake.run().rows[0]
    assert row.status == "graded" and row.scores["manual_batch_norm"] == BY_ID["manual_batch_norm"].points
    assert "converted from nbformat v3" in row.message
    (call,) = fake.calls()
    assert call["version"] == 3 and call["v4"] and call["outputs"] == 0 and "from 2014" in call["code"]
    assert path.read_text() == json.dumps(v3)               # the submission itself is untouched


@pytest.mark.slow
def test_huge_outputs_are_stripped(fake):
    course = fake.root
    hand_in(course, "loud", notebook("ok:all", outputs=["x" * 1000 + "\n"] * 8000))   # ~8 MB of output
    row = fake.run().rows[0]
    assert row.total == FULL and "outputs removed" in row.message
    (call,) = fake.calls()
    assert call["outputs"] == 0


def test_a_file_that_is_not_a_notebook_is_refused_as_the_students_error(tmp_path, monkeypatch):
    monkeypatch.setattr(check_catalogue, "collect_checks", fake_catalogue)

    def grader(*args, **kwargs):
        raise AssertionError("the grader was called")
    cases = {b"": "empty", b"\xff\xfe\x00garbage": "not UTF-8", b"[1, 2]": "not a Jupyter notebook",
             b'{"cells": [': "not valid JSON"}
    for raw, reason in cases.items():
        path = tmp_path / "in.ipynb"
        path.write_bytes(raw)
        result = server.grade_task(server.Task("eve", str(path)), grader, None, {})
        assert result.error_side is Side.STUDENT and not result.grader_fault and reason in result.error
        assert result.total == 0 and result.max_total == FULL


# --- LMS zip downloads -----------------------------------------------------------------------------

def _zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder", date_time=(2024, 3, 1, 0, 0, 0))
            info.filename = name             # as hostile as given: ZipInfo() would clean it up
            z.writestr(info, data)
    return path


@pytest.mark.slow
def test_zip_collect_layout(fake):
    course = fake.root
    archive = course / "downloaded" / "batchnorm" / "archive"

    def nb(code):
        return nbformat.writes(notebook(code))

    # one LMS download holding everybody, named the way nbgrader's documented regexp expects
    _zip(archive / "all_submissions.zip", {
        "batchnorm_alice_attempt_2024-03-01-10-00-00_batchnorm.ipynb": nb("ok:build_modern_cnn # old"),
        "batchnorm_alice_attempt_2024-03-02-10-00-00_batchnorm.ipynb": nb("ok:all # newest"),
        "nested/batchnorm_bob_attempt_2024-03-01-09-00-00_batchnorm.ipynb": nb("ok:manual_batch_norm"),
        "../../../evil_x_attempt_1_batchnorm.ipynb": nb("ok:all"),
        "/abs/batchnorm_mallory_attempt_1_batchnorm.ipynb": nb("ok:all"),
        "__MACOSX/._junk.ipynb": "junk",
    })
    # one zip per student, named after the student; a zip inside it
    _zip(archive / "carol.zip", {"work/batchnorm-Copy1.ipynb": nb("ok:build_model_with_bn")})
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("batchnorm.ipynb", nb("ok:training_improvement"))
    _zip(archive / "dave.zip", {"inner.zip": inner.getvalue()})
    (archive / "erin.zip").write_bytes(b"this is not a zip file")
    _zip(archive / "frank.zip", {"readme.txt": "forgot the notebook"})
    (archive / "batchnorm_gina_attempt_2024-03-01-08-00-00_batchnorm.ipynb").write_text(nb("ok:all"))

    outcome = fake.run()
    rows = {r.student: r for r in outcome.rows}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina"}
    assert rows["alice"].total == FULL
    assert (course / "submitted" / "alice" / "batchnorm" / "timestamp.txt").read_text().strip() == \
        "2024-03-02-10-00-00"
    assert rows["bob"].scores["manual_batch_norm"] == BY_ID["manual_batch_norm"].points
    assert rows["carol"].scores["build_model_with_bn"] == BY_ID["build_model_with_bn"].points
    assert "batchnorm-Copy1.ipynb" in rows["carol"].message
    assert rows["dave"].scores["training_improvement"] == BY_ID["training_improvement"].points
    assert rows["erin"].status == "error" and "erin.zip" in rows["erin"].message
    assert not rows["erin"].grader_fault                  # the student's archive: a final row
    assert rows["frank"].status == "error" and "holds no notebook" in rows["frank"].message
    assert rows["gina"].total == FULL
    # nothing escaped the extraction folder
    assert not (course / "evil_x_attempt_1_batchnorm.ipynb").exists()
    assert not list(course.parent.rglob("evil*"))
    assert not Path("/abs").exists()
    assert not (course / "submitted" / "mallory").exists()
    assert (course / "downloaded" / "batchnorm" / "extracted" / "all_submissions").is_dir()

    calls = len(fake.calls())
    assert fake.run().graded == 0 and len(fake.calls()) == calls       # re-extracting changes nothing


def test_zip_size_caps(tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "MAX_ZIP_MEMBER_BYTES", 1000)
    path = _zip(tmp_path / "big.zip", {"batchnorm.ipynb": "x" * 5000})
    with pytest.raises(ArchiveUnusable, match="larger than|size limit"):
        collect._extract_zip(path, tmp_path / "out")
    monkeypatch.setattr(collect, "MAX_ZIP_MEMBER_BYTES", 10**6)
    monkeypatch.setattr(collect, "MAX_ZIP_TOTAL_BYTES", 3000)
    path = _zip(tmp_path / "many.zip", {f"n{i}.ipynb": "y" * 1000 for i in range(5)})
    with pytest.raises(ArchiveUnusable, match="size limit"):
        collect._extract_zip(path, tmp_path / "out2")


def test_student_ids_from_file_names_are_made_safe():
    assert collect.safe_student_id("../../etc") == "_.._etc"
    assert collect.safe_student_id("ann lee") == "ann_lee"
    assert collect.safe_student_id("") == "unknown"


def _course(tmp_path):
    archive = tmp_path / "downloaded" / "batchnorm" / "archive"
    archive.mkdir(parents=True)
    return archive


def _link_member(z, name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z.writestr(info, target)


@pytest.mark.parametrize("member, why", [
    ("../../outside/batchnorm.ipynb", "path traversal (..)"),
    ("work/../../batchnorm.ipynb", "path traversal (..)"),
    ("/home/ann/batchnorm.ipynb", "an absolute path"),
    ("C:/Users/ann/batchnorm.ipynb", "an absolute path"),
    ("batchnorm.ipynb", "a symbolic link"),
])
def test_a_refused_notebook_member_is_named_with_its_reason(tmp_path, member, why):
    archive = _course(tmp_path)
    with zipfile.ZipFile(archive / "ann.zip", "w") as z:
        if why == "a symbolic link":
            _link_member(z, member, "/etc/passwd")
        else:
            z.writestr(member, "{}")
        z.writestr("notes.txt", "my notes")
    problems = collect.collect_archives(tmp_path)
    assert problems == {"ann": f"the archive ann.zip's member {member} was refused: {why}; "
                               "re-zip the notebook itself"}
    assert "holds no notebook" not in problems["ann"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "submitted" / "ann").exists()
    (hand_in,) = collect.discover(tmp_path, problems=problems)
    assert hand_in.notebook is None and hand_in.error == problems["ann"]


def test_a_zip_in_a_zip_reports_its_refused_member(tmp_path):
    archive = _course(tmp_path)
    import io
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        _link_member(z, "hw/batchnorm.ipynb", "../../secret")
    with zipfile.ZipFile(archive / "bob.zip", "w") as z:
        z.writestr("submission.zip", inner.getvalue())
    problems = collect.collect_archives(tmp_path)
    assert problems["bob"] == ("the archive bob.zip's member hw/batchnorm.ipynb was refused: a symbolic link; "
                               "re-zip the notebook itself")


def test_a_zip_without_a_notebook_says_so(tmp_path):
    archive = _course(tmp_path)
    with zipfile.ZipFile(archive / "cy.zip", "w") as z:
        z.writestr("readme.txt", "nothing here")
    problems = collect.collect_archives(tmp_path)
    assert problems["cy"] == "the archive cy.zip holds no notebook (.ipynb)"


def test_a_refused_member_beside_a_good_notebook_costs_nothing(tmp_path):
    archive = _course(tmp_path)
    with zipfile.ZipFile(archive / "dee.zip", "w") as z:
        z.writestr("../evil.ipynb", "{}")
        z.writestr("batchnorm.ipynb", '{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    assert collect.collect_archives(tmp_path) == {}
    assert (tmp_path / "submitted" / "dee" / "batchnorm" / "batchnorm.ipynb").is_file()


# --- presentation ----------------------------------------------------------------------------------

def check_source_lines() -> list:
    """Lines of the hidden checks' code long enough to be recognised on a page."""
    checks = Path(provenance.__file__).parent / "checks"
    return [line.strip() for p in sorted(checks.glob("test_*.py")) for line in p.read_text().splitlines()
            if len(line.strip()) > 25 and not line.strip().startswith(("#", '"""', "import", "from"))]


def test_feedback_escapes_what_students_control():
    hostile = '<script>alert("x")</script>'
    rows = [CheckResult("manual_batch_norm::test_a", "manual_batch_norm", 1.5, 2.0, False,
                        f"expected mean 0 but got {hostile}"),
            CheckResult("build_model_with_bn::test_other", "build_model_with_bn", 2.0, 2.0, True,
                        "passed: the model builds")]
    page = feedback.render(Result.graded(rows), student='<img src=x onerror="bad()">',
                           message=f"graded {hostile}.ipynb")
    assert "<script>" not in page and "<img" not in page
    assert str(markupsafe.escape(hostile)) in page
    assert BY_ID["manual_batch_norm"].title in page and "Conv -&gt; BN -&gt; ReLU model" in page
    assert "1.5 / 2" in page and "2 / 2" in page and "3.5</strong> / 4" in page
    assert "passed: the model builds" in page


def test_feedback_shows_only_the_messages_of_the_checks():
    """Everything a check row holds besides its message (the check's id, which names the hidden
    check) stays off the page, and so does the hidden checks' code."""
    lines = check_source_lines()
    assert lines
    rows = [CheckResult(f"manual_batch_norm::test_secret_check_name {line}", "manual_batch_norm", 0.0, 1.0,
                        False, f"message {i}") for i, line in enumerate(lines)]
    page = feedback.render(Result.graded(rows))
    assert "message 0" in page and f"message {len(lines) - 1}" in page
    assert "test_secret_check_name" not in page
    leaked = [line for line in lines if str(markupsafe.escape(line)) in page or line in page]
    assert not leaked, leaked[:3]


def test_feedback_of_an_error_says_it_was_not_graded():
    page = feedback.render(Result.failed("the notebook is <not> valid JSON", Side.STUDENT, checks=fake_catalogue()),
                           student="eve")
    assert "could not be graded" in page and "&lt;not&gt;" in page and "0</strong> / " in page
    assert "grader's side" not in page
    assert "grader's side" in feedback.render(Result.failed("the sandbox could not start", Side.GRADER))


def _modern_rows(first_passed=True, second_passed=True, second_message=None):
    name = "build_modern_cnn::test_honours_input_shape_and_num_classes"
    passed = "passed: Builds for any input_shape and num_classes (checked at (28, 28, 1)/10 and (64, 64, 3)/5)."
    return [
        CheckResult("build_modern_cnn::test_uses_conv_bn_relu_blocks", "build_modern_cnn", 0.5, 0.5, True,
                    "passed: blocks"),
        CheckResult(f"{name}[28x28x1-10]", "build_modern_cnn", 0.25 if first_passed else 0.0, 0.25, first_passed,
                    passed if first_passed else "build_modern_cnn(input_shape=(28, 28, 1), num_classes=10) has "
                                                "input shape (None, 32, 32, 3); pass input_shape to keras.Input"),
        CheckResult(f"{name}[64x64x3-5]", "build_modern_cnn", 0.25 if second_passed else 0.0, 0.25, second_passed,
                    passed if second_passed else second_message),
    ]


def _modern_section(page):
    section = page.split("Modern CNN builder")[1].split("</section>")[0]
    return section.count("<li "), section


def test_a_parametrised_check_is_one_line_of_the_feedback_page():
    page = feedback.render(Result.graded(_modern_rows()))
    lines, section = _modern_section(page)
    assert lines == 2                                        # the blocks check and the shapes check
    assert section.count("Builds for any input_shape and num_classes") == 1
    assert "0.5 / 0.5" in section


def test_a_failing_parametrised_check_shows_its_points_with_each_distinct_failure():
    fixed = ("build_modern_cnn(input_shape=(64, 64, 3), num_classes=5) has input shape (None, 32, 32, 3); "
             "pass input_shape to keras.Input")
    page = feedback.render(Result.graded(_modern_rows(first_passed=False, second_passed=False, second_message=fixed)))
    lines, section = _modern_section(page)
    assert lines == 2 and "0 / 0.5" in section
    assert "(28, 28, 1), num_classes=10)" in section and "(64, 64, 3), num_classes=5)" in section
    page = feedback.render(Result.graded(_modern_rows(second_passed=False, second_message=fixed)))
    lines, section = _modern_section(page)
    assert lines == 2 and "0.25 / 0.5" in section and "&#10007;" in section
    assert "Builds for any input_shape" not in section     # the failure is said, not the passing half



def test_progress_is_a_line_per_student_in_a_log():
    lines = io.StringIO()
    progress = classrun.Progress(2, lines)
    row = grades.Row("ann", total=FULL, max_total=FULL, status="graded")
    progress.update(row)
    progress.update(grades.Row("eve", total=0.0, max_total=FULL, status="error"))
    assert lines.getvalue().splitlines()[0].startswith(f"[1/2] ann: {pts(FULL)}/{pts(FULL)}")
    assert "(error)" in lines.getvalue().splitlines()[1]


def test_progress_is_a_bar_on_a_terminal():
    row = grades.Row("ann", total=FULL, max_total=FULL, status="graded")

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    progress = classrun.Progress(2, term)
    progress.update(row)
    progress.close()
    assert "\r" in term.getvalue() and "[############............] 1/2" in term.getvalue()


def _full_marks_rows():
    full = Result.graded([CheckResult(e.id, e.id, e.points, e.points, True, "") for e in EXERCISES])
    return [grades.Row.of("ann", full), grades.Row.of("bob, \"the\"", full, "two\nlines  of   notes")]


def test_the_score_table_has_a_column_per_exercise():
    rows = _full_marks_rows()
    table = grades.format_table(rows).splitlines()
    header = next(n for n, line in enumerate(table) if line.startswith("student"))
    assert table[header].split() == ["student", *(str(n) for n in range(1, len(EXERCISES) + 1)), "auto", "manual",
                                     "status"]
    assert table[header + 2].split() == ["ann", *(pts(e.points) for e in EXERCISES), f"{pts(FULL)}/{pts(FULL)}",
                                         "-", "manual_pending"]
    legend = " ".join(table[:header])
    assert all(f"{n} {e.id} ({pts(e.points)})" in legend for n, e in enumerate(EXERCISES, start=1))


def test_grades_csv_is_quoted_plain_text():
    rows = _full_marks_rows()
    text = grades.grades_csv_text(reversed(rows))
    assert text.splitlines()[0] == ",".join(grades.CSV_COLUMNS)
    manual = pts(MANUAL_POINTS)
    assert text.splitlines()[1] == ",".join(["ann", *(pts(e.points) for e in EXERCISES), *("" for _ in WRITTEN_IDS),
                                             pts(FULL), pts(FULL), "", manual, "", pts(FULL + MANUAL_POINTS),
                                             "manual_pending", "", ""])
    assert text.splitlines()[2].startswith('"bob, ""the""",') and \
        text.endswith(",manual_pending,,two lines of notes\n")


def written(**points) -> WrittenScores:
    """Written answers graded by a person as given ({answer id: points}), the others pending."""
    return WrittenScores(MappingProxyType({w.id: WrittenGrade(Marked.PERSON, points[w.id]) if w.id in points
                                           else WrittenGrade() for w in WRITTEN_ANSWERS}))


def test_grades_csv_keeps_the_written_answers_apart_and_totals_them_only_once_all_are_graded():
    full = Result.graded([CheckResult(e.id, e.id, e.points, e.points, True, "") for e in EXERCISES])
    some = {w.id: 1.5 for w in WRITTEN_ANSWERS[:2]}
    every = {w.id: 1.5 for w in WRITTEN_ANSWERS}
    rows = [grades.Row.of("ann", full, written=written(**some)), grades.Row.of("bob", full, written=written(**every)),
            grades.Row.of("eve", Result.failed("corrupt", Side.STUDENT), written=written(**every))]
    parsed = {r["student"]: r for r in csv.DictReader(io.StringIO(grades.grades_csv_text(rows)))}
    ann, bob, eve = parsed["ann"], parsed["bob"], parsed["eve"]
    assert [ann[w] for w in WRITTEN_IDS] == ["1.5", "1.5", "", "", "", ""]
    assert (ann["auto"], ann["manual"], ann["total"], ann["status"]) == (pts(FULL), "", "", "manual_pending")
    assert (bob["auto"], bob["manual"], bob["total"], bob["status"]) == \
        (pts(FULL), pts(1.5 * len(WRITTEN_ANSWERS)), pts(FULL + 1.5 * len(WRITTEN_ANSWERS)), "graded")
    assert bob["max_total"] == pts(FULL + MANUAL_POINTS) and bob["manual_max"] == pts(MANUAL_POINTS)
    assert eve["status"] == "error" and eve["auto"] == "0"
    assert eve["total"] == pts(1.5 * len(WRITTEN_ANSWERS))       # the student's error: 0 autograded points
    crashed = Result.failed("the grader crashed", Side.GRADER)
    zed = grades.Row.of("zed", crashed, written=written(**every))
    (row,) = csv.DictReader(io.StringIO(grades.grades_csv_text([zed])))
    assert (row["status"], row["manual"], row["total"]) == ("error", pts(1.5 * len(WRITTEN_ANSWERS)), "")
    table = grades.format_table(rows)
    assert table.splitlines()[-3].split()[-3:] == [f"{pts(FULL)}/{pts(FULL)}", "-", "manual_pending"]
    assert table.splitlines()[-2].split()[-2:] == [f"{pts(1.5 * len(WRITTEN_ANSWERS))}/{pts(MANUAL_POINTS)}", "graded"]


def test_grader_processes_share_the_cpus_threads(monkeypatch):
    monkeypatch.setattr(pool, "cpu_count", lambda: 2)
    assert pool.worker_env(2)["OMP_NUM_THREADS"] == "1"
    assert pool.worker_env(1)["TF_NUM_INTRAOP_THREADS"] == "2"
    assert Settings().with_threads(pool.cpu_count() // 4).limits.threads == 1


def test_the_score_table_of_a_class_fits_a_100_column_terminal():
    """Eleven exercises, points in sevenths, an error row and a student id of 100 characters (the longest
    collect gives): no line of the table is longer than 100 characters, and the long id is cut."""
    sevenths = Result.graded([CheckResult(e.id, e.id, e.points * 5 / 7, e.points, False, "") for e in EXERCISES])
    full = Result.graded([CheckResult(e.id, e.id, e.points, e.points, True, "") for e in EXERCISES])
    rows = [grades.Row.of("ann", full), grades.Row.of("b" * 100, sevenths), grades.Row("eve"),
            grades.Row.of("carol", sevenths)]
    table = grades.format_table(rows).splitlines()
    assert max(len(line) for line in table) <= 100, table
    assert any(line.startswith("b" * 7) and "..." in line for line in table)     # the long id, cut
    assert any(line.startswith("carol") and "17.86/25" in line for line in table)


# --- the real grader -------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_grader_on_synthetic_students(tmp_path):
    from autograder import synthetic_students as students
    from autograder.notebook import released_notebook
    if released_notebook() is None:
        pytest.skip("release/batchnorm/batchnorm.ipynb is not there yet")
    course = tmp_path / "course"
    for name in ("full_marks", "unanswered", "corrupt"):
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / name / "batchnorm" / "batchnorm.ipynb")
    stream = io.StringIO()
    outcome = classrun.run(course, jobs=2, progress_stream=stream)
    rows = {r.student: r for r in outcome.rows}
    assert rows["full_marks"].status == "graded" and rows["full_marks"].total == FULL, rows["full_marks"]
    assert rows["unanswered"].status == "graded" and rows["unanswered"].total == 0
    assert rows["corrupt"].status == "error" and rows["corrupt"].total == 0
    assert rows["corrupt"].max_total == FULL and not rows["corrupt"].grader_fault
    for name in rows:
        assert store.read_result(course, name).total == rows[name].total
        page = feedback_page(course, name)
        assert "def test_" not in page
    timings = store.read_result(course, "full_marks").timings
    assert timings.get("total", 0) > 0 and timings.get("class_wall", 0) > 0
    assert timings.get(worker_origin()) == 1, timings      # forked from the grader process's zygote
    again = classrun.run(course, jobs=2, progress_stream=io.StringIO())
    assert again.graded == 0 and again.resumed == 3


def test_grades_csv_says_whose_an_error_is_and_its_reader_takes_it_from_there_not_from_the_message():
    quoting = Result.failed(f"your cell raised: ValueError('{GRADER_SIDE_PREFIX}a forged reason')", Side.STUDENT)
    ours = Result.failed("the worker could not start", Side.GRADER)
    rows = [grades.Row.of("ann", quoting, written=written(**{w.id: 1.0 for w in WRITTEN_ANSWERS[:1]})),
            grades.Row.of("bob", ours, message="(the reason elsewhere)")]
    ann, bob = grades.parse_csv(grades.grades_csv_text(rows))
    assert (ann.error_side, ann.grader_fault, ann.pending) == ("student", False, True)
    assert (bob.error_side, bob.grader_fault, bob.total) == ("grader", True, None)
    text = grades.grades_csv_text(rows).replace(",error,student,", ",error,,")
    with pytest.raises(grades.GradesFileError, match="line 2: error_side ''"):
        grades.parse_csv(text)


def test_a_hand_in_nested_deeper_than_the_search_is_the_students_row_not_a_crash_of_the_class(tmp_path):
    """os.walk and Path.rglob recurse on Python 3.11: a tree a thousand folders deep ended the class run in
    a RecursionError."""
    with deep_folder_with_little_stack(tmp_path / "submitted" / "zed" / "batchnorm"):
        (hand_in,) = collect.discover(tmp_path)
    assert hand_in.notebook is None and f"more than {collect.MAX_DEPTH} deep are not looked in" in hand_in.error
