"""SPIKE (issue 26): the grader's side of the zygote (zygote_main.py), Landlock mode only, behind
BN_AUTOGRADER_ZYGOTE=1 (process.py). One zygote per grader process, started on first use from a
private folder (worker.py, confine.py, zygote_main.py; root's, 0755) with the worker's environment;
``fork_worker`` asks it for a child and returns a Popen-like ForkedProcess whose pipes are the
grader's. A zygote that cannot be started, has died, or refuses (a thread exists at fork time)
makes ``fork_worker`` return None: the caller starts a fresh worker and the log says why."""

import atexit
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import identity
from .bwrap import CONFINE_SCRIPT, WORKER_SCRIPT

log = logging.getLogger(__name__)

ENABLE_VARIABLE = "BN_AUTOGRADER_ZYGOTE"
ZYGOTE_SCRIPT = Path(__file__).resolve().parent / "zygote_main.py"
# What the release's set-up cell imports (with KERAS_BACKEND=numpy, Keras brings SciPy, JAX, jaxlib).
PRELOAD = ("numpy", "matplotlib", "matplotlib.pyplot", "keras")
READY_SECONDS = 60.0


def enabled() -> bool:
    return os.environ.get(ENABLE_VARIABLE, "") == "1"


class ForkedProcess:
    """What Submission uses of a subprocess.Popen, for a worker the zygote forked: pid, stdin,
    stdout, poll(), wait(timeout), returncode. The exit status comes from the zygote (it reaps the
    child) over this worker's own status socket; EOF there without a status means the zygote died,
    and its children with it (PR_SET_PDEATHSIG)."""

    def __init__(self, pid, stdin_fd, stdout_fd, status: socket.socket):
        self.pid = pid
        self.stdin = open(stdin_fd, "wb", buffering=0)
        self.stdout = open(stdout_fd, "rb", buffering=0)
        self.returncode = None
        self._status = status
        self._buffer = b""

    def _read_status(self, timeout):
        if self.returncode is not None:
            return self.returncode
        readable, _, _ = select.select([self._status], [], [], timeout)
        if not readable:
            return None
        chunk = self._status.recv(256)
        self._buffer += chunk
        if b"exit " in self._buffer:
            self.returncode = int(self._buffer.split(b"exit ", 1)[1].split(b"\n", 1)[0])
        elif not chunk:
            self.returncode = -9
        if self.returncode is not None:
            self._status.close()
        return self.returncode

    def poll(self):
        return self._read_status(0)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("zygote child", timeout)
            self._read_status(left)
        return self.returncode


class Zygote:
    def __init__(self, environment: dict):
        self.folder = Path(tempfile.mkdtemp(prefix=f"{identity.SCRATCH_PREFIX}{os.getpid()}-zygote-"))
        os.chmod(self.folder, 0o755)
        self.code = self.folder / "bin"
        self.code.mkdir(mode=0o755)
        os.chmod(self.code, 0o755)
        for source in (WORKER_SCRIPT, CONFINE_SCRIPT, ZYGOTE_SCRIPT):
            shutil.copyfile(source, self.code / source.name)
            os.chmod(self.code / source.name, 0o644)
        home = self.folder / "home"            # read-only to the children: caches of the imports
        home.mkdir(mode=0o755)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(environment, HOME=str(home), TMPDIR=str(home), KERAS_HOME=str(home / ".keras"),
                   MPLCONFIGDIR=str(home / ".matplotlib"), BN_AUTOGRADER_ZYGOTE_PARENT=str(os.getpid()),
                   BN_AUTOGRADER_ZYGOTE_IMPORTS=",".join(PRELOAD),
                   BN_AUTOGRADER_ZYGOTE_CONTROL=str(theirs.fileno()))
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-B", "-s", str(self.code / ZYGOTE_SCRIPT.name)], cwd=str(home), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
            pass_fds=(theirs.fileno(),))
        theirs.close()
        self.control = ours
        self.lock = threading.Lock()
        ready, _, _ = select.select([ours], [], [], READY_SECONDS)
        message = ours.recv(4096) if ready else b""
        self.hello = json.loads(message) if message else None
        if not self.hello or self.hello.get("threads") != 1:
            self.close()
            raise OSError(f"the zygote did not start cleanly: {self.hello!r} {self.errors()}")

    def errors(self) -> str:
        try:
            self.log.seek(0)
            return self.log.read(4000).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork_worker(self, request: dict, stderr_fd: int):
        """A ForkedProcess, or None (refused: the reason is logged)."""
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                socket.send_fds(self.control, [json.dumps(request).encode()],
                                [request_read, answer_write, stderr_fd, theirs.fileno()])
        finally:
            for fd in (request_read, answer_write):
                os.close(fd)
            theirs.close()
        ready, _, _ = select.select([ours], [], [], 10)
        line = ours.recv(256).decode() if ready else ""
        if not line.startswith("pid "):
            log.warning("the zygote did not fork a worker (%s): starting a fresh one", line.strip() or "no answer")
            for fd in (request_write, answer_read):
                os.close(fd)
            ours.close()
            return None
        first, _, rest = line.partition("\n")
        process = ForkedProcess(int(first.split()[1]), request_write, answer_read, ours)
        process._buffer = rest.encode()
        return process

    def close(self):
        try:
            self.control.close()
        except (OSError, AttributeError):
            pass
        if getattr(self, "process", None) is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_zygote = None
_zygote_lock = threading.Lock()


def shared(environment: dict):
    """This grader process's zygote, started (again) when there is none or it died; None when it
    cannot start (logged)."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None and not _zygote.alive():
            log.warning("the zygote died (%s): starting another", _zygote.errors()[-500:])
            _zygote.close()
            _zygote = None
        if _zygote is None:
            try:
                _zygote = Zygote(environment)
                atexit.register(_zygote.close)        # its folder too (else sweep_orphans removes it later)
            except OSError as exc:
                log.warning("no zygote: %s; workers start fresh", exc)
                return None
        return _zygote
