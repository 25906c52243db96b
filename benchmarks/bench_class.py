"""How long grading a class takes: grade-class on copies of the solution and on the mixed demo class,
against stock ``nbgrader autograde`` (which executes the whole notebook, training race included).

    .venv/bin/python benchmarks/bench_class.py [--copies 4] [--jobs 2] [--skip-nbgrader] [--skip-mixed]

Prints figures, asserts nothing. Per-submission figures come from each results.json's "timings"
(whatever keys the grader writes: worker_start, checks, training_check, total, ...; read and
class_wall are the grader process's: reading the notebook, and the whole submission). Targets printed
against: per submission <= 1.5 x (TensorFlow import + one training-check run), and a 200-submission
class <= 15 min on this machine's cores.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import demo, settings
from autograder import synthetic_students as students
from autograder.classroom import classrun, pool, store
from autograder.exercises import ASSIGNMENT_ID

STOCK_AUTOGRADE = """
# --- benchmark baseline: nbgrader's own default pipeline (Execute runs the whole notebook in a kernel) ---
from nbgrader.converters.autograde import Autograde as _Autograde
c.Autograde.autograde_preprocessors = _Autograde.class_traits()["autograde_preprocessors"].default()
"""


def tensorflow_import_seconds() -> float:
    """Wall time of ``import tensorflow`` in a fresh interpreter (best of two, so the disk is warm)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        best = min(best, time.perf_counter() - start)
    return best


def hand_in(course: Path, submissions: dict) -> None:
    """{student id: synthetic student name} -> submitted/<id>/batchnorm/batchnorm.ipynb"""
    for student, name in submissions.items():
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / student / ASSIGNMENT_ID / "batchnorm.ipynb", course)


def grade(course: Path, jobs: int):
    start = time.perf_counter()
    outcome = classrun.run(course, jobs=jobs, force=True, settings=settings.from_environ())
    wall = time.perf_counter() - start
    timings = {}
    for row in outcome.rows:
        timings[row.student] = store.read_result(course, row.student).timings
    return outcome, wall, timings


def timing_table(timings: dict) -> list:
    keys = []
    for t in timings.values():
        keys += [k for k in t if k not in keys and isinstance(t[k], (int, float))]
    lines = [f"    {'timing (s)':<16}{'median':>9}{'mean':>9}{'max':>9}   n"]
    for key in keys:
        values = [t[key] for t in timings.values() if isinstance(t.get(key), (int, float))]
        lines.append(f"    {key:<16}{statistics.median(values):>9.2f}{statistics.mean(values):>9.2f}"
                     f"{max(values):>9.2f}   {len(values)}")
    return lines


def report_class(label: str, outcome, wall: float, timings: dict, jobs: int) -> dict:
    n = len(outcome.rows)
    per = wall / max(1, n)
    print(f"\n== {label}: {n} submissions, --jobs {jobs} ==")
    print("\n".join(timing_table(timings)))
    errors = sum(r.status == "error" for r in outcome.rows)
    totals = sorted({f"{r.total:g}" for r in outcome.rows})
    print(f"    class wall time {wall:.1f} s = {per:.1f} s per submission "
          f"(scores seen: {', '.join(totals)}; {errors} with status error)")
    projected = per * 200 / 60
    print(f"    projected 200-submission class: {projected:.1f} min (target <= 15 min): "
          f"{'OK' if projected <= 15 else 'MISSED'}")
    return {"wall": wall, "per": per, "projected_min": projected}


def nbgrader_baseline(work: Path, submissions: dict) -> float:
    course = work / "stock-nbgrader"
    course.mkdir()
    config = course / "stock_config.py"
    config.write_text((REPO / "nbgrader_config.py").read_text() + STOCK_AUTOGRADE)
    demo.make_course(course / "course", config=config)
    hand_in(course / "course", submissions)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT_ID, "--force"],
                          cwd=course / "course", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"    nbgrader autograde exited {done.returncode}:\n{done.stdout[-2000:]}")
    try:
        from nbgrader.api import Gradebook
        with Gradebook(f"sqlite:///{course / 'course' / 'gradebook.db'}", "dl-batchnorm") as gb:
            scores = {s: gb.find_submission(ASSIGNMENT_ID, s).score for s in submissions}
        print(f"    stock nbgrader scores: {', '.join(f'{s}={v:g}' for s, v in scores.items())}")
    except Exception as e:   # noqa: BLE001 - a figure, not a check
        print(f"    (could not read the stock gradebook: {e})")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the solution (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="grade-class --jobs (default: %(default)s)")
    parser.add_argument("--skip-nbgrader", action="store_true", help="leave out stock nbgrader autograde")
    parser.add_argument("--skip-mixed", action="store_true", help="leave out the mixed class")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-class-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {pool.cpu_count()} cores; work folder {work}")
    try:
        tf_import = tensorflow_import_seconds()
        print(f"TensorFlow import: {tf_import:.2f} s")

        course = demo.make_course(work / "copies")
        copies = {f"copy{i:03d}": "full_marks" for i in range(1, args.copies + 1)}
        hand_in(course, copies)
        outcome, wall, timings = grade(course, args.jobs)
        solution = report_class(f"grade-class, {args.copies} copies of the solution", outcome, wall, timings,
                                args.jobs)
        training = [t["training_check"] for t in timings.values() if isinstance(t.get("training_check"), (int, float))]
        totals = [t["total"] for t in timings.values() if isinstance(t.get("total"), (int, float))]
        if training and totals:
            budget = 1.5 * (tf_import + statistics.median(training))
            median_total = statistics.median(totals)
            print(f"    per submission: median total {median_total:.1f} s vs target 1.5 x (TF import "
                  f"{tf_import:.1f} + training check {statistics.median(training):.1f}) = {budget:.1f} s: "
                  f"{'OK' if median_total <= budget else 'MISSED'}")

        if not args.skip_mixed:
            mixed_course = demo.make_course(work / "mixed")
            hand_in(mixed_course, {name: name for name in students.STUDENTS})
            outcome, wall, timings = grade(mixed_course, args.jobs)
            report_class("grade-class, the mixed class (all synthetic students)", outcome, wall, timings, args.jobs)
            print("    " + ", ".join(f"{r.student}={r.total:g}{'(E)' if r.status == 'error' else ''}"
                                     for r in outcome.rows))

        if not args.skip_nbgrader:
            print(f"\n== stock nbgrader autograde (Execute, whole notebook), the same {args.copies} copies ==")
            stock = nbgrader_baseline(work, copies)
            per = stock / max(1, args.copies)
            print(f"    wall time {stock:.1f} s = {per:.1f} s per submission (one at a time); "
                  f"projected 200: {per * 200 / 60:.1f} min")
            print(f"    stock nbgrader / grade-class: {stock / solution['wall']:.2f}x the wall time "
                  f"(grade-class {solution['wall']:.1f} s with --jobs {args.jobs})")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
