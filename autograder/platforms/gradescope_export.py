"""``python -m autograder export gradescope --output DIR``: the autograder zip Gradescope builds its image from.

Gradescope unpacks the zip into ``/autograder/source``, runs its ``setup.sh`` once as root to build the
image, then ``run_autograder`` for each submission (gradescope-autograders.readthedocs.io, "Autograder
Specifications"). ``DIR/autograder.zip`` holds, at its root:

* ``setup.sh`` (SETUP_TEMPLATE below with this export's values): bubblewrap and Fashion-MNIST from apt,
  Python SUPPORTED_PYTHON, a venv at INSTALL_PREFIX (outside /autograder: the sandbox mounts the venv
  read-only for the students' code and hides the grader's package in it), the pinned requirements and
  the grader's wheel, the dataset in Keras' cache, the workers' uid lock folder, and the training
  baseline computed into the cache (``--warm`` below), so that no submission pays for it;
* ``run_autograder``: ``gradescope-run`` (platforms/gradescope.py) with that venv's Python;
* ``gradescope.json`` (gradescope.CONFIG_NAME): the options and the grader's settings;
* ``requirements.txt``: ``name==version`` of every distribution the grader needs at grade time, as
  installed where the export runs (the grading environment the class was tested in);
* the grader's wheel (``pip wheel`` of this checkout: the package, its checks and templates);
* ``fashion-mnist/``: the four files and their SHA-256 sums (~30 MB; Ubuntu's sources may lack
  dataset-fashion-mnist, and the training check is calibrated on these bytes).

Nothing of ``solutions/`` or of any student. The zip's bytes are the same for the same tree and
environment (entries sorted, fixed timestamps, the wheel built with SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from autograder import data, settings
from autograder.atomic import write_atomic
from autograder.platforms.gradescope import CONFIG_NAME, GRADESCOPE_ROOT, VISIBILITIES, GradescopeOptions
from autograder.sandbox import allowlist, identity

ZIP_NAME = "autograder.zip"
INSTALL_PREFIX = "/opt/bn-autograder"           # the grader's venv, outside /autograder
# The sandboxed worker's memory on Gradescope unless BN_AUTOGRADER_MEMORY_MB says otherwise: in Docker
# the worker gets rlimits (twice this as address space), not a cgroup, and the container's memory is
# the grader's peak (510 MiB, benchmarks/bench_gradescope.py) plus the worker's; the solution's worker
# needs about 150 MiB, and the grader's own 4 GiB default would let one worker outgrow the container.
WORKER_MEMORY_BYTES = 1 << 30

# The grader cache on Gradescope: baked into the image by setup.sh, outside the sandbox's allow-list
# (unlike the venv, which the students' code may read).
CACHE_DIR = f"{GRADESCOPE_ROOT}/cache"
REQUIREMENTS = "requirements.txt"
DATA_FOLDER = "fashion-mnist"
SUMS = "SHA256SUMS"
DISTRIBUTION = allowlist.DISTRIBUTION.replace("_", "-")   # pyproject.toml's [project] name, as written there
# The minor version of Python the pins were resolved and tested with: the exporting interpreter's.
SUPPORTED_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)                # the earliest a zip can say: the same bytes every export
SOURCE_DATE_EPOCH = "315532800"                 # 1980-01-01, for the wheel's own entries
EXECUTABLE, READABLE = 0o755, 0o644
# Gradescope's images: the requirements' markers are evaluated here, so the pins are for this kind of machine.
TARGET_PLATFORM = ("linux", ("x86_64", "amd64"))       # (sys.platform, platform.machine() lowered)


class ExportError(RuntimeError):
    """The zip cannot be made here (not a checkout, a requirement not installed, the wheel not built)."""


# --- the pieces ------------------------------------------------------------------------------------

def repository() -> Path:
    """The checkout this package lives in (the wheel is built from it)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or f'name = "{DISTRIBUTION}"' not in pyproject.read_text():
        raise ExportError(f"export gradescope builds the grader's wheel from its checkout; {root} is not one")
    return root


