"""Grade a whole class: ``python -m autograder grade-class batchnorm --jobs N [--course-dir DIR] [--force]``.

Every score comes from the isolated grader (``autograder.grade.grade_notebook``), run in a pool of N
long-lived grader processes; nothing a student wrote runs in this process or in a Jupyter kernel.

The workflow, one module per step:

1. collect (autograder/collect.py): LMS zip downloads into ``submitted/``, then each student's
   notebook, or the reason there is none;
2. grade (autograder/pool.py): what is new or changed since it was last graded, in the pool;
3. write (this module): each result, its feedback page and the class CSV as soon as it is known.

Input (an nbgrader course folder, default the current directory):

* ``submitted/<student>/batchnorm/*.ipynb`` -- what ``nbgrader collect`` / ``zip_collect`` produce.
  A renamed notebook (``batchnorm-Copy1.ipynb``) is graded; with several notebooks,
  ``batchnorm.ipynb`` wins, else the newest, and the row's message says which was graded.
  nbformat v3 notebooks are converted to v4 and every output is removed before grading (the grader
  only needs the code), into a temporary copy; the submitted file is never changed.
* ``downloaded/batchnorm/archive/`` -- LMS downloads in ``nbgrader zip_collect``'s layout. When it
  holds files, zips are extracted safely (no absolute or ``..`` paths, no links, size and member
  caps) into ``downloaded/batchnorm/extracted/<zip name>/`` and every notebook is copied to
  ``submitted/<student_id>/batchnorm/<file_id>.ipynb``. The student id and file id come from
  ``c.FileNameCollectorPlugin.named_regexp`` in the course's nbgrader_config.py (nbgrader's
  documented pattern ``.*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)`` when
  unset), else from the zip's name (one zip per student), else from the file name. Alternatively
  run ``nbgrader zip_collect batchnorm`` first and pass ``--no-collect``.

Output, each written atomically as soon as that submission is graded:

* ``autograded/<student>/batchnorm/results.json`` -- the grader's results document;
  ``grade_class.json`` beside it records the submission's sha256 and the grader's hash, so a rerun
  skips unchanged submissions (``--force`` regrades all; changed checks regrade everything).
* ``feedback/<student>/batchnorm/batchnorm.html`` -- per-exercise feedback (autograder/feedback.py).
* ``grades.csv`` (``--csv``): student, one column per exercise, total, max_total, status, message.

A submission that cannot be graded (no notebook, corrupt file, bad zip, a grader process that
crashed or ran past ``--timeout``) gets status ``error``, 0 points and the reason; the class goes on.
Exit status: 0 when every submission got a result (including errors), 1 when results could not be
written, 2 for a usage error, 130 when interrupted (everything finished so far is kept).

Relation to nbgrader: ``nbgrader autograde batchnorm`` is the gradebook path (see
autograder/nbgrader_bridge.py); it records the same isolated grader's scores per test cell. The two
share ``autograded/<student>/batchnorm/``: nbgrader skips a student whose folder exists, so after
this command use ``nbgrader autograde batchnorm --force``. Both write ``feedback/.../batchnorm.html``
(the last one run wins), and ``nbgrader export`` also defaults to ``grades.csv``.
"""

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import feedback, results
from .collect import HandIn, collect_archives, discover, sha256_file
from .exercises import ASSIGNMENT_ID, EXERCISE_IDS, EXERCISES
from .pool import DEFAULT_TIMEOUT, MAX_TASKS_PER_WORKER, cpu_count, run_pool, valid_result

SIDECAR = "grade_class.json"
FEEDBACK_NAME = "batchnorm.html"
CSV_COLUMNS = ("student",) + EXERCISE_IDS + ("total", "max_total", "status", "message")

# Modules that present results or run the grader but do not change a score: editing them does not
# regrade. collect.py is not here: it chooses the notebook and prepares what the grader reads.
_NOT_GRADER = {"grade_class.py", "pool.py", "feedback.py", "nbgrader_bridge.py", "demo.py", "__main__.py",
               "students.py"}


# --- what a result was graded from (resuming) ------------------------------------------------------

