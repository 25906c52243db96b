"""The grader's end of a line protocol with a process it does not trust, and the worker's answers as
typed values.

``LineReader`` reads lines from a descriptor, each under a deadline and a size limit; given the
first bytes a line must start with, it skips every other line as it reads, without keeping it.
The sandboxed worker (submission.py) and the grader-process server's parent
(classroom/server.py) both read through it.

Everything the worker writes is untrusted: the student's code runs in the worker's process and
can write to the answer pipe itself. So an answer is matched by its first bytes
(``{"id": <the pending request's id>, ``) before anything parses it; it is refused past the size
its kind of request may need (``ANSWER_BYTES``); and ``parse_answer`` checks every field's type
before the grader reads it, so a forged or garbled answer is an ``Outcome`` of kind MALFORMED, the
student's, never an exception in the grader. A forged line with the right id can stand only for
what the student's own function could have returned. What happened to the worker itself (it
died, went silent, answered too much) is never read from it: the grader decides that from the
process and its own clock (submission.py), and only then is an outcome KILLED.
(The worker's end is sandbox/worker.py, which describes the messages.)
"""

import base64
import enum
import json
import math
import os
import select
import time
from dataclasses import dataclass

import numpy as np

from .errors import GRADER_SIDE_PREFIX
from .text import SHORT_CHARS, bounded

CHUNK = 1 << 20

# The longest answer line each kind of request may get. A cell's answer is a status and a short
# error; arrays are what the checks' small inputs give back (worker.MAX_ELEMENTS numbers in all,
# base64; the largest input the checks pass has a few thousand), a model is its Keras config
# (worker.MAX_MODEL_JSON characters, JSON-escaped once more).
ANSWER_BYTES = {"ready": 64 << 10, "cell": 64 << 10, "array": 4 << 20, "arrays": 4 << 20, "model": 12 << 20}
# Objects and lists a well-formed answer may hold (a model's config travels as one string): JSON
# parsed into Python grows some thirty-fold per bracket, so a line full of them is refused unread.
MAX_BRACKETS = 512


# --- arrays on the wire ------------------------------------------------------------------------------

def encode_array(array) -> dict:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"ndarray": base64.b64encode(array.tobytes()).decode("ascii"), "shape": list(array.shape),
            "dtype": "float64"}


def encode_argument(value):
    """An argument of a call as JSON: arrays as float64 (integer arrays marked to arrive as int64)."""
    if isinstance(value, np.ndarray):
        encoded = encode_array(value)
        if np.issubdtype(value.dtype, np.integer):   # counts (batch sizes) reach the student as ints
            encoded["as"] = "int64"
        return encoded
    if isinstance(value, tuple):
        return list(value)
    return value


def decode_array(encoded, limit=None) -> np.ndarray:
    """An answer's array as a plain, writable float64 ndarray; ValueError when it is not well formed."""
    if not isinstance(encoded, dict) or not isinstance(encoded.get("ndarray"), str):
        raise ValueError("not an encoded array")
    shape = encoded.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and 0 <= n < 2**31 for n in shape):
        raise ValueError("malformed shape")
    if len(shape) > 32:
        raise ValueError("too many dimensions")
    if limit and 8 * math.prod(shape) > limit:
        raise ValueError("larger than the grader accepts")
    data = base64.b64decode(encoded["ndarray"], validate=True)
    if len(data) != 8 * math.prod(shape):
        raise ValueError("size does not match shape")
    return np.frombuffer(data, dtype="<f8").astype(np.float64).reshape(shape)


# --- reading lines -----------------------------------------------------------------------------------

class Silence(enum.Enum):
    """Why no line came: the deadline passed, the writer closed its end, or the line was too long."""
    TIMEOUT = "timeout"
    EOF = "eof"
    TOO_LONG = "too long"


