"""The grader's side of a submission: which cells to run, the sandboxed worker, and plain-data answers.

``Submission(path).call_array(...)`` and ``.model_config(...)`` ask the worker to call a student
function on inputs the grader chose and decode what comes back as plain data (float64 arrays,
model-config dicts). When the worker hangs or dies (an endless loop, ``os._exit``, a memory bomb),
it is killed and started again without the cell that did it, so one bad cell costs only what
depends on it. A function that runs out of time is not called again: its later checks fail at
once, so that one endless loop cannot use up the time the other exercises need.
``.call_arrays(...)`` is ``call_array`` for a function that returns a tuple of arrays.

Everything the worker writes is untrusted: the student's code can write to the answer channel
itself. Only a well-formed line with the id of the pending request is taken as its answer; anything
else is dropped, so a forged or stale line can stand only for what the student's own functions
could have returned, and never for the answer to a different request.
"""

import base64
import json
import math
import os
import select
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exercises import ASSIGNMENT_ID, BY_TEST_CELL, DEMO_CELL_PREFIX, NOTEBOOK_NAME, nbgrader_metadata
from .sandbox import PACKAGE_DIR, Limits, SandboxedProcess, SandboxError

MAX_NOTEBOOK_BYTES = 100 << 20     # the largest notebook read (collect.py too); with many plots one is a few MB
STARTUP_SECONDS = 60.0             # Python and NumPy starting in the sandbox; more means it is broken


class SubmissionError(Exception):
    """The notebook cannot be graded at all (unreadable, not a notebook); the message says why."""


class StudentCodeError(Exception):
    """A student function did not give a usable answer; ``kind`` is missing, not_implemented,
    raised, timeout, bad_return or crashed; the message is meant for the student."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def read_notebook(path) -> dict:
    """Any nbformat version as a v4 notebook (a dict), or SubmissionError with the reason.

    A v4 notebook is used as parsed: the grader only reads its cells, by role, and tolerates damaged
    ones. Only older versions go through nbformat, whose import (jsonschema's format checkers) costs
    ~2 s of the grader's start."""
    try:
        if Path(path).stat().st_size > MAX_NOTEBOOK_BYTES:
            raise SubmissionError(f"{Path(path).name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MB; "
                                  "clear the outputs and submit it again")
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SubmissionError(f"cannot read {Path(path).name}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{Path(path).name} is not valid JSON (a corrupt or truncated notebook): "
                              f"{exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise SubmissionError(f"{Path(path).name} is not a Jupyter notebook (its JSON is nested too deeply)") from None
    if not isinstance(raw, dict) or not ("cells" in raw or "worksheets" in raw):
        raise SubmissionError(f"{Path(path).name} is JSON but not a Jupyter notebook")
    if raw.get("nbformat") == 4:
        damage = _damage(raw)
        if damage:
            raise SubmissionError(f"{Path(path).name} is a damaged notebook: {damage}")
        return raw
    import nbformat  # noqa: PLC0415  (deliberately lazy, see above)
    try:
        notebook = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many kinds for damaged notebooks
        raise SubmissionError(f"{Path(path).name} is a damaged notebook: {str(exc)[:200]}") from None
    return notebook


def _damage(notebook: dict):
    """What makes a v4 notebook's cells unreadable (what nbformat would refuse), or None."""
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        return "its cells are not a list"
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            return f"cell {number} is not a notebook cell"
        source = cell.get("source", "")
        if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(l, str) for l in source))):
            return f"cell {number}'s source is not text"
        if not isinstance(cell.get("metadata", {}), dict):
            return f"cell {number}'s metadata is not a mapping"
    return None


def _source(cell) -> str:
    """A cell's code; a damaged cell (source not text) has none."""
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return source if isinstance(source, str) else ""


def _is_setup(cell) -> bool:
    """A locked code cell that is neither a demo nor a test: the instructor's set-up."""
    meta = nbgrader_metadata(cell)
    grade_id = str(meta.get("grade_id", ""))
    return bool(meta.get("locked")) and not meta.get("solution") and not meta.get("grade") \
        and not grade_id.startswith(DEMO_CELL_PREFIX) and grade_id not in BY_TEST_CELL


