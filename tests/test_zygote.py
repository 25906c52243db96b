"""The zygote (sandbox/zygote.py, zygote_main.py): workers forked from it are isolated from each
other and from it as fresh workers are, in every mode; a zygote that holds a thread is not used
(the log says so) and a worker starts fresh; a zygote that dies is replaced and costs only its
workers; a grader killed with -9 leaves nothing running or on disk; the switch turns it off."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autograder.errors import StudentCodeError
from autograder.sandbox import identity, process, zygote
from autograder.submission import Submission

from conftest import SETUP, offer_for, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cgroups")]

HOSTILE = Path(__file__).resolve().parent / "hostile"
MODES = ("landlock", "bwrap+landlock")     # the mode bwrap starts workers fresh (see the last test)

MORE_PROBES = '''
def probe_self():
    return _report({"fds": sorted(os.listdir("/proc/self/fd")), "pid": os.getpid(), "pgid": os.getpgid(0),
                    "sid": os.getsid(0), "uid": os.getuid(), "cgroup": open("/proc/self/cgroup").read(),
                    "cwd": os.getcwd(), "draw": float(np.random.rand()), "threads": len(os.listdir("/proc/self/task")),
                    "pids": _attempt(lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit())),
                    "status": {k: v.strip() for k, v in (line.split(":", 1) for line in
                               open("/proc/self/status").read().splitlines()) if k.startswith(("Cap", "NoNew"))}})


def probe_signal_all(pids):
    return _report({str(p): _attempt(lambda p=p: os.kill(int(p), 0)) for p in pids})
'''


def decode_report(answer):
    return json.loads(answer.value.astype(np.uint8).tobytes())


def descendants(pid) -> list:
    """``pid``'s processes below it, as the grader sees them."""
    children = {}
    for entry in identity.processes():
        children.setdefault(entry.parent, []).append(entry.pid)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def still_running(pids, wait: float = 30.0) -> list:
    """Those of ``pids`` still running (zombies aside) once they have had up to ``wait`` seconds to end."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    return [p for p in pids if (entry := identity.process(p)) is not None and entry.state != "Z"]


def zygote_pids() -> list:
    """Every process of this grader's zygotes (bwrap's and the zygote's own under bubblewrap)."""
    pids = []
    for z in list(zygote._zygotes.values()):
        pids.append(z.process.pid)
        pids += [p for p in descendants(z.process.pid)]
    return pids



