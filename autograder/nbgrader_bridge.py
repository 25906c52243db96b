"""``nbgrader autograde`` with the isolated grader's scores: no score comes from the student's kernel.

Stock ``nbgrader autograde`` runs the whole submitted notebook in a Jupyter kernel (its ``Execute``
preprocessor) and scores each autograded test cell by its outputs: an error scores 0, no error
scores full marks. Code in that kernel can redefine what the test cells call, or print a number,
and collect points. This module's ``IsolatedGrade`` preprocessor takes ``Execute``'s place in
``c.Autograde.autograde_preprocessors`` (see nbgrader_config.py). No student code runs in
nbgrader's process or in a kernel. For each submission it

1. takes the isolated grader's result for the submitted file: the one ``grade-class`` stored in
   ``grade-class/<student>/batchnorm/`` when the file (sha256) and the grader
   (``provenance.grader_hash``) are unchanged (classroom/store.py); otherwise it grades. It grades
   in bulk: the first notebook of an ``nbgrader autograde`` run grades every submission nbgrader is
   about to import that has no such result, through ``classroom.run`` (the same parallel pool of
   grader processes, ``c.IsolatedGrade.jobs``, or a Dask cluster, ``c.IsolatedGrade.scheduler``),
   and stores the results where grade-class would, so the two commands share every grading;
2. writes the results document beside the autograded notebook
   (``autograded/<student>/batchnorm/results.json``);
3. gives each autograded test cell (grade_id = ``Exercise.test_cell``) exactly two outputs: a
   stdout stream listing the exercise's check messages and points, and an ``execute_result`` whose
   ``text/plain`` is the exercise's points. nbgrader's ``determine_grade`` reads that number as
   partial credit, so ``SaveAutoGrades`` (which runs after this) records the isolated scores in the
   gradebook, and ``nbgrader export`` and formgrader show them. A 0 is written as "0.0", which
   nbgrader records as 0 (an empty output would mean full marks). No stderr or error output is
   ever written.
4. leaves the written answers (exercises.WRITTEN_ANSWERS: markdown cells, nbgrader's manually
   graded answers) as the student wrote them: ``SaveAutoGrades`` records them as needing a manual
   grade, which a person gives in formgrader (an answer cell left exactly as released gets
   nbgrader's own 0 and needs none); ``nbgrader export`` then totals the autograded and the
   manual points, and grade-class reads the manual ones back (classroom/written.py).

A submission that was not graded because of the grader (``Result.grader_fault``: the worker
could not start, a check crashed, a grader process crashed or timed out) is never recorded as
zeros: the preprocessor raises ``GraderSideError``, so nbgrader reports that student's notebook as
failed, records no grades for it, removes its autograded folder and exits non-zero; the next
``nbgrader autograde batchnorm`` grades it again. An error that is the student's (a notebook that
cannot be read) is recorded as 0 points with the reason. The course has one assignment
(exercises.ASSIGNMENT_ID): a notebook of any other is refused the same way, with the usage error
grade-class gives for another name, and nothing is recorded for it.

Two ways to grade a class, with the same isolated grader and the same stored results:

* ``python -m autograder grade-class batchnorm --jobs N`` (autograder/classroom/): parallel,
  resumable, tolerant of renamed/old/zipped notebooks; writes ``grade-class/``, grades.csv and
  feedback pages, never nbgrader's folders or gradebook.
* ``nbgrader autograde batchnorm`` (this module): the gradebook path, for formgrader, manual
  grading of written answers, ``nbgrader export`` and ``nbgrader generate_feedback`` (whose
  feedback hides the hidden tests through ``ClearHiddenTests``). Right after grade-class it only
  imports grade-class's results; no ``--force`` needed.

Settings (sandbox limits, training budget: autograder/settings.py) are read from the environment
where nbgrader's config is, in this preprocessor, with ``c.IsolatedGrade.cache_dir`` and
``c.IsolatedGrade.allow_unsandboxed`` (traits made from the same declarations as the command
lines' ``--cache-dir`` and ``--allow-unsandboxed``), and given whole to the grader processes.
"""

import contextlib
import logging
import re
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, Integer, Unicode

from . import provenance, settings
from .atomic import write_atomic
from .check_catalogue import catalogue
from .classroom import classrun, pool, store
from .classroom.server import DEFAULT_TIMEOUT, Task
from .errors import GraderFault, Side
from .exercises import ASSIGNMENT_ID, BY_ID, BY_TEST_CELL, EXERCISE_IDS, NOTEBOOK_NAME, unknown_assignment
from .notebook import grade_id
from .results import Result, Status, format_points


