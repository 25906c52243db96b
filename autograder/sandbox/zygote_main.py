"""The zygote: a process that has imported what the release's set-up cell imports, has never run
student code, and forks one worker per request. zygote.py starts it, one per grader process and
sandbox shape, either as a plain process (the modes ``landlock`` and ``none``) or inside a
bubblewrap sandbox of its own (``bwrap+landlock``, ``bwrap``). Like worker.py it imports nothing
from the package: it is loaded by path from the worker's folder.

The zygote parses nothing of a request but its descriptors; the child parses the request itself.
It runs with one thread (the worker's thread caps are in its environment before it starts, and it
imports but never computes: JAX starts its threads at its first computation), and it counts its
threads before every fork: with more than one, it refuses and the grader starts a fresh worker.

Control socket (SOCK_SEQPACKET, its descriptor named by BN_AUTOGRADER_ZYGOTE_CONTROL):
  zygote -> grader, once: {"ready": true, "threads": N, "imports_seconds": s}
  grader -> zygote, per worker: the request (JSON, below) with four descriptors (SCM_RIGHTS): the
      worker's request pipe (read end), its answer pipe (write end), its stderr file, and the
      worker's own status socket (SOCK_SEQPACKET).
  EOF: the grader process ended, however it died; the zygote exits, and its children die with it.
Status socket, per worker:
  child -> grader: "forked"; the grader reads the child's pid from the credentials the kernel
      attaches (SO_PASSCRED), takes a pidfd of it, puts it in its cgroup, and answers "go". Only
      then does the child go on. It closes the socket before any student code runs.
  zygote -> grader: "refused WHY" instead of forking, or "exit CODE" once it has reaped the child
      (Popen's convention: negative for a signal).
Request: {"env": {...}, "cwd": str, "rlimits": [[name, soft, hard], ...], "keras_home": str,
          "namespaces": null | {"scratch": [[path, bytes], ...], "folders": [[path, mode], ...]}}

The child (C1), in this order, before any student code: dies with the zygote; makes its own
session and process group; the handshake above (its cgroup); its rlimits; its pipes on 0, 1, 2
and every other descriptor closed (the control socket, other workers' status sockets). Under
bubblewrap ("namespaces") it then makes its own mount, PID, network, IPC, UTS and cgroup
namespaces and forks their init (C2, pid 1, which mounts the worker's own tmpfs scratch and /proc
and reaps), which forks the worker (C3, pid 2): as bwrap does for a fresh worker. The worker then
enters its scratch, takes its own environment, reseeds Python's and NumPy's random state (shared
across fork) and runs worker.main(): drop to its leased uid, Landlock + seccomp (which refuse a
second thread), the request loop.
"""

import ctypes
import gc
import importlib.util
import os
import resource
import select
import sys
import time
import traceback
from json import dumps, loads

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_REQUEST = 1 << 20
CHILD_FAILED = 72            # the child could not set itself up (it ran no student code)
HANDSHAKE_SECONDS = 30.0
PR_SET_PDEATHSIG, PR_CAPBSET_DROP = 1, 24
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
CAP_SETPCAP, CAP_NET_ADMIN, CAP_SYS_ADMIN = 8, 12, 21
# What bwrap.ZYGOTE_CAPABILITIES adds to a fresh worker's: out of the worker's bounding set.
ZYGOTE_ONLY_CAPABILITIES = (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SETPCAP)
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
# What bwrap's --proc covers read-only: the machine's settings a namespace's root could otherwise write.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")

_libc = ctypes.CDLL(None, use_errno=True)


