"""Grade a whole class: ``python -m autograder grade-class batchnorm --jobs N [--course-dir DIR] [--force]``.

Every score comes from the isolated grader (``autograder.grade.grade_notebook``), run in N grader
processes (or on a Dask cluster, ``--scheduler``); nothing a student wrote runs in this process or
in a Jupyter kernel. The steps are classrun.run's (see classroom/__init__.py for the modules).

Input (an nbgrader course folder, default the current directory):

* ``submitted/<student>/batchnorm/*.ipynb`` -- what ``nbgrader collect`` / ``zip_collect`` produce.
  A renamed notebook (``batchnorm-Copy1.ipynb``) is graded; with several notebooks,
  ``batchnorm.ipynb`` wins, else the newest, and the row's message says which was graded.
  nbformat v3 notebooks are converted to v4 and every output is dropped when the grader process
  reads the notebook (the grader only needs the code); the submitted file is never changed.
* ``downloaded/batchnorm/archive/`` -- LMS downloads in ``nbgrader zip_collect``'s layout, extracted
  and copied into ``submitted/`` (collect.py); or run ``nbgrader zip_collect batchnorm`` first and
  pass ``--no-collect``.

Output, each written atomically as soon as that submission is graded, in grade-class's own folder
``grade-class/`` (nbgrader never reads or writes it, so ``nbgrader autograde`` afterwards needs no
``--force``): ``grade-class/<student>/batchnorm/results.json``, its resume sidecar and
``feedback.html`` (store.py), and ``grades.csv`` (``--csv``; grades.py). A rerun grades only what
changed (``--force`` grades everything; a changed grader grades everything).

A submission that cannot be graded because of the student (no notebook, corrupt file, bad zip) gets
status ``error``, 0 points and the reason, and that row is final. One that was not graded because of
the grader (the worker could not start, a check crashed, a grader process crashed or ran past
``--timeout``) gets an ``error`` row that is never kept: the next run grades it again.

Settings (sandbox limits, training budget, cache folder, ``--cache-dir`` and ``--allow-unsandboxed``:
autograder/settings.py, whose ``parent_parser`` declares those flags) are read from the environment
and the command line here, once, and given whole to every grader process.

Exit status: 0 when every submission got a result (including the students' errors), 3 when some
were not graded because of the grader (they are listed, with the command that grades them again),
1 when results could not be written, 2 for a usage error, an unreachable scheduler or a machine
where no isolation can start (checked before anything is graded, unless ``--allow-unsandboxed``:
then each result records isolation "none" and its row says so; with ``--scheduler`` each Dask
worker decides, and refuses with an error row), 130 when interrupted (everything finished so far
is kept).

Relation to nbgrader: ``nbgrader autograde batchnorm`` is the gradebook path (see
autograder/nbgrader_bridge.py); it records the same isolated grader's scores per test cell, and
takes this command's result for every submission whose file and grader are unchanged, so running it
after grade-class only imports the scores.
"""

import argparse
import re
import shlex
import sys
from pathlib import Path

from .. import settings
from ..errors import ClusterUnavailable, SandboxUnavailable
from ..exercises import ASSIGNMENT_ID, unknown_assignment
from ..sandbox import choose_isolation
from . import grades, store
from .classrun import run
from .pool import cpu_count
from .server import DEFAULT_TIMEOUT

EXIT_NOT_GRADED = 3          # some submissions were not graded because of the grader (see above)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autograder grade-class", parents=[settings.parent_parser()],
        description="Grade every submitted notebook of an assignment with the isolated grader.")
    p.add_argument("assignment", help=f"the assignment id ({ASSIGNMENT_ID})")
    p.add_argument("--jobs", "-j", type=int, default=min(2, cpu_count()),
                   help="grader processes working in parallel (default: %(default)s)")
    p.add_argument("--course-dir", default=".", help="the nbgrader course folder (default: current directory)")
    p.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds one submission may take before it is stopped (default: %(default)g)")
    p.add_argument("--csv", help="where to write the class CSV (default: COURSE_DIR/grades.csv)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead "
                        "of local grader processes; needs the package's [cluster] extra (see the README)")
    p.add_argument("--no-collect", action="store_true",
                   help=f"do not extract downloaded/{ASSIGNMENT_ID}/archive (e.g. after nbgrader zip_collect)")
    p.add_argument("--collect-regexp",
                   help="named regexp for student_id/file_id in downloaded file names "
                        "(default: c.FileNameCollectorPlugin.named_regexp, else nbgrader's documented example)")
    return p


def _usage_error(args) -> str | None:
    """What is wrong with the command line, or None."""
    wrong = unknown_assignment(args.assignment)       # the one place the argument is read
    if wrong:
        return wrong
    if args.jobs < 1 or args.timeout <= 0:
        return "--jobs and --timeout must be positive"
    if args.collect_regexp:
        try:
            if "student_id" not in re.compile(args.collect_regexp).groupindex:
                raise re.error("needs a (?P<student_id>...) group")
        except re.error as e:
            return f"bad --collect-regexp: {e}"
    course = Path(args.course_dir).resolve()
    archive = course / "downloaded" / ASSIGNMENT_ID / "archive"
    if not course.is_dir():
        return f"no such course folder: {course}"
    if not (course / "submitted").is_dir() and not (archive.is_dir() and not args.no_collect):
        return f"nothing to grade: neither {course / 'submitted'} nor {archive} exists"
    return None


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    problem = _usage_error(args)
    if problem:
        print(f"grade-class: {problem}", file=sys.stderr)
        return 2
    course = Path(args.course_dir).resolve()
    found = settings.from_environ(flags=args)
    if not args.scheduler:       # the grader processes run here: refuse before grading anything
        try:
            choose_isolation(allow_unsandboxed=found.allow_unsandboxed)
        except SandboxUnavailable as e:
            print(f"grade-class: {e}", file=sys.stderr)
            return 2
    try:
        outcome = run(course, jobs=args.jobs, force=args.force,
                      collect=not args.no_collect, regexp=args.collect_regexp, timeout=args.timeout,
                      settings=found, csv_path=args.csv, scheduler=args.scheduler)
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
        print(f"no submissions found in {course / 'submitted'}/<student>/{ASSIGNMENT_ID}/")
        return 0
    print(grades.format_table(outcome.rows))
    unsandboxed = [r.student for r in outcome.rows if store.UNSANDBOXED_MARK in r.message]
    if unsandboxed:
        print(f"\n{store.UNSANDBOXED_MARK}: {', '.join(unsandboxed)}")
    errors = sum(r.status == "error" for r in outcome.rows)
    print(f"\n{len(outcome.rows)} submissions ({outcome.graded} graded now, {outcome.resumed} unchanged, "
          f"{errors} with status error) in {outcome.seconds:.0f} s")
    print(f"grades:   {outcome.csv_path}")
    print(f"results:  {course / store.OUTPUT_DIR}/<student>/{ASSIGNMENT_ID}/{store.RESULTS_NAME}")
    print(f"feedback: {course / store.OUTPUT_DIR}/<student>/{ASSIGNMENT_ID}/{store.FEEDBACK_NAME}")
    if outcome.report is not None:
        print(f"report:   {outcome.report} (mistakes.csv and checks.csv beside it)")
    if outcome.gradebook_problem:
        print(f"written answers: {outcome.gradebook_problem}", file=sys.stderr)
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
