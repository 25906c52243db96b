"""The student kit in a student's whole environment, TensorFlow included, timed step by step.

A fresh venv (no system site-packages) gets what the notebook asks students to install, TensorFlow,
Keras and Matplotlib, at the grader's versions (pyproject.toml), from whatever index or cache pip is
configured with here; then the kit, first ``--no-deps`` (the check must report SciPy and JAX missing
as one problem, exit code 2, and blame no answer), then as students install it, with its
requirements (the solution notebook must be ready). The steps are those of
``tests/test_student_kit.py::student_environment``; the slow test there leaves TensorFlow out,
which the worker never imports, because it adds 20 to 40 s and 1.3 GB of disk to every run. This
script is not run by CI.

    .venv/bin/python benchmarks/bench_student_environment.py [--without-tensorflow]

Exit code 0 when every step held, 1 when the kit fell short (the assertion is printed), 2 when pip
cannot install the notebook's packages here.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autograder.student import kit  # noqa: I001 - the repository first, then tests/
from test_student_kit import STUDENT_PACKAGES, CannotInstall, student_environment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--without-tensorflow", action="store_true",
                        help="install only Keras and Matplotlib, as the slow test does")
    args = parser.parse_args(argv)
    packages = tuple(p for p in STUDENT_PACKAGES if not (args.without_tensorflow and p == "tensorflow"))
    with tempfile.TemporaryDirectory(prefix="bn-student-env-") as folder:
        wheel = kit.build(Path(folder) / "kit")
        started = time.monotonic()
        try:
            timings = student_environment(wheel, Path(folder), packages)
        except CannotInstall as exc:
            print(exc, file=sys.stderr)
            return 2
        except AssertionError as exc:
            print(f"the kit fell short: {exc}", file=sys.stderr)
            return 1
    print(f"packages: {', '.join(packages)}, then the kit")
    for step, seconds in timings.items():
        print(f"  {step:<30} {seconds:6.1f} s")
    print(f"  {'in all':<30} {time.monotonic() - started:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
