"""Grade one notebook: read it, run the hidden checks with pytest in this process, and score them.

    python -m autograder grade path/to/notebook.ipynb --output results.json

is the same as ``pytest autograder/checks --submission path/to/notebook.ipynb`` plus the scoring:
each check's points come from its ``points`` marker, its message from its assertion (or from the
student's error), and its exercise from its module, ``test_<exercise>.py``.
"""

import argparse
import contextlib
import io
import logging
import time
from pathlib import Path

import pytest

from . import notebook as notebooks
from .check_catalogue import CHECKS_DIR, PYTEST_ARGS, catalogue, check_id, description, row
from .errors import DatasetMissing, GraderFault, SandboxUnavailable, Side, StudentFault, side_of
from .grading_run import GradingRun, run_key
from .results import CheckResult, Result
from .settings import Settings

log = logging.getLogger(__name__)


def check_failure(exc: BaseException) -> tuple:
    """(message, side) for an exception a check raised. A failed assertion or a StudentFault is the
    check's verdict on the student's answer; anything else is a failure on the grader's side."""
    if isinstance(exc, pytest.fail.Exception):
        return str(exc.msg), Side.STUDENT
    if isinstance(exc, AssertionError):
        text = str(exc.args[0]) if exc.args else "the check failed"
        return text.split("\nassert ")[0].strip(), Side.STUDENT
    if side_of(exc) is Side.STUDENT:
        return str(exc), Side.STUDENT
    if isinstance(exc, SandboxUnavailable):
        return f"the sandboxed worker could not start on the grading machine: {str(exc)[:600]}", Side.GRADER
    if isinstance(exc, DatasetMissing):
        return f"Fashion-MNIST is missing on the grading machine: {str(exc)[:300]}", Side.GRADER
    return f"the check crashed: {type(exc).__name__}: {str(exc)[:300]}", Side.GRADER


def failure_mistake(exc: BaseException) -> str | None:
    """The code of the known mistake a check's failure names (checks/answers.MistakeMade), or None.
    Kept apart from check_failure, whose (message, side) is unchanged."""
    code = getattr(exc, "code", None) if isinstance(exc, AssertionError) else None
    return code if isinstance(code, str) and code else None


class Collector:
    """A pytest plugin: hands the checks their GradingRun, and turns each check's outcome into a
    CheckResult, keeping the failures on the grader's side apart ("check id: reason")."""

    def __init__(self, run: GradingRun):
        self.run = run
        self.rows = {}
        self.grader_failures = []

    def pytest_configure(self, config):
        config.stash[run_key()] = self.run

    def pytest_collection_modifyitems(self, items):
        self.rows = {item.nodeid: CheckResult(**row(item), points=0.0, passed=False, message="the check did not run")
                     for item in items}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        found = self.rows.get(item.nodeid)
        if found is None:
            return
        if report.when == "call" and report.passed:
            # record_property("message", ...)
            said = [value for key, value in item.user_properties if key == "message"]
            found.points, found.passed, found.message = (found.max_points, True,
                                                         f"passed: {said[-1] if said else description(item)}")
        elif report.failed and call.excinfo is not None and report.when in ("setup", "call"):
            message, side = check_failure(call.excinfo.value)
            found.points, found.passed, found.message = 0.0, False, message
            found.mistake = failure_mistake(call.excinfo.value) if side is Side.STUDENT else None
            if side is Side.GRADER:
                self.grader_failures.append(f"{check_id(item)}: {message}")

    def grader_error(self, exit_code, output: str) -> str | None:
        """Why grading failed on the grader's side, or None."""
        if self.run.findings.fault is not None:
            return str(self.run.findings.fault)
        if self.grader_failures:
            more = len(self.grader_failures) - 1
            return self.grader_failures[0] + (f" (and {more} more)" if more else "")
        if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not self.rows:
            return f"pytest exit code {int(exit_code)}: {output[-2000:]}"
        return None


