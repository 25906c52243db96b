"""``python -m autograder check``: a student's notebook run as the grader runs it, with its visible tests.

Each problem kind comes from a broken notebook built from the release (the synthetic students'
machinery, ``students.build_notebook``), and each test asserts the kind and that the message names
the cell. The static kinds (an edited locked cell, a deleted or duplicated id, an answer that loads
data) are found without a worker; the others share one run of one notebook that holds one fault of
each kind, independent of one another. The worker never imports TensorFlow (Keras' NumPy backend),
so none of these is slow.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import settings
from autograder import synthetic_students as students
from autograder.exercises import BY_ID, EXERCISES, Kind
from autograder.notebook import read
from autograder.sandbox import Limits
from autograder.student import check as checking
from autograder.student import contract as contracts
from autograder.student import source as sources

from conftest import worker_origin

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_EXERCISE = {"id", "found", "ran", "visible_tests", "message"}
SCHEMA_PROBLEM = {"kind", "cell", "message"}


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _number(nb, grade_id=None, source=None) -> int:
    """The 1-based position of the one cell with this grade_id (or exactly this source)."""
    found = [n for n, cell in enumerate(nb.cells, start=1)
             if (grade_id is not None and _grade_id(cell) == grade_id)
             or (source is not None and cell.source == source)]
    assert len(found) == 1, (grade_id, source, found)
    return found[0]


def _write(nb, folder: Path) -> Path:
    path = folder / "batchnorm.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _static(nb, tmp_path):
    """The static problems of ``nb`` (no worker): locked cells against the release, and loading."""
    notebook = read(_write(nb, tmp_path))
    cells = sources.Cells(notebook)
    problems = contracts.locked_cell_problems(notebook, contracts.load(), cells)
    return problems + list(sources.loading_problems(cells).values())


def _of_kind(problems, kind):
    return [p for p in problems if p.kind == kind]


def _n(exercise_id) -> int:
    """The exercise's number in the notebook (the registry is in notebook order)."""
    return [e.id for e in EXERCISES].index(exercise_id) + 1


def _solution():
    return students.build_notebook(students.STUDENTS["full_marks"])


# --- not_a_notebook, and the report's schema -------------------------------------------------------

def test_a_file_that_is_not_a_notebook_is_reported_with_the_schema(tmp_path, capsys):
    path = tmp_path / "batchnorm.ipynb"
    path.write_bytes(students.STUDENTS["corrupt"].raw)
    output = tmp_path / "out" / "check.json"
    assert checking.main([str(path), "--output", str(output)]) == 1
    report = json.loads(output.read_text())
    assert set(report) == {"ready", "exercises", "problems", "reminders"} and report["ready"] is False
    assert [e["id"] for e in report["exercises"]] == [e.id for e in EXERCISES]
    assert all(set(e) == SCHEMA_EXERCISE and e["visible_tests"] == "not run" for e in report["exercises"])
    [problem] = report["problems"]
    assert set(problem) == SCHEMA_PROBLEM and problem["kind"] == "not_a_notebook" and problem["cell"] is None
    assert "not valid JSON" in problem["message"] and "save it" in problem["message"]
    printed = capsys.readouterr().out
    assert "[not_a_notebook]" in printed and "NOT READY" in printed
    assert len([line for line in printed.splitlines() if line.startswith("  ") and ". " in line[:6]]) == len(EXERCISES)


# --- changed_locked_cell: compared with the release -------------------------------------------------

def test_every_edited_locked_cell_is_reported(tmp_path):
    nb = _solution()
    for cell in nb.cells:
        if _grade_id(cell) == "gradient_checker":
            cell.source = cell.source.replace("h=1e-5", "h=1e-3")
        if _grade_id(cell) == "test_batch_norm_inference":
            cell.source = "print('Exercise 6: all visible tests passed.')"
    problems = _of_kind(_static(nb, tmp_path), "changed_locked_cell")
    by_cell = {p.cell: p.message for p in problems}
    setup, test = _number(nb, "gradient_checker"), _number(nb, "test_batch_norm_inference")
    assert set(by_cell) == {setup, test}, problems
    assert f"cell {setup} (the locked set-up cell 'gradient_checker') was edited" in by_cell[setup]
    assert f"cell {test} (the visible test of Exercise {_n('batch_norm_inference')}) was edited" in by_cell[test]
    assert "a visible test" in by_cell[test] and "release" in by_cell[test]


