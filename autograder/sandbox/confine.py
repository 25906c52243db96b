"""A second isolation layer the worker applies to itself before any student code runs: no privileges,
no namespaces, so it works alone (plain subprocess) and inside bubblewrap alike. Landlock forbids
mount changes once applied, which is why the worker calls it after bwrap has made its mounts.

``confine(read_only, read_write)`` applies, in this order:

1. ``prctl(PR_SET_NO_NEW_PRIVS)``: no set-uid gain through execve (also what Landlock and seccomp
   require of an unprivileged caller).
2. Landlock (ABI >= 1): every file-system right of the kernel's ABI is handled, and only these are
   granted: read (+ execute) beneath ``read_only``, everything but execute beneath ``read_write``.
   Elsewhere open(), listing a folder, creating, removing or renaming fail with EACCES, also for
   root. Landlock does not check stat(), access(), readlink() or chdir(): a denied name can be seen
   to exist, not read or listed.
   ABI >= 4: TCP bind and connect are handled with no port allowed. ABI >= 6: the domain is scoped,
   so abstract Unix sockets and signals (kill, pidfd_send_signal...) cannot reach any process outside
   it (the grader, another worker). Ptrace out of the domain is refused by Landlock at every ABI.
3. seccomp (x86_64 and aarch64): a deny-list, all other calls allowed (an allow-list would break
   NumPy/SciPy/JAX in ways that no test here would show). Denied calls fail with EPERM (never kill,
   so that Python raises a clean OSError): socket() and socketpair() of any family but AF_UNIX,
   and of AF_UNIX with the type SOCK_DGRAM or SOCK_RAW (which AF_UNIX makes a datagram socket; the
   type is masked with 0xf, as the kernel does, so SOCK_NONBLOCK and SOCK_CLOEXEC do not matter),
   connect() (only AF_UNIX sockets exist, and Landlock up to ABI 7 does not check connect() to a
   path-name socket such as /run/dbus/system_bus_socket), sendto() with an address (the same, for
   datagrams: /dev/log, the journal), ptrace and process_vm_*, unshare, setns, clone with any
   CLONE_NEW* flag, clone3 (ENOSYS, so that libc falls back to clone, whose flags a filter can
   read), the mount API, bpf, perf_event_open, keys, userfaultfd, io_uring (its socket operations
   bypass seccomp), inotify and fanotify (Landlock does not check a watch, only the file's
   permissions do, so a watch would report the names of files created in folders Landlock does
   not let it list; fanotify can also open what it reports), name_to_handle_at and open_by_handle_at,
   kexec, kernel modules, chroot and a few root-only calls. Calls from a foreign ABI (i386 via
   int 0x80, x32, arm32) are all denied.
   sendmsg() and sendmmsg() with an address: seccomp cannot read the message header (msg_name is
   behind a pointer), so what they could reach is closed by the sockets that may exist: no
   datagram socket of any family can be made, and an AF_UNIX stream socket refuses a destination
   (unix_stream_sendmsg: EISCONN or EOPNOTSUPP when msg_namelen is set) while a seqpacket socket
   ignores it and sends only to its connected peer (which, without connect(), only socketpair()
   or accept() gives). So nothing reaches a path-name datagram socket such as /dev/log.

Landlock and seccomp bind the calling thread and the children it starts afterwards: call
``confine()`` while the process has one thread (before NumPy's BLAS starts its pool); it checks.
Without Landlock (or seccomp) ``confine()`` raises ConfinementError, unless ``allow_partial=True``,
in which case it applies what it can and the report says what is missing: the caller decides
whether to fail closed. ``probe()`` tells beforehand, without restricting the caller.

Binding, decided on evidence (gathered on Debian 12, kernel 6.18, Landlock ABI 7): a ctypes layer of
our own, no dependency.
- PyPI ``landlock`` 1.0.0.dev5 (alpha): its ruleset struct has handled_access_fs only, so no ABI 4
  network rules and no ABI 6 scopes; ``allow()`` gives files the dir-only rights (kernel: EINVAL);
  errors are detected from a possibly stale errno, not from the -1 result.
- PyPI ``pyseccomp`` 0.1.2 (January 2021, no release since): ctypes over libseccomp.so.2, found by
  ctypes.util.find_library, which runs ``ldconfig -p`` in a subprocess. libseccomp2 is on every
  Debian (12: 2.5.4, 13: 2.6.0; apt, which is Priority required, depends on it) but not on minimal
  non-Debian images. Debian's python3-seccomp serves the system Python only, not a venv.
- PyPI ``landlockpy``/``seccompy`` 0.2.0 (first released 2026, one vendor, little use) cover
  ABI 4-7, but seccompy's deny-list filter does not reject x32 syscall numbers (nr | 1 << 30 on
  x86_64), which bypasses a deny-list.
Landlock is three syscalls (444-446 on every architecture) and one packed struct; seccomp is a
classic BPF program with two syscall tables checked against libseccomp's in tests/test_confine.py.

This file imports nothing from the autograder package: the worker loads it by path (importlib)
from a private folder.
"""

