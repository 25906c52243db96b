"""The grader's side of a submission: the sandboxed worker that runs its cells, and its answers.

``Submission(notebook, limits).call_array(...)`` and ``.model_config(...)`` ask the worker to call a
student function on inputs the grader chose and decode what comes back as plain data (float64
arrays, model-config dicts). When the worker hangs or dies (an endless loop, ``os._exit``, a memory
bomb), it is killed and started again without the cell that did it, so one bad cell costs only
what depends on it. A function that runs out of time is not called again: its later checks fail
at once, so that one endless loop cannot use up the time the other exercises need.
``.call_arrays(...)`` is ``call_array`` for a function that returns a tuple of arrays.

Every worker a submission starts is its own to end: one that is replaced (a cell killed it) is
killed first, with its cgroup, scratch and uid, and ``close()`` kills whatever is left, so nothing of
a submission outlives its grading whatever its code wrote on the channel. What happened to a worker
is the grader's finding (the process died, went silent past the limit, answered more than its kind
of answer may, filled its scratch), never the worker's word; the outcome of each cell and call is a
typed ``channel.Outcome``.

The cells come from notebook.py (which cells run, by role), the line protocol from channel.py.
"""

import json
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import notebook as notebooks
from .channel import (
    ANSWER_BYTES,
    Kind,
    LineReader,
    Outcome,
    Silence,
    answer_prefix,
    decode_array,
    encode_argument,
    parse_answer,
    parse_ready,
    send,
)
from .errors import ModelRefused, SandboxUnavailable, SetupCellFailed, StudentCodeError
from .sandbox import Limits, SandboxedProcess
from .sandbox.process import CONFINE_FAILED_EXIT, prestart_zygote

STARTUP_SECONDS = 60.0             # Python and NumPy starting in the sandbox; more means it is broken


@dataclass
class CellOutcome:
    index: int                  # the cell's index in the notebook
    outcome: Outcome

    @property
    def error(self) -> str | None:
        """What went wrong in the cell, for people; None when it ran."""
        return self.outcome.error


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


