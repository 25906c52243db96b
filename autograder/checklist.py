"""The hidden checks as pytest sees them: their rows, their order, and whose fault a failure is.

Shared by ``grade`` (which scores a notebook) and ``results`` (which lists every check in an error
result) without either importing the other. A check fails for the student's reason (an assertion,
the student's code, a model refused) or crashes for the grader's: any other exception in check code
on an answer that reached it is a bug or a broken machine on our side, never the student's zero.
"""

import contextlib
import functools
import io
from pathlib import Path

from .exercises import EXERCISE_IDS

CHECKS_DIR = Path(__file__).parent / "checks"

# no:unraisableexception: its gc.collect() passes at session end cost ~1.3 s per graded notebook.
# --tb=no: the rows come from the exceptions themselves, so pytest need not format tracebacks.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "-q", "--no-header",
               "--tb=no", "-o", "addopts=", "--rootdir", str(CHECKS_DIR), "-o", "python_files=test_*.py",
               "-W", "ignore"]

# How a reason on the grader's side begins, in results.json's "error" (see results.is_grader_error).
GRADER_SIDE = "grader-side failure, not the student's: "


def in_exercise_order(checks) -> list:
    """Check rows in the notebook's exercise order (stable within an exercise)."""
    return sorted(checks, key=lambda c: (EXERCISE_IDS.index(c["exercise"])
                                         if c["exercise"] in EXERCISE_IDS else len(EXERCISE_IDS)))


def exercise_of(item) -> str:
    return Path(str(item.path)).stem.removeprefix("test_")


def check_id(item) -> str:
    return f"{exercise_of(item)}::{item.name}"


def description(item) -> str:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip()
    return doc.splitlines()[0]


def failure(exc: BaseException) -> tuple:
    """(message, grader_side) for an exception a check raised."""
    import pytest

    from .modelcheck import ModelRefused
    from .sandbox import SandboxError
    from .submission import StudentCodeError, SubmissionError
    if isinstance(exc, (StudentCodeError, SubmissionError, ModelRefused)):
        return str(exc), False
    if isinstance(exc, pytest.fail.Exception):
        return str(exc.msg), False
    if isinstance(exc, AssertionError):
        text = str(exc.args[0]) if exc.args else "the check failed"
        return text.split("\nassert ")[0].strip(), False
    if isinstance(exc, SandboxError):
        return f"the sandboxed worker could not start on the grading machine: {str(exc)[:600]}", True
    from .data import DatasetMissing
    if isinstance(exc, DatasetMissing):
        return f"Fashion-MNIST is missing on the grading machine: {str(exc)[:300]}", True
    return f"the check crashed: {type(exc).__name__}: {str(exc)[:300]}", True


def row(item) -> dict:
    """A check's results row before it runs: 0 points, "did not run"."""
    import pytest
    marker = item.get_closest_marker("points")
    if marker is None:
        raise pytest.UsageError(f"check {item.nodeid} has no points marker")
    return {"id": check_id(item), "exercise": exercise_of(item), "points": 0.0,
            "max_points": float(marker.args[0]), "passed": False, "message": "the check did not run"}


class _Listing:
    """A pytest plugin that only collects the checks' rows."""

    def __init__(self):
        self.rows = []

    def pytest_collection_modifyitems(self, items):
        self.rows = [row(item) for item in items]


@functools.lru_cache(maxsize=1)
def collect_checks() -> tuple:
    """Every check as a row (id, exercise, max_points), without grading anything."""
    import pytest
    listing = _Listing()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(CHECKS_DIR), "--collect-only", *PYTEST_ARGS], plugins=[listing])
    return tuple({"id": r["id"], "exercise": r["exercise"], "max_points": r["max_points"]}
                 for r in in_exercise_order(listing.rows))
