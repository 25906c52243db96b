"""One grading of one notebook, as grade.py and the checks' fixtures share it: the ``GradingRun``
(the notebook, its settings, its hidden folders, its isolation) and the ``RunFindings`` the
fixtures fill in, kept in pytest's stash under ``run_key()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from .errors import GraderFault
    from .notebook import Notebook
    from .sandbox import Isolation
    from .submission import Submission


@dataclass
class RunFindings:
    """What the checks' fixtures found out about one grading, read by grade.py once pytest is done:
    the submission fixture fills in the worker's part when it closes it (``record_worker``); the
    training check adds its time (``record_timing``) and its measured lead (``record_measure``), and
    the model fixture each builder's architecture as they go."""
    fault: GraderFault | None = None     # a GraderFault found after the checks (the set-up cells)
    timings: dict[str, float] = field(default_factory=dict)
    worker_isolation: str | None = None  # the mode a worker actually ran in, for results.json
    architectures: dict[str, str] = field(default_factory=dict)   # {model builder: fingerprint}, defaults' call
    measures: dict[str, float] = field(default_factory=dict)      # {name: value} measured by the grader

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
