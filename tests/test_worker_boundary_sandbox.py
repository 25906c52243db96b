"""The sandbox's side of issue 21: what the worker's own process may do (seccomp: no inotify or
fanotify, no Unix datagram socket, so nothing reaches /dev/log), its own share of the CPU (a cgroup
per worker), and a total cap on its scratch folder in the `landlock` mode (a tmpfs as root, else a
check between requests).

The confinement tests start a fresh ``sys.executable`` that loads confine.py by path (as the worker
does), confines itself, tries one thing and prints JSON; the test process is never confined. The
scratch tests start a SandboxedProcess in the `landlock` mode whose worker script is a small
stand-in (it confines itself as the worker does, writes what it is told into its scratch and waits),
so that they depend on how the sandbox starts and ends a worker, not on the worker's protocol. Tests
skip, saying why, what this machine cannot do. None depends on timing or load: the CPU cap is
checked from above only (load can only lower what the group gets).
"""

import errno
import json
import os
import select
import site
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from autograder import settings
from autograder.sandbox import Limits, confine, identity, process
from autograder.sandbox.cgroup import ResourceGroup
from autograder.sandbox.isolation import Isolation

ROOT = Path(__file__).resolve().parent.parent
CONFINE_FILE = ROOT / "autograder" / "sandbox" / "confine.py"
CHILD_SECONDS = 120


LANDLOCK_ABI, LANDLOCK_REASON = confine.landlock_abi()
needs_seccomp = pytest.mark.skipif(confine.machine_arch() is None,
                                   reason=f"no seccomp syscall table for {os.uname().machine}")
fully_confined = pytest.mark.skipif(not LANDLOCK_ABI or confine.machine_arch() is None,
                                    reason=f"needs both Landlock ({LANDLOCK_REASON or 'here'}) and a seccomp table")

MiB = 1 << 20


# --- a confined child ------------------------------------------------------------------------------

CHILD_PRELUDE = """\
import ctypes, errno, importlib.util, json, os, socket, sys
spec = importlib.util.spec_from_file_location("confine", sys.argv[1])
confine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confine)
v = json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)

def attempt(action):
    "{'ok': True, 'value': ...} or {'ok': False, 'errno': 'EPERM'}"
    try:
        value = action()
    except OSError as error:
        return {"ok": False, "errno": errno.errorcode.get(error.errno, str(error.errno))}
    return {"ok": True, "value": value if isinstance(value, (str, int, float, bool, type(None))) else None}

def checked(result, what):
    if result == -1:
        raise OSError(ctypes.get_errno(), what)
    return result

before = {}
""" + "{before}" + """
if v["layers"] == "all":
    confine.confine(v["read_only"], v["read_write"])
else:
    confine.set_no_new_privs()
    confine.install_seccomp_filter()
result = None
"""
CHILD_EPILOGUE = """
print(json.dumps({"result": result}), flush=True)
"""


