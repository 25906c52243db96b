"""Fixtures for the hidden checks: ``pytest autograder/checks --submission path/to/notebook.ipynb``.

The checks run here, in the grader's process. The student's code runs only in the sandboxed
worker behind the ``submission`` fixture, which hands back plain data.

Writing a check module: README.md in this folder (one property per check, named mistakes, and no
free points: side properties score only when the answer does the exercise's work, see answers.py).
"""

import pickle
from pathlib import Path

import pytest

from autograder import notebook as notebooks
from autograder.errors import GRADER_SIDE_PREFIX, ModelRefused, StudentCodeError
from autograder.grading_run import GradingRun, run_key
from autograder.models import architecture, vet, view


def pytest_addoption(parser):
    from autograder import settings
    group = parser.getgroup("batchnorm autograder")
    group.addoption("--submission", help="the notebook to grade (plain pytest; `python -m autograder grade` "
                                         "hands the checks a notebook it has read)")
    group.addoption("--hide", action="append", default=[],
                    help="a folder the student's code must not see (repeatable); the submission's own "
                         "folder, the grader and the home folder are always hidden")
    for names, kwargs in settings.flag_options(aliases=True):     # --cache-dir, --allow-unsandboxed
        group.addoption(*names, **kwargs)


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the check is worth")
    config.addinivalue_line("markers", "visible_counterpart: the exercise's visible test cell asserts the "
                                       "same property (README.md)")
    # No Keras here: the structure checks read models from their configs (models.view), and only
    # a training check whose architecture is not in the memo imports TensorFlow.


def _run_from_the_command_line(config) -> GradingRun:
    """Plain ``pytest autograder/checks --submission NB``: the command line is this run's edge, so
    the settings are read from the environment and its flags here (grade.grade_notebook passes its
    own run)."""
    from autograder import settings
    path = config.getoption("--submission")
    if not path:
        raise pytest.UsageError("give the notebook to grade: --submission path/to/notebook.ipynb")
    from autograder.errors import SandboxUnavailable
    from autograder.sandbox import choose_isolation
    found = settings.from_environ(flags=config.option)
    try:
        isolation = choose_isolation(allow_unsandboxed=found.allow_unsandboxed)
    except SandboxUnavailable as exc:
        raise pytest.UsageError(str(exc)) from None
    run = GradingRun(notebooks.read(path), found, (*config.getoption("--hide"), str(Path(path).resolve().parent)),
                     isolation=isolation)
    config.stash[run_key()] = run
    return run


@pytest.fixture(scope="session")
def grading_run(request) -> GradingRun:
    """This grading's notebook, settings and findings (grading_run.GradingRun)."""
    run = request.config.stash.get(run_key(), None)
    return run if run is not None else _run_from_the_command_line(request.config)


@pytest.fixture(scope="session")
def submission(grading_run):
    """The student's notebook, run in the sandboxed worker (started early by grade.run_checks, or
    here); fails every check when it cannot start."""
    started = grading_run.submission or grading_run.new_submission()
    with started as opened:
        yield opened
        grading_run.findings.record_worker(opened)


@pytest.fixture(scope="session")
def training_budget(grading_run):
    """The training check's budget in the grader's process (settings.TrainingBudget)."""
    return grading_run.settings.training_budget


@pytest.fixture(scope="session")
def training_memo(grading_run) -> bool:
    """Whether the training check may use its memo (False: BN_AUTOGRADER_TRAINING_MEMO=0)."""
    return grading_run.settings.memo


@pytest.fixture(scope="session")
def record_timing(grading_run):
    """record_timing(name, seconds): a figure for results.json's "timings"."""
    def record(name, seconds):
        grading_run.findings.timings[name] = round(float(seconds), 3)
    return record


@pytest.fixture(scope="session")
def record_measure(grading_run):
    """record_measure(name, value): a figure the grader measured (results.json's "measures")."""
    def record(name, value):
        grading_run.findings.measures[name] = round(float(value), 6)
    return record


@pytest.fixture(scope="session")
def cache_dir(grading_run):
    """Where the training check keeps its baseline and memo (None: settings.default_cache_dir())."""
    return grading_run.settings.cache_dir


