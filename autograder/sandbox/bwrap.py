"""The bubblewrap command that starts the worker: is bwrap usable here, its mounts (the allow-list of
allowlist.py: only what the worker needs is mounted, read-only), who the worker is (the
user-namespace helper, as root), and bwrap's options passed through a memfd so that the student's
code cannot read them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .allowlist import PACKAGE_DIR, AllowList, inside  # noqa: F401 - PACKAGE_DIR for callers
from .limits import Limits

WORKER_DIR = Path(__file__).resolve().parent
WORKER_SCRIPT = WORKER_DIR / "worker.py"
CONFINE_SCRIPT = WORKER_DIR / "confine.py"        # loaded by the worker by path, next to itself
SANDBOX_WORKER = "/tmp/grader/worker.py"     # where the worker script is mounted inside the sandbox
SANDBOX_CONFINE = "/tmp/grader/confine.py"
SANDBOX_ZYGOTE = "/tmp/grader/zygote_main.py"
ZYGOTE_SCRIPT = WORKER_DIR / "zygote_main.py"
# The zygote's sandbox keeps, in its own user namespace only, what it needs to make each child's
# namespaces and mounts (CAP_SYS_ADMIN) and bring their loopback up (CAP_NET_ADMIN), what each child
# needs to become its leased uid, and to take the others and itself out of the worker's bounding set
# (CAP_SETPCAP), which is then a fresh worker's.
ZYGOTE_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETPCAP")
SANDBOX_HOME = "/tmp/work"
SANDBOX_UID = SANDBOX_GID = 65534            # nobody / nogroup: who the worker seems to be without root
DROP_TO_VARIABLE = "BN_AUTOGRADER_UID"       # tells worker.py which uid to become before student code
PRIVATE_PIDS_VARIABLE = "BN_AUTOGRADER_PRIVATE_PIDS"    # the worker is alone with its processes: kill(-1)
HIDING_TMPFS_BYTES = 1 << 20                 # the empty file systems that hide folders stay tiny
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")   # empty, private and writable in the sandbox

_bwrap_status = None


def bubblewrap_status() -> tuple:
    """(works, why not): bwrap is installed and may make namespaces here (it can be installed but
    forbidden). Tried once per process."""
    global _bwrap_status
    if _bwrap_status is None:
        bwrap = shutil.which("bwrap")
        if not bwrap:
            _bwrap_status = (False, "bubblewrap (bwrap) is not installed")
        else:
            try:
                done = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
                why = done.stderr.decode(errors="replace").strip()[:300]
                _bwrap_status = (done.returncode == 0, "" if done.returncode == 0 else
                                 f"{bwrap} cannot make its namespaces here (exit {done.returncode}"
                                 + (f": {why}" if why else "") + "): unprivileged user namespaces are "
                                 "refused (a container's seccomp profile, AppArmor, or a sysctl)")
            except (OSError, subprocess.SubprocessError) as error:
                _bwrap_status = (False, f"{bwrap} could not be run: {error}")
    return _bwrap_status


def bubblewrap_available() -> bool:
    """bwrap is installed and may make namespaces here."""
    return bubblewrap_status()[0]


def _needed_binds(bound, covers) -> set:
    """The read-only paths that need a mount of their own: those not already inside another bound
    path, unless something that covers it (a hiding or scratch tmpfs) lies between them."""
    needed = set()
    for path in bound:
        holders = [b for b in bound if b != path and inside(path, b)]
        if not holders or any(inside(path, c) and any(inside(c, b) and c != b for b in holders) for c in covers):
            needed.add(path)
    return needed


def _folders_to_make(paths, bound, covers) -> set:
    """The folders on the way to a mount that nothing bound provides (bwrap's own root tmpfs, or a
    hiding or scratch tmpfs): made 0755, so that the worker's uid may pass them."""
    made = set()
    for path in paths:
        for parent in map(str, Path(path).parents):
            if parent == "/" or parent in covers:
                continue
            holder = max((p for p in bound | covers if inside(parent, p)), key=len, default=None)
            if holder is None or holder in covers:
                made.add(parent)
    return made


def mount_arguments(allow: AllowList, limits: Limits) -> list:
    """bwrap's mounts for the allow-list, shortest path first so that a deeper mount wins: /dev,
    /proc and the private scratch tmpfs, the read-only binds, then empty tmpfs (folders) and
    /dev/null (files) over what is hidden inside them."""
    bound = set(allow.read_only)
    hidden_dirs = {h for h in allow.hidden if os.path.isdir(h) and not os.path.islink(h)}
    hidden_files = set(allow.hidden) - hidden_dirs
    covers = hidden_dirs | set(SCRATCH_DIRS) | {"/dev", "/proc"}
    binds = _needed_binds(bound, covers)
    links = dict(allow.links)
    operations = [("/dev", "--dev"), ("/proc", "--proc")]
    operations += [(p, "--scratch") for p in SCRATCH_DIRS]
    operations += [(p, "--ro-bind") for p in binds]
    operations += [(p, "--hide-dir") for p in hidden_dirs] + [(p, "--hide-file") for p in hidden_files]
    operations += [(p, "--symlink") for p in links]
    operations += [(p, "--dir") for p in _folders_to_make(binds | set(links) | hidden_files, bound, covers)]
    order = {"--dev": 0, "--proc": 0, "--scratch": 0, "--hide-dir": 0, "--symlink": 0, "--dir": 1,
             "--ro-bind": 2, "--hide-file": 3}
    arguments = []
    sizes = dict(scratch_sizes(limits))
    for path, how in sorted(set(operations), key=lambda op: (op[0].count("/"), order[op[1]], op[0])):
        if how == "--scratch":
            arguments += ["--size", str(sizes[path]), "--perms", "1777", "--tmpfs", path]
        elif how == "--hide-dir":
            arguments += ["--size", str(HIDING_TMPFS_BYTES), "--perms", "0755", "--tmpfs", path]
        elif how == "--hide-file":
            arguments += ["--ro-bind", "/dev/null", path]
        elif how == "--dir":
            arguments += ["--perms", "0755", "--dir", path]
        elif how == "--symlink":
            arguments += ["--symlink", links[path], path]
        elif how in ("--dev", "--proc"):
            arguments += [how, path]
        else:
            arguments += [how, path, path]
    return arguments


