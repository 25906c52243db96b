"""One grading of a class, end to end: ``run(course)`` -> ``ClassRun``.

1. collect (collect.py): LMS zip downloads into ``submitted/``, then each student's notebook or the
   reason there is none (that student's row is an error now, the student's);
2. what to grade: a submission whose stored result was graded from the same file under the same
   grader keeps it (store.py; ``force`` grades it again), everything else is a task;
3. grade the tasks in the local pool of grader processes (pool.py) or on a Dask cluster
   (cluster.py), storing each result, its feedback page and the class CSV (grades.py) as soon as it
   is known, so that an interrupted run keeps everything finished.

The class CSV's written answers come from nbgrader's gradebook (written.py), read once, when the
first row needs them (the grader processes start first): after a person has graded them in
formgrader, running grade-class again (nothing is graded again) writes them into grades.csv and the
feedback pages. A gradebook that is there but cannot be read (locked, another course's) leaves the
feedback pages' written answers as the last readable one made them, grades.csv's pending, and
grade-class says why (``gradebook_problem``).

A result on the grader's side (``Result.grader_fault``: the sandbox could not start, a check
crashed, a grader process crashed or ran past the timeout) is never a grade: its row says why, its
student is listed in ``ClassRun.grader_errors``, and the next run grades it again.
"""

import functools
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import provenance
from ..check_catalogue import catalogue
from ..errors import Side
from ..results import Result, format_points
from ..settings import Settings
from . import grades, store, written
from .collect import collect_archives, discover
from .pool import run_pool
from .server import DEFAULT_TIMEOUT, MAX_TASKS_PER_WORKER, Task

log = logging.getLogger(__name__)


class Progress:
    """The progress bar: one line redrawn on a terminal, one line per submission otherwise. While the
    bar is shown, a log record written to the same terminal first clears it."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.errors = total, 0, 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.shown = False
        self._handlers = [h for h in logging.getLogger().handlers
                          if self.tty and getattr(h, "stream", None) is self.stream]
        for handler in self._handlers:
            handler.addFilter(self._clear)

    def _clear(self, record) -> bool:
        if self.shown:
            self.stream.write("\r\033[K")
            self.shown = False
        return True

    def update(self, row: grades.Row) -> None:
        self.done += 1
        self.errors += row.status == "error"
        elapsed = time.monotonic() - self.start
        score = f"{format_points(row.total)}/{format_points(row.max_total)}" + (
            " (error)" if row.status == "error" else "")
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            self.stream.write(f"\r\033[Kgrading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                              f"  errors {self.errors}  {elapsed:.0f}s  last: {row.student[:24]} {score}")
            self.shown = True
        else:
            self.stream.write(f"[{self.done}/{self.total}] {row.student}: {score}  ({elapsed:.0f}s)\n")
        self.stream.flush()

    def close(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear)
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


@dataclass
class ClassRun:
    """What ``run`` did: every student's row, how many were graded now or kept, which were not graded
    because of a problem on the grader's side, what could not be written."""
    rows: list                                              # grades.Row, by student
    graded: int = 0
    resumed: int = 0
    grader_errors: list = field(default_factory=list)      # students, graded again on the next run
    write_failures: list = field(default_factory=list)
    csv_path: Path | None = None
    seconds: float = 0.0
    report: Path | None = None                              # grade-class/report.html, when written
    gradebook_problem: str = ""                             # why the written answers' grades could not be read


