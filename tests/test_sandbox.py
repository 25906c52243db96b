"""Where Python lives must not matter: the worker finds it under /tmp (a CI checkout) or behind a closed home."""

import os

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


def test_a_closed_folder_above_python_is_replaced_by_an_open_one(monkeypatch, tmp_path):
    closed = tmp_path / "home"
    python = closed / "pyenv" / "versions" / "3.11"
    python.mkdir(parents=True)
    os.chmod(closed, 0o700)
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: {str(python)})
    mounts = _mounts(sandbox.bubblewrap_argv())
    assert mounts.index(("--tmpfs", str(closed))) < mounts.index(("--ro-bind", str(python)))
    assert ("--dir", str(closed / "pyenv")) in mounts
