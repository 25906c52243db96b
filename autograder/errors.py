"""Whose fault a failure is, decided once, by the exception's type.

Every exception the grader raises descends from one of two bases:

* ``StudentFault``: the submission's doing (a notebook that cannot be read, a function that
  raised, a model the grader refuses). Its message is written for the student, and the result it
  leads to is a grade: final, kept, never graded again for the same file.
* ``GraderFault``: ours or the machine's (the sandbox cannot start, the data set is missing, a
  grader process crashed). It is never a grade: the result says "error" on the grader's side, and
  the submission is graded again once the cause is fixed.

``side_of`` is the one place that maps an exception to a side. Anything that is neither (a bug in
a check, a KeyError in our code) is the grader's.
"""

from enum import Enum


class Side(str, Enum):
    """Who caused an error result (results.json's ``error_side``)."""
    STUDENT = "student"
    GRADER = "grader"


class StudentFault(Exception):
    """The submission's fault; the message is meant for the student."""


class GraderFault(Exception):
    """The grader's or the machine's fault; the message says what to fix. Never a grade."""


# --- the student's ---------------------------------------------------------------------------------

class NotebookUnreadable(StudentFault):
    """A handed-in file that cannot be graded at all: not a notebook, corrupt, too large."""


class ArchiveUnusable(StudentFault):
    """A handed-in archive that cannot be used; the message says which member and why."""


class StudentCodeError(StudentFault):
    """A student function did not give a usable answer. ``kind`` is a channel.Kind (a str): missing,
    not_implemented, raised, timeout, bad_return, malformed (its code wrote to the grader's channel)
    or killed (the grader ended the worker)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ModelRefused(StudentFault):
    """A model config the grader will not rebuild or train (a custom layer, above a cap, no shapes)."""


class TrainingRefused(StudentFault):
    """The training check could not train the student's model; the message says what to change."""


# --- the grader's ----------------------------------------------------------------------------------

class SandboxUnavailable(GraderFault):
    """The sandboxed worker could not start on this machine (no isolation, a missing interpreter)."""


class SetupCellFailed(GraderFault):
    """An instructor's set-up cell fails on this machine even without the student's code."""


class DatasetMissing(GraderFault, FileNotFoundError):
    """Fashion-MNIST is not on this machine; the message says how to get it."""


class GraderProcessFailed(GraderFault):
    """A grader process crashed, timed out, or answered with something that is not a result."""


class ClusterUnavailable(GraderFault):
    """Dask is not installed, or the scheduler cannot be reached."""


class ReleaseFailed(GraderFault):
    """nbgrader or the solutions' execution failed while releasing; the message holds their output."""


# How a reason on the grader's side begins, in results.json's "error" and in a check's message.
GRADER_SIDE_PREFIX = "grader-side failure, not the student's: "


def side_of(exc: BaseException) -> Side:
    """Whose fault ``exc`` is: the student's only for a StudentFault; anything else is ours."""
    return Side.STUDENT if isinstance(exc, StudentFault) else Side.GRADER
