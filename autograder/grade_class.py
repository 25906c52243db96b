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

Output, each written atomically as soon as that submission is graded, in grade-class's own folder
``grade-class/`` (nbgrader never reads or writes it, so ``nbgrader autograde`` afterwards needs no
``--force``; results an older version wrote into ``autograded/`` are moved there when resumed):

* ``grade-class/<student>/batchnorm/results.json`` -- the grader's results document;
  ``grade_class.json`` beside it records the submission's sha256 and the grader's hash, so a rerun
  skips unchanged submissions (``--force`` regrades all; changed checks regrade everything).
* ``grade-class/<student>/batchnorm/feedback.html`` -- per-exercise feedback (autograder/feedback.py).
* ``grades.csv`` (``--csv``): student, one column per exercise, total, max_total, status, message.

A submission that cannot be graded because of the student (no notebook, corrupt file, bad zip) gets
status ``error``, 0 points and the reason, and that row is final. One that was not graded because of
the grader (the worker could not start, a check crashed, a grader process crashed or ran past
``--timeout``: ``grader_error``) gets an ``error`` row that is never kept: the next run grades it
again. The class goes on either way.

Where: local grader processes (autograder/pool.py, ``--jobs``), or a Dask cluster
(``--scheduler ADDRESS``, autograder/cluster.py): the notebooks travel to the cluster's workers in
the tasks and the results come back here, where they are written.

