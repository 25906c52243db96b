"""Gradescope: one submission graded inside Gradescope's container, written as its ``results.json``.

    python -m autograder gradescope-run --root /autograder

Gradescope's layout (gradescope-autograders.readthedocs.io, "Autograder Specifications"): the zip
``export gradescope`` writes is unpacked into ``ROOT/source`` (with ``gradescope.json``, the options
below), the submission arrives in ``ROOT/submission/`` and the results go to ``ROOT/results/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import write_json_atomic
from ..check_catalogue import catalogue
from ..classroom.collect import MAX_DEPTH, notebooks_below
from ..errors import GRADER_SIDE_PREFIX, GraderFault, StudentFault
from ..exercises import BY_ID, EXERCISE_IDS, MANUAL_POINTS, NOTEBOOK_NAME, WRITTEN_ANSWERS
from ..notebook import MAX_NOTEBOOK_BYTES
from ..results import TRAINING_LEAD, CheckResult, Result, Status, format_points
from ..sandbox.isolation import Isolation
from ..settings import Settings
from ..text import bounded

log = logging.getLogger(__name__)

GRADESCOPE_ROOT = "/autograder"         # Gradescope's ROOT: the zip is unpacked into ROOT/source
CONFIG_NAME = "gradescope.json"       # at the zip's root, so ROOT/source/gradescope.json
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")   # Gradescope's words


@dataclass(frozen=True)
class GradescopeOptions:
    """What the exported autograder decides about what students see; ``export gradescope`` writes
    them with the grader's settings (settings.Settings) into CONFIG_NAME."""
    hidden_visibility: str = "after_due_date"     # a hidden check's entry
    counterpart_visibility: str = "visible"       # a check whose property the notebook's visible test asserts too
    leaderboard: bool = False                     # a leaderboard entry: the BN model's lead in the training check

    def __post_init__(self):
        for name in ("hidden_visibility", "counterpart_visibility"):
            if getattr(self, name) not in VISIBILITIES:
                raise ValueError(f"{name} must be one of {', '.join(VISIBILITIES)}, not {getattr(self, name)!r}")
        if not isinstance(self.leaderboard, bool):
            raise ValueError("leaderboard must be true or false")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc) -> GradescopeOptions:
        """The options back from CONFIG_NAME's "options"; ValueError when they are not options."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict) or set(doc) - {f.name for f in fields(cls)}:
            raise ValueError(f"the Gradescope options are not an object of {', '.join(f.name for f in fields(cls))}")
        return cls(**doc)


# --- the submission ------------------------------------------------------------------------------------

class NoSingleNotebook(StudentFault):
    """The submission holds no notebook, or more than one: which to grade is the student's to say."""


class SubmissionMissing(GraderFault):
    """ROOT/submission is not a folder: Gradescope did not hand a submission in, not the student's doing."""


def find_notebook(submission: Path) -> Path:
    """The one notebook (``*.ipynb``, any name, in any sub-folder down to MAX_DEPTH) in ``submission``
    (collect.notebooks_below: grade-class's search too; links are never taken). NoSingleNotebook
    when there is none or several, naming them; SubmissionMissing when ``submission`` is no folder."""
    if not submission.is_dir():
        raise SubmissionMissing(f"{submission} is not a folder: no submission was handed to the autograder")
    found, too_deep = notebooks_below(submission)
    if len(found) == 1:
        return found[0]
    if not found:
        deeper = f" (folders more than {MAX_DEPTH} deep are not looked in)" if too_deep else ""
        raise NoSingleNotebook("your submission holds no Jupyter notebook (.ipynb)" + deeper + ": upload the "
                               f"assignment's notebook, {NOTEBOOK_NAME}")
    names = ", ".join(str(p.relative_to(submission)) for p in found[:10]) + (", ..." if len(found) > 10 else "")
    raise NoSingleNotebook(f"your submission holds {len(found)} notebooks ({names}): upload only the one to "
                           f"grade, {NOTEBOOK_NAME}")


# --- the configuration the export wrote ------------------------------------------------------------------

@dataclass(frozen=True)
class Exported:
    """ROOT/source/gradescope.json: the options and the grader's settings."""
    options: GradescopeOptions
    settings: Settings


def read_config(source: Path) -> Exported:
    """The exported configuration in ``source``; without one, the defaults (an autograder laid out
    by hand). GraderFault (ours, not the student's) when it is there but unreadable."""
    path = source / CONFIG_NAME
    if not path.exists():
        log.info("no %s in %s: the default options and settings", CONFIG_NAME, source)
        return Exported(GradescopeOptions(), Settings())
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return Exported(GradescopeOptions.from_dict(doc.get("options")), Settings.from_dict(doc.get("settings")))
    except (OSError, ValueError, TypeError) as exc:
        raise ExportBroken(f"the exported configuration {path} cannot be used ({exc}); export the autograder "
                           "again with `python -m autograder export gradescope`") from None


