"""The catalogue of the hidden checks, as pytest sees them: their rows, their order, and how
pytest is run on them.

Shared by ``grade`` (which scores a notebook) and the class side (which lists every check in an
error result: ``Result.failed(..., checks=catalogue())``), without either importing the other's heavy
parts. What one grading shares with the checks' fixtures is grading_run.py's.
"""

import contextlib
import functools
import io
from pathlib import Path

from .results import in_exercise_order

CHECKS_DIR = Path(__file__).parent / "checks"

# no:unraisableexception: its gc.collect() passes at session end cost ~1.3 s per graded notebook.
# --tb=no: the rows come from the exceptions themselves, so pytest need not format tracebacks.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "-q", "--no-header",
               "--tb=no", "-o", "addopts=", "--rootdir", str(CHECKS_DIR), "-o", "python_files=test_*.py",
               "-W", "ignore"]


def exercise_of(item) -> str:
    return Path(str(item.path)).stem.removeprefix("test_")


def check_id(item) -> str:
    return f"{exercise_of(item)}::{item.name}"


def description(item) -> str:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip()
    return doc.splitlines()[0]


def row(item) -> dict:
    """A check as {"id", "exercise", "max_points", "counterpart"}, read from its module, its points marker
    and its visible_counterpart marker (the notebook's visible test asserts the same property)."""
    import pytest
    marker = item.get_closest_marker("points")
    if marker is None:
        raise pytest.UsageError(f"check {item.nodeid} has no points marker")
    return {"id": check_id(item), "exercise": exercise_of(item), "max_points": float(marker.args[0]),
            "counterpart": item.get_closest_marker("visible_counterpart") is not None}


class _Listing:
    """A pytest plugin that only collects the checks' rows."""

    def __init__(self):
        self.rows = []

    def pytest_collection_modifyitems(self, items):
        self.rows = [row(item) for item in items]


@functools.lru_cache(maxsize=1)
def collect_checks() -> tuple:
    """Every check as {"id", "exercise", "max_points", "counterpart"}, in exercise order, without grading anything."""
    import pytest
    listing = _Listing()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(CHECKS_DIR), "--collect-only", *PYTEST_ARGS], plugins=[listing])
    return tuple(in_exercise_order(listing.rows))


def catalogue() -> tuple | None:
    """``collect_checks()`` for ``Result.failed(checks=...)``, or None when the checks cannot be
    listed (the grader itself is broken: one row per exercise then stands in for them)."""
    try:
        return collect_checks()
    except Exception:  # noqa: BLE001 - the error result is still made, with every exercise's points
        return None
