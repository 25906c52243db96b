"""autograder/sandbox/confine.py (Landlock + seccomp, applied by a process to itself, and the uid drop
that comes before) and autograder/sandbox/identity.py.

Every confinement test starts a fresh ``sys.executable`` that loads confine.py by path (as the worker
does), confines itself to an allow-list (Python's prefixes and site-packages read-only, a tmp_path
scratch read-write), tries one thing and prints JSON. The test process itself is never confined.
Tests skip, saying why, only what this kernel cannot do. Nothing here imports TensorFlow.
"""

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from autograder.sandbox.limits import Limits

ROOT = Path(__file__).resolve().parent.parent
CONFINE_FILE = ROOT / "autograder" / "sandbox" / "confine.py"
IDENTITY_FILE = ROOT / "autograder" / "sandbox" / "identity.py"
CHILD_SECONDS = 30


def _load(path: Path, name: str):
    """A module loaded by path, as the worker loads confine.py (and without the autograder package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


confine = _load(CONFINE_FILE, "_confine_under_test")
FIRST_UID = Limits().uid_first     # the default range's first uid (identity.py, loaded alone, states none)
identity = _load(IDENTITY_FILE, "_identity_under_test")
LANDLOCK_ABI, LANDLOCK_REASON = confine.landlock_abi()

needs_landlock = pytest.mark.skipif(not LANDLOCK_ABI, reason=f"no Landlock here: {LANDLOCK_REASON}")
needs_seccomp = pytest.mark.skipif(confine.machine_arch() is None,
                                   reason=f"no seccomp syscall table for {os.uname().machine}")
needs_network_rules = pytest.mark.skipif(LANDLOCK_ABI < confine.NET_ABI,
                                         reason=f"Landlock ABI {LANDLOCK_ABI} < 4 has no TCP rules")
needs_scopes = pytest.mark.skipif(LANDLOCK_ABI < confine.SCOPE_ABI,
                                  reason=f"Landlock ABI {LANDLOCK_ABI} < 6 has no scopes")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can lease uids and chown")
fully_confined = pytest.mark.skipif(not LANDLOCK_ABI or confine.machine_arch() is None,
                                    reason="needs both Landlock and a seccomp table")


# The child: load confine.py, confine (all layers, or one), run the test's snippet, print `result`.
CHILD_PRELUDE = """\
import errno, importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("confine", sys.argv[1])
confine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confine)
v = json.loads(sys.argv[2])

def attempt(action):
    "{'ok': True, 'value': ...} or {'ok': False, 'errno': 'EACCES'}"
    try:
        value = action()
    except OSError as error:
        return {"ok": False, "errno": errno.errorcode.get(error.errno, str(error.errno))}
    return {"ok": True, "value": value if isinstance(value, (str, int, float, bool, type(None))) else None}

if v.get("become"):
    confine.drop_privileges(v["become"], v["become"], keep_read_search=v.get("keep_read_search", False))
if v["layers"] == "all":
    report = confine.confine(v["read_only"], v["read_write"], execute=v.get("execute"),
                             list_only=v.get("list_only", ()))
elif v["layers"] == "landlock":
    confine.set_no_new_privs()
    report = confine.restrict_filesystem_and_network(v["read_only"], v["read_write"], list_only=v.get("list_only", ()))
elif v["layers"] == "seccomp":
    confine.set_no_new_privs()
    confine.install_seccomp_filter()
    report = {}
else:
    report = {}
result = None
"""
CHILD_EPILOGUE = """
print(json.dumps({"report": report, "result": result}), flush=True)
"""


def python_paths() -> list:
    """What a confined Python needs to read: its prefixes, site-packages, the folders on the way from
    sys.executable to the real binary, and the system's shared libraries and loader cache."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
             str(Path(sys.executable).parent), str(Path(sys.executable).resolve().parent.parent)}
    paths |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"}
    return sorted(p for p in paths if p)


