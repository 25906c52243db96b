"""The hidden checks as pytest sees them: their rows, their order, and the grading run they share.

Shared by ``grade`` (which scores a notebook), the class side (which lists every check in an error
result: ``Result.failed(..., checks=catalogue())``) and the checks' conftest, without any of them
importing another's heavy parts.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .results import in_exercise_order
from .settings import Settings

if TYPE_CHECKING:
    from .errors import GraderFault
    from .notebook import Notebook
    from .sandbox import Isolation
    from .submission import Submission

CHECKS_DIR = Path(__file__).parent / "checks"

# no:unraisableexception: its gc.collect() passes at session end cost ~1.3 s per graded notebook.
# --tb=no: the rows come from the exceptions themselves, so pytest need not format tracebacks.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "-q", "--no-header",
               "--tb=no", "-o", "addopts=", "--rootdir", str(CHECKS_DIR), "-o", "python_files=test_*.py",
               "-W", "ignore"]


@dataclass
class RunFindings:
    """What the checks' fixtures found out about one grading, read by grade.py once pytest is done:
    the submission fixture fills in the worker's part when it closes it (``record_worker``); the
    training check adds its time (``record_timing``) and the model fixture each builder's
    architecture as they go."""
    fault: GraderFault | None = None     # a GraderFault found after the checks (the set-up cells)
    timings: dict[str, float] = field(default_factory=dict)
    worker_isolation: str | None = None  # the mode a worker actually ran in, for results.json
    architectures: dict[str, str] = field(default_factory=dict)   # {model builder: fingerprint}, defaults' call

    def record_worker(self, submission: Submission) -> None:
        """What the closing submission knows: its grader-side fault, its timings and its mode."""
        self.fault = submission.grader_failure()      # first: it waits for a worker still starting
        self.timings.update(submission.timings)
        self.worker_isolation = submission.isolation


@dataclass
class GradingRun:
    """What one grading of one notebook shares between grade.py and the checks' fixtures: the
    notebook, the settings it is graded under, and what the run found out (``findings``)."""
    notebook: Notebook
    settings: Settings = field(default_factory=Settings)
    hide: tuple[str, ...] = ()           # folders the student's code must not see
    isolation: Isolation | None = None   # the mode its workers run in (None: the best here)
    submission: Submission | None = None   # the one grade.run_checks started early, or None
    findings: RunFindings = field(default_factory=RunFindings)

    def new_submission(self) -> Submission:
        """A submission.Submission of this run's notebook under its limits, hidden folders and
        isolation, not yet started (grade.run_checks starts it early; plain pytest on first use)."""
        from .submission import Submission
        return Submission(self.notebook, self.settings.limits, hide=self.hide, isolation=self.isolation)


def run_key():
    """The pytest stash key under which the GradingRun is kept (one per process)."""
    import pytest
    global _RUN_KEY
    if _RUN_KEY is None:
        _RUN_KEY = pytest.StashKey[GradingRun]()
    return _RUN_KEY


_RUN_KEY = None


def exercise_of(item) -> str:
    return Path(str(item.path)).stem.removeprefix("test_")


def check_id(item) -> str:
    return f"{exercise_of(item)}::{item.name}"


def description(item) -> str:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip()
    return doc.splitlines()[0]


def row(item) -> dict:
    """A check as {"id", "exercise", "max_points"}, read from its module and its points marker."""
    import pytest
    marker = item.get_closest_marker("points")
    if marker is None:
        raise pytest.UsageError(f"check {item.nodeid} has no points marker")
    return {"id": check_id(item), "exercise": exercise_of(item), "max_points": float(marker.args[0])}


class _Listing:
    """A pytest plugin that only collects the checks' rows."""

    def __init__(self):
        self.rows = []

    def pytest_collection_modifyitems(self, items):
        self.rows = [row(item) for item in items]


@functools.lru_cache(maxsize=1)
def collect_checks() -> tuple:
    """Every check as {"id", "exercise", "max_points"}, in exercise order, without grading anything."""
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