def grader_hash(package=None) -> str:
    """A hash of everything that decides a score: the grader's modules, the hidden checks, the
    package versions. A result graded under another hash is graded again."""
    package = Path(package) if package else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if not path.is_file() or "__pycache__" in rel or path.suffix in (".pyc", ".pyo"):
            continue
        if rel in _NOT_GRADER or (path.parent == package and path.suffix != ".py"):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(results.versions(), sort_keys=True).encode())
    return h.hexdigest()[:20]


def _key(hand_in: HandIn, graded_hash: str) -> dict:
    """What a stored result must have been graded from to be kept: the same file under the same grader."""
    return {"submission_sha256": sha256_file(hand_in.notebook), "grader": graded_hash,
            "notebook": hand_in.notebook.name}


def _paths(course: Path, assignment: str, student: str):
    """(results.json, its sidecar, the feedback page) of one student."""
    folder = course / "autograded" / student / assignment
    return folder / "results.json", folder / SIDECAR, course / "feedback" / student / assignment / FEEDBACK_NAME


def _resumable(course, assignment, hand_in: HandIn, key: dict):
    """The row of a stored final result graded from ``key``, or None when it must be graded (again)."""
    results_path, sidecar_path, _ = _paths(course, assignment, hand_in.student)
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        stored = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if sidecar.get("key") != key or not sidecar.get("final") or not valid_result(stored):
        return None
    return row_for(hand_in.student, stored, sidecar.get("message", ""))


# --- writing results -------------------------------------------------------------------------------

def row_for(student: str, result: dict, message: str = "") -> dict:
    """A student's row of the CSV and the score table."""
    scores = results.exercise_scores(result) if result.get("checks") is not None else {}
    return {"student": student, "scores": {e: scores.get(e, 0.0) for e in EXERCISE_IDS},
            "total": float(result.get("total", 0.0)), "max_total": float(result.get("max_total", 0.0)),
            "status": result.get("status", "error"), "message": message}


def _message(notes, result) -> str:
    """The row's message: the notes on the hand-in, then the error, if any."""
    parts = list(notes)
    if result.get("status") == "error" and result.get("error"):
        parts.append(str(result["error"]))
    return "; ".join(parts)


