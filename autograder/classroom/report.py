"""The class report: what the class got wrong, from the results grade-class stored.

    python -m autograder report batchnorm [--course-dir DIR]

(``grade-class`` writes the same at the end of every run.) From every student's
``grade-class/<student>/batchnorm/results.json`` (store.py) it writes, in ``grade-class/``:

* ``report.html`` -- one self-contained page (plots embedded as PNG, no script, no network) with
  the autograded score distribution, the written answers graded by a person (from nbgrader's
  gradebook, written.py: per answer how many are graded and their mean, and how many are still to
  be graded), kept apart from the autograded points, the mean score per exercise, the pass rate of
  every check, the named mistakes ranked by how many students made them (each with its description and its students),
  the error rows split into the students' and the grader's, and the grading time per submission;
* ``mistakes.csv`` -- ``mistake, exercise, description, students, count``: one row per mistake
  code (results.json's ``"mistake"``, known_mistakes.mistake_codes), students joined by "; ";
* ``checks.csv`` -- ``check, exercise, points, pass_rate``.

What counts: a result on the grader's side (``Result.grader_fault``) is not a grade and appears
only among the errors. The score distribution counts every other result (a student's error is a
grade of 0); pass rates, means and mistakes count the submissions that were graded.

Size: the page grows with the number of distinct mistakes, checks and error reasons, not with the
number of students: each list of students shows at most ``MAX_NAMES`` names (the CSV has them
all), and errors are grouped by their reason. Everything a student can influence (their id, the
messages) is escaped by jinja2 in the page, and made inert in the CSVs (``inert``).
"""

import argparse
import base64
import io
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import known_mistakes
from ..atomic import write_atomic
from ..errors import Side
from ..exercises import ASSIGNMENT_ID, BY_ID, EXERCISE_IDS, MANUAL_POINTS, WRITTEN_ANSWERS, unknown_assignment
from ..results import Status, format_points
from ..templates import template
from . import store
from .grades import csv_text
from .written import GradebookReading, read_gradebook

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
MISTAKES_CSV = "mistakes.csv"
CHECKS_CSV = "checks.csv"
MISTAKES_COLUMNS = ("mistake", "exercise", "description", "students", "count")
CHECKS_COLUMNS = ("check", "exercise", "points", "pass_rate")
MAX_NAMES = 40            # students named per mistake or error reason in the page (the CSV lists all)
MAX_ERROR_REASONS = 25    # distinct error reasons shown per side


def readme_codes() -> str:
    """The README's list of mistake codes (between its <!-- mistake codes --> markers): one line per
    exercise, its codes in the tables' order (their descriptions are in mistakes.csv and the report)."""
    by_exercise = {}
    for code in known_mistakes.mistake_codes():
        by_exercise.setdefault(code.split(".", 1)[0], []).append(f"`{code}`")
    return "\n".join(f"- {', '.join(codes)}" for codes in by_exercise.values())


# --- the data ---------------------------------------------------------------------------------------

@dataclass
class Mistake:
    code: str
    exercise: str
    description: str
    students: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.students)


@dataclass
class CheckRate:
    check: str
    exercise: str
    points: float
    passed: int = 0
    graded: int = 0

    @property
    def pass_rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


@dataclass
class ErrorReason:
    side: str
    reason: str
    students: list = field(default_factory=list)


@dataclass
class ClassData:
    """Everything the report shows, computed from the stored results."""
    results: dict                                   # {student: Result}
    unreadable: dict = field(default_factory=dict)  # {student: why its results.json could not be read}
    mistakes: list = field(default_factory=list)    # Mistake, most students first
    checks: list = field(default_factory=list)      # CheckRate, in exercise order
    errors: dict = field(default_factory=dict)      # {"student" | "grader": [ErrorReason, most first]}
    manual: GradebookReading = field(default_factory=GradebookReading)   # the written answers: a person's grades

    @property
    def grades(self) -> dict:
        """The results that are grades (not the grader's faults)."""
        return {s: r for s, r in self.results.items() if not r.grader_fault}

    @property
    def written_pending(self) -> int:
        """How many written answers of the students with a grade a person has still to grade."""
        return sum(len(self.manual.of(s).pending) for s in self.grades)

    @property
    def graded(self) -> dict:
        """The submissions that were graded (status graded)."""
        return {s: r for s, r in self.results.items() if r.status is Status.GRADED}


