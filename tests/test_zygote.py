"""SPIKE (issue 26): two students' workers forked at once by the zygote (Landlock mode,
BN_AUTOGRADER_ZYGOTE=1) are isolated from each other and from the zygote as fresh workers are:
separate uids, process groups, cgroups and scratch; neither reads, traces or signals the other or
the zygote; each holds only its own pipes; each has its own random state."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from autograder.sandbox import zygote
from autograder.sandbox.isolation import Isolation
from autograder.submission import Submission

from conftest import SETUP, offer_for, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cgroups")]

HOSTILE = Path(__file__).resolve().parent / "hostile"


def decode_report(answer):
    return json.loads(answer.value.astype(np.uint8).tobytes())

MORE_PROBES = '''
def probe_self():
    return _report({"fds": sorted(os.listdir("/proc/self/fd")), "pid": os.getpid(), "pgid": os.getpgid(0),
                    "sid": os.getsid(0), "uid": os.getuid(), "cgroup": open("/proc/self/cgroup").read(),
                    "cwd": os.getcwd(), "draw": float(np.random.rand()), "threads": len(os.listdir("/proc/self/task"))})


def probe_signal_all(pids):
    return _report({str(p): _attempt(lambda p=p: os.kill(int(p), 0)) for p in pids})
'''


def test_two_forked_workers_are_isolated_from_each_other_and_from_the_zygote(tmp_path, limits, monkeypatch):
    mode = offer_for("landlock") and Isolation.LANDLOCK
    monkeypatch.setenv(zygote.ENABLE_VARIABLE, "1")
    probes = (HOSTILE / "probes.py").read_text() + MORE_PROBES
    limits_ = limits(cell=10, call=30)
    with Submission.open(write_notebook(tmp_path / "a", SETUP, probes), limits_, isolation=mode) as a, \
            Submission.open(write_notebook(tmp_path / "b", SETUP, probes), limits_, isolation=mode) as b:
        assert not a.cell_errors() and not b.cell_errors()
        assert a._process.forked and b._process.forked
        parent = zygote._zygote.process.pid
        me_a, me_b = decode_report(a.call_array("probe_self")), decode_report(b.call_array("probe_self"))
        pid_a = a._process.process.pid
        secret = f"{me_a['cwd']}/secret.py"
        assert "ok" in decode_report(a.call_array("probe_write", paths=[secret]))[secret]
        reads = decode_report(b.call_array("probe_read_all", paths=[
            secret, f"/proc/{pid_a}/environ", f"/proc/{pid_a}/mem", f"/proc/{pid_a}/cmdline",
            f"/proc/{parent}/environ", f"/proc/{parent}/mem", f"/proc/{parent}/maps"]))
        listing = decode_report(b.call_array("probe_list_all", paths=[me_a["cwd"], f"/proc/{pid_a}/fd"]))
        signals = decode_report(b.call_array("probe_signal_all", pids=[pid_a, parent, os.getpid()]))
        traces = decode_report(b.call_array("probe_ptrace", pids=[pid_a, parent]))
    assert me_a["uid"] != me_b["uid"] and me_a["cwd"] != me_b["cwd"]
    for me in (me_a, me_b):
        assert me["pgid"] == me["sid"] == me["pid"] != parent           # its own session and group
        assert me["fds"] == ["0", "1", "2", "3", "4", "5"], me["fds"]     # null x3, its two pipes, the listing
        assert me["threads"] == 1
    assert me_a["cgroup"] != me_b["cgroup"] and "bn-autograder" in me_a["cgroup"]
    assert me_a["draw"] != me_b["draw"]            # NumPy's state reseeded after the fork
    assert all("error" in r for r in reads.values()), reads
    assert all("error" in r for r in listing.values()), listing
    assert all("error" in r for r in signals.values()), signals
    assert all("error" in r for r in traces.values()), traces
    json.dumps([reads, signals])                   # plain data only
    assert np.isfinite(me_a["draw"])
    assert os.getpid() != parent


def test_a_zygote_with_a_thread_is_not_used_and_the_log_says_so(tmp_path, limits, monkeypatch, caplog):
    """Without the thread caps OpenBLAS starts its pool when the zygote imports NumPy: the zygote is
    refused and each worker starts fresh, still confined."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("OpenBLAS starts no pool on one CPU")
    mode = offer_for("landlock") and Isolation.LANDLOCK
    monkeypatch.setenv(zygote.ENABLE_VARIABLE, "1")
    monkeypatch.setattr(zygote, "_zygote", None)
    from autograder.sandbox import process
    uncapped = process.worker_environment

    def without_caps(*args, **kwargs):
        env = uncapped(*args, **kwargs)
        return {k: v for k, v in env.items() if k not in process.thread_environment(1)}
    monkeypatch.setattr(process, "worker_environment", without_caps)
    with Submission.open(write_notebook(tmp_path, SETUP, "x = np.ones(3).sum()"), limits(), isolation=mode) as s:
        assert not s.cell_errors()
        assert not s._process.forked and s.isolation == "landlock"
    assert "no zygote" in caplog.text and "threads" in caplog.text


def test_a_zygote_that_dies_is_replaced_and_costs_only_the_worker(tmp_path, limits, monkeypatch):
    mode = offer_for("landlock") and Isolation.LANDLOCK
    monkeypatch.setenv(zygote.ENABLE_VARIABLE, "1")
    with Submission.open(write_notebook(tmp_path, SETUP, "x = 1"), limits(), isolation=mode) as s:
        assert not s.cell_errors() and s._process.forked
        first = zygote._zygote
        first.process.kill()                      # its children die with it (PR_SET_PDEATHSIG)
        first.process.wait()
        assert s._process.process.wait(timeout=5) == -9
    with Submission.open(write_notebook(tmp_path / "next", SETUP, "x = 1"), limits(), isolation=mode) as s:
        assert not s.cell_errors() and s._process.forked
        assert zygote._zygote is not first and zygote._zygote.alive()
