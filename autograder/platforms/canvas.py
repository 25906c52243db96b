"""Canvas' gradebook CSV, filled in from grades.csv:

    python -m autograder export canvas --gradebook EXPORT.csv --output IMPORT.csv
        [--match sis_login_id|login_id|sis_user_id|id|name] [--column TITLE] [--autograded-only]
        [--course-dir DIR] [--grades CSV]

EXPORT.csv is what Canvas' Gradebook "Export" writes: a header ``Student, ID, SIS User ID, SIS Login ID,
Section`` in this order (with SIS ids shown, ``Integration ID`` and ``Root Account`` may follow ``SIS
Login ID``; Canvas' importer checks these positions, so IMPORT.csv keeps them), one column per
assignment named ``Title (id)``, and read-only columns Canvas computes (assignment groups, ``Current
Score``, ``Final Points``...); below the header, a row saying ``Manual Posting`` under the assignments
that post grades manually (when any does; left out of the import, which may omit it), a row whose
first cell is ``    Points Possible`` (the
assignments' maxima), then one row per student; separated by commas, or by semicolons with decimal
commas ("9,50") for a user or locale set so (both read here). IMPORT.csv is the file Canvas' Gradebook "Import"
takes: the identity columns and this assignment's column only, since Canvas changes only the columns an
import holds and creates an assignment for a column it does not know (OSU's CarmenCanvas guide,
"Import a CSV file into Carmen Grades", advises uploading only the changed columns).

The column: the export's ``TITLE (id)`` when there is one (default TITLE: exercises.ASSIGNMENT_TITLE),
else a new column ``TITLE`` whose Points Possible is the assignment's maximum, which Canvas creates as a
new assignment. Which value each matched student gets (``canvas_points``, also what ``canvas push``
posts):

* status ``graded``: the total (autograded + written answers);
* a student-side ``error``: its total, a grade (0 autograded, plus the written answers);
* ``manual_pending`` (a written answer not graded yet): no total exists, so nothing is written and the
  student is listed; with ``--autograded-only`` the column is the autograded part alone for everyone
  (``auto``, out of ``auto_max``, which is then the Points Possible);
* a grader-side ``error``: never a grade, never 0: nothing is written and the student is listed.

A student left out keeps the cell the export had (so the import changes nothing for them); so does a
student whose cell is ``EX`` (excused in Canvas: a person's decision, which canvas push also keeps) or
``N/A`` (the assignment is not assigned to them: Canvas' import would drop the grade). Matching
(``--match``, ``MATCHES``) compares nbgrader's student id with one identity column, ignoring case and
surrounding blanks: ``sis_login_id`` (default) the ``SIS Login ID`` column (the user's login, the API's
``login_id``; ``login_id`` is the same, by the API's name: the export has no other login column),
``sis_user_id`` the ``SIS User ID``, ``id`` Canvas' numeric user ``ID``, and ``name`` the ``Student``
column, Canvas' sortable name ("Last, First"): only for a course whose nbgrader ids are those names.
A Canvas key held by several students matches no one.

Students unmatched on either side, and those left out, are listed on stderr and counted in the summary.
Exit status: 0 when every student of both files got their grade, 3 when someone was left out or
unmatched (the file is still written), 2 for a usage error or a file that is not what it should be.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic
from ..classroom.grades import POINTS_TOLERANCE, ClassGrade, GradesFileError, csv_text, read_csv
from ..exercises import ASSIGNMENT_TITLE
from ..results import format_points

EXIT_LEFT_OUT = 3            # the file is written, but someone was left out or unmatched (as grade-class's 3)
POINTS_POSSIBLE = "Points Possible"
POINTS_POSSIBLE_CELL = "    Points Possible"      # the export's first cell of that row, padded as Canvas pads it
IDENTITY_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Root Account", "Section")

# --match: (the export's column, the first present of these; the Canvas API User's attribute)
MATCHES = {
    "sis_login_id": (("SIS Login ID",), "login_id"),
    "login_id": (("SIS Login ID",), "login_id"),
    "sis_user_id": (("SIS User ID",), "sis_user_id"),
    "id": (("ID",), "id"),
    "name": (("Student",), "sortable_name"),
}
DEFAULT_MATCH = "sis_login_id"


class CanvasFileError(ValueError):
    """A gradebook export that is not one Canvas wrote (no header, no ID column, an ambiguous column)."""


# --- which value, and whom: shared with canvas push -----------------------------------------------------

GRADER_ERROR = "grader-side error, not a grade (grade it again)"
PENDING = "written answers not graded yet"
EXCUSED = "excused in Canvas (EX), kept"
NOT_ASSIGNED = "not assigned to them in Canvas (N/A)"
# The export's cells that are no score (GradebookExporter): the import keeps them as they are
KEPT_CELLS = {"EX": EXCUSED, "N/A": NOT_ASSIGNED}


def canvas_points(grade: ClassGrade, *, autograded_only: bool = False) -> float | None:
    """The points Canvas gets for ``grade``, or None when it gets nothing (``left_out``)."""
    if grade.grader_fault:
        return None
    return grade.auto if autograded_only else grade.total


def left_out(grade: ClassGrade, *, autograded_only: bool = False) -> str | None:
    """Why ``grade`` sends Canvas nothing (GRADER_ERROR, PENDING), or None when it sends points."""
    if grade.grader_fault:
        return GRADER_ERROR
    return None if canvas_points(grade, autograded_only=autograded_only) is not None else PENDING


def points_possible(grades, *, autograded_only: bool = False) -> float:
    """The assignment's maximum (max_total, or auto_max with --autograded-only), the same on every row;
    GradesFileError when rows disagree (a grades.csv put together from two releases)."""
    maxima = {g.auto_max if autograded_only else g.max_total for g in grades}
    if len(maxima) > 1:
        raise GradesFileError(f"grades.csv's rows are out of different maxima: {sorted(maxima)}")
    return maxima.pop() if maxima else 0.0


def other_maximum(assignment: str, theirs: float, maximum: float) -> str | None:
    """The note saying Canvas' assignment is out of other points than grades.csv's, or None when they agree
    (export canvas and canvas push both send the points as they are)."""
    if abs(theirs - maximum) <= POINTS_TOLERANCE * max(1.0, maximum):
        return None
    return (f"Canvas' assignment {assignment!r} is out of {format_points(theirs)} points, grades.csv's of "
            f"{format_points(maximum)}: the points are sent as they are; change the assignment's points in Canvas "
            "if they should match")


def match_key(value) -> str | None:
    """An identity as matching compares it: text, blanks around it and case ignored; None when blank."""
    text = "" if value is None else str(value).strip().casefold()
    return text or None


@dataclass
class Matching:
    """grades.csv's students paired with Canvas' entries (export rows or API users)."""
    pairs: list = field(default_factory=list)          # (ClassGrade, entry)
    only_grades: list = field(default_factory=list)    # students of grades.csv Canvas has not
    only_canvas: list = field(default_factory=list)    # Canvas' entries no grades.csv row matched
    ambiguous: list = field(default_factory=list)      # keys several Canvas entries hold


def match(grades, entries, key_of) -> Matching:
    """Pair each grade with the Canvas entry whose ``key_of(entry)`` is its student id (``match_key``)."""
    by_key = {}
    for entry in entries:
        by_key.setdefault(match_key(key_of(entry)), []).append(entry)
    found = Matching(ambiguous=sorted(k for k, held in by_key.items() if k is not None and len(held) > 1))
    used = set()
    for grade in grades:
        held = by_key.get(match_key(grade.student)) or []
        if len(held) == 1 and match_key(grade.student) is not None:
            found.pairs.append((grade, held[0]))
            used.add(id(held[0]))
        else:
            found.only_grades.append(grade.student)
    found.only_canvas = [e for e in entries if id(e) not in used]
    return found


# --- the export and the import --------------------------------------------------------------------------

@dataclass
class Gradebook:
    """A Canvas gradebook export: its header, the Points Possible row (or None) and the students' rows."""
    header: list
    points_row: list | None
    students: list            # rows (lists of cells) with an ID
    other_rows: int = 0       # rows neither a student nor Points Possible (left out of the import)

    def column(self, name: str) -> int | None:
        return self.header.index(name) if name in self.header else None


