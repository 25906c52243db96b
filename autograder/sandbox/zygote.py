"""The grader's side of the zygote (zygote_main.py): a process that has imported what the release's
set-up cell imports and never runs student code, from which each submission's worker is forked
instead of started fresh (Limits.zygote, BN_AUTOGRADER_ZYGOTE). A fresh worker spends almost all
of its start importing NumPy, Matplotlib, SciPy, JAX and Keras; a forked one is ready at once.

One zygote per grader process and ``Shape`` (what its children share: plain or inside bubblewrap,
and under bubblewrap the allow-list mounted and the uid range mapped), started when ``start`` or
the first fork asks for it, without waiting for its imports.
process.py builds how it starts (``Launch``) and each child's request; this module speaks the
protocol (zygote_main.py's docstring) and holds what the grader keeps of each child:
``ForkedProcess``, the Popen-like object whose pid comes from the kernel (SCM_CREDENTIALS), with a
pidfd, so that the grader never signals a pid that was reused.

A zygote that cannot start, has died, refuses (a thread exists at fork time) or was set aside (a
child of it could not set itself up) forks nothing: ``zygote_for`` or ``fork`` return None, the log
says why, and the caller starts a fresh worker. A dead zygote is replaced at the next fork.
"""

import atexit
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from . import identity
from .allowlist import AllowList

log = logging.getLogger(__name__)

# What the release's set-up cell imports (with KERAS_BACKEND=numpy, Keras brings SciPy, JAX, jaxlib).
PRELOAD = ("numpy", "matplotlib", "matplotlib.pyplot", "keras")
READY_SECONDS = 180.0        # the zygote's imports, on a loaded machine
ANSWER_SECONDS = 30.0        # from a request to the child's "forked"
MAX_ZYGOTES = 2              # shapes kept at once in one grader process (each holds ~250 MiB)
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Shape:
    """What a zygote's children have in common, so what a request must match to be forked from it.
    Not their threads: the zygote imports with one (BLAS pools start theirs at import), and each child
    raises its pools to its own share once it is confined (worker.py, BN_AUTOGRADER_RAISE_THREADS)."""
    bubblewrap: bool
    allow: "AllowList | None" = None    # bubblewrap: what its sandbox mounts
    uids: tuple = ()             # bubblewrap as root: (first, count) mapped in its user namespace


@dataclass
class Launch:
    """How a zygote starts: its command, its environment (None under bubblewrap, whose command sets
    it), working folder, the descriptors it is passed (closed here once it started), and the folder
    it runs from (removed when it closes)."""
    argv: list
    env: "dict | None"
    cwd: str
    pass_fds: tuple = ()
    folder: "Path | None" = None
    code: "Path | None" = None   # plain: the folder its worker.py is loaded from (Landlock must allow it)


class ForkedProcess:
    """What the grader uses of a subprocess.Popen, for a worker the zygote forked: pid (from the
    kernel), stdin, stdout, poll(), wait(timeout), returncode; and kill() through a pidfd. The exit
    status comes from the zygote (it reaps the child) over this worker's own status socket; EOF
    there without a status means the zygote died, and its children with it."""

    def __init__(self, pid: int, pidfd: int, stdin_fd: int, stdout_fd: int, status: socket.socket, zygote=None):
        self.pid = pid
        self.zygote = zygote         # the zygote it came from
        self._counted = zygote is not None     # in that zygote's worker count, until it is closed
        self._pidfd_lock = threading.Lock()    # the pidfd is closed on one thread, used on another
        self.pidfd = pidfd
        self.stdin = open(stdin_fd, "wb", buffering=0)
        self.stdout = open(stdout_fd, "rb", buffering=0)
        self.returncode = None
        self.zygote_died = False     # the status socket closed without a status: the zygote died
        self._status = status

    def _read_status(self, timeout):
        if self.returncode is not None:
            return self.returncode
        readable, _, _ = select.select([self._status], [], [], timeout)
        if not readable:
            return None
        try:
            message = self._status.recv(256)
        except OSError:
            message = b""
        if message.startswith(b"exit "):
            try:
                self.returncode = int(message[5:])
            except ValueError:
                self.returncode = -signal.SIGKILL
        elif not message:                        # the zygote died, and its children die with it:
            self.kill()                          # this one surely, and said only once it has ended
            with self._pidfd_lock:
                if self.pidfd is not None:
                    select.select([self.pidfd], [], [], 10)
            self.returncode = -signal.SIGKILL
            self.zygote_died = True
        if self.returncode is not None:
            self.close()
        return self.returncode

    def poll(self):
        return self._read_status(0)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("forked worker", timeout)
            self._read_status(left)
        return self.returncode

    def running(self) -> bool:
        """It has not ended (its pid is still its own)."""
        with self._pidfd_lock:
            return self.pidfd is not None and not select.select([self.pidfd], [], [], 0)[0]

    def kill(self):
        """SIGKILL to this process only, through its pidfd (never a pid that was reused)."""
        with self._pidfd_lock:
            if self.pidfd is not None:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except OSError:
                    pass

    def close(self):
        """Let go of the status socket and the pidfd (the pipes are the caller's to close)."""
        try:
            self._status.close()
        except OSError:
            pass
        with self._pidfd_lock:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
        if self._counted:
            self._counted = False
            self.zygote.released()