class LineReader:
    """Lines from a pipe, each under a deadline and a size limit; never blocks past the deadline
    and never holds more than the limit of one line."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self.skipping = False        # inside a line that does not start as asked: dropped as it comes

    def line(self, deadline: float, max_bytes: int, prefix: bytes = b"") -> "bytes | Silence":
        """The next line (without its newline) that starts with ``prefix``; lines that do not are
        dropped unread, however long. Silence.TOO_LONG once a wanted line passes ``max_bytes``."""
        while True:
            found = self._take(max_bytes, prefix)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return Silence.TIMEOUT
            try:
                if not select.select([self.fd], [], [], min(left, 1.0))[0]:
                    continue
                chunk = os.read(self.fd, CHUNK)
            except (OSError, ValueError):
                return Silence.EOF
            if not chunk:
                return Silence.EOF
            self.buffer += chunk

    def _take(self, max_bytes, prefix):
        """A wanted line from the buffer, Silence.TOO_LONG, or None when more must be read."""
        while self.buffer:
            newline = self.buffer.find(b"\n")
            if self.skipping:
                if newline < 0:
                    self.buffer.clear()
                    return None
                del self.buffer[:newline + 1]
                self.skipping = False
                continue
            if not prefix.startswith(bytes(self.buffer[:len(prefix)])):
                self.skipping = True          # not ours: drop it up to its newline
                continue
            if newline < 0:
                return Silence.TOO_LONG if len(self.buffer) > max_bytes else None
            if newline > max_bytes:
                return Silence.TOO_LONG
            found = bytes(self.buffer[:newline])
            del self.buffer[:newline + 1]
            return found
        return None

    def drain(self, most: int = 64 << 20):
        """Drop what was written and not asked for (at most ``most`` bytes now): only lines written
        after a request can answer it."""
        self.buffer.clear()
        self.skipping = False
        for _ in range(max(1, most // CHUNK)):
            try:
                if not select.select([self.fd], [], [], 0)[0] or not os.read(self.fd, CHUNK):
                    return
            except (OSError, ValueError):
                return


def send(fd: int, data: bytes, seconds: float) -> bool:
    """Write ``data`` to a pipe without ever blocking past ``seconds`` (a busy reader may not read
    it); False when it could not be written in time or the reader is gone."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + seconds
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            if select.select([], [fd], [], left)[1]:
                view = view[os.write(fd, view):]
        except BlockingIOError:
            continue
        except (OSError, ValueError):      # the reader is gone (broken pipe)
            return False
    return True


def answer_prefix(request_id: int) -> bytes:
    """How the worker's answer to request ``request_id`` begins (worker.py writes it so)."""
    return b'{"id": %d, ' % request_id


# --- the worker's answers, typed -----------------------------------------------------------------------

class Kind(str, enum.Enum):
    """What became of a cell, a call or a piece of code run in the worker."""
    DONE = "done"                        # it ran; a call's value is in the outcome
    RAISED = "raised"                    # the student's code raised
    TIMEOUT = "timeout"                  # the worker's own soft time limit stopped it
    MISSING = "missing"                  # the function is not defined
    NOT_IMPLEMENTED = "not_implemented"  # it still raises NotImplementedError
    BAD_RETURN = "bad_return"            # it returned something the grader cannot use
    MALFORMED = "malformed"              # an answer that is not one: the student's code wrote to the channel
    KILLED = "killed"                    # the grader ended the worker: it died, went silent or said too much
    SKIPPED = "skipped"                  # a cell not run again: in an earlier worker it was KILLED
    NOT_RUN = "not_run"                  # the grader did not run it: the time budget was used up


# The kinds the worker itself may answer with; the others are only the grader's.
WORKER_KINDS = {Kind.DONE, Kind.RAISED, Kind.TIMEOUT, Kind.MISSING, Kind.NOT_IMPLEMENTED, Kind.BAD_RETURN}


@dataclass(frozen=True)
class Outcome:
    """One cell's, call's or code's outcome. ``text`` says what happened, for people (bounded,
    escaped). For RAISED and TIMEOUT, ``exception`` is the exception's type name, ``message`` its
    text, ``cell`` and ``line`` where in the notebook it was raised and ``name`` a NameError's
    missing name. A DONE call carries its ``value`` and ``args_after`` as validated, still encoded
    data. ``by_clock``: a KILLED worker that the grader's own clock stopped (it went silent)."""
    kind: Kind
    text: str = ""
    exception: str | None = None
    message: str = ""
    cell: int | None = None
    line: int | None = None
    name: str | None = None
    value: object = None
    args_after: tuple = ()
    by_clock: bool = False

    @property
    def ok(self) -> bool:
        return self.kind is Kind.DONE

    @property
    def error(self) -> str | None:
        """What went wrong, for people; None when it ran."""
        return None if self.ok else self.text

    @classmethod
    def killed(cls, why: str, *, by_clock=False) -> "Outcome":
        return cls(Kind.KILLED, bounded(why, SHORT_CHARS), by_clock=by_clock)

    @classmethod
    def not_run(cls, why: str) -> "Outcome":
        return cls(Kind.NOT_RUN, bounded(why, SHORT_CHARS))

    def skipped(self) -> "Outcome":
        """This KILLED cell's outcome when it is skipped in the next worker."""
        return Outcome(Kind.SKIPPED, f"skipped, because in an earlier attempt {self.text}", by_clock=self.by_clock)

    @property
    def timed_out(self) -> bool:
        """It ran out of time: the worker's soft limit, or the grader's clock (then it was killed)."""
        return self.kind is Kind.TIMEOUT or (self.kind in (Kind.KILLED, Kind.SKIPPED) and self.by_clock)

    @property
    def without_location(self) -> str:
        """The error without its place in the notebook: "NameError: name 'x' is not defined"."""
        return f"{self.exception}: {self.message}" if self.exception else self.text


