"""Where Python lives must not matter: the worker finds it under /tmp (a CI checkout) or behind a closed home.
What the worker sees is an allow-list (bubblewrap's mounts, Landlock's rules), and one function
chooses the isolation for every path."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.errors import SandboxUnavailable
from autograder.sandbox import allowlist, bwrap, isolation, process
from autograder.sandbox.isolation import Isolation, Offer


def _mounts(argv):
    """(option, path) pairs in bwrap's order."""
    pairs = []
    for i, arg in enumerate(argv):
        if arg in ("--tmpfs", "--ro-bind", "--dir"):
            pairs.append((arg, argv[i + 1]))
    return pairs


def test_python_under_tmp_is_brought_back_after_the_scratch_tmp(monkeypatch):
    monkeypatch.setattr(process, "_python_dirs", lambda: {"/tmp/checkout/.venv"})
    mounts = _mounts(process.bubblewrap_argv())
    assert mounts.index(("--tmpfs", "/tmp")) < mounts.index(("--ro-bind", "/tmp/checkout/.venv"))


@pytest.fixture
def folder_outside_tmp():
    """A folder that is not under the sandbox's scratch dirs (pytest's tmp_path is under /tmp)."""
    for place in (Path(__file__).resolve().parent, Path.home(), Path("/var/lib")):
        if not any(allowlist.inside(str(place), s) for s in bwrap.SCRATCH_DIRS) and os.access(place, os.W_OK):
            folder = Path(tempfile.mkdtemp(prefix="test-sandbox-", dir=place))
            yield folder
            shutil.rmtree(folder)
            return
    pytest.skip("no writable folder outside /tmp")


def test_a_closed_folder_above_python_opens_onto_python_alone(monkeypatch, folder_outside_tmp):
    closed = folder_outside_tmp / "home"
    python = closed / "pyenv" / "versions" / "3.11"
    python.mkdir(parents=True)
    (closed / "secret").write_text("not for the worker")
    os.chmod(closed, 0o700)
    monkeypatch.setattr(process, "_python_dirs", lambda: {str(python)})
    mounts = _mounts(process.bubblewrap_argv())
    assert mounts.index(("--dir", str(closed))) < mounts.index(("--ro-bind", str(python)))
    assert ("--dir", str(closed / "pyenv")) in mounts
    assert not any(path in (str(closed), str(closed / "secret")) for how, path in mounts if how == "--ro-bind")


def test_of_the_package_only_the_worker_script_with_confine_py_is_mounted():
    assert sandbox.PACKAGE_DIR == Path(__file__).resolve().parent.parent / "autograder"
    argv = process.bubblewrap_argv()
    bound = [path for how, path in _mounts(argv) if how == "--ro-bind"]
    hidden = [path for how, path in _mounts(argv) if how == "--tmpfs"]
    assert not any(allowlist.inside(str(sandbox.PACKAGE_DIR), b) for b in bound) or str(sandbox.PACKAGE_DIR) in hidden
    at = argv.index(bwrap.SANDBOX_WORKER)                                   # the worker brought back
    assert argv[at - 2:at] == ["--ro-bind", str(bwrap.WORKER_SCRIPT)] and bwrap.WORKER_SCRIPT.is_file()
    at = argv.index(bwrap.SANDBOX_CONFINE)                                  # and confine.py beside it
    assert argv[at - 2:at] == ["--ro-bind", str(bwrap.CONFINE_SCRIPT)] and bwrap.CONFINE_SCRIPT.is_file()


def test_folders_hidden_under_tmp_do_not_reappear_as_mount_points(monkeypatch):
    monkeypatch.setattr(process, "_python_dirs", lambda: {"/usr"})
    mounts = _mounts(process.bubblewrap_argv(hide=["/tmp/course/submitted/alice"]))
    assert not any(path.startswith("/tmp/course") for _, path in mounts)


# --- the allow-list: only what the worker needs, the same for bubblewrap and Landlock -----------------

def test_bubblewrap_mounts_only_the_allow_list():
    argv = process.bubblewrap_argv()
    pairs = list(zip(argv, argv[1:], strict=False))
    assert ("--ro-bind", "/") not in pairs and ("--bind", "/") not in pairs
    bound = {path for how, path in _mounts(argv) if how == "--ro-bind"}
    allowed = set(process.allowed().read_only) | {str(bwrap.WORKER_SCRIPT), str(bwrap.CONFINE_SCRIPT), "/dev/null"}
    assert bound <= allowed, bound - allowed
    for folder in ("/home", "/root", "/srv", "/opt", "/mnt", "/media", "/etc", "/var", "/run", "/usr/local"):
        assert folder not in bound, folder
    assert ("--ro-bind", "/etc/ld.so.cache") in pairs and ("--dev", "/dev") in pairs and ("--proc", "/proc") in pairs