def python_paths() -> list:
    """What a confined Python needs to read: its prefixes, site-packages and the system's libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
             str(Path(sys.executable).parent), str(Path(sys.executable).resolve().parent.parent)}
    paths |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache", "/usr/share/fonts",
              "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu"}
    return sorted(p for p in paths if p)


def run_confined(snippet: str, scratch: Path, *, layers="all", before="", environment=(), **variables):
    """Run ``snippet`` in a child confined by ``layers`` ("all": Landlock and seccomp, "seccomp"),
    after ``before`` ran unconfined; returns its ``result``."""
    settings_ = {"layers": layers, "read_only": python_paths(), "read_write": [str(scratch), "/dev/null"],
                 **variables}
    code = CHILD_PRELUDE.replace("{before}", before) + snippet + CHILD_EPILOGUE
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch), "LANG": "C.UTF-8",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **dict(environment)}
    done = subprocess.run([sys.executable, "-I", "-c", code, str(CONFINE_FILE), json.dumps(settings_)],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=CHILD_SECONDS)
    assert done.returncode == 0 and done.stdout.strip(), f"the child failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])["result"]


@pytest.fixture
def scratch(tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def refused(result) -> bool:
    return result == {"ok": False, "errno": "EPERM"}


# --- inotify, fanotify -----------------------------------------------------------------------------

IN_CREATE = 0x100


@pytest.mark.parametrize("layers", [pytest.param("all", marks=fully_confined),
                                    pytest.param("seccomp", marks=needs_seccomp)])
def test_inotify_init1_is_refused_under_confine(scratch, layers):
    snippet = "result = attempt(lambda: checked(libc.inotify_init1(0), 'inotify_init1'))"
    assert refused(run_confined(snippet, scratch, layers=layers))


@needs_seccomp
def test_inotify_add_watch_on_a_descriptor_made_before_confine_is_refused(scratch, tmp_path):
    """A watch on a folder outside the scratch would report the names of files created there."""
    watched = tmp_path / "watched"
    watched.mkdir()
    before = "before['fd'] = libc.inotify_init1(0)"
    snippet = ("result = [before['fd'] >= 0, attempt(lambda: checked(libc.inotify_add_watch("
               "before['fd'], v['watched'].encode(), v['mask']), 'inotify_add_watch'))]")
    made, watch = run_confined(snippet, scratch, layers="seccomp", before=before, watched=str(watched),
                               mask=IN_CREATE)
    assert made and refused(watch), watch


@needs_seccomp
def test_file_watch_syscalls_are_refused_by_number(scratch):
    """inotify_init (x86_64 only) and fanotify_mark, called by number: EPERM from the filter before
    the kernel could say EBADF or EINVAL about the arguments."""
    snippet = """
libc.syscall.restype = ctypes.c_long
numbers = confine.ARCHES[confine.machine_arch()].numbers
calls = {"fanotify_mark": (-1, 0, 0, -100, None)}
if "inotify_init" in numbers:
    calls["inotify_init"] = ()
def call(name, args):
    values = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return checked(libc.syscall(ctypes.c_long(numbers[name]), *values), name)
result = {name: attempt(lambda: call(name, args)) for name, args in calls.items()}
"""
    results = run_confined(snippet, scratch, layers="seccomp")
    assert results and all(refused(r) for r in results.values()), results


# --- Unix sockets: no datagrams, so nothing reaches /dev/log -------------------------------------------

@pytest.mark.parametrize("kind", ["SOCK_DGRAM", "SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK", "SOCK_RAW"])
@fully_confined
def test_an_af_unix_datagram_socket_is_refused(scratch, kind):
    snippet = ("kind = eval(v['kind'], vars(socket))\n"
               "result = attempt(lambda: socket.socket(socket.AF_UNIX, kind).close())")
    assert refused(run_confined(snippet, scratch, kind=kind))


@fully_confined
def test_an_af_unix_datagram_socketpair_is_refused(scratch):
    snippet = "result = attempt(lambda: [s.close() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)])"
    assert refused(run_confined(snippet, scratch))


@fully_confined
@pytest.mark.parametrize("kind", ["SOCK_STREAM", "SOCK_SEQPACKET"])
def test_an_af_unix_stream_or_seqpacket_socketpair_still_works(scratch, kind):
    snippet = """
def talk():
    a, b = socket.socketpair(socket.AF_UNIX, getattr(socket, v['kind']) | socket.SOCK_CLOEXEC)
    with a, b:
        a.sendall(b'ping')
        return b.recv(4).decode()
result = attempt(talk)
"""
    assert run_confined(snippet, scratch, kind=kind) == {"ok": True, "value": "ping"}


@fully_confined
def test_sendmsg_with_an_address_reaches_no_path_name_datagram_socket(scratch):
    """The way to /dev/log that seccomp cannot see (the address is inside msghdr): every socket the
    worker may make refuses or ignores it, and nothing arrives."""
    path = scratch / "log"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.setblocking(False)
    snippet = """
def send(kind, pair):
    s = socket.socketpair(socket.AF_UNIX, kind)[0] if pair else socket.socket(socket.AF_UNIX, kind)
    with s:
        return s.sendmsg([b'leak'], [], 0, v['path'])
result = [attempt(lambda: send(kind, pair)) for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
          for pair in (False, True)]
