"""grade-class: discovery, zips, old formats, resume, atomic writes, crashes, CSV, feedback.

The fast tests swap the grader for a fake (``pool.GRADER`` points each grader process at a
module written into tmp_path), so they run the real process pool, pipes and writers in seconds.
The slow test grades synthetic students with the real isolated grader.
"""

import csv
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

import fake_grader

from autograder import collect, feedback, grade_class, pool, results
from autograder.exercises import BY_ID, EXERCISE_IDS, EXERCISES

FULL = sum(e.points for e in EXERCISES)          # a full-marks total
pts = results.format_points                       # points as the CSV and the table write them

FAKE_GRADER = '''
import json, os, time
from pathlib import Path
from autograder import results
from autograder.exercises import EXERCISES

# the grader processes must not collect the real checks for error rows either
results.catalogue = lambda: [{"id": f"{e.id}::check", "exercise": e.id, "max_points": e.points}
                             for e in EXERCISES]


def grade_notebook(path, *, cache_dir=None, hide=()):
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code = "\\n".join(c["source"] for c in nb["cells"] if c["cell_type"] == "code")
    outputs = sum(len(c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code")
    with open(os.environ["FAKE_GRADER_LOG"], "a") as f:
        f.write(json.dumps({"code": code, "nbformat": nb["nbformat"], "outputs": outputs,
                            "hide": list(hide), "path": str(path)}) + "\\n")
    if "CRASH" in code:
        os._exit(7)
    if "HANG" in code:
        time.sleep(120)
    if "SLOW" in code:
        time.sleep(1.5)
    if "RAISE" in code:
        raise RuntimeError("a bug in the grader")
    zeros = [{"id": f"{e.id}::check", "exercise": e.id, "points": 0.0, "max_points": e.points,
              "passed": False, "message": "not graded"} for e in EXERCISES]
    if "GRADER_SIDE" in code:       # a failure the grader reports as its own
        return dict(results.summarise(zeros, error="on the grader's side: the worker could not start"),
                    error_side="grader")
    if "STUDENT_SIDE" in code:      # a submission the grader cannot read: the student's error
        return results.summarise(zeros, error="the notebook is damaged")
    rows = []
    for e in EXERCISES:
        ok = "ok:all" in code or f"ok:{e.id}" in code
        rows.append({"id": f"{e.id}::check", "exercise": e.id, "points": e.points if ok else 0.0,
                     "max_points": e.points, "passed": ok,
                     "message": f"{e.id} passed" if ok else f"{e.id} failed: got <{code[:30]}> & more"})
    return results.summarise(rows, timings={"worker_start": 0.1, "checks": 0.2, "total": 0.3})
'''


def fake_catalogue():
    return [{"id": f"{e.id}::check", "exercise": e.id, "max_points": e.points} for e in EXERCISES]


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
            return grade_class.run(course, **kwargs)

    return Fake


def notebook(code="ok:all", outputs=(), name="batchnorm.ipynb"):
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Batch norm"), cell])


def hand_in(course, student, nb=None, name="batchnorm.ipynb", raw=None):
    path = course / "submitted" / student / "batchnorm" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        nbformat.write(nb if nb is not None else notebook(f"ok:all  # {student}"), str(path))
    return path


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def temp_files(root):
    return [p for p in Path(root).rglob("*.tmp")]


def feedback_page(course, student):
    return (course / grade_class.OUTPUT_DIR / student / "batchnorm" / grade_class.FEEDBACK_NAME).read_text()


# --- discovery -------------------------------------------------------------------------------------

def test_choose_notebook_renamed_several_and_missing(tmp_path):
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

def test_class_run_writes_results_csv_and_feedback(fake):
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
    assert header == ["student", *EXERCISE_IDS, "total", "max_total", "status", "message"]
    assert list(rows) == ["ann", "bob", "cat", "dan", "eve"]
    manual, model = pts(BY_ID["manual_batch_norm"].points), pts(BY_ID["build_model_with_bn"].points)
    assert rows["ann"]["total"] == pts(FULL) and rows["ann"]["status"] == "graded" and rows["ann"]["message"] == ""
    assert rows["bob"]["manual_batch_norm"] == manual and rows["bob"]["total"] == manual
    assert "batchnorm-Copy1.ipynb" in rows["bob"]["message"]
    assert rows["cat"]["build_model_with_bn"] == model and rows["cat"]["total"] == model
    assert "graded batchnorm.ipynb" in rows["cat"]["message"] and "scratch.ipynb" in rows["cat"]["message"]
    for student in ("dan", "eve"):
        assert rows[student]["status"] == "error" and rows[student]["total"] == "0"
        assert rows[student]["max_total"] == pts(FULL)
    assert "no notebook" in rows["dan"]["message"]
    assert "not valid JSON" in rows["eve"]["message"]

    assert len(fake.calls()) == 3                      # dan and eve never reach the grader
    assert all(call["hide"] == [str(course.resolve())] for call in fake.calls())
    for student in rows:
        doc = json.loads(grade_class.result_path(course, student).read_text())
        assert doc["status"] == rows[student]["status"]
        assert results.exercise_scores(doc)["manual_batch_norm"] == float(rows[student]["manual_batch_norm"])
        page = feedback_page(course, student)
        assert "Batch normalization in NumPy" in page
    assert outcome.graded == 4 and outcome.resumed == 0 and not outcome.write_failures   # eve: read in a worker
    assert not temp_files(course)