def _load(name, filename):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _call(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source, target, fstype, flags, data=None):
    _call(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                      ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _die_with_parent(parent):
    """SIGKILL when the parent ends; ``parent`` (its pid as seen from here, or None in a new PID
    namespace, whose parent shows as 0) guards against a parent that died before the call."""
    _call(_libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl")
    if parent is not None and os.getppid() != parent:
        os._exit(CHILD_FAILED)


def _exit_code(status) -> int:
    """A child's status as an exit code, as bwrap's init passes it on: 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _handshake(status_fd):
    """'forked' to the grader, which sees this process's pid in the kernel's credentials, puts it in
    its cgroup and holds a pidfd of it; go on only on its 'go'."""
    os.write(status_fd, b"forked")
    readable, _, _ = select.select([status_fd], [], [], HANDSHAKE_SECONDS)
    if not readable or os.read(status_fd, 16) != b"go":
        os._exit(CHILD_FAILED)


def _private_namespaces(spec):
    """Under bubblewrap: this process (C1) makes the worker's own namespaces and stays as the relay
    of its exit status; their init (C2) mounts the worker's scratch and /proc and reaps; returns in
    the worker (C3, pid 2 of its PID namespace)."""
    _call(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _libc.unshare(CLONE_NEWCGROUP)          # as bwrap's --unshare-cgroup-try: where the kernel has it
    alive_read, alive_write = os.pipe()
    init = os.fork()
    if init:
        os.close(alive_read)
        _hold_nothing()
        _drop_all_capabilities()            # the relay only waits
        _, status = os.waitpid(init, 0)
        os._exit(_exit_code(status))
    os.close(alive_write)
    _die_with_parent(None)
    if select.select([alive_read], [], [], 0)[0]:
        os._exit(CHILD_FAILED)              # C1 ended before the death signal was asked for
    os.close(alive_read)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)      # nothing mounted here reaches the zygote's tree
    for path, size in spec["scratch"]:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(size)},mode=1777")
    for path, mode in spec["folders"]:
        os.mkdir(path)
        os.chmod(path, mode)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _loopback_up()
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REC)
    worker = os.fork()
    if worker == 0:
        os.setsid()                         # as bwrap's --new-session
        for capability in ZYGOTE_ONLY_CAPABILITIES:   # the worker's bounding set: a fresh worker's
            _call(_libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "prctl")
        return
    _hold_nothing()                         # pid 1 keeps none of the worker's pipes
    _drop_all_capabilities()                # and, as bwrap's init, no capability: it only reaps
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(CHILD_FAILED)
        if pid == worker:                   # the kernel then ends the rest of the namespace
            os._exit(_exit_code(status))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_all_capabilities():
    """Every capability out of the bounding set, then out of the effective, permitted and
    inheritable sets (capset, version 3), as bwrap's init does for itself."""
    for capability in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break                           # EINVAL: past the kernel's last capability
    data = (_CapData * 2)()
    _call(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")


def _loopback_up():
    """The new network namespace's loopback up, as bwrap brings a fresh worker's (SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _hold_nothing():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _child(worker, zygote_pid, message, fds):
    """Runs in the forked child (C1); never returns."""
    try:
        request_fd, answer_fd, stderr_fd, status_fd = fds
        _die_with_parent(zygote_pid)
        os.setsid()
        _handshake(status_fd)
        request = loads(message)
        for name, soft, hard in request["rlimits"]:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        os.dup2(request_fd, 0)
        os.dup2(answer_fd, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, 1 << 30)               # close_range(2): every other descriptor, however high
        if request.get("namespaces"):
            _private_namespaces(request["namespaces"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if "BN_AUTOGRADER_PARENT" in os.environ:     # the worker dies with the zygote (worker.py)
            os.environ["BN_AUTOGRADER_PARENT"] = str(os.getppid())
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


def _close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _report_exit(children, pidfd):
    """Reap the child whose pidfd became readable, and tell the grader how it ended."""
    pid, status_fd = children.pop(pidfd)
    os.close(pidfd)
    try:
        _, status = os.waitpid(pid, 0)
        os.write(status_fd, f"exit {os.waitstatus_to_exitcode(status)}".encode())
    except OSError:
        pass
    os.close(status_fd)


def main():
    import socket
    worker = _load("_bn_autograder_worker", "worker.py")
    confine = worker._load_confine()            # its own imports (ctypes, platform) too
    worker._load_confine = lambda: confine      # a child under bubblewrap no longer sees the file
    worker._KerasWithoutTensorFlow.install()    # before Keras loads: set_random_seed must not import TensorFlow
    started = time.perf_counter()
    for name in os.environ.pop("BN_AUTOGRADER_ZYGOTE_IMPORTS", "").split(","):
        if name:
            __import__(name)
    imported = time.perf_counter() - started
    gc.collect()
    gc.freeze()                                 # fewer pages copied when a child's collector runs
    control = socket.socket(fileno=int(os.environ.pop("BN_AUTOGRADER_ZYGOTE_CONTROL")))
    control.send(dumps({"ready": True, "threads": thread_count(), "imports_seconds": imported}).encode())
    children = {}                               # pidfd -> (pid, the grader's status socket)
    me = os.getpid()
    while True:
        readable, _, _ = select.select([control, *children], [], [])
        for pidfd in [fd for fd in readable if fd in children]:
            _report_exit(children, pidfd)
        if control not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 4)
        if not message:
            os._exit(0)                         # the grader closed its end: its children die with us
        if len(fds) != 4:
            _close_all(fds)
            continue
        threads = thread_count()
        if threads != 1:                        # fork is only safe with no other thread
            try:
                os.write(fds[3], f"refused: the zygote has {threads} threads".encode())
            except OSError:
                pass
            _close_all(fds)
            continue
        try:
            pid = os.fork()
        except OSError:                         # no process to spare: the grader hears nothing, starts fresh
            _close_all(fds)
            continue
        if pid == 0:
            _close_all([control.detach(), *children, *(status for _, status in children.values())])
            _child(worker, me, message, fds)
        _close_all(fds[:3])
        message = None
        try:
            children[os.pidfd_open(pid)] = (pid, fds[3])
        except OSError:                         # it could not be followed: ended before it went on
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            _close_all(fds[3:])


if __name__ == "__main__":
    main()
