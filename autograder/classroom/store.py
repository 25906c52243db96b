"""Where grade-class keeps each student's result, and when a stored result is kept on a rerun.

Per student, in grade-class's own folder of the course (nbgrader never reads or writes it: it skips
a student whose ``autograded/`` folder exists, so grade-class stays out of nbgrader's folders):

* ``grade-class/<student>/batchnorm/results.json`` -- the Result (results.py's document);
* ``grade_class.json`` beside it -- the resume key it was graded from, the row's message, the
  hand-in's notes and the written answers' grades the feedback page shows (written.py);
* ``feedback.html`` beside it -- the student's feedback page (feedback.py), autograded checks and
  written answers (rewritten when a person has graded those since).

Each file is written atomically. A stored result is kept (not graded again) when it was graded from
the same key -- the submission's sha256, the grader's hash (provenance.grader_hash) and the
notebook's name -- and it is a grade: a result on the grader's side (``Result.grader_fault``) is
never kept. The nbgrader bridge takes its results from here too.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

from .. import feedback
from ..atomic import write_atomic, write_json_atomic
from ..check_catalogue import catalogue
from ..errors import Side
from ..exercises import ASSIGNMENT_ID
from ..provenance import sha256_file
from ..results import Result
from .written import WrittenScores

OUTPUT_DIR = "grade-class"
RESULTS_NAME = "results.json"
SIDECAR = "grade_class.json"
FEEDBACK_NAME = "feedback.html"


def folder(course, student: str) -> Path:
    """The folder of one student's results, feedback page and sidecar."""
    return Path(course) / OUTPUT_DIR / student / ASSIGNMENT_ID


def result_path(course, student: str) -> Path:
    """Where grade-class keeps ``student``'s results document."""
    return folder(course, student) / RESULTS_NAME


def resume_key(notebook, grader_hash: str) -> dict:
    """What a stored result must have been graded from to be kept: this file under this grader."""
    notebook = Path(notebook)
    return {"submission_sha256": sha256_file(notebook), "grader": grader_hash, "notebook": notebook.name}


def read_result(course, student: str) -> Result:
    """The stored Result of ``student``; OSError or ValueError when there is none that can be read."""
    return Result.from_json(result_path(course, student).read_text(encoding="utf-8"))


def stored_result(course, student: str, key: dict):
    """(Result, the row's message) of a stored grade graded from ``key``; None when the submission
    must be graded (again): changed, graded by another grader, or not graded because of the grader."""
    where = folder(course, student)
    try:
        sidecar = json.loads((where / SIDECAR).read_text(encoding="utf-8"))
        result = read_result(course, student)
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("key") != key or result.grader_fault:
        return None
    return result, str(sidecar.get("message") or "")


UNSANDBOXED_MARK = "graded WITHOUT isolation (--allow-unsandboxed)"


def message_for(notes, result: Result) -> str:
    """A row's message: the error, if any, then the notes on the hand-in and on the file, then
    whether the student's code ran without isolation (results.json's "isolation": "none"). The error
    comes first so that bounding the row's message (grades.csv) never cuts a grader-side error's
    prefix, which is how grades.csv's reader tells a grader's error from a student's when the written
    answers are pending (ClassGrade.grader_fault): notes can be long (the names of many notebooks)."""
    parts = [result.error] if result.error else []
    parts += list(notes)
    if result.isolation == "none":
        parts.append(UNSANDBOXED_MARK)
    return "; ".join(parts)


def writable(result: Result) -> Result:
    """``result``, or an error on the grader's side when it cannot be written as JSON (NaN points)."""
    try:
        result.to_json()
    except (TypeError, ValueError) as exc:
        return Result.failed(f"the grader returned a result that is not valid JSON: {exc}", Side.GRADER,
                             checks=catalogue(), notes=result.notes, timings=result.timings)
    return result


def write_result(course, student: str, result: Result, *, notes, key, written: WrittenScores | None = None) -> str:
    """Write results.json, its sidecar and the feedback page of one student (each atomically), and
    return the row's message. ``result`` must be ``writable``; ``notes`` are the hand-in's notes
    (the file's own are in the result); ``written`` the written answers' grades (all pending by
    default). Raises OSError when a file cannot be written."""
    notes = [*notes, *result.notes]
    message = message_for(notes, result)
    written = written or WrittenScores()
    where = folder(course, student)
    write_atomic(result.to_json(), where / RESULTS_NAME)
    write_json_atomic({"student": student, "key": key, "message": message, "notes": notes,
                       "written": written.to_json(),
                       "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, where / SIDECAR)
    feedback.write(result, where / FEEDBACK_NAME, student=student, message="; ".join(notes), written=written)
    return message


def _sidecar(course, student: str) -> dict:
    try:
        sidecar = json.loads((folder(course, student) / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return sidecar if isinstance(sidecar, dict) else {}


def stored_written(course, student: str) -> WrittenScores:
    """The written answers' grades that ``student``'s feedback page shows (all pending when unknown)."""
    return WrittenScores.from_json(_sidecar(course, student).get("written"))


def write_feedback(course, student: str, result: Result, *, written: WrittenScores) -> None:
    """Rewrite a stored result's feedback page with these written answers' grades, and record them
    in its sidecar (each atomically). Raises OSError when a file cannot be written."""
    where = folder(course, student)
    sidecar = _sidecar(course, student)
    notes = [str(n) for n in sidecar.get("notes") or []] if isinstance(sidecar.get("notes"), list) else []
    feedback.write(result, where / FEEDBACK_NAME, student=student, message="; ".join(notes), written=written)
    write_json_atomic({**sidecar, "written": written.to_json()}, where / SIDECAR)