"""
    try:
        results = run_confined(snippet, scratch, path=str(path))
        # a seqpacket pair sends to its own peer (the address is ignored): that is not the log socket
        unconnected_stream, paired_stream, unconnected_seqpacket, _ = results
        assert unconnected_stream["errno"] == errno.errorcode[errno.EOPNOTSUPP], results     # ENOTSUP on Linux
        assert paired_stream["errno"] == "EISCONN"
        assert unconnected_seqpacket["errno"] == "ENOTCONN", results
        with pytest.raises(BlockingIOError):
            receiver.recv(64)
    finally:
        receiver.close()


# --- what the worker needs still works under the filter ---------------------------------------------

@fully_confined
def test_the_students_libraries_still_work_under_confine(scratch):
    snippet = """
import numpy, matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
plt.plot(numpy.arange(5) ** 2)
plt.savefig('plot.png')
result = [float(numpy.linalg.norm(numpy.ones((3, 4)))), os.path.getsize('plot.png') > 0]
"""
    result = run_confined(snippet, scratch, environment={"MPLBACKEND": "Agg",
                                                         "MPLCONFIGDIR": str(scratch / ".matplotlib")})
    assert result == [pytest.approx(12 ** 0.5), True]


@pytest.mark.slow        # Keras imports TensorFlow here (the worker's import hook that stops it is not loaded)
@fully_confined
def test_keras_with_the_numpy_backend_builds_a_model_under_confine(scratch):
    snippet = """
import keras
model = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                          keras.layers.Dense(2, activation='softmax')])
result = [keras.backend.backend(), len(json.loads(model.to_json())['config']['layers'])]
"""
    environment = {"KERAS_BACKEND": "numpy", "KERAS_HOME": str(scratch / ".keras"), "TF_CPP_MIN_LOG_LEVEL": "3",
                   "CUDA_VISIBLE_DEVICES": ""}
    assert run_confined(snippet, scratch, environment=environment) == ["numpy", 4]


# --- a CPU share per worker --------------------------------------------------------------------------

def test_the_worker_cpus_setting_reaches_the_limits():
    assert Limits().cpus == 1.0
    assert settings.from_environ({"BN_AUTOGRADER_WORKER_CPUS": "0.5"}).limits.cpus == 0.5
    assert settings.from_environ({}).limits == Limits()


def _cpu_seconds(group: ResourceGroup) -> float:
    """CPU time the group's processes used: v2's cpu.stat, else each live process's own count
    (/proc/<pid>/schedstat in ns, or stat's utime + stime in clock ticks)."""
    for path in group.dirs:
        try:
            for line in (path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except OSError:
            pass
    total = 0.0
    for pid in group.pids():
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
    return total


# Each process starts 10 busy children, each in a session of its own (a scheduler autogroup each),
# and then spins itself.
BUSY = """
import os
for _ in range(10):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
while True:
    pass
"""


@pytest.mark.slow        # about 2 s of 22 busy processes, capped
def test_a_workers_processes_together_get_at_most_its_cpu_share():
    cpus = 0.5
    group = ResourceGroup(Limits(cpus=cpus))
    spinners = []
    try:
        if not group.cpu_limited:
            pytest.skip("no cpu cgroup can be made here (no cpu controller, or not delegated)")
        started = time.monotonic()
        for _ in range(2):
            spinners.append(subprocess.Popen([sys.executable, "-I", "-S", "-c", BUSY], preexec_fn=group.join,
                                             start_new_session=True))
        deadline = time.monotonic() + 30
        while len(group.pids()) < 22 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group.pids()) >= 22, group.pids()
        time.sleep(2.0)
        used = _cpu_seconds(group)         # read while every process lives
        elapsed = time.monotonic() - started
        print(f"{len(group.pids())} processes used {used:.2f} s of CPU in {elapsed:.2f} s (cap {cpus} CPU)")
        assert used <= cpus * elapsed * 1.3 + 0.2
    finally:
        group.remove()
        for spinner in spinners:
            spinner.wait(10)
    assert not any(path.exists() for path in group.dirs)


def test_without_a_cpu_controller_the_other_controllers_still_hold(monkeypatch, tmp_path):
    probe = ResourceGroup(Limits())
    probe.remove()
    if not probe.active:
        pytest.skip("no cgroup can be made here (not root?)")
    if Path(ResourceGroup.ROOT_V2, "cgroup.controllers").exists():
        monkeypatch.setattr(ResourceGroup, "_limit_cpu_v2", lambda self, path, quota: False)
    else:
        monkeypatch.setattr(ResourceGroup, "ROOTS_V1", {**ResourceGroup.ROOTS_V1, "cpu": str(tmp_path / "no-cpu")})
    group = ResourceGroup(Limits(cpus=0.5))
    try:
        assert group.active and not group.cpu_limited
        sleeper = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"],
                                   preexec_fn=group.join)
        assert group.pids() == [sleeper.pid]
    finally:
        group.remove()
    sleeper.wait(10)
    assert not any(path.exists() for path in group.dirs)