def scratch_sizes(limits: Limits) -> list:
    """[(path, bytes)]: the worker's private scratch tmpfs, /tmp the whole of Limits.scratch_bytes."""
    return [(path, limits.scratch_bytes if path == "/tmp" else min(limits.scratch_bytes, 64 << 20))
            for path in SCRATCH_DIRS]


# The folders a worker finds in its scratch /tmp: its code's (read-only) and its home.
WORKER_FOLDERS = ((str(Path(SANDBOX_WORKER).parent), 0o755), (SANDBOX_HOME, 0o777))


def _worker_arguments(zygote: bool = False) -> list:
    """The worker's script and confine.py beside it (and the zygote's, for a zygote), and its home,
    inside the scratch /tmp (tmpfs counts as memory; without a cgroup only --size caps it)."""
    scripts = [(WORKER_SCRIPT, SANDBOX_WORKER), (CONFINE_SCRIPT, SANDBOX_CONFINE)]
    if zygote:
        scripts.append((ZYGOTE_SCRIPT, SANDBOX_ZYGOTE))
    (code, code_mode), (home, home_mode) = WORKER_FOLDERS
    return ["--perms", f"{code_mode:04o}", "--dir", code,
            *sum((["--ro-bind", str(source), target] for source, target in scripts), []),
            "--perms", f"{home_mode:04o}", "--dir", home, "--chdir", home]


def _namespace_arguments(userns_fd) -> list:
    """Who the worker is. With our own user namespace (as root) bwrap keeps only the right to change
    uid, which worker.py uses at once to become its leased uid; otherwise bwrap maps nobody to the
    caller."""
    if userns_fd is not None:
        return ["--userns", str(userns_fd), "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_GID), "--cap-drop", "ALL"]


def command(python: str, allow: AllowList, environment: dict, limits=None, userns_fd=None, drop_to=None) -> list:
    """The bwrap command that starts the worker with the interpreter ``python``, seeing only
    ``allow``, in ``environment``; with ``userns_fd`` (as root) the worker becomes uid ``drop_to``."""
    limits = limits or Limits()
    environment = dict(environment)
    environment[PRIVATE_PIDS_VARIABLE] = "1"     # the worker may end strays with kill(-1)
    if userns_fd is not None:
        environment[DROP_TO_VARIABLE] = str(drop_to if drop_to is not None else SANDBOX_UID)
    return [shutil.which("bwrap"), *_namespace_arguments(userns_fd), "--die-with-parent", "--new-session",
            *mount_arguments(allow, limits), *_worker_arguments(),
            "--clearenv", *sum((["--setenv", k, v] for k, v in environment.items()), []),
            python, "-B", SANDBOX_WORKER]


def zygote_command(python: str, allow: AllowList, environment: dict, userns_fd: int) -> list:
    """The bwrap command of a zygote (zygote_main.py) with the interpreter ``python``: a worker's
    sandbox, the same mounts of ``allow``, in a user namespace of our own (``userns_fd``, mapping
    the whole uid range) where it keeps ZYGOTE_CAPABILITIES. It has no --die-with-parent: that
    follows the thread that started bwrap, and the zygote ends when its control socket closes."""
    return [shutil.which("bwrap"), "--userns", str(userns_fd), "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL",
            *sum((["--cap-add", cap] for cap in ZYGOTE_CAPABILITIES), []), "--new-session",
            *mount_arguments(allow, Limits(scratch_bytes=64 << 20)), *_worker_arguments(zygote=True),
            "--clearenv", *sum((["--setenv", k, v] for k, v in environment.items()), []),
            python, "-B", SANDBOX_ZYGOTE]


def arguments_through_fd(argv, passed, python: str):
    """bwrap reads its options from a descriptor (--args), so that the student's code, which can
    read bwrap's command line in /proc/1/cmdline, does not learn the folders hidden from it.
    ``python`` is where the worker's command begins (bwrap takes the command only from argv)."""
    command_at = len(argv) - 1 - argv[::-1].index(python)
    fd = os.memfd_create("bwrap-arguments")
    os.write(fd, b"".join(arg.encode() + b"\0" for arg in argv[1:command_at]))
    os.lseek(fd, 0, os.SEEK_SET)
    return [argv[0], "--args", str(fd), *argv[command_at:]], (*passed, fd)


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


def user_namespace_fd(uid: int = SANDBOX_UID, count: int = 1):
    """As root: a descriptor of a fresh user namespace in which root and the ``count`` uids from
    ``uid`` (the worker's leased uid, or a zygote's whole range; gids the same numbers) keep their
    ids and no further user namespace can be made; None when this is not root or it cannot be made."""
    if os.geteuid() != 0:
        return None
    helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", _USERNS_HELPER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if helper.stdout.readline().strip() != "unshared":
            return None
        mapping = f"0 0 1\n{uid} {uid} {count}\n"
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