def run_confined(snippet: str, scratch: Path, *, layers="all", read_only=(), read_write=(), wrapper=(),
                 **variables):
    """Run ``snippet`` in a confined child (started through ``wrapper``, e.g. bwrap, if given);
    returns (report, result) from its JSON."""
    settings = {"layers": layers, "read_only": [*python_paths(), *map(str, read_only)],
                "read_write": [str(scratch), *map(str, read_write)], **variables}
    code = CHILD_PRELUDE + snippet + CHILD_EPILOGUE
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch), "LANG": "C.UTF-8",
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*wrapper, sys.executable, "-I", "-c", code, str(CONFINE_FILE), json.dumps(settings)],
                          cwd=scratch, env=environment, capture_output=True, text=True, timeout=CHILD_SECONDS)
    assert done.returncode == 0 and done.stdout.strip(), f"the child failed:\n{done.stderr[-3000:]}"
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["report"], answer["result"]


@pytest.fixture
def scratch(tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


@pytest.fixture
def outside_file(tmp_path_factory):
    """A readable file in a second tmp folder, outside every allowed path."""
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text("secret")
    return path


def denied(result, *codes) -> bool:
    return result["ok"] is False and result["errno"] in (codes or ("EACCES", "EPERM"))


# --- probe ---------------------------------------------------------------------------------------

def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@needs_landlock
def test_probe_reports_the_confinement_the_kernel_offers():
    support = confine.probe()
    print("probe:", support.to_dict())
    assert support.landlock_abi == LANDLOCK_ABI and support.landlock_reason == ""
    assert support.seccomp is (confine.machine_arch() is not None)
    assert support.network is (LANDLOCK_ABI >= 4)
    assert json.loads(json.dumps(support.to_dict()))["landlock_abi"] == LANDLOCK_ABI


def test_probe_leaves_the_caller_unconfined():
    before = (_status_field("NoNewPrivs"), _status_field("Seccomp"))
    confine.probe()
    assert (_status_field("NoNewPrivs"), _status_field("Seccomp")) == before


@fully_confined
def test_confine_reports_what_it_applied(scratch):
    report, _ = run_confined("", scratch, read_only=["/does/not/exist"])
    assert report["landlock_abi"] == LANDLOCK_ABI and report["filesystem"] is True
    assert report["seccomp"] is True and report["no_new_privs"] is True
    assert report["network"] is (LANDLOCK_ABI >= 4)
    assert report["scoped"] == (["abstract_unix_socket", "signal"] if LANDLOCK_ABI >= 6 else [])
    assert report["skipped"] == ["/does/not/exist"] and report["errors"] == []


# --- file system ---------------------------------------------------------------------------------

@needs_landlock
def test_reading_a_file_outside_the_allow_list_fails(scratch, outside_file):
    _, result = run_confined("result = attempt(lambda: open(v['path']).read())", scratch, path=str(outside_file))
    assert denied(result, "EACCES"), result


@needs_landlock
def test_reading_in_the_home_folder_fails(scratch):
    home = Path(os.path.expanduser("~")).resolve()
    candidates = [p for p in (home / ".bashrc", home / ".profile", Path("/root/.bashrc"), Path("/etc/passwd"))
                  if p.is_file() and not any(str(p).startswith(a.rstrip("/") + "/") for a in python_paths())]
    if not candidates:
        pytest.skip("no readable file in the home folder or /etc to try")
    _, result = run_confined("result = attempt(lambda: open(v['path']).read())", scratch, path=str(candidates[0]))
    assert denied(result, "EACCES"), (candidates[0], result)


@needs_landlock
def test_listing_a_denied_folder_fails(scratch, outside_file):
    snippet = "result = [attempt(lambda: os.listdir(p)) for p in v['paths']]"
    folders = [str(outside_file.parent), "/root" if os.path.isdir("/root") else "/etc"]
    _, results = run_confined(snippet, scratch, paths=folders)
    assert all(denied(r, "EACCES") for r in results), dict(zip(folders, results, strict=False))


@needs_landlock
def test_reading_beneath_read_only_works(scratch, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    (library / "data.txt").write_text("shared")
    _, result = run_confined("result = attempt(lambda: open(v['path']).read())", scratch,
                             read_only=[library], path=str(library / "data.txt"))
    assert result == {"ok": True, "value": "shared"}


@needs_landlock
def test_writing_beneath_read_only_fails(scratch, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    (library / "data.txt").write_text("shared")
    snippet = """
def overwrite():
    with open(v['existing'], 'w') as f:
        f.write('changed')
def create():
    with open(v['new'], 'w') as f:
        f.write('new')
result = [attempt(overwrite), attempt(create), attempt(lambda: os.unlink(v['existing']))]
"""
    _, results = run_confined(snippet, scratch, read_only=[library], existing=str(library / "data.txt"),
                              new=str(library / "new.txt"))
    assert all(denied(r, "EACCES") for r in results), results
    assert (library / "data.txt").read_text() == "shared" and not (library / "new.txt").exists()


@needs_landlock
def test_a_single_file_can_be_allowed_without_its_folder(scratch, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "allowed.txt").write_text("yes")
    (folder / "other.txt").write_text("no")
    snippet = "result = [attempt(lambda: open(v['allowed']).read()), attempt(lambda: open(v['other']).read())]"
    _, (allowed, other) = run_confined(snippet, scratch, read_only=[folder / "allowed.txt"],
                                       allowed=str(folder / "allowed.txt"), other=str(folder / "other.txt"))
    assert allowed == {"ok": True, "value": "yes"} and denied(other, "EACCES")


@needs_landlock
def test_a_list_only_folder_shows_names_but_no_contents(scratch, tmp_path):
    folder = tmp_path / "site-packages"
    (folder / "grader").mkdir(parents=True)
    (folder / "grader" / "reference.py").write_text("secret")
    (folder / "numpy.py").write_text("shared")
    snippet = ("result = [attempt(lambda: ','.join(sorted(os.listdir(v['folder'])))), "
               "attempt(lambda: open(v['hidden']).read()), attempt(lambda: open(v['allowed']).read())]")
    _, (listing, hidden, allowed) = run_confined(snippet, scratch, list_only=[str(folder)],
                                                 read_only=[folder / "numpy.py"], folder=str(folder),
                                                 hidden=str(folder / "grader" / "reference.py"),
                                                 allowed=str(folder / "numpy.py"))
    assert listing == {"ok": True, "value": "grader,numpy.py"}
    assert denied(hidden, "EACCES") and allowed == {"ok": True, "value": "shared"}


@needs_root
@needs_landlock
def test_a_dropped_uid_keeps_only_read_search_within_landlocks_bounds(scratch, tmp_path):
    closed = tmp_path / "closed"                      # like root's 0700 home, where Python may live
    closed.mkdir(mode=0o700)
    (closed / "python.txt").write_text("the interpreter")
    (closed / "other.txt").write_text("not allowed")
    os.chmod(scratch, 0o777)
    snippet = """
result = [attempt(lambda: open(v['allowed']).read()), attempt(lambda: open(v['other']).read()),
          attempt(lambda: open(v['allowed'], 'a').write('x')), os.getuid(), os.getgid(), os.getgroups()]
"""
    uid = FIRST_UID + 700
    report, (allowed, other, write, got_uid, got_gid, groups) = run_confined(
        snippet, scratch, read_only=[closed / "python.txt"], become=uid, keep_read_search=True,
        allowed=str(closed / "python.txt"), other=str(closed / "other.txt"))
    assert allowed == {"ok": True, "value": "the interpreter"}          # past the 0700 folder
    assert denied(other, "EACCES") and denied(write, "EACCES")          # Landlock still decides
    assert (got_uid, got_gid, groups) == (uid, uid, [])


@needs_root
def test_a_dropped_uid_without_read_search_has_no_capability(scratch, tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "python.txt").write_text("the interpreter")
    os.chmod(scratch, 0o777)
    snippet = ("result = [attempt(lambda: open(v['allowed']).read()), "
               "[l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm'))]]")
    _, (allowed, caps) = run_confined(snippet, scratch, layers="none", become=FIRST_UID + 701,
                                      allowed=str(closed / "python.txt"))
    assert denied(allowed, "EACCES") and caps == ["0000000000000000", "0000000000000000"]


@needs_landlock
def test_writing_in_the_scratch_works(scratch):
    snippet = """
def work():
    os.mkdir('sub')
    with open('sub/out.txt', 'w') as f:
        f.write('written')
    os.rename('sub/out.txt', 'sub/moved.txt')
    return open('sub/moved.txt').read()
result = attempt(work)
"""
    _, result = run_confined(snippet, scratch)
    assert result == {"ok": True, "value": "written"}
    assert (scratch / "sub" / "moved.txt").read_text() == "written"


@needs_landlock
@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_writing_outside_the_scratch_fails(scratch, folder):
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} does not exist here")
    target = Path(folder) / f"bn-confine-{uuid.uuid4().hex}"
    snippet = """
def write():
    with open(v['target'], 'w') as f:
        f.write('escaped')
result = attempt(write)
"""
    try:
        _, result = run_confined(snippet, scratch, target=str(target))
        assert denied(result, "EACCES") and not target.exists(), result
    finally:
        target.unlink(missing_ok=True)


@needs_landlock
def test_dev_null_allowed_as_a_file_takes_writes(scratch):
    snippet = """
def write():
    with open('/dev/null', 'w') as f:
        return f.write('discarded')
result = attempt(write)
"""
    _, result = run_confined(snippet, scratch, read_write=["/dev/null"])
    assert result == {"ok": True, "value": 9}


@fully_confined
def test_numpy_still_computes(scratch):
    snippet = "import numpy\nresult = float((numpy.ones((50, 50)) @ numpy.ones((50, 50))).sum())"
    _, result = run_confined(snippet, scratch)
    assert result == 125000.0


@fully_confined
def test_processes_with_threads_still_work(scratch):
    snippet = """
import threading
box = []
thread = threading.Thread(target=lambda: box.append('thread ran'))
thread.start(); thread.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
result = [box, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
"""
    _, result = run_confined(snippet, scratch)
    assert result == [["thread ran"], 7]


RUN_PYTHON = """
import subprocess, sys
result = attempt(lambda: subprocess.run([sys.executable, '-I', '-S', '-c', 'print(6 * 7)'],
                                         capture_output=True, text=True).stdout.strip())
"""


@fully_confined
def test_python_may_start_python_beneath_read_only(scratch):
    _, result = run_confined(RUN_PYTHON, scratch)
    assert result == {"ok": True, "value": "42"}


@fully_confined
def test_execute_is_refused_outside_the_execute_paths(scratch):
    _, result = run_confined(RUN_PYTHON, scratch, execute=[])
    assert denied(result, "EACCES"), result


def _bubblewrap():
    """bwrap's path when it is installed and may make namespaces here, else None."""
    bwrap = shutil.which("bwrap")
    if bwrap and subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"],
                                capture_output=True).returncode == 0:
        return bwrap
    return None


@fully_confined
def test_confine_stacks_inside_bubblewrap(scratch, outside_file):
    """As in the sandbox: bwrap makes its mounts first, then the worker confines itself inside."""
    bwrap = _bubblewrap()
    if bwrap is None:
        pytest.skip("bubblewrap is not installed or may not make namespaces here")
    wrapper = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/", "/",
               "--dev", "/dev", "--proc", "/proc", "--bind", str(scratch), str(scratch)]
    snippet = """
def write():
    with open('inside.txt', 'w') as f:
        return f.write('ok')
result = [attempt(lambda: open(v['path']).read()), attempt(write)]
"""
    report, (read, write) = run_confined(snippet, scratch, wrapper=wrapper, path=str(outside_file))
    assert report["filesystem"] is True and report["seccomp"] is True
    assert denied(read, "EACCES") and write == {"ok": True, "value": 2}