import ctypes
import errno
import json
import os
import platform
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass

# --- Landlock's user API (include/uapi/linux/landlock.h) --------------------------------------------

SYS_LANDLOCK_CREATE_RULESET = 444      # the same numbers on x86_64 and aarch64 (and every arch)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1

ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_ABI_1 = (1 << 13) - 1        # execute ... make_sym: bits 0-12
ACCESS_FS_REFER = 1 << 13              # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14           # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15          # ABI 5
# The only rights a rule on a file (anything but a folder) may carry; the others are about a
# folder's entries and the kernel rejects them on a file with EINVAL.
ACCESS_FILE = (ACCESS_FS_EXECUTE | ACCESS_FS_WRITE_FILE | ACCESS_FS_READ_FILE | ACCESS_FS_TRUNCATE
               | ACCESS_FS_IOCTL_DEV)

ACCESS_NET_BIND_TCP = 1 << 0           # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1
NET_ABI = 4

SCOPES = {"abstract_unix_socket": 1 << 0, "signal": 1 << 1}     # ABI 6
SCOPE_ABI = 6


def filesystem_rights(abi: int) -> int:
    """Every file-system right the kernel's Landlock ABI knows (all of them get handled)."""
    rights = ACCESS_FS_ABI_1
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= ACCESS_FS_IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _ruleset_attr_size(abi: int) -> int:
    """The size of the fields this ABI knows (a kernel takes a longer struct only when the fields it
    does not know are zero: passing no more keeps that question away)."""
    return 24 if abi >= SCOPE_ABI else 16 if abi >= NET_ABI else 8


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1                                   # packed in the kernel's header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# --- seccomp ------------------------------------------------------------------------------------

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
DENY = SECCOMP_RET_ERRNO | errno.EPERM
NO_SUCH_CALL = SECCOMP_RET_ERRNO | errno.ENOSYS      # clone3: libc then falls back to clone

AF_UNIX = 1
SOCK_DGRAM, SOCK_RAW = 2, 3    # AF_UNIX turns SOCK_RAW into SOCK_DGRAM (unix_create)
SOCK_TYPE_MASK = 0xF           # the kernel's: the flags SOCK_NONBLOCK, SOCK_CLOEXEC lie above it
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET. CLONE_NEWTIME (0x80) is
# left out: in clone()'s flags that bit belongs to the exit signal (clone() cannot make a time ns).
CLONE_NEW_NAMESPACE = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# Classic BPF (linux/filter.h) and struct seccomp_data's offsets (little-endian: an argument's low
# half comes first).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
DATA_NR, DATA_ARCH = 0, 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


def _arg_high(index: int) -> int:
    return 16 + 8 * index + 4


@dataclass(frozen=True)
class _Arch:
    audit: int                 # AUDIT_ARCH_*: what seccomp_data.arch says for this ABI
    numbers: dict              # syscall name -> number
    x32_bit: int = 0           # x86_64 only: the x32 ABI's numbers carry this bit; all are denied


