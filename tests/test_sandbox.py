"""Where Python lives must not matter: the worker finds it under /tmp (a CI checkout) or behind a closed home."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import sandbox


def _mounts(argv):
    """(option, path) pairs in bwrap's order."""
    pairs = []
    for i, arg in enumerate(argv):
        if arg in ("--tmpfs", "--ro-bind", "--dir"):
            pairs.append((arg, argv[i + 1]))
    return pairs


def test_python_under_tmp_is_brought_back_after_the_scratch_tmp(monkeypatch):
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: {"/tmp/checkout/.venv"})
    mounts = _mounts(sandbox.bubblewrap_argv())
    assert mounts.index(("--tmpfs", "/tmp")) < mounts.index(("--ro-bind", "/tmp/checkout/.venv"))


@pytest.fixture
def folder_outside_tmp():
    """A folder that is not under the sandbox's scratch dirs (pytest's tmp_path is under /tmp)."""
    for place in (Path(__file__).resolve().parent, Path.home(), Path("/var/lib")):
        if not any(sandbox._inside(str(place), s) for s in sandbox.SCRATCH_DIRS) and os.access(place, os.W_OK):
            folder = Path(tempfile.mkdtemp(prefix="test-sandbox-", dir=place))
            yield folder
            shutil.rmtree(folder)
            return
    pytest.skip("no writable folder outside /tmp")


def test_a_closed_folder_above_python_is_replaced_by_an_open_one(monkeypatch, folder_outside_tmp):
    closed = folder_outside_tmp / "home"
    python = closed / "pyenv" / "versions" / "3.11"
    python.mkdir(parents=True)
    os.chmod(closed, 0o700)
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: {str(python)})
    mounts = _mounts(sandbox.bubblewrap_argv())
    assert mounts.index(("--tmpfs", str(closed))) < mounts.index(("--ro-bind", str(python)))
    assert ("--dir", str(closed / "pyenv")) in mounts


def test_folders_hidden_under_tmp_do_not_reappear_as_mount_points(monkeypatch):
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: {"/usr"})
    mounts = _mounts(sandbox.bubblewrap_argv(hide=["/tmp/course/submitted/alice"]))
    assert not any(path.startswith("/tmp/course") for _, path in mounts)


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
with Submission("submission.ipynb") as s:
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


@needs_bwrap
def test_the_worker_starts_from_a_venv_symlinked_into_the_course_folder(folder_outside_tmp):
    course = folder_outside_tmp / "course"
    course.mkdir()
    (course / ".venv").symlink_to(VENV)           # ln -s ~/envs/bn .venv
    found = _start_worker(course / ".venv" / "bin" / "python", course)
    assert found["answer"] == [2.0, 2.0]
    assert found["prefix"] == str(course / ".venv")   # the grader did run from the hidden link


@needs_bwrap
def test_the_worker_starts_from_a_venv_inside_the_course_folder(folder_outside_tmp):
    course = folder_outside_tmp / "course"
    python = _venv_by_links(course / ".venv")
    found = _start_worker(python, course)
    assert found["answer"] == [2.0, 2.0]
    assert found["prefix"] == str(course / ".venv")


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
    from autograder import pool
    monkeypatch.setattr(pool, "cpu_count", lambda: 4)
    graders = pool.worker_env(2)
    monkeypatch.setenv(sandbox.THREADS_VARIABLE, graders[sandbox.THREADS_VARIABLE])
    worker = sandbox.worker_environment("/tmp/work")
    assert {v: worker[v] for v in THREAD_VARIABLES} == {v: graders[v] for v in THREAD_VARIABLES}
    assert worker["TF_NUM_INTRAOP_THREADS"] == "2"