class _ForkedWorkerFailed(Exception):
    """A worker forked from the zygote could not set itself up (no student code ran): the zygote was
    set aside, and the worker starts again fresh."""


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
                              else notebooks.instructor_setup_cells())
        self.cells = notebooks.cells_to_run(notebook, self.setup_sources)
        # cell index -> grade_id of the cells that run the instructor's set-up source
        self.setup_cells = {index: notebooks.grade_id(notebook.cells[index]) for index, _ in self.cells
                            if notebooks.role(notebook.cells[index]) is notebooks.Role.SETUP
                            and notebooks.grade_id(notebook.cells[index]) in self.setup_sources}
        self.outcomes: list[CellOutcome] = []
        self.skipped: dict[int, Outcome] = {}  # cell index -> its KILLED outcome: how it hung or killed the worker
        self.timed_out: dict[str, str] = {}    # function -> why it is not called again
        self._process = None                   # the worker in use (a SandboxedProcess), or None
        self._reader = None                    # its answers (channel.LineReader)
        self._workers = []                     # every worker started and not yet killed
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
        """Kill every worker this submission started, with their cgroups, scratch and uids."""
        self._closed = True          # from now on only the outcomes can be read; nothing starts again
        starting = self._process if self._early is not None else None
        if starting is not None:     # start_early's thread still waits on it: end it, and let that thread reap it
            starting.stop()
        self._join_early()
        self._retire_all()

    def _retire_all(self):
        for process in list(self._workers):
            self._retire(process)

    def _retire(self, process):
        """Kill ``process`` and everything it started, and release what it held."""
        try:
            process.kill()
        finally:
            if process in self._workers:
                self._workers.remove(process)
            if self._process is process:
                self._process, self._reader = None, None

    def _start(self):
        """Start a worker and run the cells; a cell that hangs or kills the worker is skipped next time."""
        if self._broken:      # a fresh traceback: re-raising one instance would grow it every check
            raise self._broken.with_traceback(None)
        while True:
            started = time.monotonic()
            self._spawn()
            try:
                if self._run_cells(started):
                    return
            except _ForkedWorkerFailed:     # the next worker starts fresh
                continue

    def _run_cells(self, started) -> bool:
        """Wait until the spawned worker is ready, then run the cells in it. False when a cell hung or
        killed the worker: that cell is skipped from now on, and the worker must start again."""
        self._await_ready()
        self.outcomes = []
        failed_cell = None
        for index, source in self.cells:
            if index in self.skipped:
                self.outcomes.append(CellOutcome(index, self.skipped[index].skipped()))
                continue
            if self._remaining() <= 0:
                self.outcomes.append(CellOutcome(index, Outcome.not_run(
                    f"not run: the submission used up its {self.limits.total_seconds:.0f} s time budget")))
                continue
            seconds = min(self.limits.cell_seconds, self._remaining())
            outcome = self._ask({"op": "run_cell", "source": source, "seconds": seconds, "cell": index + 1},
                                "cell", seconds)
            self.outcomes.append(CellOutcome(index, outcome))
            if outcome.kind is Kind.KILLED:       # the grader ended the worker: run the rest in a new one
                failed_cell = index
                break
        self.timings["worker_start"] += time.monotonic() - started
        if failed_cell is None:
            return True
        self.skipped[failed_cell] = self.outcomes[-1].outcome
        return False

    def _spawn(self):
        """A new worker process (not yet ready); SandboxUnavailable when the sandbox cannot start.
        Always on the thread that uses the submission: bwrap's --die-with-parent kills the worker
        when the thread that forked it ends."""
        if self._process is not None:              # never two workers at once: the old one is killed
            self._retire(self._process)
        try:
            process = SandboxedProcess(self.limits, self.hide, self.requested_isolation)
        except SandboxUnavailable as exc:
            self._broken = exc
            raise
        self._adopt(process)

    def _adopt(self, process):
        """``process`` becomes this submission's worker; the submission's time budget starts with its
        first (a zygote's imports before it are not the student's)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.total_seconds
        self._workers.append(process)
        origin = "workers_forked" if process.forked else "workers_fresh"     # results.json's timings say which
        self.timings[origin] = self.timings.get(origin, 0) + 1
        self._process, self._reader = process, LineReader(process.process.stdout.fileno())

    def _await_ready(self):
        """Wait for the spawned worker to say it is ready (and, where its mode has Landlock, that it is
        confined); SandboxUnavailable when it does not."""
        process = self._process
        line = self._reader.line(time.monotonic() + STARTUP_SECONDS, ANSWER_BYTES["ready"], answer_prefix(0))
        ready = parse_ready(line) if isinstance(line, bytes) else None
        confined = ready["confined"] if ready else None
        failure = None
        if ready is None:
            why = line.value if isinstance(line, Silence) else "no ready answer"
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
            zygote = process.process.zygote if process.forked else None
            self._retire(process)
            if zygote is not None:      # no student code ran: that zygote forks no more, a fresh worker instead
                zygote.set_aside(failure + (f": {details}" if details else ""))
                raise _ForkedWorkerFailed()
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
        if self.limits.zygote and prestart_zygote(self.limits, self.hide, self.requested_isolation,
                                                  allow_unsandboxed=False):
            target = self._fork_and_run_cells_on_thread      # the zygote's imports overlap too
        else:
            try:
                with warnings.catch_warnings():       # as inside pytest (-W ignore), where it was started before
                    warnings.simplefilter("ignore")
                    self._spawn()
            except Exception:  # noqa: BLE001 - the first use starts it again and raises there
                return
            target = self._run_cells_on_thread
        self._early = threading.Thread(target=target, args=(started,), name="worker-start", daemon=True)
        self._early.start()

    def _fork_and_run_cells_on_thread(self, started):
        """start_early's thread with a zygote: it waits for the zygote's imports, forks the worker and
        runs the cells. A forked worker may be started on any thread (nothing ties it to the thread);
        where the zygote cannot fork, nothing starts here and the first use starts a fresh worker on
        its own thread."""
        try:
            if self._closed:
                return
            process = SandboxedProcess(self.limits, self.hide, self.requested_isolation, fresh=False)
            if process.process is None:
                return
            self._adopt(process)
            if not self._closed:
                self._run_cells(started)
        except _ForkedWorkerFailed:   # the first use starts a fresh worker on its own thread
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the first use, which raises it
            self._early_error = exc
        finally:
            self._early_done = time.monotonic()

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

    def _ask(self, request, answer_kind: str, seconds) -> Outcome:
        """Send a request and read its answer (``answer_kind`` bounds its size: channel.ANSWER_BYTES).
        On silence past the limit (plus grace), death, an oversized answer or a scratch folder past
        its cap, the worker is killed and the outcome is KILLED, saying why: the grader's finding."""
        self._ids += 1
        request_id = request["id"] = self._ids
        limit = max(seconds, 0.1) + self.limits.grace_seconds
        process, reader = self._process, self._reader
        reader.drain()
        asked = time.monotonic()
        deadline = asked + limit
        if send(process.process.stdin.fileno(), (json.dumps(request) + "\n").encode(), limit):
            line = reader.line(deadline, ANSWER_BYTES[answer_kind], answer_prefix(request_id))
        else:
            line = Silence.TIMEOUT if process.process.poll() is None else Silence.EOF
        if isinstance(line, bytes):
            overflow = process.scratch_overflow()
            if overflow is None:
                return self._timed_by_our_clock(parse_answer(line, request_id, request["op"], request.get("returns")),
                                                asked, seconds)
            why = overflow
        elif line is Silence.EOF:
            why = self._death_reason(process)
        elif line is Silence.TIMEOUT:
            why = (f"no answer within {limit:.0f} s (an endless loop, or code that blocks or ignores the time "
                   "limit's signal)")
        else:
            why = "the answer was larger than the grader accepts"
        self._retire(process)
        return Outcome.killed(why, by_clock=line is Silence.TIMEOUT)

    @staticmethod
    def _timed_by_our_clock(outcome: Outcome, asked: float, seconds: float) -> Outcome:
        """A TIMEOUT the worker reports stands only when the grader's own clock agrees that the time
        ran out; earlier, it is the student's code raising TimeoutError (or writing it on the channel)."""
        if outcome.kind is not Kind.TIMEOUT or time.monotonic() - asked >= 0.9 * seconds:
            return outcome
        return replace(outcome, kind=Kind.RAISED)

    def _death_reason(self, process) -> str:
        code = process.process.poll()
        if code is None:
            try:
                code = process.process.wait(timeout=2)
            except Exception:  # noqa: BLE001 - still running, its channel closed
                code = None
        if process.forked and process.process.zygote_died:
            # Its zygote died (never the student's doing: it runs no student code, and no worker may
            # signal it), and its workers with it: the grader's failure, not this student's.
            self._broken = SandboxUnavailable("the zygote this submission's worker was forked from died, and the "
                                              "worker with it")
            return "the grader's zygote process died"
        if process.group.out_of_memory():
            return f"the code ran out of memory (limit {self.limits.memory_bytes >> 20} MiB)"
        if code is None:
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
        self._retire_all()                     # the student's worker gives the probe back its memory
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
        outcome = self._ask(request, returns, seconds)
        self.timings["calls"] += time.monotonic() - started
        if outcome.kind is Kind.KILLED:
            error = StudentCodeError(Kind.KILLED, f"calling {function}: {outcome.text}")
            if outcome.by_clock:
                self._remember_timeout(function, str(error))
            raise error
        if not outcome.ok:
            if outcome.kind is Kind.TIMEOUT:
                self._remember_timeout(function, outcome.text)
            raise StudentCodeError(outcome.kind, outcome.text)
        if len(outcome.args_after) != len(args):     # each argument's state after the call, or the check of it is void
            raise StudentCodeError(Kind.MALFORMED, f"calling {function}: the answer did not report each of its "
                                                   f"{len(args)} arguments (the notebook's code wrote to the "
                                                   "grader's channel)")
        return outcome

    def run_code(self, code: str, number: int) -> Outcome:
        """The outcome of ``code`` run as cell ``number`` after the notebook's cells, e.g. a visible
        test cell (the student's own check); a worker that died is started again first."""
        self._ensure_started()
        left = self._remaining()
        if left <= 0:
            return Outcome.not_run(f"not run: the notebook used up its {self.limits.total_seconds:g} s time budget")
        seconds = min(self.limits.cell_seconds, left)
        return self._ask({"op": "run_cell", "source": code, "seconds": seconds, "cell": number}, "cell", seconds)

    def _remember_timeout(self, function, message):
        self.timed_out[function] = (f"{message}; it ran out of time once, so later checks of {function} "
                                    "do not call it again")

    @staticmethod
    def _arguments_after(outcome: Outcome) -> list:
        """Each array argument as the call left it (None for scalars); ValueError when malformed."""
        return [None if a is None else decode_array(a, ANSWER_BYTES["arrays"]) for a in outcome.args_after]

    def call_array(self, function, *args, **kwargs) -> ArrayAnswer:
        """Call ``function(*args, **kwargs)`` in the worker; its result as a float64 array."""
        outcome = self._call(function, args, kwargs, "array")
        try:
            value = decode_array(outcome.value, ANSWER_BYTES["array"])
            after = self._arguments_after(outcome)
        except (ValueError, TypeError) as exc:
            raise StudentCodeError(Kind.BAD_RETURN, f"{function} returned something that is not an array of "
                                                    f"numbers ({exc})") from None
        return ArrayAnswer(value, outcome.value.get("dtype", "")[:40], after)

    def call_arrays(self, function, *args, **kwargs) -> ArraysAnswer:
        """Call a function that returns a tuple of arrays, e.g. (dx, dgamma, dbeta); each as float64."""
        outcome = self._call(function, args, kwargs, "arrays")
        try:
            values = [decode_array(part, ANSWER_BYTES["arrays"]) for part in outcome.value]
            after = self._arguments_after(outcome)
        except (ValueError, TypeError) as exc:
            raise StudentCodeError(Kind.BAD_RETURN, f"{function} returned something that is not a tuple of "
                                                    f"arrays of numbers ({exc})") from None
        return ArraysAnswer(values, [part.get("dtype", "")[:40] for part in outcome.value], after)

    def model_config(self, function, **kwargs) -> dict:
        """Call a model builder in the worker; the model as its Keras config (a plain dict), read
        with its depth and size bounded (models.vet.parse_config)."""
        from .models.vet import parse_config
        outcome = self._call(function, (), kwargs, "model")
        try:
            return parse_config(outcome.value)
        except ModelRefused as exc:
            raise StudentCodeError(Kind.BAD_RETURN, f"{function} did not return a usable Keras model: {exc}") from None
