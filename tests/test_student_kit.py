"""The student kit (``python -m autograder student-kit``): what students install holds no hidden material.

The hidden material is collected from the grader itself, independently of the kit builder's
allow-list: every hidden check's name (``def test_...`` in ``autograder/checks/test_*.py``), every
reference function (the top-level defs of ``autograder/reference.py``, ``known_mistakes.py`` and
``reference_models.py``) and every known-mistake description (the ``*_mistakes`` tables). A reference
function whose name students already have
(an exercise's function, or a word of the released notebook, such as ``numerical_gradient``,
which the notebook gives them) may be named in the kit but not defined there (no module-level
``def``); any other may not appear at all.
"""

import ast
import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder.exercises import BY_ANSWER_CELL, EXERCISES, OPTIONAL_ANSWER_CELLS
from autograder.sandbox.process import WORKER_BACKEND_MODULES
from autograder.student import contract as contracts
from autograder.student import kit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autograder"
RELEASE = ROOT / "release" / "batchnorm" / "batchnorm.ipynb"
NEVER_IN_THE_KIT = ("autograder/checks/", "autograder/reference.py", "autograder/known_mistakes.py",
                    "autograder/reference_models.py", "autograder/trainingcache.py", "autograder/synthetic_students.py",
                    "autograder/training.py", "autograder/models/", "autograder/grade.py", "autograder/classroom/",
                    "autograder/student/kit.py", "autograder/nbgrader_bridge.py", "autograder/feedback.py")

REFERENCE_MODULES = ("reference.py", "known_mistakes.py", "reference_models.py")


def _text_pieces(node) -> list:
    """A string literal's text, or an f-string's constant pieces."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def hidden_material() -> dict:
    """{"checks": names, "private": reference names, "public": reference names students have,
    "mistakes": description pieces}."""
    checks = {node.name for path in (PACKAGE / "checks").glob("test_*.py")
              for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)
              and node.name.startswith("test_")}
    reference = ast.Module(body=[node for name in REFERENCE_MODULES
                                 for node in ast.parse((PACKAGE / name).read_text()).body], type_ignores=[])
    functions = {node.name for node in reference.body if isinstance(node, ast.FunctionDef)}
    release_words = set(re.findall(r"\w+", RELEASE.read_text()))
    public = functions & (release_words | {e.function for e in EXERCISES})
    mistakes = set()
    for table in (n for n in reference.body if isinstance(n, ast.FunctionDef) and n.name.endswith("_mistakes")):
        for node in ast.walk(table):
            if isinstance(node, ast.Tuple) and node.elts:
                mistakes.update(piece for piece in _text_pieces(node.elts[0]) if len(piece) >= 20)
    return {"checks": checks, "private": functions - public, "public": public, "mistakes": mistakes}


def found_in(text: str, material: dict) -> list:
    """What of the hidden material ``text`` holds."""
    found = [name for name in material["checks"] if name in text]
    found += [name for name in material["private"] if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)]
    found += [f"def {name}" for name in material["public"] if re.search(rf"^def {re.escape(name)}\(", text, re.M)]
    found += [piece[:40] for piece in material["mistakes"] if piece in text or json.dumps(piece)[1:-1] in text]
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return kit.build(tmp_path_factory.mktemp("kit"))


def test_the_hidden_material_is_found_where_it_is(wheel):
    material = hidden_material()
    assert len(material["checks"]) >= 20 and len(material["mistakes"]) >= 15
    assert {"matching_mistake", "batch_norm_mistakes", "model_with_bn"} & material["private"]
    assert "numerical_gradient" in material["public"]           # the release gives students its own
    # the scan finds what it looks for: in the grader's own files
    assert found_in((PACKAGE / "reference.py").read_text(), material)
    assert found_in((PACKAGE / "checks" / "test_manual_batch_norm.py").read_text(), material)


def test_the_kit_holds_no_hidden_check_reference_or_mistake(wheel):
    files = kit.contents(wheel)
    info = next(name for name in files if name.endswith(".dist-info/RECORD")).split("/")[0]
    assert all(name.startswith(("autograder/", f"{info}/")) for name in files), sorted(files)
    assert not [name for name in files if name.startswith(NEVER_IN_THE_KIT)], sorted(files)
    assert {"autograder/__main__.py", "autograder/submission.py", "autograder/sandbox/worker.py",
            "autograder/student/check.py", "autograder/student/contract.json"} <= set(files)
    material = hidden_material()
    leaks = {name: found for name, data in files.items() if (found := found_in(data.decode("utf-8"), material))}
    assert leaks == {}


def test_the_kit_is_a_valid_wheel_with_the_release_contract(wheel):
    files = kit.contents(wheel)
    record = next(data for name, data in files.items() if name.endswith(".dist-info/RECORD")).decode()
    for line in record.splitlines():
        name, digest, size = line.rsplit(",", 2)
        if not digest:
            continue
        data = files[name]
        assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert int(size) == len(data)
    assert "Requires-Dist: numpy" in _metadata(wheel)
    shipped = contracts.Contract.from_json(files["autograder/student/contract.json"].decode())
    assert shipped.digest == contracts.load().digest
    answers = [c for c in shipped.cells if c.solution]
    expected = {e.function for e in EXERCISES} | set(BY_ANSWER_CELL) | set(OPTIONAL_ANSWER_CELLS)
    assert {c.grade_id for c in answers} == expected
    assert all(c.source is None for c in answers)
    assert kit.unresolved_imports(kit.kit_files(shipped)) == []


# --- what the kit needs to run the notebook: Keras' NumPy backend's imports -------------------------

def _metadata(wheel) -> str:
    return next(d for n, d in kit.contents(wheel).items() if n.endswith(".dist-info/METADATA")).decode()


def _requires_dist(wheel) -> dict:
    """{canonical name: Requirement} of the wheel's Requires-Dist."""
    found = [Requirement(line.split(":", 1)[1].strip()) for line in _metadata(wheel).splitlines()
             if line.startswith("Requires-Dist:")]
    return {canonicalize_name(r.name): r for r in found}


