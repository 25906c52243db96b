"""Escapes: what a student's code can see, read, write and send from its worker, in every mode that grades.

The isolation modes (sandbox/isolation.py): the escape probes and the forgers run in each mode:
bubblewrap with Landlock, bubblewrap alone (as on a kernel without Landlock), Landlock alone (the
fallback where bubblewrap cannot run) and, as a control that shows each probe would find what it
looks for, "none". In-process the mode is set by patching what the chooser found (``in_mode``); the
class runs, whose grader processes are subprocesses, make bubblewrap fail with a ``bwrap`` first on
PATH and hide Landlock with a seccomp filter (tests/hostile/no_landlock.py), as an old kernel would.
"""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autograder.sandbox.isolation import Isolation
from autograder.submission import Submission

from conftest import (
    FULL_MARKS,
    GRADING_MODES,
    MANUAL_BN,
    SETUP,
    failing_bwrap,
    messages,
    needs_bwrap,
    offer_for,
    scores,
    select,
    unique_digits,
    write_notebook,
)

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"


def decode_report(answer):
    return json.loads(answer.value.astype(np.uint8).tobytes())


# --- escape attempts -------------------------------------------------------------------------------

def _places(targets, *folders) -> set:
    """Where a write to one of ``targets`` could land if it were not contained."""
    bases = (Path("/"), Path.cwd(), ROOT, Path("/tmp/work"), *folders)
    return {(base / target).resolve() for target in targets for base in bases}


def _state(paths) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in paths}


@needs_bwrap
def test_the_worker_cannot_see_reach_or_change_anything_outside(tmp_path, limits):
    limits_ = limits(cell=10, call=30)
    course = tmp_path / "course"
    submission_dir = course / "submitted" / "alice" / "batchnorm"
    path = write_notebook(submission_dir, SETUP, (HOSTILE / "probes.py").read_text(), name="batchnorm.ipynb")
    gradebook = course / "gradebook.db"
    gradebook.write_text("the real gradebook")
    (course / "autograded" / "alice" / "batchnorm").mkdir(parents=True)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    targets = ["results.json", "grades.csv", "gradebook.db", "../results.json",
               "../../autograded/alice/batchnorm/results.json",
               str(gradebook), str(course / "grades.csv"), str(course / "autograded/alice/batchnorm/results.json"),
               str(submission_dir / "results.json"), str(ROOT / "results.json"), str(ROOT.parent / "results.json"),
               str(ROOT / "autograder/checks/test_manual_batch_norm.py"), str(Path.cwd() / "results.json")]

    before = _state(_places(targets, submission_dir, course))
    with Submission.open(path, limits_, hide=[course]) as s, listener:
        assert not s.cell_errors()
        me = decode_report(s.call_array("probe_identity"))
        reads = {p: decode_report(s.call_array("probe_read", path=str(p))) for p in (
            ROOT / "autograder/checks/test_manual_batch_norm.py", ROOT / "autograder/reference.py",
            ROOT / "source/batchnorm/batchnorm.ipynb", path, gradebook, Path.home() / ".cache", "/etc/shadow")}
        listings = {p: decode_report(s.call_array("probe_list", path=str(p)))
                    for p in (ROOT, ROOT / "autograder", course, Path.home())}
        writes = decode_report(s.call_array("probe_write", paths=targets))
        network = [decode_report(s.call_array("probe_connect", host="127.0.0.1", port=port)),
                   decode_report(s.call_array("probe_http", url="http://example.com/")),
                   decode_report(s.call_array("probe_connect", host="1.1.1.1", port=80))]
        grader = decode_report(s.call_array("probe_signal", pid=os.getpid()))
        privileges = decode_report(s.call_array("probe_shell", command=(
            f"umount {ROOT}; umount -l {ROOT}/autograder; unshare -U true; unshare -rm true; "
            "mount -t tmpfs none /tmp/work; echo 1 > /sys/fs/cgroup/pids/cgroup.procs; "
            "cat /proc/1/environ; ls /proc/1/root/")))

    # who the code is: a uid of its own (nobody without root), no capabilities, no way to gain any,
    # alone in its PID namespace
    uid = me["uid"] if os.geteuid() == 0 else 65534
    assert limits_.uid_first <= uid < limits_.uid_first + limits_.uid_count or os.geteuid() != 0
    assert (me["uid"], me["euid"], me["gid"], me["groups"]) == (uid, uid, uid, [])
    assert me["cap_effective"] == me["cap_permitted"] == me["cap_ambient"] == "0000000000000000"
    assert me["no_new_privs"] == "1"
    assert max(me["pids"]) < 100 and not any("pytest" in c or "autograder" in c for c in me["commands"])
    assert not any(str(course) in c for c in me["commands"]), "bwrap's command line shows the hidden folders"
    assert grader["error"].startswith("ProcessLookupError")
    # nothing of the grader, the course or the instructor can be read; the project looks empty
    assert all("error" in r for r in reads.values()), reads
    assert set(listings[ROOT].get("ok", [])) <= {".venv"}, listings          # at most Python's way
    assert listings[ROOT / "autograder"].get("ok", []) == [] and "error" in listings[course]
    assert listings[Path.home()].get("ok", []) in ([], [".pyenv"]), listings   # again only Python
    # it may write only its own scratch space, which vanishes with it
    # (a guessed path under /tmp lands in the sandbox's own scratch /tmp; the state check below
    # shows that nothing outside changed)
    assert all("error" in writes[t] for t in targets if t.startswith("/") and not t.startswith("/tmp/")), writes
    assert gradebook.read_text() == "the real gradebook"
    assert _state(_places(targets, submission_dir, course)) == before
    # no network, no way back to its capabilities
    assert all("error" in n for n in network), network
    out = privileges["output"]
    # (the project is "not mounted", its package not there at all, and neither is /sys)
    assert sum(map(out.count, ("must be superuser", "not mounted", "No such file"))) >= 3, out
    assert out.count("unshare failed") == 2 and "Permission denied" in out and "Directory nonexistent" in out, out


