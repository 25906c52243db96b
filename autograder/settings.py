"""Every setting of the grader, declared once: its environment variable, its command-line flag, its
default, unit and help.

One ``Settings`` value (frozen) holds them all: the sandboxed worker's ``Limits``, the training
check's ``TrainingBudget``, the cache folder, the memo switch and ``allow_unsandboxed``. It is built
at the edges (a command's ``main``, the checks' conftest when pytest is run by hand, nbgrader's
``IsolatedGrade``) by ``from_environ(flags=...)`` and passed down whole: to ``grade_notebook``, to
every grader process (the pool's, a Dask worker's, the bridge's) through its one codec,
``Settings.to_dict()`` / ``Settings.from_dict()``. A value that cannot be used warns
(SettingWarning) and the default is used instead.

The command-line flags (``--cache-dir``, ``--allow-unsandboxed``) are declared here too:
``parent_parser()`` is the argparse parent of ``grade`` and ``grade-class``; the checks' pytest
options and the nbgrader bridge's traitlets are made from the same declarations (``flag_options``).

The defaults of the worker's limits and of the training budget are those of their dataclasses
(``sandbox.Limits``, ``TrainingBudget`` below); a setting only says which field it sets and in which
unit. The README's "Settings" table is ``markdown_table()`` (tests/test_settings.py). Nothing of the
grading path is imported here (the student's kit carries this module): only the sandbox's Limits.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from autograder.sandbox import Limits


class SettingWarning(UserWarning):
    """An environment variable holds a value that cannot be used; the setting's default is used."""


@dataclass(frozen=True)
class TrainingBudget:
    """The grader's own bounds on one training run, in its process (after the caps of models.cost,
    which bound the cost from the config alone): training stops past either. Set by the caller
    (settings.from_environ at the edges), never read from the environment by training.py."""

    seconds: float = 60.0        # ~3.5 s for the reference model, ~14 s for one the size of modern_cnn
    memory_bytes: int = 2 << 30  # growth of the grader's memory while training


def default_cache_dir() -> Path:
    """Where the grader keeps the training baseline and the memo unless told otherwise
    (BN_AUTOGRADER_CACHE, --cache-dir)."""
    return Path.home() / ".cache" / "bn-autograder"


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


@dataclass(frozen=True)
class Setting:
    """One setting: where its value goes (``target``: "limits.<field>" or "training_budget.<field>"
    of those dataclasses, a field of Settings, or "" for a variable read where it is used), the
    environment variable that sets it (``variable``, None for a flag only), how its text is read and
    the factor from its unit to the target's; ``flag`` (with ``flag_help``) when the command lines
    take it too."""

    variable: str | None
    target: str
    unit: str
    help: str
    parse: Callable[[str], object] = _positive_number
    expects: str = "a positive number"       # for the warning about a bad value
    scale: int = 1
    default: object = None                   # for a target that is not a dataclass field
    shown: str | None = None                 # the default as the README's table writes it
    flag: str | None = None                  # e.g. "--cache-dir": grade, grade-class, pytest, nbgrader
    flag_help: str | None = None
    aliases: tuple = ()                      # older spellings of the flag (the checks' pytest options)

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

    @property
    def switch(self) -> bool:
        """An on/off setting (a flag without a value)."""
        return self.parse is _switch


def _dataclass(group: str):
    """The dataclass a group of settings fills (the sandbox's imported when first needed)."""
    if group == "limits":
        from autograder.sandbox import Limits  # noqa: PLC0415
        return Limits
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
                parse=Path, expects="a folder", default=default_cache_dir, shown="~/.cache/bn-autograder",
                flag="--cache-dir", aliases=("--grader-cache",),
                flag_help="where the grader caches the training baseline and memo "
                          "(default: $BN_AUTOGRADER_CACHE or ~/.cache/bn-autograder)")
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
ZYGOTE = Setting("BN_AUTOGRADER_ZYGOTE", "limits.zygote", "0 or 1",
                 "0 starts every sandboxed worker as a new process instead of forking it from a zygote that "
                 "has imported what the notebook's set-up cell imports (grades are the same either way)",
                 parse=_switch, expects="0 or 1", shown="1")
FASHION_MNIST_DIR = Setting("FASHION_MNIST_DIR", "", "folder",
                            "the one folder searched for the four Fashion-MNIST files, instead of "
                            "Keras' cache and Debian's (read by data.py)",
                            parse=Path, expects="a folder", shown="(unset)")
ALLOW_UNSANDBOXED = Setting(None, "allow_unsandboxed", "on or off",
                            "grade even where no isolation can start (logged, recorded as isolation \"none\"); "
                            "only a flag or nbgrader's config, never the environment",
                            parse=_switch, expects="on or off", default=False, shown="off",
                            flag="--allow-unsandboxed",
                            flag_help="grade even where neither bubblewrap nor Landlock can isolate the "
                                      "students' code (logged; each results.json records isolation \"none\", "
                                      "and grade-class's rows in grades.csv say so)")

SETTINGS = (CELL_SECONDS, CALL_SECONDS, TOTAL_SECONDS, GRACE_SECONDS, MEMORY_MB, WORKER_CPUS, TRAINING_SECONDS,
            TRAINING_MEMORY_MB, CACHE, MEMO, THREADS, UID_FIRST, UID_COUNT, ZYGOTE, FASHION_MNIST_DIR,
            ALLOW_UNSANDBOXED)
