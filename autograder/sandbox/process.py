"""The worker's process: forked from this grader process's zygote (zygote.py), or started by its
command (bubblewrap's, or a plain subprocess confined by Landlock and seccomp where bwrap cannot
run); the isolation it runs under (isolation.py chooses it), who it runs
as (a leased uid as root, identity.py), its environment and thread caps, the rlimits and cgroup it
starts under, the total cap on its scratch (``scratch_capped``; ``scratch_overflow()`` where only a
check between requests caps it), and ``kill()``, which ends it and everything it started and leaves
nothing of it on disk. Also where the worker's Python lives (``interpreter()`` and the folders it
needs), from which allowlist.py builds what the worker may see."""

import json
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
import warnings
from pathlib import Path

from autograder.errors import SandboxUnavailable

from . import allowlist, bwrap, identity, zygote
from .bwrap import CONFINE_SCRIPT, SANDBOX_CONFINE, SANDBOX_HOME, WORKER_SCRIPT, user_namespace_fd
from .cgroup import ResourceGroup
from .isolation import Isolation, choose_isolation
from .limits import Limits

CONFINE_VARIABLE = "BN_AUTOGRADER_CONFINE"        # the allow-list, JSON; popped by the worker
KEEP_READ_SEARCH_VARIABLE = "BN_AUTOGRADER_KEEP_READ_SEARCH"
PARENT_VARIABLE = "BN_AUTOGRADER_PARENT"          # without bubblewrap: the grader's pid, whose death ends the worker
CONFINE_FAILED_EXIT = 71      # the worker's exit status when it could not confine itself (worker.py)
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")   # read-write for Landlock (as files)
# Without bubblewrap there is no private /proc: the worker may read its own (/proc/self is resolved
# when the worker applies the rule, so its children's are not included) and the machine's CPU and
# memory figures, which NumPy's and TensorFlow's start-up read (TensorFlow aborts without them).
SYSTEM_FIGURES = ("/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu")

# How the worker's scratch is capped in total (SandboxedProcess.scratch_capped): bubblewrap's private
# /tmp is a tmpfs of Limits.scratch_bytes; without bubblewrap, as root, a tmpfs of that size is
# mounted on the scratch folder; elsewhere the folder stays on the host's disk and the grader
# measures it after each request (scratch_overflow()) and ends the worker when it is too large.
SCRATCH_BWRAP_TMPFS = "bwrap tmpfs"
SCRATCH_TMPFS = "tmpfs"
SCRATCH_CHECKED = "checked between requests"
SCRATCH_MAX_ENTRIES = 100_000     # scratch_overflow() counts no further: more is too much


class SandboxWarning(UserWarning):
    """The worker starts with less isolation than it should have here (bwrap as root without a user
    namespace of our own)."""


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
        try:
            if not path.is_symlink():
                break
            path = path.parent / os.readlink(path)
        except OSError:         # a folder on the way this user may not enter: the chain ends here
            break
    return hops


def _existing(path) -> bool:
    try:
        return Path(path).exists()
    except OSError:
        return False


def _python_dirs() -> set:
    """What the worker's Python needs to read: its prefixes, every folder on the interpreter's chain
    of links, and the site-packages on its path (a .pth may add another environment's)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            str(Path(sys.executable).resolve().parent.parent), *site.getsitepackages()}
    dirs |= {str(hop.parent) for hop in _symlink_hops(interpreter())}
    dirs |= {entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")}
    return {str(Path(d).resolve()) for d in dirs if d and _existing(d)}


# The worker only builds models and serializes them (to_json); the grader trains them with TensorFlow.
# Keras' NumPy backend builds the same configs (benchmarks/bench_worker_start.py compares them) and
# imports in about half the time of TensorFlow, the largest part of a worker's start.
WORKER_KERAS_BACKEND = "numpy"
# What that backend imports besides NumPy and what Keras itself installs (keras/src/backend/numpy/:
# scipy, jax, and jax's jaxlib): none of them comes with TensorFlow or Keras. The grader has them
# (pyproject.toml), and the student kit requires them (student/kit.py REQUIRES).
WORKER_BACKEND_MODULES = ("scipy", "jax", "jaxlib")




def thread_environment(threads) -> dict:
    """The one set of variables that caps NumPy's, OpenMP's and TensorFlow's threads at ``threads``
    per process (TensorFlow: ``threads`` per op, one op at a time), for the grader processes
    (classroom.pool.worker_env) and the sandboxed worker (Limits.threads) alike."""
    n = str(max(1, int(threads)))
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}


def worker_environment(home: str, tmp: str = "/tmp", threads: int = 1) -> dict:
    """The worker's whole environment (nothing of the grader's is passed on), with ``home`` its HOME,
    ``tmp`` its TMPDIR and ``threads`` its NumPy/BLAS threads (Limits.threads)."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": tmp, "KERAS_HOME": f"{home}/.keras",
            "KERAS_BACKEND": WORKER_KERAS_BACKEND,
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib", "PYTHONHASHSEED": "0",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "",
            **thread_environment(threads), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