def run_checks(run: GradingRun, targets=(CHECKS_DIR,)) -> tuple:
    """Run the check modules or folders ``targets`` on ``run``'s notebook with pytest in this process:
    (pytest's exit code, the Collector with a CheckResult per check, pytest's output). The worker is
    started first, on a thread, so that its start overlaps pytest's own (Submission.start_early)."""
    try:
        run.submission = run.new_submission()
    except Exception:  # noqa: BLE001 - the checks' fixture opens it again, and its error is the checks' verdict
        run.submission = None
    else:
        run.submission.start_early()
    collector = Collector(run)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            exit_code = pytest.main([*map(str, targets), *PYTEST_ARGS], plugins=[collector])
    finally:
        if run.submission is not None:
            run.submission.close()
    return exit_code, collector, output.getvalue()


def grade_notebook(source, settings: Settings | None = None, *, hide=()) -> Result:
    """The Result for one notebook (a path, or a notebook.Notebook already read). Never raises for a
    bad submission; a failure on the grader's side gives an error Result whose side says so.

    The student's code runs in the best isolation this machine offers (sandbox.choose_isolation);
    where there is none, grading refuses (a grader-side error saying what to install) unless
    ``settings.allow_unsandboxed``, and results.json's "isolation" records the mode the worker ran in.

    ``settings`` (settings.Settings; None: the grader's defaults) hold the limits that bound the
    student's code in the sandbox, the training check's budget in this process, its cache folder
    and memo switch; models are bounded by their config before anything is built (models.cost).
    Nothing here reads the environment: settings come from the caller (settings.from_environ at
    the command line). ``hide``: folders the student's code must not see."""
    from .sandbox import choose_isolation
    settings = settings if settings is not None else Settings()
    started = time.monotonic()
    hide = tuple(str(h) for h in hide)
    if isinstance(source, notebooks.Notebook):
        read = source
    else:
        try:
            read = notebooks.read(source)
        except StudentFault as exc:
            return Result.failed(exc, checks=catalogue(), timings={"total": round(time.monotonic() - started, 3)})
        hide += (str(Path(source).resolve().parent),)
    try:
        isolation = choose_isolation(allow_unsandboxed=settings.allow_unsandboxed)
    except SandboxUnavailable as exc:
        return Result.failed(exc, checks=catalogue(), notes=read.notes,
                             timings={"total": round(time.monotonic() - started, 3)})
    run = GradingRun(read, settings, hide, isolation=isolation)
    exit_code, collector, output = run_checks(run)
    findings = run.findings
    timings = dict(findings.timings)
    # the worker starts while pytest does (run_checks), so "checks" is what its start did not cover
    timings["checks"] = round(max(0.0, time.monotonic() - started - timings.get("worker_start", 0.0)
                                  - (timings.get("training_check") or 0.0)), 3)
    timings["total"] = round(time.monotonic() - started, 3)
    for key in ("worker_start", "calls"):
        if key in timings:
            timings[key] = round(timings[key], 3)
    reason = collector.grader_error(exit_code, output)
    if reason:
        return Result.failed(reason, Side.GRADER, checks=catalogue(), notes=read.notes, timings=timings,
                             isolation=findings.worker_isolation)
    graded = Result.graded(list(collector.rows.values()), notes=read.notes, timings=timings,
                           isolation=findings.worker_isolation)
    graded.architectures = dict(findings.architectures)
    graded.measures = dict(findings.measures)
    return graded


def main(argv=None) -> int:
    """Exit status 0 when the notebook got a result (an unreadable notebook's error result included),
    1 when grading failed on the grader's side (results.json then says why, with status "error")."""
    from . import settings
    from .atomic import write_atomic
    parser = argparse.ArgumentParser(prog="python -m autograder grade", parents=[settings.parent_parser()],
                                     description="Grade one notebook with the hidden checks, in isolation.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, default=Path("results.json"))
    args = parser.parse_args(argv)
    result = grade_notebook(args.notebook, settings.from_environ(flags=args))
    write_atomic(result.to_json(), args.output)
    for check in result.checks:
        mark = "PASS" if check.passed else "FAIL"
        # check.message is bounded and escaped (results.CheckResult): no raw ESC or CR reaches the terminal
        print(f"{mark} {check.points:>5.2f}/{check.max_points:<5.2f} {check.id}: {check.message}")
    status = f" ({result.status.value}: {result.error})" if result.error else ""
    log.info("total %g/%g%s -> %s (isolation: %s)", result.total, result.max_total, status, args.output,
             result.isolation or "no worker ran")
    return 1 if result.grader_fault else 0


__all__ = ["grade_notebook", "run_checks", "check_failure", "failure_mistake", "main", "GraderFault"]
