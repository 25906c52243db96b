"""``python -m autograder check NOTEBOOK [--output check.json]``: run a notebook as the grader will.

The notebook is read by ``notebook.read`` and run by ``Submission``, as grading does: in a fresh
worker (the sandbox where bubblewrap works here, a plain subprocess elsewhere, said in one line),
only its answer cells, the cells the student added and the release's set-up cells, in order, with
the grader's per-cell and total limits. Then each exercise's visible test cell, as the release has
it, runs in that same worker against the result; a visible test that trains is not run (the grader
trains it). No hidden check runs, and none is in the student's kit.

What it reports, one problem per fault, each naming its cell (1-based, counted from the top of the
notebook, text cells included) and saying what to do:

- ``not_a_notebook``: the file cannot be read as a notebook (``NotebookUnreadable``).
- ``changed_locked_cell``: compared with the release (``contract.py``): a locked or test cell whose
  source was edited, a cell id deleted, duplicated, unknown or without a grade_id, changed nbgrader
  flags, points or checksum: what nbgrader's autograde would overwrite or refuse.
- ``loads_data_or_trains``: an answer cell (or a cell the student added) calling ``load_data``,
  ``.fit``, ``.fit_generator`` or ``.train_on_batch``, found by reading its code (reported even
  when it ran in time); when it also failed or ran out of time, the same problem says so.
- ``cell_timeout``: a cell past the per-cell limit, or not run because the total was used up.
- ``missing_module``: a cell stops on ``import`` because this Python environment lacks a module
  ("No module named 'scipy'"): one problem per module, however many cells it stops, naming what to
  install. In a set-up cell it is the environment's fault, not the notebook's: the report is then
  "not checked" (exit code 2). What the cells it stopped would have defined is missing downstream:
  a cell or visible test that fails only for that (a ``NameError`` for one of those names) is no
  problem of its own, and its exercise is "not checked" (``visible_tests`` "not run"), not wrong. A
  set-up cell that fails for another reason (``cell_error``) is followed the same way.
- ``undefined_name``: a ``NameError`` in a student's cell, when the cell runs or when a visible test
  calls its function: the global exists only in the student's kernel. The message names the global,
  the cell, and where the notebook does define it, if anywhere (below, or in a cell never run).
- ``cell_error``: any other error of a cell in the fresh run.
- ``missing_function``: after the run, an exercise's function is not defined (renamed, deleted).
- ``visible_test_failed``: a visible test cell fails against the fresh run (its own message).
- ``not_checked``: the check could not start its worker here (exit code 2; not the notebook's fault).

Written answers (exercises.WRITTEN_ANSWERS) are graded by a person, not by the check: one still
holding nbgrader's "YOUR ANSWER HERE" (or nothing) is listed as a reminder, which never makes the
notebook "not ready".

The report's types are in ``report.py``, the reading of the notebook's code (and the cells' names in
the messages) in ``source.py``, the comparison with the release in ``contract.py``; this module runs
the notebook and is the command.
"""

import argparse
import importlib.util
import re
import sys
import warnings
from pathlib import Path

from .. import notebook as notebooks
from .. import settings
from ..atomic import write_atomic
from ..channel import Kind as OutcomeKind
from ..errors import NotebookUnreadable, SandboxUnavailable
from ..exercises import EXERCISES, NOTEBOOK_NAME, UNANSWERED, WRITTEN_ANSWERS, Kind
from ..sandbox import Limits, SandboxWarning
from ..sandbox.process import WORKER_BACKEND_MODULES, prestart_zygote
from ..submission import Submission
from ..text import bounded, shortened
from . import contract as contracts
from .report import FAILED, KINDS, NOT_RUN, PASSED, ExerciseReport, Problem, Report, unreadable_report
from .source import Cells, defined_functions, loading_problems, trains

# --- running it ----------------------------------------------------------------------------------