def read_results(course, students=None):
    """({student: Result}, {student: why unreadable}) of every stored result in ``grade-class/``
    (only ``students``' when given)."""
    root = Path(course) / store.OUTPUT_DIR
    found, unreadable = {}, {}
    wanted = None if students is None else set(students)
    if not root.is_dir():
        return found, unreadable
    for folder in sorted(root.iterdir()):
        student = folder.name
        if not folder.is_dir() or (wanted is not None and student not in wanted) \
                or not store.result_path(course, student).is_file():
            continue
        try:
            found[student] = store.read_result(course, student)
        except (OSError, ValueError) as exc:
            unreadable[student] = str(exc)
    return found, unreadable


def analyse(results: dict, unreadable=None, manual: GradebookReading | None = None) -> ClassData:
    """The report's tables from {student: Result} and the written answers' grades."""
    data = ClassData(dict(sorted(results.items())), dict(unreadable or {}), manual=manual or GradebookReading())
    descriptions = known_mistakes.mistake_codes()
    mistakes, checks = {}, {}
    for student, result in data.graded.items():
        for row in result.checks:
            rate = checks.get(row.id)
            if rate is None:
                rate = checks[row.id] = CheckRate(row.id, row.exercise, row.max_points)
            rate.graded += 1
            rate.passed += bool(row.passed)
            if row.mistake:
                found = mistakes.get(row.mistake)
                if found is None:
                    found = mistakes[row.mistake] = Mistake(
                        row.mistake, row.exercise, descriptions.get(row.mistake) or row.message)
                if student not in found.students:
                    found.students.append(student)
    order = {e: i for i, e in enumerate(EXERCISE_IDS)}
    data.mistakes = sorted(mistakes.values(), key=lambda m: (-m.count, m.code))
    data.checks = sorted(checks.values(), key=lambda c: order.get(c.exercise, len(order)))
    reasons = {}
    for student, result in data.results.items():
        if result.status is not Status.ERROR:
            continue
        side = (result.error_side or Side.STUDENT).value
        reason = result.error or "unknown reason"
        reasons.setdefault((side, reason), ErrorReason(side, reason)).students.append(student)
    for student, why in data.unreadable.items():
        reason = f"its results.json cannot be read: {why}"
        reasons.setdefault(("grader", reason), ErrorReason("grader", reason)).students.append(student)
    for side in ("student", "grader"):
        data.errors[side] = sorted((r for r in reasons.values() if r.side == side),
                                   key=lambda r: (-len(r.students), r.reason))
    return data


def mistakes_csv(data: ClassData) -> str:
    return csv_text(MISTAKES_COLUMNS, ([m.code, m.exercise, m.description, "; ".join(m.students), m.count]
                                       for m in data.mistakes))


def checks_csv(data: ClassData) -> str:
    return csv_text(CHECKS_COLUMNS, ([c.check, c.exercise, format_points(c.points), f"{c.pass_rate:.3f}"]
                                     for c in data.checks))


# --- the figures (matplotlib, embedded as PNG) ------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415 (lazy: grading needs no plotting)
    return plt


def prepare() -> None:
    """Import the plotting library now (grade-class does, on a thread, while it grades), so that
    writing the report after the last result does not wait for it."""
    _pyplot()


