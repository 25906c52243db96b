"""nbgrader autograde records the isolated grader's scores, and feedback hides the hidden tests.

Fast tests: the bridge's outputs through nbgrader's own ``determine_grade``, and a whole
``nbgrader generate_assignment / autograde / export / generate_feedback`` round, run in this process
on a small course with a fake grader. Slow test: the same round with the real master notebook, the
real grader and nbgrader's command line, against scores from ``grade_notebook`` itself.
"""

import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader import utils
from nbgrader.api import Gradebook

from autograder import nbgrader_bridge
from autograder.classroom import classrun, store
from autograder.errors import Side
from autograder.exercises import BY_ID, BY_TEST_CELL, EXERCISES, MANUAL_POINTS, UNANSWERED, WRITTEN_ANSWERS
from autograder.results import CheckResult, Result, Status, format_points

import fake_grader
from conftest import UID_COUNT, forger_cells, leftovers, uid_range, unique_digits, worker_origin

REPO = Path(__file__).resolve().parent.parent
COURSE_ID = "dl-batchnorm"
SECRET = "SECRET_EXPECTED_VALUE_0xC0FFEE"


def nbgrader_meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def mini_source() -> nbformat.NotebookNode:
    """A small master notebook with the assignment's four test cells (and a hidden-tests block)."""
    cells = [nbformat.v4.new_markdown_cell("# Batch norm", metadata=nbgrader_meta("intro", locked=True))]
    for e in EXERCISES:
        if e.id != "training_improvement":
            cells.append(nbformat.v4.new_code_cell(
                f"def {e.function}():\n    ### BEGIN SOLUTION\n    return 'ok:{e.function}'\n    ### END SOLUTION",
                metadata=nbgrader_meta(e.function, solution=True)))
        cells.append(nbformat.v4.new_code_cell(
            f"assert {e.function}() == 'ok:{e.function}'\n### BEGIN HIDDEN TESTS\n{SECRET} = 42\n### END HIDDEN TESTS",
            metadata=nbgrader_meta(e.test_cell, grade=True, locked=True, points=e.points)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def scored_notebook():
    nb = mini_source()
    nb.cells.append(nbformat.v4.new_code_cell("assert True", metadata=nbgrader_meta(
        "test_not_an_exercise", grade=True, locked=True, points=1.0)))
    return nb


def result_with(scores: dict) -> Result:
    return Result.graded([CheckResult(f"{e.id}::a", e.id, scores.get(e.id, 0.0), e.points,
                                      scores.get(e.id, 0.0) == e.points, f"{e.id}: <detail>") for e in EXERCISES])


# --- the outputs nbgrader reads --------------------------------------------------------------------

def test_test_cell_outputs_become_partial_credit():
    nb = scored_notebook()
    # full marks, partial credit and a zero, whatever the exercises' points
    scores = {e.id: (e.points, e.points / 2, 0.0)[i % 3] for i, e in enumerate(EXERCISES)}
    recorded = nbgrader_bridge.apply_scores(nb, result_with(scores))
    expected = {e.test_cell: scores[e.id] for e in EXERCISES}
    assert recorded == {**expected, "test_not_an_exercise": 0.0}
    for cell in nb.cells:
        if not utils.is_grade(cell):
            assert not cell.get("outputs")
            continue
        grade_id = cell.metadata.nbgrader.grade_id
        points, max_points = utils.determine_grade(cell)
        assert points == recorded[grade_id]               # 0 is recorded as 0, not full marks
        assert max_points == cell.metadata.nbgrader.points
        kinds = [(o.output_type, o.get("name")) for o in cell.outputs]
        assert kinds == [("stream", "stdout"), ("execute_result", None)]
        assert not utils.has_failed(cell)
        if grade_id in BY_TEST_CELL:
            assert f"{BY_TEST_CELL[grade_id].id}: <detail>" in cell.outputs[0].text


def test_written_answers_are_left_for_a_person():
    nb = mini_source_with_written()
    for cell in nb.cells:
        if cell.metadata.nbgrader.get("grade_id") in BY_ANSWER:
            cell.source = "My answer: BN goes before the ReLU because ..."
    answers = {c.metadata.nbgrader.grade_id: c.source for c in nb.cells if c.metadata.nbgrader.grade_id in BY_ANSWER}
    recorded = nbgrader_bridge.apply_scores(nb, result_with({e.id: e.points for e in EXERCISES}))
    assert set(recorded) == {e.test_cell for e in EXERCISES}
    for cell in nb.cells:
        if cell.metadata.nbgrader.grade_id in BY_ANSWER:
            assert cell.source == answers[cell.metadata.nbgrader.grade_id] and "outputs" not in cell
            assert utils.determine_grade(cell) == (None, BY_ANSWER[cell.metadata.nbgrader.grade_id].points)


def test_points_never_exceed_the_cell():
    nb = scored_notebook()
    nb.cells[2].metadata.nbgrader.points = 1.0              # a cell worth less than the exercise
    nbgrader_bridge.apply_scores(nb, result_with({e.id: e.points for e in EXERCISES}))
    assert utils.determine_grade(nb.cells[2]) == (1.0, 1.0)


def test_another_assignment_is_refused_before_anything_is_graded(tmp_path):
    nb = scored_notebook()
    resources = {"nbgrader": {"student": "ann", "assignment": "nosuch"}, "metadata": {"path": str(tmp_path)}}
    with pytest.raises(nbgrader_bridge.GraderSideError,
                       match="nbgrader autograde: unknown assignment 'nosuch'; this course has 'batchnorm'"):
        nbgrader_bridge.IsolatedGrade().preprocess(nb, resources)
    assert not (tmp_path / "results.json").exists()


def test_an_error_scores_zero_in_every_cell():
    nb = scored_notebook()
    error = Result([dataclasses.replace(c, points=0.0) for c in result_with({}).checks], Status.ERROR,
                   "corrupt <file>", Side.STUDENT)
    nbgrader_bridge.apply_scores(nb, error)
    for cell in nb.cells:
        if utils.is_grade(cell):
            assert utils.determine_grade(cell)[0] == 0.0
            if cell.metadata.nbgrader.grade_id in BY_TEST_CELL:
                assert "could not be graded: corrupt <file>" in cell.outputs[0].text


# --- a whole nbgrader round in this process, with a fake grader ------------------------------------

def venv_path() -> str:
    # nbgrader's Gradebook runs the `alembic` script by name: it must be on PATH
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def run_nbgrader_here(course: Path, *args, retcode: int = 0) -> str:
    from nbgrader.tests import run_nbgrader
    cwd, environ = os.getcwd(), os.environ
    os.chdir(course)
    try:
        return run_nbgrader(list(args), retcode=retcode)
    finally:
        os.chdir(cwd)
        os.environ = environ  # noqa: B003 - run_nbgrader leaves a plain dict, which child processes never see


def submit(course: Path, student: str, nb) -> None:
    path = course / "submitted" / student / "batchnorm" / "batchnorm.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def released(course: Path):
    return nbformat.read(str(course / "release" / "batchnorm" / "batchnorm.ipynb"), as_version=4)


def answered(course: Path, answers: dict):
    nb = released(course)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


FAKER_CELL = """# try to collect points inside the kernel
import builtins
builtins.AssertionError = type("Nothing", (Exception,), {})
manual_batch_norm = build_model_with_bn = build_modern_cnn = lambda *a, **k: 'ok'
print(4.0)
4.0"""

# The grader each grader process loads in the fast tests (server.GRADER points at it): scores the
# mini notebook's answers, and logs each call with its process id.
FAKE_GRADER = '''
import json, os
from autograder import check_catalogue, notebook
from autograder.errors import Side
from autograder.exercises import EXERCISES
from autograder.results import CheckResult, Result

CATALOGUE = tuple({"id": f"{e.id}::a", "exercise": e.id, "max_points": e.points} for e in EXERCISES)
check_catalogue.collect_checks = lambda: CATALOGUE


def grade_notebook(source, settings=None, *, hide=()):
    answers = "\\n".join(notebook.source(c) for c in source.cells if notebook.nbgrader_metadata(c).get("solution"))
    with open(os.environ["FAKE_GRADER_LOG"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "answers": answers,
                            "outputs": sum(len(c.get("outputs", [])) for c in source.cells)}) + "\\n")
    scores = {e.id: (e.points if f"return 'ok:{e.function}'" in answers else 0.0) for e in EXERCISES}
    if "partial" in answers:
        scores["manual_batch_norm"] = 1.25
    if "GRADER_SIDE" in answers:
        return Result.failed("the worker could not start", Side.GRADER, checks=CATALOGUE)
    return Result.graded([CheckResult(f"{e.id}::a", e.id, scores[e.id], e.points, scores[e.id] == e.points,
                                      f"{e.id}: <detail>") for e in EXERCISES])
'''

FULL = sum(e.points for e in EXERCISES)
BY_ANSWER = {w.id: w for w in WRITTEN_ANSWERS}


def gradebook_scores(course: Path, student: str) -> dict:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        submission = gb.find_submission_notebook("batchnorm", "batchnorm", student)
        return {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in submission.grades}


def released_course(folder: Path, source: nbformat.NotebookNode) -> Path:
    """A course folder in ``folder`` with ``source`` released by nbgrader (and in its gradebook)."""
    course = folder / "course"
    (course / "source" / "batchnorm").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    nbformat.write(source, str(course / "source" / "batchnorm" / "batchnorm.ipynb"))
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = venv_path()
    try:
        run_nbgrader_here(course, "generate_assignment", "batchnorm", "--force")
    finally:
        os.environ["PATH"] = path
    return course


@pytest.fixture(scope="module")
def released_mini_course(tmp_path_factory):
    """A course folder with the mini assignment released by nbgrader (and in its gradebook)."""
    return released_course(tmp_path_factory.mktemp("released"), mini_source())


@pytest.fixture
def mini_course(tmp_path, monkeypatch, released_mini_course):
    """A released mini assignment in a course folder of its own, and the fake grader in the grader
    processes; ``mini_course.calls()`` lists what the grader was asked to grade."""
    monkeypatch.setenv("PATH", venv_path())
    graded_calls = fake_grader.install(tmp_path, monkeypatch, FAKE_GRADER, "fake_bridge_grader", lambda: tuple(
        {"id": f"{e.id}::a", "exercise": e.id, "max_points": e.points} for e in EXERCISES))
    course = tmp_path / "course"
    shutil.copytree(released_mini_course, course)

    class Course:
        root = course
        full = {e.function: f"def {e.function}():\n    return 'ok:{e.function}'" for e in EXERCISES}

        calls = staticmethod(graded_calls)

    return Course


@pytest.mark.slow
def test_autograde_records_isolated_scores_in_process(mini_course):
    course = mini_course.root
    submit(course, "ann", answered(course, mini_course.full))
    submit(course, "bob", answered(course, {**mini_course.full, "manual_batch_norm":
                                            "def manual_batch_norm():\n    return 'partial'"}))
    faker = released(course)
    faker.cells.insert(2, nbformat.v4.new_code_cell(FAKER_CELL))
    for cell in faker.cells:        # and rewrite the locked test cells, which nbgrader restores
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = "4.0"
    submit(course, "faker", faker)

    run_nbgrader_here(course, "autograde", "batchnorm")

    assert len(mini_course.calls()) == 3 and all(call["outputs"] == 0 for call in mini_course.calls())
    full_points = {e.test_cell: e.points for e in EXERCISES}
    assert {k: v[0] for k, v in gradebook_scores(course, "ann").items()} == full_points
    bob = {k: v[0] for k, v in gradebook_scores(course, "bob").items()}
    assert bob == {**full_points, "test_manual_batch_norm": 1.25}
    faker_scores = gradebook_scores(course, "faker")
    assert {k: v[0] for k, v in faker_scores.items()} == {e.test_cell: 0.0 for e in EXERCISES}
    assert not any(v[2] for v in faker_scores.values())          # nothing left for manual grading
    doc = Result.from_json((course / "autograded" / "bob" / "batchnorm" / "results.json").read_text())
    assert doc.exercise_scores()["manual_batch_norm"] == 1.25

    run_nbgrader_here(course, "export", "--to", str(course / "export.csv"))
    with open(course / "export.csv", newline="") as f:
        exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
    manual = BY_ID["manual_batch_norm"].points
    assert exported == {"ann": FULL, "bob": FULL - manual + 1.25, "faker": 0.0}

    run_nbgrader_here(course, "generate_feedback", "batchnorm")
    for student in ("ann", "bob", "faker"):
        page = (course / "feedback" / student / "batchnorm" / "batchnorm.html").read_text()
        assert SECRET not in page and "BEGIN HIDDEN TESTS" not in page
        assert "isolated autograder" in page
    assert f"1.25 / {format_points(manual)} points" in \
        (course / "feedback" / "bob" / "batchnorm" / "batchnorm.html").read_text()


@pytest.mark.slow
def test_autograde_after_grade_class_imports_its_results_without_grading(mini_course):
    course = mini_course.root
    submit(course, "ann", answered(course, mini_course.full))
    submit(course, "bob", answered(course, {**mini_course.full, "manual_batch_norm":
                                            "def manual_batch_norm():\n    return 'partial'"}))
    graded = classrun.run(course, jobs=2, progress_stream=io.StringIO())
    assert graded.graded == 2 and len(mini_course.calls()) == 2
    stored = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (course / store.OUTPUT_DIR).rglob("*")
              if p.is_file()}

    run_nbgrader_here(course, "autograde", "batchnorm")                       # no --force

    assert len(mini_course.calls()) == 2                                       # nothing graded again
    manual = BY_ID["manual_batch_norm"].points
    assert sum(v[0] for v in gradebook_scores(course, "ann").values()) == FULL
    assert sum(v[0] for v in gradebook_scores(course, "bob").values()) == FULL - manual + 1.25
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (course / store.OUTPUT_DIR).rglob("*")
            if p.is_file()} == stored                                          # grade-class's files untouched
    assert (course / "autograded" / "ann" / "batchnorm" / "batchnorm.ipynb").is_file()
    again = classrun.run(course, jobs=2, progress_stream=io.StringIO())
    assert again.resumed == 2 and again.graded == 0 and len(mini_course.calls()) == 2


