"""SPIKE (issue 26): the zygote, a process that has imported what the release's set-up cell imports,
has never run student code, and forks one worker per request (Landlock mode, no bubblewrap).

Started by zygote.py as a plain script from a private folder holding worker.py and confine.py (root's,
0755), with the worker's environment (PYTHONHASHSEED, KERAS_BACKEND, thread caps are read once, at
start), its control socket (SOCK_SEQPACKET) on the descriptor BN_AUTOGRADER_ZYGOTE_CONTROL names,
stdin and stdout on /dev/null. Like worker.py it imports nothing from the package.

A request is one datagram: JSON {"env", "cwd", "cgroup": [paths], "cgroup_optional": [paths],
"rlimits": [[name, soft, hard]], "keras_home"} with four descriptors attached (SCM_RIGHTS): the
worker's request pipe (read end), its answer pipe (write end), its stderr file, and a status socket
of its own. On the status socket the zygote writes "pid N" (or "refused WHY") and, when it has reaped
the child, "exit CODE" (Popen's convention: negative for a signal), then closes it.

The child, in this order, before any student code: leaves the zygote's session and process group
(setsid), joins its cgroup, takes its rlimits, puts its pipes on 0/1/2 and closes every other
descriptor (the control socket, other children's status sockets), enters its scratch, takes its
own environment, reseeds Python's and NumPy's random state, then runs worker.main(): drop to the
leased uid, die with its parent, Landlock + seccomp (which refuse when a second thread exists),
then the request loop.
"""

import gc
import importlib.util
import json
import os
import resource
import select
import socket
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_REQUEST = 1 << 20
CHILD_FAILED = 72            # the child could not set itself up (it ran no student code)


def _load(name, filename):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _grader_gone() -> bool:
    """The zygote ends when its control socket closes (the grader process ended, however it died):
    PR_SET_PDEATHSIG would bind it to the grader's thread that started it (a Dask or pool thread
    may end while the process lives on). Its children die with it (worker.py's PR_SET_PDEATHSIG:
    the zygote has one thread)."""
    return os.getppid() != int(os.environ.pop("BN_AUTOGRADER_ZYGOTE_PARENT"))


def _child(worker, request, fds):
    """Runs in the forked child; never returns."""
    try:
        request_fd, answer_fd, stderr_fd, _status_fd = fds
        os.setsid()
        for path in request["cgroup"]:
            with open(os.path.join(path, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        for path in request.get("cgroup_optional", ()):
            try:
                with open(os.path.join(path, "cgroup.procs"), "w") as procs:
                    procs.write(str(os.getpid()))
            except OSError:
                pass
        for name, soft, hard in request["rlimits"]:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        os.dup2(request_fd, 0)
        os.dup2(answer_fd, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 20 else 1 << 16)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _repoint_caches(request)
        import random
        random.seed()                            # from os.urandom, as a fresh interpreter does
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()                  # NumPy's global state is shared across fork
        sys.argv = [worker.__file__]
    except BaseException:  # noqa: BLE001 - never run student code half set up
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        finally:
            os._exit(CHILD_FAILED)
    try:
        worker.main()
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    os._exit(0)


def _repoint_caches(request):
    """Paths the imports read from the zygote's environment once: Keras' home (its datasets' cache)."""
    config = sys.modules.get("keras.src.backend.config")
    if config is not None and request.get("keras_home"):
        config._KERAS_DIR = request["keras_home"]


def main():
    if _grader_gone():
        os._exit(0)
    worker = _load("_bn_autograder_worker", "worker.py")
    worker._load_confine()                      # its own imports (ctypes, platform) too
    worker._KerasWithoutTensorFlow.install()    # before Keras loads: set_random_seed must not import TensorFlow
    started = time.perf_counter()
    for name in os.environ.pop("BN_AUTOGRADER_ZYGOTE_IMPORTS", "").split(","):
        if name:
            __import__(name)
    imported = time.perf_counter() - started
    gc.collect()
    gc.freeze()                                 # fewer pages copied when a child's collector runs
    control = socket.socket(fileno=int(os.environ.pop("BN_AUTOGRADER_ZYGOTE_CONTROL")))
    control.send(json.dumps({"ready": True, "threads": thread_count(), "imports_seconds": imported,
                             "modules": len(sys.modules)}).encode())
    children = {}                               # pid -> its status socket
    while True:
        while children:                         # reap and report
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock = children.pop(pid, None)
            if sock is not None:
                try:
                    sock.send(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                sock.close()
        readable, _, _ = select.select([control], [], [], 0.05)
        if not readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 4)
        if not message:
            os._exit(0)                         # the grader closed its end
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        status = socket.socket(fileno=fds[3])
        threads = thread_count()
        if threads != 1:                        # fork is only safe with no other thread
            status.send(f"refused the zygote has {threads} threads\n".encode())
            status.close()
            for fd in fds[:3]:
                os.close(fd)
            continue
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            control = children = status = message = None
            _child(worker, request, fds)
        for fd in fds[:3]:
            os.close(fd)
        request = message = None
        children[pid] = status
        status.send(f"pid {pid}\n".encode())


if __name__ == "__main__":
    main()