def _backend_imports() -> set:
    """The top-level modules, outside the standard library and Keras, that Keras' NumPy backend imports:
    read from the installed Keras's source (keras/src/backend/numpy/), without importing it."""
    folder = Path(importlib.util.find_spec("keras").origin).parent / "src" / "backend" / "numpy"
    modules = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "keras"}


def _project_pins() -> dict:
    """{canonical name: Requirement} of pyproject.toml's dependencies (the grader's environment)."""
    tomllib = pytest.importorskip("tomllib")             # Python 3.11 and later
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(d) for d in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in requirements if r.marker is None or r.marker.evaluate()}


def test_the_kit_requires_what_keras_numpy_backend_imports(wheel):
    """The worker runs the set-up cell's `import keras` on Keras' NumPy backend (as the grader does):
    whatever that backend imports beyond what Keras itself installs must come with the kit, or the
    set-up cell fails in a student's environment that has only TensorFlow, Keras and Matplotlib."""
    required = _requires_dist(wheel)
    imported = _backend_imports()
    assert {"numpy", "scipy", "jax"} <= imported, imported           # the reading finds what it looks for
    distributions = importlib.metadata.packages_distributions()
    keras_installs = {canonicalize_name(Requirement(r).name) for r in importlib.metadata.requires("keras")
                      if "extra ==" not in r}
    needed = {canonicalize_name(d) for module in imported for d in distributions[module]} - keras_installs
    assert needed and needed <= set(required), (needed, sorted(required))
    assert {"numpy", "scipy", "jax", "jaxlib"} <= set(required)      # numpy: the kit's own code uses it
    assert {canonicalize_name(m) for m in WORKER_BACKEND_MODULES} <= set(required)


def test_the_graders_pinned_versions_satisfy_the_kits_requirements(wheel):
    pins = _project_pins()
    for name, requirement in _requires_dist(wheel).items():
        assert name in pins, f"the kit requires {name}, which the grader's environment (pyproject.toml) has not"
        [pin] = pins[name].specifier
        assert pin.operator == "==" and requirement.specifier.contains(pin.version), (requirement, pins[name])


