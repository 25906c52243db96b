"""Fixtures for the hidden checks: ``pytest autograder/checks --submission path/to/notebook.ipynb``.

The checks run here, in the grader's process. The student's code runs only in the sandboxed
worker behind the ``submission`` fixture, which hands back plain data.

Writing a check module: README.md in this folder (one property per check, named mistakes, and no
free points: side properties score only when the answer does the exercise's work, see answers.py).
"""

from pathlib import Path

import pytest

from autograder import modelcheck
from autograder.sandbox import Limits
from autograder.submission import StudentCodeError, Submission, SubmissionError

SUBMISSION_ERROR = pytest.StashKey[str]()
GRADER_ERROR = pytest.StashKey[str]()     # a failure on the grader's side (Submission.grader_failure)
TIMINGS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("batchnorm autograder")
    group.addoption("--submission", help="the notebook to grade")
    group.addoption("--grader-cache", help="where the training baseline is cached "
                                           "(default $BN_AUTOGRADER_CACHE or ~/.cache/bn-autograder)")
    group.addoption("--hide", action="append", default=[],
                    help="a folder the student's code must not see (repeatable); the submission's own "
                         "folder, the grader and the home folder are always hidden")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the check is worth")
    config.stash[TIMINGS] = {}
    # No Keras here: the structure checks read models from their configs (modelcheck.view), and only
    # a training check whose architecture is not in the memo imports TensorFlow.


@pytest.fixture(scope="session")
def submission(request):
    """The student's notebook, run in the sandboxed worker; fails every check when it cannot be read."""
    path = request.config.getoption("--submission")
    if not path:
        raise pytest.UsageError("give the notebook to grade: --submission path/to/notebook.ipynb")
    try:
        opened = Submission(Path(path), Limits.from_env(), hide=request.config.getoption("--hide"))
    except SubmissionError as exc:
        request.config.stash[SUBMISSION_ERROR] = str(exc)
        raise
    with opened:
        yield opened
        request.config.stash[TIMINGS].update(opened.timings)
        failure = opened.grader_failure()
        if failure:
            request.config.stash[GRADER_ERROR] = failure


@pytest.fixture(scope="session")
def record_timing(request):
    """record_timing(name, seconds): a figure for results.json's "timings"."""
    def record(name, seconds):
        request.config.stash[TIMINGS][name] = round(float(seconds), 3)
    return record


@pytest.fixture(scope="session")
def cache_dir(request):
    option = request.config.getoption("--grader-cache")
    return Path(option) if option else None


def _with_cell_errors(message: str, submission) -> str:
    """A missing function is often the fault of a cell that failed before it: say which."""
    errors = [o.error for o in submission.cell_errors()]
    if errors:
        message += f" (a cell of the notebook failed: {errors[0]})"
    return message


@pytest.fixture(scope="session")
def model_config(submission):
    """model_config(function, **kwargs) -> the student's model as a vetted Keras config (a dict).

    Each distinct call reaches the worker once; a failure is remembered and raised again."""
    answers = {}

    def get(function, **kwargs):
        key = (function, tuple(sorted(kwargs.items())))
        if key not in answers:
            try:
                config = submission.model_config(function, **kwargs)
                modelcheck.vet_config(config)
                answers[key] = config
            except StudentCodeError as exc:
                message = _with_cell_errors(str(exc), submission) if exc.kind == "missing" else str(exc)
                answers[key] = StudentCodeError(exc.kind, message)
            except modelcheck.ModelRefused as exc:
                answers[key] = exc
        if isinstance(answers[key], Exception):
            raise answers[key].with_traceback(None)     # re-raised as is, its traceback would grow each time
        return answers[key]

    return get


@pytest.fixture(scope="session")
def student_model(model_config):
    """student_model(function, **kwargs) -> a read-only modelcheck.ModelView of the student's model,
    read from its vetted config without Keras (bounded first, like a rebuild), once per call
    signature; the training check rebuilds a real Keras model, and only when it trains."""
    models = {}

    def build(function, **kwargs):
        key = (function, tuple(sorted(kwargs.items())))
        if key not in models:
            models[key] = modelcheck.view(model_config(function, **kwargs))
        return models[key]
    return build


def _naming_cell_errors(submission, method):
    """``method`` of the submission, with the cell that failed named when the function is missing."""
    def call(function, *args, **kwargs):
        try:
            return method(function, *args, **kwargs)
        except StudentCodeError as exc:
            if exc.kind == "missing":
                raise StudentCodeError(exc.kind, _with_cell_errors(str(exc), submission)) from None
            raise
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
    if session.config.stash.get(GRADER_ERROR, None) and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter, config):
    failure = config.stash.get(GRADER_ERROR, None)
    if failure:
        terminalreporter.write_line(f"grader-side failure, not the student's: {failure}", red=True)