def released_notebooks() -> list:
    """Where the released (student) notebook may be, first found first used: the course's own
    release (nbgrader's layout, the course folder being the working directory) and the one that
    ships with the grader (this project's release/)."""
    relative = Path("release") / ASSIGNMENT_ID / NOTEBOOK_NAME
    return [Path.cwd() / relative, PACKAGE_DIR.parent / relative]


_setup_sources = {}


def instructor_setup_cells() -> dict:
    """{grade_id: source} of the set-up cells of the released notebook ({} when none is found).

    A student's copy of a locked cell is only as locked as their editor: the grader runs these
    sources in place of the submission's, so that a set-up cell's failure can be told apart from
    the student's own (nbgrader autograde restores locked cells the same way, from its database)."""
    for path in released_notebooks():
        key = str(path)
        if key not in _setup_sources:
            try:
                cells = read_notebook(path).get("cells") or [] if path.is_file() else []
            except SubmissionError:
                cells = []
            _setup_sources[key] = {str(nbgrader_metadata(c).get("grade_id")): _source(c) for c in cells
                                   if c.get("cell_type") == "code" and _is_setup(c)}
        if _setup_sources[key]:
            return _setup_sources[key]
    return {}


def cells_to_run(notebook, setup_sources=None) -> list:
    """The code the grader runs, in notebook order: solution cells, cells the student added and locked
    set-up cells; never demo cells (the training race) or test cells (the grader has its own checks).
    Cells are chosen by role, not position, so deleted, duplicated or moved cells still run. A set-up
    cell whose grade_id is in ``setup_sources`` runs the instructor's source instead of its own."""
    run = []
    cells = notebook.get("cells")
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = nbgrader_metadata(cell)
        grade_id = str(meta.get("grade_id", ""))
        if grade_id.startswith(DEMO_CELL_PREFIX) or meta.get("grade") or grade_id in BY_TEST_CELL:
            continue
        source = _source(cell)
        if setup_sources and _is_setup(cell) and grade_id in setup_sources:
            source = setup_sources[grade_id]
        if source.strip():
            run.append((index, source))
    return run


@dataclass
class CellOutcome:
    index: int
    error: str | None


def decode_array(encoded, limit=None) -> np.ndarray:
    """An answer's array as a plain, writable float64 ndarray; ValueError when it is not well formed."""
    if not isinstance(encoded, dict) or not isinstance(encoded.get("ndarray"), str):
        raise ValueError("not an encoded array")
    shape = encoded.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and 0 <= n < 2**31 for n in shape):
        raise ValueError("malformed shape")
    if len(shape) > 32:
        raise ValueError("too many dimensions")
    data = base64.b64decode(encoded["ndarray"], validate=True)
    if len(data) != 8 * math.prod(shape) or (limit and len(data) > limit):
        raise ValueError("size does not match shape")
    return np.frombuffer(data, dtype="<f8").astype(np.float64).reshape(shape)


def parse_answer(line: bytes):
    """One answer line as a dict, or None when it is not one (garbage, too deeply nested JSON)."""
    if not line.startswith(b"{"):      # the worker writes compact objects: skip other lines cheaply
        return None
    try:
        answer = json.loads(line.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return answer if isinstance(answer, dict) else None


def encode_array(array) -> dict:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"ndarray": base64.b64encode(array.tobytes()).decode("ascii"), "shape": list(array.shape),
            "dtype": "float64"}


@dataclass
class ArrayAnswer:
    value: np.ndarray           # float64 copy of what the function returned
    dtype: str                  # the dtype the function returned, as the worker saw it
    args_after: list            # each array argument as it was after the call (None for scalars)


@dataclass
class ArraysAnswer:
    values: list                # float64 copy of each array in the tuple the function returned
    dtypes: list                # the dtype of each, as the worker saw it
    args_after: list            # each array argument as it was after the call (None for scalars)


