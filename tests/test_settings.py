"""Every setting is declared once (autograder/settings.py), read from the environment at the edges,
and documented by the README's table, which is generated from the declarations."""

import re
import warnings
from pathlib import Path

import pytest

from autograder import settings
from autograder.sandbox import Limits
from autograder.training import TrainingBudget

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_holds_exactly_the_settings_table():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == settings.markdown_table()


def test_every_setting_is_declared_once_fully_documented():
    variables = [s.variable for s in settings.SETTINGS]
    assert len(variables) == len(set(variables)) == len(settings.BY_VARIABLE)
    assert all(s.unit and s.help and s.default_text() for s in settings.SETTINGS)


def test_no_variable_gives_the_defaults():
    found = settings.from_environ({})
    assert found.limits == Limits() and found.training_budget == TrainingBudget()
    assert found.cache_dir == Path.home() / ".cache" / "bn-autograder"
    assert found.memo is True and found.limits.threads == 1


@pytest.mark.parametrize("variable, value", [
    ("BN_AUTOGRADER_CELL_SECONDS", "soon"), ("BN_AUTOGRADER_CALL_SECONDS", "-1"),
    ("BN_AUTOGRADER_TOTAL_SECONDS", "0"), ("BN_AUTOGRADER_GRACE_SECONDS", "inf"),
    ("BN_AUTOGRADER_MEMORY_MB", "lots"), ("BN_AUTOGRADER_TRAINING_SECONDS", "nan"),
    ("BN_AUTOGRADER_TRAINING_MEMORY_MB", "2G"), ("BN_AUTOGRADER_TRAINING_MEMO", "maybe"),
    ("BN_AUTOGRADER_THREADS", "0"), ("BN_AUTOGRADER_THREADS", "2.5")])
def test_a_bad_value_falls_back_to_the_default_with_a_warning(variable, value):
    with pytest.warns(settings.SettingWarning, match=re.escape(f"{variable}={value!r}")):
        found = settings.from_environ({variable: value})
    assert found == settings.from_environ({})


def test_an_empty_value_is_no_value():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.from_environ({"BN_AUTOGRADER_CELL_SECONDS": "  "}) == settings.from_environ({})


def test_megabytes_become_bytes_as_whole_numbers():
    found = settings.from_environ({"BN_AUTOGRADER_MEMORY_MB": "1024", "BN_AUTOGRADER_TRAINING_MEMORY_MB": "0.5"})
    assert found.limits.memory_bytes == 1 << 30 and isinstance(found.limits.memory_bytes, int)
    assert found.training_budget.memory_bytes == 1 << 19 and isinstance(found.training_budget.memory_bytes, int)


@pytest.mark.parametrize("variable, text, where, value", [
    ("BN_AUTOGRADER_CELL_SECONDS", "2.5", "limits.cell_seconds", 2.5),
    ("BN_AUTOGRADER_CALL_SECONDS", "7", "limits.call_seconds", 7.0),
    ("BN_AUTOGRADER_TOTAL_SECONDS", "60", "limits.total_seconds", 60.0),
    ("BN_AUTOGRADER_GRACE_SECONDS", "1", "limits.grace_seconds", 1.0),
    ("BN_AUTOGRADER_MEMORY_MB", "64", "limits.memory_bytes", 64 << 20),
    ("BN_AUTOGRADER_TRAINING_SECONDS", "0.001", "training_budget.seconds", 0.001),
    ("BN_AUTOGRADER_TRAINING_MEMORY_MB", "100", "training_budget.memory_bytes", 100 << 20),
    ("BN_AUTOGRADER_CACHE", "/srv/grader-cache", "cache_dir", Path("/srv/grader-cache")),
    ("BN_AUTOGRADER_TRAINING_MEMO", "0", "memo", False),
    ("BN_AUTOGRADER_TRAINING_MEMO", "1", "memo", True),
    ("BN_AUTOGRADER_THREADS", "3", "limits.threads", 3)])
def test_each_setting_reaches_only_its_place(variable, text, where, value):
    found, default = settings.from_environ({variable: text}), settings.from_environ({})
    group, _, name = where.partition(".")
    assert (getattr(getattr(found, group), name) if name else getattr(found, group)) == value
    changed = {f for f in ("limits", "training_budget", "cache_dir", "memo")
               if getattr(found, f) != getattr(default, f)}
    assert changed <= {group}


def test_the_variables_are_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("BN_AUTOGRADER_CALL_SECONDS", "3")
    monkeypatch.setenv("BN_AUTOGRADER_TRAINING_SECONDS", "9")
    found = settings.from_environ()
    assert found.limits.call_seconds == 3.0 and found.training_budget.seconds == 9.0


def test_the_threads_reach_the_workers_limits(monkeypatch):
    from autograder.sandbox import process
    monkeypatch.setenv("BN_AUTOGRADER_THREADS", "2")
    found = settings.from_environ()
    assert found.limits.threads == 2
    assert process.worker_environment("/tmp/work", threads=found.limits.threads)["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("BN_AUTOGRADER_THREADS", "none")
    with pytest.warns(settings.SettingWarning):
        assert settings.from_environ().limits.threads == 1


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