@needs_bwrap
def test_a_function_that_reads_the_hidden_checks_scores_nothing(tmp_path, limits, graded):
    limits(cell=5, call=20)
    cheat = f'''\
def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    secret = open("{ROOT}/autograder/checks/test_manual_batch_norm.py").read()
    return np.full(np.shape(x), float(len(secret)))
'''
    forge = f'''\
import json, os
for target in ["results.json", "{tmp_path}/results.json", "{ROOT}/results.json", "../../autograded/results.json"]:
    try:
        with open(target, "w") as f:
            json.dump({{"total": 12.0, "max_total": 12.0, "status": "graded", "checks": []}}, f)
    except OSError:
        pass
'''
    results, _ = graded(write_notebook(tmp_path, SETUP, forge, cheat))
    assert scores(results)["manual_batch_norm"] == 0.0
    assert all("FileNotFoundError" in m for m in messages(results, "manual_batch_norm"))
    assert not (tmp_path / "results.json").exists() and not (ROOT / "results.json").exists()


# --- every mode: escapes, forgeries, other workers' scratch ---------------------------------------

ESCAPE_MODES = (*GRADING_MODES, "none")      # "none": the control, where each probe finds its target


@pytest.fixture(scope="module")
def second_copies():
    """World-readable second copies in a home folder under /home: a TA's checkout of the project and
    last term's course folder with its master (source/) and solution notebooks."""
    try:
        home = Path(tempfile.mkdtemp(prefix="bn-hostile-", dir="/home"))
    except OSError as exc:
        pytest.skip(f"cannot make a folder under /home for the second copies: {exc}")
    try:
        checkout, course = home / "ta-checkout", home / "last-term"
        shutil.copytree(ROOT / "autograder", checkout / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
        for folder in ("source", "solutions"):
            shutil.copytree(ROOT / folder, course / folder)
        for path in [home, *home.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield SimpleNamespace(home=home, reference=checkout / "autograder" / "reference.py",
                              source=course / "source" / "batchnorm" / "batchnorm.ipynb",
                              solutions=course / "solutions" / "batchnorm" / "batchnorm.ipynb")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def listeners():
    """A TCP and a UDP socket on the grader's loopback; ``arrived()`` says whether anything reached them."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    for s in (tcp, udp):
        s.setblocking(False)

    def arrived() -> dict:
        found = {}
        for name, receive in (("tcp", tcp.accept), ("udp", lambda: udp.recv(100))):
            try:
                receive()
                found[name] = True
            except BlockingIOError:
                found[name] = False
        return found
    yield SimpleNamespace(tcp=tcp.getsockname()[1], udp=udp.getsockname()[1], arrived=arrived)
    tcp.close()
    udp.close()


@pytest.mark.parametrize("mode", ESCAPE_MODES)
def test_escape_probes_reach_nothing(tmp_path, limits, listeners, second_copies, mode):
    mode = offer_for(mode) and Isolation(mode)
    limits_ = limits(cell=10, call=30)
    probes = (HOSTILE / "probes.py").read_text()
    tag = unique_digits()
    host_targets = [Path("/tmp") / f"bn-escape-{tag}", Path("/var/tmp") / f"bn-escape-{tag}",
                    Path("/dev/shm") / f"bn-escape-{tag}", Path.home() / f"bn-escape-{tag}",
                    second_copies.home / f"bn-escape-{tag}", ROOT / f"bn-escape-{tag}"]
    with Submission.open(write_notebook(tmp_path / "a", SETUP, probes), limits_, isolation=mode) as a, \
            Submission.open(write_notebook(tmp_path / "b", SETUP, probes), limits_, isolation=mode) as b:
        assert not a.cell_errors() and not b.cell_errors()
        me = decode_report(a.call_array("probe_who"))
        secret = f"{me['home']}/secret-{tag}.py"
        assert "ok" in decode_report(a.call_array("probe_write", paths=[secret]))[secret]   # its own scratch
        reads = decode_report(b.call_array("probe_read_all", paths=[
            secret, str(second_copies.reference), str(second_copies.source), str(second_copies.solutions),
            str(ROOT / "autograder/reference.py"), str(ROOT / "source/batchnorm/batchnorm.ipynb"), "/etc/shadow"]))
        listings = decode_report(b.call_array("probe_list_all", paths=[
            "/home", str(second_copies.home), str(Path(me["home"]).parent), "/root", "/srv", "/opt", "/mnt",
            "/media", str(ROOT)]))
        top = decode_report(b.call_array("probe_list_all", paths=["/", "/tmp"]))
        writes = decode_report(b.call_array("probe_write", paths=[str(p) for p in host_targets]))
        tcp = decode_report(b.call_array("probe_connect", host="127.0.0.1", port=listeners.tcp))
        udp = decode_report(b.call_array("probe_udp", host="127.0.0.1", port=listeners.udp))
        ptrace = decode_report(b.call_array("probe_ptrace", pids=[os.getpid(), a._process.process.pid]))
        unshare = decode_report(b.call_array("probe_unshare"))
        grader = decode_report(b.call_array("probe_signal", pid=os.getpid()))
        isolations = (a.isolation, b.isolation)
    arrived = listeners.arrived()
    written = [str(p) for p in host_targets if p.exists()]
    for path in host_targets:
        path.unlink(missing_ok=True)

    assert isolations == (mode.value, mode.value)
    if mode is Isolation.NONE:        # the control: the same probes do find, read and send
        assert all("ok" in reads[str(p)] for p in (second_copies.reference, second_copies.source)), reads
        assert "ok" in tcp and "ok" in udp and arrived == {"tcp": True, "udp": True}, (tcp, udp, arrived)
        return
    # who the code is: its own uid (as root), no capability but, without bubblewrap, the right to
    # read past permissions that Landlock then bounds; never a way to gain one
    if os.geteuid() == 0:
        assert limits_.uid_first <= me["uid"] < limits_.uid_first + limits_.uid_count, me
        assert me["uid"] == me["euid"] == me["gid"] and me["groups"] == []
    allowed_caps = {0, 1 << 2} if not mode.bubblewrap else {0}
    assert me["cap_effective"] in allowed_caps and me["cap_permitted"] in allowed_caps, me
    assert me["no_new_privs"] == 1
    # nothing read: not another worker's scratch, not the second copies, not the grader's files
    assert all("error" in r for r in reads.values()), reads
    # the folders on the way to Python (wherever the checkout is: a CI clone may be under /tmp) and
    # its own private /tmp's "grader" and "work"
    harmless = {part for folder in (sys.prefix, sys.base_prefix, Path(sys.executable).parent)
                for part in Path(folder).resolve().parts[1:]} | {".pyenv", ".venv", "grader", "work"}
    assert all("error" in r or set(r["ok"]) <= harmless for r in listings.values()), listings
    assert "home" not in top["/"].get("ok", []) and not any(
        name.startswith("bn-") for name in top["/tmp"].get("ok", [])), top
    # nothing written outside (under bubblewrap /tmp, /var/tmp and /dev/shm are its own and vanish)
    assert not written, written
    private = {str(p) for p in host_targets[:3]} if mode.bubblewrap else set()
    assert all("error" in writes[str(p)] for p in host_targets if str(p) not in private), writes
    # nothing sent, nothing traced, no namespace, no signal
    # (bubblewrap alone: a datagram may go out on the sandbox's own loopback, and nowhere else)
    assert "error" in tcp and arrived == {"tcp": False, "udp": False}, (tcp, udp, arrived)
    assert "error" in udp or mode is Isolation.BWRAP, udp
    assert all("error" in r for r in ptrace.values()), ptrace
    assert all("error" in r for r in unshare.values()), unshare
    assert "error" in grader, grader


FORGERS = {
    "imports_the_reference": '''\
def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    from autograder import reference
    return reference.batch_norm(x, gamma, beta, epsilon)
''',
    "finds_a_copy_of_the_reference": '''\
import importlib.util, os, time
FOUND = []

def _find(name, seconds=8):
    """The first readable file whose path ends with ``name``, walking where copies live."""
    deadline, seen = time.monotonic() + seconds, set()
    for root in ("/home", "/srv", "/opt", "/mnt", "/media", "/root", "/tmp", "/var", "/work", "/"):
        for folder, dirs, files in os.walk(root):
            if time.monotonic() > deadline:
                return None
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "site-packages", ".git")
                       and folder.count("/") < 6 and os.path.join(folder, d) not in seen]
            seen.add(folder)
            for f in files:
                path = os.path.join(folder, f)
                if path.endswith(name):
                    try:
                        open(path).close()
                        return path
                    except OSError:
                        pass
    return None

def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    if not FOUND:
        path = _find("autograder/reference.py")
        if path:
            spec = importlib.util.spec_from_file_location("stolen", path)
            FOUND.append(importlib.util.module_from_spec(spec))
            spec.loader.exec_module(FOUND[0])
        else:
            FOUND.append(None)
    if FOUND[0] is None:
        return np.zeros_like(x)
    return FOUND[0].batch_norm(x, gamma, beta, epsilon)
''',
}
FORGERS["finds_the_master_notebook"] = FORGERS["finds_a_copy_of_the_reference"].split("def manual_batch_norm")[0] + '''\
import json

def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    if not FOUND:
        FOUND.append(None)
        for name in ("source/batchnorm/batchnorm.ipynb", "solutions/batchnorm/batchnorm.ipynb"):
            path = _find(name, seconds=4)
            if path:
                for cell in json.load(open(path))["cells"]:
                    code = "".join(cell["source"])
                    if "def manual_batch_norm" in code and "NotImplementedError" not in code:
                        namespace = {"np": np}
                        exec(code, namespace)
                        FOUND[0] = namespace["manual_batch_norm"]
                        break
            if FOUND[0] is not None:
                break
    if FOUND[0] is None:
        return np.zeros_like(x)
    return FOUND[0](x, gamma, beta, epsilon)
'''


@pytest.mark.parametrize("mode", ESCAPE_MODES)
@pytest.mark.parametrize("forger", sorted(FORGERS))
def test_no_score_is_forged_from_the_graders_files_or_another_copy(tmp_path, limits, graded, in_mode, second_copies,
                                                                   monkeypatch, mode, forger):
    mode = in_mode(mode)
    select(monkeypatch, "manual_batch_norm")
    limits(cell=10, call=30)
    results, _ = graded(write_notebook(tmp_path, SETUP, FORGERS[forger]), allow_unsandboxed=mode is Isolation.NONE)
    assert results["status"] == "graded" and results["isolation"] == mode.value, results["error"]
    if mode is Isolation.NONE:        # the control: without isolation each forger gets full marks
        assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"], \
            messages(results, "manual_batch_norm")
    else:
        assert scores(results)["manual_batch_norm"] == 0, messages(results, "manual_batch_norm")


# --- a class graded in each mode: the same verdicts (grade-class --jobs 2, real grader processes) ------

NO_LANDLOCK = HOSTILE / "no_landlock.py"

KEEPS_A_SECRET = f'''\
import os, pathlib, time
pathlib.Path(os.environ["HOME"], "secret-solution.py").write_text({MANUAL_BN!r})
time.sleep(12)          # while the other worker looks for it
''' + MANUAL_BN

READS_OTHERS_SCRATCH = '''\
import glob, os, time
FOUND = []

def _look():
    """Another worker's secret-solution.py, in every place a scratch folder could be."""
    patterns = ["/tmp/*/secret-solution.py", "/tmp/*/*/secret-solution.py", "/tmp/*/*/*/secret-solution.py",
                "/var/tmp/**/secret-solution.py", "/dev/shm/**/secret-solution.py", "/proc/*/cwd/secret-solution.py",
                "/proc/*/root/tmp/work/secret-solution.py", "/run/**/secret-solution.py"]
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            if path.startswith(os.environ["HOME"]) or os.path.realpath(path).startswith(os.environ["HOME"]):
                continue
            try:
                return open(path).read()
            except OSError:
                pass
    return None

def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    if not FOUND:
        deadline = time.monotonic() + 12
        code = _look()
        while code is None and time.monotonic() < deadline:
            time.sleep(0.5)
            code = _look()
        namespace = {"np": np}
        if code:
            exec(code, namespace)
        FOUND.append(namespace.get("manual_batch_norm"))
    if FOUND[0] is None:
        return np.zeros_like(x)
    return FOUND[0](x, gamma, beta, epsilon)
'''

CLASS = {          # student -> cells; a- and b- are graded first, side by side (--jobs 2)
    "a-keeps-a-secret": (SETUP, KEEPS_A_SECRET),
    "b-reads-others-scratch": (SETUP, READS_OTHERS_SCRATCH),
    "c-honest": (SETUP, MANUAL_BN),
    **{f"d-{name.replace('_', '-')}": (SETUP, code) for name, code in FORGERS.items()},
}
CHEATS = [student for student in CLASS if student.startswith(("b-", "d-"))]


def grade_class(course, mode: str, *extra, cache) -> subprocess.CompletedProcess:
    """``python -m autograder grade-class`` of ``course`` in a subprocess, in ``mode``: as this machine
    is ("bwrap+landlock"), without bubblewrap ("landlock"), or without either ("none")."""
    env = {**os.environ, "BN_AUTOGRADER_CELL_SECONDS": "20", "BN_AUTOGRADER_CALL_SECONDS": "30"}
    command = [sys.executable, "-m", "autograder", "grade-class", "batchnorm", "--course-dir", str(course),
               "--jobs", "2", "--force", "--no-collect", "--cache-dir", str(cache), *extra]
    if mode != "bwrap+landlock":
        env["PATH"] = f"{failing_bwrap(course.parent / 'fake-bin')}{os.pathsep}{env['PATH']}"
    if mode == "none":
        command = [sys.executable, str(NO_LANDLOCK), *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=course)


def class_rows(course) -> dict:
    with open(course / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def class_isolation(course) -> set:
    return {json.loads(path.read_text())["isolation"] for path in (course / "grade-class").rglob("results.json")}


@pytest.mark.slow
def test_a_hostile_class_gets_the_same_verdicts_in_each_isolation_mode(tmp_path, second_copies):
    offer_for("bwrap+landlock")
    course = tmp_path / "course"
    for student, cells in CLASS.items():
        write_notebook(course / "submitted" / student / "batchnorm", *cells, name="batchnorm.ipynb")
    cache = tmp_path / "cache"
    verdicts = {}
    for mode in ("bwrap+landlock", "landlock"):
        done = grade_class(course, mode, cache=cache)
        assert done.returncode == 0, done.stderr[-3000:]
        assert class_isolation(course) == {mode}
        rows = class_rows(course)
        verdicts[mode] = {s: {k: v for k, v in row.items() if k != "message"} for s, row in rows.items()}
        manual = {s: float(row["manual_batch_norm"]) for s, row in rows.items()}
        assert manual["a-keeps-a-secret"] == manual["c-honest"] == FULL_MARKS["manual_batch_norm"], manual
        assert all(manual[s] == 0 for s in CHEATS), manual
        assert not any("WITHOUT isolation" in row["message"] for row in rows.values())
    assert verdicts["landlock"] == verdicts["bwrap+landlock"]

    refused = grade_class(course, "none", cache=cache)
    assert refused.returncode == 2 and "no isolation is available" in refused.stderr, refused.stderr[-3000:]
    assert verdicts["bwrap+landlock"] == {s: {k: v for k, v in row.items() if k != "message"}
                                         for s, row in class_rows(course).items()}     # nothing was graded

    # the control, with --allow-unsandboxed: recorded, marked, and the cheats do get their points
    unsandboxed = grade_class(course, "none", "--allow-unsandboxed", cache=cache)
    assert unsandboxed.returncode == 0, unsandboxed.stderr[-3000:]
    assert "GRADING WITHOUT ISOLATION" in unsandboxed.stderr
    assert "graded WITHOUT isolation (--allow-unsandboxed): " in unsandboxed.stdout
    assert class_isolation(course) == {"none"}
    rows = class_rows(course)
    assert all(row["message"].endswith("graded WITHOUT isolation (--allow-unsandboxed)") for row in rows.values())
    forged = [s for s in CHEATS if float(rows[s]["manual_batch_norm"]) == FULL_MARKS["manual_batch_norm"]]
    assert forged == CHEATS, {s: rows[s]["manual_batch_norm"] for s in CHEATS}


# --- as a plain user, without bubblewrap ---------------------------------------------------------------

PLAIN_USER = 65534


def _plain_user_can_run_python() -> str:
    """Why this machine cannot run the fallback as a plain user, or ""."""
    if os.geteuid() != 0:
        return ""                                   # this is a plain user already
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return "setpriv (util-linux) is not installed"
    # setpriv execs with root's capabilities still in hand: the test is whether that user's own
    # process may start the interpreter again, as the grader starts its worker
    again = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import numpy, autograder'], check=True)"
    done = subprocess.run([setpriv, f"--reuid={PLAIN_USER}", f"--regid={PLAIN_USER}", "--clear-groups",
                           sys.executable, "-c", again], capture_output=True, text=True)
    if done.returncode:
        return (f"uid {PLAIN_USER} cannot run {sys.executable} here (its base interpreter is in "
                f"{sys.base_prefix}): {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return ""


AS_A_PLAIN_USER = """\
import json, sys
import nbformat, numpy as np
from autograder.submission import Submission
from autograder.sandbox import Isolation
cells = ["import numpy as np", open(sys.argv[1]).read()]
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
nbformat.write(nb, "submission.ipynb")
with Submission.open("submission.ipynb", isolation=Isolation.LANDLOCK) as s:
    report = lambda name, **kw: json.loads(s.call_array(name, **kw).value.astype(np.uint8).tobytes())
    print(json.dumps({"reads": report("probe_read_all", paths=sys.argv[2:]),
                      "tcp": report("probe_connect", host="127.0.0.1", port=9),
                      "who": report("probe_who")}))
"""


def test_the_fallback_as_a_plain_user_reaches_nothing(tmp_path, second_copies):
    offer_for("landlock")
    why_not = _plain_user_can_run_python()
    if why_not:
        print(f"skipped: {why_not}")
        pytest.skip(why_not)
    folder = Path(tempfile.mkdtemp(prefix="bn-plain-user-"))      # pytest's tmp_path is root's, 0700
    try:
        os.chmod(folder, 0o755)
        bin_dir = failing_bwrap(folder / "bin")
        if os.geteuid() == 0:
            os.chown(folder, PLAIN_USER, PLAIN_USER)
        prefix = [] if os.geteuid() != 0 else [shutil.which("setpriv"), f"--reuid={PLAIN_USER}",
                                               f"--regid={PLAIN_USER}", "--clear-groups"]
        env = {**os.environ, "HOME": str(folder), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run([*prefix, sys.executable, "-c", AS_A_PLAIN_USER, str(HOSTILE / "probes.py"),
                               str(second_copies.reference), str(second_copies.source),
                               str(ROOT / "autograder/reference.py")],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all("error" in r for r in found["reads"].values()), found
    assert "error" in found["tcp"] and found["who"]["cap_effective"] == 0 and found["who"]["no_new_privs"] == 1
