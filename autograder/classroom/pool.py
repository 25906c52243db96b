"""The local pool: N grader processes (server.py) on this machine, each grading one submission at a time.

``run_pool(tasks, jobs=N, on_result=...)`` keeps N slots busy. A slot is a thread that owns one
``GraderProcess`` at a time: it starts one (the grader is loaded once per process), hands it tasks
from the shared queue, and replaces it after ``max_tasks_per_worker`` submissions, or at once when it
crashed or ran past the timeout (that submission's result then says so, on the grader's side). The
results are handed to ``on_result(task, result)`` in the calling thread, as each finishes.

When grader processes keep dying before they are ready (``MAX_STARTUP_FAILURES`` in a row and none
ready), the remaining submissions get error results instead of waiting forever. Ctrl-C (or an
exception from ``on_result``) kills every grader process; whatever ``on_result`` was given is kept.
"""

import logging
import os
import queue
import threading
from pathlib import Path

from ..check_catalogue import catalogue
from ..errors import Side
from ..results import Result
from ..settings import Settings
from . import server
from .server import DEFAULT_TIMEOUT, MAX_TASKS_PER_WORKER, GraderProcess

log = logging.getLogger(__name__)

MAX_STARTUP_FAILURES = 3     # grader processes in a row that die before they are ready

__all__ = ["run_pool", "cpu_count", "worker_env", "DEFAULT_TIMEOUT", "MAX_TASKS_PER_WORKER", "MAX_STARTUP_FAILURES"]


# --- the processes' share of the machine ----------------------------------------------------------

def cpu_count() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_env(jobs: int) -> dict:
    """Thread caps for each of ``jobs`` grader processes, so that they share the cores instead of each
    starting one thread per core (set in each process's environment: they must be there before
    NumPy or TensorFlow is imported)."""
    from ..sandbox import thread_environment  # the one source of thread settings (the worker's too)
    return {**thread_environment(cpu_count() // max(1, jobs)),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


# --- the pool ----------------------------------------------------------------------------------------

class _Pool:
    def __init__(self, tasks, jobs, timeout, settings, log_dir, max_tasks_per_worker):
        self.pending = queue.Queue()              # (index, task)
        for item in enumerate(tasks):
            self.pending.put(item)
        self.finished = queue.Queue()             # (index, task, result), for the calling thread
        self.timeout = timeout
        self.max_tasks = max_tasks_per_worker
        self.settings = (settings or Settings()).with_threads(cpu_count() // max(1, jobs))   # each one's share
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = dict(os.environ, **worker_env(jobs))
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.processes = set()                    # live ones, for interrupt()
        self.serial = 0
        self.ready = 0                            # processes ready now
        self.startup_failures = 0                 # in a row
        self.last_failure = ""

    def _next(self):
        try:
            return None if self.stopping.is_set() else self.pending.get_nowait()
        except queue.Empty:
            return None

    def _start(self):
        """A ready grader process, or None when it could not start."""
        with self.lock:
            self.serial += 1
            log_path = self.log_dir / f"grader-{self.serial}.log" if self.log_dir else None
            process = GraderProcess(grader=server.GRADER, settings=self.settings, env=self.env, log_path=log_path)
            self.processes.add(process)
        reason = process.start() if not self.stopping.is_set() else "was not started: the pool is stopping"
        if reason is None and self.stopping.is_set():
            process.kill()
            reason = "was stopped: the pool is stopping"
        with self.lock:
            if reason is None:
                self.ready += 1
                self.startup_failures = 0
                return process
            self.processes.discard(process)
            self.startup_failures += 1
            self.last_failure = reason
        if not self.stopping.is_set():
            log.warning("a grader process %s; see %s", reason, process.log_path)
        return None

    def _drop(self, process) -> None:
        with self.lock:
            self.processes.discard(process)
            self.ready -= 1

    def _give_up(self) -> bool:
        """After a failed start: whether this slot stops. When too many starts failed in a row and no
        process is ready anywhere, the submissions still waiting get error results."""
        with self.lock:
            if self.stopping.is_set():
                return True
            if self.startup_failures < MAX_STARTUP_FAILURES:
                return False
            if self.ready:
                return True                  # the other slots carry on
            reason = self.last_failure
        while (item := self._next()) is not None:
            self.finished.put((*item, Result.failed(f"no grader process could be started ({reason})", Side.GRADER,
                                                                   checks=catalogue())))
        return True

    def slot(self) -> None:
        """One slot's thread: grade tasks from the queue in one grader process at a time."""
        process = None
        try:
            while not self.stopping.is_set():
                if process is None:
                    if self.pending.empty():
                        break
                    process = self._start()
                    if process is None:
                        if self._give_up():
                            break
                        continue
                item = self._next()
                if item is None:
                    break
                index, task = item
                result = process.grade(task, self.timeout)
                self.finished.put((index, task, result))
                if process.failure is not None:
                    if not self.stopping.is_set():
                        log.warning("%s: %s; see %s", task.student, process.failure, process.log_path)
                    self._drop(process)
                    process = None
                elif process.done >= self.max_tasks:
                    process.stop()
                    self._drop(process)
                    process = None
        finally:
            if process is not None:
                process.kill() if self.stopping.is_set() else process.stop()
                self._drop(process)

    def interrupt(self) -> None:
        self.stopping.set()
        with self.lock:
            processes = list(self.processes)
        for process in processes:
            process.interrupt()


def run_pool(tasks: list, *, jobs: int, on_result, timeout: float = DEFAULT_TIMEOUT, settings: Settings | None = None,
             log_dir=None, max_tasks_per_worker: int = MAX_TASKS_PER_WORKER) -> None:
    """Grade ``tasks`` (server.Task) in ``jobs`` grader processes, calling ``on_result(task, result)``
    in this thread as each finishes; every task gets exactly one result, unless ``on_result`` raises
    (or Ctrl-C), which kills every grader process and is raised here. ``settings``
    (settings.Settings, None for the grader's defaults) go to every grader process; each one's
    output goes to ``log_dir``/grader-N.log (default: a temporary folder)."""
    tasks = list(tasks)
    if not tasks:
        return
    pool = _Pool(tasks, jobs, timeout, settings, log_dir, max_tasks_per_worker)
    threads = [threading.Thread(target=pool.slot, name=f"grader-slot-{i + 1}", daemon=True)
               for i in range(min(max(1, jobs), len(tasks)))]
    for thread in threads:
        thread.start()
    given = set()
    completed = False
    try:
        while len(given) < len(tasks):
            try:
                index, task, result = pool.finished.get(timeout=0.5)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and pool.finished.empty():
                    break
                continue
            given.add(index)
            on_result(task, result)
        completed = True
    finally:
        if not completed:                    # Ctrl-C, or on_result raised: nothing more is graded
            pool.interrupt()
        for thread in threads:
            thread.join(60)
    for index, task in enumerate(tasks):     # a slot that ended early: never a silent loss
        if index not in given:
            on_result(task, Result.failed("the grader pool stopped before grading this submission", Side.GRADER,
                                          checks=catalogue()))