# --- network ---------------------------------------------------------------------------------------

@pytest.fixture
def tcp_listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _no_connection_arrived(server) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return True
    connection.close()
    return False


@pytest.mark.parametrize("layers", [
    pytest.param("all", marks=fully_confined),
    pytest.param("landlock", marks=[needs_landlock, needs_network_rules]),
])
def test_tcp_connect_fails(scratch, tcp_listener, layers):
    snippet = """
import socket
def connect():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(('127.0.0.1', v['port']))
result = attempt(connect)
"""
    _, result = run_confined(snippet, scratch, layers=layers, port=tcp_listener.getsockname()[1])
    assert denied(result), result
    assert _no_connection_arrived(tcp_listener)


@pytest.mark.parametrize("layers", [
    pytest.param("all", marks=fully_confined),
    pytest.param("landlock", marks=[needs_landlock, needs_network_rules]),
])
def test_tcp_bind_fails(scratch, layers):
    snippet = """
import socket
def bind():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
result = attempt(bind)
"""
    _, result = run_confined(snippet, scratch, layers=layers)
    assert denied(result), result


@fully_confined
def test_udp_sendto_delivers_nothing(scratch):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    snippet = """
import socket
def send():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return s.sendto(b'leak', ('127.0.0.1', v['port']))
result = attempt(send)
"""
    try:
        _, result = run_confined(snippet, scratch, port=receiver.getsockname()[1])
        assert denied(result, "EPERM"), result
        with pytest.raises(BlockingIOError):
            receiver.recvfrom(64)
    finally:
        receiver.close()


