"""Start the worker in a sandbox: no network, a read-only file system with the grader's files hidden,
a small writable scratch /tmp, and caps on memory and processes.

On Linux with bubblewrap the worker gets its own user, network, PID and mount namespaces and runs
as ``nobody`` without capabilities; when the worker's process group is killed, every process it
started dies with the PID namespace (and inside it the worker ends the student's processes after
every request). As root, the user namespace maps root and nobody to
themselves, so that bwrap can mount what root may read while the student's code runs as the real
``nobody`` of this machine (not as root seen through a namespace, which would own every root-owned
file) and may not create further user namespaces. Memory and process counts are capped by a
cgroup when this machine lets us make one, otherwise by rlimits. Without bubblewrap the worker is
a plain subprocess with rlimits only, and a warning says so.

Time limits come from ``Limits.from_env()``; the environment can shorten them (tests do):
BN_AUTOGRADER_CELL_SECONDS, BN_AUTOGRADER_CALL_SECONDS, BN_AUTOGRADER_TOTAL_SECONDS,
BN_AUTOGRADER_GRACE_SECONDS and BN_AUTOGRADER_MEMORY_MB.
"""

import os
import resource
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER_SCRIPT = PACKAGE_DIR / "worker.py"
SANDBOX_WORKER = "/tmp/grader/worker.py"     # where the worker script is mounted inside the sandbox
SANDBOX_HOME = "/tmp/work"
SANDBOX_UID = SANDBOX_GID = 65534            # nobody / nogroup
DROP_TO_VARIABLE = "BN_AUTOGRADER_UID"       # tells worker.py which uid to become before student code
HIDING_TMPFS_BYTES = 1 << 20                 # the empty file systems that hide folders stay tiny


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 4 << 30      # TensorFlow alone maps ~1.5 GB
    processes: int = 512             # threads count too; TensorFlow starts dozens
    file_bytes: int = 256 << 20      # the largest file the student's code may write in /tmp
    scratch_bytes: int = 512 << 20   # the whole of the worker's /tmp (a tmpfs, so it is memory)
    cell_seconds: float = 30.0
    call_seconds: float = 20.0
    total_seconds: float = 240.0     # for everything the worker does for one submission
    grace_seconds: float = 5.0       # past a soft limit, how long the grader waits before it kills
    answer_bytes: int = 96 << 20     # the largest answer line the grader reads
    # The grader's own process: the training check trains the student's model there (after
    # modelcheck's caps, which bound it from the config alone), so it runs on a budget of its own.
    training_seconds: float = 60.0   # ~3.5 s for the reference model, ~14 s for one the size of modern_cnn
    training_memory_bytes: int = 2 << 30    # growth of the grader's memory while training

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        """The defaults, with any of ENVIRONMENT_LIMITS set in the environment instead (bad values warn)."""
        environ = os.environ if environ is None else environ
        changes = {}
        for variable, (name, scale) in ENVIRONMENT_LIMITS.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                value = float(text)
                if not 0 < value < float("inf"):
                    raise ValueError
            except ValueError:
                warnings.warn(f"{variable}={text!r} is not a positive number; using the default", SandboxWarning)
                continue
            kind = {f.name: f.type for f in fields(cls)}[name]
            changes[name] = int(value * scale) if kind in (int, "int") else value * scale
        return replace(cls(), **changes)


# environment variable -> (Limits field, factor from the variable's unit to the field's)
ENVIRONMENT_LIMITS = {
    "BN_AUTOGRADER_CELL_SECONDS": ("cell_seconds", 1),
    "BN_AUTOGRADER_CALL_SECONDS": ("call_seconds", 1),
    "BN_AUTOGRADER_TOTAL_SECONDS": ("total_seconds", 1),
    "BN_AUTOGRADER_GRACE_SECONDS": ("grace_seconds", 1),
    "BN_AUTOGRADER_MEMORY_MB": ("memory_bytes", 1 << 20),
    "BN_AUTOGRADER_TRAINING_SECONDS": ("training_seconds", 1),
    "BN_AUTOGRADER_TRAINING_MEMORY_MB": ("training_memory_bytes", 1 << 20),
}


class SandboxWarning(UserWarning):
    pass