def test_every_broken_cell_id_is_reported(tmp_path):
    nb = _solution()
    answer = next(c for c in nb.cells if _grade_id(c) == "manual_batch_norm")
    copy = nbformat.from_dict(json.loads(json.dumps(answer)))
    copy["id"] = "copied-answer"
    nb.cells.insert(nb.cells.index(answer) + 1, copy)                     # copied with its metadata
    nb.cells = [c for c in nb.cells if _grade_id(c) != "test_population_statistics"]   # deleted
    damaged = next(c for c in nb.cells if _grade_id(c) == "batch_norm_backward")
    del damaged.metadata["nbgrader"]["grade_id"]                         # metadata without an id
    problems = _of_kind(_static(nb, tmp_path), "changed_locked_cell")
    first = [n for n, c in enumerate(nb.cells, 1) if _grade_id(c) == "manual_batch_norm"]
    duplicated = [p for p in problems if "all have the cell id 'manual_batch_norm'" in p.message]
    assert len(duplicated) == 1 and duplicated[0].cell == first[0]
    assert f"cells {first[0]}, {first[1]}" in duplicated[0].message
    deleted = [p for p in problems if "'test_population_statistics'" in p.message]
    release = nbformat.read(ROOT / "release/batchnorm/batchnorm.ipynb", as_version=4)
    assert len(deleted) == 1 and "was deleted" in deleted[0].message
    assert f"(cell {_number(release, 'test_population_statistics')} of the release)" in deleted[0].message
    position = nb.cells.index(damaged) + 1
    no_id = [p for p in problems if p.cell == position]
    assert no_id and "without a grade_id" in no_id[0].message and f"cell {position} " in no_id[0].message


def test_the_release_itself_has_no_locked_cell_problem(tmp_path):
    release = nbformat.read(ROOT / "release/batchnorm/batchnorm.ipynb", as_version=4)
    assert _static(release, tmp_path) == []


def test_a_notebook_without_nbgrader_metadata_is_one_problem(tmp_path):
    nb = _solution()
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    problems = _static(nb, tmp_path)
    [problem] = _of_kind(problems, "changed_locked_cell")
    assert "none of the released notebook's cell ids" in problem.message and problem.cell is None
    # every cell is then one the student added, which the grader runs: the training race too
    assert _number(nb, source=next(c.source for c in _solution().cells if _grade_id(c) == "demo_load_data")) \
        in {p.cell for p in _of_kind(problems, "loads_data_or_trains")}


# --- loads_data_or_trains: read from the code, even when it would run in time -------------------------

LOADING_ANSWER = BY_ID["build_model_with_bn"].def_line + '''
    (x, y), _ = keras.datasets.fashion_mnist.load_data()       # the grader has no dataset
    return build_model_without_bn(input_shape, num_classes)
'''
TRAINING_CELL = ("model = build_model_with_bn()\nmodel.compile('adam', 'sparse_categorical_crossentropy')\n"
                 "model.fit(x_train, y_train)")
HELPER_CELL = "def train_later(model, x, y):\n    return model.fit(x, y)\n"     # defined, never called here


def test_student_cells_that_load_data_or_train_are_reported(tmp_path):
    nb = students.build_notebook(students.Student(
        "loads", "loads data in an answer, trains in an added cell", {"build_model_with_bn": LOADING_ANSWER},
        extra_cells=(("build_model_with_bn", TRAINING_CELL), ("batch_norm_backward", HELPER_CELL))))
    problems = _of_kind(_static(nb, tmp_path), "loads_data_or_trains")
    by_cell = {p.cell: p.message for p in problems}
    answer, added = _number(nb, "build_model_with_bn"), _number(nb, source=TRAINING_CELL)
    assert set(by_cell) == {answer, added}, problems       # the helper is only defined: nothing runs it
    assert by_cell[answer].startswith(f"cell {answer} (the answer cell of Exercise {_n('build_model_with_bn')}) "
                                      "calls load_data() on line 2")
    assert by_cell[added].startswith(f"cell {added} (a cell you added, starting 'model = build_model_with_bn()') "
                                     "calls fit() on line 3")