class Zygote:
    def __init__(self, shape: Shape, make_launch):
        """Starts the zygote with ``make_launch(variables)``, whose environment must hold
        ``variables`` (what it imports, its control socket's descriptor); does not wait for it."""
        self.shape = shape
        self.log = tempfile.TemporaryFile()
        self.lock = threading.Lock()
        self.hello_lock = threading.Lock()
        self.hello = None
        self.usable = True
        self.workers = 0             # forked and not yet ended
        self.process = None
        self.folder = None
        self.pidfd = None            # the zygote's own process (under bubblewrap, not bwrap's)
        self.pid = None              # its pid, as the grader sees it
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.control = ours
        passed = ()
        try:
            launch = make_launch({"BN_AUTOGRADER_ZYGOTE_IMPORTS": ",".join(PRELOAD),
                                  "BN_AUTOGRADER_ZYGOTE_CONTROL": str(theirs.fileno())})
            self.folder, self.code, passed = launch.folder, launch.code, launch.pass_fds
            self.process = subprocess.Popen(
                launch.argv, cwd=launch.cwd, env=launch.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self.log, start_new_session=True, pass_fds=(theirs.fileno(), *passed))
        except BaseException:
            self.close()
            raise
        finally:
            theirs.close()
            for fd in passed:
                os.close(fd)

    def errors(self) -> str:
        try:
            self.log.seek(0)
            return self.log.read(4000).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def alive(self) -> bool:
        """It runs (bwrap and the zygote inside), and its folder (which Landlock allows its children)
        is still there."""
        return self.process is not None and self.process.poll() is None and \
            (self.pidfd is None or not select.select([self.pidfd], [], [], 0)[0]) and \
            (self.folder is None or self.folder.is_dir())

    def ready(self) -> bool:
        """Waits for the zygote's imports (once, whichever thread asks first); it is ready with exactly
        one thread, and not set aside."""
        with self.hello_lock:
            if self.hello is None:
                self.hello = self._read_hello()
        return self.hello.get("ready") is True and self.hello.get("threads") == 1 and self.usable

    def _read_hello(self) -> dict:
        try:
            readable, _, _ = select.select([self.control], [], [], READY_SECONDS)
            message, ancillary, _, _ = (self.control.recvmsg(4096, socket.CMSG_SPACE(UCRED.size)) if readable
                                        else (b"", [], 0, 0))
        except OSError as exc:
            return {"error": str(exc)}
        pid = _sender_pid(ancillary)           # the zygote's own, also under bubblewrap
        if pid is not None:
            try:
                self.pidfd = os.pidfd_open(pid)
                self.pid = pid
            except OSError:
                pass
        try:
            hello = json.loads(message) if message else {}
        except ValueError:
            hello = {}
        return hello if isinstance(hello, dict) else {}

    def set_aside(self, why: str):
        """Fork no more workers from this zygote (a child of it could not set itself up): those
        running go on, and it closes when it is idle and evicted, or when the process ends."""
        if self.usable:
            self.usable = False
            log.warning("a worker forked from the zygote could not set itself up (%s): from now on workers "
                        "start fresh", why[-500:])

    def fork(self, request: dict, stderr_fd: int, join_group) -> "ForkedProcess | None":
        """A worker forked for ``request``, held until ``join_group(pid)`` has put it in its cgroup;
        None when the zygote refused, did not answer or has gone (the reason is logged)."""
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        pidfd, process = None, None
        try:
            try:
                with self.lock:
                    socket.send_fds(self.control, [json.dumps(request).encode()],
                                    [request_read, answer_write, stderr_fd, theirs.fileno()])
            finally:
                for fd in (request_read, answer_write):
                    os.close(fd)
                theirs.close()
            readable, _, _ = select.select([ours], [], [], ANSWER_SECONDS)
            message, ancillary, _, _ = ours.recvmsg(256, socket.CMSG_SPACE(UCRED.size)) if readable else (b"", [], 0, 0)
            pid = _sender_pid(ancillary) if message == b"forked" else None
            if pid is None:
                log.warning("the zygote did not fork a worker (%s): it starts fresh",
                            message.decode("utf-8", "replace") or "no answer")
                return None
            pidfd = os.pidfd_open(pid)           # it waits for "go"; its pid was freed only if the zygote ended:
            child = identity.process(pid)        # then the pidfd may be another's, whose parent is not the zygote
            if child is None or child.parent != self.pid:
                raise OSError(f"the forked worker {pid} is gone")
            join_group(pid)
            ours.send(b"go")
            process = ForkedProcess(pid, pidfd, request_write, answer_read, ours, self)
            with self.lock:
                self.workers += 1
            return process
        except OSError as exc:                   # the zygote went away: a fresh worker instead
            log.warning("the zygote could not fork a worker (%s): it starts fresh", exc)
            return None
        finally:
            if process is None:
                if pidfd is not None:
                    try:
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    except OSError:
                        pass
                    os.close(pidfd)
                for fd in (request_write, answer_read):
                    os.close(fd)
                ours.close()

    def released(self):
        """One of this zygote's workers has ended."""
        with self.lock:
            self.workers -= 1

    def idle(self) -> bool:
        return self.workers == 0

    def close(self):
        try:
            self.control.close()              # the zygote exits on EOF; its children with it
        except OSError:
            pass
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.folder is not None:
            identity.remove_folder(self.folder)
            self.folder = None