class SandboxError(RuntimeError):
    """The sandbox itself could not start (a problem of this machine, not of the submission)."""


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


def interpreter() -> str:
    """The path the worker's Python is started by: sys.executable with the folders on its way
    resolved, but not the file itself. A venv symlinked into the course folder (.venv -> ~/envs/bn)
    is hidden with the course, while its real folder is brought back; and a venv's bin/python must
    stay a path inside the venv (Python finds pyvenv.cfg, so its site-packages, from that path)."""
    executable = Path(sys.executable)
    return str(executable.parent.resolve() / executable.name)


def _symlink_hops(path) -> list:
    """``path`` and every link it goes through to the real file (pyenv, conda and venvs chain
    bin/python -> python3 -> python3.11 -> elsewhere), each with its folders resolved."""
    hops, seen = [], set()
    path = Path(path)
    while len(hops) < 40:
        path = path.parent.resolve() / path.name
        if path in seen:
            break
        seen.add(path)
        hops.append(path)
        if not path.is_symlink():
            break
        path = path.parent / os.readlink(path)
    return hops


def _python_dirs() -> set:
    """What the worker's Python needs to read: its prefixes, every folder on the interpreter's chain
    of links, and the site-packages on its path (a .pth may add another environment's)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            str(Path(sys.executable).resolve().parent.parent), *site.getsitepackages()}
    dirs |= {str(hop.parent) for hop in _symlink_hops(interpreter())}
    dirs |= {entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")}
    return {str(Path(d).resolve()) for d in dirs if d and Path(d).exists()}


def _hidden_dirs(extra) -> set:
    """The grader's package and project, the instructor's home, the course and submission folders."""
    dirs = {PACKAGE_DIR, PACKAGE_DIR.parent, Path.home(), Path.cwd(), *map(Path, extra)}
    return {str(Path(d).resolve()) for d in dirs if Path(d).exists() and str(Path(d).resolve()) != "/"}


def _closed_folders_on_the_way(dirs) -> set:
    """Folders above Python that others may not pass (root's 0700 home, when HOME is elsewhere): they
    are hidden too, so that Python is brought back inside them on an open path."""
    closed = set()
    for folder in dirs:
        for parent in Path(folder).parents:
            try:
                if not parent.stat().st_mode & 0o001:
                    closed.add(str(parent))
            except OSError:
                pass
    return closed


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _folders_to_make(hidden, kept) -> set:
    """The folders between a hiding tmpfs and a path brought back inside it: bwrap would make
    them 0700 root, which nobody cannot pass, so they are made 0755 first."""
    made = set()
    for path in kept:
        for parent in map(str, Path(path).parents):
            covering = max((p for p in hidden | kept if p != path and _inside(parent, p)), key=len, default=None)
            if covering in hidden and parent != covering:
                made.add(parent)
    return made


SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")   # empty and writable in the sandbox


def _mount_arguments(hidden, kept, limits: Limits) -> list:
    """bwrap mounts, shortest path first so that a deeper mount wins: fresh scratch tmpfs and hiding
    tmpfs first, then Python brought back read-only (also when it lives under /tmp, as in a CI
    checkout), then the grader's package hidden again if it lives in site-packages."""
    covering = set(hidden) | set(SCRATCH_DIRS)
    operations = [(p, "--tmpfs") for p in hidden] + [(p, "--ro-bind") for p in kept]
    operations += [(p, "--scratch") for p in SCRATCH_DIRS]
    operations += [(p, "--dir") for p in _folders_to_make(covering, kept)]
    operations.append((str(PACKAGE_DIR), "--tmpfs"))
    order = {"--scratch": 0, "--tmpfs": 0, "--dir": 1, "--ro-bind": 2}
    arguments = []
    for path, how in sorted(set(operations), key=lambda op: (op[0].count("/"), op[0], order[op[1]])):
        if how == "--scratch":
            size = limits.scratch_bytes if path == "/tmp" else min(limits.scratch_bytes, 64 << 20)
            arguments += ["--size", str(size), "--perms", "1777", "--tmpfs", path]
        elif how == "--tmpfs":
            arguments += ["--size", str(HIDING_TMPFS_BYTES), "--perms", "0755", "--tmpfs", path]
        elif how == "--dir":
            arguments += ["--perms", "0755", "--dir", path]
        else:
            arguments += [how, path, path]
    return arguments


def _scratch_arguments() -> list:
    """The worker's script and home inside the scratch /tmp (tmpfs counts as memory; without a
    cgroup only --size caps it)."""
    return ["--perms", "0755", "--dir", str(Path(SANDBOX_WORKER).parent),
            "--ro-bind", str(WORKER_SCRIPT), SANDBOX_WORKER,
            "--perms", "0777", "--dir", SANDBOX_HOME, "--chdir", SANDBOX_HOME]


def _namespace_arguments(userns_fd) -> list:
    """Who the worker is. With our own user namespace (as root) bwrap keeps only the right to change
    uid, which worker.py uses at once to become nobody; otherwise bwrap maps nobody to the caller."""
    if userns_fd is not None:
        return ["--userns", str(userns_fd), "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_GID), "--cap-drop", "ALL"]


def bubblewrap_argv(hide=(), limits=None, userns_fd=None) -> list:
    """The bwrap command that starts the worker (see the module's docstring for what it isolates)."""
    limits = limits or Limits()
    hidden = _hidden_dirs(hide) | _closed_folders_on_the_way(_python_dirs())
    kept = {d for d in _python_dirs() if any(_inside(d, h) for h in hidden | set(SCRATCH_DIRS))}
    # A fresh scratch tmpfs already hides everything under it; mounting a hiding tmpfs there would
    # only re-create the hidden folder's path as an empty mount point.
    hidden = {h for h in hidden if not any(_inside(h, scratch) for scratch in SCRATCH_DIRS)}
    environment = worker_environment(SANDBOX_HOME)
    environment["BN_AUTOGRADER_PRIVATE_PIDS"] = "1"     # the worker may end strays with kill(-1)
    if userns_fd is not None:
        environment[DROP_TO_VARIABLE] = str(SANDBOX_UID)
    return [shutil.which("bwrap"), *_namespace_arguments(userns_fd),
            "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            *_mount_arguments(hidden, kept, limits), *_scratch_arguments(),
            "--clearenv", *sum((["--setenv", k, v] for k, v in environment.items()), []),
            interpreter(), "-B", SANDBOX_WORKER]


def _arguments_through_fd(argv, passed):
    """bwrap reads its options from a descriptor (--args), so that the student's code, which can
    read bwrap's command line in /proc/1/cmdline, does not learn the folders hidden from it."""
    command = len(argv) - 1 - argv[::-1].index(interpreter())    # bwrap takes the command only from argv
    fd = os.memfd_create("bwrap-arguments")
    os.write(fd, b"".join(arg.encode() + b"\0" for arg in argv[1:command]))
    os.lseek(fd, 0, os.SEEK_SET)
    return [argv[0], "--args", str(fd), *argv[command:]], (*passed, fd)


# The worker only builds models and serializes them (to_json); the grader trains them with TensorFlow.
# Keras' NumPy backend builds the same configs (benchmarks/bench_worker_start.py compares them) and
# imports in about half the time of TensorFlow, the largest part of a worker's start.
WORKER_KERAS_BACKEND = "numpy"


THREADS_VARIABLE = "BN_AUTOGRADER_THREADS"     # threads per process; grade-class sets it per grader process


def thread_environment(threads) -> dict:
    """The one set of variables that caps NumPy's, OpenMP's and TensorFlow's threads at ``threads``
    per process (TensorFlow: ``threads`` per op, one op at a time), for the grader processes
    (pool.worker_env) and the sandboxed worker alike."""
    n = str(max(1, int(threads)))
    return {THREADS_VARIABLE: n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}


def _worker_threads() -> int:
    """The worker's threads: BN_AUTOGRADER_THREADS, 1 by default (or when it is not a number)."""
    try:
        return max(1, int(os.environ.get(THREADS_VARIABLE, "1")))
    except ValueError:
        return 1


def worker_environment(home: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp", "KERAS_HOME": f"{home}/.keras",
            "KERAS_BACKEND": WORKER_KERAS_BACKEND,
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib", "PYTHONHASHSEED": "0",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "",
            **thread_environment(_worker_threads()), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


# Runs as a tiny process of root's: enter a new user namespace, wait while the grader writes its
# uid/gid maps, then allow no user namespaces below it (the student's code could otherwise make one
# and hold every capability there).
_USERNS_HELPER = """\
import ctypes, sys
if ctypes.CDLL(None, use_errno=True).unshare(0x10000000):
    sys.exit(1)
print("unshared", flush=True)
sys.stdin.readline()
with open("/proc/sys/user/max_user_namespaces", "w") as f:
    f.write("0")
print("ready", flush=True)
sys.stdin.read()
"""


def user_namespace_fd():
    """As root: a descriptor of a fresh user namespace in which root and nobody keep their ids and
    no further user namespace can be made; None when this is not root or it cannot be made."""
    if os.geteuid() != 0:
        return None
    helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", _USERNS_HELPER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if helper.stdout.readline().strip() != "unshared":
            return None
        mapping = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{helper.pid}/{name}").write_text(mapping)
        helper.stdin.write("go\n")
        helper.stdin.flush()
        if helper.stdout.readline().strip() != "ready":
            return None
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    finally:       # the open descriptor keeps the namespace alive without the helper
        helper.kill()
        helper.wait()


def _everyone_can_read(path) -> bool:
    """Every folder on the way to ``path`` lets others through and others may read it."""
    try:
        path = Path(path).resolve()
        if not all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents):
            return False
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


class ResourceGroup:
    """A cgroup (v1 or v2) that caps memory and processes for one worker and can kill all of it."""

    ROOTS_V1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    ROOT_V2 = "/sys/fs/cgroup"
    PARENT = "bn-autograder"

    def __init__(self, limits: Limits):
        self.dirs = []
        name = uuid.uuid4().hex[:12]
        try:
            if Path(self.ROOT_V2, "cgroup.controllers").exists():
                self._make(Path(self.ROOT_V2), name, {"memory.max": limits.memory_bytes,
                                                      "pids.max": limits.processes, "memory.swap.max": 0},
                           required=("memory.max", "pids.max"))
            else:
                self._make(Path(self.ROOTS_V1["memory"]), name, {"memory.limit_in_bytes": limits.memory_bytes},
                           required=("memory.limit_in_bytes",))
                self._make(Path(self.ROOTS_V1["pids"]), name, {"pids.max": limits.processes},
                           required=("pids.max",))
        except OSError:
            self.remove()
            self.dirs = []

    def _make(self, root: Path, name: str, settings: dict, required):
        """Make root/PARENT/name and write its limits; OSError unless root is a real cgroup
        hierarchy and the limits exist (a plain folder would cap nothing and pass for a cgroup)."""
        if not (root / "cgroup.procs").exists():
            raise OSError(f"{root} is not a cgroup hierarchy")
        (root / self.PARENT).mkdir(exist_ok=True)
        if (root / "cgroup.controllers").exists():     # v2: the parent must hand its controllers down
            try:
                (root / self.PARENT / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError:
                pass            # then the limits are missing below and rlimits take over
        path = root / self.PARENT / name
        path.mkdir()
        self.dirs.append(path)
        if not all((path / key).exists() for key in (*required, "cgroup.procs")):
            raise OSError(f"{path} lacks {required}")
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
        """The kernel's OOM killer ended a process of the group (where the kernel counts kills;
        elsewhere: the group ever hit its memory limit)."""
        for path in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    kills = [int(line.split()[1]) for line in (path / name).read_text().splitlines()
                             if line.startswith("oom_kill ")]
                except (OSError, ValueError, IndexError):
                    continue
                if kills:
                    return kills[0] > 0
            try:
                if int((path / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def pids(self) -> list:
        found = set()
        for path in self.dirs:
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def kill_all(self):
        """SIGKILL everything in the group until it is empty (a fork bomb refills it for a while)."""
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

    def remove(self):
        self.kill_all()
        for path in self.dirs:
            for _ in range(200):     # rmdir fails while killed processes are not yet reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(0.01)


def _child_setup(limits: Limits, group: ResourceGroup, unprivileged_worker: bool, drop_now: bool):
    """Runs in the child between fork and exec."""
    if group.active:
        group.join()
    else:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes * 2, limits.memory_bytes * 2))
        if unprivileged_worker:   # RLIMIT_NPROC binds only a uid without capabilities
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    cpu = int(limits.total_seconds * 2) + 30
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if drop_now:
        os.setgroups([])
        os.setgid(SANDBOX_GID)
        os.setuid(SANDBOX_UID)


def _parent_pid(pid):
    """A live (not zombie) process's parent pid, or None for a zombie; OSError when it is gone."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return None if fields_[0] == "Z" else int(fields_[1])


class SandboxedProcess:
    """The worker process with its pipes; ``kill()`` ends it and everything it started."""

    def __init__(self, limits: Limits, hide=()):
        self.limits = limits
        self.isolated = bubblewrap_available()
        self._scratch = None
        self.stderr = tempfile.TemporaryFile()     # bwrap's own complaints, for a failed start
        if self.isolated:
            argv, cwd, env, passed, unprivileged, drop_now = self._bubblewrap_command(limits, hide)
        else:
            argv, cwd, env, passed, unprivileged, drop_now = self._plain_command()
        self.group = ResourceGroup(limits)
        try:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.stderr, start_new_session=True,
                pass_fds=passed, preexec_fn=lambda: _child_setup(limits, self.group, unprivileged, drop_now))
        except BaseException:
            self.group.remove()
            raise
        finally:
            for fd in passed:
                os.close(fd)

    @staticmethod
    def _bubblewrap_command(limits, hide):
        """(argv, cwd, env, descriptors to pass, whether the worker runs without privileges, drop now)."""
        userns_fd = user_namespace_fd()
        argv, passed = _arguments_through_fd(bubblewrap_argv(hide, limits, userns_fd),
                                             () if userns_fd is None else (userns_fd,))
        unprivileged = userns_fd is not None or os.geteuid() != 0
        if not unprivileged:
            warnings.warn("could not make a user namespace for the sandbox: the student's code runs as "
                          "root seen through bwrap's namespace and may read root-only files", SandboxWarning,
                          stacklevel=3)
        return argv, "/", None, passed, unprivileged, False

    def _plain_command(self):
        """The same without bubblewrap: a plain subprocess in a scratch folder, as nobody when this is
        root and nobody can read Python and the worker (else as root, and the warning says so)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="bn-worker-")
        cwd = self._scratch.name
        drop_now = os.geteuid() == 0 and all(map(_everyone_can_read, [sys.executable, WORKER_SCRIPT,
                                                                        *_python_dirs()]))
        if drop_now:
            os.chown(cwd, SANDBOX_UID, SANDBOX_GID)
        runs_as_root = os.geteuid() == 0 and not drop_now
        warnings.warn("bubblewrap (bwrap) is not available: student code runs in a plain subprocess "
                      f"{'as root ' if runs_as_root else ''}with resource limits only, without network or "
                      "file-system isolation. Install it with: apt-get install bubblewrap", SandboxWarning,
                      stacklevel=3)
        argv = [sys.executable, "-B", str(WORKER_SCRIPT)]
        return argv, cwd, worker_environment(cwd), (), not runs_as_root, drop_now

    def startup_errors(self) -> str:
        """What bwrap or Python printed before the worker took its streams over (for SandboxError)."""
        try:
            self.stderr.seek(0)
            return self.stderr.read(2000).decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def _pid_namespace(self):
        """The PID namespace bwrap made, read through its first child (the namespace's init)."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if _parent_pid(pid) == self.process.pid:
                    return os.readlink(f"/proc/{pid}/ns/pid")
            except (OSError, ValueError, IndexError):
                continue
        return None

    @staticmethod
    def _wait_until_empty(namespace, seconds=5.0):
        """The kernel ends a PID namespace's processes after its init, asynchronously: wait for it,
        so that nothing of the student's is left when kill() returns."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = False
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    alive = os.readlink(f"/proc/{pid}/ns/pid") == namespace and _parent_pid(pid) is not None
                except OSError:
                    continue
                if alive:
                    break
            if not alive:
                return
            time.sleep(0.01)

    def kill(self):
        namespace = self._pid_namespace() if self.isolated else None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)   # reap bwrap first: a zombie keeps the cgroup busy
        except subprocess.TimeoutExpired:
            pass
        if namespace:
            self._wait_until_empty(namespace)
        self.group.remove()
        self.stderr.close()
        if self._scratch is not None:
            self._scratch.cleanup()