# Denied outright (EPERM). A name missing from an architecture's table does not exist there.
DENIED_SYSCALLS = (
    "connect", "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "kcmp", "unshare", "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree",
    "open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "chroot", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "name_to_handle_at", "open_by_handle_at", "fanotify_init",
    "fanotify_mark", "inotify_init", "inotify_init1", "inotify_add_watch", "acct", "swapon",
    "swapoff", "reboot", "sethostname", "setdomainname", "settimeofday",
    "clock_settime", "syslog", "quotactl", "quotactl_fd", "migrate_pages", "move_pages", "vhangup",
    "uselib", "iopl", "ioperm",
)

# From asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
_COMMON_NEW = {"clone3": 435, "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431,
               "fsmount": 432, "fspick": 433, "mount_setattr": 442, "open_tree_attr": 467,
               "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
               "pidfd_getfd": 438, "process_madvise": 440, "quotactl_fd": 443}
X86_64_SYSCALLS = {
    **_COMMON_NEW, "socket": 41, "connect": 42, "sendto": 44, "socketpair": 53, "clone": 56,
    "ptrace": 101, "syslog": 103, "uselib": 134, "pivot_root": 155, "chroot": 161, "acct": 163,
    "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "migrate_pages": 256, "unshare": 272, "move_pages": 279,
    "perf_event_open": 298, "fanotify_init": 300, "fanotify_mark": 301, "inotify_init": 253,
    "inotify_add_watch": 254, "inotify_init1": 294, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "vhangup": 153,
}
AARCH64_SYSCALLS = {
    **_COMMON_NEW, "socket": 198, "socketpair": 199, "connect": 203, "sendto": 206, "clone": 220,
    "ptrace": 117, "syslog": 116, "pivot_root": 41, "chroot": 51, "acct": 89, "settimeofday": 170,
    "mount": 40, "umount2": 39, "swapon": 224, "swapoff": 225, "reboot": 142, "sethostname": 161,
    "setdomainname": 162, "init_module": 105, "delete_module": 106, "quotactl": 60,
    "clock_settime": 112, "kexec_load": 104, "add_key": 217, "request_key": 218, "keyctl": 219,
    "migrate_pages": 238, "unshare": 97, "move_pages": 239, "perf_event_open": 241,
    "fanotify_init": 262, "fanotify_mark": 263, "inotify_init1": 26, "inotify_add_watch": 27,
    "name_to_handle_at": 264, "open_by_handle_at": 265, "setns": 268,
    "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273,
    "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282, "vhangup": 58,
}
ARCHES = {
    "x86_64": _Arch(audit=0xC000003E, numbers=X86_64_SYSCALLS, x32_bit=0x40000000),
    "aarch64": _Arch(audit=0xC00000B7, numbers=AARCH64_SYSCALLS),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# --- errors, probing ------------------------------------------------------------------------------

class ConfinementError(RuntimeError):
    """A layer could not be applied (the kernel lacks it, or the process is not fit for it)."""


_libc_handle = None


def _libc():
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
        _libc_handle.prctl.restype = ctypes.c_int
    return _libc_handle


def _checked(result: int, what: str) -> int:
    """A libc call's result, or OSError with its errno when it returned -1."""
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(number: int, *args) -> int:
    return _checked(_libc().syscall(ctypes.c_long(number), *args), f"syscall {number}")


def _prctl(option: int, *args: int) -> int:
    values = [ctypes.c_ulong(a) if isinstance(a, int) else a for a in args]
    values += [ctypes.c_ulong(0)] * (4 - len(values))
    return _checked(_libc().prctl(ctypes.c_int(option), *values), f"prctl {option}")


def landlock_abi() -> tuple:
    """(ABI version, "") or (0, why not). Harmless: only asks the kernel for its version."""
    if platform.system() != "Linux":
        return 0, f"Landlock is a Linux module; this is {platform.system()}"
    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)), ""
    except OSError as error:
        reasons = {errno.ENOSYS: "the kernel lacks Landlock (before 5.13, or built without "
                                 "CONFIG_SECURITY_LANDLOCK), or a seccomp filter hides its syscalls",
                   errno.EOPNOTSUPP: "Landlock is built in but not enabled: add landlock to the "
                                     "kernel's lsm= boot parameter"}
        return 0, reasons.get(error.errno, str(error))