@needs_seccomp
@pytest.mark.parametrize("family, kind, protocol", [
    ("AF_INET6", "SOCK_STREAM", 0),
    ("AF_NETLINK", "SOCK_RAW", 0),             # NETLINK_ROUTE
    ("AF_PACKET", "SOCK_RAW", 0x0300),         # htons(ETH_P_ALL)
])
def test_non_unix_socket_families_fail(scratch, family, kind, protocol):
    snippet = ("import socket\nresult = attempt(lambda: socket.socket(getattr(socket, v['family']), "
               "getattr(socket, v['kind']), v['protocol']).close())")
    _, result = run_confined(snippet, scratch, layers="seccomp", family=family, kind=kind, protocol=protocol)
    assert denied(result, "EPERM"), result


@fully_confined
def test_unix_socketpair_works(scratch):
    snippet = """
import socket
def talk():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(b'ping')
    return b.recv(4).decode()
result = attempt(talk)
"""
    _, result = run_confined(snippet, scratch)
    assert result == {"ok": True, "value": "ping"}


@pytest.mark.parametrize("layers", [
    pytest.param("all", marks=fully_confined),
    pytest.param("landlock", marks=[needs_landlock, needs_scopes]),
])
def test_connecting_to_an_outside_abstract_unix_socket_fails(scratch, layers):
    name = f"bn-confine-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(1)
    server.setblocking(False)
    snippet = """
import socket
def connect():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect('\\0' + v['name'])
result = attempt(connect)
"""
    try:
        _, result = run_confined(snippet, scratch, layers=layers, name=name)
        assert denied(result, "EPERM"), result
        assert _no_connection_arrived(server)
    finally:
        server.close()


