"""What several test modules share. Only plain helpers and fixtures here; no test imports another.

Every test: TensorFlow only in tests marked slow (``_tensorflow_only_in_slow_tests``).

The class side (test_grade_class.py, test_cluster.py): a fake isolated grader that the grader
processes load instead of the real one (``FAKE_GRADER``, installed by fake_grader.install), its list
of checks (``fake_catalogue``), and hand-ins (``notebook``, ``hand_in``).
"""

import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from autograder.exercises import EXERCISES

# The grader pins TensorFlow to one thread per op and one op at a time when it first imports Keras
# (autograder/keras_runtime.py); a test that builds a Keras model before that would start TensorFlow
# with its defaults. TensorFlow reads these when its runtime starts, whoever starts it.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


@pytest.fixture(autouse=True)
def _tensorflow_only_in_slow_tests(request):
    """`make test-fast` (-m "not slow") must never pay for TensorFlow: a test that imports it and is
    not marked slow fails, naming itself."""
    before = "tensorflow" in sys.modules
    yield
    if not before and "tensorflow" in sys.modules and request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} imported TensorFlow: mark it @pytest.mark.slow", pytrace=False)

# The fake grader of the class tests: a module the grader processes load (server.GRADER points at
# it). It scores "ok:all" / "ok:<exercise>" in the code, misbehaves on CRASH, HANG, SLOW, RAISE,
# GRADER_SIDE and STUDENT_SIDE, and logs each call to $FAKE_GRADER_LOG.
FAKE_GRADER = '''
import json, os, time
from autograder import check_catalogue, notebook
from autograder.errors import Side
from autograder.exercises import EXERCISES
from autograder.results import CheckResult, Result

# the grader processes must not collect the real checks for error results either
CATALOGUE = tuple({"id": f"{e.id}::check", "exercise": e.id, "max_points": e.points} for e in EXERCISES)
check_catalogue.collect_checks = lambda: CATALOGUE


def grade_notebook(source, settings=None, *, hide=()):
    cells = [c for c in source.cells if c.get("cell_type") == "code"]
    code = "\\n".join(notebook.source(c) for c in cells)
    with open(os.environ["FAKE_GRADER_LOG"], "a") as f:
        f.write(json.dumps({"code": code, "given": type(source).__name__, "version": source.version,
                            "v4": all("source" in c and "input" not in c for c in cells),
                            "outputs": sum(len(c.get("outputs", [])) for c in cells), "hide": list(hide),
                            "settings": None if settings is None else settings.to_dict(),
                            "pid": os.getpid()}) + "\\n")
    if "CRASH" in code:
        os._exit(7)
    if "HANG" in code:
        time.sleep(120)
    if "SLOW" in code:
        time.sleep(1.5)
    if "RAISE" in code:
        raise RuntimeError("a bug in the grader")
    if "GRADER_SIDE" in code:       # a failure the grader reports as its own
        return Result.failed("the worker could not start", Side.GRADER, checks=CATALOGUE, notes=source.notes)
    if "STUDENT_SIDE" in code:      # a submission the grader refuses: the student's error
        return Result.failed("the notebook is damaged", Side.STUDENT, checks=CATALOGUE, notes=source.notes)
    rows = []
    for e in EXERCISES:
        ok = "ok:all" in code or f"ok:{e.id}" in code
        rows.append(CheckResult(f"{e.id}::check", e.id, e.points if ok else 0.0, e.points, ok,
                                f"{e.id} passed" if ok else f"{e.id} failed: got <{code[:30]}> & more"))
    return Result.graded(rows, notes=source.notes, timings={"worker_start": 0.1, "checks": 0.2, "total": 0.3})
'''


def fake_catalogue() -> tuple:
    """The fake grader's checks, as check_catalogue.collect_checks lists them: one per exercise."""
    return tuple({"id": f"{e.id}::check", "exercise": e.id, "max_points": e.points} for e in EXERCISES)


