"""The grader-process server: one process loads the grader once, then grades one submission at a time.

The local pool (pool.py), a Dask worker (cluster.py) and the nbgrader bridge all grade through it,
so a notebook is read once, in the process that grades it, and every failure of a grader process
becomes the same error result wherever it happens. The protocol, one JSON document per line:

    start:   python [-P] -m autograder.classroom.server --grader MODULE:FUNCTION --settings JSON
             (the JSON: ``settings.Settings.to_dict()``, or null for the grader's defaults)
    server:  {"ready": true, "pid": N, "load_error": null | "why the grader could not be loaded"}
    parent:  a task, {"student": "...", "path": "/file/to/grade.ipynb", "hide": ["/folder", ...]}
    server:  its Result, ``Result.to_dict()`` on one line (parsed with ``Result.from_json``)
    parent closes stdin: the server exits.

The server answers on its own stdout, kept private: everything else printed in the process (the
grader's output, warnings) goes to its stderr, which the parent points at a log file. The settings
(settings.Settings: sandbox Limits, TrainingBudget, cache folder, memo, allow_unsandboxed) come
once, in the start arguments, through their one codec (``Settings.to_dict``/``from_dict``); the
process reads no setting from its environment (its thread caps excepted, which the parent sets in
it: see pool.worker_env). For each task the server reads the file with ``notebook.read`` (a
notebook that cannot be read is the student's error) and calls the grader with the Notebook, the
settings, and the folders to hide from the student's code (the task's and the file's own).

``GraderProcess`` is the parent's handle on one server: start it and wait until it is ready, give
it a task with a timeout, stop it. A process that crashes, runs past the timeout or answers with
something that is not a result is killed with everything it started (its process group), and the
task's result says so: an error on the grader's side, which is never kept as a grade.
"""

import argparse
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import notebook as notebooks
from ..channel import LineReader, Silence
from ..check_catalogue import catalogue
from ..errors import Side, StudentFault
from ..results import Result
from ..settings import Settings

log = logging.getLogger(__name__)

# "module:function" of the grader each process loads (tests point it at a fake). The function is
# called as grade_notebook(notebook, settings, hide=...), settings a settings.Settings.
GRADER = "autograder.grade:grade_notebook"

DEFAULT_TIMEOUT = 900.0        # seconds one submission may take in a grader process
STARTUP_TIMEOUT = 300.0        # seconds a grader process may take to load the grader
MAX_TASKS_PER_WORKER = 40      # a grader process is replaced after this many submissions
MAX_REPLY_BYTES = 64 << 20     # a longer line is not a result


@dataclass(frozen=True)
class Task:
    """One submission to grade: the student, the file to read, the folders to hide from their code."""
    student: str
    path: str
    hide: tuple = ()

    def to_json(self) -> str:
        return json.dumps({"student": self.student, "path": self.path, "hide": list(self.hide)})

    @classmethod
    def from_json(cls, line) -> "Task":
        doc = json.loads(line)
        if not isinstance(doc, dict) or not isinstance(doc.get("student"), str) or not isinstance(doc.get("path"), str):
            raise ValueError("a task needs a student and a path")
        return cls(doc["student"], doc["path"], tuple(str(h) for h in doc.get("hide") or ()))


# --- the server ------------------------------------------------------------------------------------