# --- processes -------------------------------------------------------------------------------------

PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
CLONE_NEWUSER = 0x10000000


@pytest.fixture
def decoy():
    """A process outside the confined child's domain that may be stopped by a failed test."""
    process = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@fully_confined
def test_ptrace_attach_fails(scratch, decoy):
    snippet = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def attach():
    if libc.ptrace(ctypes.c_long(v['request']), ctypes.c_long(v['pid']), None, None) == -1:
        raise OSError(ctypes.get_errno(), 'ptrace')
result = attempt(attach)
"""
    _, result = run_confined(snippet, scratch, request=PTRACE_ATTACH, pid=decoy.pid)
    assert denied(result, "EPERM"), result


@fully_confined
def test_ptrace_seize_of_the_parent_fails(scratch):
    """PTRACE_SEIZE, unlike ATTACH, would not stop the test process if it succeeded."""
    snippet = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def seize():
    if libc.ptrace(ctypes.c_long(v['request']), ctypes.c_long(os.getppid()), None, None) == -1:
        raise OSError(ctypes.get_errno(), 'ptrace')
result = attempt(seize)
"""
    _, result = run_confined(snippet, scratch, request=PTRACE_SEIZE)
    assert denied(result, "EPERM"), result


@needs_seccomp
def test_unshare_of_a_user_namespace_fails(scratch):
    snippet = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def unshare():
    if libc.unshare(ctypes.c_int(v['flags'])) == -1:
        raise OSError(ctypes.get_errno(), 'unshare')