def run(course_dir, *, jobs: int = 2, force: bool = False,
        collect: bool = True, regexp: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        settings: Settings | None = None, csv_path=None, progress_stream=None, on_row=None,
        max_tasks_per_worker: int = MAX_TASKS_PER_WORKER, scheduler: str | None = None,
        students=None, write_class_csv: bool = True) -> ClassRun:
    """Grade every submission in ``course_dir`` (see the module's docstring), in
    ``jobs`` local grader processes or on the Dask cluster at ``scheduler``.

    ``settings`` (settings.Settings, read at the command line or the nbgrader config; None for the
    grader's defaults) go to every grader process. ``students`` limits the run to those students
    (the nbgrader bridge grades what nbgrader is about to import); ``write_class_csv`` False leaves
    the class CSV alone. ``on_row(row)`` is called after each result is stored."""
    started = time.monotonic()
    course = Path(course_dir).resolve()
    csv_path = Path(csv_path) if csv_path else course / "grades.csv"
    outcome = ClassRun(rows=[], csv_path=csv_path if write_class_csv else None)
    rows = {}
    # the written answers' grades, a person's (formgrader's gradebook); only the class CSV shows them.
    # Read when a row first needs them: importing nbgrader takes about a second, which the grader
    # processes, started first, would otherwise wait for.
    @functools.cache
    def manual() -> written.GradebookReading:
        return written.read_gradebook(course) if write_class_csv else written.GradebookReading()

    # 1. collect: LMS downloads into submitted/, then each student's notebook or why there is none
    problems = collect_archives(course, regexp) if collect else {}
    hand_ins = discover(course, problems)
    if students is not None:
        wanted = set(students)
        hand_ins = [h for h in hand_ins if h.student in wanted]
    progress = Progress(len(hand_ins), progress_stream)

    def save_csv():
        if write_class_csv:
            try:
                grades.write_csv(rows.values(), csv_path)
            except OSError as e:
                outcome.write_failures.append(f"{csv_path}: {e}")

    def page_written(student) -> written.WrittenScores:
        # an unreadable gradebook (locked, say) leaves the pages as a readable one last made them
        return store.stored_written(course, student) if manual().unreadable else manual().of(student)

    def record(student, result: Result, notes, key) -> grades.Row:
        result = store.writable(result)
        try:
            message = store.write_result(course, student, result, notes=notes, key=key,
                                         written=page_written(student))
        except Exception as e:  # noqa: BLE001 - one student's files not written never stops the class
            message = store.message_for([*notes, *result.notes], result)
            outcome.write_failures.append(f"{student}: {e}")
            log.error("could not write the results of %s: %s", student, e)
        if result.grader_fault and student not in outcome.grader_errors:
            outcome.grader_errors.append(student)
        rows[student] = row = grades.Row.of(student, result, message, manual().of(student))
        return row

    # 2. what to grade: a hand-in without a notebook gets its error row now, an unchanged one keeps
    #    its stored result (``force`` grades it again), everything else is a task
    graded_hash = provenance.grader_hash()
    tasks, keys, notes_of = [], {}, {}
    for hand_in in hand_ins:
        if hand_in.error:
            record(hand_in.student, Result.failed(hand_in.error, Side.STUDENT, checks=catalogue()), hand_in.notes, None)
            continue
        key = store.resume_key(hand_in.notebook, graded_hash)
        keys[hand_in.student], notes_of[hand_in.student] = key, hand_in.notes
        stored = None if force else store.stored_result(course, hand_in.student, key)
        if stored is not None:
            rows[hand_in.student] = grades.Row.of(hand_in.student, *stored, manual().of(hand_in.student))
            if page_written(hand_in.student) != store.stored_written(course, hand_in.student):
                _refresh_feedback(course, hand_in.student, stored[0], manual().of(hand_in.student), outcome)
            outcome.resumed += 1
            continue
        tasks.append(Task(hand_in.student, str(hand_in.notebook), (str(course),)))

    # 3. grade, storing each result, its feedback and the CSV as soon as it is known
    def on_result(task: Task, result: Result):
        row = record(task.student, result, notes_of.get(task.student, []), keys.get(task.student))
        if write_class_csv and outcome.graded == 0:     # the report's imports, beside the grading
            threading.Thread(target=_prepare_report, name="report-imports", daemon=True).start()
        outcome.graded += 1
        save_csv()
        progress.update(row)
        if on_row is not None:
            on_row(row)

    try:
        if len(tasks) < len(hand_ins):
            progress.done = len(hand_ins) - len(tasks)
            log.info("%d unchanged submission(s) already graded, %d could not be graded; grading %d "
                     "(--force regrades all)", outcome.resumed, len(hand_ins) - len(tasks) - outcome.resumed,
                     len(tasks))
        if tasks and scheduler:
            from .cluster import run_cluster  # Dask only when asked for: one machine needs none
            run_cluster(tasks, scheduler=scheduler, on_result=on_result, timeout=timeout, settings=settings,
                        grader_hash=graded_hash)
        elif tasks:
            run_pool(tasks, jobs=jobs, on_result=on_result, timeout=timeout, settings=settings,
                     log_dir=course / ".cache" / "autograder" / "logs", max_tasks_per_worker=max_tasks_per_worker)
    finally:
        progress.close()
        outcome.rows = [rows[s] for s in sorted(rows)]
        outcome.grader_errors.sort()
        outcome.seconds = time.monotonic() - started
        save_csv()
    outcome.gradebook_problem = manual().problem
    if write_class_csv and outcome.rows:
        write_class_report(course, outcome)
    return outcome


def _refresh_feedback(course: Path, student: str, result: Result, scores: written.WrittenScores,
                      outcome: ClassRun) -> None:
    """Rewrite a kept result's feedback page when its written answers' grades changed (a person graded
    them since): the autograded part is the same result."""
    try:
        store.write_feedback(course, student, result, written=scores)
    except OSError as e:
        outcome.write_failures.append(f"{student}'s feedback page: {e}")


def _prepare_report() -> None:
    """The class report's imports (matplotlib), on a thread while the last submissions are graded.
    A failure is left to write_class_report, which meets it again and says so."""
    try:
        from . import report  # matplotlib is imported only here and in write_class_report
        report.prepare()
    except Exception:  # noqa: BLE001, S110 - said by write_class_report
        pass


def write_class_report(course: Path, outcome: ClassRun) -> None:
    """The class report (report.py: report.html, mistakes.csv, checks.csv) of this run's students.
    A report that cannot be written is a write failure; a bug in it never costs the grades."""
    from . import report  # matplotlib is imported only here, once the grading is done
    try:
        outcome.report = report.write_report(course, students=[r.student for r in outcome.rows]).report
    except OSError as e:
        outcome.write_failures.append(f"the class report: {e}")
        log.error("could not write the class report: %s", e)
    except Exception:  # noqa: BLE001 - the grades are written; say what went wrong with the report
        log.exception("the class report failed (the grades are written): run python -m autograder report")
