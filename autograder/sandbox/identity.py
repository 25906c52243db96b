"""A uid of its own for every worker, and a scratch folder only that uid may enter.

When the grader runs as root, each worker becomes a uid leased from a range nobody else uses, so
that two workers (of one grader process or of several on the machine) can neither signal nor
read each other through ordinary permissions, whatever Landlock does or does not offer. A lease is
an exclusive flock on ``<lock_dir>/uid-<n>.lock``: the kernel drops it when the holder closes it
or dies, so a crashed grader leaves no uid taken. A uid that still owns a live process (a worker
that outlived its grader) is passed over.

Without root the caller cannot become another uid: the lease is the caller's own uid, shared by
every worker, and then Landlock (confine.py: file system allow-list, signal scope) is
what separates the workers from each other and from the grader.

Inside bwrap's user namespace the leased uid (and the gid, the same number) is mapped with root:
"0 0 1\\n{uid} {uid} 1\\n" (bwrap.user_namespace_fd). When the worker is killed, ``end_processes``
ends every process of its uid, then the lease is released.

``process`` and ``processes`` are the package's one reader of /proc's processes (pid, state, parent,
uids): the uids here, process.py's PID-namespace lookups, and the zygote's check of its child.
"""

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

# The range comes from the caller (Limits.uid_first, Limits.uid_count: limits.py says why those
# numbers); this module stands alone, loadable by path, so it states no range of its own.
DEFAULT_LOCK_DIR = "/run/bn-autograder/uids"      # /run: on tmpfs, emptied at boot
LOCK_DIR_MODE = 0o700
SCRATCH_PREFIX = "bn-worker-"
MS_NOSUID, MS_NODEV, MNT_DETACH = 0x2, 0x4, 0x2


class NoFreeUid(RuntimeError):
    """Every uid of the range is leased (or still runs a process)."""