def test_loading_calls_follow_what_a_cell_runs():
    assert sources.loading_calls(HELPER_CELL, everywhere=False) == []
    assert sources.loading_calls(HELPER_CELL, everywhere=True) == [("fit", 2)]
    called = HELPER_CELL + "train_later(m, x, y)\n"
    assert sources.loading_calls(called, everywhere=False) == [("fit", 2)]
    assert sources.loading_calls("data = load_data()\nnp.polyfit(x, y, 1)\nfit(x)", everywhere=False) == \
        [("load_data", 1)]
    assert sources.loading_calls("%time model.fit(x)\n", everywhere=False) == []   # a magic is not run
    assert sources.trains(next(c for c in nbformat.read(ROOT / "release/batchnorm/batchnorm.ipynb", 4).cells
                                if _grade_id(c) == "demo_train_with_bn").source) is False
    test_cell = sources.trains("history = model.fit(x, y, epochs=1)\nassert history")
    assert test_cell is True


# --- the run: one notebook with one fault of each kind the worker finds ------------------------------

USES_DELETED_GLOBAL = BY_ID["manual_batch_norm"].def_line + '''
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=tuple(range(x.ndim - 1)), keepdims=True)
    var = x.var(axis=tuple(range(x.ndim - 1)), keepdims=True)
    return SCALE * gamma * (x - mean) / np.sqrt(var + epsilon) + beta    # SCALE: from a deleted cell
'''
DEFAULT_FROM_DELETED_CELL = '''def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=EPS):
    return gamma * (x - moving_mean) / np.sqrt(moving_var + epsilon) + beta
'''
RENAMED = students.NUMPY_RIGHT["update_moving_statistics"].replace("def update_moving_statistics(",
                                                                   "def update_moving_stats(")
USES_A_DEMO_GLOBAL = "x_small = x_train[:10]"          # only the demonstration cell demo_load_data defines it
RAISES = "scores = [1, 2, 3]\nbest = scores[5]"
LOADS = "(x_all, y_all), _ = keras.datasets.fashion_mnist.load_data()"

BROKEN = students.Student(
    "check_broken", "one fault of each kind a fresh run finds", {
        "manual_batch_norm": USES_DELETED_GLOBAL,
        "batch_norm_inference": DEFAULT_FROM_DELETED_CELL,
        "update_moving_statistics": RENAMED,
        "population_statistics": students.STUDENTS["population_unweighted"].answers["population_statistics"],
    },
    extra_cells=(("build_model_with_bn", USES_A_DEMO_GLOBAL), ("batch_norm_backward", RAISES),
                 ("build_modern_cnn", LOADS)))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    nb = students.build_notebook(BROKEN)
    path = _write(nb, tmp_path_factory.mktemp("broken"))
    lines = []
    report = checking.check(path, Limits(total_seconds=120), echo=lines.append)
    return nb, report, lines


def test_the_check_forks_its_worker_from_a_zygote_of_its_own(tmp_path, monkeypatch):
    from autograder.sandbox import process
    started = []
    original = process.SandboxedProcess.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(self.forked)
    monkeypatch.setattr(process.SandboxedProcess, "__init__", recording)
    report = checking.check(_write(students.build_notebook(students.STUDENTS["full_marks"]), tmp_path),
                            Limits(total_seconds=120))
    assert report.ready and started == [worker_origin() == "workers_forked"]


def _problem(report, kind, cell):
    found = [p for p in report.problems if p.kind == kind and p.cell == cell]
    assert len(found) == 1, (kind, cell, report.problems)
    return found[0].message


def _exercise(report, exercise_id):
    return next(e for e in report.exercises if e.id == exercise_id)


@pytest.mark.slow
def test_the_first_line_names_the_isolation(broken):
    _, _, lines = broken
    assert len(lines) == 1 and "Isolation: " in lines[0] and "30 s per cell" in lines[0]