# How the first line names each isolation mode (sandbox.Isolation's values).
ISOLATION_TEXT = {
    "bwrap+landlock": "bubblewrap and Landlock, as on the grader (no network, your files hidden)",
    "bwrap": "bubblewrap, as on the grader (no network, your files hidden; this kernel has no Landlock)",
    "landlock": "Landlock and seccomp (no network, your files hidden; bubblewrap cannot run here)",
    "none": ("a plain subprocess: neither bubblewrap nor Landlock works here (macOS, or a container without "
             "user namespaces), so the grader's limits apply but not its sandbox"),
}


def isolation_choice():
    """(the mode, the words that name it): the student's own code on their own machine gets the best
    isolation available, never a refusal (sandbox.choose_isolation with never_refuse)."""
    from .. import sandbox  # noqa: PLC0415
    chosen = sandbox.choose_isolation(never_refuse=True)
    return chosen, ISOLATION_TEXT.get(chosen.value, chosen.value)


_NO_MODULE = re.compile(r"No module named '([^']+)'")
# What pip installs a module as, where the names differ (the message tells the student what to install).
DISTRIBUTIONS = {"sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml",
                 "skimage": "scikit-image"}


def missing_module(outcome) -> str | None:
    """The module an import error says this environment lacks ("No module named 'scipy'"), or None."""
    if outcome.exception not in ("ModuleNotFoundError", "ImportError"):
        return None
    found = _NO_MODULE.search(outcome.message or "")
    return found.group(1) if found else None


def absent_backend_modules() -> list:
    """Which of the modules Keras' NumPy backend needs (and the student kit requires) this Python
    lacks: the worker runs this same interpreter, so all of them can be named at once, not one per run."""
    return [m for m in WORKER_BACKEND_MODULES if importlib.util.find_spec(m) is None]