def test_resume_skips_unchanged_and_regrades_changed(fake, monkeypatch):
    course = fake.root
    for student in ("ann", "bob", "cat"):
        hand_in(course, student)
    assert fake.run().graded == 3
    assert len(fake.calls()) == 3

    again = fake.run()
    assert again.graded == 0 and again.resumed == 3 and len(fake.calls()) == 3
    assert [r["total"] for r in again.rows] == [FULL, FULL, FULL]

    hand_in(course, "bob", notebook("ok:build_modern_cnn  # changed"))
    third = fake.run()
    assert third.graded == 1 and len(fake.calls()) == 4
    assert "changed" in fake.calls()[-1]["code"]
    assert {r["student"]: r["total"] for r in read_csv(course / "grades.csv")}["bob"] == \
        pts(BY_ID["build_modern_cnn"].points)

    monkeypatch.setattr(grade_class, "grader_hash", lambda: "checks-changed")
    assert fake.run().graded == 3 and len(fake.calls()) == 7

    assert fake.run(force=True).graded == 3 and len(fake.calls()) == 10


def test_grader_hash_follows_the_checks(tmp_path):
    package = tmp_path / "autograder"
    shutil.copytree(Path(grade_class.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    first = grade_class.grader_hash(package)
    assert first == grade_class.grader_hash(package)
    (package / "feedback.py").write_text("# presentation only: no regrade")
    assert grade_class.grader_hash(package) == first
    check = next((package / "checks").glob("test_*.py"))
    check.write_text(check.read_text() + "\n# a changed check\n")
    assert grade_class.grader_hash(package) != first


def test_crash_timeout_and_grader_bug_become_error_rows(fake):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "crash", notebook("CRASH"))
    hand_in(course, "hang", notebook("HANG"))
    hand_in(course, "bug", notebook("RAISE"))
    hand_in(course, "zed")
    outcome = fake.run(timeout=10)
    rows = {r["student"]: r for r in outcome.rows}
    assert rows["ann"]["total"] == rows["zed"]["total"] == FULL, rows
    assert rows["crash"]["status"] == "error" and "crashed" in rows["crash"]["message"]
    assert rows["hang"]["status"] == "error" and "longer than 10 s" in rows["hang"]["message"]
    assert rows["bug"]["status"] == "error" and "a bug in the grader" in rows["bug"]["message"]
    # errors of the grader (not of the notebook) are tried again on the next run
    before = len(fake.calls())
    fake.run(timeout=10)
    assert sorted(c["code"] for c in fake.calls()[before:]) == ["CRASH", "HANG", "RAISE"]


def test_grader_side_errors_are_graded_again_and_student_errors_are_kept(fake):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "gus", notebook("GRADER_SIDE"))
    hand_in(course, "sam", notebook("STUDENT_SIDE"))
    outcome = fake.run()
    rows = {r["student"]: r for r in outcome.rows}
    assert rows["gus"]["status"] == rows["sam"]["status"] == "error"
    assert outcome.grader_errors == ["gus"]
    assert not json.loads((grade_class.result_path(course, "gus").parent / grade_class.SIDECAR).read_text())["final"]
    before = len(fake.calls())
    again = fake.run()
    assert [c["code"] for c in fake.calls()[before:]] == ["GRADER_SIDE"]
    assert again.resumed == 2 and again.grader_errors == ["gus"]