# --- the scratch's total cap in the landlock mode --------------------------------------------------

needs_landlock_mode = pytest.mark.skipif(not LANDLOCK_ABI or confine.machine_arch() is None,
                                         reason="the landlock mode needs Landlock and seccomp")

# The worker's stand-in: it becomes its uid and confines itself as worker.py does, says where its
# scratch is, then writes (and maybe unlinks while holding open) the files it is told to, says what
# each write gave, and waits for the grader to end it.
STAND_IN = """\
import errno, importlib.util, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("confine", os.path.join(here, "confine.py"))
confine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confine)
uid = os.environ.pop("BN_AUTOGRADER_UID", None)
keep = os.environ.pop("BN_AUTOGRADER_KEEP_READ_SEARCH", "") == "1"
if uid is not None and os.getuid() == 0:
    confine.drop_privileges(int(uid), int(uid), keep_read_search=keep)
rules = json.loads(os.environ.pop("BN_AUTOGRADER_CONFINE"))
confine.confine(rules["read_only"], rules["read_write"], list_only=rules.get("list_only", ()))
order = json.loads(sys.stdin.readline())
scratch = os.environ["TMPDIR"]
outcomes, kept, chunk = [], [], b"x" * (1 << 20)
for i in range(order["files"]):
    path = os.path.join(scratch, f"big{i}.bin")
    try:
        f = open(path, "wb")
        for _ in range(order["mib"]):
            f.write(chunk)
        f.flush()
        outcomes.append("written")
    except OSError as error:
        outcomes.append(errno.errorcode.get(error.errno, str(error.errno)))
    if order.get("unlink"):
        os.unlink(path)
        kept.append(f)
    else:
        try:
            f.close()
        except OSError:
            pass
print(json.dumps({"scratch": scratch, "outcomes": outcomes}), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    script = tmp_path / "stand-in" / "worker.py"
    script.parent.mkdir()
    script.write_text(STAND_IN)
    monkeypatch.setattr(process, "WORKER_SCRIPT", script)
    started = []

    def start(order, limits):
        limits = replace(limits, zygote=False)      # the stand-in runs, not the zygote's worker
        sandboxed = process.SandboxedProcess(limits, isolation=Isolation.LANDLOCK)
        started.append(sandboxed)
        sandboxed.process.stdin.write((json.dumps(order) + "\n").encode())
        sandboxed.process.stdin.flush()
        ready, _, _ = select.select([sandboxed.process.stdout], [], [], CHILD_SECONDS)
        line = sandboxed.process.stdout.readline() if ready else b""
        assert line, f"the stand-in said nothing:\n{sandboxed.startup_errors()}"
        return sandboxed, json.loads(line)
    yield start
    for sandboxed in started:
        sandboxed.kill()


def _mounted(path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/self/mounts").read_text().splitlines())


SMALL = Limits(scratch_bytes=64 * MiB, file_bytes=64 * MiB)
THREE_FILES = {"files": 3, "mib": 30}


@needs_landlock_mode
def test_a_mounted_scratch_refuses_writes_past_its_cap_without_leftovers(stand_in):
    sandboxed, said = stand_in(THREE_FILES, SMALL)
    if sandboxed.scratch_capped != process.SCRATCH_TMPFS:
        pytest.skip(f"no tmpfs could be mounted on the scratch here (not root?): {sandboxed.scratch_capped}")
    scratch = Path(said["scratch"])
    assert _mounted(scratch)
    assert said["outcomes"][:2] == ["written", "written"] and said["outcomes"][2] == "ENOSPC", said
    assert sandboxed.scratch_overflow() is None                 # the tmpfs caps it: nothing to check
    sandboxed.kill()
    assert not scratch.exists() and not _mounted(scratch)


@needs_landlock_mode
def test_an_unmounted_scratch_past_its_cap_is_reported_before_removal(stand_in, monkeypatch):
    monkeypatch.setattr(identity, "mount_scratch_tmpfs", lambda *args: False)      # as where mount is refused
    sandboxed, said = stand_in(THREE_FILES, SMALL)
    assert sandboxed.scratch_capped == process.SCRATCH_CHECKED
    assert said["outcomes"] == ["written"] * 3
    assert sandboxed.scratch_overflow() == "the notebook's files in its scratch folder passed 64 MiB"
    scratch = Path(said["scratch"])
    sandboxed.kill()
    assert not scratch.exists() and not _mounted(scratch)


@needs_landlock_mode
def test_an_unmounted_scratch_under_its_cap_is_not_reported(stand_in, monkeypatch):
    monkeypatch.setattr(identity, "mount_scratch_tmpfs", lambda *args: False)
    sandboxed, said = stand_in({"files": 1, "mib": 30}, SMALL)
    assert said["outcomes"] == ["written"] and sandboxed.scratch_overflow() is None


@needs_landlock_mode
def test_files_deleted_but_held_open_count_in_an_unmounted_scratch(stand_in, monkeypatch):
    monkeypatch.setattr(identity, "mount_scratch_tmpfs", lambda *args: False)
    sandboxed, said = stand_in({"files": 3, "mib": 30, "unlink": True}, SMALL)
    assert not os.listdir(said["scratch"])
    assert sandboxed.scratch_overflow() == "the notebook's files in its scratch folder passed 64 MiB"


def test_too_many_entries_count_as_past_the_cap(tmp_path):
    for i in range(12):
        (tmp_path / f"f{i}").touch()
    assert process._folder_usage(tmp_path, 10) == (0, False)
    assert process._folder_usage(tmp_path, 100) == (0, True)


def test_folder_usage_counts_each_file_inside_once(tmp_path):
    inside, outside = tmp_path / "scratch", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * MiB)
    (inside / "file").write_bytes(b"y" * MiB)
    os.link(inside / "file", inside / "again")
    (inside / "link").symlink_to(outside)
    used, counted = process._folder_usage(inside, 100)
    assert counted and MiB <= used < 2 * MiB


def test_a_failing_unmount_does_not_raise(tmp_path):
    assert identity.unmount(tmp_path / "not-a-mount-point") is None
    assert identity.unmount(tmp_path / "does-not-exist") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root mounts")
def test_a_full_mounted_scratch_is_still_cleaned_up(tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    if not identity.mount_scratch_tmpfs(folder, 4 * MiB, os.getuid(), os.getgid()):
        pytest.skip("the kernel refused the tmpfs")
    try:
        with pytest.raises(OSError) as full:
            (folder / "fill").write_bytes(b"z" * (5 * MiB))
        assert full.value.errno == errno.ENOSPC
    finally:
        identity.unmount(folder)
    identity.remove_folder(folder)
    assert not _mounted(folder) and not folder.exists()


@pytest.mark.skipif(not process.bwrap.bubblewrap_available(), reason="bubblewrap cannot run here")
def test_under_bubblewrap_the_scratch_is_bwraps_unmeasured_tmpfs():
    sandboxed = process.SandboxedProcess(Limits(), isolation=Isolation.BWRAP)
    try:
        assert sandboxed.scratch_capped == process.SCRATCH_BWRAP_TMPFS
        assert sandboxed.scratch_overflow() is None
    finally:
        sandboxed.kill()
