"""The grader's side of a submission: the sandboxed worker that runs its cells, and its answers.

``Submission(notebook, limits).call_array(...)`` and ``.model_config(...)`` ask the worker to call a
student function on inputs the grader chose and decode what comes back as plain data (float64
arrays, model-config dicts). When the worker hangs or dies (an endless loop, ``os._exit``, a memory
bomb), it is killed and started again without the cell that did it, so one bad cell costs only
what depends on it. A function that runs out of time is not called again: its later checks fail
at once, so that one endless loop cannot use up the time the other exercises need.
``.call_arrays(...)`` is ``call_array`` for a function that returns a tuple of arrays.

The cells come from notebook.py (which cells run, by role), the line protocol from channel.py.
"""

import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import notebook as notebooks
from .channel import Channel, decode_array, encode_argument
from .errors import SandboxUnavailable, SetupCellFailed, StudentCodeError
from .sandbox import PACKAGE_DIR, Limits, SandboxedProcess
from .sandbox.process import CONFINE_FAILED_EXIT

STARTUP_SECONDS = 60.0             # Python and NumPy starting in the sandbox; more means it is broken


@dataclass
class CellOutcome:
    index: int
    error: str | None


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
    """One notebook, its worker (started on first use, or early by start_early) and the outcome of each cell."""

    def __init__(self, notebook: notebooks.Notebook, limits: Limits | None = None, hide=(), isolation=None,
                 setup_sources: dict | None = None):
        """``isolation``: the mode its workers run in (sandbox.Isolation, chosen by the caller with
        sandbox.choose_isolation); None: the best this machine offers, refusing where none does.
        ``setup_sources``: {grade_id: code} of the instructor's set-up cells (default: the released
        notebook's, notebook.instructor_setup_cells; the student's kit carries them instead)."""
        self.notebook = notebook
        self.limits = limits or Limits()
        self.hide = tuple(hide)
        self.requested_isolation = isolation
        self.isolation = None                  # the mode a worker of this submission ran in ("none"...)
        self.setup_sources = (dict(setup_sources) if setup_sources is not None
                              else notebooks.instructor_setup_cells(PACKAGE_DIR))
        self.cells = notebooks.cells_to_run(notebook, self.setup_sources)
        # cell index -> grade_id of the cells that run the instructor's set-up source
        self.setup_cells = {index: notebooks.grade_id(notebook.cells[index]) for index, _ in self.cells
                            if notebooks.role(notebook.cells[index]) is notebooks.Role.SETUP
                            and notebooks.grade_id(notebook.cells[index]) in self.setup_sources}
        self.outcomes: list[CellOutcome] = []
        self.skipped: dict[int, str] = {}      # cell index -> how it hung or killed the worker
        self.timed_out: dict[str, str] = {}    # function -> why it is not called again
        self._process = None
        self._channel = None
        self._deadline = None
        self._ids = 0
        self._broken = None                    # a SandboxUnavailable, raised again on every use
        self._closed = False
        self._early = None                     # the thread of start_early, until the first use joins it
        self._early_error = None
        self._early_done = None                # when that thread finished
        self.timings = {"worker_start": 0.0, "calls": 0.0}

    @classmethod
    def open(cls, path, limits: Limits | None = None, hide=(), isolation=None) -> "Submission":
        """The submission in the notebook file ``path`` (read by notebook.read), its folder hidden
        from the student's code with ``hide``."""
        return cls(notebooks.read(path), limits, hide=(*hide, str(Path(path).resolve().parent)), isolation=isolation)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._closed = True          # from now on only the outcomes can be read; nothing starts again
        starting = self._process if self._early is not None else None
        if starting is not None:     # start_early's thread still waits on it: end it, and let that thread reap it
            starting.stop()
        self._join_early()
        if self._process is not None:
            self._process.kill()
            self._process = None

    def _start(self):
        """Start a worker and run the cells; a cell that hangs or kills the worker is skipped next time."""
        if self._broken:      # a fresh traceback: re-raising one instance would grow it every check
            raise self._broken.with_traceback(None)
        while True:
            started = time.monotonic()
            self._spawn()
            if self._run_cells(started):
                return

    def _run_cells(self, started) -> bool:
        """Wait until the spawned worker is ready, then run the cells in it. False when a cell hung or
        killed the worker: that cell is skipped from now on, and the worker must start again."""
        self._await_ready()
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
            return True
        self.skipped[failed_cell] = self.outcomes[-1].error
        return False

    def _spawn(self):
        """A new worker process (not yet ready); SandboxUnavailable when the sandbox cannot start.
        Always on the thread that uses the submission: bwrap's --die-with-parent kills the worker
        when the thread that forked it ends."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.total_seconds
        try:
            self._process = SandboxedProcess(self.limits, self.hide, self.requested_isolation)
        except SandboxUnavailable as exc:
            self._broken = exc
            raise
        self._channel = Channel(self._process.process, self.limits.answer_bytes)

    def _await_ready(self):
        """Wait for the spawned worker to say it is ready (and, where its mode has Landlock, that it is
        confined); SandboxUnavailable when it does not."""
        process = self._process
        answer = self._channel.read_answer(0, STARTUP_SECONDS)
        confined = answer.get("confined") if isinstance(answer, dict) else None
        failure = None
        if not isinstance(answer, dict) or not answer.get("ready"):
            why = answer if isinstance(answer, str) else "no ready answer"
            failure = f"the sandboxed worker did not start ({why})"
            try:
                if process.process.wait(timeout=2) == CONFINE_FAILED_EXIT:
                    failure = (f"the sandboxed worker could not apply its {process.isolation.value} isolation "
                               "(Landlock and seccomp), so no student code ran")
            except Exception:  # noqa: BLE001 - still running: the message above stands
                pass
        elif process.isolation.landlock and not (isinstance(confined, dict) and confined.get("filesystem")
                                                 and confined.get("seccomp")):
            failure = f"the sandboxed worker did not confirm its {process.isolation.value} isolation ({confined!r})"
        if failure:
            details = process.startup_errors()
            process.kill()
            self._process = None
            self._broken = SandboxUnavailable(failure + (f": {details}" if details else ""))
            raise self._broken
        self.isolation = process.isolation.value

    def start_early(self):
        """Start the worker now and run the notebook's cells on a thread, while the grader gets its
        checks ready (pytest's start-up and collection, about a second, then overlap the worker's
        start, the larger part of grading one notebook). The first use waits for that thread; an
        error there is raised at the first use, as if the worker had been started then. The process
        is spawned here, on the caller's thread (see _spawn)."""
        if self._early is not None or self._process is not None or self._closed or self._broken:
            return
        started = time.monotonic()
        try:
            with warnings.catch_warnings():       # as inside pytest (-W ignore), where it was started before
                warnings.simplefilter("ignore")
                self._spawn()
        except Exception:  # noqa: BLE001 - the first use starts it again and raises there
            return
        self._early = threading.Thread(target=self._run_cells_on_thread, args=(started,), name="worker-start",
                                       daemon=True)
        self._early.start()

    def _run_cells_on_thread(self, started):
        try:
            self._run_cells(started)      # when a cell killed the worker, the first use starts it again
        except BaseException as exc:  # noqa: BLE001 - handed to the first use, which raises it
            self._early_error = exc
        finally:
            self._early_done = time.monotonic()

    def _join_early(self):
        """Wait for start_early's thread (recording the wait as "worker_wait"); its error, if any."""
        if self._early is None:
            return None
        waited = time.monotonic()
        self._early.join()
        self._early = None
        now = time.monotonic()
        self.timings["worker_wait"] = round(now - waited, 3)
        if self._deadline is not None and self._early_done is not None:
            self._deadline += max(0.0, now - self._early_done)   # the worker sat idle: not the student's time
        error, self._early_error = self._early_error, None
        return error

    def _ensure_started(self):
        if self._closed:
            raise RuntimeError("the submission has been closed")
        error = self._join_early()
        if error is not None:
            raise error
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
        process, channel = self._process, self._channel
        channel.discard_unasked()
        if channel.send((json.dumps(request) + "\n").encode(), limit):
            answer = channel.read_answer(self._ids, limit)
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
    def grader_failure(self):
        """A GraderFault when this submission could not be graded for a reason on the grader's side,
        or None: the sandbox could not start, or an instructor's set-up cell failed here and fails
        again in a fresh worker that runs only the released notebook's set-up cells up to it (so no
        cell of the student's caused it: too little memory for TensorFlow, a missing package, a cell
        limit too short for this machine). Costs a second worker only when a set-up cell failed."""
        self._join_early()        # a worker started early that no check used: its outcomes are settled first
        if self._broken:
            return self._broken.with_traceback(None)
        failed = [o for o in self.outcomes if o.error and o.index in self.setup_cells]
        if not failed:
            return None
        released = list(self.setup_sources.items())
        upto = [cell_id for cell_id, _ in released].index(self.setup_cells[failed[0].index]) + 1
        probe = Submission(self.notebook, self.limits, hide=self.hide, isolation=self.requested_isolation)
        probe.cells = [(position, code) for position, (_, code) in enumerate(released[:upto])]
        try:
            with probe:
                errors = probe.cell_errors()
        except SandboxUnavailable as exc:
            return exc
        if not errors:
            return None
        return SetupCellFailed(f"the instructor's set-up cell {released[errors[0].index][0]!r} fails on this "
                               f"machine even without the student's code: {errors[0].error}")

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
                   "args": [encode_argument(a) for a in args],
                   "kwargs": {k: encode_argument(v) for k, v in kwargs.items()}}
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

    def run_code(self, code: str, number: int) -> dict:
        """The worker's answer to ``code`` run as cell ``number`` after the notebook's cells, e.g. a
        visible test cell (the student's own check); a worker that died is started again first."""
        self._ensure_started()
        left = self._remaining()
        if left <= 0:
            return {"ok": False, "budget": True,
                    "error": f"not run: the notebook used up its {self.limits.total_seconds:g} s time budget"}
        seconds = min(self.limits.cell_seconds, left)
        return self._ask({"op": "run_cell", "source": code, "seconds": seconds, "cell": number}, seconds)

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