def delimiter(text: str) -> str:
    """The export's field separator, decided as Canvas' importer decides it (GradebookImporter
    identify_delimiter): ";" when its first three lines split into the same number of fields, more than
    "," gives; else ",". Canvas writes ";" for a user with semicolon separators, or with autodetection
    in a locale whose decimal separator is a comma (CSVWithI18n); the numbers are then "9,50"."""
    lines = text.splitlines()[:3]
    counts = {}
    for separator in (";", ","):
        try:
            fields = {len(next(csv.reader([line], delimiter=separator), [])) for line in lines}
        except csv.Error:
            fields = set()
        counts[separator] = fields.pop() if len(fields) == 1 else 0
    return ";" if counts[";"] > counts[","] else ","


def canvas_number(text: str) -> float:
    """A number as Canvas' export writes it in any locale ("10.00", "10,00"); ValueError when it is none."""
    text = text.strip()
    if re.fullmatch(r"-?[0-9.,]+", text):
        whole, _, decimals = text.replace(",", ".").rpartition(".")
        text = f"{whole.replace('.', '')}.{decimals}" if whole or _ else decimals
    return float(text)


def parse_gradebook(text: str) -> Gradebook:
    """A gradebook export's rows (comma- or semicolon-separated, as Canvas writes either);
    CanvasFileError when it has no header with Student and ID columns."""
    text = text.lstrip("\ufeff")
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter(text))
            if any(cell.strip() for cell in row)]
    if not rows:
        raise CanvasFileError("the gradebook export is empty")
    header = [cell.strip() for cell in rows[0]]
    for needed in ("Student", "ID"):
        if needed not in header:
            raise CanvasFileError(f"the gradebook export has no {needed!r} column: is it Canvas' Gradebook export?")
    width, student_id = len(header), header.index("ID")
    book = Gradebook(header, None, [])
    for row in rows[1:]:
        row = (row + [""] * width)[:width]
        if row[0].strip() == POINTS_POSSIBLE and book.points_row is None:
            book.points_row = row
        elif row[student_id].strip():
            book.students.append(row)
        else:
            book.other_rows += 1
    return book