def allowed(hide=()) -> allowlist.AllowList:
    """The machine's part of what the worker may see (allowlist.py), for this Python."""
    return allowlist.build(_python_dirs(), hide)


def bubblewrap_landlock_rules(allow: allowlist.AllowList) -> dict:
    """Landlock's rules inside bubblewrap: the same allow-list, the worker's folder, the private
    procfs of its PID namespace read-only, and its private scratch tmpfs and devices read-write."""
    read_only, list_only = allow.landlock_rules()
    return {"read_only": [*read_only, str(Path(SANDBOX_CONFINE).parent), "/proc"], "list_only": list(list_only),
            "read_write": [*bwrap.SCRATCH_DIRS, *DEVICES]}


def bubblewrap_argv(hide=(), limits=None, userns_fd=None, drop_to=None, landlock=False) -> list:
    """The bwrap command that starts the worker with this Python (bwrap.command); with ``landlock``
    the worker also confines itself to the same allow-list."""
    allow = allowed(hide)
    environment = _bubblewrap_environment(allow, limits or Limits(), landlock)
    return bwrap.command(interpreter(), allow, environment, limits, userns_fd, drop_to)


def _bubblewrap_environment(allow: allowlist.AllowList, limits: Limits, landlock: bool) -> dict:
    """A worker's environment inside bubblewrap, fresh or forked; with ``landlock`` its allow-list."""
    environment = worker_environment(SANDBOX_HOME, threads=limits.threads)
    if landlock:
        environment[CONFINE_VARIABLE] = json.dumps(bubblewrap_landlock_rules(allow))
    return environment


def forked_bubblewrap_environment(allow: allowlist.AllowList, limits: Limits, uid: int, landlock: bool) -> dict:
    """The environment of a worker the zygote forks under bubblewrap: what bwrap.command gives a fresh
    one (it becomes ``uid``; it may end strays with kill(-1) in its own PID namespace)."""
    environment = _bubblewrap_environment(allow, limits, landlock)
    environment[bwrap.PRIVATE_PIDS_VARIABLE] = "1"
    environment[bwrap.DROP_TO_VARIABLE] = str(uid)
    return environment


def _everyone_can_read(path) -> bool:
    """Every folder on the way to ``path`` lets others through and others may read it."""
    try:
        path = Path(path).resolve()
        if not all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents):
            return False
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _rlimits(limits: Limits, group: ResourceGroup, unprivileged_worker: bool) -> list:
    """[(name, soft, hard)]: the worker's rlimits. Without a cgroup its address space and (for a
    uid without capabilities, which RLIMIT_NPROC binds) its processes are capped here instead."""
    cpu = int(limits.total_seconds * 2) + 30
    found = [("RLIMIT_CORE", 0, 0), ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
             ("RLIMIT_CPU", cpu, cpu + 5)]
    if not group.active:
        found.append(("RLIMIT_AS", limits.memory_bytes * 2, limits.memory_bytes * 2))
        if unprivileged_worker:
            found.append(("RLIMIT_NPROC", limits.processes, limits.processes))
    return found


def _child_setup(limits: Limits, group: ResourceGroup, unprivileged_worker: bool):
    """Runs in the child between fork and exec."""
    if group.active:
        group.join()
    for name, soft, hard in _rlimits(limits, group, unprivileged_worker):
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _folder_usage(folder, max_entries: int):
    """(bytes the files and folders under ``folder`` take on disk, whether all were counted: False
    past ``max_entries`` or where a folder could not be read even after being made readable again).
    Symlinks are not followed; a file with several links counts once."""
    used, entries, seen = 0, 0, set()
    stack = [os.fspath(folder)]
    while stack:
        path = stack.pop()
        try:
            listing = os.scandir(path)
        except FileNotFoundError:
            continue
        except PermissionError:          # the student's chmod 0 (the grader's own uid, not root)
            try:
                os.chmod(path, 0o700)
                listing = os.scandir(path)
            except OSError:
                return used, False
        except OSError:
            return used, False
        with listing:
            for entry in listing:
                entries += 1
                if entries > max_entries:
                    return used, False
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                used += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
    return used, True