@pytest.mark.slow
def test_autograde_grades_the_changed_submissions_in_one_parallel_pass(mini_course):
    course = mini_course.root
    for student in ("ann", "bob", "cat", "dan"):
        submit(course, student, answered(course, mini_course.full))

    run_nbgrader_here(course, "autograde", "batchnorm", "--IsolatedGrade.jobs=2")

    calls = mini_course.calls()
    assert len(calls) == 4
    assert len({call["pid"] for call in calls}) <= 2          # the pool's two grader processes, not one each
    for student in ("ann", "bob", "cat", "dan"):
        assert sum(v[0] for v in gradebook_scores(course, student).values()) == FULL
        assert store.result_path(course, student).is_file()            # grade-class resumes from these


@pytest.mark.slow
def test_a_grader_side_error_is_left_for_the_next_autograde(mini_course):
    course = mini_course.root
    submit(course, "ann", answered(course, mini_course.full))
    submit(course, "gus", answered(course, {**mini_course.full, "manual_batch_norm":
                                            "def manual_batch_norm():\n"
                                            "    return 'ok:manual_batch_norm'  # GRADER_SIDE"}))

    log = run_nbgrader_here(course, "autograde", "batchnorm", retcode=1)      # nbgrader reports a failure

    assert "gus was not graded because of a problem on the grader's side" in log
    assert sum(v[0] for v in gradebook_scores(course, "ann").values()) == FULL
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:      # no zeros: no score at all,
        grades = gb.find_submission_notebook("batchnorm", "batchnorm", "gus").grades   # and flagged for a look
        assert [(g.auto_score, g.needs_manual_grade) for g in grades] == [(None, True)] * len(EXERCISES)
    assert not (course / "autograded" / "gus" / "batchnorm").exists()

    submit(course, "gus", answered(course, mini_course.full))                  # the cause is gone
    run_nbgrader_here(course, "autograde", "batchnorm")                        # still no --force
    assert sum(v[0] for v in gradebook_scores(course, "gus").values()) == FULL