class _Review:
    """One notebook under review by ``check``: the problems found so far (each a Problem) and the
    cells that failed in the fresh run, as the cells' outcomes, the missing functions and the visible
    tests are read."""

    def __init__(self, notebook, contract, limits, cells: Cells):
        self.notebook, self.contract, self.limits, self.cells = notebook, contract, limits, cells
        self.problems = []
        self.failed = {}             # cell index -> error of the fresh run
        # cell index -> the cell whose own problem explains why it failed here: a set-up cell that failed, a
        # cell stopped by a missing module, and the cells that failed only for lack of what those define
        self.blocked = {}
        self.missing = {}            # missing module -> [(cell index or None, where, " on line n", error)]
        self.unchecked = {}          # index of a blocked cell's cause -> numbers of the exercises not checked

    def add(self, kind, index, message):
        self.problems.append(Problem(kind, None if index is None else index + 1, message))

    # -- the cells of the fresh run
    def cell_outcomes(self, run: Submission, loading: dict):
        limit = f"{self.limits.cell_seconds:g} s"
        for cell in run.outcomes:
            outcome = cell.outcome
            if outcome.ok:
                continue
            index = cell.index
            self.failed[index] = outcome.text
            text, line = outcome.without_location, outcome.line
            at = f" on line {line}" if line else ""
            where = self.cells.describe(index)
            if index in loading:
                loading[index].message += (f" (here it ran past the {limit} limit)" if outcome.timed_out
                                           else f" (here it failed{at}: {text})")
            elif outcome.kind is OutcomeKind.NOT_RUN:
                self.add("cell_timeout", index, (
                    f"{where} was not run: the cells before it used up the {self.limits.total_seconds:g} s the "
                    "grader allows for the whole notebook; make the slow cells faster (answer cells should "
                    "only define functions)"))
            elif outcome.timed_out:
                self.add("cell_timeout", index, (
                    f"{where} ran past the {limit} limit for one cell (stopped{at or ' there'}); the grader skips "
                    "such a cell, so whatever it defines is missing: look for an endless loop or slow work, and keep "
                    "only definitions in answer cells"))
            elif (module := missing_module(outcome)) is not None:
                self.missing.setdefault(module, []).append((index, where, at, text))
                self.blocked[index] = index
            elif (cause := self.blocked_by(outcome)) is not None:
                self.blocked[index] = cause         # no problem of its own: the cause's problem says it
            elif index in run.setup_cells:
                self.blocked[index] = index
                self.add("cell_error", index, (
                    f"{where} fails on this computer: {text}{at}. It is the course's code, not yours: this "
                    "Python environment lacks something the notebook needs (install what the error names, "
                    "or run the check where you run the notebook)"))
            elif outcome.exception == "NameError" and outcome.name:
                self.add("undefined_name", index, self.undefined(outcome.name, index, at, when_called=False))
            else:
                self.add("cell_error", index, (
                    f"{where} raises {text}{at} when the notebook runs from a fresh start; the grader "
                    "skips a failing cell, and whatever it defines is then missing: fix it, or delete it"))

    # -- what a cell the notebook needs, failing on this computer, leaves unchecked
    def blocked_by(self, outcome) -> int | None:
        """The cause (a blocked cell's) of a NameError for a global that a blocked cell binds, or None."""
        if outcome.exception != "NameError" or not outcome.name:
            return None
        binders = [i for i in self.cells.binders(outcome.name) if i in self.blocked]
        return self.blocked[binders[0]] if binders else None

    def not_checked(self, cause: int, number: int) -> str:
        """Exercise ``number``'s line when it could not be checked because of the cell ``cause``."""
        self.unchecked.setdefault(cause, []).append(number)
        modules = [m for m, places in self.missing.items() if any(place[0] == cause for place in places)]
        why = (f"{modules[0]} is not installed here" if modules
               else f"{self.cells.describe(cause)} fails on this computer")
        return f"not checked: {why} (see the problems)"

    def missing_module_problems(self) -> bool:
        """One problem per missing module (with every cell it stopped); True when one stopped a set-up
        cell, so that the check could not run the notebook as the grader does (not the notebook's fault)."""
        environment = False
        for module, places in self.missing.items():
            index, where, at, text = places[0]
            top = module.split(".")[0]
            others = [p[1].split(" (")[0] for p in places[1:]]
            head = f"{where} stops{at}: {text}" + (f" (so do {', '.join(others)})" if others else "")
            setup = any(i is not None and self.cells.roles[i] is notebooks.Role.SETUP for i, *_ in places)
            environment |= setup
            if top in WORKER_BACKEND_MODULES:
                absent = absent_backend_modules() or [top]
                message = (
                    f"{head}.{' It is not your code:' if setup else ''} The check builds your models on Keras' "
                    "NumPy backend, as the grader does, and that backend needs SciPy and JAX, of which this Python "
                    f"environment lacks {' and '.join(absent)}. The check kit (batchnorm-check) requires them, so pip "
                    "installs them with it unless told --no-deps: install them where the notebook runs (python -m pip "
                    f"install {' '.join(absent)}) and run the check again")
            elif setup:
                message = (f"{head}. It is the course's code, not yours: this Python environment lacks {top}, which "
                           f"the notebook needs: install it where the notebook runs (python -m pip install "
                           f"{DISTRIBUTIONS.get(top, top)}) and run the check again")
            else:
                message = (f"{head}: this Python environment has no {top}. Install it (python -m pip install "
                           f"{DISTRIBUTIONS.get(top, top)}) only if the course allows it: the grader has only the "
                           "course's libraries (what the set-up cell imports, and what they need), and a cell "
                           "that fails there is skipped: use NumPy and Keras instead")
            unchecked = sorted({n for i, *_ in places for n in self.unchecked.get(i, ())})
            if unchecked:
                names = ", ".join(str(n) for n in unchecked)
                message += (f"; until then Exercise{'s' if len(unchecked) > 1 else ''} {names}, which "
                            f"need{'' if len(unchecked) > 1 else 's'} what it stops, "
                            f"{'are' if len(unchecked) > 1 else 'is'} not checked")
            self.add("missing_module", index, message)
        return environment

    def undefined(self, name: str, index: int, at: str, *, when_called: bool, function=None) -> str:
        where = self.cells.describe(index)
        head = (f"{where}: {function} uses {name!r} when it is called{at}" if when_called
                else f"{where} uses {name!r}{at}")
        binders = [i for i in self.cells.binders(name) if i != index]
        run = [i for i in binders if self.cells.roles[i] in (notebooks.Role.SOLUTION, notebooks.Role.ADDED,
                                                              notebooks.Role.SETUP)]
        failed = [i for i in run if i in self.failed]
        later = [i for i in run if i > index and not when_called]
        never_run = [i for i in binders if self.cells.roles[i] in (notebooks.Role.DEMO, notebooks.Role.TEST)]
        if failed:
            return (f"{head}, which should come from {self.cells.describe(failed[0])}, but that cell fails in a "
                    "fresh run: fix it first")
        if later:
            return (f"{head}, which only {self.cells.describe(later[0])}, below it, defines; the grader runs the "
                    f"cells once, from the top: define {name!r} above cell {index + 1}, or in it")
        if never_run:
            return (f"{head}, which only {self.cells.describe(never_run[0])} defines, and the grader never runs "
                    "that cell: define what your answer needs in the answer cell itself")
        return (f"{head}, which no cell of the notebook defines: it exists only in your kernel (left by a cell "
                f"since deleted or changed, or by cells run out of order); define {name!r} in cell {index + 1} "
                "or in a cell above it. In Jupyter, Kernel > Restart Kernel and Run All Cells shows the same error")

    # -- the exercises' functions
    def missing_functions(self, run: Submission) -> set:
        names = tuple(sorted({e.function for e in EXERCISES}))
        probe = (f"if [_n for _n in {names!r} if not callable(globals().get(_n))]:\n"
                 f"    raise LookupError(','.join(_n for _n in {names!r} if not callable(globals().get(_n))))\n")
        outcome = run.run_code(probe, 0)
        if outcome.ok:
            return set()
        if outcome.exception == "LookupError":
            return set(outcome.message.split(",")) & set(names)
        return set(names)

    def missing_function_problem(self, exercise, number: int):
        index = self.cells.answer_cell(exercise)
        call = exercise.def_line[len("def "):-1]
        if index is None:
            self.add("missing_function", None, (
                f"no cell defines {exercise.function}, and the answer cell of Exercise {number} is gone; the "
                f"grader calls {call}: copy the answer cell back from a fresh copy of the release and answer it"))
        elif index in self.failed:
            return       # the cell's own error is the problem
        else:
            others = [f for f in defined_functions(self.cells.codes[index]) if f != exercise.function]
            what = f"defines {', '.join(others)} but not {exercise.function}" if others \
                else f"does not define {exercise.function}"
            self.add("missing_function", index, (
                f"{self.cells.describe(index)} {what}; the grader calls the function by its name, "
                f"{call}: keep that name and signature"))

    # -- the visible tests
    def visible_test(self, run: Submission, exercise, number: int) -> tuple:
        """(visible_tests, message) of one exercise, adding its problems."""
        test_index = self.cells.test_cell(exercise)
        code = self.contract.test_source(exercise.test_cell) if self.contract is not None else None
        if code is None and test_index is not None:
            code = self.cells.codes[test_index]
        if code is None:
            return NOT_RUN, "not run: the notebook has no visible test for it"
        outcome = run.run_code(code, 0 if test_index is None else test_index + 1)
        if outcome.ok:
            return PASSED, "visible tests passed"
        if outcome.kind is OutcomeKind.NOT_RUN:
            return NOT_RUN, outcome.text
        text, cell_number, line = outcome.without_location, outcome.cell, outcome.line
        answer_index = self.cells.answer_cell(exercise)
        test_where = (f"the visible test of Exercise {number}" if test_index is None
                      else self.cells.describe(test_index))
        fix_at = answer_index if answer_index is not None else test_index
        if outcome.kind is OutcomeKind.KILLED and not outcome.by_clock:
            self.add("visible_test_failed", fix_at, (
                f"{test_where} ended the grader's worker ({text}); the grader starts it again without that "
                f"cell, so whatever runs after it is lost: look at what {exercise.function} does to the process"))
            return FAILED, "visible tests ended the worker"
        if outcome.timed_out:
            self.add("visible_test_failed", fix_at, (
                f"{test_where} did not finish within {self.limits.cell_seconds:g} s ({text}); {exercise.function} "
                f"loops or is very slow, and the grader gives each call of it less time: make it faster"))
            return FAILED, "visible tests did not finish in time"
        module = missing_module(outcome)
        if module is not None:
            self.missing.setdefault(module, []).append((test_index, test_where, f" on line {line}" if line else "",
                                                        text))
            return NOT_RUN, self.not_checked(self.missing[module][0][0], number)
        cause = self.blocked_by(outcome)
        if cause is not None:
            return NOT_RUN, self.not_checked(cause, number)
        name = outcome.name if outcome.exception == "NameError" else None
        student_cell = cell_number is not None and 0 < cell_number <= len(self.cells.roles) and \
            self.cells.roles[cell_number - 1] in (notebooks.Role.SOLUTION, notebooks.Role.ADDED)
        if name and student_cell:
            self.add("undefined_name", cell_number - 1, self.undefined(
                name, cell_number - 1, f" (line {line})" if line else "", when_called=True,
                function=exercise.function))
            return FAILED, f"visible tests failed: {name!r} is not defined"
        if outcome.exception == "NotImplementedError":
            where = self.cells.describe(answer_index) if answer_index is not None else f"Exercise {number}"
            self.add("visible_test_failed", fix_at, (
                f"{where}: {exercise.function} still raises NotImplementedError (the visible test in "
                f"{'a deleted cell' if test_index is None else f'cell {test_index + 1}'} calls it); write its body"))
            return FAILED, "not answered yet (NotImplementedError)"
        message = outcome.message if outcome.exception == "AssertionError" else text
        fix = f"; fix {exercise.function} in {self.cells.describe(answer_index)}" if answer_index is not None else ""
        self.add("visible_test_failed", fix_at, f"{test_where} fails: {message}{fix}")
        return FAILED, f"visible tests failed: {shortened(message.splitlines()[0], 120) if message else text}"


