"""Grade one notebook: run the hidden checks with pytest in this process and collect results.json.

    python -m autograder grade path/to/notebook.ipynb --output results.json

is the same as ``pytest autograder/checks --submission path/to/notebook.ipynb`` plus the scoring:
each check's points come from its ``points`` marker, its message from its assertion (or from the
student's error), and its exercise from its module, ``test_<exercise>.py``.
"""

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

import pytest

from . import results
from .checklist import CHECKS_DIR, PYTEST_ARGS, check_id, collect_checks, description, failure, row  # noqa: F401

__all__ = ["grade_notebook", "collect_checks", "main"]


class Collector:
    """A pytest plugin that turns each check's outcome into a results row, and keeps the failures
    on the grader's side apart (``grader_failures``, "check id: reason")."""

    def __init__(self):
        self.rows = {}
        self.grader_failures = []
        self.config = None

    def pytest_configure(self, config):
        self.config = config

    def pytest_collection_modifyitems(self, items):
        self.rows = {item.nodeid: row(item) for item in items}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        found = self.rows.get(item.nodeid)
        if found is None:
            return
        if report.when == "call" and report.passed:
            found.update(points=found["max_points"], passed=True, message=f"passed: {description(item)}")
        elif report.failed and call.excinfo is not None and report.when in ("setup", "call"):
            message, grader_side = failure(call.excinfo.value)
            found.update(points=0.0, passed=False, message=message)
            if grader_side:
                self.grader_failures.append(f"{check_id(item)}: {message}")


def _grader_error(collector, exit_code, log) -> str | None:
    """The reason grading failed on the grader's side, or None."""
    from .checks.conftest import GRADER_ERROR
    config = collector.config
    setup = config.stash.get(GRADER_ERROR, None) if config else None
    if setup:
        return setup
    if collector.grader_failures:
        more = len(collector.grader_failures) - 1
        return collector.grader_failures[0] + (f" (and {more} more)" if more else "")
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not collector.rows:
        return f"pytest exit code {int(exit_code)}: {log.getvalue()[-2000:]}"
    return None


def grade_notebook(path, *, cache_dir=None, hide=()) -> dict:
    """The results document for one notebook. Never raises for a bad submission; a failure on the
    grader's side gives status "error" and a reason that says so, with every check at 0.

    Bounded on every path that calls it (grade, grade-class's pool, the nbgrader bridge): the
    student's code by the sandbox's Limits, models by modelcheck's caps before they are built, and
    the training check by its own wall-clock and memory budget (training.py)."""
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
    timings["checks"] = round(time.monotonic() - started - timings.get("worker_start", 0.0)
                              - (timings.get("training_check") or 0.0), 3)
    timings["total"] = round(time.monotonic() - started, 3)
    for key in ("worker_start", "calls"):
        if key in timings:
            timings[key] = round(timings[key], 3)
    grader_error = None if error else _grader_error(collector, exit_code, log)
    if grader_error:
        return results.error_result(grader_error, timings=timings, grader_side=True)
    return results.summarise(list(collector.rows.values()), error=error, timings=timings)


def main(argv=None) -> int:
    """Exit status 0 when the notebook got a result (an unreadable notebook's error result included),
    1 when grading failed on the grader's side (results.json then says why, with status "error")."""
    parser = argparse.ArgumentParser(prog="python -m autograder grade",
                                     description="Grade one notebook with the hidden checks, in isolation.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, default=Path("results.json"))
    parser.add_argument("--cache-dir", type=Path, help="where the training baseline is cached")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = grade_notebook(args.notebook, cache_dir=args.cache_dir)
    results.write_json_atomic(result, args.output)
    for check in result["checks"]:
        mark = "PASS" if check["passed"] else "FAIL"
        print(f"{mark} {check['points']:>5.2f}/{check['max_points']:<5.2f} {check['id']}: {check['message']}")
    status = f" ({result['status']}: {result['error']})" if result["error"] else ""
    print(f"total {result['total']:g}/{result['max_total']:g}{status} -> {args.output}", file=sys.stderr)
    return 1 if results.is_grader_error(result) else 0
