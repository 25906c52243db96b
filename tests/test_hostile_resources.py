"""Runaway and greedy submissions: time limits, memory and fork bombs, processes left behind.

Each test builds small notebooks with nbformat (a NumPy-only set-up cell keeps the worker's start
well under a second; keras is imported only where a model is built), grades them with short time
limits set through the environment (settings.from_environ), and checks that the hostile cell got a clear
message and a zero for what it affects while every other exercise was graded in full. The training
check is deselected: it has its own tests, and it only ever sees vetted model configurations.

Hostile cells that do not interfere share a notebook. Cells that get the worker killed come before
cells that only hit the soft time limit, because after a kill every remaining cell runs again.
"""

import time

import pytest

from autograder import settings
from autograder.sandbox import Limits
from autograder.sandbox import process as sandbox_process
from autograder.sandbox.cgroup import ResourceGroup
from autograder.submission import Submission

from conftest import (
    BUILD_WITH_BN,
    FULL_MARKS,
    MANUAL_BN,
    SETUP,
    SETUP_KERAS,
    checks,
    messages,
    needs_bwrap,
    outcome,
    processes,
    scores,
    unique_digits,
    write_notebook,
)

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")


def _cgroups_work() -> bool:
    group = ResourceGroup(Limits())
    group.remove()
    return group.active


needs_cgroup = pytest.mark.skipif(not _cgroups_work(), reason="no cgroup can be made here (not root?)")


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


# --- runaway code ---------------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_runaway_cells_hit_a_time_limit_costing_nothing_else(tmp_path, limits, graded):
    limits(cell=3, call=60, grace=2)
    cells = [SETUP, MANUAL_BN, IGNORES_SIGALRM, BLOCKS_SIGALRM, SWALLOWS_TIMEOUT, EXITS_HARD,
             SLEEPS, LOOPS, SLOW_IMPORT, PRINTS_2GB, SYS_EXIT, BUILD_WITH_BN, BUILD_MODERN]
    started = time.monotonic()
    results, submission = graded(write_notebook(tmp_path, *cells))
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
    results, submission = graded(write_notebook(tmp_path, SETUP_KERAS, hangs_hard, BUILD_WITH_BN, hangs_soft))
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
def test_a_memory_bomb_is_contained_by_the_memory_cgroup(
        tmp_path, limits, graded, cgroups):
    limits(cell=10, call=20, grace=2, memory_mb=512)
    tag = unique_digits()
    results, submission = graded(write_notebook(tmp_path, SETUP, MANUAL_BN, IGNORES_TERM, strays(tag),
                                          MEMORY_BOMB, EXITS_HARD, strays(tag)))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert cgroups and all(group["dirs"] for group in cgroups), "the workers had no cgroup"
    assert "ran out of memory (limit 512 MiB)" in outcome(submission, 4)
    assert cgroup_counter(cgroups, "memory.oom_control", "oom_kill") >= 1
    assert "exit code 3" in outcome(submission, 5)
    assert not processes(tags=(tag,)), "a student's process outlived its grading"


@needs_bwrap
@needs_cgroup
@pytest.mark.slow
def test_fork_bombs_are_stopped_by_pids_max(tmp_path, limits, graded, cgroups):
    # Room for the forked Pythons: pids.max stops them. Each fork of a worker copies the page tables of
    # what the zygote imported (Keras, JAX), so 128 rather than the 512 of the default keeps the test short.
    limits(cell=3, call=20, grace=2, memory_mb=3072, processes=128)
    results, submission = graded(write_notebook(tmp_path, SETUP, MANUAL_BN, FORK_BOMB, SPINNING_FORK_BOMB))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert contained(outcome(submission, 2)) and contained(outcome(submission, 3))
    assert cgroup_counter(cgroups, "pids.events", "max") >= 1, "pids.max never stopped a fork"


@pytest.mark.slow
@needs_bwrap
def test_without_a_cgroup_rlimits_contain_the_same_bombs(tmp_path, limits, graded, monkeypatch):
    monkeypatch.setattr(ResourceGroup, "ROOTS_V1", {"memory": "/nonexistent/memory", "pids": "/nonexistent/pids"})
    monkeypatch.setattr(ResourceGroup, "ROOT_V2", "/nonexistent")
    limits(cell=3, call=20, grace=2, memory_mb=1024, processes=128)
    tag = unique_digits()
    results, submission = graded(write_notebook(tmp_path, SETUP, MANUAL_BN, strays(tag), ADDRESS_SPACE_BOMB, FORK_BOMB))

    assert results["status"] == "graded", results["error"]
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert "MemoryError" in outcome(submission, 3)               # RLIMIT_AS
    assert contained(outcome(submission, 4))                     # RLIMIT_NPROC: the worker is nobody
    assert not processes(tags=(tag,))