@pytest.mark.parametrize("mode", MODES)
def test_two_forked_workers_are_isolated_from_each_other_and_from_the_zygote(mode, tmp_path, limits):
    offer_for(mode)
    probes = (HOSTILE / "probes.py").read_text() + MORE_PROBES
    limits_ = limits(cell=10, call=30)
    assert limits_.zygote
    with Submission.open(write_notebook(tmp_path / "a", SETUP, probes), limits_, isolation=mode) as a, \
            Submission.open(write_notebook(tmp_path / "b", SETUP, probes), limits_, isolation=mode) as b:
        assert not a.cell_errors() and not b.cell_errors()
        assert a._process.forked and b._process.forked
        assert a.timings["workers_forked"] == 1 and "workers_fresh" not in a.timings
        me_a, me_b = decode_report(a.call_array("probe_self")), decode_report(b.call_array("probe_self"))
        secret = f"{me_a['cwd']}/secret.py" if mode == "landlock" else "/tmp/secret.py"
        assert "ok" in decode_report(a.call_array("probe_write", paths=[secret]))[secret]
        host_a, host_b = a._process.process.pid, b._process.process.pid
        mine = {host_b, *descendants(host_b)}
        others = [p for p in (host_a, *descendants(host_a), *zygote_pids(), os.getpid()) if p not in mine]
        reads = decode_report(b.call_array("probe_read_all", paths=[
            secret, *(f"/proc/{p}/{what}" for p in others for what in ("environ", "mem", "maps"))]))
        scratch_a = [me_a["cwd"]] if mode == "landlock" else []       # under bubblewrap each has its own /tmp/work
        listing = decode_report(b.call_array("probe_list_all", paths=[*scratch_a, *(f"/proc/{p}/fd" for p in others)]))
        signals = decode_report(b.call_array("probe_signal_all", pids=others))
        traces = decode_report(b.call_array("probe_ptrace", pids=others))
        groups = {}
        for name, s in (("a", a), ("b", b)):
            worker = s._process
            groups[name] = [str(d) for d in worker.group.dirs]
            assert {worker.process.pid, *descendants(worker.process.pid)} <= set(worker.group.pids())
    assert me_a["uid"] != me_b["uid"]
    # Without bubblewrap, where the uid may not reach Python, the worker keeps CAP_DAC_READ_SEARCH alone.
    keeps_read_search = os.geteuid() == 0 and not all(map(process._everyone_can_read,
                                                          [sys.executable, *process.allowed().read_only]))
    for me in (me_a, me_b):
        assert me["pgid"] == me["sid"] == me["pid"]                    # its own session and group
        assert me["fds"] == ["0", "1", "2", "3", "4", "5"], me["fds"]     # null x3, its two pipes, the listing
        assert me["threads"] == 1
        status = me["status"]                       # no capability left (as a fresh worker), none to gain
        kept = mode == "landlock" and keeps_read_search
        assert status["CapEff"] == status["CapPrm"] == ("0000000000000004" if kept else "0000000000000000"), status
        assert status["CapAmb"] == "0000000000000000", status
        assert status["NoNewPrivs"] == "1"
        if mode != "landlock":                      # bwrap's --cap-add CAP_SETUID, CAP_SETGID: a fresh worker's
            assert status["CapBnd"] == "00000000000000c0", status
    assert set(groups["a"]).isdisjoint(groups["b"])    # each its own cgroup, holding all its processes
    assert me_a["draw"] != me_b["draw"]            # NumPy's state reseeded after the fork
    if mode == "landlock":
        assert me_a["cwd"] != me_b["cwd"] and "bn-autograder" in me_a["cgroup"]
    else:                                           # its own PID namespace: pid 2 under its init
        assert me_a["pid"] == me_b["pid"] == 2 and me_b["pids"]["ok"] == [1, 2], me_b["pids"]
        assert me_a["cgroup"].strip().endswith("::/")     # its own cgroup namespace
    leaks = {path: r for path, r in reads.items() if "error" not in r and "bn-autograder" not in path}
    assert not leaks, leaks                       # the secret, /proc/A, /proc/zygote: nothing read
    assert all("error" in r for r in listing.values()), listing
    assert all("error" in r for r in signals.values()), signals
    assert all("error" in r for r in traces.values()), traces


LATE_THREAD = '''\
"""Imported by the zygote (a test): starts a thread in it after its first fork."""
import os
import threading


def _start():
    threading.Thread(target=threading.Event().wait, daemon=True).start()


os.register_at_fork(after_in_parent=_start)
'''


def test_a_zygote_with_a_thread_at_fork_time_refuses_and_the_worker_starts_fresh(tmp_path, limits, monkeypatch,
                                                                                   caplog):
    offer_for("landlock")
    zygote.close_all()
    monkeypatch.setattr(zygote, "PRELOAD", (*zygote.PRELOAD, "late_thread"))
    launcher = process.zygote_launcher

    def with_a_late_thread(shape):
        make = launcher(shape)

        def launch(variables):
            started = make(variables)
            (started.code / "late_thread.py").write_text(LATE_THREAD)     # beside zygote_main.py: importable
            return started
        return launch
    monkeypatch.setattr(process, "zygote_launcher", with_a_late_thread)
    notebook = write_notebook(tmp_path, SETUP, "x = np.ones(3).sum()")
    try:
        with Submission.open(notebook, limits(), isolation="landlock") as first:
            assert not first.cell_errors() and first._process.forked
        with Submission.open(notebook, limits(), isolation="landlock") as second:
            assert not second.cell_errors()
            assert not second._process.forked and second.isolation == "landlock"
            assert second.timings["workers_fresh"] == 1
    finally:
        zygote.close_all()
    assert "did not fork" in caplog.text and "2 threads" in caplog.text