def _deleted_open_bytes(pids, folder, max_entries: int) -> int:
    """What files deleted from ``folder`` but still open in one of ``pids`` take on disk (a removed
    file keeps its blocks until its last descriptor closes)."""
    prefix, used, entries, seen = os.fspath(folder).rstrip("/") + "/", 0, 0, set()
    for pid in pids:
        try:
            descriptors = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with descriptors:
            for entry in descriptors:
                entries += 1
                if entries > max_entries:
                    return used
                try:
                    target = os.readlink(entry.path)
                    if not (target.startswith(prefix) and target.endswith(" (deleted)")):
                        continue
                    info = os.stat(entry.path)
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    used += info.st_blocks * 512
    return used


_swept = False


def sweep_orphans() -> None:
    """Once per grader process, before its first worker: end and remove what grader processes that
    died (a time-out's SIGKILL, the OOM killer) left of their workers, their cgroups (with anything
    still running in them) and their folders and scratch mounts. A worker without bubblewrap also
    dies with its grader (PR_SET_PDEATHSIG, worker.py); bubblewrap's dies with it (--die-with-parent)."""
    global _swept
    if _swept:
        return
    _swept = True
    try:
        ResourceGroup.sweep_orphans()
        identity.sweep_orphan_folders()
    except Exception:  # noqa: BLE001 - a sweep that fails leaves what it found; grading goes on
        pass


def _private_folder(tag: str, scripts) -> tuple:
    """(folder, its bin/): a folder of this grader process's (``bn-worker-<pid>-<tag>``, so that
    sweep_orphans removes it if the process dies), root's and 0755, with ``scripts`` copied into bin/
    (0644), from which a worker or a zygote runs."""
    folder = Path(tempfile.mkdtemp(prefix=f"{identity.SCRATCH_PREFIX}{os.getpid()}-{tag}"))
    os.chmod(folder, 0o755)
    code = folder / "bin"
    code.mkdir(mode=0o755)
    os.chmod(code, 0o755)
    for source in scripts:
        shutil.copyfile(source, code / source.name)
        os.chmod(code / source.name, 0o644)
    return folder, code


def zygote_launcher(shape):
    """How the zygote of ``shape`` starts (zygote.Launch), given the variables it must have."""
    def plain(variables):
        """A plain process from a private folder of its own (worker.py, confine.py, zygote_main.py;
        root's, 0755; removed with the zygote or by sweep_orphans), with the worker's environment
        and a home the children may read but not write (the caches its imports made)."""
        folder, code = _private_folder("zygote-", (WORKER_SCRIPT, CONFINE_SCRIPT, bwrap.ZYGOTE_SCRIPT))
        home = folder / "home"
        home.mkdir(mode=0o755)
        os.chmod(home, 0o755)
        env = dict(worker_environment(str(home), str(home), threads=1), **variables)
        return zygote.Launch([sys.executable, "-B", "-s", str(code / bwrap.ZYGOTE_SCRIPT.name)], env, str(home),
                             folder=folder, code=code)

    def bubblewrap(variables):
        userns_fd = user_namespace_fd(*shape.uids)
        if userns_fd is None:
            raise OSError("no user namespace could be made for the zygote's sandbox")
        environment = dict(worker_environment(SANDBOX_HOME, threads=1), **variables)
        argv, passed = bwrap.arguments_through_fd(
            bwrap.zygote_command(interpreter(), shape.allow, environment, userns_fd), (userns_fd,), interpreter())
        return zygote.Launch(argv, None, "/", passed)

    return bubblewrap if shape.bubblewrap else plain