def load_grader(spec: str):
    """The function named by a "module:function" spec."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "grade_notebook")


def grade_task(task: Task, grader, load_error: str | None, settings: Settings) -> Result:
    """Read and grade one submission; never raises (a failure is an error result, its side decided
    by its type: a notebook that cannot be read is the student's, anything else the grader's)."""
    started = time.perf_counter()
    try:
        read = notebooks.read(task.path)
    except StudentFault as exc:
        result = Result.failed(exc, checks=catalogue())
    else:
        read_seconds = time.perf_counter() - started
        if grader is None:
            result = Result.failed(f"the grader could not be loaded: {load_error}", Side.GRADER, checks=catalogue(),
                                   notes=read.notes)
        else:
            hide = (*task.hide, str(Path(task.path).resolve().parent))
            try:
                result = grader(read, settings, hide=hide)
                if not isinstance(result, Result):
                    raise TypeError(f"the grader returned {type(result).__name__}, not a Result")
            except Exception as exc:  # noqa: BLE001 - a grader bug, reported in the result
                result = Result.failed(exc if isinstance(exc, StudentFault)
                                       else f"the grader failed: {type(exc).__name__}: {exc}", checks=catalogue(),
                                       notes=read.notes)
            try:
                result.to_json()
            except (TypeError, ValueError) as exc:
                result = Result.failed(f"the grader returned a result that is not valid JSON: {exc}",
                                       Side.GRADER, checks=catalogue(), notes=read.notes)
        result.timings.setdefault("read", round(read_seconds, 3))
    result.timings["class_wall"] = round(time.perf_counter() - started, 3)
    return result


def _prestart_zygote(settings: Settings) -> None:
    """Start this process's zygote now, so that its imports overlap the grader's (sandbox.zygote)."""
    try:
        from ..sandbox.process import prestart_zygote
        prestart_zygote(settings.limits, allow_unsandboxed=settings.allow_unsandboxed)
    except Exception as exc:  # noqa: BLE001 - the first worker starts fresh, or the zygote then
        log.warning("the zygote was not started early: %s", exc)


def serve(grader_spec: str, settings_doc) -> None:
    """Load the grader, say ready, then answer each task line on stdin with its result's line."""
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)                            # whatever else is printed goes to the log
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    grader, load_error, settings = None, None, Settings()
    try:
        settings = Settings.from_dict(settings_doc)
        if grader_spec == GRADER:            # another grader (a test's) starts one only if it needs it
            _prestart_zygote(settings)
        grader = load_grader(grader_spec)
    except BaseException as exc:  # noqa: BLE001 - reported with each submission instead
        load_error = f"{type(exc).__name__}: {exc}"
    try:                                     # what every result needs, before the first clock starts
        from ..provenance import versions
        versions()
    except Exception:  # noqa: BLE001
        pass
    replies.write(json.dumps({"ready": True, "pid": os.getpid(), "load_error": load_error}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            task = Task.from_json(line)
        except ValueError as exc:
            result = Result.failed(f"the grader process was sent a task it cannot read: {exc}", Side.GRADER,
                                   checks=catalogue())
        else:
            print(f"--- {task.student}: {task.path}", flush=True)
            result = grade_task(task, grader, load_error, settings)
        replies.write(json.dumps(result.to_dict(), allow_nan=False) + "\n")
    replies.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.classroom.server",
                                     description="A grader process (started by grade-class's pool, a Dask "
                                                 "worker or the nbgrader bridge; see the module's docstring).")
    parser.add_argument("--grader", default=GRADER, help="module:function of the grader (default: %(default)s)")
    parser.add_argument("--settings", default="null", help="the grader's settings as JSON (settings.Settings.to_dict)")
    args = parser.parse_args(argv)
    serve(args.grader, json.loads(args.settings))
    return 0


# --- the parent's handle ---------------------------------------------------------------------------

# -P (Python 3.11+): the working folder (the course's: the grader looks for its release there) is not
# put on the grader process's import path.
_SAFE_PATH = ("-P",) if sys.version_info >= (3, 11) else ()


def crash_reason(returncode) -> str:
    """The row's message for a grader process that died while grading, from its exit code."""
    how = (f"killed by signal {-returncode}" + (" (out of memory?)" if returncode == -9 else "")
           if isinstance(returncode, int) and returncode < 0 else f"exit code {returncode}")
    return f"the grader process crashed while grading this submission ({how})"


def default_log_path() -> Path:
    folder = Path(tempfile.gettempdir()) / "autograder-grader-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"grader-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"


class GraderProcess:
    """One grader process of this machine, as its parent sees it.

    ``start()`` starts it and waits until the grader is loaded; ``grade(task, timeout)`` gives it one
    task and returns its Result, or an error Result on the grader's side when it crashed, ran past
    ``timeout`` or answered with garbage (it is killed then, and ``failure`` says why); ``stop()``
    ends it. ``interrupt()`` kills it from another thread (whoever is waiting on it gets the crash)."""

    def __init__(self, *, grader: str | None = None, settings: Settings | None = None, env=None, log_path=None):
        """``settings``: settings.Settings (None: the grader's defaults); ``env``: the
        process's environment (default this one's); ``log_path``: where its output goes."""
        self.grader = grader or GRADER
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.log_path = Path(log_path) if log_path else default_log_path()
        self.proc = None
        self.replies = None            # its stdout, line by line (channel.LineReader)
        self.done = 0                  # tasks answered
        self.ready = False
        self.failure = None            # why it was killed

    # --- starting and stopping ----------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> str | None:
        """Start the process and wait until it is ready: None then, else why not (it is killed)."""
        timeout = STARTUP_TIMEOUT if timeout is None else timeout
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as log_file:
                self.proc = subprocess.Popen(
                    [sys.executable, *_SAFE_PATH, "-m", "autograder.classroom.server", "--grader", self.grader,
                     "--settings", json.dumps(self.settings.to_dict() if self.settings is not None else None)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=self.env,
                    start_new_session=True)          # its own group: a kill ends everything it started
        except OSError as exc:
            return f"could not be started: {exc}"
        self.replies = LineReader(self.proc.stdout.fileno())
        line = self._line(time.monotonic() + timeout)
        if line is Silence.TIMEOUT:
            self.kill()
            return f"took longer than {timeout:g} s to load the grader"
        if not isinstance(line, bytes):
            self.kill()
            return f"exited before it was ready (exit code {self.proc.returncode})"
        try:
            hello = json.loads(line)
            if not (isinstance(hello, dict) and hello.get("ready") is True):
                raise ValueError
        except ValueError:
            self.kill()
            return "said something else than that it was ready"
        if hello.get("load_error"):
            log.warning("a grader process could not load the grader %s (%s): every submission it is given "
                        "gets an error row; see %s", self.grader, hello["load_error"], self.log_path)
        self.ready = True
        return None

    def stop(self) -> None:
        """End it at the end of its input (killed if it does not end)."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.kill()
        self._close()

    def interrupt(self) -> None:
        """Kill its process group, from any thread; the thread waiting on it sees it crash."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def kill(self) -> None:
        """Kill it and everything it started, and reap it."""
        if self.proc is None:
            return
        self.interrupt()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.ready = False
        self._close()

    def _close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass

    def alive(self) -> bool:
        return self.ready and self.proc is not None and self.proc.poll() is None

    # --- grading ------------------------------------------------------------------------------------

    def grade(self, task: Task, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """The Result for ``task``; an error on the grader's side when the process fails (it is killed)."""
        try:
            self.proc.stdin.write((task.to_json() + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass                                      # it died: reported below
        line = self._line(time.monotonic() + timeout)
        if line is Silence.TIMEOUT:
            return self._failed(f"grading took longer than {timeout:g} s and was stopped")
        if line is Silence.EOF:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            return self._failed(crash_reason(self.proc.returncode))
        self.done += 1
        if line is Silence.TOO_LONG:
            return self._failed(f"the grader process answered with more than {MAX_REPLY_BYTES >> 20} MB, "
                                "not a result")
        try:
            return Result.from_json(line)
        except ValueError as exc:
            return self._failed(f"the grader process answered with something that is not a result ({exc})")

    def _failed(self, reason: str) -> Result:
        self.kill()
        self.failure = reason
        return Result.failed(reason, Side.GRADER, checks=catalogue())

    def _line(self, deadline: float) -> "bytes | Silence":
        """The next line it writes, or why none came: it exited (or was killed) first, the deadline
        passed first, or the line is longer than any result."""
        while True:          # a second at a time: a process that died with its pipe still held is seen too
            line = self.replies.line(min(deadline, time.monotonic() + 1.0), MAX_REPLY_BYTES)
            if line is not Silence.TIMEOUT:
                return line
            if self.proc.poll() is not None:
                return Silence.EOF
            if time.monotonic() >= deadline:
                return Silence.TIMEOUT


def exit_at_once(status: int) -> None:
    """End this grader process without the interpreter's teardown, which takes over a second once
    TensorFlow is loaded (its modules' and C++ objects' destructors) while the parent waits on it: the
    exit handlers run (the zygote's close, the log's flush), then os._exit."""
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:                                     # and C's (a library's printf to the log), which _exit skips
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    os._exit(status)


if __name__ == "__main__":
    exit_at_once(main())
