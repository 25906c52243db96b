"""Grade: a pool of long-lived grader processes, each loading the grader once and grading many notebooks.

``run_pool(tasks, jobs=N, on_result=...)`` starts N processes (multiprocessing ``spawn``: a process
that may hold threads is never forked). Each one loads ``GRADER`` (``autograder.grade:grade_notebook``,
the isolated grader), says it is ready, then for each task prepares the handed-in notebook
(``collect.prepare_notebook``) and grades it (``grade_task``). A process that crashes or runs past
the timeout is ended, that submission gets an error result, and a fresh process takes its place.

The pool decides how and where the grader runs, not what it scores: its own error results are never
kept as final, so this module is not part of ``grade_class.grader_hash``.
"""

import importlib
import json
import os
import signal
import sys
import tempfile
import time
from multiprocessing.connection import wait as wait_connections
from pathlib import Path

from . import results
from .collect import NotebookUnreadable, prepare_notebook
from .exercises import NOTEBOOK_NAME

# "module:function" of the grader each pool process calls (tests point it at a fake).
GRADER = "autograder.grade:grade_notebook"

DEFAULT_TIMEOUT = 900.0               # seconds one submission may take in a grader process
MAX_TASKS_PER_WORKER = 40             # a grader process is replaced after this many submissions

STARTUP_TIMEOUT = 300.0      # seconds a grader process may take to load the grader
MAX_STARTUP_FAILURES = 3     # grader processes in a row that die before they are ready


# --- the processes' share of the machine ----------------------------------------------------------

def cpu_count() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_env(jobs: int) -> dict:
    """Thread limits for each grader process, so ``jobs`` processes share the cores instead of each
    starting one thread per core."""
    from .sandbox import thread_environment     # the one source of thread settings (the worker's too)
    return {**thread_environment(cpu_count() // max(1, jobs)),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


def valid_result(doc) -> bool:
    """Whether ``doc`` looks like a results document (from the grader, or stored by an earlier run)."""
    return (isinstance(doc, dict) and isinstance(doc.get("checks"), list)
            and doc.get("status") in ("graded", "error") and "total" in doc and "max_total" in doc)


# --- the grader processes -------------------------------------------------------------------------

def _load_grader(spec: str):
    """The function named by a "module:function" spec."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "grade_notebook")


def _accepts(function, name: str) -> bool:
    """Whether ``function`` takes a keyword argument ``name``."""
    import inspect
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def grade_task(task: dict, grader, load_error: str | None, cache_dir) -> dict:
    """Prepare and grade one submission; never raises (an error becomes an error result)."""
    start = time.perf_counter()
    final = True
    notes = []
    with tempfile.TemporaryDirectory(prefix="autograder-class-") as tmp:
        prepared = Path(tmp) / NOTEBOOK_NAME
        try:
            notes = prepare_notebook(Path(task["path"]), prepared)
        except NotebookUnreadable as e:
            result = results.error_result(str(e))
        except OSError as e:
            result, final = results.error_result(f"the notebook could not be read: {e}", grader_side=True), False
        else:
            prepare_seconds = time.perf_counter() - start
            if grader is None:
                result, final = results.error_result(f"the grader could not be loaded: {load_error}",
                                                    grader_side=True), False
            else:
                try:
                    kwargs = {"cache_dir": Path(cache_dir) if cache_dir else None}
                    if task.get("hide") and _accepts(grader, "hide"):
                        kwargs["hide"] = tuple(task["hide"])
                    result = grader(prepared, **kwargs)
                    if not valid_result(result):
                        raise ValueError(f"the grader returned {type(result).__name__}, not a results document")
                    json.dumps(result, allow_nan=False)
                except Exception as e:
                    result, final = results.error_result(f"the grader failed: {type(e).__name__}: {e}",
                                                        grader_side=True), False
            result.setdefault("timings", {}).setdefault("prepare", round(prepare_seconds, 3))
    result.setdefault("timings", {})["class_wall"] = round(time.perf_counter() - start, 3)
    return {"student": task["student"], "result": result, "notes": notes, "final": final}


def _worker_main(conn, grader_spec: str, env: dict, cache_dir, log_path) -> None:
    """A long-lived grader process: load the grader once, say "ready", then grade what the parent sends."""
    try:
        os.setpgrp()                 # so a timeout can end this process and anything it started
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    os.environ.update(env)
    if log_path:
        try:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(fd, 1), os.dup2(fd, 2)
            os.close(fd)
        except OSError:
            pass
    grader, load_error = None, None
    try:
        grader = _load_grader(grader_spec)
    except BaseException as e:       # noqa: BLE001 - reported per submission instead
        load_error = f"{type(e).__name__}: {e}"
    try:                             # what every submission needs, loaded before the clock starts
        import nbformat  # noqa: F401
        results.versions()
    except Exception:                # noqa: BLE001
        pass
    try:
        conn.send(("ready", load_error))
        while True:
            task = conn.recv()
            if task is None:
                break
            print(f"--- {task['student']}: {task['path']}", flush=True)
            conn.send(("done", grade_task(task, grader, load_error, cache_dir)))
    except (EOFError, OSError):
        pass


class _Worker:
    """The parent's handle on one grader process: its pipe, its current task and when that started."""

    def __init__(self, ctx, args):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, *args), name="autograder-grader")
        self.proc.start()
        child.close()
        self.log = args[3]
        self.ready = False
        self.task = None
        self.started = time.monotonic()      # when it started, then when its current task did
        self.done = 0

    def send(self, task):
        self.task, self.started = task, time.monotonic()
        self.conn.send(task)

    def kill(self):
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError, OSError, ValueError, AttributeError):
                pass
        self.proc.join(10)
        self.conn.close()

    def stop(self):
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def _crash_reason(exitcode) -> str:
    """The row's message for a grader process that died while grading, from its exit code."""
    how = (f"killed by signal {-exitcode}" + (" (out of memory?)" if exitcode == -9 else "")
           if isinstance(exitcode, int) and exitcode < 0 else f"exit code {exitcode}")
    return f"the grader process crashed while grading this submission ({how})"