def _zygote_serves(mode: Isolation) -> bool:
    """Under bubblewrap a zygote needs root (a user namespace of ours, mapping the uid range) and
    seccomp: its workers share its user namespace, and with it each uid's keyrings, which only
    seccomp's refusal of the key syscalls keeps one student's from the next (a fresh worker gets a
    namespace of its own). So the mode ``bwrap`` (no Landlock and seccomp here) starts workers fresh."""
    if os.geteuid() != 0:
        zygote._tell_once("bubblewrap without root has no user namespace of ours for a zygote")
        return False
    if not mode.landlock:
        zygote._tell_once("without seccomp, workers forked in one user namespace would share each uid's keyrings")
        return False
    return True


def _zygote_shape(mode: Isolation, limits: Limits, allow: "allowlist.AllowList | None" = None):
    """The zygote.Shape that serves workers of ``limits`` in ``mode`` (``allow``: under bubblewrap, the
    allow-list it mounts; default the machine's, allowed()), or None where workers start fresh."""
    if not mode.bubblewrap:
        return zygote.Shape(False)
    if not _zygote_serves(mode):
        return None
    return zygote.Shape(True, allow or allowed(), (limits.uid_first, limits.uid_count))


def prestart_zygote(limits: Limits, hide=(), isolation=None, *, allow_unsandboxed: bool = True):
    """Start this process's zygote for workers of ``limits`` now, without waiting for its imports:
    a grader process (the pool's, a Dask worker's, the bridge's) or the student's check, before its
    first submission. The zygote, or None where workers start fresh (Limits.zygote off, no
    isolation and ``allow_unsandboxed`` false, bubblewrap without root)."""
    if not limits.zygote:
        return None
    try:
        mode = Isolation(isolation) if isolation is not None else choose_isolation(allow_unsandboxed=allow_unsandboxed)
    except SandboxUnavailable:
        return None
    shape = _zygote_shape(mode, limits, allowed(hide) if mode.bubblewrap else None)
    return None if shape is None else zygote.start(shape, zygote_launcher(shape))


