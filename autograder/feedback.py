"""Per-student feedback pages built from a Result: what passed, what failed and why, the points.

The page (templates/feedback.html, rendered by jinja2 with autoescaping on) shows, per exercise,
each check's outcome, its points and the message the grader wrote for the student. It never shows a
hidden check's code, its id or its expected values: the only text taken from the checks is the
rows' ``message``. Below them, the written answers: graded by a person (formgrader's gradebook, read
by classroom/written.py), each pending or with its points; the autograded and the written points
are totalled apart. Everything a student can influence (their id, the messages, which may quote
their output or exception text) is escaped by the template engine.
"""

from pathlib import Path

from .atomic import write_atomic
from .classroom.written import Marked, WrittenScores
from .exercises import EXERCISES, WRITTEN_ANSWERS
from .results import Result, format_points
from .templates import template
from .text import bounded

HEADING = "<h1>Batch Normalization: feedback</h1>"


def _one_line_per_check(rows) -> list:
    """Rows of one exercise with a parametrised check's cases ("<id>[28x28x1-10]", "<id>[64x64x3-5]")
    made one line: the points summed, passed only when every case passed, and the message once
    (each distinct failure's message when some failed)."""
    merged = {}
    for row in rows:
        merged.setdefault(row.id.split("[", 1)[0], []).append(row)
    lines = []
    for cases in merged.values():
        passed = all(r.passed for r in cases)
        messages = [r.message or ("passed" if r.passed else "failed") for r in cases if r.passed == passed]
        lines.append({"passed": passed, "points": format_points(sum(r.points for r in cases)),
                      "max_points": format_points(sum(r.max_points for r in cases)),
                      "message": "\n".join(dict.fromkeys(messages))})
    return lines


def _groups(result: Result) -> list:
    """One group per exercise in the registry's order, then any checks of unknown exercises."""
    by_exercise = {}
    for row in result.checks:
        by_exercise.setdefault(row.exercise, []).append(row)
    groups = [(e.id, e.title, e.points) for e in EXERCISES]
    known = {e.id for e in EXERCISES}
    groups += [(exercise, "Other checks", None) for exercise in by_exercise if exercise not in known]
    shown = []
    for exercise, title, points in groups:
        rows = by_exercise.get(exercise, [])
        out_of = sum(r.max_points for r in rows) if rows else (points or 0)
        shown.append({"title": title, "points": format_points(sum(r.points for r in rows)),
                      "out_of": format_points(out_of),
                      "rows": _one_line_per_check(rows)})
    return shown


def _written(written: WrittenScores) -> dict:
    """The written answers' part of the page: each answer's title, points or "pending", and the total."""
    answers = []
    for answer in WRITTEN_ANSWERS:
        grade = written.grades[answer.id]
        answers.append({"title": answer.title, "out_of": format_points(answer.points),
                        "points": None if grade.points is None else format_points(grade.points),
                        "unanswered": grade.marked is Marked.UNANSWERED})
    total = written.total
    return {"answers": answers, "pending": len(written.pending), "max_total": format_points(written.max_total),
            "total": None if total is None else format_points(total)}


def render(result: Result, *, student: str = "", message: str = "", written: WrittenScores | None = None) -> str:
    """The feedback page (a complete HTML document) for one result and the written answers' grades
    (all pending when not given). The result's text is bounded already (results.py); the notes on
    the hand-in (``message``: file names) and the student's id are bounded here, their control
    characters escaped."""
    student, message = bounded(student, 300), bounded(message)
    return template("feedback.html").render(student=student, total=format_points(result.total),
                              max_total=format_points(result.max_total),
                              error=(result.error or "unknown reason") if result.status.value == "error" else "",
                              grader_fault=result.grader_fault, message=message, groups=_groups(result),
                              written=_written(written or WrittenScores()))


def write(result: Result, path, *, student: str = "", message: str = "", written: WrittenScores | None = None) -> Path:
    """Render and write the feedback page for ``result`` to ``path`` (atomically)."""
    write_atomic(render(result, student=student, message=message, written=written), path)
    return Path(path)
