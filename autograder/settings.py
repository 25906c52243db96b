"""Every setting of the grader, declared once: its environment variable, default, unit and help.

The environment is read at the edges (a command's ``main``, the checks' conftest when pytest is run
by hand), by ``from_environ()``, and what it found is passed down explicitly: ``Limits`` to the
sandbox, ``TrainingBudget`` to training.py, the cache folder and the memo switch to the training
check. A value that cannot be used warns (SettingWarning) and the default is used instead.

The defaults of the worker's limits and of the training budget are those of their dataclasses
(``sandbox.Limits``, ``training.TrainingBudget``); a setting only says which field it sets and in
which unit. The README's "Settings" table is ``markdown_table()`` (tests/test_settings.py).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from autograder.sandbox import Limits
    from autograder.training import TrainingBudget


class SettingWarning(UserWarning):
    """An environment variable holds a value that cannot be used; the setting's default is used."""


def _positive_number(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError(text)
    return value


def _whole_number(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _switch(text: str) -> bool:
    return {"1": True, "on": True, "true": True, "yes": True,
            "0": False, "off": False, "false": False, "no": False}[text.lower()]


def _default_cache_dir() -> Path:
    from autograder.trainingcache import default_cache_dir    # noqa: PLC0415 (not in the student kit)
    return default_cache_dir()


@dataclass(frozen=True)
class Setting:
    """One environment variable: where its value goes (``target``: "limits.<field>" or
    "training_budget.<field>" of those dataclasses, a field of Settings, or "" for a variable read
    where it is used), how its text is read, and the factor from its unit to the target's."""

    variable: str
    target: str
    unit: str
    help: str
    parse: Callable[[str], object] = _positive_number
    expects: str = "a positive number"       # for the warning about a bad value
    scale: int = 1
    default: object = None                   # for a target that is not a dataclass field
    shown: str | None = None                 # the default as the README's table writes it

    def default_value(self):
        """The default, in the target's unit."""
        group, _, name = self.target.partition(".")
        if name:
            return {f.name: f.default for f in fields(_dataclass(group))}[name]
        return self.default() if callable(self.default) else self.default

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default_value()
        return f"{value / self.scale:g}" if isinstance(value, (int, float)) else str(value)


def _dataclass(group: str):
    """The dataclass a group of settings fills, imported when first needed (training is heavy, and
    the student's kit has the sandbox's Limits but no training)."""
    if group == "limits":
        from autograder.sandbox import Limits          # noqa: PLC0415
        return Limits
    from autograder.training import TrainingBudget      # noqa: PLC0415
    return TrainingBudget


CELL_SECONDS = Setting("BN_AUTOGRADER_CELL_SECONDS", "limits.cell_seconds", "s",
                       "time for each notebook cell in the sandboxed worker")
CALL_SECONDS = Setting("BN_AUTOGRADER_CALL_SECONDS", "limits.call_seconds", "s",
                       "time for each call of a student's function by a check")
TOTAL_SECONDS = Setting("BN_AUTOGRADER_TOTAL_SECONDS", "limits.total_seconds", "s",
                        "time for everything the worker does for one submission")
GRACE_SECONDS = Setting("BN_AUTOGRADER_GRACE_SECONDS", "limits.grace_seconds", "s",
                        "how long past a time limit the grader waits before it kills the worker")
MEMORY_MB = Setting("BN_AUTOGRADER_MEMORY_MB", "limits.memory_bytes", "MiB",
                    "memory of the sandboxed worker (its cgroup, or twice this as address space)",
                    scale=1 << 20)
WORKER_CPUS = Setting("BN_AUTOGRADER_WORKER_CPUS", "limits.cpus", "CPUs",
                      "CPUs the sandboxed worker and every process it starts may use together (its "
                      "cgroup's `cpu.max` or CFS quota; no cap where no cpu cgroup can be made; grade-class "
                      "raises it to a worker's threads when it gives one more)")
TRAINING_SECONDS = Setting("BN_AUTOGRADER_TRAINING_SECONDS", "training_budget.seconds", "s",
                           "wall-clock time of the training check in the grader's process")
TRAINING_MEMORY_MB = Setting("BN_AUTOGRADER_TRAINING_MEMORY_MB", "training_budget.memory_bytes", "MiB",
                             "memory the grader's process may grow by while the training check trains",
                             scale=1 << 20)
CACHE = Setting("BN_AUTOGRADER_CACHE", "cache_dir", "folder",
                "the grader cache: the training baseline and the memo (`--cache-dir` overrides it)",
                parse=Path, expects="a folder", default=_default_cache_dir, shown="~/.cache/bn-autograder")
MEMO = Setting("BN_AUTOGRADER_TRAINING_MEMO", "memo", "0 or 1",
               "0 turns off the training check's memo by architecture (to compare verdicts without it)",
               parse=_switch, expects="0 or 1", default=True, shown="1")
THREADS = Setting("BN_AUTOGRADER_THREADS", "limits.threads", "threads",
                  "threads of a grader process and its worker; grade-class sets it for each grader process",
                  parse=_whole_number, expects="a whole number of at least 1", default=1)
UID_FIRST = Setting("BN_AUTOGRADER_UID_FIRST", "limits.uid_first", "uid",
                    "as root, each sandboxed worker runs as its own uid, the first free one of "
                    "`BN_AUTOGRADER_UID_COUNT` from this one (no user or group may use them)",
                    parse=_whole_number, expects="a whole number of at least 1", shown="1900000000")
UID_COUNT = Setting("BN_AUTOGRADER_UID_COUNT", "limits.uid_count", "uids",
                    "how many uids the range holds: at least the workers running at once on this machine",
                    parse=_whole_number, expects="a whole number of at least 1")
FASHION_MNIST_DIR = Setting("FASHION_MNIST_DIR", "", "folder",
                            "the one folder searched for the four Fashion-MNIST files, instead of "
                            "Keras' cache and Debian's (read by data.py)",
                            parse=Path, expects="a folder", shown="(unset)")

SETTINGS = (CELL_SECONDS, CALL_SECONDS, TOTAL_SECONDS, GRACE_SECONDS, MEMORY_MB, WORKER_CPUS, TRAINING_SECONDS,
            TRAINING_MEMORY_MB, CACHE, MEMO, THREADS, UID_FIRST, UID_COUNT, FASHION_MNIST_DIR)
BY_VARIABLE = {setting.variable: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """What the environment set, read once at an edge and passed down."""

    limits: Limits                      # the sandboxed worker's (sandbox.Limits)
    training_budget: TrainingBudget     # the training check's, in the grader's process
    cache_dir: Path
    memo: bool
    allow_unsandboxed: bool = False     # never from the environment: --allow-unsandboxed, explicitly


def value(setting: Setting | str, environ=None):
    """The value of one setting in the target's unit: from ``environ`` (default os.environ) when it
    is set and usable, else the default (a bad value warns)."""
    setting = BY_VARIABLE[setting] if isinstance(setting, str) else setting
    environ = os.environ if environ is None else environ
    text = environ.get(setting.variable, "").strip()
    if text:
        try:
            parsed = setting.parse(text)
        except (ValueError, KeyError):
            warnings.warn(f"{setting.variable}={text!r} is not {setting.expects}; using the default",
                          SettingWarning, stacklevel=2)
        else:
            if setting.scale == 1:
                return parsed
            scaled = parsed * setting.scale
            return int(scaled) if isinstance(setting.default_value(), int) else scaled
    return setting.default_value()


def _group(environ, group: str) -> dict:
    """{field: value} of the settings of one dataclass ("limits", "training_budget") that ``environ`` sets."""
    found = {}
    for setting in SETTINGS:
        target, _, name = setting.target.partition(".")
        if target == group and name and environ.get(setting.variable, "").strip():
            found[name] = value(setting, environ)
    return found


def limits_from_environ(environ=None) -> Limits:
    """Only the sandboxed worker's limits (the student's own check: it trains nothing)."""
    environ = os.environ if environ is None else environ
    return replace(_dataclass("limits")(), **_group(environ, "limits"))


def from_environ(environ=None) -> Settings:
    """Every setting from ``environ`` (default os.environ); bad values warn and give the default."""
    environ = os.environ if environ is None else environ
    found = {setting.target: value(setting, environ) for setting in SETTINGS
             if setting.target and "." not in setting.target}
    return Settings(limits=limits_from_environ(environ),
                    training_budget=replace(_dataclass("training_budget")(), **_group(environ, "training_budget")),
                    **found)


def markdown_table() -> str:
    """The settings as the README's Markdown table."""
    lines = ["| variable | default | unit | what it sets |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        lines.append(f"| `{setting.variable}` | {setting.default_text()} | {setting.unit} | {setting.help} |")
    return "\n".join(lines) + "\n"
