"""results.json: the contract instructors' scripts parse, and writing it without ever leaving half a file.

{"total": float, "max_total": float, "status": "graded" | "error", "error": str | null,
 "error_side": "grader" | "student" | null,
 "checks": [{"id", "exercise", "points", "max_points", "passed", "message"}],
 "versions": {...}, "timings": {...}}

Every check appears in every result; one that could not run has 0 points and says why. When the
cause is on the grader's side (the sandbox cannot start, the instructor's set-up cell fails on this
machine, a check crashes, the data set is missing) the status is "error", ``error_side`` is
"grader", every check has 0 points and the error begins with "grader-side failure, not the
student's: ". Such a result is never a grade (``is_grader_error``): grade it again once fixed. An
error that is the student's (a notebook that cannot be read) has ``error_side`` "student".
"""

import json
import os
import platform
import tempfile
from pathlib import Path

from .checklist import GRADER_SIDE, in_exercise_order
from .exercises import EXERCISE_IDS, EXERCISES


def write_atomic(data, path, mode=None) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` through a temp file in the same folder and
    os.replace, so a reader (or an interrupted run) sees the old file or the new one, never a torn
    one. ``mode`` replaces mkstemp's 0600 where other processes must read the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(obj, path) -> None:
    """results.json and its kin, written with write_atomic."""
    write_atomic(json.dumps(obj, indent=2, allow_nan=False) + "\n", path)


def format_points(x) -> str:
    """Points as people write them: 3, 3.5, 0.375."""
    return f"{float(x):g}"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": platform.python_version()}
    # jax, jaxlib and scipy: the sandboxed worker builds the students' models with Keras' NumPy backend.
    for package in ("batchnorm-assignment", "tensorflow-cpu", "tensorflow", "keras", "numpy", "nbgrader",
                    "jax", "jaxlib", "scipy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def summarise(checks: list, *, error=None, timings=None, grader_side=False) -> dict:
    """The results document for a list of check rows; status is "error" when ``error`` is given,
    on the grader's side when ``grader_side`` (else the student's)."""
    ordered = in_exercise_order(checks)
    return {
        "total": round(sum(c["points"] for c in ordered), 6),
        "max_total": round(sum(c["max_points"] for c in ordered), 6),
        "status": "error" if error else "graded",
        "error": error,
        "error_side": ("grader" if grader_side else "student") if error else None,
        "checks": ordered,
        "versions": versions(),
        "timings": dict(timings or {}),
    }


def catalogue() -> list:
    """Every hidden check as a zero-point row: (id, exercise, max_points), collected by pytest."""
    from .checklist import collect_checks
    return collect_checks()


def is_grader_error(result: dict) -> bool:
    """Whether ``result`` is an error on the grader's side (never a grade: grade it again once fixed)."""
    return result.get("status") == "error" and result.get("error_side") == "grader"


def error_result(message: str, timings=None, *, grader_side=False) -> dict:
    """A result for a submission that could not be graded at all: every check, 0 points, the reason.
    When the checks cannot be listed (the grader itself is broken), one row per exercise instead.
    ``grader_side``: the cause is the grader's; the message then says so."""
    if grader_side and not message.startswith(GRADER_SIDE):
        message = GRADER_SIDE + message
    try:
        rows = catalogue()
    except Exception:  # noqa: BLE001 - the reason is still reported, with every exercise's points
        rows = [{"id": e.id, "exercise": e.id, "max_points": e.points} for e in EXERCISES]
    rows = [dict(row, points=0.0, passed=False, message=message) for row in rows]
    return summarise(rows, error=message, timings=timings, grader_side=grader_side)


def exercise_scores(result: dict) -> dict:
    """{exercise id: points} summed over the exercise's checks, for every exercise."""
    scores = {exercise: 0.0 for exercise in EXERCISE_IDS}
    for check in result["checks"]:
        scores[check["exercise"]] = round(scores.get(check["exercise"], 0.0) + check["points"], 6)
    return scores
