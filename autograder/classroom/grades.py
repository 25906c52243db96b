"""The class's grades: one row per student, as the class CSV and as the end-of-run table.

``grades.csv``: student, one column per exercise of the registry (exercises.py), total, max_total,
status and message; points as people write them (results.format_points), the message on one line.
"""

import csv
import io
from dataclasses import dataclass, field

from ..atomic import write_atomic
from ..exercises import EXERCISE_IDS, EXERCISES
from ..results import Result, format_points
from ..text import bounded, escaped

CSV_COLUMNS = ("student",) + EXERCISE_IDS + ("total", "max_total", "status", "message")


@dataclass(frozen=True)
class Row:
    """One student's line of the CSV and of the table."""
    student: str
    scores: dict = field(default_factory=dict)    # {exercise id: points}, every exercise
    total: float = 0.0
    max_total: float = 0.0
    status: str = "error"
    message: str = ""
    grader_fault: bool = False                    # not a grade: graded again on the next run

    @classmethod
    def of(cls, student: str, result: Result, message: str = "") -> "Row":
        return cls(student, result.exercise_scores(), result.total, result.max_total, result.status.value,
                   message, result.grader_fault)


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
                                   format_points(r.total), format_points(r.max_total), r.status,
                                   bounded(" ".join(str(r.message).split()))]
                                  for r in sorted(rows, key=lambda r: r.student)))


def write_csv(rows, path) -> None:
    """The class CSV, written atomically."""
    write_atomic(grades_csv_text(rows), path)


def format_table(rows) -> str:
    """The end-of-run score table: student, points per exercise, total, status."""
    headers = ["student", *(f"{e.id}/{format_points(e.points)}" for e in EXERCISES), "total", "status"]
    body = [[r.student, *(format_points(r.scores.get(e, 0.0)) for e in EXERCISE_IDS),
             f"{format_points(r.total)}/{format_points(r.max_total)}", r.status]
            for r in sorted(rows, key=lambda r: r.student)]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])
