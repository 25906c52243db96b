"""Where Python lives must not matter: the worker finds it under /tmp (a CI checkout) or behind a closed home."""

import os
import shutil
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