def write_result(course: Path, assignment: str, student: str, result: dict, notes: list, key, final: bool):
    """Write results.json, its resume sidecar and the feedback page of one student, each atomically.

    A result that is not JSON (a grader bug, not the student's) is replaced by an error result that
    is not final. Returns (the result as written, the row's message, the OSError that stopped a
    write or None)."""
    message = _message(notes, result)
    results_path, sidecar_path, feedback_path = _paths(course, assignment, student)
    try:
        try:
            results.write_json_atomic(result, results_path)
        except (ValueError, TypeError) as e:       # not JSON: a grader bug, not the student's
            result = results.error_result(f"the grader returned a result that is not valid JSON: {e}")
            message, final = _message(notes, result), False
            results.write_json_atomic(result, results_path)
        results.write_json_atomic({"student": student, "key": key, "final": final,
                                   "message": message,
                                   "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                                  sidecar_path)
        feedback.write(result, feedback_path, student=student, message="; ".join(notes))
    except OSError as e:
        return result, message, e
    return result, message, None


def write_csv(rows: list, path: Path) -> None:
    """The class CSV (``CSV_COLUMNS``), one row per student, written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(rows, key=lambda r: r["student"]):
        writer.writerow([r["student"], *(results.format_points(r["scores"][e]) for e in EXERCISE_IDS),
                         results.format_points(r["total"]), results.format_points(r["max_total"]), r["status"],
                         " ".join(str(r["message"]).split())])
    results.write_atomic(buf.getvalue(), path)


def format_table(rows: list) -> str:
    """The end-of-run score table: student, points per exercise, total, status."""
    maxima = {e.id: e.points for e in EXERCISES}
    headers = ["student", *(f"{e}/{results.format_points(maxima[e])}" for e in EXERCISE_IDS), "total", "status"]
    body = [[r["student"], *(results.format_points(r["scores"][e]) for e in EXERCISE_IDS),
             f"{results.format_points(r['total'])}/{results.format_points(r['max_total'])}", r["status"]]
            for r in sorted(rows, key=lambda r: r["student"])]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(headers), line(["-" * w for w in widths])] + [line(b) for b in body]
    return "\n".join(out)


class Progress:
    """A one-line progress bar on a terminal; one line per submission otherwise."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.errors = total, 0, 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def note(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, row: dict) -> None:
        self.done += 1
        self.errors += row["status"] == "error"
        elapsed = time.monotonic() - self.start
        result = f"{results.format_points(row['total'])}/{results.format_points(row['max_total'])}" + (" (error)" if row["status"] == "error" else "")
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            self.stream.write(f"\r\033[Kgrading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                              f"  errors {self.errors}  {elapsed:.0f}s  last: {row['student'][:24]} {result}")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {row['student']}: {result}  ({elapsed:.0f}s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ClassRun:
    """What ``run`` did: every student's row, how many were graded now or kept, what could not be written."""
    rows: list
    graded: int = 0
    resumed: int = 0
    write_failures: list = field(default_factory=list)
    csv_path: Path | None = None
    seconds: float = 0.0


def run(course_dir, *, assignment: str = ASSIGNMENT_ID, jobs: int = 2, force: bool = False,
        collect: bool = True, regexp: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        csv_path=None, cache_dir=None, progress_stream=None, on_row=None,
        max_tasks_per_worker: int = MAX_TASKS_PER_WORKER) -> ClassRun:
    """Grade every submission of ``assignment`` in ``course_dir``: collect what students handed in,
    grade what is new or changed in the pool, and write each result as it comes; see the module
    docstring."""
    started = time.monotonic()
    course = Path(course_dir).resolve()
    csv_path = Path(csv_path) if csv_path else course / "grades.csv"
    log_dir = course / ".cache" / "autograder" / "logs"
    outcome = ClassRun(rows=[], csv_path=csv_path)
    rows = {}

    # 1. collect: LMS downloads into submitted/, then each student's notebook or why there is none
    problems = collect_archives(course, assignment, regexp) if collect else {}
    hand_ins = discover(course, assignment, problems)
    progress = Progress(len(hand_ins), progress_stream)

    def record(student, result, notes, key, final) -> dict:
        result, message, failure = write_result(course, assignment, student, result, notes, key, final)
        if failure is not None:
            outcome.write_failures.append(f"{student}: {failure}")
            progress.note(f"could not write the results of {student}: {failure}")
        rows[student] = row = row_for(student, result, message)
        return row

    # 2. what to grade: a hand-in without a notebook gets its error row now, an unchanged one keeps its
    #    stored result (``--force`` regrades it), everything else goes to the pool
    graded_hash = grader_hash()
    tasks, keys, notes_of = [], {}, {}
    for hand_in in hand_ins:
        if hand_in.error:
            record(hand_in.student, results.error_result(hand_in.error), hand_in.notes, None, True)
            continue
        key = _key(hand_in, graded_hash)
        keys[hand_in.student], notes_of[hand_in.student] = key, hand_in.notes
        row = None if force else _resumable(course, assignment, hand_in, key)
        if row is not None:
            rows[hand_in.student] = row
            outcome.resumed += 1
            continue
        tasks.append({"student": hand_in.student, "path": str(hand_in.notebook), "hide": [str(course)]})

    # 3. grade in the pool, writing each result, its feedback and the CSV as soon as it is known
    def on_result(done):
        student = done["student"]
        row = record(student, done["result"], notes_of.get(student, []) + done.get("notes", []),
                     keys.get(student), done.get("final", True))
        outcome.graded += 1
        try:
            write_csv(rows.values(), csv_path)
        except OSError as e:
            outcome.write_failures.append(f"{csv_path}: {e}")
        progress.update(row)
        if on_row is not None:
            on_row(row)

    try:
        if len(tasks) < len(hand_ins):
            progress.done = len(hand_ins) - len(tasks)
            progress.note(f"{outcome.resumed} unchanged submission(s) already graded, "
                          f"{len(hand_ins) - len(tasks) - outcome.resumed} could not be graded; "
                          f"grading {len(tasks)} (--force regrades all)")
        if tasks:
            run_pool(tasks, jobs=jobs, on_result=on_result, timeout=timeout, cache_dir=cache_dir,
                     log_dir=log_dir, max_tasks_per_worker=max_tasks_per_worker,
                     note=progress.note)
    finally:
        progress.close()
        outcome.rows = [rows[s] for s in sorted(rows)]
        outcome.seconds = time.monotonic() - started
        try:
            write_csv(outcome.rows, csv_path)
        except OSError as e:
            outcome.write_failures.append(f"{csv_path}: {e}")
    return outcome


# --- command line ----------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autograder grade-class",
        description="Grade every submitted notebook of an assignment with the isolated grader.")
    p.add_argument("assignment", help=f"the assignment id ({ASSIGNMENT_ID})")
    p.add_argument("--jobs", "-j", type=int, default=min(2, cpu_count()),
                   help="grader processes working in parallel (default: %(default)s)")
    p.add_argument("--course-dir", default=".", help="the nbgrader course folder (default: current directory)")
    p.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds one submission may take before it is stopped (default: %(default)g)")
    p.add_argument("--cache-dir", help="where the grader caches the training baseline "
                                       "(default: the grader's own, $BN_AUTOGRADER_CACHE or ~/.cache/bn-autograder)")
    p.add_argument("--csv", help="where to write the class CSV (default: COURSE_DIR/grades.csv)")
    p.add_argument("--no-collect", action="store_true",
                   help="do not extract downloaded/<assignment>/archive (e.g. after nbgrader zip_collect)")
    p.add_argument("--collect-regexp",
                   help="named regexp for student_id/file_id in downloaded file names "
                        "(default: c.FileNameCollectorPlugin.named_regexp, else nbgrader's documented example)")
    return p


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.assignment != ASSIGNMENT_ID:
        print(f"grade-class: unknown assignment {args.assignment!r}; this course has {ASSIGNMENT_ID!r}",
              file=sys.stderr)
        return 2
    if args.jobs < 1 or args.timeout <= 0:
        print("grade-class: --jobs and --timeout must be positive", file=sys.stderr)
        return 2
    if args.collect_regexp:
        try:
            if "student_id" not in re.compile(args.collect_regexp).groupindex:
                raise re.error("needs a (?P<student_id>...) group")
        except re.error as e:
            print(f"grade-class: bad --collect-regexp: {e}", file=sys.stderr)
            return 2
    course = Path(args.course_dir).resolve()
    archive = course / "downloaded" / args.assignment / "archive"
    if not course.is_dir():
        print(f"grade-class: no such course folder: {course}", file=sys.stderr)
        return 2
    if not (course / "submitted").is_dir() and not (archive.is_dir() and not args.no_collect):
        print(f"grade-class: nothing to grade: neither {course / 'submitted'} nor {archive} exists",
              file=sys.stderr)
        return 2
    try:
        outcome = run(course, assignment=args.assignment, jobs=args.jobs, force=args.force,
                      collect=not args.no_collect, regexp=args.collect_regexp, timeout=args.timeout,
                      csv_path=args.csv, cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        print("\ninterrupted: every result finished so far is written; run the same command again "
              "to grade the rest", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"grade-class: could not write results: {e}", file=sys.stderr)
        return 1
    if not outcome.rows:
        print(f"no submissions found in {course / 'submitted'}/<student>/{args.assignment}/")
        return 0
    print(format_table(outcome.rows))
    errors = sum(r["status"] == "error" for r in outcome.rows)
    print(f"\n{len(outcome.rows)} submissions ({outcome.graded} graded now, {outcome.resumed} unchanged, "
          f"{errors} with status error) in {outcome.seconds:.0f} s")
    print(f"grades:   {outcome.csv_path}")
    print(f"results:  {course / 'autograded'}/<student>/{args.assignment}/results.json")
    print(f"feedback: {course / 'feedback'}/<student>/{args.assignment}/{FEEDBACK_NAME}")
    if outcome.write_failures:
        print("could not write:\n  " + "\n  ".join(outcome.write_failures), file=sys.stderr)
        return 1
    return 0