class Submission:
    """One notebook, its worker (started on first use) and the outcome of each cell."""

    def __init__(self, path, limits: Limits | None = None, hide=()):
        self.path = Path(path)
        self.limits = limits or Limits.from_env()
        self.hide = tuple(hide) + (self.path.resolve().parent,)
        self.notebook = read_notebook(self.path)
        setup = instructor_setup_cells()
        self.cells = cells_to_run(self.notebook, setup)
        # cell index -> grade_id of the cells that run the instructor's set-up source
        self.setup_cells = {index: nbgrader_metadata(self.notebook["cells"][index]).get("grade_id")
                            for index, _ in self.cells if _is_setup(self.notebook["cells"][index])
                            and nbgrader_metadata(self.notebook["cells"][index]).get("grade_id") in setup}
        self.outcomes: list[CellOutcome] = []
        self.skipped: dict[int, str] = {}      # cell index -> how it hung or killed the worker
        self.timed_out: dict[str, str] = {}    # function -> why it is not called again
        self._process = None
        self._buffer = bytearray()             # what the worker wrote past the last answer line
        self._deadline = None
        self._ids = 0
        self._broken = None                    # a SandboxError, raised again on every use
        self._closed = False
        self.timings = {"worker_start": 0.0, "calls": 0.0}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._closed = True          # from now on only the outcomes can be read; nothing starts again
        if self._process is not None:
            self._process.kill()
            self._process = None

    def _start(self):
        """Start a worker and run the cells; a cell that hangs or kills the worker is skipped next time."""
        if self._broken:      # a fresh traceback: re-raising one instance would grow it every check
            raise self._broken.with_traceback(None)
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.total_seconds
        while True:
            started = time.monotonic()
            self._launch()
            self.outcomes = []
            failed_cell = None
            for index, source in self.cells:
                if index in self.skipped:
                    self.outcomes.append(CellOutcome(index, f"skipped, because in an earlier attempt "
                                                            f"{self.skipped[index]}"))
                    continue
                if self._remaining() <= 0:
                    self.outcomes.append(CellOutcome(index, "not run: the submission used up its "
                                                            f"{self.limits.total_seconds:.0f} s time budget"))
                    continue
                seconds = min(self.limits.cell_seconds, self._remaining())
                answer = self._ask({"op": "run_cell", "source": source, "seconds": seconds,
                                    "cell": index + 1}, seconds)
                if answer.get("crashed"):
                    failed_cell = index
                    self.outcomes.append(CellOutcome(index, answer["error"]))
                    break
                self.outcomes.append(CellOutcome(index, None if answer.get("ok") else str(answer.get("error"))))
            self.timings["worker_start"] += time.monotonic() - started
            if failed_cell is None:
                return
            self.skipped[failed_cell] = self.outcomes[-1].error

    def _launch(self):
        """A new worker, once it has said it is ready; SandboxError when the sandbox cannot start."""
        self._process = SandboxedProcess(self.limits, self.hide)
        self._buffer = bytearray()
        answer = self._read_answer(self._process, 0, STARTUP_SECONDS)
        if not isinstance(answer, dict) or not answer.get("ready"):
            details = self._process.startup_errors()
            self._process.kill()
            self._process = None
            why = answer if isinstance(answer, str) else "no ready answer"
            self._broken = SandboxError(f"the sandboxed worker did not start ({why})"
                                        + (f": {details}" if details else ""))
            raise self._broken

    def _ensure_started(self):
        if self._closed:
            raise RuntimeError("the submission has been closed")
        if self._process is None:
            self._start()

    # -- protocol ---------------------------------------------------------------------------
    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _ask(self, request, seconds) -> dict:
        """Send a request and read its answer; on silence past the limit (plus grace), death or an
        oversized answer, kill the worker and answer {"crashed": True, "error": why}."""
        self._ids += 1
        request["id"] = self._ids
        limit = max(seconds, 0.1) + self.limits.grace_seconds
        process = self._process
        self._discard_unasked(process)
        if self._send(process, (json.dumps(request) + "\n").encode(), limit):
            answer = self._read_answer(process, self._ids, limit)
        else:
            answer = "timeout" if process.process.poll() is None else "eof"
        if isinstance(answer, dict):
            return answer
        why = {"eof": lambda: self._death_reason(process),
               "timeout": lambda: f"no answer within {limit:.0f} s (an endless loop, or code that blocks or "
                                  "ignores the time limit's signal)",
               "too long": lambda: "the answer was larger than the grader accepts"}[answer]()
        process.kill()
        self._process = None
        return {"ok": False, "crashed": True, "kind": "crashed", "error": why, "timed_out": answer == "timeout"}

    @staticmethod
    def _send(process, data: bytes, seconds) -> bool:
        """Write a request without ever blocking past ``seconds`` (a busy worker may not read it)."""
        fd = process.process.stdin.fileno()
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
            except OSError:      # the worker is gone (broken pipe)
                return False
        return True

    def _discard_unasked(self, process):
        """Drop whatever the worker wrote that nobody asked for: only lines written after a request
        can answer it."""
        self._buffer.clear()
        fd = process.process.stdout.fileno()
        for _ in range(max(1, self.limits.answer_bytes >> 20)):
            try:
                if not select.select([fd], [], [], 0)[0] or not os.read(fd, 1 << 20):
                    return
            except OSError:
                return

    def _read_answer(self, process, want: int, seconds):
        """The answer with id ``want`` as a dict, or "timeout", "eof" or "too long". Lines with
        another id or that are not JSON objects are skipped: stale, forged or garbled."""
        fd = process.process.stdout.fileno()
        deadline = time.monotonic() + seconds
        start = searched = 0          # offsets into the buffer, so that many short lines cost O(n)
        while True:
            newline = self._buffer.find(b"\n", searched)
            if newline >= 0:
                answer = parse_answer(bytes(self._buffer[start:newline]))
                start = searched = newline + 1
                if answer is not None and type(answer.get("id")) is int and answer["id"] == want:
                    del self._buffer[:start]
                    return answer
                if time.monotonic() < deadline:
                    continue
            del self._buffer[:start]
            start, searched = 0, len(self._buffer)
            if len(self._buffer) > self.limits.answer_bytes:
                return "too long"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                if not select.select([fd], [], [], left)[0]:
                    continue
                chunk = os.read(fd, 1 << 20)
            except OSError:
                return "eof"
            if not chunk:
                return "eof"
            self._buffer += chunk

    def _death_reason(self, process) -> str:
        if process.group.out_of_memory():
            return f"the code ran out of memory (limit {self.limits.memory_bytes >> 20} MiB)"
        code = process.process.poll()
        if code is None:
            try:
                code = process.process.wait(timeout=2)
            except Exception:
                return "the grading process stopped answering (its channel to the grader was closed)"
        if code < 0:
            return f"the grading process was killed by signal {-code} (a memory, CPU or process limit)"
        return f"the code ended the grading process (exit code {code}: os._exit, a crash or a limit)"

    # -- what the checks use --------------------------------------------------------------------
    def grader_failure(self) -> str | None:
        """Why this submission could not be graded for a reason on the grader's side, or None: the
        sandbox could not start, or an instructor's set-up cell failed here and fails again in a fresh
        worker that runs only the released notebook's set-up cells up to it (so no cell of the
        student's caused it: too little memory for TensorFlow, a missing package, a cell limit too
        short for this machine). Costs a second worker only when a set-up cell failed."""
        if self._broken:
            return str(self._broken)
        failed = [o for o in self.outcomes if o.error and o.index in self.setup_cells]
        if not failed:
            return None
        released = list(instructor_setup_cells().items())
        upto = [grade_id for grade_id, _ in released].index(self.setup_cells[failed[0].index]) + 1
        probe = Submission(self.path, self.limits, hide=self.hide)
        probe.cells = [(position, source) for position, (_, source) in enumerate(released[:upto])]
        try:
            with probe:
                errors = probe.cell_errors()
        except SandboxError as exc:
            return str(exc)
        if not errors:
            return None
        return (f"the instructor's set-up cell {released[errors[0].index][0]!r} fails on this machine even "
                f"without the student's code: {errors[0].error}")

    def cell_errors(self) -> list:
        if not self._closed:
            self._ensure_started()
        return [o for o in self.outcomes if o.error]

    def _call(self, function, args, kwargs, returns):
        if function in self.timed_out:
            raise StudentCodeError("timeout", self.timed_out[function])
        self._ensure_started()
        if self._remaining() <= 0:
            raise StudentCodeError("timeout", f"the submission used up its {self.limits.total_seconds:.0f} s "
                                              "time budget before this check")
        started = time.monotonic()
        seconds = min(self.limits.call_seconds, self._remaining())
        request = {"op": "call", "function": function, "returns": returns, "seconds": seconds,
                   "args": [_encode_argument(a) for a in args],
                   "kwargs": {k: _encode_argument(v) for k, v in kwargs.items()}}
        answer = self._ask(request, seconds)
        self.timings["calls"] += time.monotonic() - started
        if answer.get("crashed"):
            error = StudentCodeError("crashed", f"calling {function}: {answer['error']}")
            if answer.get("timed_out"):
                self._remember_timeout(function, str(error))
            raise error
        if not answer.get("ok"):
            kind, message = str(answer.get("kind", "raised")), str(answer.get("error", ""))[:600]
            if kind == "timeout":
                self._remember_timeout(function, message)
            raise StudentCodeError(kind, message)
        return answer

    def _remember_timeout(self, function, message):
        self.timed_out[function] = (f"{message}; it ran out of time once, so later checks of {function} "
                                    "do not call it again")

    def _arguments_after(self, answer) -> list:
        """Each array argument as the call left it (None for scalars); ValueError when malformed."""
        after = answer.get("args_after", [])
        if not isinstance(after, list):
            raise ValueError("malformed arguments")
        return [None if a is None else decode_array(a, self.limits.answer_bytes) for a in after]

    def call_array(self, function, *args, **kwargs) -> ArrayAnswer:
        """Call ``function(*args, **kwargs)`` in the worker; its result as a float64 array."""
        answer = self._call(function, args, kwargs, "array")
        try:
            value = decode_array(answer.get("value"), self.limits.answer_bytes)
            after = self._arguments_after(answer)
        except (ValueError, TypeError) as exc:
            raise StudentCodeError("bad_return", f"{function} returned something that is not an array of "
                                                 f"numbers ({exc})") from None
        dtype = answer["value"].get("dtype", "")
        return ArrayAnswer(value, dtype if isinstance(dtype, str) else "", after)

    def call_arrays(self, function, *args, **kwargs) -> ArraysAnswer:
        """Call a function that returns a tuple of arrays, e.g. (dx, dgamma, dbeta); each as float64."""
        answer = self._call(function, args, kwargs, "arrays")
        encoded = answer.get("value")
        try:
            if not isinstance(encoded, list):
                raise ValueError("not a list of arrays")
            values = [decode_array(part, self.limits.answer_bytes) for part in encoded]
            after = self._arguments_after(answer)
        except (ValueError, TypeError) as exc:
            raise StudentCodeError("bad_return", f"{function} returned something that is not a tuple of "
                                                 f"arrays of numbers ({exc})") from None
        dtypes = [part.get("dtype", "") for part in encoded]
        return ArraysAnswer(values, [d if isinstance(d, str) else "" for d in dtypes], after)

    def model_config(self, function, **kwargs) -> dict:
        """Call a model builder in the worker; the model as its Keras config (a plain dict)."""
        answer = self._call(function, (), kwargs, "model")
        try:
            config = json.loads(answer["value"])
            if not isinstance(config, dict):
                raise ValueError
        except (ValueError, TypeError, KeyError, RecursionError):
            raise StudentCodeError("bad_return", f"{function} did not return a Keras model") from None
        return config


def _encode_argument(value):
    if isinstance(value, np.ndarray):
        encoded = encode_array(value)
        if np.issubdtype(value.dtype, np.integer):   # counts (batch sizes) reach the student as ints
            encoded["as"] = "int64"
        return encoded
    if isinstance(value, (int, float)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return value