def _png(fig) -> str:
    """A figure as a data: URI, closed afterwards."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(data: ClassData) -> dict:
    plt = _pyplot()
    figures = {}
    totals = [r.total for r in data.grades.values()]
    max_total = max([r.max_total for r in data.grades.values()] or [1.0]) or 1.0
    if totals:
        step = max(0.5, max_total / 36)
        bins = [i * step for i in range(int(max_total / step) + 2)]
        fig, ax = plt.subplots(figsize=(7, 2.8))
        ax.hist(totals, bins=bins, color="#2e6fb5", edgecolor="white")
        ax.set_xlabel(f"total points (of {format_points(max_total)})")
        ax.set_ylabel("students")
        ax.set_xlim(0, max_total + step)
        figures["scores"] = _png(fig)
    means = _exercise_means(data)
    if means:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(means) + 0.8))
        names = [m["exercise"] for m in means][::-1]
        ax.barh(names, [m["fraction"] for m in means][::-1], color="#1e8449")
        ax.set_xlim(0, 1)
        ax.set_xlabel("mean score, as a fraction of the exercise's points")
        figures["exercises"] = _png(fig)
    if data.checks:
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(data.checks) + 0.8))
        ax.barh([c.check for c in data.checks][::-1], [c.pass_rate for c in data.checks][::-1], color="#2e6fb5")
        ax.set_xlim(0, 1)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("pass rate")
        figures["checks"] = _png(fig)
    if data.mistakes:
        shown = data.mistakes[:20]
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 0.8))
        ax.barh([m.code for m in shown][::-1], [m.count for m in shown][::-1], color="#c0392b")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("students")
        ax.xaxis.get_major_locator().set_params(integer=True)
        figures["mistakes"] = _png(fig)
    seconds = _grading_seconds(data)
    if seconds:
        fig, ax = plt.subplots(figsize=(7, 2.4))
        ax.hist(seconds, bins=30, color="#7d3c98", edgecolor="white")
        ax.set_xlabel("seconds to grade one submission (results.json timings.total)")
        ax.set_ylabel("submissions")
        figures["timings"] = _png(fig)
    return figures


def _exercise_means(data: ClassData) -> list:
    graded = list(data.graded.values())
    if not graded:
        return []
    rows = []
    for exercise in EXERCISE_IDS:
        out_of = max((sum(c.max_points for c in r.checks if c.exercise == exercise) for r in graded), default=0.0)
        if not out_of:
            continue
        mean = statistics.fmean(r.exercise_scores().get(exercise, 0.0) for r in graded)
        rows.append({"exercise": exercise, "title": BY_ID[exercise].title, "mean": f"{mean:.2f}",
                     "out_of": format_points(out_of), "fraction": mean / out_of})
    return rows


def _written_answers(data: ClassData) -> dict:
    """The written answers of the students with a grade: per answer how many a person has graded and
    their mean, how many answers are still to be graded, and the mean written total of the students
    whose answers are all graded."""
    students = list(data.grades)
    scores = [data.manual.of(s) for s in students]
    answers = []
    for answer in WRITTEN_ANSWERS:
        points = [w.grades[answer.id].points for w in scores if w.grades[answer.id].points is not None]
        answers.append({"id": answer.id, "title": answer.title, "out_of": format_points(answer.points),
                        "graded": len(points), "pending": len(scores) - len(points),
                        "mean": f"{statistics.fmean(points):.2f}" if points else "-"})
    complete = [w.total for w in scores if w.total is not None]
    return {"answers": answers, "pending": data.written_pending,
            "students_pending": sum(bool(w.pending) for w in scores), "complete": len(complete),
            "mean": f"{statistics.fmean(complete):.2f}" if complete else "-", "max_total": format_points(MANUAL_POINTS),
            "problem": data.manual.problem}


def _grading_seconds(data: ClassData) -> list:
    return [float(r.timings["total"]) for r in data.graded.values()
            if isinstance(r.timings.get("total"), (int, float))]


def _quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the page -----------------------------------------------------------------------------------------

def _named(students) -> dict:
    return {"shown": students[:MAX_NAMES], "more": max(0, len(students) - MAX_NAMES)}


def render(data: ClassData) -> str:
    grades = data.grades
    totals = [r.total for r in grades.values()]
    seconds = _grading_seconds(data)
    timing = None
    if seconds:
        timing = {"median": f"{statistics.median(seconds):.1f}", "p90": f"{_quantile(seconds, 0.9):.1f}",
                  "max": f"{max(seconds):.1f}", "n": len(seconds)}
    summary = {
        "students": len(data.results) + len(data.unreadable), "grades": len(grades), "graded": len(data.graded),
        "student_errors": sum(len(r.students) for r in data.errors.get("student", [])),
        "grader_errors": sum(len(r.students) for r in data.errors.get("grader", [])),
        "mean": f"{statistics.fmean(totals):.2f}" if totals else "-",
        "median": format_points(statistics.median(totals)) if totals else "-",
        "max_total": format_points(max((r.max_total for r in grades.values()), default=0.0)),
        "unsandboxed": sum(r.isolation == "none" for r in data.results.values()),
    }
    mistakes = [{"code": m.code, "exercise": m.exercise, "description": m.description, "count": m.count,
                 **_named(m.students)} for m in data.mistakes]
    checks = [{"check": c.check, "exercise": c.exercise, "points": format_points(c.points),
               "pass_rate": f"{c.pass_rate:.3f}", "percent": f"{100 * c.pass_rate:.0f}",
               "passed": c.passed, "graded": c.graded} for c in data.checks]
    errors = {side: {"reasons": [{"reason": r.reason, "count": len(r.students), **_named(r.students)}
                                 for r in reasons[:MAX_ERROR_REASONS]],
                     "more": max(0, len(reasons) - MAX_ERROR_REASONS)}
              for side, reasons in data.errors.items()}
    return template("report.html").render(
        assignment=ASSIGNMENT_ID, summary=summary, figures=_figures(data), exercises=_exercise_means(data),
        mistakes=mistakes, checks=checks, errors=errors, timing=timing, max_names=MAX_NAMES,
        written=_written_answers(data),
        codes=len(known_mistakes.mistake_codes()))


@dataclass
class Written:
    report: Path
    mistakes: Path
    checks: Path
    seconds: float
    data: ClassData


def write_report(course, *, students=None, results=None) -> Written:
    """Write report.html, mistakes.csv and checks.csv into ``course``/grade-class/ (each atomically)
    from the stored results (or from ``results``, {student: Result}). Raises OSError when a file
    cannot be written."""
    started = time.monotonic()
    unreadable = {}
    if results is None:
        results, unreadable = read_results(course, students)
    data = analyse(results, unreadable, read_gradebook(course, sorted(results)))
    out = Path(course) / store.OUTPUT_DIR
    paths = (out / REPORT_NAME, out / MISTAKES_CSV, out / CHECKS_CSV)
    write_atomic(mistakes_csv(data), paths[1], mode=0o644)
    write_atomic(checks_csv(data), paths[2], mode=0o644)
    write_atomic(render(data), paths[0], mode=0o644)
    return Written(*paths, time.monotonic() - started, data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder report",
        description="Write the class report (grade-class/report.html, mistakes.csv, checks.csv) from the "
                    "results grade-class stored.")
    parser.add_argument("assignment", help=f"the assignment id ({ASSIGNMENT_ID})")
    parser.add_argument("--course-dir", default=".", help="the course folder (default: current directory)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    wrong = unknown_assignment(args.assignment)       # the one place the argument is read
    if wrong:
        print(f"report: {wrong}", file=sys.stderr)
        return 2
    course = Path(args.course_dir).resolve()
    if not (course / store.OUTPUT_DIR).is_dir():
        print(f"report: no results in {course / store.OUTPUT_DIR}; run grade-class first", file=sys.stderr)
        return 2
    try:
        written = write_report(course)
    except OSError as e:
        print(f"report: could not write the report: {e}", file=sys.stderr)
        return 1
    data = written.data
    print(f"{len(data.results)} results, {len(data.mistakes)} distinct mistakes, built in {written.seconds:.1f} s")
    print(f"written answers still to be graded by a person (nbgrader formgrader): {data.written_pending}")
    if data.manual.problem:
        print(f"report: {data.manual.problem}", file=sys.stderr)
    for m in data.mistakes[:10]:
        print(f"  {m.count:>4}  {m.code}")
    print(f"report:   {written.report}\nmistakes: {written.mistakes}\nchecks:   {written.checks}")
    return 0