def test_exit_status_names_the_students_not_graded_and_how_to_grade_them(fake, capsys):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "gus", notebook("GRADER_SIDE"))
    hand_in(course, "hal", notebook("CRASH"))
    hand_in(course, "sam", notebook("STUDENT_SIDE"))
    argv = ["batchnorm", "--course-dir", str(course), "--jobs", "1"]
    assert grade_class.main(argv) == grade_class.EXIT_NOT_GRADED != 0
    err = capsys.readouterr().err.split("NOT GRADED")[-1]
    assert "grader's side" in err and "gus, hal" in err and "sam" not in err
    assert f"python -m autograder grade-class batchnorm --course-dir {course} --jobs 1" in err

    hand_in(course, "gus")                                 # the cause is fixed: graded this time
    hand_in(course, "hal")
    assert grade_class.main(argv) == 0
    rows = {r["student"]: r for r in read_csv(course / "grades.csv")}
    assert rows["gus"]["total"] == rows["hal"]["total"] == pts(FULL)


def test_an_older_versions_results_move_out_of_nbgraders_folders(fake):
    course = fake.root
    hand_in(course, "ann")
    fake.run()
    new_results = grade_class.result_path(course, "ann")
    new_sidecar = new_results.parent / grade_class.SIDECAR
    old = course / "autograded" / "ann" / "batchnorm"          # where grade-class wrote before
    old.mkdir(parents=True)
    os.replace(new_results, old / "results.json")
    os.replace(new_sidecar, old / grade_class.SIDECAR)
    old_page = course / "feedback" / "ann" / "batchnorm" / "batchnorm.html"
    old_page.parent.mkdir(parents=True)
    os.replace(new_results.parent / grade_class.FEEDBACK_NAME, old_page)

    again = fake.run()
    assert again.resumed == 1 and again.graded == 0 and len(fake.calls()) == 1
    assert new_results.is_file() and new_sidecar.is_file()
    assert not (course / "autograded" / "ann").exists() and not (course / "feedback" / "ann").exists()


def test_a_grader_that_cannot_load_or_start_gives_error_rows(fake, monkeypatch):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "bob")
    monkeypatch.setattr(pool, "GRADER", "no_such_grader_module:grade_notebook")
    rows = fake.run().rows
    assert [r["status"] for r in rows] == ["error", "error"]
    assert "could not be loaded" in rows[0]["message"] and "no_such_grader_module" in rows[0]["message"]

    dying = Path(os.environ["FAKE_GRADER_LOG"]).parent / "fakemod" / "dies_on_import.py"
    dying.write_text("import os\nos._exit(5)\n")
    monkeypatch.setattr(pool, "GRADER", "dies_on_import:grade_notebook")
    rows = fake.run().rows
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all("no grader process could be started" in r["message"] for r in rows)
    assert fake.calls() == []