class Lease:
    """A uid (and gid, the same number) held until close(); ``shared`` when it is the caller's own."""

    def __init__(self, uid: int, gid: int, lock_fd=None, lock_path=None):
        self.uid, self.gid = uid, gid
        self.lock_path = lock_path
        self._lock_fd = lock_fd

    @property
    def shared(self) -> bool:
        return self._lock_fd is None and self.lock_path is None

    def close(self):
        """Release the uid (closing the descriptor drops the flock)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return f"Lease(uid={self.uid}, shared={self.shared})"


class ProcessEntry(NamedTuple):
    pid: int
    state: str           # "R", "S", "Z" (a zombie)...
    parent: int          # its parent's pid
    uids: tuple          # its real, effective, saved and file-system uids (as text); () unless asked for


def process(pid, *, uids: bool = False) -> "ProcessEntry | None":
    """The process ``pid`` as a ProcessEntry read from its stat file (and its status file, for
    ``uids``); None when there is none (or it ended while it was read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found = ()
        if uids:
            with open(f"/proc/{pid}/status") as status:
                found = tuple(next((line.split()[1:] for line in status if line.startswith("Uid:")), ()))
        return ProcessEntry(int(pid), fields[0], int(fields[1]), found)
    except (OSError, IndexError, ValueError):
        return None


def processes(*, uids: bool = False):
    """Each process in /proc, as a ProcessEntry (``process``); a process that ends while it is read
    is left out."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            entry = process(name, uids=uids)
            if entry is not None:
                yield entry


def _uid_runs_a_process(uid: int) -> bool:
    """Some process has ``uid`` as its real, effective, saved or file-system uid."""
    return any(str(uid) in entry.uids for entry in processes(uids=True))


def end_processes(uid: int, rounds: int = 200) -> None:
    """SIGKILL every process running as ``uid`` until none is left (a leased uid is one worker's
    alone, so this ends whatever it started, in whatever session or process group). As root only."""
    for _ in range(rounds):
        found = False
        for entry in processes(uids=True):
            if str(uid) in entry.uids and entry.state != "Z":
                found = True
                try:
                    os.kill(entry.pid, signal.SIGKILL)
                except OSError:
                    continue
        if not found:
            return
        time.sleep(0.005)


def _try_lock(path: Path):
    """An open descriptor holding the exclusive flock on ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lease_uid(first: int, count: int, lock_dir=DEFAULT_LOCK_DIR) -> Lease:
    """The first free uid of [first, first + count), held until the lease is closed or this process
    ends. Not root: the caller's own uid, shared (see the module's docstring)."""
    if os.geteuid() != 0:
        return Lease(os.getuid(), os.getgid())
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(mode=LOCK_DIR_MODE, parents=True, exist_ok=True)
    for uid in range(first, first + count):
        path = lock_dir / f"uid-{uid}.lock"
        fd = _try_lock(path)
        if fd is None:
            continue
        if _uid_runs_a_process(uid):
            os.close(fd)
            continue
        return Lease(uid, uid, fd, path)
    raise NoFreeUid(f"all {count} uids from {first} are leased; raise the count or wait")


def make_scratch(parent, uid: int, gid: int = -1) -> Path:
    """A fresh folder under ``parent``, mode 0700 (mkdtemp), owned by ``uid``: only that uid (and
    root) may enter it. Its group stays the caller's unless ``gid`` is given (0700 makes the group
    moot). The caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
    try:
        os.chown(path, uid, gid)
    except BaseException:
        path.rmdir()
        raise
    return path


def sweep_orphan_folders(parent=None) -> int:
    """Remove the worker folders (``bn-worker-<pid>-*``, process.py) of grader processes that died
    without removing them, unmounting any scratch tmpfs mounted in them first; a pid still alive is
    left alone. How many were removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = 0
    try:
        entries = [entry for entry in os.scandir(parent) if entry.name.startswith(SCRATCH_PREFIX) and entry.is_dir()]
    except OSError:
        return 0
    for entry in entries:
        owner = entry.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        folder = Path(entry.path)
        for mount in _mounts_under(folder):
            unmount(mount)
        remove_folder(folder)
        removed += not folder.exists()
    return removed


def _mounts_under(folder: Path) -> list:
    """Mount points at or below ``folder``, deepest first."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p == str(folder) or p.startswith(f"{folder}/")), key=len, reverse=True)


def remove_folder(path) -> None:
    """Remove a worker's folder, also what its code made unwritable (chmod 0) and trees nested
    deeper than Python's recursion allows (shutil.rmtree recurses: then ``rm -rf``, which does not).
    Never raises."""
    def writable_again(function, failed, _info):
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            function(failed)
        except OSError:
            pass
    try:
        shutil.rmtree(path, onerror=writable_again)
        return
    except (RecursionError, OSError):
        pass
    try:     # a folder a student nested thousands deep; root removes whatever its modes say
        subprocess.run(["chmod", "-R", "u+rwx", str(path)], capture_output=True, timeout=120, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    return libc


def mount_scratch_tmpfs(path, size: int, uid: int, gid: int) -> bool:
    """A tmpfs of ``size`` bytes (nosuid, nodev, 0700, owned by uid:gid) mounted on the folder
    ``path``: the scratch's total cap where the grader may mount (root in the machine's mount
    namespace). False, and nothing mounted, where the kernel refuses it or it did not take."""
    if os.geteuid() != 0:
        return False
    try:
        options = f"size={int(size)},mode=0700,uid={uid},gid={gid}".encode()
        if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
            return False
    except (OSError, AttributeError, ValueError):
        return False
    try:
        if os.stat(path).st_dev != os.stat(os.path.dirname(os.path.abspath(path))).st_dev:
            return True
    except OSError:
        pass
    unmount(path)
    return False


def unmount(path) -> None:
    """Detach the mount on ``path`` (lazily: it goes when the last user does). Never raises."""
    try:
        _libc().umount2(os.fsencode(path), MNT_DETACH)
    except (OSError, AttributeError, ValueError):
        pass