def test_a_global_from_a_deleted_cell_is_an_undefined_name_when_the_function_is_called(broken):
    nb, report, _ = broken
    cell = _number(nb, "manual_batch_norm")
    message = _problem(report, "undefined_name", cell)
    assert message.startswith(f"cell {cell} (the answer cell of Exercise {_n('manual_batch_norm')}): "
                              "manual_batch_norm uses 'SCALE' when it is called (line 5)")
    assert "no cell of the notebook defines" in message and "only in your kernel" in message
    assert _exercise(report, "manual_batch_norm").visible_tests == "failed"


def test_a_global_from_a_deleted_cell_is_an_undefined_name_when_the_cell_runs(broken):
    nb, report, _ = broken
    cell = _number(nb, "batch_norm_inference")
    message = _problem(report, "undefined_name", cell)
    assert message.startswith(f"cell {cell} (the answer cell of Exercise {_n('batch_norm_inference')}) "
                              "uses 'EPS' on line 1")
    found = _exercise(report, "batch_norm_inference")
    assert (found.found, found.ran, found.visible_tests) == (False, False, "not run")
    assert not [p for p in report.problems if p.kind == "missing_function" and p.cell == cell]


def test_a_global_only_a_demonstration_defines_is_an_undefined_name(broken):
    nb, report, _ = broken
    cell, demo = _number(nb, source=USES_A_DEMO_GLOBAL), _number(nb, "demo_load_data")
    message = _problem(report, "undefined_name", cell)
    assert message.startswith(f"cell {cell} (a cell you added, starting 'x_small = x_train[:10]') uses 'x_train'")
    assert f"only cell {demo} (the demonstration cell 'demo_load_data') defines" in message
    assert "never runs" in message


def test_a_renamed_function_is_a_missing_function(broken):
    nb, report, _ = broken
    cell = _number(nb, "update_moving_statistics")
    message = _problem(report, "missing_function", cell)
    assert message.startswith(f"cell {cell} (the answer cell of Exercise {_n('update_moving_statistics')}) "
                              "defines update_moving_stats but not update_moving_statistics")
    assert "update_moving_statistics(moving_mean, moving_var" in message
    found = _exercise(report, "update_moving_statistics")
    assert (found.found, found.ran, found.visible_tests) == (False, True, "not run")


def test_a_cell_that_raises_is_a_cell_error(broken):
    nb, report, _ = broken
    cell = _number(nb, source=RAISES)
    message = _problem(report, "cell_error", cell)
    assert message.startswith(f"cell {cell} (a cell you added, starting 'scores = [1, 2, 3]') raises IndexError")
    assert "on line 2" in message


def test_a_wrong_answer_fails_its_visible_test_with_the_tests_own_message(broken):
    nb, report, _ = broken
    answer, test = _number(nb, "population_statistics"), _number(nb, "test_population_statistics")
    message = _problem(report, "visible_test_failed", answer)
    assert message.startswith(f"cell {test} (the visible test of Exercise {_n('population_statistics')}) fails: ")
    assert "weight each batch by its size" in message          # the notebook's own assertion message
    fix = f"fix population_statistics in cell {answer} (the answer cell of Exercise {_n('population_statistics')})"
    assert fix in message
    assert _exercise(report, "population_statistics").visible_tests == "failed"


def test_an_added_cell_that_loads_data_is_reported_with_its_failure(broken):
    nb, report, _ = broken
    cell = _number(nb, source=LOADS)
    message = _problem(report, "loads_data_or_trains", cell)
    assert message.startswith(f"cell {cell} (a cell you added, starting '(x_all, y_all), _ = keras.datasets.fa...') "
                              "calls load_data() on line 1")
    assert " (here it failed on line 1: " in message or " (here it ran past" in message
    assert not [p for p in report.problems if p.kind in ("cell_error", "cell_timeout") and p.cell == cell]


def test_the_other_exercises_pass(broken):
    _, report, _ = broken
    for exercise_id in ("batch_norm_backward", "build_model_with_bn", "build_modern_cnn"):
        assert _exercise(report, exercise_id).visible_tests == "passed", _exercise(report, exercise_id)