def test_a_zygote_whose_imports_start_a_thread_is_not_used(tmp_path, limits, monkeypatch, caplog):
    """Without the thread caps OpenBLAS starts its pool when the zygote imports NumPy: the zygote is
    not used, and each worker starts fresh, still confined."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("OpenBLAS starts no pool on one CPU")
    offer_for("landlock")
    zygote.close_all()
    uncapped = process.worker_environment

    def without_caps(*args, **kwargs):
        env = uncapped(*args, **kwargs)
        return {k: v for k, v in env.items() if k not in process.thread_environment(1)}
    monkeypatch.setattr(process, "worker_environment", without_caps)
    monkeypatch.setattr(zygote, "_told", set())
    try:
        with Submission.open(write_notebook(tmp_path, SETUP, "x = np.ones(3).sum()"), limits(),
                             isolation="landlock") as s:
            assert not s.cell_errors()
            assert not s._process.forked and s.isolation == "landlock"
    finally:
        zygote.close_all()
    assert "did not start cleanly" in caplog.text and "'threads': 1" not in caplog.text


@pytest.mark.parametrize("mode", ["landlock", "bwrap+landlock"])
def test_a_zygote_that_dies_kills_its_workers_and_is_replaced(mode, tmp_path, limits):
    offer_for(mode)
    notebook = write_notebook(tmp_path, SETUP, "x = 1", "def f():\n    return np.ones(2)\n")
    with Submission.open(notebook, limits(), isolation=mode) as s:
        assert not s.cell_errors() and s._process.forked
        (first,) = [z for z in zygote._zygotes.values() if z.shape.bubblewrap == (mode != "landlock")]
        worker = s._process.process
        os.kill(first.pid, signal.SIGKILL)     # the zygote itself; its children die with it (PR_SET_PDEATHSIG)
        assert worker.wait(timeout=30) == -signal.SIGKILL and worker.zygote_died
        while s._process.group.pids():            # under bubblewrap its namespace's init ends it just after
            time.sleep(0.01)
        with pytest.raises(StudentCodeError):
            s.call_array("f")
        failure = s.grader_failure()            # the grader's side: never a grade
        assert failure is not None and "zygote" in str(failure)
    with Submission.open(notebook, limits(), isolation=mode) as s:
        assert not s.cell_errors() and s._process.forked
        assert first not in zygote._zygotes.values()


GRADER = textwrap.dedent('''\
    import os, sys, time
    from autograder.sandbox import zygote
    from autograder.settings import from_environ
    from autograder.submission import Submission
    s = Submission.open(sys.argv[1], from_environ().limits, isolation=sys.argv[2])
    assert not s.cell_errors() and s._process.forked
    z = next(iter(zygote._zygotes.values()))
    print(s._process.process.pid, z.process.pid, z.folder or "", flush=True)
    time.sleep(600)
''')


@pytest.mark.parametrize("mode", ["landlock", "bwrap+landlock"])
def test_a_grader_killed_with_minus_nine_leaves_nothing_running_or_on_disk(mode, tmp_path):
    offer_for(mode)
    notebook = write_notebook(tmp_path, SETUP, "x = 1")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    grader = subprocess.Popen([sys.executable, "-c", GRADER, str(notebook), mode], stdout=subprocess.PIPE, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        said = grader.stdout.readline().split()
        assert len(said) >= 2, grader.stderr.read() if grader.poll() is not None else "no answer"
        worker, zygote_pid, folder = (said + [""])[:3]
        left = [int(worker), int(zygote_pid)]
    finally:
        grader.kill()
        grader.wait()
    assert not still_running(left)
    identity.sweep_orphan_folders()             # what the next grader process does first (sweep_orphans)
    assert not folder or not Path(folder).exists()


def test_the_switch_starts_every_worker_fresh(tmp_path, limits, monkeypatch):
    offer_for("landlock")
    monkeypatch.setenv("BN_AUTOGRADER_ZYGOTE", "0")
    with Submission.open(write_notebook(tmp_path, SETUP, "x = 1"), limits(), isolation="landlock") as s:
        assert not s.limits.zygote
        assert not s.cell_errors() and not s._process.forked
        assert s.timings["workers_fresh"] == 1 and "workers_forked" not in s.timings


def test_in_the_mode_bwrap_workers_start_fresh(tmp_path, limits):
    """Without seccomp, workers forked into the zygote's one user namespace would share each uid's
    keyrings from one student to the next: there, every worker starts fresh, with a namespace of its own."""
    offer_for("bwrap")
    with Submission.open(write_notebook(tmp_path, SETUP, "x = 1"), limits(), isolation="bwrap") as s:
        assert not s.cell_errors() and not s._process.forked and s.isolation == "bwrap"
        assert s.timings["workers_fresh"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_worker_that_cannot_set_itself_up_sets_its_zygote_aside_and_starts_fresh(mode, tmp_path, limits,
                                                                                            monkeypatch, caplog):
    offer_for(mode)
    zygote.close_all()
    original = process.SandboxedProcess._fork_from_zygote

    def with_a_broken_request(self, hide, plain):
        real = zygote.Zygote.fork
        monkeypatch.setattr(zygote.Zygote, "fork", lambda z, request, *a: real(z, dict(request, cwd="/nowhere"), *a))
        try:
            return original(self, hide, plain)
        finally:
            monkeypatch.setattr(zygote.Zygote, "fork", real)
    monkeypatch.setattr(process.SandboxedProcess, "_fork_from_zygote", with_a_broken_request)
    try:
        with Submission.open(write_notebook(tmp_path, SETUP, "x = 1"), limits(), isolation=mode) as s:
            assert not s.cell_errors() and not s._process.forked        # no student code had run: fresh
            assert s.timings == {**s.timings, "workers_forked": 1, "workers_fresh": 1}
            assert s.grader_failure() is None
        assert not any(z.usable for z in zygote._zygotes.values())
        assert "could not set itself up" in caplog.text and "/nowhere" in caplog.text
    finally:
        zygote.close_all()


THREAD_PROBE = '''
def probe_threads():
    import threadpoolctl
    pools = [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
    return np.array([min(pools), max(pools), len(os.listdir("/proc/self/task"))], float)
'''


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_worker_gets_its_thread_share_once_confined(mode, tmp_path, limits):
    """The zygote imports NumPy with one BLAS thread (a fork is safe only from one); a grader process
    whose share is two threads still forks, and its worker's pools get two, after it is confined."""
    offer_for(mode)
    limits_ = replace(limits(), threads=2)
    with Submission.open(write_notebook(tmp_path, "import numpy as np\nimport os\n", THREAD_PROBE), limits_,
                         isolation=mode) as s:
        assert not s.cell_errors() and s._process.forked and s.isolation == mode
        fewest, most, threads = s.call_array("probe_threads").value
    assert fewest == most == 2 and threads >= 2


