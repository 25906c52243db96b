"""Hostile and broken submissions: nothing forged, nothing lost, nothing leaked, in every mode that grades.

Each test builds small notebooks with nbformat (a NumPy-only set-up cell keeps the worker's start
well under a second; keras is imported only where a model is built), grades them with short time
limits set through the environment (settings.from_environ), and checks that the hostile cell got a clear
message and a zero for what it affects while every other exercise was graded in full. The training
check is deselected: it has its own tests, and it only ever sees vetted model configurations.

Hostile cells that do not interfere share a notebook. Cells that get the worker killed come before
cells that only hit the soft time limit, because after a kill every remaining cell runs again.

The isolation modes (sandbox/isolation.py): most tests run in the best this machine offers
(bubblewrap + Landlock here). The escape probes and the forgers run in each mode: bubblewrap with
Landlock, bubblewrap alone (as on a kernel without Landlock), Landlock alone (the fallback where
bubblewrap cannot run) and, as a control that shows each probe would find what it looks for,
"none". In-process the mode is set by patching what the chooser found (``in_mode``); the class
runs, whose grader processes are subprocesses, make bubblewrap fail with a ``bwrap`` first on PATH
and hide Landlock with a seccomp filter (tests/hostile/no_landlock.py), as an old kernel would.
"""

import csv
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest

from autograder import grade, sandbox, settings, training
from autograder import synthetic_students as students
from autograder import submission as submission_module
from autograder.errors import ModelRefused
from autograder.models import cost, vet, view
from autograder.errors import SandboxUnavailable
from autograder.sandbox import Limits, process as sandbox_process
from autograder.sandbox.isolation import Isolation
from autograder.sandbox.cgroup import ResourceGroup
from autograder.exercises import BY_ID
from autograder.results import Result
from autograder.channel import Kind
from autograder.submission import StudentCodeError, Submission
from conftest import CHANNEL_TOOLS, GRADING_MODES, MANUAL_BN, OFFERED, SETUP, failing_bwrap, offer_for

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
# The exercises these notebooks answer (the other exercises' checks are deselected, see ``graded``).
GRADED = ("manual_batch_norm", "build_model_with_bn", "build_modern_cnn")
FULL_MARKS = {exercise: BY_ID[exercise].points for exercise in GRADED}

needs_bwrap = pytest.mark.skipif(not sandbox.bubblewrap_available(), reason="bubblewrap cannot run here")


def _cgroups_work() -> bool:
    group = ResourceGroup(Limits())
    group.remove()
    return group.active


needs_cgroup = pytest.mark.skipif(not _cgroups_work(), reason="no cgroup can be made here (not root?)")


# --- notebook parts ------------------------------------------------------------------------------

SETUP_KERAS = "import numpy as np\nimport keras\n"

# The model builders import keras themselves, so that a NumPy-only set-up cell can stay fast.
BUILD_WITH_BN = '''\
def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    import keras
    L = keras.layers
    return keras.Sequential([keras.Input(shape=input_shape),
        L.Conv2D(32, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(num_classes, activation="softmax")])
'''

BUILD_MODERN = '''\
def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    import keras
    L = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    def block(x, f):
        x = L.Conv2D(f, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        return L.Activation("relu")(x)
    for f, r in ((32, .2), (64, .3)):
        x = block(block(x, f), f)
        x = L.MaxPooling2D()(x)
        x = L.Dropout(r)(x)
    x = block(x, 128)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(.5)(x)
    return keras.Model(inputs, L.Dense(num_classes, activation="softmax")(x))
'''

# Runaway cells. These get the worker killed: they defeat the worker's SIGALRM time limit, so only
# the grader's hard deadline stops them.
IGNORES_SIGALRM = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
BLOCKS_SIGALRM = ("import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
                  "time.sleep(10**6)\n")
SWALLOWS_TIMEOUT = ("import time\nwhile True:\n    try:\n        time.sleep(10**6)\n"
                    "    except BaseException:\n        pass\n")
EXITS_HARD = "import os\nos._exit(3)\n"
# These stop at the worker's soft limit.
SLEEPS = "import time\ntime.sleep(10**6)\n"
LOOPS = "while True:\n    pass\n"
SLOW_IMPORT = ("import pathlib, sys\n"
               "pathlib.Path('/tmp/slow_module.py').write_text('import time\\ntime.sleep(10**6)\\n')\n"
               "sys.path.insert(0, '/tmp')\nimport slow_module\n")
PRINTS_2GB = ("import os, sys\nline = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(line)\n"
              "    sys.stderr.write(line)\nos.write(1, line.encode())\n")
SYS_EXIT = "import sys\nsys.exit('goodbye')\n"
IGNORES_TERM = ("import signal\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):\n"
                "    signal.signal(s, signal.SIG_IGN)\n")
MEMORY_BOMB = "hog = []\nwhile True:\n    hog.append(np.ones(1 << 24))\n"
ADDRESS_SPACE_BOMB = "hog = []\nwhile True:\n    hog.append(np.empty(1 << 27))\n"     # 1 GB at a time, untouched
FORK_BOMB = "import os\nwhile True:\n    os.fork()\n"
SPINNING_FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"


def strays(tag: str) -> str:
    """A cell that leaves processes behind, each running a command named by ``tag``."""
    return f'''\
import os, subprocess
subprocess.Popen(["sleep", "{tag}1"])
subprocess.Popen(["sleep", "{tag}2"], start_new_session=True)
subprocess.Popen(["sh", "-c", "trap '' TERM INT HUP; sleep {tag}3; true"])
if os.fork() == 0:                 # a double-forked daemon in its own session
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{tag}4"])
    os._exit(0)
'''


