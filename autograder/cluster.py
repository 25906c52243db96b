"""Grade a class on a Dask distributed cluster: ``grade-class batchnorm --scheduler tcp://HOST:8786``.

The instructor's machine (``run_cluster``, called by grade_class.run in place of pool.run_pool)
reads and prepares each notebook (collect.prepare_notebook: outputs stripped, nbformat v4), sends
its bytes to the cluster in a task, and writes each result as it comes back: results, resume and
atomic writes stay on the instructor's machine, and the course folder need not be shared.

Dask's own machinery does the distributing: ``distributed.Client`` submits one task per submission
(``pure=False``, ``retries=TASK_RETRIES`` for a task that raised), the scheduler queues them and
hands them to workers as they free up (``distributed.scheduler.worker-saturation``), moves the tasks
of a worker that died or lost contact to another worker and, after
``distributed.scheduler.allowed-failures`` such losses, fails the task with ``KilledWorker``
(that submission then gets an error row that is not final: the next run grades it again). Results
arrive through ``distributed.as_completed``.

On a worker, the task (``grade_remote``) never grades in the Dask worker's own process: it hands
the notebook to a grader process (``python -m autograder.cluster serve``), a long-lived child that
loads the grader once and grades one submission at a time with pool.grade_task, exactly as a local
pool process does. A worker keeps one grader process per thread (``dask worker --nthreads N``
grades N submissions at a time). A grader process that crashes, or runs past the per-submission
timeout, is killed with everything it started; the submission gets an error row and the Dask worker
lives on.

Every worker must run the same grader as the instructor: each result carries the worker's
``grade_class.grader_hash()``, and a result from a different grader is not used (an error row
that is not final, saying which worker to update).

Dask is optional (``pip install '.[cluster]'``); nothing here imports it until a cluster is used.
"""

import base64
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from . import pool, results
from .collect import NotebookUnreadable, prepare_notebook
from .exercises import NOTEBOOK_NAME

TIMED_OUT = object()         # what GraderProcess._line returns when the deadline passes first
TASK_RETRIES = 1             # a task that raised on a worker (not a lost worker: Dask handles those)
CONNECT_TIMEOUT = 30.0       # seconds to reach the scheduler


class ClusterUnavailable(Exception):
    """Dask is not installed, or the scheduler cannot be reached."""


# --- the instructor's side -------------------------------------------------------------------------