def test_the_training_test_is_not_run(broken):
    _, report, _ = broken
    training = _exercise(report, "training_improvement")
    assert training.visible_tests == "not run" and "the grader trains your build_model_with_bn()" in training.message


def test_a_broken_notebook_is_not_ready_for_each_kind_of_problem(broken):
    _, report, _ = broken
    assert not report.ready
    assert {p.kind for p in report.problems} == {"undefined_name", "missing_function", "cell_error",
                                                 "visible_test_failed", "loads_data_or_trains"}


# --- cell_timeout: a short cell limit, with a set-up cell that needs no Keras --------------------------

@pytest.mark.slow
def test_a_cell_past_the_cell_limit_is_a_cell_timeout(tmp_path):
    loop = "while True:\n    pass"
    nb = students.build_notebook(students.Student("loops", "an endless loop", {},
                                                  extra_cells=(("manual_batch_norm", loop),)))
    light = "import numpy as np\nimport time"      # the set-up cell without Keras: this test is about time
    path, contract = _with_setup(nb, tmp_path, light)
    report = checking.check(path, Limits(cell_seconds=2, grace_seconds=1, total_seconds=60), contract=contract)
    cell = _number(nb, source=loop)
    message = _problem(report, "cell_timeout", cell)
    assert message.startswith(f"cell {cell} (a cell you added, starting 'while True:') ran past the 2 s limit")
    assert _exercise(report, "manual_batch_norm").visible_tests == "passed"   # the loop cost only itself


# --- missing_module: one problem per module, and what it stops is not checked -----------------------

ABSENT = "bn_check_module_that_is_not_installed"


def _with_setup(nb, tmp_path, source):
    """``nb`` and the release's contract, both with the set-up cell ``setup`` replaced by ``source``
    (the check runs the release's set-up source, not the student's copy of it)."""
    for cell in nb.cells:
        if _grade_id(cell) == "setup":
            cell.source = source
    path = _write(nb, tmp_path)
    release = nbformat.read(ROOT / "release/batchnorm/batchnorm.ipynb", as_version=4)
    for cell in release.cells:
        if _grade_id(cell) == "setup":
            cell.source = source
    return path, contracts.from_release(read(_write(release, tmp_path / "release")))


def _setup_source():
    release = nbformat.read(ROOT / "release/batchnorm/batchnorm.ipynb", as_version=4)
    return next(c.source for c in release.cells if _grade_id(c) == "setup")


def _stopped_setup(line_before: str, import_line: str) -> tuple:
    """The release's set-up source with ``import_line`` inserted before the line ``line_before``; the
    number of the line it is on."""
    lines = _setup_source().splitlines()
    at = lines.index(line_before)
    return "\n".join([*lines[:at], import_line, *lines[at:]]), at + 1


def test_a_module_missing_in_the_set_up_cell_is_one_problem_and_nothing_is_blamed(tmp_path):
    """As a student's environment without the kit's dependencies: the set-up cell stops before
    NumPy and Keras are imported, so every visible test fails on 'np' or 'keras'; none of that is
    the answers' fault."""
    source, line = _stopped_setup("import matplotlib.pyplot as plt", f"import {ABSENT}")
    nb = _solution()
    path, contract = _with_setup(nb, tmp_path, source)
    report = checking.check(path, Limits(total_seconds=120), contract=contract)
    setup = _number(nb, "setup")
    [problem] = report.problems
    assert (problem.kind, problem.cell) == ("missing_module", setup), report.problems
    assert problem.message.startswith(f"cell {setup} (the locked set-up cell 'setup') stops on line {line}: "
                                      f"ModuleNotFoundError: No module named '{ABSENT}'")
    assert "It is the course's code, not yours" in problem.message
    assert f"python -m pip install {ABSENT}" in problem.message
    unchecked = [n for n, e in enumerate(EXERCISES, start=1) if e.kind is not Kind.TRAINING]
    assert f"Exercises {', '.join(map(str, unchecked))}, which need what it stops, are not checked" in problem.message
    for exercise in EXERCISES:
        found = _exercise(report, exercise.id)
        if exercise.kind is Kind.TRAINING:
            assert found.visible_tests == "not run" and "the grader trains" in found.message
        else:
            assert found.visible_tests == "not run", found
            assert found.message == f"not checked: {ABSENT} is not installed here (see the problems)"
    assert not report.ready and report.could_not_run                 # exit code 2: not the notebook's fault
    assert report.lines()[-1].startswith("NOT CHECKED")