class ExportBroken(GraderFault):
    """The autograder's own files in ROOT/source cannot be used: the instructor's export, not the student."""


# --- results.json in Gradescope's format -----------------------------------------------------------------

def check_name(check: CheckResult) -> str:
    """What a check is called on Gradescope: its exercise's title and its property, from its function's name."""
    function = check.id.partition("::")[2]
    words = function.removeprefix("test_").split("[")[0].replace("_", " ")
    variant = function.partition("[")[2].rstrip("]")
    exercise = BY_ID.get(check.exercise)
    title = exercise.title if exercise else check.exercise
    return f"{title}: {words}" + (f" ({variant})" if variant else "")


def check_numbers(checks) -> list:
    """"E.k" for each check: its exercise's number in the notebook and its place among the exercise's checks."""
    seen, numbers = {}, []
    for check in checks:
        exercise = EXERCISE_IDS.index(check.exercise) + 1 if check.exercise in EXERCISE_IDS else len(EXERCISE_IDS) + 1
        seen[exercise] = seen.get(exercise, 0) + 1
        numbers.append(f"{exercise}.{seen[exercise]}")
    return numbers


def fenced(text: str) -> str:
    """``text`` as a Markdown code block whose fence no run of backticks in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


# Every ASCII punctuation character: CommonMark lets a backslash make any of them literal.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def markdown_escaped(text: str) -> str:
    """``text`` as one line of Markdown that shows it literally: no emphasis, heading, link, HTML or
    code span of its making (a note inside a list item, where a fenced block would end the item)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


def tests_field(result: Result, options: GradescopeOptions) -> list:
    """results.json's "tests": one entry per hidden check, in the notebook's order. (Not test_...: a
    test module that imported it would have pytest collect it.)"""
    entries = []
    for check, number in zip(result.checks, check_numbers(result.checks), strict=True):
        tags = [check.exercise] + ([check.mistake] if check.mistake else [])
        entries.append({
            "name": check_name(check), "number": number, "score": check.points, "max_score": check.max_points,
            "status": "passed" if check.passed else "failed",
            "output": check.message + (f"\n(mistake code: {check.mistake})" if check.mistake else ""),
            "tags": tags,
            "visibility": options.counterpart_visibility if check.counterpart else options.hidden_visibility,
        })
    return entries


def summary(result: Result, *, total_shown: bool = True) -> str:
    """The submission's output, in Markdown: its points, the written answers apart, the isolation.
    Gradescope shows the output at once, but hides the total score while a test is not shown yet: then
    (``total_shown`` False) the points are not said here either, or they would tell the hidden checks' sum."""
    points = (f"**Autograded points: {format_points(result.total)} of {format_points(result.max_total)}.** "
              if total_shown else "")
    lines = [points + f"The {len(WRITTEN_ANSWERS)} written answers ({format_points(MANUAL_POINTS)} points) are graded "
             "by a person, not here."]
    if result.status is Status.ERROR:
        lines.append("Your notebook could not be graded, so every check has 0 points:")
        lines.append(fenced(result.error or ""))
    for note in result.notes:
        lines.append(f"- {markdown_escaped(note)}")
    if not result.isolation:
        lines.append("None of your code ran.")
    elif result.isolation == Isolation.NONE.value:
        lines.append("Your code ran without a sandbox (the autograder was exported with --allow-unsandboxed).")
    else:
        lines.append(f"Your code ran in the sandbox ({result.isolation}).")
    return "\n\n".join(lines)


def results_document(result: Result, exported: Exported, *, notebook_sha256: str | None, seconds: float,
                     submission_id=None) -> dict:
    """Gradescope's results.json for a grade (a graded notebook, or the student's error at 0 points).
    Never called for a grader-side failure: that is no grade (grader_failure_document)."""
    if result.grader_fault:
        raise ValueError("a grader-side failure is not a grade")
    tests = tests_field(result, exported.options)
    doc = {
        "score": result.total,
        "execution_time": int(round(seconds)),
        "output": summary(result, total_shown=all(test["visibility"] == "visible" for test in tests)),
        "output_format": "md",
        "test_output_format": "text",      # a check's message may quote the student: shown as text
        "tests": tests,
        "extra_data": extra_data(result.isolation, exported, notebook_sha256=notebook_sha256,
                                 status=result.status.value, submission_id=submission_id, versions=result.versions,
                                 timings=result.timings),
    }
    lead = result.measures.get(TRAINING_LEAD)
    if exported.options.leaderboard and lead is not None:
        doc["leaderboard"] = [{"name": LEADERBOARD_NAME, "value": round(lead, 4), "order": "desc"}]
    return doc