BY_VARIABLE = {setting.variable: setting for setting in SETTINGS if setting.variable}
FLAGGED = tuple(setting for setting in SETTINGS if setting.flag)


def _limits():
    return _dataclass("limits")()


@dataclass(frozen=True)
class Settings:
    """What the environment and the command line set, read once at an edge and passed down whole.
    ``Settings()`` is the grader's defaults (``cache_dir`` None: the grading machine's own default)."""

    limits: Limits = field(default_factory=_limits)     # the sandboxed worker's (sandbox.Limits)
    training_budget: TrainingBudget = TrainingBudget()  # the training check's, in the grader's process
    cache_dir: Path | None = None       # None: default_cache_dir() of the machine that grades
    memo: bool = True
    allow_unsandboxed: bool = False     # never from the environment: --allow-unsandboxed, explicitly

    def with_threads(self, threads: int) -> Settings:
        """These settings with the worker's threads set to ``threads`` (a grader process's share of
        the cores: the pool and each Dask worker decide it, not the instructor's environment), and
        at least as many CPUs for the worker as it has threads."""
        threads = max(1, int(threads))
        return replace(self, limits=replace(self.limits, threads=threads, cpus=max(self.limits.cpus, threads)))

    # --- the one codec: the grader processes' start arguments, the Dask payload, the bridge ---------

    def to_dict(self) -> dict:
        """Plain JSON: each dataclass field as its own dict, a folder as its text (or null)."""
        doc = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _GROUPS:
                value = asdict(value)
            elif isinstance(value, Path):
                value = str(value)
            doc[f.name] = value
        return doc

    @classmethod
    def from_dict(cls, doc) -> Settings:
        """``to_dict``'s document back (None, or a field left out: the default); ValueError when it is
        not one."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ValueError("the settings are not a JSON object")
        given = {}
        try:
            for f in fields(cls):
                if f.name not in doc:
                    continue
                value = doc[f.name]
                if f.name in _GROUPS:
                    value = _dataclass(f.name)(**value)
                elif f.name == "cache_dir":
                    value = Path(value) if value else None
                else:
                    value = bool(value)
                given[f.name] = value
        except TypeError as exc:
            raise ValueError(f"the settings are malformed: {exc}") from None
        return cls(**given)


_GROUPS = ("limits", "training_budget")


def value(setting: Setting | str, environ=None):
    """The value of one setting in the target's unit: from ``environ`` (default os.environ) when it
    is set and usable, else the default (a bad value warns)."""
    setting = BY_VARIABLE[setting] if isinstance(setting, str) else setting
    environ = os.environ if environ is None else environ
    text = environ.get(setting.variable, "").strip() if setting.variable else ""
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
        if target == group and name and setting.variable and environ.get(setting.variable, "").strip():
            found[name] = value(setting, environ)
    return found


def _flag_value(flags, setting: Setting):
    """What the command line gave for ``setting`` (None when not given): ``flags`` is an argparse
    Namespace, pytest's ``config.option``, nbgrader's configurable, or a mapping, keyed by target."""
    given = flags.get(setting.target) if isinstance(flags, dict) else getattr(flags, setting.target, None)
    if given is None or given is False or given == "":
        return None
    return True if setting.switch else setting.parse(str(given))


def from_environ(environ=None, *, flags=None) -> Settings:
    """Every setting from ``environ`` (default os.environ), then the flags the command line gave
    (``flags``: see _flag_value; a flag given wins). Bad values warn and give the default."""
    environ = os.environ if environ is None else environ
    found = {setting.target: value(setting, environ) for setting in SETTINGS
             if setting.variable and setting.target and "." not in setting.target}
    if flags is not None:
        for setting in FLAGGED:
            given = _flag_value(flags, setting)
            if given is not None:
                found[setting.target] = given
    return Settings(limits=replace(_limits(), **_group(environ, "limits")),
                    training_budget=replace(TrainingBudget(), **_group(environ, "training_budget")),
                    **found)


# --- the command-line flags ------------------------------------------------------------------------

def flag_options(*, aliases: bool = False) -> list:
    """[(names, argparse keyword arguments)] of every flag: the one declaration that argparse
    (parent_parser) and pytest (checks/conftest.py, with the flags' older spellings) add. Each
    flag's destination is its target."""
    options = []
    for setting in FLAGGED:
        kwargs = {"dest": setting.target, "help": setting.flag_help}
        if setting.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=setting.parse, default=None)
        options.append(((setting.flag, *(setting.aliases if aliases else ())), kwargs))
    return options


def parent_parser() -> argparse.ArgumentParser:
    """The shared flags, for ``argparse.ArgumentParser(parents=[parent_parser()])``; their values go
    to ``from_environ(flags=args)``."""
    parser = argparse.ArgumentParser(add_help=False)
    for names, kwargs in flag_options():
        parser.add_argument(*names, **kwargs)
    return parser


def markdown_table() -> str:
    """The settings as the README's Markdown table."""
    lines = ["| variable | flag | default | unit | what it sets |", "| --- | --- | --- | --- | --- |"]
    for setting in SETTINGS:
        variable = f"`{setting.variable}`" if setting.variable else "-"
        flag = f"`{setting.flag}`" if setting.flag else "-"
        lines.append(f"| {variable} | {flag} | {setting.default_text()} | {setting.unit} | {setting.help} |")
    return "\n".join(lines) + "\n"