def build_wheel(repo: Path, into: Path) -> Path:
    """The grader's wheel, built by pip (setuptools, offline) from a copy of the package alone, so that
    nothing else of the checkout (solutions/, a class's submissions, build/) can enter it."""
    with tempfile.TemporaryDirectory(prefix="bn-wheel-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(repo / name, tree / name)
        shutil.copytree(repo / "autograder", tree / "autograder",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        environ = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_NO_INDEX": "1"}
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--disable-pip-version-check", "--quiet", "--wheel-dir", str(into), str(tree)],
                              capture_output=True, text=True, env=environ, check=False)
        if done.returncode != 0:
            raise ExportError(f"pip wheel failed:\n{done.stdout}{done.stderr}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ExportError(f"pip wheel made {len(wheels)} wheels in {into}")
    return wheels[0]


def _requires_dist(wheel: Path) -> list:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = archive.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]


def pinned_requirements(requires: list) -> list:
    """``name==version`` (sorted) of every distribution the ``requires`` lines (a wheel's Requires-Dist;
    none of its extras) need on this machine, and of theirs, as installed here. ExportError when one is
    not installed: the export runs in the environment the grader was tested in."""
    from packaging.requirements import Requirement  # noqa: PLC0415  (installed with the grader's dependencies)
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    pins, expanded = {}, set()
    wanted = [(Requirement(line), "") for line in requires]     # (requirement, extra of whoever needs it)
    while wanted:
        requirement, extra = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise ExportError(f"{requirement.name} (needed by the grader) is not installed in {sys.prefix}") from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise ExportError(f"{requirement.name} {dist.version} is installed; the grader needs {requirement}")
        name = canonicalize_name(requirement.name)
        pins[name] = dist.version
        for own_extra in ("", *sorted(requirement.extras)):
            if (name, own_extra) not in expanded:
                expanded.add((name, own_extra))
                # a requirement without a marker belongs to the distribution itself, not to an extra
                wanted += [(Requirement(line), own_extra) for line in dist.requires or ()
                           if own_extra == "" or Requirement(line).marker is not None]
    pins.pop(canonicalize_name(DISTRIBUTION), None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def dataset_files() -> dict:
    """{name: bytes} of the four Fashion-MNIST files found here (data.find_dataset_dir)."""
    folder = data.find_dataset_dir()
    return {name: (folder / name).read_bytes() for name in sorted(data.FILES.values())}


def config_document(options: GradescopeOptions, grading: settings.Settings) -> str:
    return json.dumps({"options": options.to_dict(), "settings": grading.to_dict()},
                      indent=2, sort_keys=True, allow_nan=False) + "\n"


def run_autograder_script(prefix: str = INSTALL_PREFIX, root: str = GRADESCOPE_ROOT) -> str:
    """Gradescope runs it in /autograder, beside submission/: ``-I`` keeps the working folder (and the
    user's site-packages and PYTHON* variables) off the grader's path, so that nothing there is imported."""
    return f"#!/usr/bin/env bash\nexec {prefix}/bin/python -I -m autograder gradescope-run --root {root}\n"


def setup_script(wheel_name: str, grading: settings.Settings) -> str:
    """SETUP_TEMPLATE with this export's values."""
    values = {
        "PYTHON_VERSION": SUPPORTED_PYTHON, "PREFIX": INSTALL_PREFIX, "WHEEL": wheel_name,
        "CONFIG": CONFIG_NAME, "DATA_FOLDER": DATA_FOLDER,
        "UID_FIRST": str(grading.limits.uid_first), "UID_COUNT": str(grading.limits.uid_count),
        "LOCK_DIR": identity.DEFAULT_LOCK_DIR, "LOCK_DIR_MODE": f"{identity.LOCK_DIR_MODE:04o}",
    }
    text = SETUP_TEMPLATE
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise ExportError(f"SETUP_TEMPLATE has a value the export does not fill in: {leftover.group()}")
    return text


def zip_bytes(files: dict) -> bytes:
    """A zip of {name: (bytes, mode)}: entries sorted, fixed timestamps, Unix modes; the gzip files stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            content, mode = files[name]
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3                              # Unix, so that the mode is read
            info.external_attr = (0o100000 | mode) << 16        # a regular file with ``mode``
            stored = name.endswith((".gz", ".whl"))              # compressed already
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def check_target(system: str | None = None, machine: str | None = None) -> None:
    """ExportError unless this machine is of Gradescope's kind: the pins resolve the requirements' markers
    here (pyproject's tensorflow-cpu is Linux's; on macOS the closure would be another one)."""
    system = system if system is not None else sys.platform
    machine = (machine if machine is not None else platform.machine()).lower()
    if system != TARGET_PLATFORM[0] or machine not in TARGET_PLATFORM[1]:
        raise ExportError(f"export gradescope pins the requirements installed here, for Gradescope's Linux "
                          f"x86_64 images; this is {system} {machine}: export from a Linux x86_64 environment")


def export(output: Path, options: GradescopeOptions, grading: settings.Settings) -> Path:
    """Write ``output/autograder.zip``; its path."""
    check_target()
    repo = repository()
    with tempfile.TemporaryDirectory(prefix="bn-gradescope-") as tmp:
        wheel = build_wheel(repo, Path(tmp))
        wheel_bytes = wheel.read_bytes()
        requirements = pinned_requirements(_requires_dist(wheel))
    dataset = dataset_files()
    sums = "".join(f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in dataset.items())
    files = {
        "setup.sh": (setup_script(wheel.name, grading), EXECUTABLE),
        "run_autograder": (run_autograder_script(), EXECUTABLE),
        CONFIG_NAME: (config_document(options, grading), READABLE),
        REQUIREMENTS: ("".join(f"{line}\n" for line in requirements), READABLE),
        wheel.name: (wheel_bytes, READABLE),
        f"{DATA_FOLDER}/{SUMS}": (sums, READABLE),
        **{f"{DATA_FOLDER}/{name}": (content, READABLE) for name, content in dataset.items()},
    }
    path = Path(output) / ZIP_NAME
    write_atomic(zip_bytes({name: (c.encode() if isinstance(c, str) else c, m) for name, (c, m) in files.items()}),
                 path, mode=READABLE)
    return path


# --- setup.sh: its @NAME@ values are filled in by setup_script --------------------------------------

SETUP_TEMPLATE = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image from autograder.zip
# (unpacked into /autograder/source). Written by `python -m autograder export gradescope`
# (autograder/platforms/gradescope_export.py, SETUP_TEMPLATE, fills in the @...@ values); see README.md, "Gradescope".
#
# Switches for a trial outside Gradescope (tests/test_gradescope_export.py):
#   BN_GRADESCOPE_TRIAL=1     no apt-get, no Python install, nothing written outside the given folders
#   BN_GRADESCOPE_PREFIX      the grader's venv (default @PREFIX@; run_autograder runs that one)
#   BN_GRADESCOPE_PYTHON      the Python @PYTHON_VERSION@ to make the venv from (default: python@PYTHON_VERSION@)
#   BN_GRADESCOPE_SOURCE      the unpacked zip (default: this script's folder)
#   BN_GRADESCOPE_CACHE       the grader cache to warm (default: gradescope.json's cache_dir)
set -euo pipefail
umask 022      # the venv must be readable by the workers' uids (the sandbox mounts it read-only)

PYTHON_VERSION="@PYTHON_VERSION@"   # the version the pinned requirements were resolved and tested with
PREFIX="${BN_GRADESCOPE_PREFIX:-@PREFIX@}"
SOURCE="${BN_GRADESCOPE_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
TRIAL="${BN_GRADESCOPE_TRIAL:-0}"
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup.sh: $*"; }

# --- system packages: bubblewrap (the sandbox's first layer), the dataset, Python ----------------
if [ "$TRIAL" != 1 ]; then
    apt-get update
    apt-get install -y --no-install-recommends bubblewrap ca-certificates
    # Debian's and Ubuntu's (universe) package of the four Fashion-MNIST files; the zip carries them
    # too, for an image whose sources lack it.
    apt-get install -y --no-install-recommends dataset-fashion-mnist \
        || say "dataset-fashion-mnist is not available here: using the files this zip carries"
fi

PYTHON="${BN_GRADESCOPE_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    PYTHON="$(command -v "python$PYTHON_VERSION" || true)"
fi
if [ -z "$PYTHON" ] && [ "$TRIAL" != 1 ]; then
    # Ubuntu 22.04 ships Python 3.10 and 24.04 Python 3.12; the pinned wheels (NumPy, JAX, TensorFlow)
    # were tested with $PYTHON_VERSION. The deadsnakes PPA builds it for both; 22.04's universe has
    # an early python3.11 as a second choice. Gradescope's own python3 is left alone.
    say "installing Python $PYTHON_VERSION (the image has $(python3 --version 2>&1 || echo 'no python3'))"
    if apt-get install -y --no-install-recommends software-properties-common gpg-agent \
            && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update; then
        :
    else
        say "the deadsnakes PPA could not be added; trying the image's own sources"
    fi
    apt-get install -y --no-install-recommends "python$PYTHON_VERSION" "python$PYTHON_VERSION-venv"
    PYTHON="$(command -v "python$PYTHON_VERSION")"
fi
if [ -z "$PYTHON" ]; then
    say "no python$PYTHON_VERSION: set BN_GRADESCOPE_PYTHON" >&2
    exit 1
fi
found="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$found" != "$PYTHON_VERSION" ]; then
    say "$PYTHON is Python $found; the pinned requirements are for $PYTHON_VERSION" >&2
    exit 1
fi

# --- the grader, in a venv outside /autograder ---------------------------------------------------
"$PYTHON" -m venv "$PREFIX"
PY="$PREFIX/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check --no-input "$@"; }
pip_install -r "$SOURCE/requirements.txt"
# --ignore-installed: the wheel is this venv's copy of the grader, whatever else the path shows
pip_install --no-deps --ignore-installed "$SOURCE/@WHEEL@"
"$PY" -m pip check --disable-pip-version-check

# --- Fashion-MNIST: Keras' cache (where the grader and the notebook look first) must hold the bytes
# the grader was calibrated with; Debian's files are linked there when they are those bytes ---------
KERAS_DATA="$("$PY" -c 'from autograder import data; print(data.keras_cache_dir())')"
SUMS="$SOURCE/@DATA_FOLDER@/SHA256SUMS"
"$PY" -m autograder data || true
if ! (cd "$KERAS_DATA" 2>/dev/null && sha256sum --quiet -c "$SUMS"); then
    say "using the Fashion-MNIST files carried in the zip"
    rm -rf "$KERAS_DATA"
    mkdir -p "$KERAS_DATA"
    cp "$SOURCE/@DATA_FOLDER@/"*.gz "$KERAS_DATA/"
fi
(cd "$KERAS_DATA" && sha256sum --quiet -c "$SUMS")
"$PY" -m autograder data

# --- what the isolation needs as root, and what students may not read -------------------------------
if [ "$TRIAL" != 1 ]; then
    # Each worker runs as a uid (and gid) leased from this range; no user or group may own one of them.
    taken="$({ getent passwd; getent group; } | awk -F: -v first=@UID_FIRST@ -v count=@UID_COUNT@ \
        '$3 >= first && $3 < first + count { print $1 }')"
    if [ -n "$taken" ]; then
        say "accounts use the workers' uid range @UID_FIRST@ (+@UID_COUNT@): $taken" >&2
        exit 1
    fi
    # The leases' lock folder (the sandbox makes it too; /run may be emptied when the container starts).
    mkdir -p "@LOCK_DIR@"
    chmod @LOCK_DIR_MODE@ "@LOCK_DIR@"
fi
chmod 0700 "$SOURCE"            # the hidden checks' wheel and the configuration: root's alone
if [ -d "$SOURCE/../results" ]; then chmod 0700 "$SOURCE/../results"; fi

# --- the training baseline, computed once here so that no submission pays for it ---------------------
"$PY" -m autograder.platforms.gradescope_export --warm --config "$SOURCE/@CONFIG@" \
    ${BN_GRADESCOPE_CACHE:+--cache-dir "$BN_GRADESCOPE_CACHE"}
say "done: $("$PY" --version) in $PREFIX"
"""


# --- the grader cache, warmed by setup.sh ------------------------------------------------------------

def warm_cache(grading: settings.Settings) -> float:
    """Compute the training baseline into the grader cache (a folder only root may enter) and
    return its accuracy; a second call reads it back."""
    from autograder import training  # noqa: PLC0415  (imports TensorFlow when the baseline is not cached)

    cache = Path(grading.cache_dir) if grading.cache_dir is not None else settings.default_cache_dir()
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    return training.baseline_accuracy(cache, budget=grading.training_budget)


def warm_main(argv=None) -> int:
    """``python -m autograder.platforms.gradescope_export --warm --config gradescope.json``: setup.sh's step."""
    parser = argparse.ArgumentParser(prog="python -m autograder.platforms.gradescope_export --warm",
                                     description="Compute the training baseline into the exported grader cache.")
    parser.add_argument("--warm", action="store_true", required=True)
    parser.add_argument("--config", type=Path, required=True, help=f"the zip's {CONFIG_NAME}")
    parser.add_argument("--cache-dir", type=Path, default=None, help="another cache than the configuration's")
    args = parser.parse_args(argv)
    grading = settings.Settings.from_dict(json.loads(args.config.read_text())["settings"])
    if args.cache_dir is not None:
        grading = replace(grading, cache_dir=args.cache_dir)
    accuracy = warm_cache(grading)
    print(f"training baseline {accuracy:.4f} cached in {grading.cache_dir or settings.default_cache_dir()}")
    return 0


def exported_settings(environ, *, flags) -> settings.Settings:
    """The settings the zip carries: the limits from ``environ`` (the worker's memory WORKER_MEMORY_BYTES
    unless it sets it), the cache Gradescope's folder unless --cache-dir says another (this machine's
    BN_AUTOGRADER_CACHE is a folder of this machine)."""
    grading = settings.from_environ(environ, flags=flags)
    grading = replace(grading, cache_dir=Path(getattr(flags, "cache_dir", None) or CACHE_DIR))
    if not environ.get(settings.MEMORY_MB.variable, "").strip():
        grading = replace(grading, limits=replace(grading.limits, memory_bytes=WORKER_MEMORY_BYTES))
    return grading


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder export gradescope", parents=[settings.parent_parser()],
        description=f"Write DIR/{ZIP_NAME}, the autograder to upload to Gradescope (setup.sh, run_autograder, "
                    "the grader's wheel and pinned requirements, its settings and Fashion-MNIST). The grader's "
                    "limits come from the BN_AUTOGRADER_* variables of this environment (README: Settings).")
    parser.add_argument("--output", type=Path, required=True, help=f"folder for {ZIP_NAME}")
    defaults = GradescopeOptions()
    parser.add_argument("--hidden-visibility", choices=VISIBILITIES, default=defaults.hidden_visibility,
                        help="when students see a hidden check's entry (default: %(default)s)")
    parser.add_argument("--counterpart-visibility", choices=VISIBILITIES, default=defaults.counterpart_visibility,
                        help="when students see a hidden check whose property a visible test asserts too "
                             "(default: %(default)s)")
    parser.add_argument("--leaderboard", action="store_true", help="post the BN model's lead to a leaderboard")
    args = parser.parse_args(argv)
    options = GradescopeOptions(hidden_visibility=args.hidden_visibility,
                                counterpart_visibility=args.counterpart_visibility, leaderboard=args.leaderboard)
    grading = exported_settings(os.environ, flags=args)
    try:
        path = export(args.output, options, grading)
    except (ExportError, data.DatasetMissing) as exc:
        print(f"export gradescope: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); upload it on the assignment's Configure "
          f"Autograder page (README: Gradescope); the sandboxed worker's memory: "
          f"{grading.limits.memory_bytes >> 20} MiB ({settings.MEMORY_MB.variable})")
    if grading.allow_unsandboxed:
        print("--allow-unsandboxed: where no isolation starts on Gradescope, submissions are graded without it "
              "(recorded in each result's extra_data)")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.exit(warm_main(sys.argv[1:]) if "--warm" in sys.argv[1:] else main(sys.argv[1:]))
