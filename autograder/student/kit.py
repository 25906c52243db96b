"""``python -m autograder student-kit --output DIR``: the wheel students install to run ``check``.

The kit is the package ``autograder`` cut down to what ``python -m autograder check`` needs: the
notebook reader and the registry, the runner (submission.py, channel.py), the sandbox, the
settings, the atomic writer, ``student/`` (without this builder) and a ``__main__`` whose only verb
is ``check``, plus the released notebook's contract (``student/contract.json``: its cell ids and
the sources of its locked cells, all of which the students' own copy of the release holds). Files
are taken by an allow-list, so nothing of ``checks/``, ``reference.py``, ``known_mistakes.py``,
``synthetic_students.py``, ``training.py``, ``models/``, ``grade.py`` or ``classroom/`` can be in it;
before the wheel is written every import of the package inside the kit is checked to resolve inside the kit.

The wheel is written here directly (a zip with its ``.dist-info``: PEP 427), not by ``pip wheel``:
building a generated project with setuptools needs setuptools and wheel in the instructor's
environment (a Python 3.12 venv has neither) or network access for build isolation, and takes
seconds; this takes milliseconds, needs nothing, and gives the same bytes for the same sources.
Its dependencies (``REQUIRES``, the wheel's Requires-Dist) are NumPy and what Keras' NumPy backend,
on which the worker builds the student's models as the grader does, imports besides: SciPy and JAX
(with jaxlib). The rest the worker imports because the notebook's set-up cell does (Keras,
Matplotlib) comes from the environment the student runs the notebook in, which has them already.

Do not install the kit into the grader's environment: it is also called ``autograder``.
"""

import argparse
import ast
import base64
import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path

from .. import notebook as notebooks
from .. import provenance
from . import contract as contracts

PACKAGE = "autograder"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
DISTRIBUTION = "batchnorm-check"
# The worker runs the set-up cell's `import keras` on Keras' NumPy backend, as the grader does
# (sandbox/process.py WORKER_KERAS_BACKEND), and that backend imports scipy and jax, which neither
# TensorFlow nor Keras installs (WORKER_BACKEND_MODULES): without them the set-up cell fails. They are
# required rather than the check falling back to the student's TensorFlow backend, because the check
# promises the grader's run (a model only the NumPy backend refuses must fail here too) and a worker
# that imports TensorFlow starts in about twice the time. Lower bounds: jax's own for NumPy and SciPy,
# and the jax release the grader runs (older ones are untested); tests/test_student_kit.py checks that
# pyproject.toml's pins satisfy them and that they cover what the backend imports.
REQUIRES = ("numpy>=2.0", "scipy>=1.14", "jax>=0.10", "jaxlib>=0.10")

# The kit's files, by allow-list (paths inside the package).
MODULES = ("exercises.py", "notebook.py", "errors.py", "submission.py", "channel.py", "text.py", "settings.py",
           "atomic.py")
PACKAGES = {"sandbox": None,                                                          # None: every .py
            "student": ("__init__.py", "check.py", "contract.py", "report.py", "source.py")}
CONTRACT_PATH = "student/contract.json"

# Imports inside functions that the kit never reaches, and that may not resolve in it.
# only model_config, which the check never calls
LAZY_IMPORTS_LEFT_OUT = {("autograder.submission", "autograder.models.vet")}

INIT = '''"""The student kit of the Batch Normalization assignment's grader: ``python -m autograder check``.

It runs a notebook as the grader does and runs its visible tests; the hidden checks are not in it.
Built by ``python -m autograder student-kit`` from the course's grader.
"""
'''

MAIN = '''"""``python -m autograder check NOTEBOOK [--output check.json]``: the student kit's one verb."""

import sys

USAGE = "usage: python -m autograder check NOTEBOOK [--output check.json]"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] != "check":
        print(USAGE + "\\n(this is the student kit: it checks a notebook before you submit it; "
              "grading happens on the course's grader)", file=sys.stderr)
        return 2
    from autograder.student.check import main as check
    return check(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
'''


class KitError(RuntimeError):
    """The kit cannot be built: no released notebook, or a module that needs one the kit leaves out."""


def version() -> str:
    """The grader's version (the project's), which the kit carries."""
    installed = provenance.installed_version("batchnorm-assignment")
    if installed is not None:
        return installed
    text = (PACKAGE_DIR.parent / "pyproject.toml").read_text(encoding="utf-8")   # not installed: the project's
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def kit_files(contract: contracts.Contract, package_dir: Path = PACKAGE_DIR) -> dict:
    """{path in the wheel: bytes} of the package part of the kit."""
    files = {f"{PACKAGE}/__init__.py": INIT.encode(), f"{PACKAGE}/__main__.py": MAIN.encode()}
    for name in MODULES:
        files[f"{PACKAGE}/{name}"] = (package_dir / name).read_bytes()
    for package, names in PACKAGES.items():
        folder = package_dir / package
        chosen = sorted(p.name for p in folder.glob("*.py")) if names is None else names
        for name in chosen:
            files[f"{PACKAGE}/{package}/{name}"] = (folder / name).read_bytes()
    files[f"{PACKAGE}/{CONTRACT_PATH}"] = contract.to_json().encode()
    return files


# --- every import of the package must resolve inside the kit ---------------------------------------