Exit status: 0 when every submission got a result (including the students' errors), 3 when some
were not graded because of the grader (they are listed, with the command that grades them again),
1 when results could not be written, 2 for a usage error or an unreachable scheduler, 130 when
interrupted (everything finished so far is kept).

Relation to nbgrader: ``nbgrader autograde batchnorm`` is the gradebook path (see
autograder/nbgrader_bridge.py); it records the same isolated grader's scores per test cell, and
takes this command's result for every submission whose file and grader are unchanged, so running it
after grade-class only imports the scores.
"""

import argparse
import csv
import hashlib
import io
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import feedback, results
from .collect import HandIn, collect_archives, discover, sha256_file
from .exercises import ASSIGNMENT_ID, EXERCISE_IDS, EXERCISES
from .pool import DEFAULT_TIMEOUT, MAX_TASKS_PER_WORKER, cpu_count, run_pool, valid_result

from .cluster import ClusterUnavailable    # cluster.py imports Dask only when a cluster is used

EXIT_NOT_GRADED = 3          # some submissions were not graded because of the grader (see --help)

OUTPUT_DIR = "grade-class"           # grade-class's own folder in the course, beside nbgrader's
SIDECAR = "grade_class.json"
FEEDBACK_NAME = "feedback.html"
CSV_COLUMNS = ("student",) + EXERCISE_IDS + ("total", "max_total", "status", "message")

# Modules that present results or run the grader but do not change a score: editing them does not
# regrade. collect.py is not here: it chooses the notebook and prepares what the grader reads.
_NOT_GRADER = {"grade_class.py", "pool.py", "cluster.py", "feedback.py", "nbgrader_bridge.py", "demo.py", "__main__.py",
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
    """(results.json, its sidecar, the feedback page) of one student, all under ``grade-class/``,
    a folder nbgrader never reads or writes (it skips a student whose ``autograded/`` folder exists
    and whose ``feedback/`` folder exists, so grade-class stays out of both)."""
    folder = course / OUTPUT_DIR / student / assignment
    return folder / "results.json", folder / SIDECAR, folder / FEEDBACK_NAME


def result_path(course, student: str, assignment: str = ASSIGNMENT_ID) -> Path:
    """Where grade-class keeps ``student``'s results document."""
    return _paths(Path(course), assignment, student)[0]


def _legacy_paths(course: Path, assignment: str, student: str):
    """Where grade-class wrote before it had its own folder (inside nbgrader's autograded/ and feedback/)."""
    folder = course / "autograded" / student / assignment
    return folder / "results.json", folder / SIDECAR, course / "feedback" / student / assignment / "batchnorm.html"


def _load(results_path: Path, sidecar_path: Path):
    """(sidecar, results document) as stored, or None when either is missing or unreadable."""
    try:
        return (json.loads(sidecar_path.read_text(encoding="utf-8")),
                json.loads(results_path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _move_legacy(course: Path, assignment: str, student: str):
    """Move a result written by an older grade-class out of nbgrader's folders into ``grade-class/``
    (so ``nbgrader autograde`` no longer skips that student). Returns (sidecar, result) or None."""
    old_results, old_sidecar, old_feedback = _legacy_paths(course, assignment, student)
    stored = _load(old_results, old_sidecar)
    if stored is None:
        return None
    sidecar, result = stored
    new_results, new_sidecar, new_feedback = _paths(course, assignment, student)
    try:
        results.write_json_atomic(result, new_results)
        results.write_json_atomic(sidecar, new_sidecar)
        feedback.write(result, new_feedback, student=student, message=sidecar.get("message", ""))
        old_results.unlink(missing_ok=True)
        old_sidecar.unlink(missing_ok=True)
        # grade-class's own page (nbgrader's feedback is the notebook's HTML, without this heading)
        if old_feedback.is_file() and feedback.HEADING in old_feedback.read_text(encoding="utf-8", errors="replace"):
            old_feedback.unlink()
        for folder in (old_results.parent, old_results.parent.parent, old_feedback.parent, old_feedback.parent.parent):
            try:
                folder.rmdir()          # only when empty: nbgrader's own files stay
            except OSError:
                pass
    except OSError:
        pass                            # still readable where it was; moved on a later run
    return sidecar, result


def stored_result(course, hand_in: HandIn, key: dict, assignment: str = ASSIGNMENT_ID):
    """(result, the row's message) of a stored final result graded from ``key``, or None when the
    submission must be graded (again): changed, graded by another grader, or not graded because of
    a problem on the grader's side."""
    course = Path(course)
    results_path, sidecar_path, _ = _paths(course, assignment, hand_in.student)
    stored = _load(results_path, sidecar_path) or _move_legacy(course, assignment, hand_in.student)
    if stored is None:
        return None
    sidecar, result = stored
    if sidecar.get("key") != key or not sidecar.get("final") or not valid_result(result) or grader_error(result):
        return None
    return result, sidecar.get("message", "")


def _resumable(course, assignment, hand_in: HandIn, key: dict):
    """The row of a stored final result graded from ``key``, or None when it must be graded (again)."""
    stored = stored_result(course, hand_in, key, assignment)
    return None if stored is None else row_for(hand_in.student, *stored)


def grader_error(result: dict, final: bool = True) -> bool:
    """Whether ``result`` is an error on the grader's side (not the student's): the submission was
    not graded, is never kept as final, and is graded again on the next run.

    The grader marks those itself (``error_side == "grader"``); the pool's own errors (a grader
    process that crashed, timed out or could not load the grader) arrive with ``final`` False."""
    if result.get("status") != "error":
        return False
    return not final or result.get("error_side") == "grader"


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
            result = results.error_result(f"the grader returned a result that is not valid JSON: {e}",
                                         grader_side=True)
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
    """What ``run`` did: every student's row, how many were graded now or kept, which were not graded
    because of a problem on the grader's side, what could not be written."""
    rows: list
    graded: int = 0
    resumed: int = 0
    grader_errors: list = field(default_factory=list)      # students, graded again on the next run
    write_failures: list = field(default_factory=list)
    csv_path: Path | None = None
    seconds: float = 0.0


def run(course_dir, *, assignment: str = ASSIGNMENT_ID, jobs: int = 2, force: bool = False,
        collect: bool = True, regexp: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        csv_path=None, cache_dir=None, progress_stream=None, on_row=None,
        max_tasks_per_worker: int = MAX_TASKS_PER_WORKER, scheduler: str | None = None,
        students=None, write_class_csv: bool = True) -> ClassRun:
    """Grade every submission of ``assignment`` in ``course_dir``: collect what students handed in,
    grade what is new or changed in the pool (or on the Dask cluster at ``scheduler``), and write each
    result as it comes; see the module docstring. ``students`` limits the run to those students (the
    nbgrader bridge grades what nbgrader is about to import); ``write_class_csv`` False leaves the
    class CSV alone."""
    started = time.monotonic()
    course = Path(course_dir).resolve()
    csv_path = Path(csv_path) if csv_path else course / "grades.csv"
    log_dir = course / ".cache" / "autograder" / "logs"
    outcome = ClassRun(rows=[], csv_path=csv_path if write_class_csv else None)
    rows = {}

    # 1. collect: LMS downloads into submitted/, then each student's notebook or why there is none
    problems = collect_archives(course, assignment, regexp) if collect else {}
    hand_ins = discover(course, assignment, problems)
    if students is not None:
        wanted = set(students)
        hand_ins = [h for h in hand_ins if h.student in wanted]
    progress = Progress(len(hand_ins), progress_stream)

    def save_csv():
        if not write_class_csv:
            return
        try:
            write_csv(rows.values(), csv_path)
        except OSError as e:
            outcome.write_failures.append(f"{csv_path}: {e}")

    def record(student, result, notes, key, final) -> dict:
        final = final and not grader_error(result, final)
        result, message, failure = write_result(course, assignment, student, result, notes, key, final)
        if failure is not None:
            outcome.write_failures.append(f"{student}: {failure}")
            progress.note(f"could not write the results of {student}: {failure}")
        if grader_error(result, final) and student not in outcome.grader_errors:
            outcome.grader_errors.append(student)
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
        save_csv()
        progress.update(row)
        if on_row is not None:
            on_row(row)

    try:
        if len(tasks) < len(hand_ins):
            progress.done = len(hand_ins) - len(tasks)
            progress.note(f"{outcome.resumed} unchanged submission(s) already graded, "
                          f"{len(hand_ins) - len(tasks) - outcome.resumed} could not be graded; "
                          f"grading {len(tasks)} (--force regrades all)")
        if tasks and scheduler:
            from .cluster import run_cluster          # Dask only when asked for: one machine needs none
            run_cluster(tasks, scheduler=scheduler, on_result=on_result, timeout=timeout,
                        cache_dir=cache_dir, grader_hash=graded_hash, note=progress.note)
        elif tasks:
            run_pool(tasks, jobs=jobs, on_result=on_result, timeout=timeout, cache_dir=cache_dir,
                     log_dir=log_dir, max_tasks_per_worker=max_tasks_per_worker,
                     note=progress.note)
    finally:
        progress.close()
        outcome.rows = [rows[s] for s in sorted(rows)]
        outcome.grader_errors.sort()
        outcome.seconds = time.monotonic() - started
        save_csv()
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
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead "
                        "of local grader processes; needs the package's [cluster] extra (see the README)")
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
                      csv_path=args.csv, cache_dir=args.cache_dir, scheduler=args.scheduler)
    except KeyboardInterrupt:
        print("\ninterrupted: every result finished so far is written; run the same command again "
              "to grade the rest", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"grade-class: could not write results: {e}", file=sys.stderr)
        return 1
    except ClusterUnavailable as e:
        print(f"grade-class: {e}", file=sys.stderr)
        return 2
    if not outcome.rows:
        print(f"no submissions found in {course / 'submitted'}/<student>/{args.assignment}/")
        return 0
    print(format_table(outcome.rows))
    errors = sum(r["status"] == "error" for r in outcome.rows)
    print(f"\n{len(outcome.rows)} submissions ({outcome.graded} graded now, {outcome.resumed} unchanged, "
          f"{errors} with status error) in {outcome.seconds:.0f} s")
    print(f"grades:   {outcome.csv_path}")
    print(f"results:  {course / OUTPUT_DIR}/<student>/{args.assignment}/results.json")
    print(f"feedback: {course / OUTPUT_DIR}/<student>/{args.assignment}/{FEEDBACK_NAME}")
    if outcome.write_failures:
        print("could not write:\n  " + "\n  ".join(outcome.write_failures), file=sys.stderr)
        return 1
    if outcome.grader_errors:
        again = shlex.join(["python", "-m", "autograder", "grade-class",
                            *(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--force")])
        print(f"\nNOT GRADED because of a problem on the grader's side, not the students' "
              f"({len(outcome.grader_errors)}): {', '.join(outcome.grader_errors)}\n"
              "Their rows say why (status error, 0 points, not a grade). Fix the cause, then run\n"
              f"  {again}\n"
              "which grades these again and keeps everyone else's result.", file=sys.stderr)
        return EXIT_NOT_GRADED
    return 0