def notebook(code="ok:all", outputs=(), name="batchnorm.ipynb"):
    """A v4 notebook with one code cell holding ``code`` (and stdout outputs)."""
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Batch norm"), cell])


def hand_in(course, student, nb=None, name="batchnorm.ipynb", raw=None):
    """Write ``student``'s submission into ``course``/submitted/ (``raw`` bytes, or a notebook)."""
    path = course / "submitted" / student / "batchnorm" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        nbformat.write(nb if nb is not None else notebook(f"ok:all  # {student}"), str(path))
    return path


def check_cells(tmp_path, cells, exercises):
    """(GradingRun, [CheckResult]): the check modules of ``exercises`` on a small notebook of code
    ``cells`` (strings), graded as grade_notebook grades (grade.run_checks: the sandboxed worker,
    the checks in this process), with ``tmp_path`` hidden from the student's code."""
    import json

    from autograder.check_catalogue import CHECKS_DIR
    from autograder.exercises import BY_ID
    from autograder.grade import run_checks
    from autograder.grading_run import GradingRun
    from autograder.notebook import Notebook
    from autograder.settings import Settings
    code_cells = [nbformat.v4.new_code_cell(code) for code in cells]
    run = GradingRun(Notebook(json.loads(json.dumps(code_cells))), Settings(), hide=(str(tmp_path),))
    _, collector, _ = run_checks(run, [CHECKS_DIR / BY_ID[e].check_module for e in exercises])
    return run, list(collector.rows.values())


# --- the isolation modes and hostile notebooks' parts (the hostile test files, test_worker_boundary.py) --

GRADING_MODES = ("bwrap+landlock", "bwrap", "landlock")


def _offered():
    from autograder.sandbox import isolation
    return isolation.probe()


OFFERED = _offered()          # what this machine offers (probed once)


def offer_for(mode):
    """What the chooser must have found for ``mode`` to be the best; skips (saying why) a mode this
    machine cannot run."""
    from autograder.sandbox.isolation import Isolation, Offer
    mode = Isolation(mode)
    if mode.bubblewrap and not OFFERED.bubblewrap:
        pytest.skip(f"mode {mode.value}: {OFFERED.bubblewrap_reason}")
    if mode.landlock and not OFFERED.confinement:
        pytest.skip(f"mode {mode.value}: {OFFERED.confinement_reason}")
    return Offer(mode.bubblewrap, "" if mode.bubblewrap else "bwrap: setting up uid map: Permission denied (test)",
                 mode.landlock, "" if mode.landlock else "no Landlock: the kernel lacks Landlock (test)",
                 OFFERED.landlock_abi if mode.landlock else 0)


@pytest.fixture
def in_mode(monkeypatch):
    """in_mode(mode): the chooser finds what makes ``mode`` the best (or nothing, for "none")."""
    from autograder.sandbox import isolation
    from autograder.sandbox.isolation import Isolation

    def use(mode):
        monkeypatch.setattr(isolation, "_offer", offer_for(mode))
        return Isolation(mode)
    return use


def failing_bwrap(folder):
    """A folder holding a ``bwrap`` that fails as it does where user namespaces are refused (put it
    first on PATH to grade in a subprocess as where bubblewrap cannot run)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "bwrap"
    script.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    script.chmod(0o755)
    return folder


SETUP = "import numpy as np\n"

MANUAL_BN = '''\
def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta
'''

# A cell's tools to write on the worker's own answer pipe, as a student's code can.
CHANNEL_TOOLS = '''\
import fcntl, json, os, stat, sys

def _channels():
    """The worker's answer pipe: our write-only pipes other than 0, 1 and 2."""
    found = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode) and \\
                    fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                found.append(fd)
        except OSError:
            pass
    return found

def _say(text):
    for fd in _channels():
        os.write(fd, text.encode())

def _request_id():
    frame = sys._getframe()
    while frame:
        request = frame.f_locals.get("request")
        if isinstance(request, dict) and "id" in request:
            return request["id"]
        frame = frame.f_back
