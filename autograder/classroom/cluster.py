"""Grade a class on a Dask distributed cluster: ``grade-class batchnorm --scheduler tcp://HOST:8786``.

The instructor's machine (``run_cluster``, called by classrun.run in place of pool.run_pool) sends
each submission's raw bytes to the cluster in a task (at most notebook.MAX_NOTEBOOK_BYTES: a file
that is larger, or cannot be read here, is the student's error row and is not sent) and gets each
Result back, which it stores: results, resuming and atomic writes stay on the instructor's machine,
and the course folder need not be shared. Nothing reads the notebook on this side: the grader
process that grades it does, once.

Dask's own machinery does the distributing: ``distributed.Client`` submits one task per submission
(``pure=False``, ``retries=TASK_RETRIES`` for a task that raised), the scheduler queues them and
hands them to workers as they free up, moves the tasks of a worker that died or lost contact to
another worker and, after ``distributed.scheduler.allowed-failures`` such losses, fails the task
with ``KilledWorker`` (that submission then gets an error row on the grader's side: the next run
grades it again). Results arrive through ``distributed.as_completed``.

On a worker, the task (``grade_remote``) writes the bytes to a private temporary file and hands it
to a grader process of its own (server.GraderProcess, the same server as the local pool's): a Dask
worker keeps one per thread (``dask worker --nthreads N`` grades N submissions at a time), loaded
once and reused, so a crash or a timeout kills that process and everything it started, not the Dask
worker.

Every worker must run the same grader as the instructor: each answer carries the worker's
``provenance.grader_hash()``, and a result from a different grader is not used (an error row on the
grader's side, saying which worker to update).

Dask is optional (``pip install '.[cluster]'``); nothing here imports it until a cluster is used.
"""

import logging
import os
import tempfile
import threading
import uuid
from dataclasses import replace
from pathlib import Path

from .. import notebook as notebooks
from .. import provenance
from ..check_catalogue import catalogue
from ..errors import ClusterUnavailable, Side, StudentFault
from ..exercises import NOTEBOOK_NAME
from ..results import Result
from ..settings import Settings, default_cache_dir
from . import server
from .server import DEFAULT_TIMEOUT, MAX_TASKS_PER_WORKER, GraderProcess, Task

log = logging.getLogger(__name__)

TASK_RETRIES = 1             # a task that raised on a worker (not a lost worker: Dask handles those)
CONNECT_TIMEOUT = 30.0       # seconds to reach the scheduler


# --- the instructor's side -------------------------------------------------------------------------