def run_pool(tasks: list, *, jobs: int, on_result, timeout: float = DEFAULT_TIMEOUT,
             cache_dir=None, log_dir=None, max_tasks_per_worker: int = MAX_TASKS_PER_WORKER,
             note=None) -> None:
    """Grade ``tasks`` in ``jobs`` grader processes, calling ``on_result(outcome)`` as each finishes.

    Each process loads the grader once and says it is ready; ``timeout`` counts from when it is
    given a submission. A process that dies or runs past ``timeout`` is ended, that submission gets
    an error result, and a fresh process takes its place. When grader processes keep dying before
    they are ready, the remaining submissions get error results instead of waiting forever.
    """
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")   # never fork a process that may hold threads
    env = worker_env(jobs)
    pending = list(reversed(tasks))
    workers, serial, startup_failures = [], 0, 0

    def start():
        nonlocal serial
        serial += 1
        log = str(Path(log_dir) / f"grader-{serial}.log") if log_dir else None
        return _Worker(ctx, (GRADER, env, str(cache_dir) if cache_dir else None, log))

    def error(task, reason):
        on_result({"student": task["student"], "notes": [], "final": False, "result": results.error_result(reason, grader_side=True)})

    def failed(worker, reason):
        task = worker.task
        worker.kill()
        workers.remove(worker)
        if note is not None:
            note(f"{task['student']}: {reason}" + (f"; see {worker.log}" if worker.log else ""))
        error(task, reason)

    def lost_before_ready(worker, reason):
        nonlocal startup_failures
        worker.kill()
        workers.remove(worker)
        startup_failures += 1
        if note is not None:
            note(f"a grader process {reason}" + (f"; see {worker.log}" if worker.log else ""))
        if startup_failures >= MAX_STARTUP_FAILURES and not any(w.ready for w in workers):
            while pending:
                error(pending.pop(), f"no grader process could be started ({reason})")

    try:
        while pending or any(w.task for w in workers):
            while pending and len(workers) < jobs:
                workers.append(start())
            for w in list(workers):
                if w.ready and w.task is None and pending:
                    task = pending.pop()
                    try:
                        w.send(task)
                    except (OSError, ValueError):     # it died while idle: someone else takes the task
                        pending.append(task)
                        w.task = None
                        lost_before_ready(w, "died while idle")
            ready = wait_connections([w.conn for w in workers] + [w.proc.sentinel for w in workers],
                                     timeout=1.0)
            for w in list(workers):
                if w.conn in ready or w.conn.poll():
                    try:
                        kind, payload = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        if w.task is not None:
                            failed(w, _crash_reason(w.proc.exitcode))
                        else:
                            lost_before_ready(w, f"exited before it was ready ({w.proc.exitcode})")
                        continue
                    if kind == "ready":
                        w.ready, startup_failures = True, 0
                        continue
                    w.task, w.done = None, w.done + 1
                    on_result(payload)
                    if w.done >= max_tasks_per_worker:
                        w.stop()
                        workers.remove(w)
                elif not w.proc.is_alive():
                    if w.task is not None:
                        failed(w, _crash_reason(w.proc.exitcode))
                    else:
                        lost_before_ready(w, f"exited before it was ready ({w.proc.exitcode})")
                elif w.task is not None and time.monotonic() - w.started > timeout:
                    failed(w, f"grading took longer than {timeout:g} s and was stopped")
                elif not w.ready and time.monotonic() - w.started > STARTUP_TIMEOUT:
                    lost_before_ready(w, f"took longer than {STARTUP_TIMEOUT:g} s to load the grader")
    finally:
        for w in workers:
            if w.task is None:
                w.stop()
            else:
                w.kill()