def _module_name(path: str) -> str:
    parts = path[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node) -> bool:
    test = node.test
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def _imports(tree, module: str, is_package: bool):
    """[(imported module, lazy)] of the package's own modules that ``module`` imports."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node, lazy):
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy = True
        if isinstance(node, ast.Import):
            found.extend((alias.name, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module:            # from x.y import name: x.y must be there
                found.append((target, lazy))
            else:                      # from . import name: a submodule, or an attribute of the package
                found.extend((f"{target}.{alias.name}", lazy, "maybe") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(tree, False)
    return [f for f in found if f[0] == PACKAGE or f[0].startswith(PACKAGE + ".")]


def _top_level_names(data: bytes) -> set:
    """The names a package's __init__ binds at its top level (so `from . import name` may be one)."""
    names = set()
    for node in ast.parse(data.decode("utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def unresolved_imports(files: dict) -> list:
    """["module imports target"] for each import of the package that the kit cannot satisfy."""
    modules = {_module_name(path) for path in files if path.endswith(".py")}
    exported = {_module_name(path): _top_level_names(data) for path, data in files.items()
                if path.endswith("__init__.py")}
    problems = []
    for path, data in sorted(files.items()):
        if not path.endswith(".py"):
            continue
        module = _module_name(path)
        for found in _imports(ast.parse(data.decode("utf-8"), path), module, path.endswith("__init__.py")):
            target, lazy = found[0], found[1]
            if target in modules:
                continue
            imported, _, name = target.rpartition(".") if len(found) == 3 else (target, "", "")
            if name and name in exported.get(imported, ()):     # `from . import name`: the package's own
                continue
            if lazy and (module, imported) in LAZY_IMPORTS_LEFT_OUT:
                continue
            problems.append(f"{module} imports {target}{' (inside a function)' if lazy else ''}")
    return problems


# --- the wheel ------------------------------------------------------------------------------------

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(version_: str, contract: contracts.Contract) -> str:
    requires = "".join(f"Requires-Dist: {r}\n" for r in REQUIRES)
    return (f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version_}\n"
            "Summary: Check a Batch Normalization notebook as the grader runs it, before you submit it\n"
            f"Requires-Python: >=3.11\n{requires}Description-Content-Type: text/plain\n\n"
            "Run your saved notebook exactly as the course's grader does (fresh, sandboxed, with the grader's\n"
            "time limits), then its visible tests:\n\n"
            "    python -m autograder check batchnorm.ipynb [--output check.json]\n\n"
            "Exit code 0: ready to submit; 1: problems found (each says what to do); 2: it could not run\n"
            "the notebook here. The hidden checks are not in this package. Install it into the environment\n"
            "the notebook runs in (which has Keras and Matplotlib); it brings SciPy and JAX, which Keras'\n"
            "NumPy backend needs: the check builds your models on that backend, as the grader does.\n"
            f"Released notebook: contract {contract.digest[:12]}.\n")


def write_wheel(files: dict, output_dir: Path, version_: str, contract: contracts.Contract) -> Path:
    """Write the wheel of ``files`` (package paths) into ``output_dir``; its path."""
    dist = f"{re.sub(r'[-_.]+', '_', DISTRIBUTION)}-{version_}"
    info = f"{dist}.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = _metadata(version_, contract).encode()
    entries[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: autograder.student.kit\n"
                                b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    entries[f"{info}/top_level.txt"] = f"{PACKAGE}\n".encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in sorted(entries.items()))
    entries[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(entries, key=lambda p: (p.startswith(info), p)):   # .dist-info last
            member = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            member.external_attr = 0o644 << 16
            member.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(member, entries[path])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{dist}-py3-none-any.whl"
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(target)
    return target


def build(output_dir, release=None) -> Path:
    """Build the kit from the released notebook ``release`` (default: the one grading finds) into
    ``output_dir``; the wheel's path. KitError when it cannot be built."""
    release = Path(release) if release else notebooks.released_notebook()
    if release is None or not release.is_file():
        raise KitError("no released notebook found (release/batchnorm/batchnorm.ipynb): run "
                       "`python -m autograder assign` first, or pass --release")
    contract = contracts.from_release(notebooks.read(release), origin="kit")
    if not contract.cells:
        raise KitError(f"{release} has no nbgrader cells: is it the released notebook?")
    files = kit_files(contract)
    unresolved = unresolved_imports(files)
    if unresolved:
        raise KitError("the kit would not import: " + "; ".join(unresolved) + ". Add the module to "
                       "kit.MODULES if students may have it, or import it lazily where the check never goes")
    return write_wheel(files, output_dir, version(), contract)


def contents(wheel: Path) -> dict:
    """{path: bytes} of every file in a wheel (for the tests and for a look before handing it out)."""
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder student-kit",
        description="Build the wheel students install to run `python -m autograder check` (no hidden checks).")
    parser.add_argument("--output", type=Path, default=Path("student-kit"), help="folder for the wheel")
    parser.add_argument("--release", type=Path, help="the released notebook (default: the one grading finds)")
    args = parser.parse_args(argv)
    try:
        wheel = build(args.output, args.release)
    except KitError as exc:
        print(f"student-kit: {exc}", file=sys.stderr)
        return 1
    files = [name for name in contents(wheel) if not name.endswith("/")]
    print(f"wrote {wheel} ({len(files)} files, {wheel.stat().st_size / 1024:.0f} KiB)")
    print(f"students install it into the environment their notebook runs in (pip installs its dependencies "
          f"with it: {', '.join(REQUIRES)}):\n"
          f"  python -m pip install {wheel.name}\n"
          f"and then check their saved notebook:\n  python -m autograder check batchnorm.ipynb")
    return 0


__all__ = ["build", "contents", "kit_files", "unresolved_imports", "write_wheel", "KitError", "main"]
