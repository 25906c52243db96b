"""Grade one notebook: run the hidden checks with pytest in this process and collect results.json.

    python -m autograder grade path/to/notebook.ipynb --output results.json

is the same as ``pytest autograder/checks --submission path/to/notebook.ipynb`` plus the scoring:
each check's points come from its ``points`` marker, its message from its assertion (or from the
student's error), and its exercise from its module, ``test_<exercise>.py``.
"""

import argparse
import contextlib
import functools
import io
import os
import sys
import time
from pathlib import Path

import pytest

from .results import CHECKS_DIR, in_exercise_order, summarise, write_json_atomic
from .submission import StudentCodeError, SubmissionError

# no:unraisableexception: its gc.collect() passes at session end cost ~1.3 s per graded notebook.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "-q", "--no-header", "-o", "addopts=",
               "--rootdir", str(CHECKS_DIR), "-o", "python_files=test_*.py", "-W", "ignore"]


def _exercise(item) -> str:
    return Path(str(item.path)).stem.removeprefix("test_")


def _check_id(item) -> str:
    return f"{_exercise(item)}::{item.name}"


def _description(item) -> str:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip()
    return doc.splitlines()[0]


def _student_message(excinfo) -> str:
    """What the student reads when a check fails: its assertion message or the student's own error."""
    exc = excinfo.value
    if isinstance(exc, (StudentCodeError, SubmissionError)):
        return str(exc)
    if isinstance(exc, pytest.fail.Exception):
        return str(exc.msg)
    if isinstance(exc, AssertionError):
        text = str(exc.args[0]) if exc.args else "the check failed"
        return text.split("\nassert ")[0].strip()
    from .modelcheck import ModelRefused
    if isinstance(exc, ModelRefused):
        return str(exc)
    return f"the check could not run: {type(exc).__name__}: {str(exc)[:300]}"


class Collector:
    """A pytest plugin that turns each check's outcome into a results row."""

    def __init__(self):
        self.rows = {}
        self.config = None

    def pytest_configure(self, config):
        self.config = config

    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("points")
            if marker is None:
                raise pytest.UsageError(f"check {item.nodeid} has no points marker")
            self.rows[item.nodeid] = {"id": _check_id(item), "exercise": _exercise(item),
                                      "points": 0.0, "max_points": float(marker.args[0]), "passed": False,
                                      "message": "the check did not run"}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        row = self.rows[item.nodeid]
        if report.when == "call" and report.passed:
            row.update(points=row["max_points"], passed=True, message=f"passed: {_description(item)}")
        elif report.failed and call.excinfo is not None:
            row.update(points=0.0, passed=False, message=_student_message(call.excinfo))


@functools.lru_cache(maxsize=1)
def collect_checks() -> tuple:
    """Every check as a row (id, exercise, max_points), without grading anything."""
    collector = Collector()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(CHECKS_DIR), "--collect-only", *PYTEST_ARGS], plugins=[collector])
    return tuple({"id": r["id"], "exercise": r["exercise"], "max_points": r["max_points"]}
                 for r in in_exercise_order(collector.rows.values()))


def grade_notebook(path, *, cache_dir=None, hide=()) -> dict:
    """The results document for one notebook. Never raises for a bad submission."""
    started = time.monotonic()
    collector = Collector()
    args = [str(CHECKS_DIR), *PYTEST_ARGS, "--submission", str(path)]
    if cache_dir:
        args += ["--grader-cache", str(cache_dir)]
    for folder in hide:
        args += ["--hide", str(folder)]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        exit_code = pytest.main(args, plugins=[collector])
    from .checks.conftest import SUBMISSION_ERROR, TIMINGS
    config = collector.config
    timings = dict(config.stash.get(TIMINGS, {})) if config else {}
    error = config.stash.get(SUBMISSION_ERROR, None) if config else None
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not collector.rows:
        error = f"the grader failed (pytest exit code {int(exit_code)}): {log.getvalue()[-2000:]}"
    timings["checks"] = round(time.monotonic() - started - timings.get("worker_start", 0.0)
                              - (timings.get("training_check") or 0.0), 3)
    timings["total"] = round(time.monotonic() - started, 3)
    for key in ("worker_start", "calls"):
        if key in timings:
            timings[key] = round(timings[key], 3)
    return summarise(list(collector.rows.values()), error=error, timings=timings)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder grade",
                                     description="Grade one notebook with the hidden checks, in isolation.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, default=Path("results.json"))
    parser.add_argument("--cache-dir", type=Path, help="where the training baseline is cached")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = grade_notebook(args.notebook, cache_dir=args.cache_dir)
    write_json_atomic(results, args.output)
    for check in results["checks"]:
        mark = "PASS" if check["passed"] else "FAIL"
        print(f"{mark} {check['points']:>5.2f}/{check['max_points']:<5.2f} {check['id']}: {check['message']}")
    status = f" ({results['status']}: {results['error']})" if results["error"] else ""
    print(f"total {results['total']:g}/{results['max_total']:g}{status} -> {args.output}", file=sys.stderr)
    return 0