result = attempt(unshare)
"""
    _, result = run_confined(snippet, scratch, layers="seccomp", flags=CLONE_NEWUSER)
    assert denied(result, "EPERM"), result


@needs_seccomp
def test_clone_into_a_user_namespace_fails(scratch):
    snippet = """
import ctypes, platform, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def clone():
    number = confine.ARCHES[confine.machine_arch()].numbers['clone']
    pid = libc.syscall(ctypes.c_long(number), ctypes.c_ulong(v['flags'] | signal.SIGCHLD), None, None, None, None)
    if pid == 0:
        os._exit(0)
    if pid == -1:
        raise OSError(ctypes.get_errno(), 'clone')
    os.waitpid(pid, 0)
result = attempt(clone)
"""
    _, result = run_confined(snippet, scratch, layers="seccomp", flags=CLONE_NEWUSER)
    assert denied(result, "EPERM"), result


@needs_landlock
@needs_scopes
def test_signalling_the_parent_fails(scratch):
    _, result = run_confined("result = attempt(lambda: os.kill(os.getppid(), 0))", scratch)
    assert denied(result, "EPERM"), result


@needs_landlock
def test_confine_refuses_a_process_with_threads(scratch):
    snippet = """
import threading
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
try:
    confine.confine(v['read_only'], v['read_write'])
    result = 'confined'
except confine.ConfinementError as error:
    result = str(error)
stop.set()
"""
    _, result = run_confined(snippet, scratch, layers="none")
    assert "threads" in result


def test_without_landlock_confine_raises_unless_partial_is_allowed(scratch):
    snippet = """
confine.landlock_abi = lambda: (0, 'pretended missing')
try:
    confine.confine(v['read_only'], v['read_write'])
    strict = 'confined'
except confine.ConfinementError as error:
    strict = str(error)
