"""Start the worker in a sandbox: no network, a read-only file system with the grader's files hidden,
a writable scratch /tmp, and caps on memory and processes.

On Linux with bubblewrap the worker gets its own user (no capabilities), network, PID and mount
namespaces; when the worker's process group is killed, every process it started dies with the PID
namespace. Memory and process counts are capped by a cgroup when this machine lets us make one,
otherwise by rlimits. Without bubblewrap the worker is a plain subprocess with rlimits only, and
a warning says so.
"""

import os
import resource
import shutil
import signal
import site
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER_SCRIPT = PACKAGE_DIR / "worker.py"
SANDBOX_WORKER = "/tmp/grader/worker.py"     # where the worker script is mounted inside the sandbox
SANDBOX_HOME = "/tmp/work"


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 4 << 30      # TensorFlow alone maps ~1.5 GB
    processes: int = 512             # threads count too; TensorFlow starts dozens
    file_bytes: int = 256 << 20      # the largest file the student's code may write in /tmp
    cell_seconds: float = 60.0
    call_seconds: float = 30.0
    total_seconds: float = 300.0     # for everything the worker does for one submission
    answer_bytes: int = 96 << 20     # the largest answer line the grader reads


class SandboxWarning(UserWarning):
    pass


_bwrap_works = None


def bubblewrap_available() -> bool:
    """bwrap is installed and may make namespaces here (it can be installed but forbidden)."""
    global _bwrap_works
    if _bwrap_works is None:
        bwrap = shutil.which("bwrap")
        _bwrap_works = bool(bwrap) and subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    return _bwrap_works


def _python_dirs() -> set:
    """What the worker's Python needs to read: its prefixes, the interpreter and site-packages."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            str(Path(sys.executable).resolve().parent.parent), *site.getsitepackages()}
    return {str(Path(d).resolve()) for d in dirs if d and Path(d).exists()}


def _hidden_dirs(extra) -> set:
    """The grader's package and project, the instructor's home, the course and submission folders."""
    dirs = {PACKAGE_DIR, PACKAGE_DIR.parent, Path.home(), Path.cwd(), *map(Path, extra)}
    return {str(Path(d).resolve()) for d in dirs if Path(d).exists() and str(Path(d).resolve()) != "/"}


def _mount_arguments(hidden, kept) -> list:
    """bwrap mounts, shortest path first so that a deeper mount wins: hide with an empty tmpfs,
    bring Python back read-only, then hide the grader's package again if it lives in site-packages."""
    operations = [(p, "--tmpfs") for p in hidden] + [(p, "--ro-bind") for p in kept]
    operations.append((str(PACKAGE_DIR), "--tmpfs"))
    arguments = []
    for path, how in sorted(set(operations), key=lambda op: (op[0].count("/"), op[0], op[1] == "--ro-bind")):
        arguments += [how, path] if how == "--tmpfs" else [how, path, path]
    return arguments


def bubblewrap_argv(hide=()) -> list:
    hidden = _hidden_dirs(hide)
    kept = {d for d in _python_dirs() if any(d == h or d.startswith(h + "/") for h in hidden)}
    return [shutil.which("bwrap"),
            "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
            "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            *_mount_arguments(hidden, kept),
            "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/dev/shm",
            "--ro-bind", str(WORKER_SCRIPT), SANDBOX_WORKER,
            "--dir", SANDBOX_HOME, "--chdir", SANDBOX_HOME,
            "--clearenv", *sum((["--setenv", k, v] for k, v in worker_environment(SANDBOX_HOME).items()), []),
            sys.executable, "-B", SANDBOX_WORKER]


def worker_environment(home: str) -> dict:
    threads = os.environ.get("BN_AUTOGRADER_THREADS", "1")
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp", "KERAS_HOME": f"{home}/.keras",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib", "PYTHONHASHSEED": "0",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": threads, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


class ResourceGroup:
    """A cgroup (v1 or v2) that caps memory and processes for one worker and can kill all of it."""

    ROOTS_V1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    ROOT_V2 = "/sys/fs/cgroup"

    def __init__(self, limits: Limits):
        self.dirs = []
        name = f"bn-autograder/{uuid.uuid4().hex[:12]}"
        try:
            if Path(self.ROOT_V2, "cgroup.controllers").exists():
                self._make(Path(self.ROOT_V2, name), {"memory.max": limits.memory_bytes,
                                                      "pids.max": limits.processes, "memory.swap.max": 0})
            else:
                self._make(Path(self.ROOTS_V1["memory"], name), {"memory.limit_in_bytes": limits.memory_bytes})
                self._make(Path(self.ROOTS_V1["pids"], name), {"pids.max": limits.processes})
        except OSError:
            self.remove()
            self.dirs = []

    def _make(self, path: Path, settings: dict):
        path.mkdir(parents=True, exist_ok=True)
        self.dirs.append(path)
        for key, value in settings.items():
            if (path / key).exists():
                (path / key).write_text(str(value))

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def join(self):
        """Called in the child before exec: move this process (and so all it starts) into the group."""
        for path in self.dirs:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def out_of_memory(self) -> bool:
        for path in self.dirs:
            for name, marker in (("memory.events", "oom_kill "), ("memory.oom_control", "oom_kill ")):
                try:
                    for line in (path / name).read_text().splitlines():
                        if line.startswith(marker) and int(line.split()[1]) > 0:
                            return True
                except (OSError, ValueError, IndexError):
                    pass
            try:
                if int((path / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def kill_all(self):
        for path in self.dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def remove(self):
        self.kill_all()
        for path in self.dirs:
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    import time
                    time.sleep(0.02)


def _child_setup(limits: Limits, group: ResourceGroup):
    """Runs in the child between fork and exec."""
    if group.active:
        group.join()
    else:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes * 2, limits.memory_bytes * 2))
        if os.getuid() != 0:   # RLIMIT_NPROC does not bind root
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    cpu = int(limits.total_seconds * 2) + 30
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


class SandboxedProcess:
    """The worker process with its pipes; ``kill()`` ends it and everything it started."""

    def __init__(self, limits: Limits, hide=()):
        self.limits = limits
        self.group = ResourceGroup(limits)
        self.isolated = bubblewrap_available()
        if self.isolated:
            argv, cwd, env = bubblewrap_argv(hide), "/", None
        else:
            warnings.warn("bubblewrap (bwrap) is not available: student code runs in a plain subprocess "
                          "with resource limits only, without network or file-system isolation. "
                          "Install it with: apt-get install bubblewrap", SandboxWarning, stacklevel=2)
            import tempfile
            self._scratch = tempfile.TemporaryDirectory(prefix="bn-worker-")
            cwd = self._scratch.name
            env = worker_environment(cwd)
            argv = [sys.executable, "-B", str(WORKER_SCRIPT)]
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: _child_setup(limits, self.group))

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.group.remove()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()