def _fake_site_packages(root: Path) -> Path:
    """A site-packages folder holding a non-editable install of the grader and an editable finder."""
    site_packages = root / "lib" / "python3.11" / "site-packages"
    (site_packages / "autograder").mkdir(parents=True)
    (site_packages / "autograder" / "reference.py").write_text("SECRET = 1\n")
    (site_packages / "batchnorm_assignment-1.0.0.dist-info").mkdir()
    (site_packages / "__editable__.batchnorm_assignment-1.0.0.pth").write_text("import finder\n")
    (site_packages / "__pycache__").mkdir()
    (site_packages / "__pycache__" / "__editable___batchnorm_assignment_1_0_0_finder.cpython-311.pyc").write_bytes(b"")
    (site_packages / "__pycache__" / "six.cpython-311.pyc").write_bytes(b"")
    (site_packages / "numpy").mkdir()
    (site_packages / "six.py").write_text("")
    (root / "lib64").symlink_to("lib")               # a venv's lib64 link: it would expose everything
    return site_packages


def test_the_grader_inside_site_packages_is_hidden_from_both_layers(tmp_path):
    prefix = tmp_path / "venv"
    site_packages = _fake_site_packages(prefix)
    allow = allowlist.build({str(prefix), str(site_packages)})
    secret = {str(site_packages / n) for n in ("autograder", "batchnorm_assignment-1.0.0.dist-info",
                                                "__editable__.batchnorm_assignment-1.0.0.pth")}
    assert secret <= set(allow.hidden)
    read_only, list_only = allow.landlock_rules()
    assert str(site_packages / "numpy") in read_only and str(site_packages / "six.py") in read_only
    assert str(site_packages / "__pycache__" / "six.cpython-311.pyc") in read_only
    assert not any(allowlist.inside(r, s) for r in read_only for s in secret), read_only
    assert not any(allowlist.inside(str(site_packages), r) for r in read_only)      # nothing above it whole
    assert str(prefix / "lib64") not in read_only
    assert list(list_only) == [str(site_packages)]        # Python lists it to import; names only
    mounts = bwrap.mount_arguments(allow, sandbox.Limits())
    pairs = list(zip(mounts, mounts[1:], strict=False))
    assert ("--tmpfs", str(site_packages / "autograder")) in pairs
    assert ("--ro-bind", "/dev/null") in pairs
    assert str(site_packages / "__editable__.batchnorm_assignment-1.0.0.pth") in mounts
    assert mounts.index(str(prefix)) < mounts.index(str(site_packages / "autograder"))


def test_usr_local_stays_out_unless_python_lives_there():
    allow = allowlist.build({"/usr/lib/python3/dist-packages"})
    read_only, _ = allow.landlock_rules()
    assert "/usr/local" in allow.hidden and not any(allowlist.inside(r, "/usr/local") for r in read_only)
    with_python = allowlist.build({"/usr/local", "/usr/local/lib/python3.11/site-packages"})
    assert "/usr/local" not in with_python.hidden and "/usr/local" in with_python.landlock_rules()[0]


def test_the_distribution_name_is_the_projects():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert f'name = "{allowlist.DISTRIBUTION.replace("_", "-")}"' in text


@pytest.mark.slow
@pytest.mark.skipif(not isolation.probe().confinement,
                    reason=f"no Landlock + seccomp: {isolation.probe().confinement_reason}")
def test_without_bubblewrap_a_students_libraries_still_run(tmp_path):
    import nbformat
    import numpy as np

    from autograder.submission import Submission
    code = ("import numpy as np\n"
            "def frameworks(x):\n    import keras, tensorflow as tf\n"
            "    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
            "    return np.array([model.count_params(), float(tf.reduce_sum(tf.constant([1.0, 2.0])))])\n")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path / "nb.ipynb")
    with Submission.open(tmp_path / "nb.ipynb", sandbox.Limits(call_seconds=120), isolation=Isolation.LANDLOCK) as s:
        assert s.call_array("frameworks", np.ones(1)).value.tolist() == [10.0, 3.0]
        assert s.isolation == "landlock"


# --- one function chooses the isolation ------------------------------------------------------------

def _offer(bubblewrap: bool, landlock: bool) -> Offer:
    return Offer(bubblewrap, "" if bubblewrap else "bwrap cannot make its namespaces here", landlock,
                 "" if landlock else "no Landlock: the kernel lacks Landlock", 7 if landlock else 0)


@pytest.mark.parametrize("bubblewrap, landlock, mode", [
    (True, True, Isolation.BWRAP_LANDLOCK), (True, False, Isolation.BWRAP), (False, True, Isolation.LANDLOCK)])
def test_the_best_mode_is_chosen(monkeypatch, bubblewrap, landlock, mode):
    monkeypatch.setattr(isolation, "_offer", _offer(bubblewrap, landlock))
    assert isolation.choose_isolation() is mode
    assert isolation.choose_isolation(allow_unsandboxed=True) is mode