def find_column(header, title: str) -> str | None:
    """The export's column of the assignment: ``title`` itself when the header has it (a full
    "Title (id)"), else the one column "title (id)"; None when there is none; CanvasFileError when several."""
    if title in header:
        return title
    found = [h for h in header if re.fullmatch(re.escape(title) + r" \(\d+\)", h)]
    if len(found) > 1:
        raise CanvasFileError(f"several columns are {title!r}: {', '.join(found)}; name one with --column")
    return found[0] if found else None


@dataclass
class ImportOutcome:
    text: str                                          # IMPORT.csv
    column: str
    created: bool                                      # a new column (Canvas creates the assignment)
    written: list = field(default_factory=list)        # (student, points)
    left_out: dict = field(default_factory=dict)       # {reason: [student]}
    matching: Matching = field(default_factory=Matching)
    notes: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.left_out or self.matching.only_grades or self.matching.only_canvas)


def import_csv(book: Gradebook, grades, *, match_by: str = DEFAULT_MATCH, title: str = ASSIGNMENT_TITLE,
               autograded_only: bool = False) -> ImportOutcome:
    """The import file for ``book`` with this assignment's column filled in from ``grades``."""
    columns, _ = MATCHES[match_by]
    key_column = next((c for c in columns if c in book.header), None)
    if key_column is None:
        raise CanvasFileError(f"--match {match_by} needs a {' or '.join(map(repr, columns))} column, which the "
                              "gradebook export has not")
    maximum = points_possible(grades, autograded_only=autograded_only)
    column = find_column(book.header, title)
    outcome = ImportOutcome("", column or title, column is None)
    if column is not None and book.points_row is not None:
        try:
            note = other_maximum(column, canvas_number(book.points_row[book.column(column)]), maximum)
        except ValueError:          # "(read only)" or blank: nothing to compare
            note = None
        outcome.notes += [note] if note else []
    key_at = book.column(key_column)
    outcome.matching = match(grades, book.students, lambda row: row[key_at])
    identity = [c for c in book.header if c in IDENTITY_COLUMNS]
    cells = {id(row): row[book.column(column)] if column is not None else "" for row in book.students}
    for grade, row in outcome.matching.pairs:
        reason = left_out(grade, autograded_only=autograded_only) or KEPT_CELLS.get(cells[id(row)].strip().upper())
        if reason:
            outcome.left_out.setdefault(reason, []).append(grade.student)
        else:
            points = canvas_points(grade, autograded_only=autograded_only)
            cells[id(row)] = format_points(points)
            outcome.written.append((grade.student, points))
    for grade in grades:          # unmatched students' reasons are said too: a grader error is never lost
        reason = left_out(grade, autograded_only=autograded_only)
        if reason and grade.student in outcome.matching.only_grades:
            outcome.left_out.setdefault(reason, []).append(grade.student)
    possible = book.points_row[book.column(column)] if column is not None and book.points_row else \
        format_points(maximum)
    body = [[POINTS_POSSIBLE_CELL, *[""] * (len(identity) - 1), possible]]
    body += [[row[book.column(c)] for c in identity] + [cells[id(row)]] for row in book.students]
    outcome.text = csv_text([*identity, outcome.column], body)
    return outcome


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder export canvas",
                                description="Write the gradebook CSV Canvas imports, this assignment's column "
                                            "filled in from grades.csv.")
    p.add_argument("--gradebook", required=True, metavar="EXPORT.csv", help="the CSV Canvas' Gradebook exported")
    p.add_argument("--output", required=True, metavar="IMPORT.csv", help="where to write the CSV to import")
    p.add_argument("--match", choices=tuple(MATCHES), default=DEFAULT_MATCH,
                   help="the Canvas identity nbgrader's student id is (default: %(default)s)")
    p.add_argument("--column", default=ASSIGNMENT_TITLE, metavar="TITLE",
                   help="the assignment's title in Canvas, or its whole column name 'Title (id)' "
                        "(default: %(default)r; a new column when the export has none)")
    p.add_argument("--autograded-only", action="store_true",
                   help="the autograded points alone, out of the autograded maximum (written answers pending "
                        "or graded elsewhere)")
    p.add_argument("--course-dir", default=".", help="the nbgrader course folder (default: current directory)")
    p.add_argument("--grades", help="grade-class's CSV (default: COURSE_DIR/grades.csv)")
    return p