def test_exit_codes(fake, monkeypatch, capsys):
    course = fake.root
    hand_in(course, "ann")
    hand_in(course, "eve", raw=b"\x00\x01 not a notebook")
    assert grade_class.main(["batchnorm", "--course-dir", str(course), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "eve" in out and "error" in out and f"{pts(FULL)}/{pts(FULL)}" in out
    assert grade_class.main(["nosuch", "--course-dir", str(course)]) == 2
    assert grade_class.main(["batchnorm", "--course-dir", str(course / "missing")]) == 2
    assert grade_class.main(["batchnorm", "--course-dir", str(course), "--jobs", "0"]) == 2
    assert grade_class.main(["batchnorm", "--bogus-option"]) == 2
    empty = course.parent / "empty"
    empty.mkdir()
    assert grade_class.main(["batchnorm", "--course-dir", str(empty)]) == 2

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(results, "write_json_atomic", refuse)
    assert grade_class.main(["batchnorm", "--course-dir", str(course), "--force"]) == 1


def test_interrupted_run_keeps_what_finished(fake):
    course = fake.root
    for student in ("ann", "bob", "cat", "dan"):
        hand_in(course, student)
    seen = []

    def stop_after_first(row):
        seen.append(row["student"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake.run(jobs=1, on_row=stop_after_first)
    finished = [s for s in ("ann", "bob", "cat", "dan")
                if grade_class.result_path(course, s).exists()]
    assert finished == seen == ["ann"]
    json.loads(grade_class.result_path(course, "ann").read_text())
    assert [r["student"] for r in read_csv(course / "grades.csv")] == ["ann"]
    assert not temp_files(course)

    calls = len(fake.calls())
    outcome = fake.run()
    assert outcome.resumed == 1 and outcome.graded == 3 and len(fake.calls()) == calls + 3


def test_atomic_writes_leave_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "out" / "grades.csv"
    results.write_atomic("old\n", target)

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
        results.write_atomic("new contents\n" * 100, target)
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["grades.csv"]


# --- what students hand in -------------------------------------------------------------------------

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
    assert row["status"] == "graded" and row["scores"]["manual_batch_norm"] == BY_ID["manual_batch_norm"].points
    assert "converted from nbformat v3" in row["message"]
    (call,) = fake.calls()
    assert call["nbformat"] == 4 and call["outputs"] == 0 and "from 2014" in call["code"]
    assert path.read_text() == json.dumps(v3)               # the submission itself is untouched


def test_huge_outputs_are_stripped(fake):
    course = fake.root
    hand_in(course, "loud", notebook("ok:all", outputs=["x" * 1000 + "\n"] * 8000))   # ~8 MB of output
    row = fake.run().rows[0]
    assert row["total"] == FULL and "outputs removed" in row["message"]
    (call,) = fake.calls()
    assert call["outputs"] == 0


def test_prepare_notebook_reasons(tmp_path):
    dest = tmp_path / "out.ipynb"
    cases = {b"": "empty", b"\xff\xfe\x00garbage": "not UTF-8", b"[1, 2]": "not a Jupyter notebook",
             b'{"cells": [': "not valid JSON"}
    for raw, reason in cases.items():
        src = tmp_path / "in.ipynb"
        src.write_bytes(raw)
        with pytest.raises(collect.NotebookUnreadable, match=reason):
            collect.prepare_notebook(src, dest)


# --- LMS zip downloads -----------------------------------------------------------------------------

def _zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder", date_time=(2024, 3, 1, 0, 0, 0))
            info.filename = name             # as hostile as given: ZipInfo() would clean it up
            z.writestr(info, data)
    return path


def test_zip_collect_layout(fake):
    course = fake.root
    archive = course / "downloaded" / "batchnorm" / "archive"
    nb = lambda code: nbformat.writes(notebook(code))  # noqa: E731
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
    rows = {r["student"]: r for r in outcome.rows}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina"}
    assert rows["alice"]["total"] == FULL
    assert (course / "submitted" / "alice" / "batchnorm" / "timestamp.txt").read_text().strip() == \
        "2024-03-02-10-00-00"
    assert rows["bob"]["scores"]["manual_batch_norm"] == BY_ID["manual_batch_norm"].points
    assert rows["carol"]["scores"]["build_model_with_bn"] == BY_ID["build_model_with_bn"].points
    assert "batchnorm-Copy1.ipynb" in rows["carol"]["message"]
    assert rows["dave"]["scores"]["training_improvement"] == BY_ID["training_improvement"].points
    assert rows["erin"]["status"] == "error" and "erin.zip" in rows["erin"]["message"]
    assert rows["frank"]["status"] == "error" and "holds no notebook" in rows["frank"]["message"]
    assert rows["gina"]["total"] == FULL
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
    with pytest.raises(collect.BadArchive, match="larger than|size limit"):
        collect._extract_zip(path, tmp_path / "out")
    monkeypatch.setattr(collect, "MAX_ZIP_MEMBER_BYTES", 10**6)
    monkeypatch.setattr(collect, "MAX_ZIP_TOTAL_BYTES", 3000)
    path = _zip(tmp_path / "many.zip", {f"n{i}.ipynb": "y" * 1000 for i in range(5)})
    with pytest.raises(collect.BadArchive, match="size limit"):
        collect._extract_zip(path, tmp_path / "out2")


def test_student_ids_from_file_names_are_made_safe():
    assert collect.safe_student_id("../../etc") == "_.._etc"
    assert collect.safe_student_id("ann lee") == "ann_lee"
    assert collect.safe_student_id("") == "unknown"


# --- presentation ----------------------------------------------------------------------------------

def check_source_lines() -> list:
    """Lines of the hidden checks' code long enough to be recognised on a page."""
    checks = Path(grade_class.__file__).parent / "checks"
    return [line.strip() for p in sorted(checks.glob("test_*.py")) for line in p.read_text().splitlines()
            if len(line.strip()) > 25 and not line.strip().startswith(("#", '"""', "import", "from"))]


def test_feedback_escapes_what_students_control():
    hostile = '<script>alert("x")</script>'
    rows = [{"id": "manual_batch_norm::test_a", "exercise": "manual_batch_norm",
             "points": 1.5, "max_points": 2.0, "passed": False, "message": f"expected mean 0 but got {hostile}"},
            {"id": "build_model_with_bn::test_other", "exercise": "build_model_with_bn",
             "points": 2.0, "max_points": 2.0, "passed": True, "message": "passed: the model builds"}]
    page = feedback.render(results.summarise(rows), student='<img src=x onerror="bad()">',
                           message=f"graded {hostile}.ipynb")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert BY_ID["manual_batch_norm"].title in page and "Conv -&gt; BN -&gt; ReLU model" in page
    assert "1.5 / 2" in page and "2 / 2" in page and "3.5</strong> / 4" in page
    assert "passed: the model builds" in page


def test_feedback_shows_only_the_messages_of_the_checks():
    """Everything a results row holds besides its message (the check's id, and here the hidden
    checks' own code) stays off the page."""
    lines = check_source_lines()
    assert lines
    rows = [{"id": f"manual_batch_norm::test_secret_check_name {line}", "exercise": "manual_batch_norm",
             "points": 0.0, "max_points": 1.0, "passed": False, "message": f"message {i}",
             "source": line, "expected": line} for i, line in enumerate(lines)]
    page = feedback.render(results.summarise(rows))
    assert "message 0" in page and f"message {len(lines) - 1}" in page
    assert "test_secret_check_name" not in page
    leaked = [line for line in lines if feedback._esc(line) in page or line in page]
    assert not leaked, leaked[:3]


def test_feedback_of_an_error_says_it_was_not_graded():
    error = results.error_result("the notebook is <not> valid JSON")
    page = feedback.render(error, student="eve")
    assert "could not be graded" in page and "&lt;not&gt;" in page and "0</strong> / " in page


def test_progress_bar_and_lines():
    lines = io.StringIO()
    progress = grade_class.Progress(2, lines)
    row = {"student": "ann", "total": FULL, "max_total": FULL, "status": "graded"}
    progress.update(row)
    progress.update(dict(row, student="eve", total=0.0, status="error"))
    assert lines.getvalue().splitlines()[0].startswith(f"[1/2] ann: {pts(FULL)}/{pts(FULL)}")
    assert "(error)" in lines.getvalue().splitlines()[1]

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    progress = grade_class.Progress(2, term)
    progress.update(row)
    progress.close()
    assert "\r" in term.getvalue() and "[############............] 1/2" in term.getvalue()


def test_score_table_and_thread_limits(monkeypatch):
    rows = [grade_class.row_for("ann", results.summarise(
        [{"id": e.id, "exercise": e.id, "points": e.points, "max_points": e.points, "passed": True,
          "message": ""} for e in EXERCISES]))]
    table = grade_class.format_table(rows).splitlines()
    assert table[0].split() == ["student", *(f"{e.id}/{pts(e.points)}" for e in EXERCISES), "total", "status"]
    assert table[2].split() == ["ann", *(pts(e.points) for e in EXERCISES), f"{pts(FULL)}/{pts(FULL)}", "graded"]
    monkeypatch.setattr(pool, "cpu_count", lambda: 2)
    assert pool.worker_env(2)["OMP_NUM_THREADS"] == "1"
    assert pool.worker_env(1)["TF_NUM_INTRAOP_THREADS"] == "2"
    assert pool.worker_env(4)["BN_AUTOGRADER_THREADS"] == "1"


# --- the real grader -------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_grader_on_synthetic_students(tmp_path):
    from autograder import students
    if not students.RELEASE_NOTEBOOK.exists():
        pytest.skip("release/batchnorm/batchnorm.ipynb is not there yet")
    course = tmp_path / "course"
    for name in ("full_marks", "unanswered", "corrupt"):
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / name / "batchnorm" / "batchnorm.ipynb")
    stream = io.StringIO()
    outcome = grade_class.run(course, jobs=2, progress_stream=stream)
    rows = {r["student"]: r for r in outcome.rows}
    full = sum(e.points for e in EXERCISES)
    assert rows["full_marks"]["status"] == "graded" and rows["full_marks"]["total"] == full, rows["full_marks"]
    assert rows["unanswered"]["status"] == "graded" and rows["unanswered"]["total"] == 0
    assert rows["corrupt"]["status"] == "error" and rows["corrupt"]["total"] == 0
    assert rows["corrupt"]["max_total"] == full
    for name in rows:
        doc = json.loads(grade_class.result_path(course, name).read_text())
        assert doc["total"] == rows[name]["total"]
        page = feedback_page(course, name)
        assert "def test_" not in page
    timings = json.loads(grade_class.result_path(course, "full_marks").read_text())["timings"]
    assert timings.get("total", 0) > 0
    again = grade_class.run(course, jobs=2, progress_stream=io.StringIO())
    assert again.graded == 0 and again.resumed == 3