def test_a_grader_process_at_the_end_of_its_input_exits_at_once_having_closed_its_zygote(tmp_path):
    """server.exit_at_once skips the interpreter's teardown (over a second with TensorFlow loaded), not
    the exit handlers: the process ends with status 0, and its zygote ends with it (a plain zygote's
    folder removed by the handler; under bubblewrap the zygote has none)."""
    from autograder.classroom.server import GRADER, GraderProcess
    from autograder.sandbox import choose_isolation
    from autograder.settings import Settings
    mode = choose_isolation(allow_unsandboxed=False)
    if mode.bubblewrap and not process._zygote_serves(mode):
        pytest.skip(f"no zygote serves the mode {mode.value} here")
    grader = GraderProcess(grader=GRADER, settings=Settings(), log_path=tmp_path / "grader.log")
    assert grader.start() is None
    try:
        started = descendants(grader.proc.pid)      # the zygote is started before the grader is loaded
        assert any("zygote_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                   for p in started if Path(f"/proc/{p}/cmdline").exists())
        pid = grader.proc.pid
    finally:
        grader.stop()
    assert grader.proc.returncode == 0
    assert not list(Path(tempfile.gettempdir()).glob(f"{identity.SCRATCH_PREFIX}{pid}-*"))
    # a zygote still importing reads its end of the socket only after its imports: wait, bounded
    assert not still_running(started)
