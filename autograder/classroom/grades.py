"""The class's grades: one row per student, as the class CSV and as the end-of-run table.

``grades.csv``: student, one column per exercise of the registry (exercises.py), one per written
answer (its points, blank while a person has not graded it: written.py reads them from nbgrader's
gradebook), then ``auto`` and ``auto_max`` (the isolated grader's points), ``manual`` and
``manual_max`` (the written answers', blank while any is pending), ``total`` and ``max_total``
(auto + manual; the total is blank while a written answer is pending: no manual score is made up;
and when the grader failed: its 0 is no autograded score),
``status``, ``error_side`` and ``message``. The status is ``error`` (the message says why; ``error_side``
says whose: ``grader``, no grade, graded again on the next run, or ``student``, a grade; blank for
any other status), ``manual_pending`` (the
autograded points are in; a person has still to grade a written answer) or ``graded``. Points as
people write them (results.format_points), the message on one line.
``read_csv`` is the one reader of the file (export canvas and canvas push read it): typed rows
(``ClassGrade``), validated, a malformed file a ``GradesFileError`` naming the line.
The table grade-class prints (``format_table``) fits a 100-column terminal: exercises by number,
with a legend, and points to two decimals.
"""

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic
from ..errors import Side
from ..exercises import EXERCISE_IDS, EXERCISES, WRITTEN_IDS
from ..results import Result, format_points
from ..text import bounded, escaped
from .written import WrittenScores

CSV_COLUMNS = ("student",) + EXERCISE_IDS + WRITTEN_IDS + (
    "auto", "auto_max", "manual", "manual_max", "total", "max_total", "status", "error_side", "message")
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
    def error_side(self) -> str:
        """The CSV's error_side: whose fault an error row is ("grader": not a grade; "student": a grade),
        blank for a row without an error. Said outright, so no reader guesses it from the message."""
        if self.status != "error":
            return ""
        return Side.GRADER.value if self.grader_fault else Side.STUDENT.value

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


def uninert(cell: str) -> str:
    """The text ``inert`` was given: its quote taken off again (reading back a CSV written here)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_LEADING) else cell


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
                                   r.class_status, r.error_side, bounded(" ".join(str(r.message).split()))]
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


# --- reading grades.csv back (export canvas, canvas push) -----------------------------------------------

STATUSES = ("graded", MANUAL_PENDING, "error")
SIDES = tuple(side.value for side in Side)        # an error row's error_side
POINTS_TOLERANCE = 1e-6      # grades.csv writes points with %g: its sums may differ from their parts in the 6th digit


class GradesFileError(ValueError):
    """A grades.csv that is not one grade-class wrote (a missing column, a number that is not one)."""


@dataclass(frozen=True)
class ClassGrade:
    """One row of grades.csv, read back: the points as numbers, a blank as None."""
    student: str
    auto: float
    auto_max: float
    manual: float | None          # the written answers' points; None while any is pending
    manual_max: float
    total: float | None           # auto + manual; None while pending, or when the grader failed
    max_total: float
    status: str                   # graded, manual_pending or error
    error_side: str = ""          # an error row's: "grader" (not a grade) or "student" (a grade); else ""
    message: str = ""

    @property
    def grader_fault(self) -> bool:
        """Not a grade: the grader failed, not the student (grades.csv's error_side says so; such a row's
        total is blank). A student's error is a grade: its total is the written answers' points and 0
        autograded, blank only while those are pending."""
        return self.error_side == Side.GRADER.value

    @property
    def pending(self) -> bool:
        """No total yet because a person has still to grade a written answer."""
        return self.total is None and not self.grader_fault


def _number(row: dict, column: str, line: int, *, blank_ok: bool = False) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        if blank_ok:
            return None
        raise GradesFileError(f"line {line}: {column} is blank")
    try:
        value = float(text)
    except ValueError:
        raise GradesFileError(f"line {line}: {column} is {text[:40]!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise GradesFileError(f"line {line}: {column} is {text[:40]!r}, not a finite number of points >= 0")
    return value


def _within(line: int, name: str, points: float | None, most: float) -> None:
    if points is not None and points > most + POINTS_TOLERANCE:
        raise GradesFileError(f"line {line}: {name} {points:g} is above its maximum {most:g}")


def parse_csv(text: str) -> list:
    """grades.csv's rows as ClassGrade, in the file's order; GradesFileError, naming the line, when the
    file is not a grades.csv: a column missing, a student twice or unnamed, an unknown status, a number
    that is not finite, below 0 or above its maximum, a total that is not auto + manual, or a blank
    where the status says there is a number."""
    reader = csv.DictReader(io.StringIO(text))
    needed = ("student", "auto", "auto_max", "manual", "manual_max", "total", "max_total", "status", "error_side",
              "message")
    missing = [c for c in needed if c not in (reader.fieldnames or ())]
    if missing:
        raise GradesFileError(f"not a grades.csv of this grade-class: no column {', '.join(missing)} (a file "
                              "written by an older grade-class: run grade-class again, which rewrites it)")
    found, seen = [], set()
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise GradesFileError(f"line {line}: more cells than columns")
        student = uninert((row["student"] or "").strip())
        if not student:
            raise GradesFileError(f"line {line}: no student")
        if student in seen:
            raise GradesFileError(f"line {line}: student {student!r} twice")
        seen.add(student)
        status = (row["status"] or "").strip()
        if status not in STATUSES:
            raise GradesFileError(f"line {line}: status {status[:40]!r} is none of {', '.join(STATUSES)}")
        side = (row["error_side"] or "").strip()
        if (status == "error") != (side in SIDES) or (status != "error" and side):
            raise GradesFileError(f"line {line}: error_side {side[:40]!r} with status {status}: an error row's is "
                                  f"{' or '.join(SIDES)}, any other row's is blank")
        grade = ClassGrade(student, _number(row, "auto", line), _number(row, "auto_max", line),
                           _number(row, "manual", line, blank_ok=True), _number(row, "manual_max", line),
                           _number(row, "total", line, blank_ok=True), _number(row, "max_total", line),
                           status, side, uninert(row["message"] or ""))
        _within(line, "auto", grade.auto, grade.auto_max)
        _within(line, "manual", grade.manual, grade.manual_max)
        _within(line, "total", grade.total, grade.max_total)
        if abs(grade.auto_max + grade.manual_max - grade.max_total) > POINTS_TOLERANCE * max(1.0, grade.max_total):
            raise GradesFileError(f"line {line}: max_total is not auto_max + manual_max")
        if grade.total is not None and (grade.manual is None or abs(grade.auto + grade.manual - grade.total)
                                        > POINTS_TOLERANCE * max(1.0, grade.max_total)):
            raise GradesFileError(f"line {line}: total is not auto + manual")
        if status == "graded" and grade.total is None:
            raise GradesFileError(f"line {line}: status graded with a blank total")
        if status == MANUAL_PENDING and grade.total is not None:
            raise GradesFileError(f"line {line}: status {MANUAL_PENDING} with a total")
        if grade.grader_fault and (grade.total is not None or grade.auto):
            raise GradesFileError(f"line {line}: a grader-side error with points: it is no grade")
        found.append(grade)
    return found


def read_csv(path) -> list:
    """The one reader of grades.csv (``parse_csv``); OSError when it cannot be read."""
    return parse_csv(Path(path).read_text(encoding="utf-8"))