def test_a_module_the_kit_leaves_out_stops_the_build():
    files = {"autograder/__init__.py": b"", "autograder/notebook.py": b"",
             "autograder/submission.py": b"from . import notebook, grade\nfrom .training import TrainingBudget\n"
                                         b"def f():\n    from autograder.checks import answers\n"}
    assert kit.unresolved_imports(files) == [
        "autograder.submission imports autograder.grade", "autograder.submission imports autograder.training",
        "autograder.submission imports autograder.checks (inside a function)"]


# --- the kit in a student's environment --------------------------------------------------------------

# What the notebook asks students to install. The worker never imports TensorFlow (Keras' NumPy
# backend; sandbox/worker.py tells Keras it is absent), so the slow test below leaves it out: TensorFlow
# adds 20 to 40 s and 1.3 GB of disk to every run and changes nothing the check sees, and the next
# test shows it brings neither SciPy nor JAX. benchmarks/bench_student_environment.py runs the same
# with TensorFlow (not in CI).
STUDENT_PACKAGES = ("tensorflow", "keras", "matplotlib")


def _distributions_installed_with(names) -> set:
    """The canonical names of ``names`` and of everything their Requires-Dist bring (without extras),
    as far as this environment has them installed."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_what_students_install_for_the_notebook_brings_neither_scipy_nor_jax(wheel):
    """Why the kit must require them: TensorFlow, Keras and Matplotlib (at the grader's versions,
    installed here) install neither, whatever they depend on."""
    pins = _project_pins()
    tensorflow = "tensorflow-cpu" if "tensorflow-cpu" in pins else "tensorflow"
    brought = _distributions_installed_with([tensorflow, "keras", "matplotlib"])
    assert {"numpy", "keras", "matplotlib", "h5py"} <= brought         # the walk follows the requirements
    assert not {"scipy", "jax", "jaxlib"} & brought
    assert {"scipy", "jax", "jaxlib"} <= set(_requires_dist(wheel))


class CannotInstall(RuntimeError):
    """pip cannot install the notebook's packages on this machine (no index or cache it may use)."""


def _pip_install(python: Path, *args) -> subprocess.CompletedProcess:
    """pip (this venv's) installing into the venv of ``python``, as configured on this machine (its
    index, mirror or wheel cache: nothing here is downloaded by hand)."""
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", *args],
                          capture_output=True, text=True)