def report_left_out(out, left: dict, matching: Matching, canvas_name) -> None:
    """The students left out, each reason on a line, to ``out`` (stderr)."""
    for reason, students in left.items():
        print(f"left out, {reason} ({len(students)}): {', '.join(students)}", file=out)
    if matching.only_grades:
        print(f"in grades.csv, not matched in Canvas ({len(matching.only_grades)}): "
              f"{', '.join(matching.only_grades)}", file=out)
    if matching.only_canvas:
        names = [canvas_name(e) for e in matching.only_canvas]
        print(f"in Canvas, no row in grades.csv ({len(names)}): {'; '.join(names)}", file=out)
    if matching.ambiguous:
        print(f"held by several Canvas students, matched to none: {', '.join(matching.ambiguous)}", file=out)


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    grades_path = Path(args.grades) if args.grades else Path(args.course_dir) / "grades.csv"
    try:
        grades = read_csv(grades_path)
        book = parse_gradebook(Path(args.gradebook).read_text(encoding="utf-8-sig"))
        outcome = import_csv(book, grades, match_by=args.match, title=args.column,
                             autograded_only=args.autograded_only)
        write_atomic(outcome.text, args.output)
    except (OSError, GradesFileError, CanvasFileError) as e:
        print(f"export canvas: {e}", file=sys.stderr)
        return 2
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    student = book.column("Student")
    report_left_out(sys.stderr, outcome.left_out, outcome.matching, lambda row: row[student])
    left = sum(map(len, outcome.left_out.values()))
    print(f"wrote {args.output}: column {outcome.column!r}{' (new: Canvas creates the assignment)' * outcome.created}"
          f", {len(outcome.written)} grades; {left} left out, {len(outcome.matching.only_grades)} of grades.csv "
          f"and {len(outcome.matching.only_canvas)} of Canvas unmatched")
    return 0 if outcome.complete else EXIT_LEFT_OUT
