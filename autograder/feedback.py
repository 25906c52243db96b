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
from .exercises import ASSIGNMENT_TITLE, EXERCISES, WRITTEN_ANSWERS
from .results import Result, format_points
from .templates import template
from .text import bounded, shortened

HEADING = f"<h1>{ASSIGNMENT_TITLE}: feedback</h1>"


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


COMMENT_CHARS = 4000          # a plain-text summary (a Canvas submission comment): a few KB, whole lines fit
COMMENT_LINE_CHARS = 300      # one failed check's message in it


def plain_text(result: Result, *, written: WrittenScores | None = None, limit: int = COMMENT_CHARS) -> str:
    """The feedback page's content as plain text of at most ``limit`` characters (a submission comment
    on Canvas): the points, the error if any, then per exercise its points and each failed check's
    message on one line (cut at COMMENT_LINE_CHARS; an error's message once, not under every check).
    Built from the same groups as the page, so it says nothing the page does not (no hidden check's
    code, id or expected values)."""
    written = _written(written or WrittenScores())
    manual = "pending" if written["total"] is None else written["total"]
    lines = [f"{ASSIGNMENT_TITLE}: autograded {format_points(result.total)} / {format_points(result.max_total)} "
             f"points; written answers {manual} / {written['max_total']} points."]
    if result.status.value == "error":
        lines.append(shortened(" ".join(f"Not graded: {result.error or 'unknown reason'}".split()), COMMENT_LINE_CHARS))
        if result.grader_fault:
            lines.append("This is a problem on the grader's side, not in your notebook: it will be graded again.")
    for group in _groups(result):
        lines.append(f"{group['title']}: {group['points']} / {group['out_of']}")
        lines += [f"  - {shortened(' '.join(row['message'].split()), COMMENT_LINE_CHARS)}"
                  for row in group["rows"] if not row["passed"] and row["message"] != result.error]
    text = "\n".join(lines)
    if len(text) <= limit:
        return bounded(text, limit)
    note = "\n... (the rest is on your feedback page)"
    return bounded(text[:max(0, limit - len(note))].rsplit("\n", 1)[0] + note, limit)