@pytest.mark.slow
def test_a_notebook_without_a_submitted_file_is_graded_in_a_grader_process(mini_course, tmp_path):
    nb = answered(mini_course.root, mini_course.full)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="printed by the kernel\n")]
    resources = {"nbgrader": {"student": "ann", "assignment": "batchnorm"}, "metadata": {"path": str(tmp_path)}}
    nbgrader_bridge.IsolatedGrade().preprocess(nb, resources)       # no converter: graded right here
    (call,) = mini_course.calls()
    assert call["outputs"] == 0                                     # dropped where the notebook is read
    assert Result.from_json((tmp_path / "results.json").read_text()).total == FULL

    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source += "  # GRADER_SIDE"
    with pytest.raises(nbgrader_bridge.GraderSideError, match="grader's side"):
        nbgrader_bridge.IsolatedGrade().preprocess(nb, resources)


# --- the written answers: autograde leaves them to a person, formgrader grades, export totals ------

MODEL_ANSWER, MARK_SCHEME = "THE MODEL ANSWER 0xBEEF", "ONE POINT FOR 0xFEED"


def mini_source_with_written() -> nbformat.NotebookNode:
    """The mini notebook with the registry's written answers: a locked question, then nbgrader's
    manually graded answer cell holding a model answer and a mark scheme in its solution region."""
    nb = mini_source()
    for answer in WRITTEN_ANSWERS:
        nb.cells.append(nbformat.v4.new_markdown_cell(f"Question {answer.id}? (graded by a person)",
                                                      metadata=nbgrader_meta(answer.question_cell, locked=True)))
        nb.cells.append(nbformat.v4.new_markdown_cell(
            f"### BEGIN SOLUTION\n{MODEL_ANSWER}\n\n=== BEGIN MARK SCHEME ===\n{MARK_SCHEME}\n"
            "=== END MARK SCHEME ===\n### END SOLUTION",
            metadata=nbgrader_meta(answer.answer_cell, grade=True, solution=True, points=answer.points)))
    return nb