def _with_cell_errors(message: str, submission) -> str:
    """A missing function is often the fault of a cell that failed before it: say which."""
    errors = [o.error for o in submission.cell_errors()]
    if errors:
        message += f" (a cell of the notebook failed: {errors[0]})"
    return message


@pytest.fixture(scope="session")
def model_config(submission, grading_run):
    """model_config(function, **kwargs) -> the student's model as a vetted Keras config (a dict).

    Each distinct call reaches the worker once; a failure is remembered and raised again. The
    defaults' call records the model's architecture fingerprint (results.json "architectures")."""
    answers = {}

    def get(function, **kwargs):
        key = (function, tuple(sorted(kwargs.items())))
        if key not in answers:
            try:
                config = submission.model_config(function, **kwargs)
                with vet.reading_student_config():     # a config it cannot read is the student's
                    vet.vet_config(config)
                    fingerprint = architecture.fingerprint(config) if not kwargs else None
                answers[key] = config
                if fingerprint is not None:
                    grading_run.findings.architectures[function] = fingerprint
            except StudentCodeError as exc:
                message = _with_cell_errors(str(exc), submission) if exc.kind == "missing" else str(exc)
                answers[key] = StudentCodeError(exc.kind, message)
            except ModelRefused as exc:
                answers[key] = exc
        if isinstance(answers[key], Exception):
            raise answers[key].with_traceback(None)     # re-raised as is, its traceback would grow each time
        return answers[key]

    return get


@pytest.fixture(scope="session")
def student_model(model_config):
    """student_model(function, **kwargs) -> a read-only view.ModelView of the student's model,
    read from its vetted config without Keras (bounded first, like a rebuild), once per call
    signature; the training check rebuilds a real Keras model, and only when it trains."""
    models = {}

    def build(function, **kwargs):
        key = (function, tuple(sorted(kwargs.items())))
        if key not in models:
            config = model_config(function, **kwargs)
            try:
                with vet.reading_student_config():     # a config it cannot read is the student's
                    models[key] = view.view(config)
            except ModelRefused as exc:
                models[key] = exc
        if isinstance(models[key], Exception):
            raise models[key].with_traceback(None)
        return models[key]
    return build


def _naming_cell_errors(submission, method):
    """``method`` of the submission, with the cell that failed named when the function is missing,
    and each distinct call made once: a side check's gate re-runs the main checks, which read
    their answers from here (a failure is remembered and raised again, like model_config's)."""
    answers = {}

    def call(function, *args, **kwargs):
        key = pickle.dumps((function, args, sorted(kwargs.items())))
        if key not in answers:
            try:
                answers[key] = method(function, *args, **kwargs)
            except StudentCodeError as exc:
                message = _with_cell_errors(str(exc), submission) if exc.kind == "missing" else str(exc)
                answers[key] = StudentCodeError(exc.kind, message)
        if isinstance(answers[key], Exception):
            raise answers[key].with_traceback(None)
        return answers[key]
    return call


@pytest.fixture(scope="session")
def call_array(submission):
    """call_array(function, *args, **kwargs) -> ArrayAnswer, with cell errors named when it is missing."""
    return _naming_cell_errors(submission, submission.call_array)


@pytest.fixture(scope="session")
def call_arrays(submission):
    """call_arrays(function, *args, **kwargs) -> ArraysAnswer, for a function that returns a tuple
    of arrays ((dx, dgamma, dbeta), ...), with cell errors named when it is missing."""
    return _naming_cell_errors(submission, submission.call_arrays)


def pytest_sessionfinish(session, exitstatus):
    """Plain ``pytest autograder/checks --submission``: a failure on the grader's side is not a test
    result, so the run ends as pytest's internal error, not as "some checks failed"."""
    run = session.config.stash.get(run_key(), None)
    if (run is not None and run.findings.fault is not None
            and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)):
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter, config):
    run = config.stash.get(run_key(), None)
    if run is not None and run.findings.fault is not None:
        terminalreporter.write_line(f"{GRADER_SIDE_PREFIX}{run.findings.fault}", red=True)
