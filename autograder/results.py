"""A submission's result: typed in the grader, ``results.json`` on disk and on the wire.

    {"total": float, "max_total": float, "status": "graded" | "error", "error": str | null,
     "error_side": "student" | "grader" | null, "isolation": "bwrap+landlock" | "bwrap" | "landlock" | "none" | null,
     "notes": [str], "checks": [{"id", "exercise", "points", "max_points", "passed", "message", "mistake",
                                 "counterpart"}],
     "versions": {...}, "timings": {...}, "architectures": {model builder: sha256}, "measures": {name: float}}

Every check appears in every result; one that could not run has 0 points and says why. A result
whose error is on the grader's side (``Result.grader_fault``) is never a grade: every check has 0
points, the error begins with "grader-side failure, not the student's: ", and it is graded again
once the cause is fixed. An error that is the student's (a notebook that cannot be read) is final.
``isolation`` is the sandbox mode the student's code ran in (sandbox.Isolation), null when no
worker ran; "none" means it was graded without isolation (``--allow-unsandboxed``).
A check row's ``mistake`` is the code of the known mistake its failure names
(known_mistakes.mistake_codes: "manual_batch_norm.ddof1"), null otherwise. ``architectures`` holds,
per model builder the checks called with its defaults, the fingerprint of the model's canonical
architecture (models/architecture.py), which the similarity report groups students by.
``measures`` holds figures the grader measured in its own process, never the student's: today
``training_lead``, the BN model's lead over the model without BN in the training check (Gradescope's
leaderboard shows it).
A check row's ``counterpart`` says the notebook's visible test asserts the same property (the check's
``visible_counterpart`` marker, autograder/checks/README.md): its result reveals nothing the student
cannot see already, so a platform may show it before the due date. Rows written before it existed: false.
Text that may quote the student (a check's message, the error, the notes) is bounded and its control
characters written as visible escapes whenever it is set (text.bounded), so results.json stays small
and whatever prints or writes a Result shows no raw terminal escape.
"""

import json
import math
from dataclasses import dataclass, field
from enum import Enum

from .errors import GRADER_SIDE_PREFIX, Side, side_of
from .exercises import EXERCISE_IDS, EXERCISES
from .text import bounded

# A check's message: the grader's own are at most 236 characters (2,535 check rows of a graded
# class of synthetic students), and one quoting a student's error or output needs a few hundred more. 2,000 keeps a
# results.json of the assignment's 47 checks near 100 KB even when every message is cut here
# (a 2 MB cell error copied into each), however the student's text escapes in JSON.
CHECK_MESSAGE_CHARS = 2_000
TRAINING_LEAD = "training_lead"     # results.json's measures: the training check's lead, measured by the grader


def in_exercise_order(rows) -> list:
    """Rows (dicts or objects with .exercise) in the notebook's exercise order, stable within one."""
    def exercise(r):
        return r["exercise"] if isinstance(r, dict) else r.exercise
    return sorted(rows, key=lambda r: (EXERCISE_IDS.index(exercise(r)) if exercise(r) in EXERCISE_IDS
                                       else len(EXERCISE_IDS)))


def _measures(doc) -> dict:
    """A results document's measures: finite numbers only (older documents have none)."""
    if not isinstance(doc, dict):
        return {}
    found = {}
    for name, value in doc.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[str(name)] = float(value)
    return found


class Status(str, Enum):
    GRADED = "graded"
    ERROR = "error"


def format_points(x) -> str:
    """Points as people write them: 3, 3.5, 0.375."""
    return f"{float(x):g}"


@dataclass
class CheckResult:
    id: str               # "<exercise>::<check function>"
    exercise: str
    points: float
    max_points: float
    passed: bool
    message: str
    mistake: str | None = None    # the named mistake's code ("<exercise>.<key>"), None when none matched
    counterpart: bool = False     # the notebook's visible test asserts this check's property too

    def __setattr__(self, name, value):
        # The message may quote the student's output or exception: bounded and its control
        # characters escaped whenever it is set (built, read back, or filled in by grade.Collector).
        super().__setattr__(name, bounded(value, CHECK_MESSAGE_CHARS) if name == "message" else value)

    def to_dict(self) -> dict:
        return {"id": self.id, "exercise": self.exercise, "points": self.points,
                "max_points": self.max_points, "passed": self.passed, "message": self.message,
                "mistake": self.mistake, "counterpart": self.counterpart}

    @classmethod
    def from_dict(cls, row) -> "CheckResult":
        if not isinstance(row, dict):
            raise ValueError("a check row is not an object")
        try:
            found = cls(str(row["id"]), str(row["exercise"]), float(row["points"]), float(row["max_points"]),
                        bool(row["passed"]), str(row.get("message") or ""),
                        None if row.get("mistake") is None else str(row["mistake"]),   # older rows: none
                        bool(row.get("counterpart", False)))                             # older rows: false
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a check row is malformed: {exc}") from None
        return found