@pytest.fixture(scope="module")
def released_written_course(tmp_path_factory):
    """The mini assignment with the written answers, released by nbgrader."""
    return released_course(tmp_path_factory.mktemp("released-written"), mini_source_with_written())


def formgrader_grade(course: Path, student: str, points: dict) -> None:
    """A person's grades, saved as formgrader saves them (its GradeHandler.put, through the gradebook API)."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        for answer_id, value in points.items():
            grade = gb.find_grade(answer_id, "batchnorm", "batchnorm", student)
            grade.manual_score = value
            grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
        gb.db.commit()


@pytest.mark.slow
def test_written_answers_round_trip_autograde_formgrader_export_and_grade_class(
        released_written_course, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", venv_path())
    calls = fake_grader.install(tmp_path, monkeypatch, FAKE_GRADER, "fake_written_grader", lambda: tuple(
        {"id": f"{e.id}::a", "exercise": e.id, "max_points": e.points} for e in EXERCISES))
    course = tmp_path / "course"
    shutil.copytree(released_written_course, course)
    release = released(course)
    answers = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id") in BY_ANSWER]
    assert [c.source for c in answers] == [UNANSWERED] * len(WRITTEN_ANSWERS)          # the release strips both
    assert all(MODEL_ANSWER not in c.source and MARK_SCHEME not in c.source for c in release.cells)

    full = {e.function: f"def {e.function}():\n    return 'ok:{e.function}'" for e in EXERCISES}
    *answered_ids, unanswered_id = [w.id for w in WRITTEN_ANSWERS]
    submit(course, "ann", answered(course, {**full, **{a: f"My answer to {a}." for a in answered_ids}}))

    first = classrun.run(course, jobs=1, progress_stream=io.StringIO())              # grade-class first
    (row,) = first.rows
    assert row.class_status == "manual_pending" and row.written.total is None and len(calls()) == 1

    run_nbgrader_here(course, "autograde", "batchnorm")
    recorded = gradebook_scores(course, "ann")
    assert {a: recorded[a][2] for a in answered_ids} == {a: True for a in answered_ids}   # left for formgrader
    assert recorded[unanswered_id] == (0.0, BY_ANSWER[unanswered_id].points, False)       # nbgrader's 0
    assert sum(recorded[e.test_cell][0] for e in EXERCISES) == FULL and len(calls()) == 1

    grades_given = {a: 1.5 for a in answered_ids}
    formgrader_grade(course, "ann", grades_given)
    assert not any(needs for _, _, needs in gradebook_scores(course, "ann").values())

    run_nbgrader_here(course, "export", "--to", str(course / "export.csv"))
    with open(course / "export.csv", newline="") as f:
        (exported,) = list(csv.DictReader(f))
    manual = sum(grades_given.values())
    assert float(exported["raw_score"]) == FULL + manual
    assert float(exported["max_score"]) == FULL + MANUAL_POINTS

    again = classrun.run(course, jobs=1, progress_stream=io.StringIO())              # nothing graded again
    assert again.resumed == 1 and len(calls()) == 1
    with open(course / "grades.csv", newline="") as f:
        (line,) = list(csv.DictReader(f))
    assert (line["auto"], line["manual"], line["total"], line["status"]) == \
        (format_points(FULL), format_points(manual), format_points(FULL + manual), "graded")
    page = (store.folder(course, "ann") / store.FEEDBACK_NAME).read_text()
    assert "not graded yet" not in page and page.count(": graded by a person</span>") == len(answered_ids)
    assert "left unanswered" in page


# --- the real thing --------------------------------------------------------------------------------

def nbgrader_cli(course: Path, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PATH=venv_path()))
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


@pytest.mark.slow
def test_nbgrader_autograde_with_the_real_grader(tmp_path, monkeypatch):
    from autograder import synthetic_students as students
    if not (REPO / "source" / "batchnorm" / "batchnorm.ipynb").exists():
        pytest.skip("the master notebook is not there yet")
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(REPO / "source" / "batchnorm", course / "source" / "batchnorm")
    nbgrader_cli(course, "generate_assignment", "batchnorm", "--force")

    for name in ("full_marks", "bn_ddof1"):
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / name / "batchnorm" / "batchnorm.ipynb", course)
    faker = students.build_notebook(students.STUDENTS["unanswered"], course)
    faker.cells.append(nbformat.v4.new_code_cell(
        "import numpy as np\n"
        "np.allclose = lambda *a, **k: True\n"
        "np.testing.assert_allclose = lambda *a, **k: None\n"
        "class _History:\n    history = {'accuracy': [1.0], 'val_accuracy': [1.0], 'loss': [0.0]}\n"
        "history_with_bn = _History()\n"
        "print(12.0)\n12.0"))
    submit(course, "faker", faker)
    # a forger (issue 21): kills its worker, forges "crashed" answers, leaves processes behind
    first_uid, tag, scratch = uid_range(), unique_digits(), tmp_path / "tmp"
    scratch.mkdir()
    forger = students.build_notebook(students.STUDENTS["unanswered"])
    forger.cells += [nbformat.v4.new_code_cell(c) for c in forger_cells(tag)]
    submit(course, "forger", forger)
    # bn_ddof1's partial scores come from the grader itself, run on the submission outside nbgrader:
    # started now, it grades beside nbgrader autograde (its own uids and scratch folder)
    direct_folder = tmp_path / "direct"
    (direct_folder / "tmp").mkdir(parents=True)
    with open(direct_folder / "output.txt", "w") as output:
        direct = subprocess.Popen(
            [sys.executable, "-m", "autograder", "grade", str(course / "submitted" / "bn_ddof1" / "batchnorm" /
                                                              "batchnorm.ipynb"),
             "--output", str(direct_folder / "results.json")], stdout=output, stderr=subprocess.STDOUT,
            env=dict(os.environ, BN_AUTOGRADER_UID_FIRST=str(uid_range()), BN_AUTOGRADER_UID_COUNT=str(UID_COUNT),
                     TMPDIR=str(direct_folder / "tmp")))
    monkeypatch.setenv("BN_AUTOGRADER_UID_FIRST", str(first_uid))
    monkeypatch.setenv("BN_AUTOGRADER_UID_COUNT", str(UID_COUNT))
    monkeypatch.setenv("TMPDIR", str(scratch))

    nbgrader_cli(course, "autograde", "batchnorm")
    assert not leftovers(first_uid, tag, scratch)

    # What the isolated grader gives each one: known for the solution, the faker and the forger (whose
    # one answer is a correct manual_batch_norm); bn_ddof1's partial scores from the grader itself,
    # run on the submission outside nbgrader (above).
    assert direct.wait(600) == 0, (direct_folder / "output.txt").read_text()[-3000:]
    direct = Result.from_dict(json.loads((direct_folder / "results.json").read_text()))
    assert direct.status is Status.GRADED and 0 < direct.total < FULL, direct.total
    assert direct.timings.get(worker_origin()) == 1, direct.timings      # grade's own zygote
    expected_scores = {
        "full_marks": {e.id: e.points for e in EXERCISES},
        "bn_ddof1": direct.exercise_scores(),
        "faker": {e.id: 0.0 for e in EXERCISES},
        "forger": {e.id: e.points if e.id == "manual_batch_norm" else 0.0 for e in EXERCISES},
    }
    for name, scores_ in expected_scores.items():
        expected = {e.test_cell: scores_[e.id] for e in EXERCISES}
        recorded = gradebook_scores(course, name)
        autograded = {k: v for k, v in recorded.items() if k in BY_TEST_CELL}
        assert {k: v[0] for k, v in autograded.items()} == expected, name
        assert {k: v[1] for k, v in autograded.items()} == {e.test_cell: e.points for e in EXERCISES}
        # the written answers: left to a person when answered, nbgrader's 0 when handed in as released
        # (nbgrader's Grade.score is 0 while neither score is set: needs_manual_grade tells them apart)
        left = {k: v for k, v in recorded.items() if k not in BY_TEST_CELL}
        answered_ = name in ("full_marks", "bn_ddof1")
        assert left == {w.id: (0.0, w.points, answered_) for w in WRITTEN_ANSWERS}, name
    assert sum(v[0] for k, v in gradebook_scores(course, "full_marks").items() if k in BY_TEST_CELL) == FULL
    assert sum(v[0] for v in gradebook_scores(course, "faker").values()) == 0.0
    assert gradebook_scores(course, "forger")[BY_ID["manual_batch_norm"].test_cell][0] == 3.0

    nbgrader_cli(course, "export", "--to", "export.csv")
    with open(course / "export.csv", newline="") as f:
        exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
    assert exported["full_marks"] == FULL and exported["faker"] == 0.0       # no manual grade yet
    formgrader_grade(course, "full_marks", {w.id: w.points for w in WRITTEN_ANSWERS})
    nbgrader_cli(course, "export", "--to", "export.csv")
    with open(course / "export.csv", newline="") as f:
        exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
    assert exported["full_marks"] == FULL + MANUAL_POINTS

    nbgrader_cli(course, "generate_feedback", "batchnorm")
    check_lines = [line.strip() for p in (REPO / "autograder" / "checks").glob("test_*.py")
                   for line in p.read_text().splitlines()
                   if len(line.strip()) > 30 and not line.strip().startswith(("#", '"""', "import", "from"))]
    for name in ("full_marks", "bn_ddof1", "faker"):
        page = (course / "feedback" / name / "batchnorm" / "batchnorm.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in page and "def test_" not in page
        leaked = [line for line in check_lines if line in page]
        assert not leaked, leaked[:3]