def machine_arch():
    """This process's syscall ABI in ARCHES, or None. A 32-bit Python on a 64-bit kernel reports the
    kernel's machine but runs another ABI, so the pointer size is checked too."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return machine if machine in ARCHES and ctypes.sizeof(ctypes.c_void_p) == 8 else None


@dataclass(frozen=True)
class Support:
    """What this kernel offers. ``landlock_abi`` is 0 when Landlock cannot be applied here."""
    landlock_abi: int
    landlock_reason: str        # "" when available; else why not
    seccomp: bool
    seccomp_reason: str
    arch: str

    @property
    def network(self) -> bool:
        return self.landlock_abi >= NET_ABI

    @property
    def scoped(self) -> list:
        return list(SCOPES) if self.landlock_abi >= SCOPE_ABI else []

    def to_dict(self) -> dict:
        return {**asdict(self), "network": self.network, "scoped": self.scoped}


# The trial: a fresh interpreter loads this file, confines itself with nothing allowed and checks
# that a read and an IPv4 socket are refused.
_TRIAL = """\
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_confine_trial", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module._trial()), flush=True)
"""
TRIAL_SECONDS = 20


def _trial() -> dict:
    """Runs in probe()'s child: apply each layer, then see that it holds."""
    import socket
    result = {"landlock": "", "seccomp": ""}
    try:
        set_no_new_privs()
        restrict_filesystem_and_network((), ())
        try:
            os.close(os.open("/", os.O_RDONLY))
            result["landlock"] = "applied, yet / could still be opened"
        except PermissionError:
            pass
    except (OSError, ConfinementError) as error:
        result["landlock"] = str(error) or type(error).__name__
    try:
        install_seccomp_filter()
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
            result["seccomp"] = "installed, yet an AF_INET socket could still be made"
        except PermissionError:
            pass
    except (OSError, ConfinementError) as error:
        result["seccomp"] = str(error) or type(error).__name__
    return result


def probe() -> Support:
    """What this machine offers, without restricting the caller: the Landlock ABI comes from a
    harmless version query; then a short-lived child applies both layers for real (an outer
    seccomp filter, a container's, can refuse what the version query promises)."""
    abi, landlock_reason = landlock_abi()
    arch = machine_arch()
    seccomp_reason = "" if arch else f"no syscall table for {platform.machine()} (known: {', '.join(ARCHES)})"
    if (abi or arch) and sys.executable:
        outcome = _run_trial()
        if abi and outcome.get("landlock"):
            abi, landlock_reason = 0, f"the trial failed: {outcome['landlock']}"
        if arch and outcome.get("seccomp"):
            seccomp_reason = f"the trial failed: {outcome['seccomp']}"
    return Support(landlock_abi=abi, landlock_reason=landlock_reason, seccomp=not seccomp_reason,
                   seccomp_reason=seccomp_reason, arch=platform.machine())


def _run_trial() -> dict:
    """_trial() in a fresh interpreter (-I -S: nothing but this file is imported); on a failure of
    the child itself, both layers count as failed."""
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _TRIAL, os.path.abspath(__file__)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=TRIAL_SECONDS)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        reason = f"the probe's child did not answer: {error}"
        return {"landlock": reason, "seccomp": reason}


# --- applying --------------------------------------------------------------------------------------

PR_SET_KEEPCAPS = 8
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges(uid: int, gid: int, *, keep_read_search: bool = False):
    """Become ``uid``/``gid`` (from root) with no supplementary groups and no capabilities, or, with
    ``keep_read_search``, with CAP_DAC_READ_SEARCH alone (effective and permitted, not inheritable:
    a program it executes has none): for a worker whose Python lives where its uid may not go
    (root's 0700 home), so that Landlock, applied next, is what decides what it reads. Also lets
    it look up (stat) names in folders closed to its uid; Landlock does not check stat().
    ConfinementError when it is still root afterwards."""
    if keep_read_search:
        _prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if keep_read_search:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
        _checked(_libc().capset(ctypes.byref(header), data), "capset")
        _prctl(PR_SET_KEEPCAPS, 0)
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        raise ConfinementError(f"still root after becoming uid {uid}")