def test_a_missing_dependency_of_keras_numpy_backend_names_the_kit_and_all_that_is_absent(tmp_path, monkeypatch):
    """The student's case: Keras imports, but not on its NumPy backend, which needs SciPy and JAX.
    The check names every one of them that this Python lacks, not one per run."""
    raise_it = "raise ModuleNotFoundError(\"No module named 'scipy'\", name='scipy')   # as keras does without it"
    source, line = _stopped_setup("import keras", raise_it)
    monkeypatch.setattr(checking, "absent_backend_modules", lambda: ["scipy", "jax", "jaxlib"])
    nb = _solution()
    path, contract = _with_setup(nb, tmp_path, source)
    report = checking.check(path, Limits(total_seconds=120), contract=contract)
    [problem] = report.problems
    assert problem.kind == "missing_module" and problem.cell == _number(nb, "setup")
    assert f"stops on line {line}: ModuleNotFoundError: No module named 'scipy'" in problem.message
    assert "Keras' NumPy backend, as the grader does" in problem.message
    assert "lacks scipy and jax and jaxlib" in problem.message
    assert "python -m pip install scipy jax jaxlib" in problem.message and "batchnorm-check" in problem.message
    # NumPy was imported before the line that stopped: what needs only NumPy is checked, what needs Keras is not
    for exercise_id in ("manual_batch_norm", "batch_norm_backward", "population_statistics"):
        assert _exercise(report, exercise_id).visible_tests == "passed"
    for exercise_id in ("build_model_with_bn", "batch_norm_inference", "group_norm", "build_modern_cnn"):
        assert _exercise(report, exercise_id).message == "not checked: scipy is not installed here (see the problems)"
    assert report.could_not_run


IMPORTS_ABSENT = f"import {ABSENT} as helper"
USES_HELPER = BY_ID["manual_batch_norm"].def_line + "\n    return helper.normalize(x, gamma, beta, epsilon)\n"


@pytest.mark.slow          # several sandboxed runs: make test-fast stays under its minute
def test_a_module_missing_in_a_students_cell_is_one_problem_however_many_cells_import_it(tmp_path):
    nb = students.build_notebook(students.Student(
        "imports_absent", "imports a module the environment lacks, in two added cells",
        {"manual_batch_norm": USES_HELPER},
        extra_cells=(("manual_batch_norm", IMPORTS_ABSENT), ("batch_norm_backward", IMPORTS_ABSENT))))
    path, contract = _with_setup(nb, tmp_path, _setup_source())
    report = checking.check(path, Limits(total_seconds=120), contract=contract)
    first, second = [n for n, c in enumerate(nb.cells, start=1) if c.source == IMPORTS_ABSENT]
    [problem] = report.problems
    assert (problem.kind, problem.cell) == ("missing_module", first), report.problems
    assert problem.message.startswith(f"cell {first} (a cell you added, starting 'import bn_check_module_")
    stops = f"') stops on line 1: ModuleNotFoundError: No module named '{ABSENT}' (so do cell {second})"
    assert stops in problem.message
    assert "only if the course allows it" in problem.message
    assert f"Exercise {_n('manual_batch_norm')}, which needs what it stops, is not checked" in problem.message
    found = _exercise(report, "manual_batch_norm")
    assert (found.found, found.visible_tests) == (True, "not run") and found.message.startswith("not checked: ")
    assert _exercise(report, "batch_norm_backward").visible_tests == "passed"
    assert not report.could_not_run                      # the student's own import: exit code 1