def student_environment(wheel: Path, folder: Path, packages=STUDENT_PACKAGES) -> dict:
    """In a fresh venv under ``folder`` (no system site-packages): ``packages`` at the grader's
    versions (pyproject.toml; "tensorflow" is its TensorFlow pin for this platform), then the kit,
    first --no-deps (the check must report SciPy and JAX missing as one problem and exit 2, blaming
    no answer), then as students install it, with its requirements (the solution must be ready).
    AssertionError when the kit falls short, CannotInstall when pip cannot install ``packages``;
    {step: seconds}. The venv (about 0.5 GB, 1.8 GB with TensorFlow) is removed at the end."""
    from autograder import synthetic_students as students
    pins = _project_pins()
    names = [("tensorflow-cpu" if "tensorflow-cpu" in pins else "tensorflow") if p == "tensorflow" else p
             for p in packages]
    venv, timings, started = folder / "venv", {}, time.monotonic()

    def lap(step):
        nonlocal started
        timings[step] = round(time.monotonic() - started, 1)
        started = time.monotonic()

    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        done = _pip_install(python, *(str(pins[canonicalize_name(name)]) for name in names))
        if done.returncode != 0:
            raise CannotInstall(f"pip cannot install {', '.join(names)} here: {done.stderr.strip()[-300:]}")
        lap("the notebook's packages")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        absent = "import importlib.util as u; print([m for m in ('scipy', 'jax') if u.find_spec(m) is None])"
        assert subprocess.run([str(python), "-c", absent], env=env, capture_output=True, text=True,
                              check=True).stdout.strip() == "['scipy', 'jax']"

        notebook = students.write_submission(students.STUDENTS["full_marks"], folder / "work" / "batchnorm.ipynb")
        report_path = folder / "check.json"
        check = [str(python), "-m", "autograder", "check", str(notebook), "--output", str(report_path)]
        done = _pip_install(python, "--no-deps", str(wheel))
        assert done.returncode == 0, done.stderr
        lap("the kit --no-deps")
        without = subprocess.run(check, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        report = json.loads(report_path.read_text())
        assert without.returncode == 2 and "NOT CHECKED" in without.stdout, without.stdout + without.stderr
        [problem] = report["problems"]
        assert problem["kind"] == "missing_module" and "No module named 'scipy'" in problem["message"]
        assert "lacks scipy and jax and jaxlib" in problem["message"], problem
        assert not [e for e in report["exercises"] if e["visible_tests"] == "failed"], report["exercises"]
        lap("check without SciPy and JAX")

        done = _pip_install(python, str(wheel))              # as students do: with its requirements
        assert done.returncode == 0, done.stderr
        lap("the kit's requirements")
        probe = subprocess.run([str(python), "-c", "import autograder, importlib.util as u; "
                                "print(autograder.__file__); print([m for m in ('autograder.checks', "
                                "'autograder.reference', 'autograder.training') if u.find_spec(m)])"],
                               cwd=folder, env=env, capture_output=True, text=True, check=True)
        where, present = probe.stdout.splitlines()
        assert where.startswith(str(venv)) and present == "[]"     # the kit's own package, nothing hidden
        grade = subprocess.run([str(python), "-m", "autograder", "grade", str(notebook)], cwd=folder, env=env,
                               capture_output=True, text=True)
        assert grade.returncode == 2 and "it checks a notebook" in grade.stderr       # the kit's one verb
        # the solution, and the single slips, checked two at a time
        slips = {name: students.write_submission(students.STUDENTS[name], folder / name / "batchnorm.ipynb")
                 for name in SINGLE_SLIPS}
        checked = _checked(python, env, folder, {"solution": notebook, **slips})
        ready, report = checked.pop("solution")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert report["ready"] is True
        for name, (done, report) in checked.items():
            (exercise,) = students.STUDENTS[name].answers
            assert report is not None, (name, done.stdout + done.stderr)
            assert report["ready"] is False, (name, report)
            [problem] = report["problems"]      # one slip, one problem: its exercise's visible test
            assert problem["kind"] == "visible_test_failed", (name, problem)
            assert f"the visible test of Exercise {_number(exercise)})" in problem["message"], (name, problem)
        lap(f"check the solution and {len(checked)} single-slip notebooks, two at a time")
    finally:
        shutil.rmtree(venv, ignore_errors=True)       # not left to pytest's kept temporary folders
        lap("removing the venv")
    return timings


# One single-slip notebook per NumPy exercise: the solution with one synthetic student's mistake.
SINGLE_SLIPS = ("bn_ddof1", "backward_no_variance_path", "moving_swapped_momentum", "inference_var_as_std",
                "debiased_steps_minus_one", "population_unbiased_union", "group_interleaved")


def _number(exercise_id) -> int:
    from autograder.exercises import EXERCISE_IDS
    return EXERCISE_IDS.index(exercise_id) + 1


def _checked(python, env, folder, notebooks) -> dict:
    """{name: (the check's completed process, its check.json)} for ``notebooks`` ({name: path}),
    checked by the installed kit two at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name):
        output = folder / name / "check.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([str(python), "-m", "autograder", "check", str(notebooks[name]), "--output", str(output)],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        return name, (done, json.loads(output.read_text()) if output.exists() else None)
    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, notebooks))


@pytest.mark.slow
def test_the_kit_runs_in_an_environment_with_only_what_students_install(wheel, tmp_path):
    """Keras and Matplotlib (what the worker imports from the student's environment; TensorFlow is
    left out, see STUDENT_PACKAGES) in a fresh venv, then the kit as students install it. About
    30 s here from the local package index (50 s while the disk was busy); skipped where pip cannot
    install them."""
    try:
        timings = student_environment(wheel, tmp_path, packages=("keras", "matplotlib"))
    except CannotInstall as exc:
        pytest.skip(str(exc))
    print(timings)