'''


# --- a forger's cells and what it may leave behind (test_worker_boundary, test_cluster, the bridge) ---

REAL_CRASH = "import os\nos._exit(3)\n"

FORGED_CRASHES = '''\
me = _request_id()                # "crashed" for this request and the next 39, without an error, in one write
_say("".join(json.dumps({"id": me + k, "ok": False, "crashed": True}) + "\\n" +
             json.dumps({"id": me + k, "kind": "killed", "error": {"text": "the grader crashed"}}) + "\\n"
             for k in range(40)))
'''

HUGE_ANSWER = '''\
_say(json.dumps({"id": _request_id(), "kind": "raised", "error": {"text": "E" * (2 << 20)}}) + "\\n")
'''

LONG_ERROR = '''\
_say(json.dumps({"id": _request_id(), "kind": "raised", "error": {"text": "\\x1b[1A\\rPASS " + "E" * 20000,
                                                                   "exception": "Forged", "message": "E" * 20000}}) + "\\n")
'''  # noqa: E501 - an attack cell's code, run as written

FLOOD = '''\
line = '{"x":' + '[],' * (32 << 20) + '[]}\\n'      # 96 MiB of JSON that answers nothing
for _ in range(3):
    _say(line)
del line
'''

ESCAPES = 'raise ValueError("\\x1b[1A\\x1b[2K\\rPASS  3.00/3.00 manual_batch_norm::test_all: passed")\n'
SURROGATES = 'raise ValueError("bad \\ud800 \\udfff")\n'        # no UTF-8 encoder writes these

def stray_processes(tag: str) -> str:
    """A cell that leaves a busy child and a sleeping daemon behind, in sessions of their own."""
    return f'''\