def set_no_new_privs():
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _thread_count():
    """This process's threads (None without /proc). Python's own count misses BLAS's native ones."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _require_one_thread():
    threads = _thread_count()
    if threads is not None and threads > 1:
        raise ConfinementError(f"the process has {threads} threads: Landlock binds only the calling "
                               "thread, so confine() must run before any other starts (before NumPy's "
                               "BLAS pool, for instance)")


def _add_path_rule(ruleset_fd: int, path, rights: int) -> bool:
    """Allow ``rights`` beneath ``path`` (only the file rights if it is not a folder). False when the
    path does not exist; a path that exists but cannot be opened is an error (fail closed)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= ACCESS_FILE
        if rights:
            rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
            _syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset_fd),
                     ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
    return True


def _path_rules(read_only, read_write, execute, handled: int, list_only=()) -> list:
    """(path, rights) for every path given: read, read and execute, everything but execute, or only
    listing a folder's entries (``list_only``: their names, not their contents)."""
    read = ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
    run = read | ACCESS_FS_EXECUTE
    rules = [(p, run if execute is None else read) for p in read_only]
    rules += [(p, run) for p in (execute or ())]
    rules += [(p, handled & ~ACCESS_FS_EXECUTE) for p in read_write]
    rules += [(p, ACCESS_FS_READ_DIR) for p in list_only]
    return [(os.fspath(p), rights & handled) for p, rights in rules]


def restrict_filesystem_and_network(read_only, read_write, *, execute=None, list_only=()) -> dict:
    """The Landlock layer alone (the caller has set no_new_privs). Raises ConfinementError when this
    kernel has no Landlock. Returns the report's Landlock part."""
    abi, reason = landlock_abi()
    if not abi:
        raise ConfinementError(f"Landlock is unavailable: {reason}")
    handled = filesystem_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled,
                        handled_access_net=(ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP) if abi >= NET_ABI else 0,
                        scoped=sum(SCOPES.values()) if abi >= SCOPE_ABI else 0)
    try:
        ruleset = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr),
                           ctypes.c_size_t(_ruleset_attr_size(abi)), ctypes.c_uint32(0))
    except OSError as error:
        raise ConfinementError(f"landlock_create_ruleset failed: {error}") from error
    skipped = []
    try:
        for path, rights in _path_rules(read_only, read_write, execute, handled, list_only):
            if not _add_path_rule(ruleset, path, rights):
                skipped.append(path)
        _syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    except OSError as error:
        raise ConfinementError(f"Landlock could not be applied: {error}") from error
    finally:
        os.close(ruleset)
    return {"landlock_abi": abi, "filesystem": True, "network": abi >= NET_ABI,
            "scoped": list(SCOPES) if abi >= SCOPE_ABI else [], "skipped": skipped}


def _deny_if(number: int, action: int = DENY) -> list:
    return [(BPF_JEQ_K, 0, 1, number), (BPF_RET_K, 0, 0, action)]


def _only_unix_family(number: int) -> list:
    """socket()/socketpair(): allowed only when the first argument (an int: its low half) is AF_UNIX
    and the type (the second, masked with SOCK_TYPE_MASK) is no datagram: SOCK_DGRAM (2) or SOCK_RAW
    (3) are exactly the types whose bits 2 and 3 are clear and bit 1 set. (Other types AF_UNIX
    refuses itself.) A datagram socket could sendmsg() to a path-name socket such as /dev/log."""
    assert {SOCK_DGRAM, SOCK_RAW} == {t for t in range(16) if t & 0b1110 == 0b0010}
    return [(BPF_JEQ_K, 0, 7, number), (BPF_LD_W_ABS, 0, 0, _arg_low(0)),
            (BPF_JEQ_K, 0, 4, AF_UNIX), (BPF_LD_W_ABS, 0, 0, _arg_low(1)),
            (BPF_JSET_K, 1, 0, SOCK_TYPE_MASK & 0b1100), (BPF_JSET_K, 1, 0, 0b0010),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), (BPF_RET_K, 0, 0, DENY)]


def _no_new_namespace(number: int) -> list:
    """clone(): denied when its flags (the first argument; the kernel reads the low 32 bits) ask
    for a namespace."""
    return [(BPF_JEQ_K, 0, 4, number), (BPF_LD_W_ABS, 0, 0, _arg_low(0)),
            (BPF_JSET_K, 0, 1, CLONE_NEW_NAMESPACE), (BPF_RET_K, 0, 0, DENY),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]


