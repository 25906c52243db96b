"""The hidden checks as pytest sees them: their rows, their order, and the grading run they share.

Shared by ``grade`` (which scores a notebook), ``results`` (which lists every check in an error
result) and the checks' conftest, without any of them importing another's heavy parts.
"""

import contextlib
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

CHECKS_DIR = Path(__file__).parent / "checks"

# no:unraisableexception: its gc.collect() passes at session end cost ~1.3 s per graded notebook.
# --tb=no: the rows come from the exceptions themselves, so pytest need not format tracebacks.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "-q", "--no-header",
               "--tb=no", "-o", "addopts=", "--rootdir", str(CHECKS_DIR), "-o", "python_files=test_*.py",
               "-W", "ignore"]


@dataclass
class GradingRun:
    """What one grading of one notebook shares between grade.py and the checks' fixtures: the
    notebook, the settings it is graded under, and what the run found out along the way."""
    notebook: object                     # notebook.Notebook
    limits: object                       # sandbox.Limits
    training_budget: object              # training.TrainingBudget
    cache_dir: Path | None = None
    hide: tuple = ()                     # folders the student's code must not see
    memo: bool = True                    # the training check's memo by architecture (settings.MEMO)
    isolation: object = None             # sandbox.Isolation its workers run in (None: the best here)
    timings: dict = field(default_factory=dict)
    fault: BaseException | None = None   # a GraderFault found after the checks (the set-up cells)
    worker_isolation: str | None = None  # the mode a worker actually ran in, for results.json
    architectures: dict = field(default_factory=dict)   # {model builder: architecture fingerprint}, defaults' call
    submission: object = None            # the submission.Submission grade.run_checks started early, or None

    def new_submission(self):
        """A submission.Submission of this run's notebook under its limits, hidden folders and
        isolation, not yet started (grade.run_checks starts it early; plain pytest on first use)."""
        from .submission import Submission
        return Submission(self.notebook, self.limits, hide=self.hide, isolation=self.isolation)


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


def in_exercise_order(rows) -> list:
    """Rows (dicts or objects with .exercise) in the notebook's exercise order, stable within one."""
    from .exercises import EXERCISE_IDS
    def exercise(r):
        return r["exercise"] if isinstance(r, dict) else r.exercise
    return sorted(rows, key=lambda r: (EXERCISE_IDS.index(exercise(r)) if exercise(r) in EXERCISE_IDS
                                       else len(EXERCISE_IDS)))


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
