"""The written answers' grades come from nbgrader's gradebook, as formgrader records them, and nowhere else.

The tests with a gradebook are slow: nbgrader takes seconds to create one (it runs alembic)."""

import csv
import io
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from nbgrader.api import Gradebook

from autograder import feedback
from autograder.classroom import grades, report, written
from autograder.exercises import ASSIGNMENT_ID, EXERCISES, MANUAL_POINTS, WRITTEN_ANSWERS
from autograder.results import CheckResult, Result, format_points

COURSE_ID = "dl-batchnorm"
FULL = sum(e.points for e in EXERCISES)


def full_marks() -> Result:
    return Result.graded([CheckResult(f"{e.id}::a", e.id, e.points, e.points, True, "") for e in EXERCISES])


def formgrader_grade(gradebook, student: str, answer_id: str, points) -> None:
    """What formgrader does when a person saves a manual score (its GradeHandler.put)."""
    grade = gradebook.find_grade(answer_id, "batchnorm", ASSIGNMENT_ID, student)
    grade.manual_score = points
    grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
    gradebook.db.commit()


@pytest.fixture(scope="module")
def autograded_course(tmp_path_factory):
    """A course whose gradebook has the written answers as nbgrader autograde leaves them: ann's and
    bob's all waiting for a person (needs_manual_grade), except bob's last, handed in as released
    (nbgrader's 0, nothing to grade). Made once: nbgrader creates a gradebook in seconds."""
    tmp_path = tmp_path_factory.mktemp("course")
    path = os.environ.get("PATH", "")
    # nbgrader runs the `alembic` script by name when it creates a gradebook
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])
    (tmp_path / "nbgrader_config.py").write_text(f'c = get_config()\nc.CourseDirectory.course_id = "{COURSE_ID}"\n')
    try:
        make_gradebook(tmp_path)
    finally:
        os.environ["PATH"] = path
    return tmp_path


@pytest.fixture
def course(autograded_course, tmp_path):
    """A copy of the autograded course, for a person to grade."""
    shutil.copytree(autograded_course, tmp_path / "course")
    return tmp_path / "course"


def make_gradebook(tmp_path):
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}", COURSE_ID) as gradebook:
        gradebook.add_assignment(ASSIGNMENT_ID)
        gradebook.add_notebook("batchnorm", ASSIGNMENT_ID)
        for answer in WRITTEN_ANSWERS:
            gradebook.add_grade_cell(answer.answer_cell, "batchnorm", ASSIGNMENT_ID, max_score=answer.points,
                                     cell_type="markdown")
        for student in ("ann", "bob"):
            gradebook.add_student(student)
            gradebook.add_submission(ASSIGNMENT_ID, student)
            for answer in WRITTEN_ANSWERS:
                grade = gradebook.find_grade(answer.answer_cell, "batchnorm", ASSIGNMENT_ID, student)
                unanswered = student == "bob" and answer is WRITTEN_ANSWERS[-1]
                grade.auto_score, grade.needs_manual_grade = (0.0, False) if unanswered else (None, True)
        gradebook.db.commit()


def grade_in_formgrader(course, student, points: dict) -> None:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        for answer_id, value in points.items():
            formgrader_grade(gradebook, student, answer_id, value)


def test_without_a_gradebook_every_written_answer_is_pending_and_none_is_created(tmp_path):
    reading = written.read_gradebook(tmp_path)
    assert reading.problem == "" and not (tmp_path / "gradebook.db").exists()
    assert reading.of("ann").pending == tuple(w.id for w in WRITTEN_ANSWERS) and reading.of("ann").total is None


@pytest.mark.slow
def test_answers_are_pending_until_a_person_grades_them_in_formgrader(course):
    before = written.read_gradebook(course)
    assert before.of("ann").pending == tuple(w.id for w in WRITTEN_ANSWERS)
    last = WRITTEN_ANSWERS[-1].id
    assert last not in before.of("bob").pending                         # nbgrader's 0 for an unchanged cell
    assert before.of("bob").grades[last] == written.WrittenGrade(written.Marked.UNANSWERED, 0.0)
    assert before.of("cat").pending == before.of("ann").pending           # not in the gradebook at all

    grade_in_formgrader(course, "ann", {w.id: 1.5 for w in WRITTEN_ANSWERS[:3]})
    partly = written.read_gradebook(course).of("ann")
    assert partly.pending == tuple(w.id for w in WRITTEN_ANSWERS[3:]) and partly.total is None
    assert partly.grades[WRITTEN_ANSWERS[0].id] == written.WrittenGrade(written.Marked.PERSON, 1.5)

    grade_in_formgrader(course, "ann", {w.id: 2.0 for w in WRITTEN_ANSWERS[3:]})
    done = written.read_gradebook(course).of("ann")
    assert done.complete and done.total == 3 * 1.5 + 3 * 2.0

    grade_in_formgrader(course, "ann", {WRITTEN_ANSWERS[0].id: None})       # a person clears a grade
    assert written.read_gradebook(course).of("ann").pending == (WRITTEN_ANSWERS[0].id,)