def empty_written_answers(notebook) -> list:
    """A reminder for each written answer that is still empty (nbgrader's text stub, or nothing)."""
    where = {notebooks.grade_id(cell): index for index, cell in enumerate(notebook.cells)}
    reminders = []
    for number, answer in enumerate(WRITTEN_ANSWERS, start=1):
        index = where.get(answer.answer_cell)
        if index is not None and notebooks.source(notebook.cells[index]).strip() in ("", UNANSWERED):
            reminders.append(f"cell {index + 1}: Written answer {number} ({answer.title}, "
                             f"{answer.points:g} points) still says {UNANSWERED}")
    return reminders


def check(path, limits: Limits | None = None, *, contract="release", hide=(), echo=None) -> Report:
    """The report on the notebook at ``path``, run with ``limits`` (default the grader's). ``contract``:
    the release's (default: the kit's contract.json or the release grading finds), or a Contract, or
    None to compare with nothing. ``echo`` gets the first line (which isolation) before the run."""
    limits = limits or Limits()
    chosen, isolation = isolation_choice()
    prestart_zygote(limits, isolation=chosen)    # its imports overlap the reading and review below
    try:
        notebook = notebooks.read(path)
    except NotebookUnreadable as exc:
        return unreadable_report(str(exc))
    except ImportError as exc:     # the kit without nbformat, given an old (v3) notebook
        return unreadable_report(f"the notebook is in an old format that needs {exc.name} to read")
    if contract == "release":
        contract = contracts.load()
    cells = Cells(notebook)
    review = _Review(notebook, contract, limits, cells)
    review.problems += contracts.locked_cell_problems(notebook, contract, cells)
    loading = loading_problems(cells)

    if echo:
        echo(f"Checking {bounded(Path(path).name, 200)} as the grader runs it: from a fresh start, only answer, "
             "added and "
             f"set-up cells, {limits.cell_seconds:g} s per cell, {limits.total_seconds:g} s in all. "
             f"Isolation: {isolation}.")
    run = Submission(notebook, limits, hide=(*hide, str(Path(path).resolve().parent)),
                     setup_sources=contract.setup_sources() if contract is not None else None,
                     isolation=chosen)
    exercises = []
    with run, warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)     # the first line already says which isolation
        try:
            run.cell_errors()
            review.cell_outcomes(run, loading)
            missing = review.missing_functions(run)
            for number, exercise in enumerate(EXERCISES, start=1):
                exercises.append(_exercise(review, run, exercise, number, missing))
        except SandboxUnavailable as exc:
            problem = Problem("not_checked", None, (
                f"the check could not start a worker on this computer to run the notebook: {exc}; this is not "
                "a fault of the notebook: run the check again, or where the notebook runs"))
            return Report(False, [ExerciseReport(e.id, False, False, NOT_RUN, "not run: the check could not run")
                                  for e in EXERCISES], [problem], isolation, could_not_run=True)
    environment = review.missing_module_problems()
    problems = review.problems + list(loading.values())
    problems.sort(key=lambda p: (p.cell is None, p.cell or 0, KINDS.index(p.kind)))
    return Report(not problems, exercises, problems, isolation, could_not_run=environment,
                  reminders=empty_written_answers(notebook))