@dataclass
class Result:
    checks: list                                  # CheckResult, in exercise order
    status: Status = Status.GRADED
    error: str | None = None
    error_side: Side | None = None
    notes: list = field(default_factory=list)     # on the file itself: converted, outputs removed
    versions: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    isolation: str | None = None                  # the sandbox mode the student's code ran in
    architectures: dict = field(default_factory=dict)   # {model builder: canonical architecture's sha256}
    measures: dict = field(default_factory=dict)        # {name: float} the grader measured (TRAINING_LEAD)

    def __setattr__(self, name, value):
        # The error and the notes may quote the student (a cell's error, a file's name): bounded and
        # their control characters escaped whenever they are set, so results.json stays small and
        # nothing printed or written from a Result carries a raw ESC or carriage return.
        if name == "error" and value is not None:
            value = bounded(value)
        elif name == "notes":
            value = [bounded(note) for note in value]
        super().__setattr__(name, value)

    @property
    def total(self) -> float:
        return round(sum(c.points for c in self.checks), 6)

    @property
    def max_total(self) -> float:
        return round(sum(c.max_points for c in self.checks), 6)

    @property
    def grader_fault(self) -> bool:
        """Not a grade: the grader failed, not the student. Graded again once fixed."""
        return self.status is Status.ERROR and self.error_side is Side.GRADER

    def exercise_scores(self) -> dict:
        """{exercise id: points} summed over the exercise's checks, for every exercise."""
        scores = {exercise: 0.0 for exercise in EXERCISE_IDS}
        for check in self.checks:
            scores[check.exercise] = round(scores.get(check.exercise, 0.0) + check.points, 6)
        return scores

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def graded(cls, checks, *, notes=(), timings=None, isolation=None) -> "Result":
        from .provenance import versions
        return cls(in_exercise_order(checks), notes=list(notes), versions=versions(), timings=dict(timings or {}),
                   isolation=isolation)

    @classmethod
    def failed(cls, reason, side: Side | None = None, *, checks=None, notes=(), timings=None,
               isolation=None) -> "Result":
        """Every check at 0 points with the reason: ``reason`` is an exception (whose type decides
        the side) or a message with an explicit ``side``. ``checks`` is the check catalogue, rows
        {"id", "exercise", "max_points", "counterpart"} (``check_catalogue.catalogue()``); without it (the checks cannot
        be listed: the grader itself is broken), one row per exercise stands in for them."""
        if isinstance(reason, BaseException):
            side = side or side_of(reason)
            message = str(reason)
        else:
            message = str(reason)
        side = side or Side.GRADER
        if side is Side.GRADER and not message.startswith(GRADER_SIDE_PREFIX):
            message = GRADER_SIDE_PREFIX + message
        if checks is not None:
            rows = [CheckResult(r["id"], r["exercise"], 0.0, r["max_points"], False, message,
                                counterpart=bool(r.get("counterpart", False))) for r in checks]
        else:
            rows = [CheckResult(e.id, e.id, 0.0, e.points, False, message) for e in EXERCISES]
        from .provenance import versions
        return cls(in_exercise_order(rows), Status.ERROR, message, side, list(notes), versions(),
                   dict(timings or {}), isolation)

    # --- serializing ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"total": self.total, "max_total": self.max_total, "status": self.status.value,
                "error": self.error, "error_side": self.error_side.value if self.error_side else None,
                "isolation": self.isolation, "notes": list(self.notes), "checks": [c.to_dict() for c in self.checks],
                "versions": dict(self.versions), "timings": dict(self.timings),
                "architectures": dict(self.architectures), "measures": dict(self.measures)}

    def to_json(self) -> str:
        """results.json's text; ValueError when something in it is not JSON (NaN, an object)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, doc) -> "Result":
        """A stored or received results document; ValueError when it is not one."""
        if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
            raise ValueError("not a results document")
        try:
            status = Status(doc.get("status"))
            side = Side(doc["error_side"]) if doc.get("error_side") else None
        except ValueError:
            raise ValueError("a results document with an unknown status or error side") from None
        if status is Status.ERROR and side is None:
            side = Side.STUDENT          # written before error_side existed: a student's error
        return cls([CheckResult.from_dict(c) for c in doc["checks"]], status,
                   None if doc.get("error") is None else str(doc["error"]), side,
                   [str(n) for n in doc.get("notes") or []],
                   dict(doc.get("versions") or {}), dict(doc.get("timings") or {}),
                   None if doc.get("isolation") is None else str(doc["isolation"]),
                   {str(k): str(v) for k, v in (doc.get("architectures") or {}).items()}
                   if isinstance(doc.get("architectures"), dict) else {}, _measures(doc.get("measures")))

    @classmethod
    def from_json(cls, text) -> "Result":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return cls.from_dict(doc)
