"""How long ``python -m autograder check`` takes on the solution notebook, against T.

T is the wall time of ``python -c "import tensorflow"`` measured in the same run; issue 17's goal is
check <= 3 T. The two commands run in turn (T, check, T, check, ...) after one warm-up of each, and
the ratio is taken pair by pair, so that a machine that speeds up or slows down during the run
moves both sides of each pair. Each run is a whole process, timed from outside: its start-up
(Python, imports, the sandboxed worker and its Keras import) included.

    .venv/bin/python benchmarks/bench_check.py [--runs 5]

The check must say the solution is ready (exit 0) in every run, or the figure is not printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL = 3.0
ZYGOTE_GOAL = 0.3      # issue 26's, with the worker forked from a zygote that lives as long as the command


def timed(argv, env, cwd) -> tuple:
    """(wall seconds, exit code) of one whole process; its output is discarded."""
    started = time.monotonic()
    code = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.monotonic() - started, code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of runs measured (after one warm-up pair)")
    args = parser.parse_args(argv)
    from autograder import synthetic_students as students  # noqa: PLC0415

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        notebook = students.write_submission(students.STUDENTS["full_marks"], Path(tmp) / "sub" / "batchnorm.ipynb")
        check = [sys.executable, "-m", "autograder", "check", str(notebook), "--output", str(Path(tmp) / "check.json")]
        import_tf = [sys.executable, "-c", "import tensorflow"]
        load = os.getloadavg()[0]
        pairs = []
        for run in range(args.runs + 1):
            t, t_code = timed(import_tf, env, ROOT)
            c, c_code = timed(check, env, ROOT)
            if t_code or c_code:
                print(f"run {run}: import tensorflow exited {t_code}, check exited {c_code} (0 = ready): no figure")
                return 1
            if run:                                   # run 0 is the warm-up
                pairs.append((t, c))
                print(f"run {run}: T {t:.2f} s, check {c:.2f} s, check / T {c / t:.2f}", flush=True)
    ts, cs = [t for t, _ in pairs], [c for _, c in pairs]
    ratios = [c / t for t, c in pairs]
    ratio = statistics.median(ratios)
    print(f"\nload {load:.1f} -> {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, {len(pairs)} pairs")
    print(f"T (import tensorflow): median {statistics.median(ts):.2f} s (min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"check on the solution: median {statistics.median(cs):.2f} s (min {min(cs):.2f}, max {max(cs):.2f})")
    print(f"check / T: median {ratio:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); goal <= {GOAL:g}: "
          f"{'met' if ratio <= GOAL else 'MISSED'}; issue 26's goal <= {ZYGOTE_GOAL:g}: "
          f"{'met' if ratio <= ZYGOTE_GOAL else 'MISSED'}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