def _exercise(review: _Review, run: Submission, exercise, number: int, missing: set) -> ExerciseReport:
    cells = review.cells
    answer_index = cells.answer_cell(exercise)
    found = exercise.function not in missing
    ran = answer_index is not None and answer_index not in review.failed
    if exercise.kind is not Kind.TRAINING and not found and answer_index in review.blocked:
        return ExerciseReport(exercise.id, False, False, NOT_RUN,
                              review.not_checked(review.blocked[answer_index], number))
    if exercise.kind is not Kind.TRAINING and not found:
        review.missing_function_problem(exercise, number)
        why = (f"cell {answer_index + 1} fails" if answer_index in review.failed
               else f"{exercise.function} is not defined")
        return ExerciseReport(exercise.id, False, ran, NOT_RUN, f"not run: {why} (see the problems)")
    code = review.contract.test_source(exercise.test_cell) if review.contract is not None else None
    if exercise.kind is Kind.TRAINING or (code is not None and trains(code)):
        state = "" if found else f" ({exercise.function} is not defined: see the problems)"
        return ExerciseReport(exercise.id, found, ran, NOT_RUN, (
            f"not run: the grader trains your {exercise.function}() itself, on its own seeded budget; the check "
            f"trains nothing{state}"))
    visible, message = review.visible_test(run, exercise, number)
    return ExerciseReport(exercise.id, True, ran, visible, message)


def main(argv=None) -> int:
    """Exit 0 when the notebook is ready, 1 when problems were found, 2 when it could not be checked."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder check",
        description="Run a notebook exactly as the grader does (fresh, sandboxed, with its limits), then its "
                    "visible tests, and report what would go wrong when it is graded. No hidden check runs.")
    parser.add_argument("notebook", type=Path, help=f"the saved notebook, e.g. {NOTEBOOK_NAME}")
    parser.add_argument("--output", type=Path, help="also write the report as JSON here (e.g. check.json)")
    args = parser.parse_args(argv)
    report = check(args.notebook, settings.from_environ().limits, echo=lambda line: print(line, flush=True))
    for line in report.lines():
        print(line)
    if args.output:
        write_atomic(report.to_json(), args.output)
    sys.stdout.flush()
    return 2 if report.could_not_run else 0 if report.ready else 1


__all__ = ["check", "main", "Report", "Problem", "ExerciseReport", "KINDS"]
