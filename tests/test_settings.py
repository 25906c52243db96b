"""Every setting is declared once (autograder/settings.py), read from the environment and the
command line at the edges, carried whole through one codec, and documented by the README's table,
which is generated from the declarations."""

import dataclasses
import json
import re
import warnings
from pathlib import Path

import pytest

from autograder import settings
from autograder.sandbox import Limits
from autograder.settings import Settings, TrainingBudget

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_holds_exactly_the_settings_table():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == settings.markdown_table()


def test_every_setting_is_declared_once_fully_documented():
    variables = [s.variable for s in settings.SETTINGS if s.variable]
    assert len(variables) == len(set(variables)) == len(settings.BY_VARIABLE)
    assert all(s.unit and s.help and s.default_text() for s in settings.SETTINGS)
    assert all(s.variable or s.flag for s in settings.SETTINGS)
    assert all(s.flag_help for s in settings.FLAGGED)


# --- adding a setting is one declaration: everything else follows from it -----------------------------

def test_every_field_of_settings_is_a_declared_setting():
    targets = {s.target.partition(".")[0] for s in settings.SETTINGS if s.target}
    assert targets == {f.name for f in dataclasses.fields(Settings)}
    for group, cls in (("limits", Limits), ("training_budget", TrainingBudget)):
        declared = {s.target.partition(".")[2] for s in settings.SETTINGS if s.target.startswith(group + ".")}
        assert declared <= {f.name for f in dataclasses.fields(cls)}


def _changed(value):
    """Another value of the same kind, so that a field left out of the codec shows."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, Path) or value is None:
        return Path("/srv/another")
    return value


def test_the_codec_round_trips_every_field_through_json():
    changed = Settings(**{
        f.name: (dataclasses.replace(getattr(Settings(), f.name),
                                     **{g.name: _changed(getattr(getattr(Settings(), f.name), g.name))
                                        for g in dataclasses.fields(getattr(Settings(), f.name))})
                 if dataclasses.is_dataclass(getattr(Settings(), f.name)) else _changed(getattr(Settings(), f.name)))
        for f in dataclasses.fields(Settings)})
    for found in (Settings(), settings.from_environ({}), changed):
        assert Settings.from_dict(json.loads(json.dumps(found.to_dict()))) == found
    assert all(getattr(changed, f.name) != getattr(Settings(), f.name) for f in dataclasses.fields(Settings))
    assert Settings.from_dict(None) == Settings()
    with pytest.raises(ValueError):
        Settings.from_dict({"limits": {"no_such_limit": 1}})


def test_the_argparse_parent_has_every_flag_with_its_declared_help():
    parser = settings.parent_parser()
    actions = {a.option_strings[0]: a for a in parser._actions}
    assert set(actions) == {s.flag for s in settings.FLAGGED}
    for setting in settings.FLAGGED:
        assert actions[setting.flag].help == setting.flag_help and actions[setting.flag].dest == setting.target
    args = parser.parse_args(["--cache-dir", "/srv/c", "--allow-unsandboxed"])
    found = settings.from_environ({"BN_AUTOGRADER_CACHE": "/srv/env"}, flags=args)
    assert found.cache_dir == Path("/srv/c") and found.allow_unsandboxed is True
    assert settings.from_environ({"BN_AUTOGRADER_CACHE": "/srv/env"}, flags=parser.parse_args([])) == \
        settings.from_environ({"BN_AUTOGRADER_CACHE": "/srv/env"})


def test_the_commands_the_checks_and_nbgrader_take_the_same_flags():
    from autograder import grade
    from autograder.checks import conftest as checks_conftest
    from autograder.classroom import cli
    from autograder.nbgrader_bridge import IsolatedGrade
    for parser in (cli._parser(),):
        helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
        assert all(helps[s.flag] == s.flag_help for s in settings.FLAGGED)
    for setting in settings.FLAGGED:
        trait = IsolatedGrade.class_traits()[setting.target]
        assert setting.flag_help in trait.help and trait.metadata.get("config")
    options = []

    class Group:
        def addoption(self, *names, **kwargs):
            options.append((names, kwargs))

    class Parser:
        def getgroup(self, name):
            return Group()
    checks_conftest.pytest_addoption(Parser())
    for setting in settings.FLAGGED:
        assert any(setting.flag in names and kwargs["help"] == setting.flag_help for names, kwargs in options)
    assert "parents=[settings.parent_parser()]" in Path(grade.__file__).read_text()


def test_settings_imports_nothing_of_the_grading_path():
    import subprocess
    import sys
    code = ("import sys, autograder.settings as s; s.from_environ(); "
            "print(sorted(m for m in sys.modules if m.startswith('autograder')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(done.stdout))  # noqa: S307 - our own printout
    assert not {m for m in loaded if (m + ".").split(".")[1] in ("training", "grade", "check_catalogue", "grading_run",
                                                                "checks", "classroom", "reference", "models",
                                                                "submission")}, loaded
    assert {"autograder.settings", "autograder.sandbox.limits"} <= loaded


def test_the_uid_range_has_one_home():
    from autograder.sandbox import identity
    assert not hasattr(identity, "DEFAULT_FIRST_UID") and not hasattr(identity, "DEFAULT_UID_COUNT")
    assert "1_900_000_000" not in Path(identity.__file__).read_text() and Limits().uid_first == 1_900_000_000


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