def report_text(exercise_id: str, result: Result, points: float, max_points: float) -> str:
    """The stdout a test cell shows: the exercise's checks, their points, and their messages."""
    title = BY_ID[exercise_id].title if exercise_id in BY_ID else exercise_id
    lines = [f"{title}: {format_points(points)} / {format_points(max_points)} points "
             "(scored by the isolated autograder; this cell's code was not run)"]
    if result.status is Status.ERROR:
        lines.append(f"The notebook could not be graded: {result.error}")
    for check in result.checks:
        if check.exercise != exercise_id:
            continue
        mark = "PASS" if check.passed else "FAIL"
        message = " ".join(check.message.split())
        lines.append(f"  {mark} {format_points(check.points)}/{format_points(check.max_points)}  {message}")
    return "\n".join(lines) + "\n"


def score_outputs(text: str, points: float, execution_count=None) -> list:
    """The two outputs of a scored test cell: the report on stdout and the points as the result."""
    return [
        nbformat.v4.new_output("stream", name="stdout", text=text),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(points))},
                               execution_count=execution_count),
    ]


def apply_scores(nb, result: Result, log=None):
    """Set the outputs of every autograded test cell of ``nb`` from ``result``; returns {grade_id: points}."""
    scores = result.exercise_scores()
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


class GraderSideError(GraderFault):
    """A submission was not graded because of the grader; nbgrader records nothing for it."""


class _LogStream:
    """grade-class's progress lines, into nbgrader's log."""

    def __init__(self, log):
        self.log, self.partial = log, ""

    def write(self, text):
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            if line.strip():
                self.log.info("Isolated grader: %s", line.strip())

    def flush(self):
        pass


@contextlib.contextmanager
def _logging_into(log):
    """The class side's log records (autograder.classroom's), into nbgrader's log while grading."""
    class Forward(logging.Handler):
        def emit(self, record):
            log.log(record.levelno, "Isolated grader: %s", record.getMessage())
    source = logging.getLogger("autograder.classroom")
    handler, propagate, level = Forward(), source.propagate, source.level
    source.addHandler(handler)
    source.propagate = False
    source.setLevel(logging.INFO)
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.propagate = propagate
        source.setLevel(level)


def _trait(setting: settings.Setting):
    """The configurable trait of a setting's flag (named as its target), with the flag's help."""
    text = f"{setting.flag_help} (as grade-class {setting.flag})."
    return (Bool(False, help=text) if setting.switch else Unicode("", help=text)).tag(config=True)


