"""The grader's side of a submission: which cells to run, the sandboxed worker, and plain-data answers.

``Submission(path).call_array(...)`` and ``.model_config(...)`` ask the worker to call a student
function on inputs the grader chose and decode what comes back as plain data (float64 arrays,
model-config dicts). When the worker hangs or dies (an endless loop, ``os._exit``, a memory bomb),
it is killed and started again without the cell that did it, so one bad cell costs only what
depends on it.
"""

import base64
import json
import math
import selectors
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np

from .exercises import BY_TEST_CELL, DEMO_CELL_PREFIX
from .sandbox import Limits, SandboxedProcess


class SubmissionError(Exception):
    """The notebook cannot be graded at all (unreadable, not a notebook); the message says why."""


class StudentCodeError(Exception):
    """A student function did not give a usable answer; ``kind`` is missing, not_implemented,
    raised, timeout, bad_return or crashed; the message is meant for the student."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def read_notebook(path) -> nbformat.NotebookNode:
    """Any nbformat version as v4, or SubmissionError with the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SubmissionError(f"cannot read {Path(path).name}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{Path(path).name} is not valid JSON (a corrupt or truncated notebook): "
                              f"{exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, dict) or not ("cells" in raw or "worksheets" in raw):
        raise SubmissionError(f"{Path(path).name} is JSON but not a Jupyter notebook")
    try:
        notebook = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many kinds for damaged notebooks
        raise SubmissionError(f"{Path(path).name} is a damaged notebook: {str(exc)[:200]}") from None
    return notebook


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def cells_to_run(notebook) -> list:
    """The code the grader runs, in notebook order: solution cells, cells the student added and locked
    set-up cells; never demo cells (the training race) or test cells (the grader has its own checks)."""
    run = []
    for index, cell in enumerate(notebook.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = _nbgrader(cell)
        grade_id = str(meta.get("grade_id", ""))
        if grade_id.startswith(DEMO_CELL_PREFIX) or meta.get("grade") or grade_id in BY_TEST_CELL:
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
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
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("malformed shape")
    data = base64.b64decode(encoded["ndarray"], validate=True)
    if len(data) != 8 * math.prod(shape) or (limit and len(data) > limit):
        raise ValueError("size does not match shape")
    return np.frombuffer(data, dtype="<f8").astype(np.float64).reshape(shape)


def encode_array(array) -> dict:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"ndarray": base64.b64encode(array.tobytes()).decode("ascii"), "shape": list(array.shape),
            "dtype": "float64"}


@dataclass
class ArrayAnswer:
    value: np.ndarray           # float64 copy of what the function returned
    dtype: str                  # the dtype the function returned, as the worker saw it
    args_after: list            # each array argument as it was after the call (None for scalars)


class Submission:
    """One notebook, its worker (started on first use) and the outcome of each cell."""

    def __init__(self, path, limits: Limits = Limits(), hide=()):
        self.path = Path(path)
        self.limits = limits
        self.hide = tuple(hide) + (self.path.resolve().parent,)
        self.notebook = read_notebook(self.path)
        self.cells = cells_to_run(self.notebook)
        self.outcomes: list[CellOutcome] = []
        self.skipped: set[int] = set()         # cells that hung or killed the worker
        self._process = None
        self._deadline = None
        self._ids = 0
        self.timings = {"worker_start": 0.0, "calls": 0.0}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._process is not None:
            self._process.kill()
            self._process = None

    def _start(self):
        """Start a worker and run the cells; a cell that hangs or kills the worker is skipped next time."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.total_seconds
        while True:
            started = time.monotonic()
            self._process = SandboxedProcess(self.limits, self.hide)
            self.outcomes = []
            failed_cell = None
            for index, source in self.cells:
                if index in self.skipped:
                    self.outcomes.append(CellOutcome(index, "skipped: it hung or ended the grading "
                                                            "process in an earlier attempt"))
                    continue
                answer = self._ask({"op": "run_cell", "source": source, "seconds": self.limits.cell_seconds},
                                   self.limits.cell_seconds)
                if answer.get("crashed"):
                    failed_cell = index
                    self.outcomes.append(CellOutcome(index, answer["error"]))
                    break
                self.outcomes.append(CellOutcome(index, None if answer.get("ok") else str(answer.get("error"))))
            self.timings["worker_start"] += time.monotonic() - started
            if failed_cell is None:
                return
            self._process.kill()
            self.skipped.add(failed_cell)

    def _ensure_started(self):
        if self._process is None:
            self._start()

    # -- protocol ---------------------------------------------------------------------------
    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _ask(self, request, seconds) -> dict:
        """Send a request and read one answer; on silence past the limit, death or garbage, kill the
        worker and answer {"crashed": True, "error": why}."""
        self._ids += 1
        request["id"] = self._ids
        limit = min(seconds + 5.0, max(self._remaining(), 0.5))
        process = self._process
        try:
            process.process.stdin.write((json.dumps(request) + "\n").encode())
            process.process.stdin.flush()
            line = self._read_line(process, limit)
        except (BrokenPipeError, OSError):
            line = None
        if line is None or line == "timeout" or line == "too long":
            why = {None: self._death_reason(process), "timeout": f"no answer within {limit:.0f} s "
                   "(an endless loop or a blocked call)",
                   "too long": "the answer was larger than the grader accepts"}[line]
            process.kill()
            self._process = None
            return {"ok": False, "crashed": True, "kind": "crashed", "error": why}
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict) or answer.get("id") != self._ids:
                raise ValueError
        except ValueError:
            process.kill()
            self._process = None
            return {"ok": False, "crashed": True, "kind": "crashed", "error": "the worker's answer was garbled"}
        return answer

    def _read_line(self, process, seconds):
        stream = process.process.stdout
        deadline = time.monotonic() + seconds
        chunks, size = [], 0
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                if not selector.select(left):
                    continue
                chunk = stream.read1(1 << 20)
                if not chunk:
                    return None
                newline = chunk.find(b"\n")
                if newline >= 0:
                    chunks.append(chunk[:newline])
                    return b"".join(chunks).decode("utf-8", errors="replace")
                chunks.append(chunk)
                size += len(chunk)
                if size > self.limits.answer_bytes:
                    return "too long"

    def _death_reason(self, process) -> str:
        if process.group.out_of_memory():
            return f"the code ran out of memory (limit {self.limits.memory_bytes >> 20} MiB)"
        code = process.process.poll()
        if code is None:
            try:
                code = process.process.wait(timeout=2)
            except Exception:
                code = None
        if code is not None and code < 0:
            return f"the grading process was killed by signal {-code} (a memory, CPU or process limit)"
        return f"the code ended the grading process (exit code {code}: os._exit, a crash or a limit)"

    # -- what the checks use --------------------------------------------------------------------
    def cell_errors(self) -> list:
        self._ensure_started()
        return [o for o in self.outcomes if o.error]

    def _call(self, function, args, kwargs, returns):
        self._ensure_started()
        if self._remaining() <= 0:
            raise StudentCodeError("timeout", f"the submission used up its {self.limits.total_seconds:.0f} s "
                                              "time budget before this check")
        started = time.monotonic()
        request = {"op": "call", "function": function, "returns": returns, "seconds": self.limits.call_seconds,
                   "args": [_encode_argument(a) for a in args],
                   "kwargs": {k: _encode_argument(v) for k, v in kwargs.items()}}
        answer = self._ask(request, self.limits.call_seconds)
        self.timings["calls"] += time.monotonic() - started
        if answer.get("crashed"):
            raise StudentCodeError("crashed", f"calling {function}: {answer['error']}")
        if not answer.get("ok"):
            raise StudentCodeError(str(answer.get("kind", "raised")), str(answer.get("error", ""))[:600])
        return answer

    def call_array(self, function, *args, **kwargs) -> ArrayAnswer:
        """Call ``function(*args, **kwargs)`` in the worker; its result as a float64 array."""
        answer = self._call(function, args, kwargs, "array")
        try:
            value = decode_array(answer.get("value"), self.limits.answer_bytes)
            after = [None if a is None else decode_array(a, self.limits.answer_bytes)
                     for a in answer.get("args_after", [])]
        except (ValueError, TypeError) as exc:
            raise StudentCodeError("bad_return", f"{function} returned something that is not an array of "
                                                 f"numbers ({exc})") from None
        dtype = answer["value"].get("dtype", "")
        return ArrayAnswer(value, dtype if isinstance(dtype, str) else "", after)

    def model_config(self, function, **kwargs) -> dict:
        """Call a model builder in the worker; the model as its Keras config (a plain dict)."""
        answer = self._call(function, (), kwargs, "model")
        try:
            config = json.loads(answer["value"])
            if not isinstance(config, dict):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            raise StudentCodeError("bad_return", f"{function} did not return a Keras model") from None
        return config


def _encode_argument(value):
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, (int, float)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return value