@pytest.mark.slow
@needs_cgroup
def test_without_bubblewrap_the_cgroup_still_ends_every_process(tmp_path, limits, graded, in_mode, cgroups):
    in_mode("landlock")
    limits(cell=3, call=20, grace=2, memory_mb=3072, processes=128)
    tag = unique_digits()
    results, submission = graded(write_notebook(tmp_path, SETUP, MANUAL_BN, strays(tag), FORK_BOMB))
    assert results["isolation"] == "landlock"
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    assert contained(outcome(submission, 3))
    assert cgroup_counter(cgroups, "pids.events", "max") >= 1
    assert not processes(tags=(tag,))


@needs_bwrap
@pytest.mark.parametrize("zygote", ["1", "0"], ids=["forked", "fresh"])
def test_processes_end_with_their_request_or_at_the_latest_with_the_sandbox(zygote, tmp_path, limits, monkeypatch):
    monkeypatch.setenv("BN_AUTOGRADER_ZYGOTE", zygote)
    limits_ = limits(cell=5)
    tag = unique_digits()
    path = write_notebook(tmp_path, SETUP, strays(tag), MANUAL_BN)
    with Submission.open(path, limits_) as s:
        assert not s.cell_errors()
        assert not processes(tags=(tag,)), "the worker did not end the cell's processes"
    # Without the worker's help and without a cgroup, the PID namespace alone still ends them.
    monkeypatch.setattr(ResourceGroup, "ROOTS_V1", {"memory": "/nonexistent/memory", "pids": "/nonexistent/pids"})
    monkeypatch.setattr(ResourceGroup, "ROOT_V2", "/nonexistent")
    original = sandbox_process.bubblewrap_argv

    def without_ending_strays(*args, **kwargs):
        argv = original(*args, **kwargs)
        at = argv.index("BN_AUTOGRADER_PRIVATE_PIDS")
        return argv[:at - 1] + argv[at + 2:]

    monkeypatch.setattr(sandbox_process, "bubblewrap_argv", without_ending_strays)
    forked_environment = sandbox_process.forked_bubblewrap_environment

    def forked_without_ending_strays(*args, **kwargs):
        environment = forked_environment(*args, **kwargs)
        del environment["BN_AUTOGRADER_PRIVATE_PIDS"]
        return environment

    monkeypatch.setattr(sandbox_process, "forked_bubblewrap_environment", forked_without_ending_strays)
    with Submission.open(path, limits_) as s:
        assert not s.cell_errors()
        assert len(processes(tags=(tag,))) >= 4, processes(tags=(tag,))
        assert s._process.forked == (zygote == "1")
    assert not processes(tags=(tag,)), "a student's process outlived its sandbox"


# --- stability ---------------------------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_the_same_submission_gets_the_same_result_ten_times(tmp_path, graded, limits):
    limits(cell=1, call=20, grace=2)      # the worker imports NumPy before the cells: they are quick
    tag = unique_digits()
    wrong = MANUAL_BN.replace("keepdims=True)\n    return", "keepdims=True, ddof=1)\n    return")
    path = write_notebook(tmp_path, SETUP, wrong, EXITS_HARD, strays(tag), SLEEPS)
    seen = []
    for _ in range(10):
        results, _ = graded(path)
        seen.append([(c["id"], c["points"], c["message"]) for c in checks(results)])
    assert all(run == seen[0] for run in seen[1:]), [sum(p for _, p, _ in run) for run in seen]
    points = dict((check, p) for check, p, _ in seen[0])
    assert 0 < sum(points.values()) < FULL_MARKS["manual_batch_norm"]   # the ddof=1 mistake costs its check, no more
    assert points["manual_batch_norm::test_uses_the_biased_variance"] == 0
    assert not processes(tags=(tag,))


@needs_bwrap
@pytest.mark.slow
def test_closing_a_submission_while_its_worker_starts_ends_the_worker_at_once(tmp_path, limits):
    """grade.run_checks starts the worker early (Submission.start_early); when no check ever uses it,
    closing must not wait for the notebook's cells to run out their time, and must leave nothing."""
    limits(cell=60, call=20, grace=2)
    tag = unique_digits()
    blocks = f'import subprocess\nsubprocess.run(["sleep", "{tag}"])\n'      # a cell busy for its whole limit
    submission = Submission.open(write_notebook(tmp_path, SETUP, blocks), settings.from_environ().limits)
    submission.start_early()
    deadline = time.monotonic() + 30
    while not processes(tags=(tag,)) and time.monotonic() < deadline:     # the cell is running
        time.sleep(0.05)
    assert processes(tags=(tag,)), "the worker never ran the blocking cell"
    started = time.monotonic()
    submission.close()
    assert time.monotonic() - started < 10, "close() waited for the blocking cell"
    assert not processes(tags=(tag,))