def test_only_a_missing_module_is_read_from_an_import_error():
    from autograder.channel import Kind as OutcomeKind
    from autograder.channel import Outcome
    def raised(exception, message):
        return Outcome(OutcomeKind.RAISED, f"{exception}: {message}", exception=exception, message=message)
    assert checking.missing_module(raised("ModuleNotFoundError", "No module named 'scipy'")) == "scipy"
    assert checking.missing_module(raised("ModuleNotFoundError", "No module named 'scipy.special'")) == "scipy.special"
    assert checking.missing_module(raised("ImportError", "cannot import name 'x' from 'numpy'")) is None
    assert checking.missing_module(raised("ValueError", "No module named 'scipy'")) is None


# --- the solution, and what the check never touches -----------------------------------------------

@pytest.mark.slow
def test_the_solution_notebook_is_ready(tmp_path):
    path = _write(_solution(), tmp_path)
    output = tmp_path / "check.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(output.read_text())
    assert report["ready"] is True and report["problems"] == [] and report["reminders"] == []
    for exercise, found in zip(EXERCISES, report["exercises"], strict=False):
        assert found["found"] and found["ran"], found
        expected = "not run" if exercise.kind is Kind.TRAINING else "passed"
        assert found["visible_tests"] == expected, found
    assert "READY" in done.stdout and "the grader trains" in done.stdout


def test_the_check_imports_no_hidden_check_reference_or_tensorflow():
    code = ("import sys, autograder.student.check, autograder.__main__\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('autograder', 'tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(eval(done.stdout))  # noqa: S307 - our own printout
    hidden = {"autograder.checks", "autograder.reference", "autograder.known_mistakes", "autograder.reference_models",
              "autograder.training", "autograder.trainingcache", "autograder.synthetic_students",
              "autograder.grade", "autograder.models", "autograder.classroom", "tensorflow", "keras"}
    assert not {m for m in loaded if m in hidden or m.rsplit(".", 1)[0] in hidden}, loaded


def test_limits_come_from_the_grader_settings():
    limits = settings.from_environ({"BN_AUTOGRADER_CELL_SECONDS": "12", "BN_AUTOGRADER_MEMORY_MB": "512"}).limits
    assert limits.cell_seconds == 12 and limits.memory_bytes == 512 << 20
    assert limits.total_seconds == Limits().total_seconds
    with pytest.warns(UserWarning, match="BN_AUTOGRADER_TOTAL_SECONDS"):
        assert settings.from_environ({"BN_AUTOGRADER_TOTAL_SECONDS": "soon"}).limits == Limits()


def test_a_report_line_is_cut_at_a_words_end():
    from autograder.text import shortened
    line = "the mean over the batch axis is wrong for every feature " * 4
    cut = shortened(line, 120)
    assert len(cut) <= 120 and cut.endswith("...") and line.startswith(cut[:-3]) and line[len(cut) - 3] == " "
    assert shortened("short", 120) == "short"


def test_an_empty_written_answer_is_a_reminder_not_a_problem():
    from autograder.exercises import UNANSWERED, WRITTEN_ANSWERS
    from autograder.notebook import Notebook
    from autograder.student.check import empty_written_answers
    from autograder.student.report import Report

    def answer_cell(answer, text):
        return {"cell_type": "markdown", "source": text, "metadata": {"nbgrader": {
            "grade_id": answer.answer_cell, "solution": True, "grade": True, "points": answer.points}}}
    first, second, *rest = WRITTEN_ANSWERS
    cells = [{"cell_type": "markdown", "source": "# intro", "metadata": {}}, answer_cell(first, UNANSWERED),
             answer_cell(second, "BN goes before the ReLU because ..."), *(answer_cell(a, "\n") for a in rest)]
    reminders = empty_written_answers(Notebook(cells))
    assert len(reminders) == 1 + len(rest) and reminders[0].startswith("cell 2: Written answer 1 (")
    assert not any(second.title in r for r in reminders)
    report = Report(True, [], [], reminders=reminders)
    printed = "\n".join(report.lines())
    assert "Reminder, not a problem" in printed and printed.splitlines()[-1].startswith("READY")
    assert report.to_dict()["reminders"] == reminders
