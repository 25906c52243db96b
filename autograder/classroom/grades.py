"""The class's grades: one row per student, as the class CSV and as the end-of-run table.

``grades.csv``: student, one column per exercise of the registry (exercises.py), one per written
answer (its points, blank while a person has not graded it: written.py reads them from nbgrader's
gradebook), then ``auto`` and ``auto_max`` (the isolated grader's points), ``manual`` and
``manual_max`` (the written answers', blank while any is pending), ``total`` and ``max_total``
(auto + manual; the total is blank while a written answer is pending: no manual score is made up;
and when the grader failed: its 0 is no autograded score),
``status`` and ``message``. The status is ``error`` (the message says why), ``manual_pending`` (the
autograded points are in; a person has still to grade a written answer) or ``graded``. Points as
people write them (results.format_points), the message on one line.
The table grade-class prints (``format_table``) fits a 100-column terminal: exercises by number,
with a legend, and points to two decimals.
"""

import csv
import io
from dataclasses import dataclass, field

from ..atomic import write_atomic
from ..exercises import EXERCISE_IDS, EXERCISES, WRITTEN_IDS
from ..results import Result, format_points
from ..text import bounded, escaped
from .written import WrittenScores

CSV_COLUMNS = ("student",) + EXERCISE_IDS + WRITTEN_IDS + (
    "auto", "auto_max", "manual", "manual_max", "total", "max_total", "status", "message")
MANUAL_PENDING = "manual_pending"      # the CSV's status while a written answer waits for a person
TABLE_WIDTH = 100          # the terminal the end-of-run table fits


@dataclass(frozen=True)
class Row:
    """One student's line of the CSV and of the table. ``total``, ``max_total`` and ``status`` are the
    isolated grader's (autograded points; graded or error); ``written`` the written answers'."""
    student: str
    scores: dict = field(default_factory=dict)    # {exercise id: points}, every exercise
    total: float = 0.0
    max_total: float = 0.0
    status: str = "error"
    message: str = ""
    grader_fault: bool = False                    # not a grade: graded again on the next run
    written: WrittenScores = field(default_factory=WrittenScores)

    @classmethod
    def of(cls, student: str, result: Result, message: str = "", written: WrittenScores | None = None) -> "Row":
        return cls(student, result.exercise_scores(), result.total, result.max_total, result.status.value,
                   message, result.grader_fault, written or WrittenScores())

    @property
    def class_status(self) -> str:
        """The CSV's status: the grader's error first, then whether a written answer is pending."""
        if self.status == "error":
            return self.status
        return MANUAL_PENDING if self.written.pending else self.status

    @property
    def grand_total(self) -> float | None:
        """Autograded plus written points; None while a written answer is pending, or when the
        autograded part was not graded because of the grader (its 0 is no grade)."""
        manual = self.written.total
        return None if manual is None or self.grader_fault else self.total + manual


def _points_or_blank(points) -> str:
    return "" if points is None else format_points(points)


FORMULA_LEADING = ("=", "+", "-", "@", "\t", "\r")


def inert(value):
    """A CSV cell that a spreadsheet shows as text: a string beginning with = + - @ (or a tab or
    carriage return) is prefixed with a single quote, as OWASP's CSV-injection guidance says.
    Numbers are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADING):
        return "'" + value
    return value


def csv_text(columns, rows) -> str:
    """A CSV document: the header, then each row with every text cell made ``inert`` and its control
    characters escaped (every CSV the class side writes: grades, mistakes, checks, similarity)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([inert(escaped(cell) if isinstance(cell, str) else cell) for cell in row])
    return buf.getvalue()


def grades_csv_text(rows) -> str:
    """The class CSV (``CSV_COLUMNS``), one row per student in the students' order. The message (a
    hand-in's file names, the result's error) is bounded, on one line, with control characters escaped."""
    return csv_text(CSV_COLUMNS, ([r.student, *(format_points(r.scores.get(e, 0.0)) for e in EXERCISE_IDS),
                                   *(_points_or_blank(r.written.grades[w].points) for w in WRITTEN_IDS),
                                   format_points(r.total), format_points(r.max_total),
                                   _points_or_blank(r.written.total), format_points(r.written.max_total),
                                   _points_or_blank(r.grand_total), format_points(r.max_total + r.written.max_total),
                                   r.class_status, bounded(" ".join(str(r.message).split()))]
                                  for r in sorted(rows, key=lambda r: r.student)))


def write_csv(rows, path) -> None:
    """The class CSV, written atomically."""
    write_atomic(grades_csv_text(rows), path)


def _table_points(points) -> str:
    """Points in the table: at most two decimals (grades.csv keeps them whole)."""
    return format_points(round(float(points), 2))


def format_table(rows, width: int = TABLE_WIDTH) -> str:
    """The end-of-run score table, no line longer than ``width``: a legend naming the exercises by
    number, then student, points per exercise (headed 1, 2, ...), the autograded points ("auto"), the
    written answers' ("manual": "-" until a person has graded them all) and the CSV's status.
    A student id too long for the line is cut, ending in "..."."""
    legend = ["exercises (points):"]
    for n, exercise in enumerate(EXERCISES, start=1):
        item = f" {n} {exercise.id} ({format_points(exercise.points)})" + ("," if n < len(EXERCISES) else "")
        if len(legend[-1]) + len(item) > width:
            legend.append(" ")
        legend[-1] += item
    headers = ["student", *(str(n) for n in range(1, len(EXERCISES) + 1)), "auto", "manual", "status"]
    body = [[r.student, *(_table_points(r.scores.get(e, 0.0)) for e in EXERCISE_IDS),
             f"{_table_points(r.total)}/{_table_points(r.max_total)}",
             "-" if r.written.total is None else
             f"{_table_points(r.written.total)}/{_table_points(r.written.max_total)}", r.class_status]
            for r in sorted(rows, key=lambda r: r.student)]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body, strict=True)]
    gaps = ["  ", *[" "] * (len(EXERCISES) - 1), "  ", "  ", "  "]      # before each column after the first
    room = width - sum(widths[1:]) - sum(map(len, gaps))
    widths[0] = max(len(headers[0]), min(widths[0], room))

    def line(cells):
        name = str(cells[0])
        text = (name if len(name) <= widths[0] else name[:widths[0] - 3] + "...").ljust(widths[0])
        for i, (gap, cell) in enumerate(zip(gaps, cells[1:], strict=True), start=1):
            text += gap + (str(cell).ljust(widths[i]) if i == len(cells) - 1 else str(cell).rjust(widths[i]))
        return text.rstrip()
    return "\n".join(legend + [line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])