result = [strict, confine.confine(v['read_only'], v['read_write'], allow_partial=True)]
"""
    _, (strict, partial) = run_confined(snippet, scratch, layers="none")
    assert "pretended missing" in strict
    assert partial["filesystem"] is False and partial["landlock_abi"] == 0
    assert any("pretended missing" in e for e in partial["errors"])


# --- the seccomp program, checked without loading it -------------------------------------------

def run_bpf(program, nr, arch, args=(0,) * 6):
    """A tiny interpreter of the opcodes seccomp_program() uses, over one struct seccomp_data."""
    data = nr.to_bytes(4, "little") + arch.to_bytes(4, "little") + bytes(8)
    data += b"".join((a & (2 ** 64 - 1)).to_bytes(8, "little") for a in args)
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == confine.BPF_LD_W_ABS:
            accumulator = int.from_bytes(data[k:k + 4], "little")
            pc += 1
        elif code == confine.BPF_RET_K:
            return k
        else:
            taken = {confine.BPF_JEQ_K: accumulator == k, confine.BPF_JGE_K: accumulator >= k,
                     confine.BPF_JSET_K: bool(accumulator & k)}[code]
            pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize("arch_name", sorted(confine.ARCHES))
def test_seccomp_program_decides_as_intended_on_every_arch(arch_name):
    arch = confine.ARCHES[arch_name]
    program = confine.seccomp_program(arch_name)
    n = arch.numbers
    allow, deny, nosys = confine.SECCOMP_RET_ALLOW, confine.DENY, confine.NO_SUCH_CALL
    assert run_bpf(program, n["socket"], arch.audit, (socket.AF_UNIX,)) == allow
    assert run_bpf(program, n["socket"], arch.audit, (socket.AF_INET,)) == deny
    assert run_bpf(program, n["socket"], arch.audit, (socket.AF_UNIX | (1 << 32),)) == allow   # int arg
    assert run_bpf(program, n["socketpair"], arch.audit, (socket.AF_INET6,)) == deny
    assert run_bpf(program, n["clone"], arch.audit, (signal.SIGCHLD,)) == allow
    assert run_bpf(program, n["clone"], arch.audit, (CLONE_NEWUSER | signal.SIGCHLD,)) == deny
    assert run_bpf(program, n["clone3"], arch.audit) == nosys
    assert run_bpf(program, n["sendto"], arch.audit, (3, 0, 0, 0, 0, 0)) == allow
    assert run_bpf(program, n["sendto"], arch.audit, (3, 0, 0, 0, 1 << 40, 0)) == deny
    assert all(run_bpf(program, n[name], arch.audit) == deny for name in confine.DENIED_SYSCALLS if name in n)
    assert run_bpf(program, 0, arch.audit) == allow
    assert run_bpf(program, n["socket"], 0x40000003, (socket.AF_INET,)) == deny       # i386 / foreign ABI
    if arch.x32_bit:
        assert run_bpf(program, n["socket"] | arch.x32_bit, arch.audit, (socket.AF_INET,)) == deny


def test_syscall_tables_agree_with_libseccomp():
    try:
        library = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.skip("libseccomp.so.2 is not installed (only this cross-check needs it)")
    resolve = library.seccomp_syscall_resolve_name_arch
    resolve.argtypes, resolve.restype = (ctypes.c_uint32, ctypes.c_char_p), ctypes.c_int
    checked = 0
    for arch in confine.ARCHES.values():
        for name, number in arch.numbers.items():
            known = resolve(arch.audit, name.encode())
            if known >= 0:           # negative: unknown to this libseccomp, or absent on this arch
                assert known == number, (hex(arch.audit), name)
                checked += 1
    assert checked > 80


# --- identity --------------------------------------------------------------------------------------

TEST_FIRST_UID = FIRST_UID + 500


@needs_root
def test_two_leases_get_different_uids(tmp_path):
    with identity.lease_uid(TEST_FIRST_UID, 4, tmp_path) as first, \
            identity.lease_uid(TEST_FIRST_UID, 4, tmp_path) as second:
        assert first.uid != second.uid
        assert {first.uid, second.uid} <= set(range(TEST_FIRST_UID, TEST_FIRST_UID + 4))


@needs_root
def test_a_closed_lease_is_free_again(tmp_path):
    lease = identity.lease_uid(TEST_FIRST_UID, 1, tmp_path)
    with pytest.raises(identity.NoFreeUid):
        identity.lease_uid(TEST_FIRST_UID, 1, tmp_path)
    lease.close()
    with identity.lease_uid(TEST_FIRST_UID, 1, tmp_path) as again:
        assert again.uid == TEST_FIRST_UID


@needs_root
def test_a_dead_holders_lease_is_free_again(tmp_path):
    holder_code = ("import importlib.util, sys, time\n"
                   "spec = importlib.util.spec_from_file_location('identity', sys.argv[1])\n"
                   "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
                   "lease = m.lease_uid(int(sys.argv[2]), 1, sys.argv[3])\n"
                   "print(lease.uid, flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-I", "-c", holder_code, str(IDENTITY_FILE), str(TEST_FIRST_UID),
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert int(holder.stdout.readline()) == TEST_FIRST_UID
        with pytest.raises(identity.NoFreeUid):
            identity.lease_uid(TEST_FIRST_UID, 1, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with identity.lease_uid(TEST_FIRST_UID, 1, tmp_path) as lease:
        assert lease.uid == TEST_FIRST_UID


@needs_root
def test_scratch_is_private_to_the_uid(tmp_path):
    with identity.lease_uid(TEST_FIRST_UID, 4, tmp_path / "locks") as lease:
        folder = identity.make_scratch(tmp_path, lease.uid)
        info = folder.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == lease.uid


@pytest.mark.slow
@needs_root
def test_end_processes_ends_every_process_of_a_uid(tmp_path):
    uid = TEST_FIRST_UID + 3
    code = ("import os, sys, time\nos.setgroups([]); os.setgid(int(sys.argv[1])); os.setuid(int(sys.argv[1]))\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)\n")
    started = subprocess.Popen([sys.executable, "-I", "-c", code, str(uid)], cwd="/")
    deadline = time.monotonic() + 10
    while not identity._uid_runs_a_process(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    identity.end_processes(uid)
    started.wait(10)
    deadline = time.monotonic() + 5
    while identity._uid_runs_a_process(uid) and time.monotonic() < deadline:     # the reparented child
        time.sleep(0.05)
    assert not identity._uid_runs_a_process(uid)


def test_without_root_the_lease_is_the_callers_own_uid(tmp_path, monkeypatch):
    monkeypatch.setattr(identity.os, "geteuid", lambda: 1000)
    lease = identity.lease_uid(TEST_FIRST_UID, 4, tmp_path)
    assert lease.uid == os.getuid() and lease.shared
    assert not any(tmp_path.iterdir())


# --- issue 21: inotify, fanotify and Unix datagrams --------------------------------------------------

@pytest.mark.parametrize("arch_name", sorted(confine.ARCHES))
def test_the_filter_denies_its_closed_syscalls_on_every_arch(arch_name):
    arch = confine.ARCHES[arch_name]
    program, n = confine.seccomp_program(arch_name), arch.numbers
    allow, deny = confine.SECCOMP_RET_ALLOW, confine.DENY
    for name in ("inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark"):
        assert name not in n or run_bpf(program, n[name], arch.audit) == deny, name
    assert {"inotify_init1", "inotify_add_watch", "fanotify_mark"} <= set(n)
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    for call in ("socket", "socketpair"):
        for kind in range(16):
            expected = deny if kind in (socket.SOCK_DGRAM, socket.SOCK_RAW) else allow
            assert run_bpf(program, n[call], arch.audit, (socket.AF_UNIX, kind)) == expected, (call, kind)
            assert run_bpf(program, n[call], arch.audit, (socket.AF_UNIX, kind | flags)) == expected, (call, kind)
        assert run_bpf(program, n[call], arch.audit, (socket.AF_INET, socket.SOCK_STREAM)) == deny


def test_the_new_syscall_numbers_are_the_kernels():
    """x86_64's asm/unistd_64.h and asm-generic/unistd.h (aarch64), as of Linux 6.x."""
    assert {k: confine.X86_64_SYSCALLS[k] for k in ("inotify_init", "inotify_add_watch", "inotify_init1",
                                                    "fanotify_init", "fanotify_mark")} == {
        "inotify_init": 253, "inotify_add_watch": 254, "inotify_init1": 294, "fanotify_init": 300,
        "fanotify_mark": 301}
    assert {k: confine.AARCH64_SYSCALLS[k] for k in ("inotify_init1", "inotify_add_watch", "fanotify_init",
                                                     "fanotify_mark")} == {
        "inotify_init1": 26, "inotify_add_watch": 27, "fanotify_init": 262, "fanotify_mark": 263}
    assert "inotify_init" not in confine.AARCH64_SYSCALLS