import subprocess
subprocess.Popen(["sleep", "{tag}1"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{tag}2"])
    os._exit(0)
'''



def forger_cells(tag: str) -> tuple:
    """A notebook that kills its worker, forges "crashed" answers, answers past its size, leaves
    processes tagged ``tag`` behind, and answers manual_batch_norm correctly."""
    return (SETUP, CHANNEL_TOOLS, REAL_CRASH, FORGED_CRASHES, HUGE_ANSWER, stray_processes(tag), MANUAL_BN)


UID_COUNT = 64


def uid_range() -> int:
    """The first uid of a range of UID_COUNT that no other test uses (this test's workers' alone)."""
    return random.randrange(1_800_000_000, 1_899_000_000, UID_COUNT)


def processes(*, uids=range(0), tags=()) -> list:
    """Live (not zombie) processes on this machine run by one of ``uids`` (their real uid) or whose
    command line holds one of ``tags``, as "pid (uid N): command" (read with the package's own /proc
    reader, sandbox.identity.processes)."""
    from autograder.sandbox import identity
    found = []
    for entry in identity.processes(uids=True):
        if entry.state == "Z" or not entry.uids:
            continue
        try:
            command = Path(f"/proc/{entry.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(entry.uids[0])
        if uid in uids or any(tag in command for tag in tags):
            found.append(f"{entry.pid} (uid {uid}): {command}")
    return found


def scratch_left(folder: Path) -> list:
    """Worker folders in ``folder``; a live grader process's zygote's is that process's, not a submission's."""
    def a_live_zygotes(path: Path) -> bool:
        owner, _, rest = path.name[len("bn-worker-"):].partition("-")
        return rest.startswith("zygote-") and owner.isdigit() and Path(f"/proc/{owner}").exists()
    return sorted(str(p) for p in folder.glob("bn-worker-*") if not a_live_zygotes(p))


def worker_origin() -> str:
    """The timings' count a grading here adds to: "workers_forked" where the best mode's workers come
    from a zygote (sandbox/process.py), else "workers_fresh"."""
    from autograder.sandbox import Limits, process
    forked = process._zygote_shape(OFFERED.best(), Limits()) is not None
    return "workers_forked" if forked else "workers_fresh"


def leftovers(first_uid: int, tag: str, scratch: Path) -> list:
    """What a graded submission left: live processes of its uid range (as root, where each worker
    has its own uid) or tagged ``tag``, and worker scratch folders in ``scratch`` (its TMPDIR)."""
    uids = range(first_uid, first_uid + UID_COUNT) if os.geteuid() == 0 else range(0)
    return processes(uids=uids, tags=(tag,)) + scratch_left(scratch)


# --- hostile notebooks graded in this process (test_hostile_resources, test_escapes, test_model_bounds,
# test_protocol_forgery, test_fault_side, test_damaged_notebooks) ---------------------------------------

def _bubblewrap_runs() -> bool:
    from autograder import sandbox
    return sandbox.bubblewrap_available()


needs_bwrap = pytest.mark.skipif(not _bubblewrap_runs(), reason="bubblewrap cannot run here")

# The exercises these notebooks answer (the other exercises' checks are deselected, see ``graded``).
GRADED = ("manual_batch_norm", "build_model_with_bn", "build_modern_cnn")
FULL_MARKS = {e.id: e.points for e in EXERCISES if e.id in GRADED}

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


@pytest.fixture(scope="session")
def shared_grader_cache(tmp_path_factory):
    """One grader cache for the session's gradings of the master's solution and its slips: the training
    baseline and the memo of the solution's architecture, filled by whichever test trains them first
    (test_checks' module, then test_gradescope and setup.sh's trial reuse them). A test that must see a
    cold cache makes its own."""
    return tmp_path_factory.mktemp("shared-grader-cache")


@pytest.fixture(scope="session", autouse=True)
def session_grader_cache_for_commands(shared_grader_cache):
    """The commands the tests start (grade-class, nbgrader's autograde, grade) read BN_AUTOGRADER_CACHE:
    the session's cache, never the user's ~/.cache/bn-autograder, which a test would otherwise fill, or
    find warm on one machine and cold on another (CI's)."""
    before = os.environ.get("BN_AUTOGRADER_CACHE")
    os.environ["BN_AUTOGRADER_CACHE"] = str(shared_grader_cache)
    yield
    if before is None:
        os.environ.pop("BN_AUTOGRADER_CACHE", None)
    else:
        os.environ["BN_AUTOGRADER_CACHE"] = before


@contextlib.contextmanager
def deep_folder_with_little_stack(folder: Path, depth: int = 80, room: int = 45):
    """A notebook ``depth`` folders below ``folder`` while Python may recurse only ``room`` frames more
    than the caller has: what a hand-in nested a thousand deep does to a recursive search, without
    the seconds a thousand folders take to remove."""
    deep = folder.joinpath(*["a"] * depth)
    deep.mkdir(parents=True)
    (deep / "batchnorm.ipynb").write_text("{}")
    frame, frames = sys._getframe(), 0
    while frame is not None:
        frame, frames = frame.f_back, frames + 1
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + room)
    try:
        yield deep
    finally:
        sys.setrecursionlimit(limit)


def write_notebook(folder: Path, *cells, name="submission.ipynb") -> Path:
    """A notebook of code cells (strings) and ready-made cells (dicts), written to folder/name."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


def nbgrader_cell(source, grade_id, *, grade=False, solution=False, locked=False, points=None):
    """A code cell with nbgrader's metadata."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                                 "schema_version": 3, "solution": solution,
                                 **({"points": points} if points is not None else {})}
    return cell


def grade_from_environ(path, **kwargs) -> dict:
    """grade_notebook under the settings the environment gives (the tests set short limits there,
    as an instructor would at the command line), as the results.json document."""
    import dataclasses
    import json

    from autograder import grade, settings
    result = grade.grade_notebook(path, dataclasses.replace(settings.from_environ(), **kwargs))
    return json.loads(result.to_json())      # what results.json holds (no NaN, plain JSON)


@pytest.fixture
def limits(monkeypatch):
    """set(cell=..., call=..., total=..., grace=..., memory_mb=..., processes=...): short limits for this
    test (``processes``, which no variable sets, through the limits' defaults)."""
    from dataclasses import replace

    from autograder import settings
    from autograder.sandbox import Limits

    def set_limits(cell=3, call=30, total=150, grace=2, memory_mb=None, processes=None):
        if processes is not None:
            monkeypatch.setattr(settings, "_limits", lambda: replace(Limits(), processes=processes))
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
    from autograder import grade
    monkeypatch.setattr(grade, "PYTEST_ARGS", [*grade.PYTEST_ARGS, "-k", " or ".join(exercises)])


@pytest.fixture
def graded(monkeypatch):
    """graded(path, **kwargs) -> (results, the Submission the checks used), without the training check."""
    from autograder import submission as submission_module
    from autograder.submission import Submission
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


@pytest.fixture
def cgroups(monkeypatch):
    """The cgroups the test's workers made, each as {"dirs": [...], "events": what its counters said
    just before it was removed}; every one of them must be gone when the test ends. (The hostile
    test modules use it in every test: ``pytestmark = pytest.mark.usefixtures("cgroups")``.)"""
    from autograder.sandbox.cgroup import ResourceGroup
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


def unique_digits() -> str:
    """Digits no other process on this machine has in its command line (a sleep duration)."""
    import uuid
    return "98" + str(uuid.uuid4().int)[:8]


# --- a hostile class graded by grade-class in each mode, once per session (test_escapes.py and
# test_worker_boundary.py read the same grades: a class costs a grader start and a dozen workers) -------

ROOT = Path(__file__).resolve().parent.parent
NO_LANDLOCK = Path(__file__).resolve().parent / "hostile" / "no_landlock.py"

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
                "/proc/*/root/tmp/work/secret-solution.py", "/run/**/secret-solution.py",
                # beside its own scratch folder, wherever the grader's TMPDIR is: TMPDIR/bn-worker-*/bn-worker-*
                os.path.join(os.path.dirname(os.path.dirname(os.environ["HOME"])), "*", "*", "secret-solution.py")]
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

HOG = '''\
import os, time
for _ in range(300):                 # 300 busy processes, each in a session (a scheduler autogroup) of its own
    if os.fork() == 0:
        os.setsid()
        end = time.monotonic() + 6
        while time.monotonic() < end:
            pass
        os._exit(0)
time.sleep(6)
'''

# Graded in name order, two at a time (--jobs 2): a- and b- first, side by side (one looks for the
# other's secret while it is there), then c-hog beside c-honest (the hog must not slow its neighbour).
ESCAPE_CLASS = {          # student -> cells: the escapes and forgeries, which isolation alone defeats
    "a-keeps-a-secret": (SETUP, KEEPS_A_SECRET),
    "b-reads-others-scratch": (SETUP, READS_OTHERS_SCRATCH),
    "c-honest": (SETUP, MANUAL_BN),
    **{f"d-{name.replace('_', '-')}": (SETUP, code) for name, code in FORGERS.items()},
}
CHEATS = [student for student in ESCAPE_CLASS if student.startswith(("b-", "d-"))]


def hostile_class(tag: str) -> dict:
    """ESCAPE_CLASS and the students who attack the grader itself: a hog of processes, a forger of
    the worker's answers (leaving processes tagged ``tag`` behind), an error no encoder writes."""
    return {**ESCAPE_CLASS, "c-hog": (SETUP, HOG, MANUAL_BN), "e-channel-forger": forger_cells(tag),
            "e-surrogates": (SETUP, SURROGATES)}       # its error, quoted in every message, is written too


@pytest.fixture(scope="session")
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


def start_grade_class(course: Path, mode: str, *extra, first_uid: int, scratch: Path) -> subprocess.Popen:
    """``python -m autograder grade-class`` of ``course`` started in a subprocess, in ``mode``: as this
    machine is ("bwrap+landlock"), without bubblewrap ("landlock"), without Landlock ("bwrap") or
    without either ("none"); its workers' uids from ``first_uid``, their folders in ``scratch`` (its
    TMPDIR), its output in files beside ``course`` (read by ``finish``)."""
    env = {**os.environ, "BN_AUTOGRADER_CELL_SECONDS": "20", "BN_AUTOGRADER_CALL_SECONDS": "30",
           "BN_AUTOGRADER_UID_FIRST": str(first_uid), "BN_AUTOGRADER_UID_COUNT": str(UID_COUNT),
           "TMPDIR": str(scratch)}
    command = [sys.executable, "-m", "autograder", "grade-class", "batchnorm", "--course-dir", str(course),
               "--jobs", "2", "--force", "--no-collect", "--cache-dir", str(course.parent / "cache"), *extra]
    if mode in ("landlock", "none"):
        env["PATH"] = f"{failing_bwrap(course.parent / 'fake-bin')}{os.pathsep}{env['PATH']}"
    if mode in ("bwrap", "none"):
        command = [sys.executable, str(NO_LANDLOCK), *command]
    with open(course.parent / "grade-class.out", "w") as out, open(course.parent / "grade-class.err", "w") as err:
        return subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True, cwd=course)


def finish(started: subprocess.Popen, course: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The grade-class command ``start_grade_class`` started on ``course``, once it has ended."""
    try:
        started.wait(timeout)
    except subprocess.TimeoutExpired:
        started.kill()
        started.wait()
    return subprocess.CompletedProcess(started.args, started.returncode,
                                       (course.parent / "grade-class.out").read_text(),
                                       (course.parent / "grade-class.err").read_text())


def write_class(course: Path, hand_ins: dict) -> None:
    for student, cells in hand_ins.items():
        path = course / "submitted" / student / "batchnorm" / "batchnorm.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(path))


def class_rows(course: Path) -> dict:
    import csv
    with open(course / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def class_isolation(course: Path) -> set:
    import json
    return {json.loads(path.read_text())["isolation"] for path in (course / "grade-class").rglob("results.json")}


# What the class runs grade: the hostile class in each mode that grades, and without isolation the
# escapes' students alone (the grader's attackers would leave processes behind), refused and then
# allowed. (mode, grade-class's extra arguments) -> the class.
CLASS_RUNS = {**{(mode, ()): hostile_class for mode in GRADING_MODES},
              ("none", ()): lambda tag: ESCAPE_CLASS,
              ("none", ("--allow-unsandboxed",)): lambda tag: ESCAPE_CLASS}


@pytest.fixture(scope="session")
def hostile_class_in(tmp_path_factory, second_copies):
    """hostile_class_in(mode, *extra): the class CLASS_RUNS names, graded by grade-class in ``mode``
    (skips a mode this machine cannot run), as (done: the completed command, course, rows: grades.csv
    by student, isolation: the modes its results.json name, first_uid, tag, scratch). The first call
    grades every run this machine can, once for the session, side by side: each mostly waits (on the
    secret's and the hog's sleeps), and each has its own course, uids, scratch and tag."""
    graded = {}

    def runs_here(run) -> bool:
        try:
            offer_for(run[0])
        except pytest.skip.Exception:
            return False
        return True

    def grade_in(mode: str, *extra):
        offer_for(mode)
        if not graded:
            started = {}
            for run in filter(runs_here, CLASS_RUNS):
                root = tmp_path_factory.mktemp("-".join(["hostile-class", run[0].replace("+", "-"), *run[1]]))
                found = SimpleNamespace(course=root / "course", scratch=root / "tmp", first_uid=uid_range(),
                                        tag=unique_digits())
                found.scratch.mkdir()
                write_class(found.course, CLASS_RUNS[run](found.tag))
                started[run] = found, start_grade_class(found.course, run[0], *run[1], first_uid=found.first_uid,
                                                        scratch=found.scratch)
            for run, (found, command) in started.items():
                found.done = finish(command, found.course)
                found.rows = class_rows(found.course) if (found.course / "grades.csv").exists() else {}
                found.isolation = class_isolation(found.course)
                graded[run] = found
        return graded[mode, extra]
    return grade_in


# --- a Dask cluster on loopback running the fake grader (test_cluster.py, test_grade_class.py's backend) ---

DASK = [str(Path(sys.executable).parent / "dask")]


def start_dask(args, log: Path, env: dict):
    """``dask <args>`` in a session of its own (killed with its children), its output in ``log``."""
    import subprocess
    with open(log, "ab") as out:
        return subprocess.Popen(DASK + args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)       # its own group: killed with its children


def kill_group(proc) -> None:
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


class Cluster:
    """A scheduler on loopback and the workers a test starts on it."""

    def __init__(self, root: Path):
        import json
        import time
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.file = root / "scheduler.json"
        self.workers = []
        self.env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="True", TF_CPP_MIN_LOG_LEVEL="3")
        self.scheduler = start_dask(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(self.file)], root / "scheduler.log", self.env)
        deadline = time.monotonic() + 60
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]

    def start_workers(self, n: int, env: dict) -> list:
        started = [start_dask(["worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                           "--no-dashboard", "--local-directory", str(self.root / "workers")],
                          self.root / f"worker-{len(self.workers) + i}.log", dict(self.env, **env))
                   for i in range(n)]
        self.workers += started
        from distributed import Client
        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(sum(p.poll() is None for p in self.workers), timeout=90)
        return started

    def close(self) -> None:
        for proc in self.workers + [self.scheduler]:
            kill_group(proc)


@pytest.fixture(scope="session")
def scheduler(tmp_path_factory):
    """A Dask scheduler on loopback, shared by the modules that grade on it (skips without distributed)."""
    pytest.importorskip("distributed")
    cluster_ = Cluster(tmp_path_factory.mktemp("dask"))
    yield cluster_
    cluster_.close()


@pytest.fixture(scope="module")
def fake_workers(scheduler, tmp_path_factory):
    """Two workers for the fast tests, running the fake grader and a copy of the package, as on
    another machine (their grader hash is the copy's). The killing test is the last to use them."""
    import shutil

    from autograder import provenance
    root = tmp_path_factory.mktemp("fake-workers")
    (root / "fakemod").mkdir()
    (root / "fakemod" / "fake_isolated_grader.py").write_text(FAKE_GRADER)
    shutil.copytree(Path(provenance.__file__).parent, root / "installed" / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    log = root / "calls.jsonl"
    workers = scheduler.start_workers(2, {"FAKE_GRADER_LOG": str(log), "PYTHONPATH": os.pathsep.join(
        [str(root / "fakemod"), str(root / "installed")])})
    yield root, log, workers
    for proc in workers:
        kill_group(proc)


@pytest.fixture
def fake_class(tmp_path, monkeypatch, scheduler, fake_workers):
    """A course folder, the fake grader here and on the two workers, and the cluster's address."""
    import io
    import json

    from autograder import check_catalogue, provenance
    from autograder.classroom import classrun, server
    root, log, workers = fake_workers
    log.write_text("")
    monkeypatch.syspath_prepend(str(root / "fakemod"))
    monkeypatch.setenv("FAKE_GRADER_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(root / "fakemod"))          # for the local pool's grader processes
    monkeypatch.setattr(server, "GRADER", "fake_isolated_grader:grade_notebook")
    monkeypatch.setattr(check_catalogue, "collect_checks", fake_catalogue)
    real_hash = provenance.grader_hash
    monkeypatch.setattr(provenance, "grader_hash", lambda package=None: real_hash(root / "installed" / "autograder"))
    course = tmp_path / "course"
    (course / "submitted").mkdir(parents=True)

    class Fake:
        address = scheduler.address
        worker_processes = workers

        @staticmethod
        def calls():
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

        @staticmethod
        def run(**kwargs):
            kwargs.setdefault("progress_stream", io.StringIO())
            return classrun.run(course, **kwargs)

    Fake.root = course
    return Fake