LEADERBOARD_NAME = "BN lead in training accuracy"


def extra_data(isolation, exported: Exported, *, notebook_sha256=None, status: str, submission_id=None,
               versions=None, timings=None, grader_failure: str | None = None) -> dict:
    """What instructors see beside the score: versions, the grader's hash, the notebook's hash and the isolation."""
    from ..provenance import grader_hash
    from ..provenance import versions as installed
    doc = {"status": status, "isolation": isolation, "allow_unsandboxed": exported.settings.allow_unsandboxed,
           "grader_hash": grader_hash(), "versions": dict(versions or installed()),
           "notebook_sha256": notebook_sha256, "timings": dict(timings or {})}
    if submission_id is not None:           # submission_id() read and checked it
        doc["submission_id"] = submission_id
    if grader_failure is not None:
        doc["grader_failure"] = grader_failure
    return doc


def grader_failure_document(reason: str, exported: Exported | None, *, notebook_sha256=None, isolation=None,
                            submission_id=None) -> dict:
    """results.json when the grader failed: no score and no tests, so that Gradescope reports that the
    autograder failed rather than a grade (its specification requires one or the other), and the reason."""
    exported = exported or Exported(GradescopeOptions(), Settings())
    return {"output": "**The autograder failed on the grader's side; this is not your grade.** The course staff "
                      "will grade your submission again once the cause is fixed.",
            "output_format": "md",
            "extra_data": extra_data(isolation, exported, notebook_sha256=notebook_sha256, status="error",
                                     submission_id=submission_id, grader_failure=bounded(reason))}


# --- the run -------------------------------------------------------------------------------------------

def submission_id(root: Path):
    """The submission's id from Gradescope's metadata, or None (read by the grader, bounded: 1 MB)."""
    path = root / "submission_metadata.json"
    try:
        if path.stat().st_size > 1 << 20:
            return None
        found = json.loads(path.read_text(encoding="utf-8")).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def run(root: Path) -> tuple:
    """Grade ROOT/submission's notebook and write ROOT/results/results.json: (exit status, the document).
    0 for a grade (the student's error included, at 0 points), 1 when the grader failed (no score)."""
    from ..grade import grade_notebook
    from ..provenance import sha256_file
    started = time.monotonic()
    root = Path(root).resolve()
    results = root / "results" / "results.json"
    exported, notebook_hash, isolation, identifier = None, None, None, None

    def failed(reason: str) -> tuple:
        return grader_failure_document(reason, exported, notebook_sha256=notebook_hash, isolation=isolation,
                                       submission_id=identifier), 1

    try:
        identifier = submission_id(root)
        exported = read_config(root / "source")
        try:
            notebook = find_notebook(root / "submission")
        except StudentFault as exc:
            result = Result.failed(exc, checks=catalogue(), timings={"total": round(time.monotonic() - started, 3)})
        else:
            # hashed only when the reader will read it: a larger file is refused without being read whole
            notebook_hash = sha256_file(notebook) if notebook.stat().st_size <= MAX_NOTEBOOK_BYTES else None
            # the student's code sees none of ROOT: not the source, the submission's folder or the results
            result = grade_notebook(notebook, exported.settings, hide=(str(root),))
        isolation = result.isolation
        if result.grader_fault:
            doc, status = failed(result.error or "")
        else:
            doc, status = results_document(result, exported, notebook_sha256=notebook_hash,
                                           seconds=time.monotonic() - started, submission_id=identifier), 0
    except Exception as exc:  # noqa: BLE001 - whatever breaks in the grader is reported as the grader's, never graded
        log.exception("gradescope-run failed")
        doc, status = failed(f"{GRADER_SIDE_PREFIX}{type(exc).__name__}: {exc}")
    try:
        write_json_atomic(doc, results, mode=0o644)
    except ValueError as exc:        # something in it JSON cannot say (NaN): no grade is written from it
        doc, status = failed(f"{GRADER_SIDE_PREFIX}results.json could not be written: {exc}")
        write_json_atomic(doc, results, mode=0o644)
    return status, doc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder gradescope-run",
        description="Grade the one notebook in ROOT/submission/ in isolation and write ROOT/results/results.json "
                    "in Gradescope's format (run_autograder calls this with --root /autograder). Exit status 0 "
                    "for a grade, 1 when the grader failed (then results.json holds no score).")
    parser.add_argument("--root", type=Path, default=Path(GRADESCOPE_ROOT),
                        help="the autograder's root: source/, submission/, results/ (default /autograder)")
    args = parser.parse_args(argv)
    status, doc = run(args.root)
    if status:
        print(f"grader-side failure, no score written: {doc['extra_data'].get('grader_failure')}")
    else:
        print(f"score {format_points(doc['score'])}; isolation {doc['extra_data']['isolation']}")
    return status