def notebook(folder: Path, *cells, name="submission.ipynb") -> Path:
    """A notebook of code cells (strings) and ready-made cells (dicts), written to folder/name."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


# --- grading helpers ---------------------------------------------------------------------------------

def grade_from_environ(path, **kwargs) -> dict:
    """grade_notebook under the settings the environment gives (the tests set short limits there,
    as an instructor would at the command line), as the results.json document."""
    result = grade.grade_notebook(path, dataclasses.replace(settings.from_environ(), **kwargs))
    return json.loads(result.to_json())      # what results.json holds (no NaN, plain JSON)


@pytest.fixture
def limits(monkeypatch):
    """set(cell=..., call=..., total=..., grace=..., memory_mb=...): short limits for this test."""
    def set_limits(cell=3, call=30, total=150, grace=2, memory_mb=None):
        for name, value in (("CELL_SECONDS", cell), ("CALL_SECONDS", call), ("TOTAL_SECONDS", total),
                            ("GRACE_SECONDS", grace), ("MEMORY_MB", memory_mb)):
            if value is None:
                monkeypatch.delenv(f"BN_AUTOGRADER_{name}", raising=False)
            else:
                monkeypatch.setenv(f"BN_AUTOGRADER_{name}", str(value))
        return settings.from_environ().limits
    return set_limits


def select(monkeypatch, *exercises):
    """Grade only the checks of ``exercises`` (their modules' names hold them)."""
    monkeypatch.setattr(grade, "PYTEST_ARGS", [*grade.PYTEST_ARGS, "-k", " or ".join(exercises)])


@pytest.fixture
def graded(monkeypatch):
    """graded(path, **kwargs) -> (results, the Submission the checks used), without the training check."""
    select(monkeypatch, *GRADED)
    opened = []

    class Recording(Submission):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(submission_module, "Submission", Recording)   # GradingRun.new_submission makes them all

    def run(path, **kwargs):
        opened.clear()
        results = grade_from_environ(path, **kwargs)
        return results, (opened[0] if opened else None)     # the first: grader_failure may open a probe
    return run


@pytest.fixture(autouse=True)
def cgroups(monkeypatch):
    """The cgroups the test's workers made, each as {"dirs": [...], "events": what its counters said
    just before it was removed}; every one of them must be gone when the test ends."""
    made = []
    original_init, original_remove = ResourceGroup.__init__, ResourceGroup.remove

    def tracking(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.record = {"dirs": list(self.dirs), "events": {}}
        made.append(self.record)

    def removing(self):
        for path in self.dirs:
            for name in ("pids.events", "memory.oom_control", "memory.events"):
                if (path / name).exists():
                    self.record["events"][name] = (path / name).read_text()
        original_remove(self)

    monkeypatch.setattr(ResourceGroup, "__init__", tracking)
    monkeypatch.setattr(ResourceGroup, "remove", removing)
    yield made
    left = [str(d) for group in made for d in group["dirs"] if d.exists()]
    assert not left, f"cgroups left behind: {left}"


def cgroup_counter(groups, file, key) -> int:
    """The largest ``key`` counter in ``file`` over the removed groups (pids.events max, oom_kill...)."""
    values = [0]
    for group in groups:
        for line in group["events"].get(file, "").splitlines():
            if line.split()[:1] == [key]:
                values.append(int(line.split()[1]))
    return max(values)


def contained(message) -> bool:
    """A fork bomb ends in one of these ways, depending on who wins the race for the CPU: fork fails
    (pids.max or RLIMIT_NPROC), the soft or the hard time limit, or the memory limit."""
    return any(m in message for m in ("Resource temporarily unavailable", "TimeoutError", "no answer within",
                                      "ran out of memory", "MemoryError"))


def checks(results) -> list:
    return [c for c in results["checks"] if c["exercise"] in GRADED]


def scores(results) -> dict:
    found = {}
    for check in checks(results):
        found[check["exercise"]] = found.get(check["exercise"], 0.0) + check["points"]
    return found


def messages(results, exercise) -> list:
    return [c["message"] for c in checks(results) if c["exercise"] == exercise]


def outcome(submission, index) -> str | None:
    """The final message of the notebook's cell ``index`` (None when it ran cleanly)."""
    found = [o.error for o in submission.outcomes if o.index == index]
    assert found, f"cell {index} was not run"
    return found[0]


def running_commands(*needles) -> list:
    """Command lines of live processes on this machine that contain any of ``needles``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(n in command for n in needles):
            found.append(f"{pid}: {command}")
    return found


def unique_tag() -> str:
    """Digits no other process on this machine has in its command line (a sleep duration)."""
    return "98" + str(uuid.uuid4().int)[:8]


def decode_report(answer):
    return json.loads(answer.value.astype(np.uint8).tobytes())


# --- configuration --------------------------------------------------------------------------------

def test_limits_come_from_the_environment(monkeypatch):
    for name in settings.BY_VARIABLE:
        monkeypatch.delenv(name, raising=False)
    default = settings.from_environ().limits
    assert (default.cell_seconds, default.call_seconds, default.total_seconds) == (30.0, 20.0, 240.0)
    monkeypatch.setenv("BN_AUTOGRADER_CELL_SECONDS", "2.5")
    monkeypatch.setenv("BN_AUTOGRADER_TOTAL_SECONDS", "60")
    monkeypatch.setenv("BN_AUTOGRADER_MEMORY_MB", "1024")
    monkeypatch.setenv("BN_AUTOGRADER_CALL_SECONDS", "soon")
    with pytest.warns(settings.SettingWarning, match="BN_AUTOGRADER_CALL_SECONDS"):
        limits = settings.from_environ().limits
    assert limits.cell_seconds == 2.5 and limits.total_seconds == 60.0
    assert limits.memory_bytes == 1 << 30 and isinstance(limits.memory_bytes, int)
    assert limits.call_seconds == default.call_seconds


# --- runaway code ---------------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_runaway_cells_hit_a_time_limit_and_cost_nothing_else(tmp_path, limits, graded):
    limits(cell=3, call=60, grace=2)
    cells = [SETUP, MANUAL_BN, IGNORES_SIGALRM, BLOCKS_SIGALRM, SWALLOWS_TIMEOUT, EXITS_HARD,
             SLEEPS, LOOPS, SLOW_IMPORT, PRINTS_2GB, SYS_EXIT, BUILD_WITH_BN, BUILD_MODERN]
    started = time.monotonic()
    results, submission = graded(notebook(tmp_path, *cells))
    elapsed = time.monotonic() - started

    assert results["status"] == "graded", results["error"]
    assert scores(results) == FULL_MARKS, [c["message"] for c in checks(results) if not c["passed"]]
    for index in (2, 3, 4):    # the worker's own limit is defeated: the grader's deadline kills it
        assert index in submission.skipped
        assert "no answer within 5 s" in outcome(submission, index)
    assert "exit code 3" in outcome(submission, 5)
    for index in (6, 7, 8):    # the worker's own limit
        assert outcome(submission, index).startswith(f"TimeoutError: time limit reached (cell {index + 1}")
    assert outcome(submission, 9) is None            # 2 GB of output went to /dev/null
    assert "SystemExit: goodbye" in outcome(submission, 10)
    # four killed attempts (about 5 s each) and three soft limits of 3 s, not ten minutes
    assert elapsed < 100, elapsed


@needs_bwrap
@pytest.mark.slow
def test_a_function_that_never_returns_costs_only_its_exercise(tmp_path, limits, graded):
    limits(cell=60, call=6, grace=2)
    hangs_hard = ("def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):\n"
                  "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                  "    while True:\n        pass\n")
    hangs_soft = "def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):\n    while True:\n        pass\n"
    started = time.monotonic()
    results, submission = graded(notebook(tmp_path, SETUP_KERAS, hangs_hard, BUILD_WITH_BN, hangs_soft))
    elapsed = time.monotonic() - started

    assert results["status"] == "graded", results["error"]
    assert scores(results) == {**FULL_MARKS, "manual_batch_norm": 0.0, "build_modern_cnn": 0.0}
    first, *later = messages(results, "manual_batch_norm")
    assert "calling manual_batch_norm: no answer within 8 s" in first
    assert later and all("ran out of time once" in m for m in later)
    assert all("did not return within 6 s" in m for m in messages(results, "build_modern_cnn"))
    assert set(submission.timed_out) == {"manual_batch_norm", "build_modern_cnn"}
    # each function ran out of time once, not once per check
    assert elapsed < 90, elapsed


# --- containment: memory, processes, signals ---------------------------------------------------------

@pytest.mark.slow
@needs_bwrap
@needs_cgroup
def test_a_memory_bomb_is_killed_by_the_memory_cgroup_and_no_process_outlives_grading(
        tmp_path, limits, graded, cgroups):
    limits(cell=10, call=20, grace=2, memory_mb=512)
    tag = unique_tag()
    results, submission = graded(notebook(tmp_path, SETUP, MANUAL_BN, IGNORES_TERM, strays(tag),
                                          MEMORY_BOMB, EXITS_HARD, strays(tag)))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert cgroups and all(group["dirs"] for group in cgroups), "the workers had no cgroup"
    assert "ran out of memory (limit 512 MiB)" in outcome(submission, 4)
    assert cgroup_counter(cgroups, "memory.oom_control", "oom_kill") >= 1
    assert "exit code 3" in outcome(submission, 5)
    assert not running_commands(tag), "a student's process outlived its grading"


@needs_bwrap
@needs_cgroup
@pytest.mark.slow
def test_fork_bombs_are_stopped_by_pids_max(tmp_path, limits, graded, cgroups):
    limits(cell=3, call=20, grace=2, memory_mb=3072)     # room for 512 forked Pythons: pids.max stops them
    results, submission = graded(notebook(tmp_path, SETUP, MANUAL_BN, FORK_BOMB, SPINNING_FORK_BOMB))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert contained(outcome(submission, 2)) and contained(outcome(submission, 3))
    assert cgroup_counter(cgroups, "pids.events", "max") >= 1, "pids.max never stopped a fork"


@pytest.mark.slow
@needs_bwrap
def test_without_a_cgroup_rlimits_contain_the_same_bombs(tmp_path, limits, graded, monkeypatch):
    monkeypatch.setattr(ResourceGroup, "ROOTS_V1", {"memory": "/nonexistent/memory", "pids": "/nonexistent/pids"})
    monkeypatch.setattr(ResourceGroup, "ROOT_V2", "/nonexistent")
    limits(cell=3, call=20, grace=2, memory_mb=1024)
    tag = unique_tag()
    results, submission = graded(notebook(tmp_path, SETUP, MANUAL_BN, strays(tag), ADDRESS_SPACE_BOMB, FORK_BOMB))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert "MemoryError" in outcome(submission, 3)               # RLIMIT_AS
    assert contained(outcome(submission, 4))                     # RLIMIT_NPROC: the worker is nobody
    assert not running_commands(tag)


@pytest.mark.slow
@needs_cgroup
def test_without_bubblewrap_the_cgroup_still_ends_every_process(tmp_path, limits, graded, in_mode, cgroups):
    in_mode("landlock")
    limits(cell=3, call=20, grace=2, memory_mb=3072)
    tag = unique_tag()
    results, submission = graded(notebook(tmp_path, SETUP, MANUAL_BN, strays(tag), FORK_BOMB))
    assert results["isolation"] == "landlock"
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert contained(outcome(submission, 3))
    assert cgroup_counter(cgroups, "pids.events", "max") >= 1
    assert not running_commands(tag)


@needs_bwrap
def test_processes_end_with_their_request_and_at_the_latest_with_the_sandbox(tmp_path, limits, monkeypatch):
    limits_ = limits(cell=5)
    tag = unique_tag()
    path = notebook(tmp_path, SETUP, strays(tag), MANUAL_BN)
    with Submission.open(path, limits_) as s:
        assert not s.cell_errors()
        assert not running_commands(tag), "the worker did not end the cell's processes"
    # Without the worker's help and without a cgroup, the PID namespace alone still ends them.
    monkeypatch.setattr(ResourceGroup, "ROOTS_V1", {"memory": "/nonexistent/memory", "pids": "/nonexistent/pids"})
    monkeypatch.setattr(ResourceGroup, "ROOT_V2", "/nonexistent")
    original = sandbox_process.bubblewrap_argv

    def without_ending_strays(*args, **kwargs):
        argv = original(*args, **kwargs)
        at = argv.index("BN_AUTOGRADER_PRIVATE_PIDS")
        return argv[:at - 1] + argv[at + 2:]

    monkeypatch.setattr(sandbox_process, "bubblewrap_argv", without_ending_strays)
    with Submission.open(path, limits_) as s:
        assert not s.cell_errors()
        assert len(running_commands(tag)) >= 4, running_commands(tag)
    assert not running_commands(tag), "a student's process outlived its sandbox"


@needs_bwrap
def test_a_sandbox_that_cannot_start_is_the_graders_error_not_the_students(tmp_path, limits, monkeypatch):
    original = sandbox_process.bubblewrap_argv
    monkeypatch.setattr(sandbox_process, "bubblewrap_argv", lambda *a, **k: [*original(*a, **k)[:-1], "/nowhere/worker.py"])
    with Submission.open(notebook(tmp_path, SETUP, MANUAL_BN), limits()) as s:
        with pytest.raises(SandboxUnavailable, match="did not start.*/nowhere/worker.py"):
            s.call_array("manual_batch_norm", np.ones((2, 2)))
        started = time.monotonic()
        with pytest.raises(SandboxUnavailable):      # remembered: no cell is blamed, nothing is retried
            s.cell_errors()
        assert time.monotonic() - started < 1 and not s.skipped


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
    path = notebook(submission_dir, SETUP, (HOSTILE / "probes.py").read_text(), name="batchnorm.ipynb")
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
    results, _ = graded(notebook(tmp_path, SETUP, forge, cheat))
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
def test_escape_probes_find_read_and_send_nothing(tmp_path, limits, listeners, second_copies, mode):
    mode = offer_for(mode) and Isolation(mode)
    limits_ = limits(cell=10, call=30)
    probes = (HOSTILE / "probes.py").read_text()
    tag = unique_tag()
    host_targets = [Path("/tmp") / f"bn-escape-{tag}", Path("/var/tmp") / f"bn-escape-{tag}",
                    Path("/dev/shm") / f"bn-escape-{tag}", Path.home() / f"bn-escape-{tag}",
                    second_copies.home / f"bn-escape-{tag}", ROOT / f"bn-escape-{tag}"]
    with Submission.open(notebook(tmp_path / "a", SETUP, probes), limits_, isolation=mode) as a, \
            Submission.open(notebook(tmp_path / "b", SETUP, probes), limits_, isolation=mode) as b:
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
    results, _ = graded(notebook(tmp_path, SETUP, FORGERS[forger]), allow_unsandboxed=mode is Isolation.NONE)
    assert results["status"] == "graded" and results["isolation"] == mode.value, results["error"]
    if mode is Isolation.NONE:        # the control: without isolation each forger gets full marks
        assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"], \
            messages(results, "manual_batch_norm")
    else:
        assert scores(results)["manual_batch_norm"] == 0, messages(results, "manual_batch_norm")


# --- "neither": grading refuses, unless the instructor accepts the risk -----------------------------

def test_without_any_isolation_grade_refuses_and_says_what_to_install(tmp_path, limits, graded, in_mode, capsys):
    in_mode("none")
    limits(cell=5, call=10)
    path = notebook(tmp_path, SETUP, MANUAL_BN)
    results, submission = graded(path)
    assert_grader_error(results, "no isolation is available", "apt-get install bubblewrap", "5.13",
                        "--allow-unsandboxed")
    assert submission is None and results["isolation"] is None          # no worker was started
    assert grade.main([str(path), "--output", str(tmp_path / "results.json")]) == 1
    assert "no isolation is available" in json.loads((tmp_path / "results.json").read_text())["error"]


def test_without_any_isolation_grade_class_refuses_before_grading_anything(tmp_path, in_mode, capsys):
    from autograder.classroom import cli
    in_mode("none")
    course = tmp_path / "course"
    notebook(course / "submitted" / "ann" / "batchnorm", SETUP, MANUAL_BN, name="batchnorm.ipynb")
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "no isolation is available" in err and "--allow-unsandboxed" in err, err
    assert not (course / "grade-class").exists() and not (course / "grades.csv").exists()


def test_allow_unsandboxed_grades_and_records_it(tmp_path, limits, graded, in_mode):
    in_mode("none")
    limits(cell=5, call=10)
    results, _ = graded(notebook(tmp_path, SETUP, MANUAL_BN), allow_unsandboxed=True)
    assert results["status"] == "graded" and results["isolation"] == "none"
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    from autograder.classroom import store
    assert store.message_for([], Result.from_dict(results)).endswith("graded WITHOUT isolation (--allow-unsandboxed)")


def test_allow_unsandboxed_travels_to_every_path_that_grades():
    from autograder.classroom import cli, cluster
    from autograder.nbgrader_bridge import IsolatedGrade
    allowed = settings.from_environ(flags=cli._parser().parse_args(["batchnorm", "--allow-unsandboxed"]))
    assert allowed.allow_unsandboxed and not settings.from_environ().allow_unsandboxed    # the command line
    sent = json.loads(json.dumps(allowed.to_dict()))                     # the grader processes' start
    assert settings.Settings.from_dict(sent).allow_unsandboxed is True
    assert settings.Settings.from_dict(cluster._remote_settings(allowed)).allow_unsandboxed is True  # the Dask payload
    assert settings.Settings.from_dict(settings.from_environ().to_dict()).allow_unsandboxed is False
    assert IsolatedGrade(allow_unsandboxed=True)._settings().allow_unsandboxed          # nbgrader's config
    assert not IsolatedGrade()._settings().allow_unsandboxed


# --- a worker that cannot confine itself never runs student code ------------------------------------

@pytest.mark.skipif(not OFFERED.confinement, reason=f"no Landlock + seccomp here: {OFFERED.confinement_reason}")
def test_a_worker_that_cannot_confine_itself_is_the_graders_error(tmp_path, limits, monkeypatch):
    limits_ = limits(cell=5, call=10)
    tag = unique_tag()
    marker = Path("/tmp") / f"bn-unconfined-{tag}"
    original = sandbox_process.SandboxedProcess._plain_command

    def broken_allow_list(self, hide=()):   # a path Landlock cannot open: confine() raises
        argv, cwd, env, passed, unprivileged = original(self, hide)
        env[sandbox_process.CONFINE_VARIABLE] = json.dumps({"read_only": ["/no\0where"], "read_write": []})
        return argv, cwd, env, passed, unprivileged

    monkeypatch.setattr(sandbox_process.SandboxedProcess, "_plain_command", broken_allow_list)
    cell = f"open({str(marker)!r}, 'w').write('ran unconfined')\n"
    with Submission.open(notebook(tmp_path, SETUP, cell, MANUAL_BN), limits_, isolation=Isolation.LANDLOCK) as s:
        with pytest.raises(SandboxUnavailable, match="could not apply its landlock isolation"):
            s.call_array("manual_batch_norm", np.ones((2, 2)))
    assert not marker.exists()


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
def test_a_hostile_class_gets_the_same_verdicts_without_bubblewrap_and_none_is_refused(tmp_path, second_copies):
    offer_for("bwrap+landlock")
    course = tmp_path / "course"
    for student, cells in CLASS.items():
        notebook(course / "submitted" / student / "batchnorm", *cells, name="batchnorm.ipynb")
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


def test_the_fallback_as_a_plain_user_reads_and_sends_nothing(tmp_path, second_copies):
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


# --- lying results -------------------------------------------------------------------------------

LIARS = '''\
import time
import numpy

class AlwaysEqual:
    def __eq__(self, other):
        return True
    __hash__ = None

class Sneaky(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.shape(other), bool)

class Pretender:                       # claims to be an ndarray of floats
    __class__ = property(lambda self: np.ndarray)
    dtype = np.dtype("float64")
    shape = (2, 2)
    def __array__(self, dtype=None, copy=None):
        return np.zeros((2, 2), dtype=np.int32)

class Patcher:                         # its conversion monkeypatches NumPy in the worker
    def __array__(self, dtype=None, copy=None):
        numpy.allclose = numpy.array_equal = lambda *a, **k: True
        numpy.isfinite = lambda a: numpy.ones(numpy.shape(a), bool)
        return numpy.zeros(3)

class Stalls:
    def __array__(self, dtype=None, copy=None):
        time.sleep(10**6)

class Model:
    def __init__(self, text):
        self.text = text
    def to_json(self):
        return self.text

def always_equal(x): return AlwaysEqual()
def int_subclass(x): return np.zeros(np.shape(x), dtype=np.int64).view(Sneaky)
def pretender(x): return Pretender()
def patcher(x): return Patcher()
def stalls(x): return Stalls()
def not_a_number(x): return np.full(np.shape(x), np.nan)
def infinite(x): return np.full(np.shape(x), -np.inf)
def too_many(x): return np.zeros(10**8)
def broadcast(x): return np.broadcast_to(np.float64(1.0), (10**6, 10**6))
def grows_its_input(x):
    x.resize(10**7, refcheck=False)
    return np.zeros(3)
def deep_json(): return Model("[" * 100000 + "]" * 100000)
def list_json(): return Model("[1, 2]")
def after_patching(x): return np.asarray(x) * 2
'''


@pytest.mark.slow
@needs_bwrap
def test_lying_return_values_decode_to_plain_numbers(tmp_path, limits):
    limits_ = limits(cell=10, call=3, grace=2)
    x = np.arange(6.0).reshape(3, 2)
    with Submission.open(notebook(tmp_path, SETUP, LIARS), limits_) as s:
        assert not s.cell_errors()

        def refused(function, kind, *args, **kwargs):
            with pytest.raises(StudentCodeError) as raised:
                s.call_array(function, *args, **kwargs)
            assert raised.value.kind == kind, (function, raised.value.kind, str(raised.value))
            return str(raised.value)

        assert "not 'AlwaysEqual'" in refused("always_equal", "bad_return", x)
        sneaky = s.call_array("int_subclass", x)
        assert type(sneaky.value) is np.ndarray and sneaky.value.dtype == np.float64
        assert sneaky.dtype == "int64" and np.array_equal(sneaky.value, np.zeros((3, 2)))
        pretend = s.call_array("pretender", x)
        assert pretend.dtype == "Pretender" and np.array_equal(pretend.value, np.zeros((2, 2)))
        patched = s.call_array("patcher", x)
        assert np.array_equal(patched.value, np.zeros(3))
        assert np.array_equal(s.call_array("after_patching", x).value, x * 2)
        assert "time limit" in refused("stalls", "bad_return", x)
        assert np.isnan(s.call_array("not_a_number", x).value).all()
        assert np.isneginf(s.call_array("infinite", x).value).all()
        assert "more than the 300,000 allowed" in refused("too_many", "bad_return", x)
        assert "more than the 300,000 allowed" in refused("broadcast", "bad_return", x)
        assert "arguments unusable" in refused("grows_its_input", "bad_return", x)
        for function in ("deep_json", "list_json"):
            with pytest.raises(StudentCodeError, match="did not return a usable Keras model"):
                s.model_config(function)
        # the grader's own NumPy was never touched
        assert not np.allclose(np.zeros(2), np.ones(2))


@needs_bwrap
def test_monkeypatching_and_fake_modules_forge_no_point(tmp_path, limits, graded):
    limits(cell=5, call=20)
    honest = "def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):\n    return np.zeros_like(x)\n"
    hostile_setup = '''\
import builtins, sys, types
import numpy
for name in ("autograder", "autograder.checks", "autograder.reference", "pytest", "_pytest"):
    fake = types.ModuleType(name)
    fake.__path__ = []
    fake.approx = lambda *a, **k: 0
    fake.batch_norm = lambda x, *a, **k: numpy.zeros_like(x)
    sys.modules[name] = fake
numpy.allclose = numpy.array_equal = numpy.isclose = lambda *a, **k: True
numpy.isfinite = lambda a: numpy.ones(numpy.shape(a), bool)
numpy.testing.assert_allclose = lambda *a, **k: None
builtins.all = builtins.any = lambda *a, **k: True
builtins.abs = lambda v: 0
class Sneaky(numpy.ndarray):
    def __eq__(self, other):
        return numpy.ones(numpy.shape(other), bool)
    __hash__ = None
'''
    lying = ("def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):\n"
             "    return numpy.zeros_like(x).view(Sneaky)\n")
    honest_results, _ = graded(notebook(tmp_path / "honest", SETUP, honest))
    lying_results, _ = graded(notebook(tmp_path / "lying", SETUP, hostile_setup, lying))
    assert honest_results["status"] == lying_results["status"] == "graded"
    assert [c["passed"] for c in checks(lying_results)] == [c["passed"] for c in checks(honest_results)]
    assert scores(lying_results) == scores(honest_results)
    assert scores(lying_results)["manual_batch_norm"] <= 0.5


# --- forged answers on the protocol channel -------------------------------------------------------------

FORGER = CHANNEL_TOOLS + '''
def _answer(request_id, number):
    value = {"ndarray": "AAAAAAAARUA=", "shape": [1], "dtype": "float64"}    # [42.0]
    return json.dumps({"id": request_id, "kind": "done", "value": value, "args_after": [None]}) + "\\n"

def echo(x):
    return x

def forges_its_own_answer(x):
    _say(_answer(_request_id(), 42))
    return x

def forges_the_next_answers(x):
    me = _request_id()
    _say("".join(_answer(me + k, 42) for k in range(1, 6)))
    return x

def writes_garbage(x):
    _say("not json\\n" + "[" * 100000 + "\\n" + json.dumps({"id": "x"}) + "\\n\\xff\\xfe\\n{}\\n")
    _say(_answer(_request_id() - 1, 42))          # a stale id
    return x

def floods(x):
    chunk = "x" * (1 << 20)
    for _ in range(200):
        _say(chunk)
    return x

def closes_the_channel(x):
    for fd in _channels():
        os.close(fd)
    return x
'''


@pytest.mark.slow
@needs_bwrap
def test_forged_protocol_lines_are_never_taken_for_another_answer(tmp_path, limits):
    limits_ = limits(cell=3, call=5, grace=2)
    forged_at_top_level = "_say(_answer(1, 42) + _answer(2, 42) + 'garbage\\n' + _answer(1000, 42))\n"
    cut_line = "_say('{\"id\": ')\n"      # no newline: the worker's own answer starts on a line of its own
    forged_cell_answer = "_say('{\"id\": %d, \"ok\": true}\\n' % _request_id())\n"   # not well formed: a failed cell
    x = np.array([1.0, 2.0, 3.0])
    path = notebook(tmp_path, SETUP, FORGER, forged_at_top_level, MANUAL_BN, cut_line, forged_cell_answer)
    with Submission.open(path, limits_) as s:
        errors = {o.index: o.outcome for o in s.cell_errors()}
        assert set(errors) == {5} and errors[5].kind is Kind.MALFORMED, errors
        assert "wrote to the grader's channel" in errors[5].text
        assert np.array_equal(s.call_array("echo", x).value, x)
        # its own request: it can only say what it could have returned anyway
        assert s.call_array("forges_its_own_answer", x).value.tolist() == [42.0]
        assert np.array_equal(s.call_array("echo", x).value, x)
        assert np.array_equal(s.call_array("forges_the_next_answers", x).value, x)
        assert np.array_equal(s.call_array("echo", x + 1).value, x + 1)
        assert np.array_equal(s.call_array("writes_garbage", x).value, x)
        assert np.array_equal(s.call_array("manual_batch_norm", x[:, None]).value[:, 0],
                              (x - x.mean()) / np.sqrt(x.var() + 1e-5))
        assert np.array_equal(s.call_array("floods", x).value, x)       # 200 MB that answer nothing: skipped
        with pytest.raises(StudentCodeError, match="calling closes_the_channel"):
            s.call_array("closes_the_channel", x)
        assert np.array_equal(s.call_array("echo", x).value, x)     # a fresh worker answers again


# --- models with code in them ----------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_lambda_and_custom_layers_are_refused_and_never_run_in_the_grader(tmp_path, limits, graded, capfd):
    limits(cell=90, call=60)
    token = f"bn-hostile-{uuid.uuid4().hex}"
    marker = Path("/tmp") / token
    lambda_model = f'''\
def _spy(t):
    print("{token}")
    open("{marker}", "w").write("ran")
    return t

def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    L = keras.layers
    return keras.Sequential([keras.Input(shape=input_shape), L.Lambda(_spy),
        L.Conv2D(32, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(num_classes, activation="softmax")])
'''
    custom_layer = f'''\
@keras.saving.register_keras_serializable(package="student")
class Spy(keras.layers.Layer):
    def call(self, t):
        print("{token}")
        open("{marker}", "w").write("ran")
        return t

def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = Spy()(inputs)
    for f in (32, 32, 64, 64, 128):
        x = keras.layers.Conv2D(f, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''
    lies = "keras.Model.count_params = lambda self: 35210\nkeras.layers.Layer.count_params = lambda self: 0\n"
    results, _ = graded(notebook(tmp_path, SETUP_KERAS, lies, MANUAL_BN, lambda_model, custom_layer))
    printed = capfd.readouterr()

    assert results["status"] == "graded", results["error"]
    assert scores(results) == {**FULL_MARKS, "build_model_with_bn": 0.0, "build_modern_cnn": 0.0}
    assert all("Lambda layer" in m for m in messages(results, "build_model_with_bn"))
    assert all("Spy layer" in m and "custom" in m for m in messages(results, "build_modern_cnn"))
    assert not marker.exists(), "a layer's code ran outside the sandbox"
    assert token not in printed.out + printed.err


@pytest.mark.parametrize("layer", [
    {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wAAAA=="}}}},
    {"class_name": "Dense", "module": "os", "config": {"units": 1}},
    {"class_name": "Dense", "module": "keras.layers", "registered_name": "student>Dense", "config": {"units": 1}},
    {"class_name": "Spy", "module": "__main__", "registered_name": "student>Spy", "config": {}},
    {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {}}]}},
    "not a layer",
], ids=["lambda", "module-os", "registered", "custom-class", "nested-lambda", "malformed"])
def test_vet_config_refuses_code_carrying_layers(layer):
    config = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "module": "keras.layers", "config": {"batch_shape": [None, 4]}}, layer]}}
    with pytest.raises(ModelRefused):
        vet.vet_config(config)


# --- damaged notebooks -----------------------------------------------------------------------------------

def _write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda p: _write(p, nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(MANUAL_BN)]))[:60]),
     "not valid JSON"),
    (lambda p: _write(p, bytes(range(256)) * 40), "not UTF-8 text"),
    (lambda p: _write(p, "[1, 2, 3]"), "not a Jupyter notebook"),
    (lambda p: _write(p, '{"metadata": {}, "nbformat": 4}'), "not a Jupyter notebook"),
    (lambda p: _write(p, "[" * 200000 + "]" * 200000), "not a Jupyter notebook"),
    (lambda p: _write(p, '{"cells": [], "nbformat": 99, "nbformat_minor": 0, "metadata": {}}'), "damaged notebook"),
    (lambda p: p, "cannot read"),
    (lambda p: p.mkdir() or p, "cannot read"),
], ids=["truncated", "binary", "json-list", "no-cells", "deeply-nested", "future-version", "missing", "a-folder"])
def test_an_unreadable_notebook_is_a_clear_error_for_every_check(tmp_path, graded, make, reason):
    results, _ = graded(make(tmp_path / "batchnorm.ipynb"))
    assert results["status"] == "error" and reason in results["error"], results["error"]
    assert results["error_side"] == "student"
    assert results["total"] == 0 and checks(results)
    assert all(reason in c["message"] for c in checks(results)), checks(results)
    assert math.isclose(sum(c["max_points"] for c in checks(results)), sum(FULL_MARKS.values()))


@needs_bwrap
def test_a_notebook_without_cells_is_graded_as_empty(tmp_path, graded, limits):
    limits(cell=5, call=10)
    results, _ = graded(_write(tmp_path / "batchnorm.ipynb",
                               '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'))
    assert results["status"] == "graded", results["error"]
    assert results["total"] == 0 and checks(results)
    assert all("is not defined in the notebook" in c["message"] for c in checks(results))


def test_a_notebook_with_damaged_cells_is_the_students_error(tmp_path, graded):
    content = ('{"cells": [1, "two", {"cell_type": "code", "source": 5, "metadata": [], "outputs": []}], '
               '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    results, _ = graded(_write(tmp_path / "batchnorm.ipynb", content))
    assert (results["status"], results["error_side"]) == ("error", "student")
    assert "damaged notebook" in results["error"]
    assert results["total"] == 0 and all("damaged notebook" in c["message"] for c in checks(results))


def _nbgrader_cell(source, grade_id, *, grade=False, solution=False, locked=False, points=None):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                                 "schema_version": 3, "solution": solution,
                                 **({"points": points} if points is not None else {})}
    return cell


@needs_bwrap
def test_cells_are_run_by_role_not_by_position_or_name(tmp_path, graded, limits):
    limits(cell=3, call=20)
    wrong = MANUAL_BN.replace("keepdims=True)\n    return", "keepdims=True, ddof=1)\n    return")
    cells = [
        _nbgrader_cell(SETUP + "import time\n", "course_setup", locked=True),      # a locked cell
        nbformat.v4.new_markdown_cell("# Exercise 1"),
        _nbgrader_cell(wrong, "renamed_by_the_student", solution=True),
        _nbgrader_cell(MANUAL_BN, "manual_batch_norm_solution", solution=True),    # a duplicate: it wins
        _nbgrader_cell("import os\nos._exit(1)\nmanual_batch_norm = None\n", "test_manual_batch_norm",
                       grade=True, locked=True, points=4),                        # an edited test cell
        _nbgrader_cell("manual_batch_norm = None\n", "my_own_tests", grade=True, points=0),
        _nbgrader_cell("time.sleep(10**6)\n", "demo_training_race", locked=True),  # never run
        MANUAL_BN.replace("def manual_batch_norm", "def unused_helper"),           # no metadata at all
    ]
    results, submission = graded(notebook(tmp_path, *cells))
    assert results["status"] == "graded", results["error"]
    assert [index for index, _ in submission.cells] == [0, 2, 3, 7]
    assert not submission.cell_errors()
    assert scores(results) == {**FULL_MARKS, "build_model_with_bn": 0.0, "build_modern_cnn": 0.0}
    assert all("build_model_with_bn is not defined" in m for m in messages(results, "build_model_with_bn"))


def test_an_oversized_notebook_is_refused(tmp_path, graded, monkeypatch):
    from autograder import notebook as notebooks
    monkeypatch.setattr(notebooks, "MAX_NOTEBOOK_BYTES", 1000)
    results, _ = graded(notebook(tmp_path, SETUP, MANUAL_BN * 10))
    assert results["status"] == "error" and "MB that is read" in results["error"], results["error"]


# --- stability ---------------------------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_the_same_submission_gets_the_same_result_ten_times(tmp_path, graded, limits):
    limits(cell=1, call=20, grace=2)      # the worker imports NumPy before the cells: they are quick
    tag = unique_tag()
    wrong = MANUAL_BN.replace("keepdims=True)\n    return", "keepdims=True, ddof=1)\n    return")
    path = notebook(tmp_path, SETUP, wrong, EXITS_HARD, strays(tag), SLEEPS)
    seen = []
    for _ in range(10):
        results, _ = graded(path)
        seen.append([(c["id"], c["points"], c["message"]) for c in checks(results)])
    assert all(run == seen[0] for run in seen[1:]), [sum(p for _, p, _ in run) for run in seen]
    points = dict((check, p) for check, p, _ in seen[0])
    assert 0 < sum(points.values()) < FULL_MARKS["manual_batch_norm"]   # the ddof=1 mistake costs its check, no more
    assert points["manual_batch_norm::test_uses_the_biased_variance"] == 0
    assert not running_commands(tag)


@needs_bwrap
@pytest.mark.slow
def test_closing_a_submission_while_its_worker_starts_ends_the_worker_at_once(tmp_path, limits):
    """grade.run_checks starts the worker early (Submission.start_early); when no check ever uses it,
    closing must not wait for the notebook's cells to run out their time, and must leave nothing."""
    limits(cell=60, call=20, grace=2)
    tag = unique_tag()
    blocks = f'import subprocess\nsubprocess.run(["sleep", "{tag}"])\n'      # a cell busy for its whole limit
    submission = Submission.open(notebook(tmp_path, SETUP, blocks), settings.from_environ().limits)
    submission.start_early()
    deadline = time.monotonic() + 30
    while not running_commands(tag) and time.monotonic() < deadline:     # the cell is running
        time.sleep(0.05)
    assert running_commands(tag), "the worker never ran the blocking cell"
    started = time.monotonic()
    submission.close()
    assert time.monotonic() - started < 10, "close() waited for the blocking cell"
    assert not running_commands(tag)

# --- models too large for the grader: refused from their config, before Keras builds them -------------

def _layer(kind, **config):
    return {"class_name": kind, "module": "keras.layers", "config": config}


def sequential(input_shape, *layers) -> dict:
    """A Sequential config as to_json() writes it, from (kind, config) pairs."""
    return {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [
        _layer("InputLayer", batch_shape=[None, *input_shape]), *layers]}}


def conv_bn_relu(filters, padding="valid"):
    return [_layer("Conv2D", filters=filters, kernel_size=[3, 3], strides=[1, 1], padding=padding,
                   use_bias=True), _layer("BatchNormalization", axis=-1), _layer("ReLU")]


# The compute bomb: Conv2D 256 -> 1024 -> 1024, 3x3, each with BN and ReLU (it trained for
# 663 s in the grader), and a Dense layer of 400,000 units sent as JSON (16.8 GB in the grader).
COMPUTE_BOMB = sequential((28, 28, 1), *conv_bn_relu(256), *conv_bn_relu(1024), *conv_bn_relu(1024),
                          _layer("Flatten"), _layer("Dense", units=10, activation="softmax"))
MEMORY_BOMB_CONFIG = sequential((28, 28, 1), _layer("Flatten"), _layer("Dense", units=400_000),
                                _layer("Dense", units=10, activation="softmax"))
# Few weights, much compute: 256 filters at full resolution, three times.
SLOW_TO_TRAIN = sequential((28, 28, 1), *conv_bn_relu(256, "same"), *conv_bn_relu(256, "same"),
                           *conv_bn_relu(256, "same"), _layer("GlobalAveragePooling2D"),
                           _layer("Dense", units=10, activation="softmax"))


def test_the_memory_bomb_is_refused_for_its_parameters():
    with pytest.raises(ModelRefused, match=r"318,000,010 parameters, above the grader's cap of 7,099,700"):
        cost.check_bounds(MEMORY_BOMB_CONFIG)


def test_the_compute_bomb_is_refused_before_it_is_built():
    with pytest.raises(ModelRefused, match=r"parameters, above the grader's cap"):
        cost.check_bounds(COMPUTE_BOMB)


def test_a_model_too_slow_to_train_is_refused_for_the_training_check_only():
    found = cost.check_bounds(SLOW_TO_TRAIN)       # its structure can still be checked
    assert found.parameters < cost.MAX_PARAMETERS
    with pytest.raises(ModelRefused, match=r"GFLOP, above the grader's cap of 546 GFLOP"):
        cost.check_bounds(SLOW_TO_TRAIN, schedule=training.SCHEDULE)


def test_activations_too_large_for_a_batch_are_refused():
    wide = sequential((256, 256, 3), *conv_bn_relu(64, "same"), _layer("GlobalAveragePooling2D"),
                      _layer("Dense", units=10))
    with pytest.raises(ModelRefused, match=r"activations for a batch of 64 images take [\d,]+ MiB, "
                                                      r"above the grader's cap of 678 MiB"):
        cost.check_bounds(wide)


def test_a_model_without_an_input_shape_is_refused():
    config = sequential((28, 28, 1), _layer("Flatten"), _layer("Dense", units=10))
    del config["config"]["layers"][0]
    with pytest.raises(ModelRefused, match="no input shape"):
        cost.cost(config)


def test_a_layer_whose_output_would_be_empty_is_refused():
    config = sequential((4, 4, 1), *conv_bn_relu(8), *conv_bn_relu(8), *conv_bn_relu(8))
    with pytest.raises(ModelRefused, match="output would be empty"):
        cost.cost(config)


def test_functional_configs_are_followed_through_add_and_concatenate():
    def node(*sources):
        args = [{"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}} for name in sources]
        return [{"args": [args] if len(args) > 1 else args, "kwargs": {}}]

    def entry(name, kind, sources, **config):
        return {**_layer(kind, **config), "name": name, "inbound_nodes": node(*sources) if sources else []}

    config = {"class_name": "Functional", "config": {"name": "f", "layers": [
        entry("in", "InputLayer", (), batch_shape=[None, 8, 8, 3]),
        entry("a", "Conv2D", ("in",), filters=4, kernel_size=[3, 3], padding="same"),
        entry("b", "Conv2D", ("in",), filters=4, kernel_size=[3, 3], padding="same"),
        entry("sum", "Add", ("a", "b")),
        entry("cat", "Concatenate", ("sum", "a"), axis=-1),
        entry("flat", "Flatten", ("cat",)),
        entry("out", "Dense", ("flat",), units=5)],
        "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}
    found = cost.cost(config)
    assert (found.input_shape, found.output_shape) == ((8, 8, 3), (5,))
    assert found.parameters == 2 * (3 * 3 * 3 * 4 + 4) + 8 * 8 * 8 * 5 + 5


@pytest.mark.slow
def test_the_caps_are_the_stated_multiples_of_the_reference_models():
    costs = cost.reference_costs()        # builds the reference models (imports Keras)
    assert cost.REFERENCE_PARAMETERS == max(c.parameters for c in costs.values())
    assert cost.REFERENCE_ACTIVATION_BYTES == max(c.batch_activation_bytes() for c in costs.values())
    at_training_shape = [c for c in costs.values() if c.input_shape == training.INPUT_SHAPE]
    assert cost.REFERENCE_TRAINING_FLOPS == max(
        c.training_flops(training.SCHEDULE.n_images, training.SCHEDULE.epochs) for c in at_training_shape)
    assert cost.ACTIVATION_BATCH == training.SCHEDULE.batch_size


@pytest.mark.slow
def test_parameter_counts_from_the_config_match_keras():
    from autograder import reference_models
    for (name, input_shape, num_classes), found in cost.reference_costs().items():
        model = getattr(reference_models, name)(input_shape, num_classes)
        assert found.parameters == model.count_params(), name
        assert found.output_shape == tuple(model.output_shape[1:]), name


BOMBS = f'''\
import json

class Config:
    def __init__(self, config):
        self.config = config
    def to_json(self):
        return json.dumps(self.config)

def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    return Config({COMPUTE_BOMB!r})

def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    return Config({MEMORY_BOMB_CONFIG!r})
'''.replace("None", "None")


@needs_bwrap
def test_the_compute_and_memory_bombs_cost_their_checks_and_nothing_else(tmp_path, limits, monkeypatch):
    limits(cell=10, call=20)
    select(monkeypatch, *GRADED, "training_improvement")
    started = time.monotonic()
    results = grade_from_environ(notebook(tmp_path, SETUP, MANUAL_BN, BOMBS))
    elapsed = time.monotonic() - started
    assert results["status"] == "graded", results["error"]
    by_exercise = {}
    for check in results["checks"]:
        by_exercise.setdefault(check["exercise"], []).append(check)
    assert sum(c["points"] for c in by_exercise["manual_batch_norm"]) == FULL_MARKS["manual_batch_norm"]
    for exercise in ("build_model_with_bn", "training_improvement", "build_modern_cnn"):
        assert all(c["points"] == 0 and "above the grader's cap" in c["message"] for c in by_exercise[exercise]), \
            [c["message"] for c in by_exercise[exercise]]
    assert elapsed < 120, elapsed      # refused before building: no 11-minute training, no 16 GB


# --- failures on the grader's side: status error, never a graded zero ---------------------------------

def assert_grader_error(results, *needles):
    assert (results["status"], results["error_side"]) == ("error", "grader"), results["error"]
    assert results["error"].startswith("grader-side failure, not the student's: ")
    assert Result.from_dict(results).grader_fault
    assert results["total"] == 0
    for needle in needles:
        assert needle in results["error"], results["error"]


@needs_bwrap
def test_a_missing_interpreter_is_the_graders_error(tmp_path, limits, graded, monkeypatch):
    limits(cell=5, call=10)
    monkeypatch.setattr(sandbox_process, "interpreter", lambda: "/nowhere/bin/python")
    results, _ = graded(notebook(tmp_path, SETUP, MANUAL_BN))
    assert_grader_error(results, "did not start", "/nowhere/bin/python")


@pytest.mark.slow
@needs_bwrap
def test_a_check_that_crashes_on_a_well_formed_answer_is_the_graders_error(tmp_path, limits, graded, monkeypatch):
    limits(cell=20, call=20)

    def broken(model):
        raise KeyError("a bug in the check")

    monkeypatch.setattr(view, "flat_layers", broken)
    results, _ = graded(notebook(tmp_path, SETUP, MANUAL_BN, BUILD_WITH_BN))
    assert_grader_error(results, "the check crashed: KeyError", "build_model_with_bn::")


def _setup_cell(grade_id, source):
    return _nbgrader_cell(source, grade_id, locked=True)


@pytest.mark.slow
@needs_bwrap
def test_a_set_up_cell_that_fails_for_lack_of_memory_is_the_graders_error(tmp_path, limits, graded):
    limits(cell=30, call=20, memory_mb=64)        # too little for the instructor's `import keras`
    results, _ = graded(notebook(tmp_path, _setup_cell("setup", SETUP), MANUAL_BN))
    assert_grader_error(results)
    assert "set-up cell 'setup'" in results["error"] or "did not start" in results["error"]


@needs_bwrap
def test_the_instructors_set_up_source_runs_in_place_of_an_edited_copy(tmp_path, limits, graded):
    limits(cell=10, call=20)
    uses_setup = MANUAL_BN.replace("    x = np.asarray", "    assert layer_out_early.shape == (32, 10)\n    x = np.asarray")
    edited = _setup_cell("covariate_shift_data", "raise RuntimeError('the student edited a locked cell')\n")
    results, submission = graded(notebook(tmp_path, SETUP, edited, uses_setup))
    assert results["status"] == "graded", results["error"]
    assert not submission.cell_errors()
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]


@pytest.mark.slow
@needs_bwrap
def test_a_set_up_cell_broken_by_the_students_own_cell_is_not_the_graders_error(tmp_path, limits, graded):
    limits(cell=30, call=20)      # the released set-up cells before it run again alone, `import keras` too
    breaks_numpy = "import sys\nsys.modules['numpy'] = None\ndel np\n"
    results, submission = graded(notebook(tmp_path, SETUP, breaks_numpy,
                                          _setup_cell("covariate_shift_data", "unused"), MANUAL_BN))
    assert results["status"] == "graded", results["error"]
    assert "NameError" in outcome(submission, 2)       # np is gone: the student's doing, and it stays theirs


@needs_bwrap
@pytest.mark.slow      # imports TensorFlow (the training check runs, and finds no data)
def test_a_missing_data_set_is_the_graders_error(tmp_path, limits, monkeypatch):
    limits(cell=30, call=30)
    select(monkeypatch, "training_improvement")
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(empty))
    monkeypatch.setenv("BN_AUTOGRADER_TRAINING_MEMO", "0")
    monkeypatch.setattr(training, "_subset", training._subset.__wrapped__)     # no copy read earlier
    results = grade_from_environ(notebook(tmp_path / "nb", SETUP, BUILD_WITH_BN), cache_dir=tmp_path / "cache")
    assert_grader_error(results, "Fashion-MNIST is missing on the grading machine")


@needs_bwrap
def test_answers_of_the_wrong_shape_or_kind_are_the_students_zero_not_a_crash(tmp_path, limits, monkeypatch):
    limits(cell=5, call=10)
    numpy_exercises = ("manual_batch_norm", "batch_norm_backward", "update_moving_statistics",
                       "batch_norm_inference", "population_statistics")
    select(monkeypatch, *numpy_exercises)
    odd = {"manual_batch_norm": "np.ones((2, 3, 4, 5, 6))", "batch_norm_backward": "np.ones(7), 1.0, np.zeros(0)",
           "update_moving_statistics": "(moving_mean,) * 3", "batch_norm_inference": "'text'",
           "population_statistics": "[batch_means]"}
    results = grade_from_environ(notebook(tmp_path, SETUP, *students.returning(odd).values()))
    assert results["status"] == "graded", results["error"]
    assert {c["exercise"] for c in results["checks"] if c["max_points"]} >= set(numpy_exercises)
    assert sum(c["points"] for c in results["checks"]) == 0