class SandboxedProcess:
    """The worker process with its pipes, started under ``isolation`` (None: choose_isolation(),
    which raises SandboxUnavailable where nothing isolates); ``kill()`` ends it and everything it
    started, and releases its uid."""

    def __init__(self, limits: Limits, hide=(), isolation=None, *, fresh: bool = True):
        """``fresh`` False: only a worker the zygote forks; where it cannot, nothing starts
        (``process`` stays None, nothing is held)."""
        sweep_orphans()
        self.limits = limits
        self.isolation = Isolation(isolation) if isolation is not None else choose_isolation()
        self.isolated = self.isolation.bubblewrap      # bubblewrap's PID namespace holds it
        self._folder = None
        self._scratch = None           # without bubblewrap: the scratch folder on the host
        self._scratch_mounted = False  # a tmpfs of Limits.scratch_bytes is mounted on it
        self.lease = None
        self.group = None
        self.process = None
        self.forked = False            # forked by the zygote (zygote.py), not started fresh
        self.stderr = tempfile.TemporaryFile()     # bwrap's or Python's complaints, for a failed start
        try:
            try:
                self.lease = identity.lease_uid(limits.uid_first, limits.uid_count)
            except (identity.NoFreeUid, OSError) as exc:
                raise SandboxUnavailable(f"no uid for the worker: {exc}") from None
            self.group = ResourceGroup(limits)
            plain = None if self.isolation.bubblewrap else self._plain_command(hide)
            if limits.zygote:
                self.process = self._fork_from_zygote(hide, plain)
                self.forked = self.process is not None
            if not self.forked and not fresh:
                self._release()
                return
            if not self.forked:
                self._start_fresh(hide, plain)
        except BaseException:
            self._release()
            raise

    def _start_fresh(self, hide, plain):
        """The worker started as a new process: bwrap's command, or the plain one."""
        limits = self.limits
        argv, cwd, env, passed, unprivileged = plain or self._bubblewrap_command(limits, hide)
        try:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.stderr, start_new_session=True,
                pass_fds=passed, preexec_fn=lambda: _child_setup(limits, self.group, unprivileged))
        finally:
            for fd in passed:
                os.close(fd)

    def _fork_from_zygote(self, hide, plain):
        """The worker forked by this grader process's zygote of its shape (zygote.py), or None: a
        fresh one then starts (the log says why). Under bubblewrap the child makes its own
        namespaces, scratch and /proc (zygote_main.py), as bwrap does for a fresh worker; without,
        it runs in the scratch folder made here, and Landlock also allows the zygote's code folder
        (the child runs the worker.py the zygote loaded)."""
        limits = self.limits
        allow = allowed(hide) if self.isolation.bubblewrap else None
        shape = _zygote_shape(self.isolation, limits, allow)
        if shape is None:
            return None
        if self.isolation.bubblewrap:
            env = forked_bubblewrap_environment(allow, limits, self.lease.uid, self.isolation.landlock)
            cwd, unprivileged = SANDBOX_HOME, True
            namespaces = {"scratch": bwrap.scratch_sizes(limits), "folders": bwrap.WORKER_FOLDERS}
        else:
            _, cwd, env, _, unprivileged = plain
            namespaces = None
        parent = zygote.zygote_for(shape, zygote_launcher(shape))
        if parent is None:
            return None
        if CONFINE_VARIABLE in env and parent.code is not None:
            rules = json.loads(env[CONFINE_VARIABLE])
            rules["read_only"].append(str(parent.code))
            env = dict(env, **{CONFINE_VARIABLE: json.dumps(rules)})
        if limits.threads > 1:
            env = dict(env, BN_AUTOGRADER_RAISE_THREADS=str(limits.threads))
        request = {"env": env, "cwd": cwd, "rlimits": _rlimits(limits, self.group, unprivileged),
                   "keras_home": env.get("KERAS_HOME"), "namespaces": namespaces}
        return parent.fork(request, self.stderr.fileno(), self.group.add)

    @property
    def uid(self) -> int:
        return self.lease.uid

    def _bubblewrap_command(self, limits, hide):
        """(argv, cwd, env, descriptors to pass, whether the worker runs without privileges)."""
        userns_fd = user_namespace_fd(self.lease.uid)
        argv, passed = bwrap.arguments_through_fd(
            bubblewrap_argv(hide, limits, userns_fd, self.lease.uid, landlock=self.isolation.landlock),
            () if userns_fd is None else (userns_fd,), interpreter())
        unprivileged = userns_fd is not None or os.geteuid() != 0
        if not unprivileged:
            warnings.warn("could not make a user namespace for the sandbox: the student's code runs as "
                          "root seen through bwrap's namespace and may read root-only files", SandboxWarning,
                          stacklevel=3)
        return argv, "/", None, passed, unprivileged

    def _plain_command(self, hide=()):
        """Without bubblewrap: a plain subprocess started from a private folder of its own (the worker
        and confine.py copied there, root's, 0755, files 0644), in a 0700 scratch folder owned by its
        uid; as root it becomes its leased uid. With Landlock it confines itself to the allow-list
        and its scratch (the mode LANDLOCK); in the mode NONE it does not."""
        self._folder, code = _private_folder("", (WORKER_SCRIPT, CONFINE_SCRIPT))
        scratch = identity.make_scratch(self._folder, self.lease.uid, self.lease.gid)
        self._scratch = scratch
        self._scratch_mounted = identity.mount_scratch_tmpfs(scratch, self.limits.scratch_bytes, self.lease.uid,
                                                     self.lease.gid)
        env = worker_environment(str(scratch), str(scratch), self.limits.threads)
        allow = allowed(hide)
        if self.isolation.landlock:
            read_only, list_only = allow.landlock_rules()
            env[CONFINE_VARIABLE] = json.dumps({"read_only": [*read_only, str(code), *SYSTEM_FIGURES],
                                                "list_only": list(list_only), "read_write": [str(scratch), *DEVICES]})
        if not self.lease.shared:               # root: become the leased uid, alone with its processes
            env[bwrap.DROP_TO_VARIABLE] = str(self.lease.uid)
            env[bwrap.PRIVATE_PIDS_VARIABLE] = "1"     # kill(-1) as that uid reaches only its own
            if not all(map(_everyone_can_read, [sys.executable, *allow.read_only, code])):
                # Python lives where the uid may not go (root's 0700 home): it keeps the right to
                # read past permissions alone, and Landlock decides what it reads.
                env[KEEP_READ_SEARCH_VARIABLE] = "1"
        env[PARENT_VARIABLE] = str(os.getpid())      # the worker dies with this process (worker.py)
        argv = [sys.executable, "-B", "-s", str(code / WORKER_SCRIPT.name)]
        return argv, str(scratch), env, (), True

    @property
    def scratch_capped(self) -> str:
        """How the worker's scratch is capped in total: "bwrap tmpfs" (bubblewrap's private /tmp),
        "tmpfs" (mounted on the scratch folder: writes past the cap fail with ENOSPC) or "checked
        between requests" (a folder on the host's disk that scratch_overflow() measures)."""
        if self.isolation.bubblewrap:
            return SCRATCH_BWRAP_TMPFS
        return SCRATCH_TMPFS if self._scratch_mounted else SCRATCH_CHECKED

    def scratch_overflow(self) -> str | None:
        """Why the worker must end because its scratch grew past Limits.scratch_bytes (a short
        reason for the student), or None. Free (None) where a tmpfs caps the scratch; otherwise it
        walks the folder (at most SCRATCH_MAX_ENTRIES entries, more is too many; symlinks not
        followed) and adds the files deleted from it that the worker's processes still hold open.
        The grader calls it after each request, between the student's cells."""
        if self.scratch_capped != SCRATCH_CHECKED or self._scratch is None or self._folder is None:
            return None                       # capped by a tmpfs, or released already
        limit = self.limits.scratch_bytes
        used, counted = _folder_usage(self._scratch, SCRATCH_MAX_ENTRIES)
        if not counted:
            return (f"the notebook made more than {SCRATCH_MAX_ENTRIES:,} files and folders in its scratch "
                    "folder, or one that cannot be read")
        if used <= limit:
            pids = self.group.pids() if self.group is not None and self.group.active else [self.process.pid]
            used += _deleted_open_bytes(pids, self._scratch, SCRATCH_MAX_ENTRIES)
        if used > limit:
            return f"the notebook's files in its scratch folder passed {limit / (1 << 20):g} MiB"
        return None

    def startup_errors(self) -> str:
        """What bwrap or Python printed before the worker took its streams over (for SandboxUnavailable)."""
        try:
            self.stderr.seek(0)
            return self.stderr.read(2000).decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def _pid_namespace(self):
        """The PID namespace bwrap made, read through its first child (the namespace's init); a forked
        worker's only while it runs (the zygote reaps it: then its pid may be another's)."""
        if self.forked and not self.process.running():
            return None
        for entry in identity.processes():
            if entry.state != "Z" and entry.parent == self.process.pid:
                try:
                    return os.readlink(f"/proc/{entry.pid}/ns/pid")
                except OSError:
                    continue
        return None

    @staticmethod
    def _wait_until_empty(namespace, seconds=5.0):
        """The kernel ends a PID namespace's processes after its init, asynchronously: wait for it,
        so that nothing of the student's is left when kill() returns."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = False
            for entry in identity.processes():
                try:
                    alive = entry.state != "Z" and os.readlink(f"/proc/{entry.pid}/ns/pid") == namespace
                except OSError:
                    continue
                if alive:
                    break
            if not alive:
                return
            time.sleep(0.01)

    def stop(self):
        """SIGKILL to the worker's process group and its cgroup, releasing nothing: the thread that
        waits on the worker then sees it end, and reaps and releases it with kill()."""
        if self.process.returncode is not None:      # reaped already: its pid may be another's now
            return
        self._kill_process_group()
        if self.group is not None:                    # a child that left the group (setsid) too
            self.group.kill_all()

    def _kill_process_group(self):
        """SIGKILL to the worker's process group. A forked worker is killed through its pidfd, and
        its group only while it runs and no cgroup holds its processes (the zygote reaps it: its
        pid may be another's the moment it has ended)."""
        if self.forked:
            self.process.kill()
            if self.group is not None and self.group.active or not self.process.running():
                return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self):
        namespace = self._pid_namespace() if self.isolated else None
        self._kill_process_group()
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
        self._release()

    def _release(self):
        """Everything of the worker's uid ended, its cgroup, folder and uid released."""
        try:
            if self.lease is not None and not self.lease.shared:
                identity.end_processes(self.lease.uid)
            if self.group is not None:
                self.group.remove()
            if self.forked:
                self.process.close()
            self.stderr.close()
        finally:                              # whatever failed above, nothing is left on disk
            try:
                if self._folder is not None:
                    if self._scratch_mounted:     # its processes are gone: nothing keeps it busy
                        identity.unmount(self._scratch)
                        self._scratch_mounted = False
                    identity.remove_folder(self._folder)
                    self._folder = None
            finally:                          # and the uid is free again
                if self.lease is not None:
                    self.lease.close()