def _sender_pid(ancillary) -> "int | None":
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= UCRED.size:
            pid = UCRED.unpack(data[:UCRED.size])[0]
            return pid if pid > 0 else None
    return None


_zygotes: "OrderedDict[Shape, Zygote]" = OrderedDict()
_lock = threading.Lock()
_told = set()


def _tell_once(why: str):
    if why not in _told:
        _told.add(why)
        log.warning("%s: workers start fresh", why)


def start(shape: Shape, make_launch) -> "Zygote | None":
    """This process's zygote of ``shape``, started with ``make_launch`` (see Zygote) when there is
    none or it died, without waiting for its imports; None when it cannot start or was set aside
    (logged). Past MAX_ZYGOTES, the idle ones used least recently close (never one with workers)."""
    closing = []
    with _lock:
        zygote = _zygotes.get(shape)
        if zygote is not None and not zygote.alive():
            log.warning("the zygote died (%s): starting another", zygote.errors()[-500:] or "no message")
            closing.append(_zygotes.pop(shape))
            zygote = None
        if zygote is None:
            try:
                zygote = Zygote(shape, make_launch)
            except OSError as exc:
                _tell_once(f"no zygote could start: {exc}")
                return None
            _zygotes[shape] = zygote
        _zygotes.move_to_end(shape)
        for other in [z for key, z in _zygotes.items() if key != shape and z.idle()]:
            if len(_zygotes) <= MAX_ZYGOTES:
                break
            closing.append(_zygotes.pop(other.shape))
    for old in closing:
        old.close()
    return zygote if zygote.usable else None


def zygote_for(shape: Shape, make_launch) -> "Zygote | None":
    """``start``'s zygote once its imports are done; None when it did not start cleanly (logged)."""
    zygote = start(shape, make_launch)
    if zygote is None or zygote.ready():
        return zygote
    if not zygote.usable:
        return None
    with _lock:
        if _zygotes.get(shape) is zygote:
            del _zygotes[shape]
    _tell_once(f"the zygote did not start cleanly ({zygote.hello!r}; {zygote.errors()[-500:]})")
    zygote.close()
    return None


def close_all():
    """Every zygote of this process closed (their folders removed): at exit, and for tests."""
    with _lock:
        while _zygotes:
            _zygotes.popitem()[1].close()


atexit.register(close_all)