@pytest.mark.slow
def test_the_class_csv_shows_a_persons_grades_once_they_exist(course):
    grade_in_formgrader(course, "ann", {w.id: 2.0 for w in WRITTEN_ANSWERS})
    reading = written.read_gradebook(course)
    rows = [grades.Row.of(s, full_marks(), written=reading.of(s)) for s in ("ann", "bob")]
    parsed = {r["student"]: r for r in csv.DictReader(io.StringIO(grades.grades_csv_text(rows)))}
    assert (parsed["ann"]["manual"], parsed["ann"]["total"], parsed["ann"]["status"]) == \
        (format_points(MANUAL_POINTS), format_points(FULL + MANUAL_POINTS), "graded")
    assert (parsed["bob"]["manual"], parsed["bob"]["total"], parsed["bob"]["status"]) == ("", "", "manual_pending")
    assert parsed["bob"][WRITTEN_ANSWERS[-1].id] == "0" and parsed["bob"]["auto"] == format_points(FULL)


def test_an_unreadable_gradebook_leaves_everything_pending_and_says_so(tmp_path):
    (tmp_path / "gradebook.db").write_bytes(b"this is not a database")
    reading = written.read_gradebook(tmp_path)
    assert "could not be read" in reading.problem and reading.of("ann").total is None


def test_the_written_scores_survive_the_sidecar():
    scores = written.WrittenScores.from_json({WRITTEN_ANSWERS[0].id: {"marked": "person", "points": 1.5},
                                              WRITTEN_ANSWERS[1].id: {"marked": "person", "points": "x"}})
    assert written.WrittenScores.from_json(scores.to_json()) == scores
    assert scores.pending == tuple(w.id for w in WRITTEN_ANSWERS[1:])


@pytest.mark.slow
def test_the_feedback_page_lists_the_written_answers_as_graded_by_a_person(course):
    pending = feedback.render(full_marks(), student="ann")
    assert "Written answers, graded by a person" in pending and 'id="manual">pending' in pending
    assert pending.count("not graded yet") == len(WRITTEN_ANSWERS)
    assert f'id="auto">{format_points(FULL)}</strong> / {format_points(FULL)}' in pending
    grade_in_formgrader(course, "ann", {w.id: 2.0 for w in WRITTEN_ANSWERS})
    graded = feedback.render(full_marks(), student="ann", written=written.read_gradebook(course).of("ann"))
    assert "not graded yet" not in graded and f'id="manual">{format_points(MANUAL_POINTS)}</strong>' in graded
    assert graded.count(": graded by a person</span>") == len(WRITTEN_ANSWERS)


@pytest.mark.slow
def test_the_class_report_keeps_the_written_answers_apart_and_counts_those_to_grade(course):
    grade_in_formgrader(course, "ann", {w.id: 2.0 for w in WRITTEN_ANSWERS})
    data = report.analyse({"ann": full_marks(), "bob": full_marks()}, manual=written.read_gradebook(course))
    page = report.render(data)
    assert f'id="n-written-pending">{len(WRITTEN_ANSWERS) - 1}</strong> still to be graded' in page
    assert f"autograded: mean <strong>{FULL:.2f}</strong>" in page
    first = WRITTEN_ANSWERS[0].id
    assert f'data-answer="{first}"><td><code>{first}</code></td>' in page


@pytest.mark.slow
def test_reading_never_changes_the_gradebook_even_one_of_another_course(course):
    gradebook = course / "gradebook.db"
    before = gradebook.read_bytes()
    assert written.read_gradebook(course).problem == ""
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "another-course"\n')
    reading = written.read_gradebook(course)          # nbgrader's Gradebook would add the course to the file
    assert "could not be read" in reading.problem and reading.of("ann").total is None
    assert gradebook.read_bytes() == before


def _nbgrader_grade(max_score=2.0, manual_score=None, auto_score=None, needs_manual_grade=False):
    return SimpleNamespace(max_score=max_score, manual_score=manual_score, auto_score=auto_score,
                           needs_manual_grade=needs_manual_grade)


@pytest.mark.parametrize("entry, why", [
    (dict(manual_score=2.5), "not within 0 to 2"),
    (dict(manual_score=-1.0), "not within 0 to 2"),
    (dict(manual_score=float("nan")), "not within 0 to 2"),
    (dict(max_score=5.0, manual_score=4.0), "out of 5 in the gradebook, 2 in this assignment"),
    (dict(max_score=5.0, needs_manual_grade=True), "out of 5 in the gradebook"),
])
def test_a_gradebook_entry_outside_the_answers_points_is_no_grade(entry, why):
    answer = WRITTEN_ANSWERS[0]
    assert answer.points == 2.0
    with pytest.raises(written.NotAGrade, match=why):
        written.grade_of(_nbgrader_grade(**entry), answer)
    person = written.WrittenGrade(written.Marked.PERSON, 2.0)
    unanswered = written.WrittenGrade(written.Marked.UNANSWERED, 0.0)
    assert written.grade_of(_nbgrader_grade(manual_score=2.0), answer) == person
    assert written.grade_of(_nbgrader_grade(auto_score=0.0), answer) == unanswered


@pytest.mark.slow
def test_a_score_a_person_could_not_have_given_stays_pending_and_is_said(course):
    grade_in_formgrader(course, "ann", {w.id: 2.0 for w in WRITTEN_ANSWERS[1:]} | {WRITTEN_ANSWERS[0].id: 7.0})
    reading = written.read_gradebook(course)
    assert reading.of("ann").pending == (WRITTEN_ANSWERS[0].id,) and reading.of("ann").total is None
    assert f"ann: {WRITTEN_ANSWERS[0].id}'s score 7 is not within 0 to 2" in reading.problem
