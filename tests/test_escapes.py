"""Escapes: what a student's code can see, read, write and send from its worker, in every mode that grades.

The isolation modes (sandbox/isolation.py): the escape probes and the forgers run in each mode:
bubblewrap with Landlock, bubblewrap alone (as on a kernel without Landlock), Landlock alone (the
fallback where bubblewrap cannot run) and, as a control that shows each probe would find what it
looks for, "none". In-process the mode is set by patching what the chooser found (``in_mode``); the
class runs, whose grader processes are subprocesses, make bubblewrap fail with a ``bwrap`` first on
PATH and hide Landlock with a seccomp filter (tests/hostile/no_landlock.py), as an old kernel would.
"""

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
    CHEATS,
    FORGERS,
    FULL_MARKS,
    GRADING_MODES,
    ROOT,
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

def verdicts_of(rows) -> dict:
    return {s: {k: v for k, v in row.items() if k != "message"} for s, row in rows.items()}


@pytest.mark.slow
def test_a_hostile_class_gets_the_same_verdicts_in_each_isolation_mode(hostile_class_in):
    verdicts = {}
    for mode in GRADING_MODES:
        graded = hostile_class_in(mode)            # shared with test_worker_boundary.py, graded once
        assert graded.done.returncode == 0, graded.done.stderr[-3000:]
        assert graded.isolation == {mode}
        rows = graded.rows
        verdicts[mode] = verdicts_of(rows)
        manual = {s: float(row["manual_batch_norm"]) for s, row in rows.items()}
        assert manual["a-keeps-a-secret"] == manual["c-honest"] == FULL_MARKS["manual_batch_norm"], manual
        assert all(manual[s] == 0 for s in CHEATS), manual
        assert not any("WITHOUT isolation" in row["message"] for row in rows.values())
    assert verdicts["landlock"] == verdicts["bwrap"] == verdicts["bwrap+landlock"]

    # without isolation (the escapes' students alone): refused, nothing graded
    refused = hostile_class_in("none")
    assert refused.done.returncode == 2 and "no isolation is available" in refused.done.stderr, \
        refused.done.stderr[-3000:]
    assert not (refused.course / "grades.csv").exists() and not refused.isolation        # nothing was graded

    # the control, with --allow-unsandboxed: recorded, marked, and the cheats do get their points
    unsandboxed = hostile_class_in("none", "--allow-unsandboxed")
    assert unsandboxed.done.returncode == 0, unsandboxed.done.stderr[-3000:]
    assert "GRADING WITHOUT ISOLATION" in unsandboxed.done.stderr
    assert "graded WITHOUT isolation (--allow-unsandboxed): " in unsandboxed.done.stdout
    assert unsandboxed.isolation == {"none"}
    rows = unsandboxed.rows
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
