"""The written answers' grades: read from the course's nbgrader gradebook, where formgrader records them.

The written answers (exercises.WRITTEN_ANSWERS) are graded by a person in nbgrader's formgrader,
which stores each manual grade in the course's gradebook. This module is the one reader of those
grades for grade-class, the class report and the feedback pages. It never makes a score up: an
answer is *pending* until the gradebook holds a grade for it that needs no person any more:

* a person's grade (``Grade.manual_score``, set in formgrader), or
* nbgrader's 0 for an answer cell handed in exactly as released ("YOUR ANSWER HERE": its checksum
  is unchanged, so ``nbgrader autograde`` records 0 and asks no one to grade it).

Everything else (no gradebook yet, the student not autograded yet, an answer that
``needs_manual_grade``) is pending. The gradebook is found as nbgrader finds it: the course's
``nbgrader_config.py`` (``CourseDirectory.db_url`` and ``course_id``), by default
``<course>/gradebook.db``; a missing sqlite file is not created, and an sqlite gradebook is opened
read-only (nbgrader's ``Gradebook`` would otherwise add tables or a course to one it does not match).
A grade is the instructor's data, but it is still read with bounds: a score outside 0 to the
answer's points, or an answer cell whose gradebook points are not the registry's (another release
of the assignment), is no grade: that answer stays pending, and ``problem`` says why.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

from ..exercises import ASSIGNMENT_ID, MANUAL_POINTS, NOTEBOOK_NAME, WRITTEN_ANSWERS

log = logging.getLogger(__name__)


class Marked(str, Enum):
    PENDING = "pending"          # no grade that needs no person yet: a person still has to grade it
    PERSON = "person"            # a person's grade, from formgrader
    UNANSWERED = "unanswered"    # handed in as released: nbgrader records 0 and asks no one


@dataclass(frozen=True)
class WrittenGrade:
    """One written answer's grade, or that it is pending (``points`` None)."""
    marked: Marked = Marked.PENDING
    points: float | None = None


PENDING = WrittenGrade()


@dataclass(frozen=True)
class WrittenScores:
    """One student's written answers, every one of exercises.WRITTEN_ANSWERS: {answer id: WrittenGrade}."""
    grades: Mapping = field(default_factory=lambda: MappingProxyType({w.id: PENDING for w in WRITTEN_ANSWERS}))

    @property
    def pending(self) -> tuple:
        """The ids of the answers a person has still to grade, in notebook order."""
        return tuple(w.id for w in WRITTEN_ANSWERS if self.grades.get(w.id, PENDING).points is None)

    @property
    def complete(self) -> bool:
        return not self.pending

    @property
    def total(self) -> float | None:
        """The written answers' points, or None while any is pending (no partial sum passes for a total)."""
        return None if self.pending else sum(self.grades[w.id].points for w in WRITTEN_ANSWERS)

    @property
    def max_total(self) -> float:
        return MANUAL_POINTS

    def to_json(self) -> dict:
        """{answer id: {"marked": ..., "points": ...}} (what grade-class's sidecar records)."""
        return {w.id: {"marked": self.grades[w.id].marked.value, "points": self.grades[w.id].points}
                for w in WRITTEN_ANSWERS}

    @classmethod
    def from_json(cls, data) -> "WrittenScores":
        """The inverse of ``to_json``; an answer missing or unreadable is pending."""
        def one(item) -> WrittenGrade:
            try:
                marked, points = Marked(item["marked"]), item["points"]
                return PENDING if marked is Marked.PENDING or points is None else WrittenGrade(marked, float(points))
            except (KeyError, TypeError, ValueError):
                return PENDING
        data = data if isinstance(data, dict) else {}
        return cls(MappingProxyType({w.id: one(data.get(w.id)) for w in WRITTEN_ANSWERS}))


@dataclass(frozen=True)
class GradebookReading:
    """What the gradebook says about the class's written answers."""
    scores: Mapping = field(default_factory=dict)   # {student: WrittenScores}, only students it grades
    problem: str = ""                               # what could not be read as a grade ("" when all could)
    unreadable: bool = False                        # the gradebook is there but could not be read at all

    def of(self, student: str) -> WrittenScores:
        """The student's written answers; all pending when the gradebook has none of theirs."""
        return self.scores.get(student) or WrittenScores()


