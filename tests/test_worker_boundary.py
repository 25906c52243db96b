"""The grader's end of the worker trusts nothing it hears (issue 21).

A student's code runs in the worker's own process, so it can write on the answer pipe: forge a
"crashed" answer, an answer without its fields, megabytes of error text, lines of gigantic JSON.
None of it may leave a worker running, put the blame on the grader, grow the grader's memory or
results.json, or slow the student graded beside it. The channel's pieces are tested alone first
(no worker), then whole notebooks that do each attack, graded in every mode that grades, through
``grade``, ``grade-class`` and the student's ``check``; the Dask and nbgrader paths grade the
forger in test_cluster.py and test_nbgrader_bridge.py.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import grade
from autograder.channel import ANSWER_BYTES, Kind, LineReader, Silence, answer_prefix, parse_answer
from autograder.sandbox import Limits
from autograder.sandbox import process as sandbox_process
from autograder.settings import Settings
from autograder.text import MESSAGE_CHARS, bounded

from conftest import (
    CHANNEL_TOOLS,
    ESCAPES,
    FLOOD,
    FORGED_CRASHES,
    GRADING_MODES,
    HUGE_ANSWER,
    LONG_ERROR,
    MANUAL_BN,
    NO_LANDLOCK,
    REAL_CRASH,
    SETUP,
    SURROGATES,
    UID_COUNT,
    failing_bwrap,
    leftovers,
    stray_processes,
    uid_range,
    unique_digits,
)

ROOT = Path(__file__).resolve().parent.parent


# --- the channel alone --------------------------------------------------------------------------------

def _pipe_with(*chunks) -> LineReader:
    """A LineReader on a pipe that a thread fills with ``chunks`` and then closes."""
    read_end, write_end = os.pipe()

    def write():
        with os.fdopen(write_end, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
    threading.Thread(target=write, daemon=True).start()
    return LineReader(read_end)


def test_lines_that_are_not_the_answer_are_skipped_without_being_kept():
    flood = b'{"x":' + b"[]," * (16 << 20) + b"[]}\n"        # 48 MiB of JSON that answers nothing
    reader = _pipe_with(flood, flood, b'{"id": 6, "kind": "done"}\n', b'{"id": 7, "kind": "done"}\n')
    found = reader.line(time.monotonic() + 30, 1024, answer_prefix(7))     # 1 KiB: the flood never counted
    assert found == b'{"id": 7, "kind": "done"}'
    assert len(reader.buffer) <= 1 << 20


def test_an_answer_longer_than_its_kind_allows_is_too_long():
    reader = _pipe_with(b'{"id": 3, "kind": "raised", "error": {"text": "' + b"E" * (2 << 20) + b'"}}\n')
    assert reader.line(time.monotonic() + 30, ANSWER_BYTES["cell"], answer_prefix(3)) is Silence.TOO_LONG


def test_a_closed_pipe_is_eof():
    assert _pipe_with(b"no newline").line(time.monotonic() + 30, 1024) is Silence.EOF


def test_a_silent_pipe_times_out():
    read_end, write_end = os.pipe()
    try:
        assert LineReader(read_end).line(time.monotonic() + 0.2, 1024) is Silence.TIMEOUT
    finally:
        os.close(read_end)
        os.close(write_end)


FORGED = [
    b'{"id": 5, "ok": false, "crashed": true}',                       # the old protocol's "crashed", no error
    b'{"id": 5, "kind": "killed", "error": {"text": "forged"}}',      # only the grader says killed
    b'{"id": 5, "kind": "crashed"}',
    b'{"id": 5, "kind": "raised"}',                                    # an error without its text
    b'{"id": 5, "kind": "raised", "error": {"text": 7}}',
    b'{"id": 5, "kind": "raised", "error": {"text": "x", "cell": "3"}}',
    b'{"id": 5, "kind": "done", "value": 1, "args_after": []}',
    b'{"id": 5, "kind": "done", "value": {"ndarray": "AA=="}, "args_after": "x"}',
    b'{"id": 5, "kind": "done", "value": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
    b'{"id": 5, "kind": "done"' + b"\xff\xfe",
    b'{"id": 5, "kind": "done", "id": 6}',
    b'{"id": 5, ' + b"[" * 100000,
    # 1.6 MB that parses to 400 MB
    b'{"id": 5, "kind": "done", "value": 1, "junk": [' + b'{"":{}},' * 200000 + b'{}]}',
]


@pytest.mark.parametrize("line", FORGED, ids=range(len(FORGED)))
def test_a_malformed_answer_is_the_students_fault_never_an_exception(line):
    outcome = parse_answer(line, 5, "call", "array")
    assert outcome.kind is Kind.MALFORMED
    assert "wrote to the grader's channel" in outcome.text and len(outcome.text) < 300


def test_a_models_answer_is_only_its_configuration():
    config = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
    good = b'{"id": 5, "kind": "done", "value": ' + json.dumps(config).encode() + b', "args_after": []}'
    assert parse_answer(good, 5, "call", "model").value == config
    padded = good.replace(b', "args_after"', b', "junk": [' + b"[]," * 100000 + b'[]], "args_after"')
    assert parse_answer(padded, 5, "call", "model").kind is Kind.MALFORMED


def test_the_students_words_never_pass_for_the_graders():
    from autograder.errors import GRADER_SIDE_PREFIX
    line = json.dumps({"id": 5, "kind": "raised", "error": {"text": GRADER_SIDE_PREFIX + "the check crashed"}})
    outcome = parse_answer(line.encode(), 5, "run_cell")
    assert not outcome.text.startswith(GRADER_SIDE_PREFIX.strip()) and "the check crashed" in outcome.text


def test_a_lone_surrogate_is_written_out_so_that_every_writer_can_encode_it():
    shown = bounded("bad \ud800 \udfff")
    assert shown == "bad \\ud800 \\udfff" and shown.encode("utf-8")


def test_a_folder_nested_deeper_than_python_recurses_is_removed(tmp_path):
    from autograder.sandbox import identity
    top = tmp_path / "bn-worker-deep"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    identity.remove_folder(top)
    assert not top.exists()


def test_a_layer_outside_the_models_graph_is_refused_not_read_unbounded():
    from autograder.errors import ModelRefused
    from autograder.models import cost
    layers = [
        {"class_name": "InputLayer", "name": "i", "config": {"name": "i", "batch_shape": [None, 32, 32, 3]},
         "inbound_nodes": []},
        {"class_name": "Flatten", "name": "f", "config": {"name": "f"},
         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["i", 0, 0]}}],
                            "kwargs": {}}]},
        {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 10, "activation": "softmax"},
         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["f", 0, 0]}}],
                            "kwargs": {}}]},
        {"class_name": "Dropout", "name": "x", "config": {"name": "x"}, "inbound_nodes": []},   # no rate, no input
    ]
    config = {"class_name": "Functional", "config": {"name": "m", "layers": layers, "input_layers": [["i", 0, 0]],
                                                     "output_layers": [["d", 0, 0]]}}
    with pytest.raises(ModelRefused, match="not connected"):
        cost.check_bounds(config)
    config["config"]["layers"] = layers[:3]
    assert cost.check_bounds(config).parameters == 32 * 32 * 3 * 10 + 10


def test_an_answer_to_another_request_is_not_taken():
    assert parse_answer(b'{"id": 4, "kind": "done"}', 5, "run_cell").kind is Kind.MALFORMED
    assert parse_answer(b'{"id": 5, "kind": "done"}', 5, "run_cell").ok


def test_a_students_error_text_arrives_made_safe():
    text = "\x1b[1A\r PASS  3.00/3.00 " + "E" * (1 << 20)
    line = json.dumps({"id": 5, "kind": "raised", "error": {"text": text, "exception": "ValueError",
                                                             "message": text, "cell": 3, "line": 1}}).encode()
    outcome = parse_answer(line, 5, "run_cell")
    assert outcome.kind is Kind.RAISED and outcome.cell == 3 and outcome.exception == "ValueError"
    for part in (outcome.text, outcome.message):
        assert len(part) < 1000 and "\x1b" not in part and "\r" not in part


def test_bounded_writes_out_control_characters_but_keeps_layout():
    assert bounded("a\x1b[2Jb\rc\nd\te\u202ef") == "a\\x1b[2Jb\\x0dc\nd\te\\u202ef"
    assert len(bounded("x" * 10**6)) <= MESSAGE_CHARS + 60


# --- whole notebooks --------------------------------------------------------------------------------


FILL_SCRATCH = '''\
import tempfile
for k in range(6):                # past the scratch cap: the tmpfs is full, or the grader ends the worker
    try:
        with open(os.path.join(tempfile.gettempdir(), f"fill{k}"), "wb") as f:
            f.write(b"\\1" * (30 << 20))
    except OSError:
        break
'''


DEEP_AND_ODD_MODELS = '''\
class _Config:
    def __init__(self, text):
        self.text = text
    def to_json(self):
        return self.text

def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    return _Config('{"class_name": "Sequential", "config": {"layers": ' + "[" * 800 + "]" * 800 + '}}')

def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    return _Config(json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 32, 32, 3], "dtype": "float32", "name": "i"}},
        {"class_name": "Flatten", "config": {"name": "f", "dtype": {"config": [1]}}},
        {"class_name": "Dense", "config": {"units": 10, "activation": "softmax", "name": "d",
                                           "dtype": {"config": [1]}}}]}}))
'''

def write_notebook(path: Path, *cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def workers(monkeypatch, tmp_path):
    """Every SandboxedProcess started in this process, with its own TMPDIR: (list, tmp folder)."""
    started = []
    original = sandbox_process.SandboxedProcess.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append({"process": self, "pid": self.process.pid, "uid": self.lease.uid,
                        "folder": self._folder, "cgroups": list(self.group.dirs)})

    monkeypatch.setattr(sandbox_process.SandboxedProcess, "__init__", recording)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    return started, scratch


def assert_nothing_left(started, scratch, first_uid, tag):
    for worker in started:
        assert worker["process"].process.returncode is not None, f"worker {worker['pid']} was never reaped"
        assert not [d for d in worker["cgroups"] if d.exists()], worker["cgroups"]
        assert worker["folder"] is None or not worker["folder"].exists(), worker["folder"]
    if os.geteuid() == 0:          # as root every worker has a uid of its own
        assert all(first_uid <= w["uid"] < first_uid + UID_COUNT for w in started)
    assert not leftovers(first_uid, tag, scratch)


def scores_of(result) -> dict:
    return result.exercise_scores()


@pytest.mark.slow
@pytest.mark.parametrize("mode", GRADING_MODES)
def test_forged_answers_floods_or_kills_cost_only_the_students_points(
        tmp_path, in_mode, workers, monkeypatch, mode):
    mode = in_mode(mode)
    started, scratch = workers
    first_uid, tag = uid_range(), unique_digits()
    limits = Limits(cell_seconds=15, call_seconds=15, total_seconds=200, grace_seconds=3, scratch_bytes=64 << 20,
                    uid_first=first_uid, uid_count=UID_COUNT)
    monkeypatch.setattr(grade, "PYTEST_ARGS", [*grade.PYTEST_ARGS, "-k",
                                               "manual_batch_norm or build_model_with_bn or build_modern_cnn"])
    path = write_notebook(tmp_path / "hand-in" / "submission.ipynb", SETUP, CHANNEL_TOOLS, REAL_CRASH, FORGED_CRASHES,
                          FORGED_CRASHES, HUGE_ANSWER, LONG_ERROR, FLOOD, FILL_SCRATCH, stray_processes(tag),
                          ESCAPES, DEEP_AND_ODD_MODELS, MANUAL_BN)
    result = grade.grade_notebook(path, Settings(limits=limits))

    assert result.status.value == "graded" and result.error is None, result.error
    assert result.isolation == mode.value
    scores = scores_of(result)
    assert scores["manual_batch_norm"] == 3, [c.message for c in result.checks if not c.passed]
    refused = [c for c in result.checks if c.exercise in ("build_model_with_bn", "build_modern_cnn")]
    assert all(c.points == 0 for c in refused)
    assert all("grader-side" not in c.message and "the check crashed" not in c.message for c in result.checks)
    assert any("configuration" in c.message for c in refused), [c.message for c in refused]
    text = result.to_json()
    assert len(text) < 1 << 20 and "\\u001b" not in text and "\\r" not in text
    # one worker to start, one more after each real kill (os._exit, the 2 MB answer), none for a forgery
    assert len(started) == 3, [w["pid"] for w in started]
    assert_nothing_left(started, scratch, first_uid, tag)


def grade_command(tmp_path, mode: str, path: Path, first_uid: int) -> tuple:
    """``python -m autograder grade`` in a subprocess in ``mode``: (completed process, results, peak
    memory of the grader's own process in bytes, its TMPDIR)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "BN_AUTOGRADER_CELL_SECONDS": "20", "BN_AUTOGRADER_UID_FIRST": str(first_uid),
           "BN_AUTOGRADER_UID_COUNT": str(UID_COUNT), "TMPDIR": str(scratch)}
    measure = ("import runpy, sys\n"
               "sys.argv = ['autograder', *sys.argv[1:]]\n"
               "try:\n    runpy.run_module('autograder', run_name='__main__')\n"
               "finally:\n"
               "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
               "    print('PEAK', int(peak.split()[1]) * 1024, file=sys.stderr)\n")
    command = [sys.executable, "-c", measure, "grade", str(path), "--output", str(tmp_path / "results.json")]
    if mode == "landlock":
        env["PATH"] = f"{failing_bwrap(tmp_path / 'fake-bin')}{os.pathsep}{env['PATH']}"
    if mode == "bwrap":
        command = [sys.executable, str(NO_LANDLOCK), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    peak = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK ")]
    results = json.loads((tmp_path / "results.json").read_text()) if (tmp_path / "results.json").exists() else None
    return done, results, peak[0] if peak else None, scratch


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bwrap+landlock", "landlock"])
def test_the_grade_commands_output_is_bounded_plain_text(tmp_path, mode):
    first_uid, tag = uid_range(), unique_digits()
    path = write_notebook(tmp_path / "hand-in" / "submission.ipynb", SETUP, CHANNEL_TOOLS, FLOOD, LONG_ERROR,
                          ESCAPES, SURROGATES, REAL_CRASH, FORGED_CRASHES, stray_processes(tag))
    done, results, peak, scratch = grade_command(tmp_path, mode, path, first_uid)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results["status"] == "graded" and results["isolation"] == mode, results["error"]
    assert results["total"] == 0 and not any("grader-side" in c["message"] for c in results["checks"])
    assert (tmp_path / "results.json").stat().st_size < 1 << 20
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert "\\x1b[1A" in done.stdout          # the student's escape sequence, shown as text
    assert max(map(len, done.stdout.splitlines())) < 2000
    assert peak is not None and peak < 1 << 30, f"the grader's peak memory: {peak}"
    assert not leftovers(first_uid, tag, scratch)


@pytest.mark.slow
@pytest.mark.parametrize("mode", GRADING_MODES)
def test_a_class_with_hostile_students_grades_the_honest_one_in_full(hostile_class_in, mode):
    graded = hostile_class_in(mode)       # skips a mode this machine cannot run; shared with test_escapes.py
    done, rows = graded.done, graded.rows
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert {s: float(rows[s]["manual_batch_norm"]) for s in ("c-hog", "c-honest", "e-channel-forger", "e-surrogates")
            } == {"c-hog": 3.0, "c-honest": 3.0, "e-channel-forger": 3.0, "e-surrogates": 0.0}, rows
    assert (graded.course / "grade-class" / "e-surrogates" / "batchnorm" / "feedback.html").exists()
    assert all(r["status"] == "manual_pending" for r in rows.values()), rows     # graded; written answers pending
    assert graded.isolation == {mode}
    assert not leftovers(graded.first_uid, graded.tag, graded.scratch)


@pytest.mark.slow
def test_the_students_check_reports_a_forger_cleanly(tmp_path):
    first_uid, tag = uid_range(), unique_digits()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    path = write_notebook(tmp_path / "batchnorm.ipynb", SETUP, CHANNEL_TOOLS, REAL_CRASH, FORGED_CRASHES, HUGE_ANSWER,
                          stray_processes(tag), ESCAPES, MANUAL_BN)
    env = {**os.environ, "BN_AUTOGRADER_UID_FIRST": str(first_uid), "BN_AUTOGRADER_UID_COUNT": str(UID_COUNT),
           "TMPDIR": str(scratch)}
    done = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--output",
                           str(tmp_path / "check.json")], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 1, (done.stdout[-3000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "\x1b" not in done.stdout
    report = json.loads((tmp_path / "check.json").read_text())
    problems = " ".join(p["message"] for p in report["problems"])
    assert "wrote to the grader's channel" in problems and "ended the grading process" in problems, problems
    assert not leftovers(first_uid, tag, scratch)



OPEN_DESCRIPTORS = '''\
import stat

def open_descriptors(x):
    """Each descriptor above 2 this process holds: +fd for a pipe, -fd for anything else."""
    found = []
    for fd in range(3, 1024):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        found.append(fd if stat.S_ISFIFO(mode) else -fd)
    return np.array(found, dtype=float)
'''


@pytest.mark.parametrize("mode", GRADING_MODES)
def test_the_students_code_holds_no_descriptor_but_the_workers_two_pipes(tmp_path, in_mode, mode):
    from autograder.submission import Submission
    in_mode(mode)
    path = write_notebook(tmp_path / "hand-in" / "submission.ipynb", SETUP, "import os\n", OPEN_DESCRIPTORS)
    with Submission.open(path, Limits(cell_seconds=10)) as submission:
        held = submission.call_array("open_descriptors", np.zeros(1)).value
    assert len(held) == 2 and all(held > 0), held      # the requests and the answers; bwrap's user namespace is gone


KILLED_GRADER = '''\
import json, sys
import nbformat
from autograder.notebook import Notebook
from autograder.sandbox import Isolation, Limits
from autograder.submission import Submission
mode, first_uid, count, cells = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.load(open(sys.argv[4]))
notebook = Notebook(json.loads(json.dumps([nbformat.v4.new_code_cell(c) for c in cells])))
submission = Submission(notebook, Limits(cell_seconds=120, uid_first=first_uid, uid_count=count),
                        isolation=Isolation(mode))
submission.cell_errors()          # the last cell sleeps: the test kills this process meanwhile
'''


@pytest.mark.parametrize("mode", ["bwrap+landlock", "landlock"])
def test_a_grader_process_killed_mid_grading_leaves_nothing_once_the_next_one_starts(tmp_path, mode):
    from autograder.sandbox import identity
    from autograder.sandbox.cgroup import ResourceGroup

    from conftest import offer_for
    offer_for(mode)
    first_uid, tag, scratch = uid_range(), unique_digits(), tmp_path / "tmp"
    scratch.mkdir()
    cells = tmp_path / "cells.json"       # not on the command line: the tag must name only the student's processes
    cells.write_text(json.dumps([SETUP, "import os\n", stray_processes(tag) + "import time\ntime.sleep(100)\n"]))
    grader = subprocess.Popen([sys.executable, "-c", KILLED_GRADER, mode, str(first_uid), str(UID_COUNT), str(cells)],
                              env={**os.environ, "TMPDIR": str(scratch)}, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len([p for p in leftovers(first_uid, tag, scratch) if tag in p]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len([p for p in leftovers(first_uid, tag, scratch) if tag in p]) == 2, "the cells did not run"
    finally:
        grader.kill()                     # as the pool kills a grader process past its time-out
        grader.wait()
    ResourceGroup.sweep_orphans()         # what the next grader process does before its first worker
    identity.sweep_orphan_folders(scratch)
    deadline = time.monotonic() + 10      # a killed process may take a moment to leave /proc
    while leftovers(first_uid, tag, scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers(first_uid, tag, scratch)


CLAIMS_A_TIMEOUT = '''\
CALLS = []

def claims_a_timeout(x):
    CALLS.append(1)
    if len(CALLS) == 1:       # the first call says, at once, that it ran out of time
        _say(json.dumps({"id": _request_id(), "kind": "timeout", "error": {"text": "did not return"}}) + "\\n")
    return x
'''


def test_a_time_out_is_the_graders_finding_not_the_workers_word(tmp_path):
    from autograder.errors import StudentCodeError
    from autograder.submission import Submission
    path = write_notebook(tmp_path / "hand-in" / "submission.ipynb", SETUP, CHANNEL_TOOLS, CLAIMS_A_TIMEOUT)
    with Submission.open(path, Limits(call_seconds=20)) as submission:
        with pytest.raises(StudentCodeError) as claimed:
            submission.call_array("claims_a_timeout", np.ones(2))
        assert claimed.value.kind is Kind.RAISED          # not a time-out: the grader's clock said 0 s
        assert np.array_equal(submission.call_array("claims_a_timeout", np.ones(2)).value, np.ones(2))
        assert not submission.timed_out


FORGES_ITS_ARGUMENTS = '''\
def forgets_its_arguments(x):
    x[...] = 0                # changes its input, then answers as if it had been given none
    _say(json.dumps({"id": _request_id(), "kind": "done", "value": {"ndarray": "AAAAAAAA8D8=", "shape": [1],
                                                                   "dtype": "float64"}, "args_after": []}) + "\\n")
    return x
'''


def test_an_answer_that_leaves_out_its_arguments_is_refused(tmp_path):
    from autograder.errors import StudentCodeError
    from autograder.submission import Submission
    path = write_notebook(tmp_path / "hand-in" / "submission.ipynb", SETUP, CHANNEL_TOOLS, FORGES_ITS_ARGUMENTS)
    with Submission.open(path, Limits(call_seconds=20)) as submission:
        with pytest.raises(StudentCodeError, match="did not report each of its 1 arguments") as refused:
            submission.call_array("forgets_its_arguments", np.ones(2))
    assert refused.value.kind is Kind.MALFORMED


def test_every_text_field_of_an_answer_arrives_bounded_and_escaped():
    long = "\x1b[2J" + "N" * 50000
    line = json.dumps({"id": 5, "kind": "raised", "error": {"text": "x", "exception": long, "message": "y",
                                                             "name": long}}).encode()
    outcome = parse_answer(line, 5, "run_cell")
    for field in (outcome.exception, outcome.name):
        assert len(field) < 1000 and "\x1b" not in field