def _students_words(text: str) -> str:
    """Text the worker sent, bounded and escaped, that can never pass for the grader's own words."""
    text = bounded(text, SHORT_CHARS)
    return f"(the notebook's words) {text}" if text.lstrip().startswith(GRADER_SIDE_PREFIX.strip()) else text


def _malformed(why: str) -> Outcome:
    return Outcome(Kind.MALFORMED, f"the grader received an answer it cannot read ({why}): the notebook's "
                                   "code wrote to the grader's channel")


def _optional(value, kind, what):
    if value is not None and type(value) is not kind:
        raise ValueError(f"{what} is not a {kind.__name__}")
    return value


def _encoded_array(value) -> dict:
    if not (isinstance(value, dict) and isinstance(value.get("ndarray"), str) and isinstance(value.get("shape"), list)):
        raise ValueError("not an encoded array")
    if not isinstance(value.get("dtype", ""), str):
        raise ValueError("the dtype is not text")
    return value


def _call_value(returns: str, value):
    """The value of a DONE call, its structure checked for ``returns``; ValueError when wrong."""
    if returns == "array":
        return _encoded_array(value)
    if returns == "arrays":
        if not isinstance(value, list) or len(value) > 64:
            raise ValueError("not a list of arrays")
        return [_encoded_array(part) for part in value]
    if returns == "model":
        if not isinstance(value, str):
            raise ValueError("not a model configuration")
        return value
    raise ValueError(f"unknown kind of answer {returns!r}")


_MODEL_DONE = '"kind": "done", "value": '
_MODEL_END = ', "args_after": []}'


def _model_answer(text: str, start: int) -> Outcome:
    """A model builder's DONE answer, {"id": N, "kind": "done", "value": "<its config>", "args_after": []}:
    exactly that, its one large part a JSON string, decoded alone (never a structure that grows)."""
    if not text.startswith('"', start):
        return _malformed("a model's answer whose value is not text")
    value, end = json.JSONDecoder().raw_decode(text, start)
    if text[end:] != _MODEL_END:
        return _malformed("a model's answer with more than its configuration")
    return Outcome(Kind.DONE, value=value)


def parse_answer(line: bytes, request_id: int, op: str, returns: str | None = None) -> Outcome:
    """The worker's answer line to request ``request_id`` (``op`` "run_cell" or "call", returning
    ``returns``) as an Outcome; MALFORMED when it is not a well-formed answer of that request."""
    prefix = answer_prefix(request_id)
    if not line.startswith(prefix):
        return _malformed("not an answer to this request")
    try:
        text = line.decode("utf-8")
        if returns == "model" and op == "call" and text.startswith(_MODEL_DONE, len(prefix)):
            return _model_answer(text, len(prefix) + len(_MODEL_DONE))
        if line.count(b"{") + line.count(b"[") > MAX_BRACKETS:
            return _malformed("more nested objects than any answer has")
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return _malformed("not JSON")
    if not isinstance(doc, dict) or doc.get("id") != request_id or type(doc.get("id")) is not int:
        return _malformed("not an answer object")
    try:
        kind = Kind(doc.get("kind"))
        if kind not in WORKER_KINDS:
            raise ValueError
    except ValueError:
        return _malformed(f"unknown kind {str(doc.get('kind'))[:40]!r}")
    try:
        if kind is Kind.DONE:
            if op == "run_cell":
                return Outcome(Kind.DONE)
            after = doc.get("args_after", [])
            if not isinstance(after, list) or len(after) > 64:
                raise ValueError("the arguments after the call are not a list")
            return Outcome(Kind.DONE, value=_call_value(returns, doc.get("value")),
                           args_after=tuple(None if a is None else _encoded_array(a) for a in after))
        error = doc.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("text"), str):
            raise ValueError("an error without its text")
        message = error.get("message", "")
        if not isinstance(message, str):
            raise ValueError("an error message that is not text")
        exception = _optional(error.get("exception"), str, "the exception's type")
        name = _optional(error.get("name"), str, "the name")
        return Outcome(kind, _students_words(error["text"]),
                       exception=None if exception is None else _students_words(exception),
                       message=_students_words(message), cell=_optional(error.get("cell"), int, "the cell"),
                       line=_optional(error.get("line"), int, "the line"),
                       name=None if name is None else _students_words(name))
    except ValueError as exc:
        return _malformed(str(exc))


def parse_ready(line: bytes) -> dict | None:
    """The worker's ready answer ({"confined": report or None}), or None when it is not one."""
    if not line.startswith(answer_prefix(0)):
        return None
    try:
        doc = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("id") != 0 or doc.get("ready") is not True:
        return None
    confined = doc.get("confined")
    return {"confined": confined if isinstance(confined, dict) else None}