def _gradebook_location(course: Path) -> tuple:
    """(db_url, course_id) as nbgrader's apps find them from the course's nbgrader_config.py."""
    from nbgrader.coursedir import CourseDirectory  # noqa: PLC0415 (nbgrader only where a gradebook is read)
    from traitlets.config import Config  # noqa: PLC0415
    from traitlets.config.loader import PyFileConfigLoader  # noqa: PLC0415
    config = Config()
    if (course / "nbgrader_config.py").is_file():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    coursedir = CourseDirectory(config=config, root=str(course))
    return coursedir.db_url, coursedir.course_id


class NotAGrade(ValueError):
    """A gradebook entry that cannot be a grade of this answer (its answer stays pending)."""


def grade_of(grade, answer) -> WrittenGrade:
    """An nbgrader ``Grade`` of ``answer``'s manually graded answer cell as a WrittenGrade; NotAGrade
    when the gradebook's cell is out of other points than the registry's, or the score is not
    within 0 to them."""
    if float(grade.max_score) != answer.points:
        raise NotAGrade(f"{answer.id} is out of {grade.max_score:g} in the gradebook, {answer.points:g} in this "
                        "assignment (a gradebook of another release?)")
    if grade.needs_manual_grade:
        return PENDING
    # a person's score, else nbgrader's 0 for an answer cell left as released
    for marked, score in ((Marked.PERSON, grade.manual_score), (Marked.UNANSWERED, grade.auto_score)):
        if score is not None:
            points = float(score)
            if not 0.0 <= points <= answer.points:      # NaN too
                raise NotAGrade(f"{answer.id}'s score {points:g} is not within 0 to {answer.points:g}")
            return WrittenGrade(marked, points)
    return PENDING


SQLITE = "sqlite:///"        # nbgrader's default db_url: an sqlite file


def _read_only(db_url: str) -> str:
    """An sqlite URL opened read-only (SQLite's URI ``mode=ro``); other databases' URLs as they are."""
    if not db_url.startswith(SQLITE):
        return db_url
    return f"{SQLITE}file:{quote(db_url[len(SQLITE):])}?mode=ro&uri=true"


def read_gradebook(course, students=None) -> GradebookReading:
    """The written answers' grades of ``students`` (default: every student the gradebook has a
    submission of) from the course's nbgrader gradebook. A gradebook that is not there leaves
    everything pending; one that cannot be read too, with the reason in ``problem``."""
    course = Path(course).resolve()
    try:
        db_url, course_id = _gradebook_location(course)
        if db_url.startswith(SQLITE) and not Path(db_url[len(SQLITE):]).is_file():
            return GradebookReading()
        from nbgrader.api import Gradebook, MissingEntry  # noqa: PLC0415
        notebook = Path(NOTEBOOK_NAME).stem
        found, not_grades = {}, []
        with Gradebook(_read_only(db_url), course_id) as gradebook:
            wanted = students if students is not None else [s.id for s in gradebook.students]
            for student in wanted:
                try:
                    submission = gradebook.find_submission_notebook(notebook, ASSIGNMENT_ID, student)
                except MissingEntry:
                    continue
                cells = {g.name: g for g in submission.grades}
                grades = {}
                for answer in WRITTEN_ANSWERS:
                    try:
                        grades[answer.id] = grade_of(cells[answer.answer_cell], answer) \
                            if answer.answer_cell in cells else PENDING
                    except NotAGrade as why:
                        grades[answer.id] = PENDING
                        not_grades.append(f"{student}: {why}")
                found[student] = WrittenScores(MappingProxyType(grades))
        problem = ""
        if not_grades:
            problem = f"the nbgrader gradebook holds {len(not_grades)} entries that are not grades, shown as " \
                      f"pending: {'; '.join(not_grades[:5])}{'; ...' if len(not_grades) > 5 else ''}"
            log.warning("%s", problem)
        return GradebookReading(MappingProxyType(found), problem)
    except Exception as error:  # noqa: BLE001 - an unreadable gradebook leaves the written answers pending, said
        problem = f"the nbgrader gradebook could not be read ({type(error).__name__}: {error}; it is opened " \
                  "read-only, so one of another course is not changed); the written answers are shown as pending"
        log.warning("%s", problem)
        return GradebookReading(problem=problem, unreadable=True)