def _no_address(number: int, index: int) -> list:
    """sendto(): allowed only with a NULL destination (argument ``index``: both halves zero)."""
    return [(BPF_JEQ_K, 0, 6, number), (BPF_LD_W_ABS, 0, 0, _arg_low(index)), (BPF_JEQ_K, 0, 3, 0),
            (BPF_LD_W_ABS, 0, 0, _arg_high(index)), (BPF_JEQ_K, 0, 1, 0),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), (BPF_RET_K, 0, 0, DENY)]


def seccomp_program(arch_name: str) -> list:
    """The filter as (code, jt, jf, k) instructions. Each check is a block that either returns or
    falls through to the next with the syscall number still loaded, so no jump is longer than 7."""
    arch = ARCHES[arch_name]
    numbers = arch.numbers
    program = [(BPF_LD_W_ABS, 0, 0, DATA_ARCH), (BPF_JEQ_K, 1, 0, arch.audit), (BPF_RET_K, 0, 0, DENY),
               (BPF_LD_W_ABS, 0, 0, DATA_NR)]
    if arch.x32_bit:
        program += [(BPF_JGE_K, 0, 1, arch.x32_bit), (BPF_RET_K, 0, 0, DENY)]
    for name in DENIED_SYSCALLS:
        if name in numbers:
            program += _deny_if(numbers[name])
    program += _only_unix_family(numbers["socket"]) + _only_unix_family(numbers["socketpair"])
    program += _no_new_namespace(numbers["clone"]) + _deny_if(numbers["clone3"], NO_SUCH_CALL)
    program += _no_address(numbers["sendto"], 4)
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return program


def install_seccomp_filter():
    """The seccomp layer alone (the caller has set no_new_privs). ConfinementError on an
    architecture without a table here, or when the kernel refuses the filter."""
    arch = machine_arch()
    if arch is None:
        raise ConfinementError(f"seccomp: no syscall table for {platform.machine()} (known: {', '.join(ARCHES)})")
    program = seccomp_program(arch)
    instructions = (_SockFilter * len(program))(*[_SockFilter(*i) for i in program])
    fprog = _SockFprog(len(program), instructions)
    try:
        _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog))
    except OSError as error:
        raise ConfinementError(f"the seccomp filter was refused: {error}") from error


def confine(read_only, read_write, *, execute=None, list_only=(), allow_partial=False) -> dict:
    """Confine this process and its future children for good: no_new_privs, then Landlock, then
    seccomp (see the module's docstring).

    read_only:  paths (folders or files) beneath which reading is allowed (and executing, unless
                ``execute`` is given).
    read_write: paths beneath which everything but executing is allowed (character devices such as
                /dev/null need it on the file itself).
    execute:    None, or the only paths beneath which execve() is allowed (read too).
    list_only:  folders whose entries may be listed (names only; their files stay unreadable unless
                another rule allows them): a site-packages folder whose entries are allowed one by
                one, which Python's import system must list.
    Paths that do not exist are skipped (listed in the report's "skipped").
    allow_partial: apply what this kernel offers instead of raising ConfinementError when Landlock
                or seccomp is missing; the report then says false for what is not applied.

    Returns a JSON-able report, e.g. {"arch": "x86_64", "no_new_privs": true, "landlock_abi": 7,
    "filesystem": true, "network": true, "scoped": ["abstract_unix_socket", "signal"],
    "seccomp": true, "skipped": [], "errors": []}."""
    _require_one_thread()
    set_no_new_privs()
    report = {"arch": platform.machine(), "no_new_privs": True, "landlock_abi": 0, "filesystem": False,
              "network": False, "scoped": [], "seccomp": False, "skipped": [], "errors": []}
    try:
        report.update(restrict_filesystem_and_network(read_only, read_write, execute=execute,
                                                      list_only=list_only))
    except ConfinementError as error:
        if not allow_partial:
            raise
        report["errors"].append(str(error))
    try:
        install_seccomp_filter()
        report["seccomp"] = True
    except ConfinementError as error:
        if not allow_partial:
            raise
        report["errors"].append(str(error))
    return report
