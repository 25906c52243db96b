"""``nbgrader autograde`` with the isolated grader's scores: no score comes from the student's kernel.

Stock ``nbgrader autograde`` runs the whole submitted notebook in a Jupyter kernel (its ``Execute``
preprocessor) and scores each autograded test cell by its outputs: an error scores 0, no error
scores full marks. Code in that kernel can redefine what the test cells call, or print a number,
and collect points. This module's ``IsolatedGrade`` preprocessor takes ``Execute``'s place in
``c.Autograde.autograde_preprocessors`` (see nbgrader_config.py). For each submission it

1. writes the sanitized notebook (nbgrader has already restored the locked cells and cleared the
   outputs) to a temporary file, with no outputs, and grades it with
   ``autograder.grade.grade_notebook``: the student's code runs in the sandboxed worker, the
   hidden checks in the grader;
2. writes the results document beside the autograded notebook
   (``autograded/<student>/batchnorm/results.json``);
3. gives each autograded test cell (grade_id = ``Exercise.test_cell``) exactly two outputs: a
   stdout stream listing the exercise's check messages and points, and an ``execute_result`` whose
   ``text/plain`` is the exercise's points. nbgrader's ``determine_grade`` reads that number as
   partial credit, so ``SaveAutoGrades`` (which runs after this) records the isolated scores in the
   gradebook, and ``nbgrader export`` and formgrader show them. A 0 is written as "0.0", which
   nbgrader records as 0 (an empty output would mean full marks). No stderr or error output is
   ever written, and no student code runs in nbgrader's process or in a kernel.

Two ways to grade a class, both with the same isolated grader:

* ``nbgrader autograde batchnorm`` (this module): the gradebook path, for formgrader, manual
  grading of written answers, ``nbgrader export`` and ``nbgrader generate_feedback`` (whose
  feedback hides the hidden tests through ``ClearHiddenTests``). It grades one submission at a time.
* ``python -m autograder grade-class batchnorm --jobs N`` (autograder/grade_class.py): parallel,
  resumable, tolerant of renamed/old/zipped notebooks; writes results.json, grades.csv and its own
  feedback pages, but does not touch the gradebook. Run ``nbgrader autograde batchnorm --force``
  afterwards to fill the gradebook (nbgrader skips students whose autograded folder exists).
"""

import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import results
from .exercises import BY_ID, BY_TEST_CELL, EXERCISE_IDS, NOTEBOOK_NAME, grade_id


def report_text(exercise_id: str, result: dict, points: float, max_points: float) -> str:
    """The stdout a test cell shows: the exercise's checks, their points, and their messages."""
    title = BY_ID[exercise_id].title if exercise_id in BY_ID else exercise_id
    lines = [f"{title}: {results.format_points(points)} / {results.format_points(max_points)} points "
             "(scored by the isolated autograder; this cell's code was not run)"]
    if result.get("status") == "error":
        lines.append(f"The notebook could not be graded: {result.get('error')}")
    for row in result.get("checks", []):
        if row.get("exercise") != exercise_id:
            continue
        mark = "PASS" if row.get("passed") else "FAIL"
        message = " ".join(str(row.get("message") or "").split())
        lines.append(f"  {mark} {results.format_points(row.get('points', 0))}/{results.format_points(row.get('max_points', 0))}  {message}")
    return "\n".join(lines) + "\n"


def score_outputs(text: str, points: float, execution_count=None) -> list:
    """The two outputs of a scored test cell: the report on stdout and the points as the result."""
    return [
        nbformat.v4.new_output("stream", name="stdout", text=text),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(points))},
                               execution_count=execution_count),
    ]


def apply_scores(nb, result: dict, log=None):
    """Set the outputs of every autograded test cell of ``nb`` from ``result``; returns {grade_id: points}."""
    scores = results.exercise_scores(result) if result.get("checks") is not None else {}
    recorded = {}
    count = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        count += 1
        if not utils.is_grade(cell) or utils.is_solution(cell):
            continue               # only autograded test cells are scored from their outputs
        cell_id = grade_id(cell)
        max_points = float(cell.metadata["nbgrader"].get("points", 0) or 0)
        exercise = BY_TEST_CELL.get(cell_id)
        if exercise is None:
            text = (f"The test cell {cell_id!r} is not known to the isolated autograder "
                    f"(it knows {', '.join(e for e in EXERCISE_IDS)}), so it scores 0.\n")
            points = 0.0
            if log is not None:
                log.warning("test cell %r is not one of the exercises; it scores 0", cell_id)
        else:
            points = round(min(max(float(scores.get(exercise.id, 0.0)), 0.0), max_points), 6)
            if log is not None and abs(exercise.points - max_points) > 1e-9:
                log.warning("test cell %r is worth %s points in the notebook, %s in exercises.py",
                            cell_id, max_points, exercise.points)
            text = report_text(exercise.id, result, points, max_points)
        cell.outputs = score_outputs(text, points, execution_count=count)
        cell.execution_count = count
        recorded[cell_id] = points
    return recorded


class IsolatedGrade(NbGraderPreprocessor):
    """Score the autograded test cells with the isolated grader instead of executing the notebook."""

    cache_dir = Unicode(
        "", help="Where the grader caches its training baseline (default: the grader's own)."
    ).tag(config=True)
    write_results = Unicode(
        "results.json",
        help="File name for the results document beside the autograded notebook ('' to skip)."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        student = resources.get("nbgrader", {}).get("student", "?")
        started = time.monotonic()
        result = self._grade(nb, resources)
        recorded = apply_scores(nb, result, log=self.log)
        self.log.info("Isolated grader: %s scored %s/%s (%s) in %.1f s: %s", student,
                      results.format_points(result.get("total", 0)), results.format_points(result.get("max_total", 0)), result.get("status"),
                      time.monotonic() - started, recorded)
        folder = resources.get("metadata", {}).get("path")
        if self.write_results and folder:
            try:
                results.write_json_atomic(result, Path(folder) / self.write_results)
            except OSError as exc:
                self.log.warning("could not write %s: %s", Path(folder) / self.write_results, exc)
        return nb, resources

    def _grade(self, nb, resources) -> dict:
        from . import grade
        with tempfile.TemporaryDirectory(prefix="nbgrader-isolated-") as tmp:
            path = Path(tmp) / NOTEBOOK_NAME
            copy = nbformat.from_dict(nb)
            for cell in copy.cells:
                if cell.get("cell_type") == "code":
                    cell.outputs = []
                    cell.execution_count = None
                cell.pop("attachments", None)
            nbformat.write(copy, str(path))
            hide = [str(Path.cwd())]
            folder = resources.get("metadata", {}).get("path")
            if folder:
                hide.append(str(Path(folder).resolve()))
            try:
                return grade.grade_notebook(path, cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                                            hide=tuple(hide))
            except Exception as exc:   # the grader never should; the gradebook still gets zeros
                self.log.error("the isolated grader failed: %s: %s", type(exc).__name__, exc)
                return results.error_result(f"the grader failed: {type(exc).__name__}: {exc}")