def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` connected to the scheduler at ``address``; ClusterUnavailable if not."""
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


def _remote_settings(settings: Settings | None) -> dict:
    """The settings as the workers get them (``Settings.to_dict``): a cache folder that is only this
    machine's default is left to each worker's own default (another machine, maybe another user's home)."""
    found = (settings or Settings()).with_threads(1)        # each worker sets its own share (_take)
    if found.cache_dir == default_cache_dir():
        found = replace(found, cache_dir=None)
    return found.to_dict()


def _answer(done, grader_hash: str | None) -> Result:
    """The Result in a worker's answer; an error on the grader's side when it is not one, or when the
    worker runs another grader."""
    if not isinstance(done, dict):
        return Result.failed("the Dask worker answered with something that is not a result", Side.GRADER,
                             checks=catalogue())
    if grader_hash is not None and done.get("grader_hash") != grader_hash:
        return Result.failed(f"the Dask worker {done.get('worker')} runs a different grader "
                             f"({done.get('grader_hash')}, here {grader_hash}): install this version of the "
                             "package on every worker", Side.GRADER, checks=catalogue())
    try:
        return Result.from_dict(done.get("result"))
    except ValueError as exc:
        return Result.failed(f"the Dask worker {done.get('worker')} answered with something that is not a "
                             f"result ({exc})", Side.GRADER, checks=catalogue())


def run_cluster(tasks: list, *, scheduler, on_result, timeout: float = DEFAULT_TIMEOUT,
                settings: Settings | None = None,
                grader_hash: str | None = None) -> None:
    """Grade ``tasks`` (server.Task) on the Dask cluster at ``scheduler`` (an address, or a connected
    ``distributed.Client``), calling ``on_result(task, result)`` as each comes back, as pool.run_pool
    does. Every task gets exactly one result."""
    from distributed import as_completed

    client = connect(scheduler) if isinstance(scheduler, str) else scheduler
    owned = isinstance(scheduler, str)
    futures = {}
    settings_doc = _remote_settings(settings)
    try:
        if not client.scheduler_info(n_workers=-1).get("workers"):
            log.info("the scheduler at %s has no workers yet: waiting for them", client.scheduler.address)
        for task in tasks:
            try:
                data = notebooks.read_bytes(task.path)     # the size cap, before anything is sent
            except StudentFault as exc:
                on_result(task, Result.failed(exc, checks=catalogue()))
                continue
            payload = {"student": task.student, "notebook": data, "grader": server.GRADER,
                       "timeout": timeout, "settings": settings_doc}
            future = client.submit(grade_remote, payload, key=f"grade-{task.student}-{uuid.uuid4().hex[:8]}",
                                   pure=False, retries=TASK_RETRIES)
            futures[future] = task
        with client.as_current():                  # as_completed finds the client through it
            finished = as_completed(list(futures))
        for future in finished:
            task = futures.pop(future)
            if future.status == "finished":
                result = _answer(future.result(), grader_hash)
            else:
                exc = future.exception()
                reason = f"the Dask cluster could not grade this submission: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", task.student, reason)
                result = Result.failed(reason, Side.GRADER, checks=catalogue())
            on_result(task, result)
    finally:
        if futures:
            client.cancel(list(futures))
        if owned:
            client.close()


# --- the worker's side -----------------------------------------------------------------------------

def _threads_of_this_worker() -> int:
    try:
        from distributed import get_worker
        worker = get_worker()
        return int(getattr(getattr(worker, "state", worker), "nthreads", 1))
    except Exception:  # noqa: BLE001 - not on a Dask worker (tests, a plain call)
        return 1


_idle: list = []                 # this Dask worker's grader processes waiting for a submission
_idle_lock = threading.Lock()


def _take(grader: str, settings_doc):
    """An idle grader process of this worker for ``grader`` and these settings (``Settings.to_dict``'s
    document), or a new one; (process, why it could not start or None)."""
    from .pool import cpu_count, worker_env
    threads = _threads_of_this_worker()
    found = Settings.from_dict(settings_doc)
    found = replace(found, limits=replace(found.limits, threads=max(1, cpu_count() // threads)))
    with _idle_lock:
        while _idle:
            process = _idle.pop()
            if process.alive() and (process.grader, process.settings) == (grader, found):
                return process, None
            process.stop()
    log_dir = Path(tempfile.gettempdir()) / "autograder-dask-logs"
    process = GraderProcess(grader=grader, settings=found,
                            env=dict(os.environ, **worker_env(threads)),
                            log_path=log_dir / f"grader-{uuid.uuid4().hex[:12]}.log")
    return process, process.start()


def _give_back(process: GraderProcess) -> None:
    if process.alive() and process.done < MAX_TASKS_PER_WORKER:
        with _idle_lock:
            _idle.append(process)
    else:
        process.stop()


def grade_remote(payload: dict) -> dict:
    """The Dask task: grade one submission sent as bytes, on this worker, in a grader process.
    Returns {"result": the Result as a dict, "worker": this worker's address, "grader_hash": ...}."""
    try:
        from distributed import get_worker
        worker, scratch = get_worker().address, get_worker().local_directory
    except Exception:  # noqa: BLE001
        worker, scratch = "local", None
    # In the Dask worker's own folder, which Dask removes when the worker closes, or, for one killed
    # mid-task, when the next worker starts there: the student's notebook is not left in /tmp. That
    # folder, with the other tasks' notebooks and Dask's spilled data, is hidden from the student's code.
    with tempfile.TemporaryDirectory(prefix="autograder-dask-", dir=scratch) as tmp:
        path = Path(tmp) / NOTEBOOK_NAME
        path.write_bytes(payload["notebook"])
        process, failure = _take(payload["grader"], payload.get("settings"))
        if failure is not None:
            result = Result.failed(f"a grader process {failure} (see {process.log_path} on {worker})", Side.GRADER,
                                   checks=catalogue())
        else:
            hide = (tmp, scratch) if scratch else (tmp,)
            result = process.grade(Task(payload["student"], str(path), hide), payload["timeout"])
            _give_back(process)
    return {"result": result.to_dict(), "worker": worker, "grader_hash": provenance.grader_hash()}