def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` connected to the scheduler at ``address``."""
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        from distributed import Client
    except ImportError:
        raise ClusterUnavailable("--scheduler needs Dask: pip install 'batchnorm-assignment[cluster]' "
                                 "(or, in this project, make setup)") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterUnavailable(f"cannot reach the Dask scheduler at {address}: {e}") from None


def _prepared(task: dict):
    """(the notebook's prepared bytes, notes) read on this machine; raises NotebookUnreadable / OSError."""
    with tempfile.TemporaryDirectory(prefix="autograder-cluster-") as tmp:
        dest = Path(tmp) / NOTEBOOK_NAME
        notes = prepare_notebook(Path(task["path"]), dest)
        return dest.read_bytes(), notes


def _error(student: str, reason: str, final: bool = False) -> dict:
    return {"student": student, "notes": [], "final": final, "result": results.error_result(reason, grader_side=not final)}


def run_cluster(tasks: list, *, scheduler, on_result, timeout: float = pool.DEFAULT_TIMEOUT,
                cache_dir=None, grader_hash: str | None = None, note=None) -> None:
    """Grade ``tasks`` (grade_class's: student, path) on the Dask cluster at ``scheduler`` (an address,
    or a connected ``distributed.Client``), calling ``on_result(outcome)`` as each comes back, with
    the same outcomes as pool.run_pool. Every task gets exactly one outcome."""
    from distributed import as_completed

    client = connect(scheduler) if isinstance(scheduler, str) else scheduler
    owned = isinstance(scheduler, str)
    futures, notes_of = {}, {}
    try:
        if note is not None and not client.scheduler_info(n_workers=-1).get("workers"):
            note(f"the scheduler at {client.scheduler.address} has no workers yet: waiting for them")
        for task in tasks:
            student = task["student"]
            try:
                data, notes = _prepared(task)
            except NotebookUnreadable as e:           # the student's: final, as in the pool
                on_result(_error(student, str(e), final=True))
                continue
            except OSError as e:
                on_result(_error(student, f"the notebook could not be read: {e}"))
                continue
            notes_of[student] = notes
            payload = {"student": student, "notebook": base64.b64encode(data).decode("ascii"),
                       "grader": pool.GRADER, "timeout": timeout,
                       "cache_dir": str(cache_dir) if cache_dir else None}
            future = client.submit(grade_remote, payload, key=f"grade-{student}-{uuid.uuid4().hex[:8]}",
                                   pure=False, retries=TASK_RETRIES)
            futures[future] = student
        with client.as_current():                  # as_completed finds the client through it
            finished = as_completed(list(futures))
        for future in finished:
            student = futures.pop(future)
            if future.status == "finished":
                done = future.result()
                if grader_hash is not None and done.get("grader_hash") != grader_hash:
                    done = _error(student, f"the Dask worker {done.get('worker')} runs a different grader "
                                           f"({done.get('grader_hash')}, here {grader_hash}): install this "
                                           "version of the package on every worker")
            else:
                exc = future.exception()
                reason = f"the Dask cluster could not grade this submission: {type(exc).__name__}: {exc}"
                if note is not None:
                    note(f"{student}: {reason}")
                done = _error(student, reason)
            done["notes"] = notes_of.get(student, []) + [n for n in done.get("notes", [])
                                                         if n not in notes_of.get(student, [])]
            on_result(done)
    finally:
        if futures:
            client.cancel(list(futures))
        if owned:
            client.close()


# --- the worker's side -----------------------------------------------------------------------------

def _grader_hash() -> str:
    """This worker's grader hash, computed for each task (the package may be updated under a worker)."""
    from .grade_class import grader_hash
    return grader_hash()


def _threads_of_this_worker() -> int:
    try:
        from distributed import get_worker
        worker = get_worker()
        return int(getattr(getattr(worker, "state", worker), "nthreads", 1))
    except Exception:  # noqa: BLE001 - not on a Dask worker (tests, a plain call)
        return 1


class GraderProcess:
    """One grader process (``python -m autograder.cluster serve``) on this machine: it loads the
    grader once, then grades one submission per request. Lines of JSON on its stdin and on a pipe of
    its own (its stdout); everything else it prints goes to a log file."""

    def __init__(self, grader: str, cache_dir, threads: int):
        log_dir = Path(tempfile.gettempdir()) / "autograder-dask-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"grader-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        env = dict(os.environ, **pool.worker_env(threads))
        self.grader = grader
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.cluster", "serve", grader, cache_dir or ""],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                start_new_session=True)          # so a kill ends it and everything it started
        self.buffer = b""
        self.done = 0
        self.ready = False

    def _line(self, deadline: float):
        """The next line it writes; None when it exits first, TIMED_OUT when the deadline passes first."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return TIMED_OUT
            readable, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    return None
                self.buffer += chunk
            elif self.proc.poll() is not None:
                return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def start(self) -> str | None:
        """Wait until the grader is loaded; None when ready, else why not."""
        line = self._line(time.monotonic() + pool.STARTUP_TIMEOUT)
        if line is None or line is TIMED_OUT:
            self.kill()
            return f"a grader process could not start (exit code {self.proc.returncode}; see {self.log_path})"
        self.ready = True
        return None

    def grade(self, task: dict, timeout: float) -> dict:
        """pool.grade_task's outcome for ``task``, or an error outcome (not final) when the process
        crashed or ran past ``timeout``; the process is killed then."""
        try:
            self.proc.stdin.write((json.dumps(task) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass                                   # it died: reported below
        line = self._line(time.monotonic() + timeout)
        if line is None or line is TIMED_OUT:
            self.kill()
            reason = (f"grading took longer than {timeout:g} s and was stopped" if line is TIMED_OUT
                      else pool._crash_reason(self.proc.returncode))
            return _error(task["student"], reason)
        self.done += 1
        try:
            return json.loads(line)
        except ValueError:
            self.kill()
            return _error(task["student"], f"the grader process answered with garbage (see {self.log_path})")

    def alive(self) -> bool:
        return self.ready and self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        self.proc.wait()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()                # it exits at the end of its input
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


_idle: list = []                 # this Dask worker's grader processes waiting for a submission
_idle_lock = threading.Lock()


def _take(grader: str, cache_dir):
    """An idle grader process of this worker for ``grader``, or a new one; (process, why it failed)."""
    with _idle_lock:
        while _idle:
            process = _idle.pop()
            if process.alive() and process.grader == grader:
                return process, None
            process.kill()
    process = GraderProcess(grader, cache_dir, _threads_of_this_worker())
    return process, process.start()


def _give_back(process: GraderProcess) -> None:
    if process.alive() and process.done < pool.MAX_TASKS_PER_WORKER:
        with _idle_lock:
            _idle.append(process)
    else:
        process.stop()


def grade_remote(payload: dict) -> dict:
    """The Dask task: grade one submission sent as bytes, on this worker, in a grader process.
    Returns pool.grade_task's outcome plus the worker's address and grader hash."""
    student = payload["student"]
    try:
        from distributed import get_worker
        worker = get_worker().address
    except Exception:  # noqa: BLE001
        worker = "local"
    with tempfile.TemporaryDirectory(prefix="autograder-dask-") as tmp:
        path = Path(tmp) / NOTEBOOK_NAME
        path.write_bytes(base64.b64decode(payload["notebook"]))
        process, failure = _take(payload["grader"], payload.get("cache_dir"))
        if failure is not None:
            done = _error(student, failure)
        else:
            done = process.grade({"student": student, "path": str(path), "hide": [tmp]}, payload["timeout"])
            _give_back(process)
    done.update(worker=worker, grader_hash=_grader_hash())
    return done


def serve(grader_spec: str, cache_dir: str) -> None:
    """The grader process: load the grader, say "ready", then grade one JSON task per input line."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                                   # whatever else is printed goes to the log
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    grader, load_error = None, None
    try:
        grader = pool._load_grader(grader_spec)
    except BaseException as e:  # noqa: BLE001 - reported per submission instead
        load_error = f"{type(e).__name__}: {e}"
    try:
        import nbformat  # noqa: F401
        results.versions()
    except Exception:  # noqa: BLE001
        pass
    replies.write("ready\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        print(f"--- {task['student']}", flush=True)
        replies.write(json.dumps(pool.grade_task(task, grader, load_error, cache_dir or None)) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        print("usage: python -m autograder.cluster serve GRADER CACHE_DIR (started by grade_remote)",
              file=sys.stderr)
        sys.exit(2)