def test_neither_refuses_saying_why_with_what_to_install(monkeypatch, caplog):
    monkeypatch.setattr(isolation, "_offer", _offer(False, False))
    monkeypatch.setattr(isolation, "_warned", False)
    with pytest.raises(SandboxUnavailable) as refused:
        isolation.choose_isolation()
    for needle in ("bwrap cannot make its namespaces here", "the kernel lacks Landlock", "apt-get install bubblewrap",
                   "5.13", "6.7", "--allow-unsandboxed"):
        assert needle in str(refused.value)
    assert isolation.choose_isolation(never_refuse=True) is Isolation.NONE      # the student's own check
    assert not caplog.records
    with caplog.at_level("WARNING"):
        assert isolation.choose_isolation(allow_unsandboxed=True) is Isolation.NONE
    assert any("WITHOUT ISOLATION" in r.getMessage() for r in caplog.records)
    with pytest.raises(SandboxUnavailable):
        process.SandboxedProcess(sandbox.Limits())        # no mode given: the chooser refuses


def test_the_machine_is_probed_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(isolation, "_offer", None)
    monkeypatch.setattr(isolation.confine, "probe", lambda: calls.append(1) or isolation.confine.Support(
        7, "", True, "", "x86_64"))
    monkeypatch.setattr(isolation.bwrap, "bubblewrap_status", lambda: (False, "no bwrap"))
    assert isolation.choose_isolation() is isolation.choose_isolation() is Isolation.LANDLOCK
    assert len(calls) == 1


# --- Python wherever it lives: the worker starts for each layout (real bubblewrap) -----------------

needs_bwrap = pytest.mark.skipif(not sandbox.bubblewrap_available(), reason="bubblewrap cannot run here")
VENV = Path(sys.prefix)     # the project's venv, which each layout below reaches in its own way

# Runs under the layout's interpreter, with the course folder as the working directory (as
# grade-class does): a worker in the sandbox must start and answer a call.
STARTS_A_WORKER = """\
import json, sys
import nbformat, numpy as np
from autograder.submission import Submission
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def double(x):\\n    return 2 * x\\n")])
nbformat.write(nb, "submission.ipynb")
with Submission.open("submission.ipynb") as s:
    print(json.dumps({"prefix": sys.prefix, "answer": s.call_array("double", np.ones(2)).value.tolist()}))
"""


def _start_worker(python: Path, course: Path) -> dict:
    done = subprocess.run([str(python), "-c", STARTS_A_WORKER], cwd=course, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "BN_AUTOGRADER_CELL_SECONDS": "20"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _venv_by_links(prefix: Path) -> Path:
    """A venv at ``prefix`` made of links into the project's venv (fast: nothing is installed):
    its own pyvenv.cfg and bin/, lib/ linked; returns its bin/python."""
    (prefix / "bin").mkdir(parents=True)
    shutil.copy(VENV / "pyvenv.cfg", prefix / "pyvenv.cfg")
    (prefix / "lib").symlink_to(VENV / "lib")
    (prefix / "bin" / "python").symlink_to(VENV / "bin" / "python")
    return prefix / "bin" / "python"


@pytest.mark.slow
@needs_bwrap
def test_the_worker_starts_from_a_venv_symlinked_into_the_course_folder(folder_outside_tmp):
    course = folder_outside_tmp / "course"
    course.mkdir()
    (course / ".venv").symlink_to(VENV)           # ln -s ~/envs/bn .venv
    found = _start_worker(course / ".venv" / "bin" / "python", course)
    assert found["answer"] == [2.0, 2.0]
    assert found["prefix"] == str(course / ".venv")   # the grader did run from the hidden link


@pytest.mark.slow
@needs_bwrap
def test_the_worker_starts_from_a_venv_inside_the_course_folder(folder_outside_tmp):
    course = folder_outside_tmp / "course"
    python = _venv_by_links(course / ".venv")
    found = _start_worker(python, course)
    assert found["answer"] == [2.0, 2.0]
    assert found["prefix"] == str(course / ".venv")


@pytest.mark.slow
@needs_bwrap
def test_the_worker_starts_from_a_prefix_behind_a_chain_of_links_in_a_closed_folder(folder_outside_tmp):
    home = folder_outside_tmp / "home"                # like pyenv or conda under a 0700 home
    prefix = home / "miniconda3" / "envs" / "bn"
    python = _venv_by_links(prefix)
    python.unlink()
    (prefix / "bin" / "python3.11").symlink_to(VENV / "bin" / "python")
    (prefix / "bin" / "python3").symlink_to("python3.11")
    python.symlink_to("python3")
    course = folder_outside_tmp / "course"
    course.mkdir()
    os.chmod(home, 0o700)
    found = _start_worker(python, course)
    assert found["answer"] == [2.0, 2.0]
    assert found["prefix"] == str(prefix)


# --- one source of thread settings -------------------------------------------------------------------

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")


def test_the_worker_gets_the_thread_settings_of_the_grader_process_that_starts_it(monkeypatch):
    from autograder.classroom import pool
    monkeypatch.setattr(pool, "cpu_count", lambda: 4)
    graders = pool.worker_env(2)
    from autograder.settings import Settings
    sent = Settings().with_threads(pool.cpu_count() // 2)     # what each grader process gets (pool._Pool)
    worker = process.worker_environment("/tmp/work", threads=sent.limits.threads)
    assert {v: worker[v] for v in THREAD_VARIABLES} == {v: graders[v] for v in THREAD_VARIABLES}
    assert worker["TF_NUM_INTRAOP_THREADS"] == "2"