class IsolatedGrade(NbGraderPreprocessor):
    """Score the autograded test cells with the isolated grader instead of executing the notebook."""

    cache_dir = _trait(settings.CACHE)
    write_results = Unicode(
        "results.json",
        help="File name for the results document beside the autograded notebook ('' to skip)."
    ).tag(config=True)
    jobs = Integer(
        min(2, pool.cpu_count()), help="Grader processes that grade the changed submissions in parallel."
    ).tag(config=True)
    timeout = Float(DEFAULT_TIMEOUT, help="Seconds one submission may take before it is stopped.").tag(config=True)
    scheduler = Unicode(
        "", help="Address of a Dask scheduler to grade on instead of local grader processes "
                 "(as grade-class --scheduler)."
    ).tag(config=True)
    allow_unsandboxed = _trait(settings.ALLOW_UNSANDBOXED)

    def preprocess(self, nb, resources):
        assignment = resources.get("nbgrader", {}).get("assignment", ASSIGNMENT_ID)
        wrong = unknown_assignment(assignment)       # nbgrader's edge: the one place the name is read
        if wrong:
            raise GraderSideError(f"nbgrader autograde: {wrong}; the isolated grader records nothing for it")
        student = resources.get("nbgrader", {}).get("student", "?")
        started = time.monotonic()
        result, how = self._result(nb, resources)
        if how == "not graded":
            raise GraderSideError(
                f"{student} was not graded because of a problem on the grader's side, not the student's "
                f"({result.error}). Nothing is recorded for this notebook; fix the cause and run "
                "nbgrader autograde again, which grades it then.")
        recorded = apply_scores(nb, result, log=self.log)
        self.log.info("Isolated grader: %s scored %s/%s (%s, %s) in %.1f s: %s", student,
                      format_points(result.total), format_points(result.max_total),
                      result.status.value, how, time.monotonic() - started, recorded)
        folder = resources.get("metadata", {}).get("path")
        if self.write_results and folder:
            try:
                write_atomic(result.to_json(), Path(folder) / self.write_results)
            except (OSError, ValueError) as exc:
                self.log.warning("could not write %s: %s", Path(folder) / self.write_results, exc)
        return nb, resources

    def _settings(self) -> settings.Settings:
        """The grader's settings, read from the environment here (nbgrader's edge), once; the traits
        made from the settings' flags (``c.IsolatedGrade.cache_dir``, ``.allow_unsandboxed``) as
        the command line's flags."""
        found = getattr(self, "_found_settings", None)
        if found is None:
            found = self._found_settings = settings.from_environ(flags=self)
        return found

    # --- where the result comes from ---------------------------------------------------------------

    def _converter(self):
        """nbgrader's Autograde converter running this preprocessor (its exporter's parent), or None."""
        converter = getattr(getattr(self, "parent", None), "parent", None)
        return converter if hasattr(converter, "coursedir") and hasattr(converter, "assignments") else None

    def _class_run(self, course: Path, students) -> classrun.ClassRun:
        with _logging_into(self.log):
            return classrun.run(course, students=students, collect=False, write_class_csv=False, jobs=self.jobs,
                                timeout=self.timeout, settings=self._settings(), scheduler=self.scheduler or None,
                                progress_stream=_LogStream(self.log))

    def _prepass(self, converter, course: Path, current: str) -> set:
        """Once per ``nbgrader autograde``: grade every submission nbgrader is about to import that
        grade-class has no result for, in parallel (classroom.run: the pool or the cluster); results
        land in grade-class/, where each notebook then finds its own. Returns the students whose
        grading failed on the grader's side."""
        done = getattr(converter, "_isolated_grade_prepass", None)
        if done is not None:
            return done
        coursedir = converter.coursedir            # the keys of converter.assignments are submitted/ folders
        regexp = coursedir.format_path(coursedir.submitted_directory, "(?P<student_id>.*)", "(?P<assignment_id>.*)",
                                       escape=True)
        excluded = set(filter(None, coursedir.student_id_exclude.split(",")))
        students = []
        for folder in sorted(converter.assignments):
            m = re.match(regexp, folder)
            if m is None or m.group("assignment_id") != ASSIGNMENT_ID or m.group("student_id") in excluded:
                continue
            student = m.group("student_id")
            dest = Path(converter._format_dest(ASSIGNMENT_ID, student))
            # nbgrader skips a student whose autograded folder exists, unless --force (this one's
            # folder is being written now)
            if converter.force or student == current or not dest.exists():
                students.append(student)
        self.log.info("Isolated grader: grading what changed among %d submission(s) with %d grader process(es)%s",
                      len(students), self.jobs, f" on {self.scheduler}" if self.scheduler else "")
        outcome = self._class_run(course, students)
        done = set(outcome.grader_errors)
        converter._isolated_grade_prepass = done
        return done

    def _result(self, nb, resources):
        """(Result, how it was obtained): "reused" (grade-class's result for the same file and
        grader), "graded", or "not graded" (a grader-side error: nothing may be recorded)."""
        info = resources.get("nbgrader", {})
        student = info.get("student")
        converter = self._converter()
        if converter is not None and student:
            course = Path(converter.coursedir.root).resolve()
            submitted = Path(converter.coursedir.format_path(converter.coursedir.submitted_directory,
                                                             student, ASSIGNMENT_ID)) / f"{info.get('notebook')}.ipynb"
            if submitted.is_file():
                failed = self._prepass(converter, course, student)
                if student in failed:
                    return self._stored(course, student), "not graded"
                key = store.resume_key(submitted, provenance.grader_hash())
                stored = store.stored_result(course, student, key)
                if stored is not None:
                    return stored[0], "reused"
                outcome = self._class_run(course, [student])        # changed since the pre-pass
                how = "not graded" if student in outcome.grader_errors else "graded"
                return self._stored(course, student), how
        return self._grade_here(nb, resources)

    @staticmethod
    def _stored(course: Path, student: str) -> Result:
        try:
            return store.read_result(course, student)
        except (OSError, ValueError) as e:
            return Result.failed(f"grade-class wrote no readable result: {e}", Side.GRADER, checks=catalogue())

    def _grade_here(self, nb, resources):
        """Grade the notebook nbgrader hands over (no submitted file to key a grade-class result on)
        in one grader process of the pool, with the same timeout; the grader process reads it (and
        drops its outputs) as it reads any submission."""
        found = []
        with tempfile.TemporaryDirectory(prefix="nbgrader-isolated-") as tmp:
            path = Path(tmp) / NOTEBOOK_NAME
            nbformat.write(nb, str(path))
            hide = [str(Path.cwd())]
            folder = resources.get("metadata", {}).get("path")
            if folder:
                hide.append(str(Path(folder).resolve()))
            task = Task(resources.get("nbgrader", {}).get("student", "?"), str(path), tuple(hide))
            with _logging_into(self.log):
                pool.run_pool([task], jobs=1, on_result=lambda _task, result: found.append(result),
                              timeout=self.timeout, settings=self._settings())
        result = found[0]
        return result, "not graded" if result.grader_fault else "graded"
