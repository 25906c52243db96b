"""The assignment notebooks: source/ (the nbgrader master), release/ (students), solutions/ (executed).

Run from the repository root: ``.venv/bin/python -m pytest tests/test_notebooks.py``. The tests
marked ``slow`` start Jupyter kernels that import TensorFlow; the slowest executes the whole
solutions notebook with BN_ASSIGNMENT_FAST=1 (about a minute), in a process of its own started as the
module starts, beside the module's other tests (``fast_mode_run``).
"""

import copy
import gzip
import multiprocessing
import re
import shutil
import struct
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder import assign, data
from autograder.exercises import (
    BY_ANSWER_CELL,
    BY_TEST_CELL,
    EXERCISES,
    MANUAL_POINTS,
    OPTIONAL_ANSWER_CELLS,
    WRITTEN_ANSWERS,
)
from autograder.notebook import DEMO_CELL_PREFIX

ROOT = Path(__file__).resolve().parent.parent
TRAINING_TEST_CELL = "test_training_improvement"
HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
TF_IMPORT_LOG = re.compile(r"(?m)^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                           r"STDERR|I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\..*)\n")


# --------------------------------------------------------------------------------------------
# helpers

def _read(relative):
    return nbformat.read(ROOT / relative, as_version=4)


def _meta(cell):
    return cell.metadata.get("nbgrader", {})


def _grade_id(cell):
    return _meta(cell).get("grade_id", "")


def _cell(nb, grade_id):
    matches = [cell for cell in nb.cells if _grade_id(cell) == grade_id]
    assert len(matches) == 1, f"expected one cell with grade_id {grade_id!r}, found {len(matches)}"
    return matches[0]


def _source_with_solutions():
    """The source notebook with markers and hidden tests stripped, nbgrader metadata kept."""
    return assign.solutions_notebook(ROOT, keep_nbgrader_metadata=True)


def _graded_code_cells(nb):
    """What the grader runs in a kernel: set-up, exercise and test cells; no demos, no race test."""
    return [cell for cell in nb.cells
            if cell.cell_type == "code" and not _grade_id(cell).startswith(DEMO_CELL_PREFIX)
            and _grade_id(cell) != TRAINING_TEST_CELL]


def _run(cells, tmp_path):
    """Execute copies of ``cells`` in one fresh kernel (errors recorded, not raised); return them."""
    copies = [copy.deepcopy(cell) for cell in cells]
    for number, cell in enumerate(copies):  # the same cell may run more than once
        cell.id = f"run-{number}"
    nb = new_notebook(cells=copies, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                             "display_name": "Python 3"}})
    assign.execute_notebook(nb, cwd=tmp_path, fast=True, timeout=300, allow_errors=True)
    return nb.cells


def _error(cell):
    """(ename, evalue) of the cell's error output, or None."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return output.ename, output.evalue
    return None


def _stream(cell, name):
    return "".join(o.text for o in cell.get("outputs", [])
                   if o.output_type == "stream" and o.name == name)


def _label(cell):
    return _grade_id(cell) or cell.source.splitlines()[0]


FAST_MODE_TEST = "test_solutions_notebook_runs_top_to_bottom_in_fast_mode"


def execute_solutions_fast(cwd: str) -> str:
    """The solutions notebook executed top to bottom in FAST mode in ``cwd``, as JSON (in a process
    of its own: fast_mode_run)."""
    from nbclient.exceptions import CellExecutionError
    nb = assign.solutions_notebook(ROOT)
    try:
        assign.execute_notebook(nb, cwd=cwd, fast=True)
    except CellExecutionError as error:       # re-raised as an exception that crosses processes whole
        raise RuntimeError(f"a cell of the solutions notebook failed in FAST mode:\n{error}") from None
    return nbformat.writes(nb)


@pytest.fixture(scope="module", autouse=True)
def fast_mode_run(request, tmp_path_factory):
    """The Future of execute_solutions_fast, started in a process of its own as the module starts when
    FAST_MODE_TEST is to run (else None): its kernel trains on one core for about a minute while the
    module's other tests (their own kernels, nbgrader) run on the other; FAST_MODE_TEST, the last,
    waits for it."""
    if not any(item.name == FAST_MODE_TEST and getattr(item, "module", None) is request.module
               for item in request.session.items):
        yield None
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor.submit(execute_solutions_fast, str(tmp_path_factory.mktemp("fast-mode")))


# --------------------------------------------------------------------------------------------
# structure: points, cell roles, what survives in the release

def test_each_test_cell_carries_its_contract():
    nb = _read(assign.SOURCE)
    graded = {_grade_id(c): _meta(c) for c in nb.cells if _meta(c).get("grade")}
    assert set(graded) == set(BY_TEST_CELL) | set(BY_ANSWER_CELL), \
        "the graded cells must be exactly the contract's test cells and the written answers (tests/test_registry.py)"
    for exercise in EXERCISES:
        meta = graded[exercise.test_cell]
        assert meta["points"] == exercise.points, exercise.test_cell
        assert meta["locked"] and not meta["solution"], exercise.test_cell
        cell = _cell(nb, exercise.test_cell)
        assert cell.cell_type == "code"
        hidden = HIDDEN_BLOCK.search(cell.source)
        assert hidden, f"{exercise.test_cell} has no hidden-tests block"
        assert f"autograder/checks/test_{exercise.id}.py" in hidden.group(1)
        visible = HIDDEN_BLOCK.sub("", cell.source)
        assert "assert " in visible, f"{exercise.test_cell} has no visible tests"


def test_cell_roles_follow_the_contract():
    nb = _read(assign.SOURCE)
    assert nb.metadata.kernelspec.name == "python3"
    functions = {exercise.function for exercise in EXERCISES}
    solution_cells = [c for c in nb.cells if _meta(c).get("solution") and _grade_id(c) not in BY_ANSWER_CELL]
    # the written answers: tests/test_registry.py; the optional one-line backward pass is ungraded
    assert {_grade_id(c) for c in solution_cells} == functions | set(OPTIONAL_ANSWER_CELLS)
    for cell in solution_cells:
        meta = _meta(cell)
        assert cell.cell_type == "code" and not meta["grade"] and not meta["locked"]
        assert cell.source.startswith(f"def {_grade_id(cell)}("), "only the function in a solution cell"
        assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") == 1
    locked_code = [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("locked")
                   and not _meta(c).get("grade")]
    setup = [c for c in locked_code if not _grade_id(c).startswith(DEMO_CELL_PREFIX)]
    demos = [c for c in locked_code if _grade_id(c).startswith(DEMO_CELL_PREFIX)]
    assert [_grade_id(c) for c in setup] == ["setup", "covariate_shift_data", "gradient_checker",
                                             "given_model_without_bn"]
    assert len(demos) >= 8
    for cell in setup:  # they run in the grader's sandbox: no data, no network, no training
        for forbidden in ("load_data", ".fit(", "load_fashion_mnist"):
            assert forbidden not in cell.source, f"set-up cell {_grade_id(cell)} uses {forbidden}"
    setup_source = _cell(nb, "setup").source
    assert setup_source.index('setdefault("TF_CPP_MIN_LOG_LEVEL", "3")') < \
        re.search(r"^import keras", setup_source, re.M).start()
    assert "BN_ASSIGNMENT_FAST" in setup_source and "BN_ASSIGNMENT_FAST=1" in nb.cells[0].source
    every_code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"layers\.\w+\([^)]*input_shape\s*=", every_code), "input_shape= on a layer"
    assert "tensorflow.keras" not in every_code


def test_release_hides_only_the_solution_bodies():
    source, release = _read(assign.SOURCE), _read(assign.RELEASE)
    assert [_grade_id(c) for c in source.cells] == [_grade_id(c) for c in release.cells]
    for function in {exercise.function for exercise in EXERCISES}:
        original, released = _cell(source, function).source, _cell(release, function).source
        head = original.split("### BEGIN SOLUTION")[0].rstrip()
        assert released.startswith(head), f"the release lost the def line or docstring of {function}"
        assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in released
    release_text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder/checks"):
        assert marker not in release_text, f"{marker!r} leaked into the release"
    assert sorted(p.name for p in (ROOT / assign.RELEASE).parent.iterdir()) == [assign.RELEASE.name]


def test_exercise_2_asks_for_a_derivation_not_a_closed_form():
    """The release's Exercise 2 (instructions, answer cell, visible test, optional cells) gives the staged
    forward pass and the method, not the gradients through mu, sigma^2 or x."""
    release = _read(assign.RELEASE)
    ids = [_grade_id(c) or c.id for c in release.cells]
    first, last = ids.index("exercise_2_instructions"), ids.index("demo_backward_timing")
    assert "raise NotImplementedError" in release.cells[last - 1].source    # the optional one-line cell: a stub
    text = "\n".join(c.source for c in release.cells[first:last + 1])
    for stage in ("d_i = x_i - \\mu", "s = \\sqrt{\\sigma^2 + \\epsilon}", "\\hat{x}_i = d_i / s"):
        assert stage in text, stage
    closed_forms = [r"\\partial L\s*/\s*\\partial (x_i|\\mu|\\sigma\^2)\s*=",
                    r"\\frac\{\\partial L\}\{\\partial (x_i|\\mu|\\sigma\^2)\}\s*=",
                    r"2\s*\(x_i - \\?mu\)\s*/\s*m", r"x_hat \* \(dx_hat \* x_hat\)", r"dx_hat\.(sum|mean)\(",
                    r"mean\(dx_hat", r"\\frac\{1\}\{2 s\^3\}", r"dL/dvar"]
    for pattern in closed_forms:
        assert not re.search(pattern, text), f"Exercise 2 gives a closed form away: {pattern}"


def test_exercise_10_asks_for_a_derivation_not_a_closed_form():
    """The release's Exercise 10 (instructions, answer cell, visible test) gives group norm's forward pass as
    stages per sample and group, and who shares what, not the gradients through mu, sigma^2 or x."""
    release = _read(assign.RELEASE)
    ids = [_grade_id(c) or c.id for c in release.cells]
    first, last = ids.index("exercise_10_instructions"), ids.index("test_group_norm_backward")
    text = "\n".join(c.source for c in release.cells[first:last + 1])
    for stage in ("d_i = x_i - \\mu", "s = \\sqrt{\\sigma^2 + \\epsilon}", "\\hat{x}_i = d_i / s",
                  "y_i = \\gamma_c"):
        assert stage in text, stage
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in release.cells[first + 1].source
    closed_forms = [r"\\partial L\s*/\s*\\partial (x_i|\\mu|\\sigma\^2)\s*=",
                    r"\\frac\{\\partial L\}\{\\partial (x_i|\\mu|\\sigma\^2)\}\s*=",
                    r"2\s*\(x_i - \\?mu\)\s*/\s*m", r"x_hat \* \(dx_hat \* x_hat\)", r"dx_hat\.(sum|mean)\(",
                    r"mean\(dx_hat", r"\\frac\{1\}\{2 s\^3\}", r"dL/dvar", r"dvar \* 2 \* d"]
    for pattern in closed_forms:
        assert not re.search(pattern, text), f"Exercise 10 gives a closed form away: {pattern}"

# --------------------------------------------------------------------------------------------
# the visible tests, run in a kernel

@pytest.mark.slow
def test_release_stubs_fail_the_visible_tests_with_the_todo(tmp_path):
    cells = _run(_graded_code_cells(_read(assign.RELEASE)), tmp_path)
    test_cells = [c for c in cells if _grade_id(c) in BY_TEST_CELL]
    assert {_grade_id(c) for c in test_cells} == set(BY_TEST_CELL) - {TRAINING_TEST_CELL}
    for cell in cells:
        if cell in test_cells:
            assert _error(cell) is not None and _error(cell)[0] == "NotImplementedError", \
                f"{_label(cell)}: expected NotImplementedError, got {_error(cell)}"
        else:
            assert _error(cell) is None, f"{_label(cell)} failed: {_error(cell)}"


def _fake_histories(with_bn, without_bn):
    return new_code_cell(
        "import types as _types\n"
        f"history_with_bn = _types.SimpleNamespace(history={{'accuracy': [{with_bn}, 0.9]}})\n"
        f"history_without_bn = _types.SimpleNamespace(history={{'accuracy': [{without_bn}, 0.9]}})")


@pytest.mark.slow
def test_solution_passes_the_visible_tests(tmp_path):
    nb = _source_with_solutions()
    race_test = _cell(nb, TRAINING_TEST_CELL)
    scenarios = [  # (cells that set up the race's histories, expected error or None)
        (_fake_histories(0.71, 0.58), None),
        (_fake_histories(0.55, 0.58), ("AssertionError", "does not beat the baseline")),
        (new_code_cell("del history_with_bn, history_without_bn"),
         ("AssertionError", "run the training race cells above first")),
    ]
    cells = _graded_code_cells(nb)
    for fake, _ in scenarios:
        cells += [fake, race_test]
    executed = _run(cells, tmp_path)

    exercise_tests = [c for c in executed[:len(_graded_code_cells(nb))] if _grade_id(c) in BY_TEST_CELL]
    assert len(exercise_tests) == len(EXERCISES) - 1
    for cell in executed[:len(_graded_code_cells(nb))]:
        assert _error(cell) is None, f"{_label(cell)} failed: {_error(cell)}"
    for cell in exercise_tests:
        assert "visible tests passed" in _stream(cell, "stdout"), _label(cell)
        # nbgrader: stderr in a test cell scores 0, a numeric last value counts as partial credit
        assert _stream(cell, "stderr") == "", f"{_label(cell)} wrote to stderr"
        assert not [o for o in cell.outputs if o.output_type == "execute_result"], _label(cell)

    race_runs = [c for c in executed[len(_graded_code_cells(nb)):] if _grade_id(c) == TRAINING_TEST_CELL]
    for cell, (_, expected) in zip(race_runs, scenarios, strict=False):
        if expected is None:
            assert _error(cell) is None and "visible test passed" in _stream(cell, "stdout")
        else:
            assert _error(cell) is not None and _error(cell)[0] == expected[0]
            assert expected[1] in _error(cell)[1], _error(cell)[1]


def _mutant(nb, function, old, new):
    source = _cell(nb, function).source
    assert old in source, f"mutant for {function}: {old!r} is no longer in the solution"
    return new_code_cell(source.replace(old, new))


@pytest.mark.slow
def test_visible_tests_name_common_mistakes(tmp_path):
    nb = _source_with_solutions()
    mutants = [  # (mutated solution cell, words the failure message of its test cell must contain)
        (_mutant(nb, "manual_batch_norm", "x.var(axis=axes, keepdims=True)",
                 "x.var(axis=axes, keepdims=True, ddof=1)"), "unbiased"),
        (_mutant(nb, "manual_batch_norm", "np.sqrt(var + epsilon)", "(np.sqrt(var) + epsilon)"),
         "sqrt(var + epsilon)"),
        (_mutant(nb, "manual_batch_norm", "axes = tuple(range(x.ndim - 1))", "axes = (0,)"),
         "over the batch and the positions"),
        (_mutant(nb, "manual_batch_norm", "x_hat = (x - mean) / np.sqrt(var + epsilon)",
                 "x -= mean\n    x /= np.sqrt(var + epsilon)\n    x_hat = x"), "changed its input x"),
        (_mutant(nb, "manual_batch_norm", "return np.asarray(gamma) * x_hat + np.asarray(beta)",
                 "return (np.asarray(gamma) * x_hat + np.asarray(beta)).tolist()"), "floating-point NumPy array"),
        (_mutant(nb, "build_model_with_bn", "keras.layers.Conv2D(filters, 3)(x)",
                 "keras.layers.Conv2D(filters, 3, activation='relu')(x)"), "stays linear"),
        (_mutant(nb, "build_model_with_bn",
                 'x = keras.layers.Activation("relu")(x)\n        x = keras.layers.MaxPooling2D(2)(x)',
                 'x = keras.layers.MaxPooling2D(2)(x)\n        x = keras.layers.Activation("relu")(x)'),
         "not by a ReLU"),
        (_mutant(nb, "build_model_with_bn", 'keras.layers.Activation("relu")(x)',
                 "keras.layers.ReLU(max_value=6.0)(x)"),
         "not a plain ReLU"),
        (_mutant(nb, "build_model_with_bn", 'outputs = keras.layers.Dense(num_classes, activation="softmax")(x)',
                 "outputs = keras.layers.Dense(num_classes)(x)"), "class probabilities"),
        (_mutant(nb, "build_model_with_bn", "keras.Input(shape=input_shape)",
                 "keras.Input(shape=(28, 28, 1))"), "use the input_shape and num_classes"),
        (_mutant(nb, "build_model_with_bn", "x = keras.layers.Flatten()(x)",
                 "x = keras.layers.Lambda(lambda t: t)(x)\n    x = keras.layers.Flatten()(x)"), "Lambda"),
        (_mutant(nb, "build_modern_cnn", "keras.layers.GlobalAveragePooling2D()(x)",
                 "keras.layers.Flatten()(x)"), "differ from the table"),
        (_mutant(nb, "build_modern_cnn", 'padding="same"', 'padding="valid"'), "padding='same'"),
        (_mutant(nb, "build_modern_cnn", "(num_classes, activation", "(10, activation"),
         "use the arguments"),
        (_mutant(nb, "batch_norm_backward", "dx = dd + dmu / m", "dx = dx_hat / s"),
         "treats the mean and the variance as constants"),
        (_mutant(nb, "batch_norm_backward", "dd = dx_hat / s + dvar * 2 * d / m", "dd = dx_hat / s"),
         "misses the path through the variance"),
        (_mutant(nb, "batch_norm_backward", "dgamma = (dout * x_hat).sum(axis=axes)", "dgamma = dout.sum(axis=axes)"),
         "dgamma is sum(dout)"),
        (_mutant(nb, "batch_norm_backward",
                 "axes = tuple(range(x.ndim - 1))  # every axis but the feature (channel) axis",
                 "axes = (0,)"), "sum over every axis but the last"),
        (_mutant(nb, "batch_norm_backward", "s = np.sqrt(var + epsilon)", "s = np.sqrt(var + 1e-5)"),
         "use the epsilon argument"),
        (_mutant(nb, "update_moving_statistics",
                 "momentum * np.asarray(moving_mean, dtype=np.float64) + (1 - momentum) * np.asarray(batch_mean",
                 "(1 - momentum) * np.asarray(moving_mean, dtype=np.float64) + momentum * np.asarray(batch_mean"),
         "convention is swapped"),
        (_mutant(nb, "batch_norm_inference", "x_hat = (x - np.asarray(moving_mean, dtype=np.float64)) / "
                 "np.sqrt(np.asarray(moving_var, dtype=np.float64) + epsilon)",
                 "x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + epsilon)"), "use moving_mean and moving_var"),
        (_mutant(nb, "batch_norm_inference", "np.sqrt(np.asarray(moving_var, dtype=np.float64) + epsilon)",
                 "(np.sqrt(np.asarray(moving_var, dtype=np.float64)) + epsilon)"), "inside the square root"),
        (_mutant(nb, "batch_norm_inference", "np.sqrt(np.asarray(moving_var, dtype=np.float64) + epsilon)",
                 "(np.asarray(moving_var, dtype=np.float64) + epsilon)"), "used as a standard deviation"),
        (_mutant(nb, "debiased_moving_statistic", "return (moving - left * initial) / (1 - left)",
                 "return moving / (1 - left)"), "Adam's bias correction"),
        (_mutant(nb, "debiased_moving_statistic", "return (moving - left * initial) / (1 - left)",
                 "return moving - left * initial"), "divide it by their total weight"),
        (_mutant(nb, "debiased_moving_statistic", "left = momentum ** steps", "left = momentum ** (steps - 1)"),
         "steps - 1 updates"),
        (_mutant(nb, "population_statistics", "(variances + (means - mean) ** 2)", "variances"),
         "the average of the batch variances (1)"),
        (_mutant(nb, "population_statistics", "weights = weights / weights.sum()",
                 "weights = np.ones_like(weights) / len(weights)"), "weight each batch by its size"),
        (_mutant(nb, "group_norm", "axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)",
                 "axes = tuple(range(0, grouped.ndim - 2)) + (grouped.ndim - 1,)"), "shared across the batch"),
        (_mutant(nb, "group_norm",
                 "grouped = x.reshape(*x.shape[:-1], groups, channels // groups)   # (N, ..., G, C/G)\n"
                 "    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)",
                 "grouped = x.reshape(*x.shape[:-1], channels // groups, groups)\n"
                 "    axes = tuple(range(1, grouped.ndim - 1))"), "interleaved"),
        (_mutant(nb, "group_norm", "var = grouped.var(axis=axes, keepdims=True)",
                 "var = grouped.var(axis=axes, keepdims=True, ddof=1)"), "unbiased"),
        (_mutant(nb, "group_norm", "np.sqrt(var + epsilon)", "np.sqrt(var + 1e-3)"), "use the epsilon argument"),
        (_mutant(nb, "group_norm_backward", "dx = dd + dmu / m", "dx = dx_hat / s"),
         "treats the group's mean and variance as constants"),
        (_mutant(nb, "group_norm_backward", "dx = dd + dmu / m", "dx = dd"), "misses the path through the mean"),
        (_mutant(nb, "group_norm_backward", "dd = dx_hat / s + dvar * 2 * d / m", "dd = dx_hat / s"),
         "misses the path through the variance"),
        (_mutant(nb, "group_norm_backward", "dbeta = dout.sum(axis=channel_axes)",
                 "dbeta = dout.reshape(shape).sum(axis=axes)"), "summed per sample and group"),
        (_mutant(nb, "group_norm_backward", "s = np.sqrt(var + epsilon)", "s = np.sqrt(var + 1e-3)"),
         "use the epsilon argument"),
        (_mutant(nb, "group_norm_backward", "var = (d ** 2).mean(axis=axes, keepdims=True)",
                 "var = (d ** 2).sum(axis=axes, keepdims=True) / (m - 1)"), "biased variance"),
    ]
    accepted = [  # variants the instructions allow: they must pass (tests/test_visible_hidden.py tries more)
        _mutant(nb, "build_model_with_bn", "keras.layers.Conv2D(filters, 3)(x)",
                "keras.layers.Conv2D(filters, 3, use_bias=False)(x)"),
        _mutant(nb, "build_model_with_bn", "keras.layers.Conv2D(filters, 3)(x)",  # one bias-free conv of two
                "keras.layers.Conv2D(filters, 3, use_bias=filters == 32)(x)"),
        _mutant(nb, "build_modern_cnn", 'keras.layers.Conv2D(filters, 3, padding="same")(x)',
                'keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)'),
        _mutant(nb, "build_model_with_bn", 'keras.layers.Activation("relu")(x)', "keras.layers.ReLU()(x)"),
        _mutant(nb, "manual_batch_norm", "x = np.asarray(x, dtype=np.float64)", "x = np.array(x)"),
        _mutant(nb, "manual_batch_norm", "x = np.asarray(x, dtype=np.float64)",
                "x = np.asarray(x, dtype=np.float64)\n    print('debug:', x.shape)"),
        _mutant(nb, "batch_norm_backward", "return dx, dgamma, dbeta", "return [dx, dgamma, dbeta]"),
    ]
    test_cell = {exercise.function: exercise.test_cell for exercise in EXERCISES
                 if exercise.test_cell != TRAINING_TEST_CELL}
    setup = [c for c in _graded_code_cells(nb) if not _meta(c).get("solution") and not _meta(c).get("grade")]
    cells = list(setup)
    for mutant in accepted + [mutant for mutant, _ in mutants]:
        function = re.match(r"def (\w+)\(", mutant.source).group(1)
        cells += [mutant, _cell(nb, test_cell[function])]
    executed = _run(cells, tmp_path)
    for cell in executed[:len(setup)]:
        assert _error(cell) is None, f"{_label(cell)} failed: {_error(cell)}"
    results = executed[len(setup) + 1::2]
    for variant, cell in zip(accepted, results, strict=False):
        assert _error(cell) is None, f"the visible tests reject an allowed variant ({_error(cell)}):\n{variant.source}"
    results = results[len(accepted):]
    for (mutant, words), cell in zip(mutants, results, strict=False):
        error = _error(cell)
        assert error is not None and error[0] == "AssertionError", \
            f"the visible tests let this through or crashed ({error}):\n{mutant.source}"
        assert words in error[1], f"message {error[1]!r} does not mention {words!r}"


def test_committed_solutions_are_executed_with_the_full_budget():
    nb = _read(assign.SOLUTIONS)
    assert nb.metadata.get(assign.METADATA_KEY, {}).get("training_budget") == "full", \
        "solutions/ was executed with --fast; regenerate it with `python -m autograder assign`"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "solutions/ is not fully executed"
    assert not [cell for cell in code if _error(cell)], "solutions/ has cells that failed"
    assert "FAST" not in _stream(code[0], "stdout")
    assert sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {})) >= 6
    assert not any("nbgrader" in cell.metadata for cell in nb.cells)
    text = "\n".join(cell.source for cell in nb.cells)
    assert "### BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text


def test_committed_solutions_print_no_log_lines_or_automatic_layer_names():
    code = [cell for cell in _read(assign.SOLUTIONS).cells if cell.cell_type == "code"]
    for cell in code:  # TensorFlow's absl/oneDNN lines and Python warnings all go to stderr
        stderr = _stream(cell, "stderr")
        if cell.id == "setup":   # on CPUs where oneDNN is on, TensorFlow logs it while it loads, whatever
            stderr = TF_IMPORT_LOG.sub("", stderr)   # TF_CPP_MIN_LOG_LEVEL says (the set-up cell says so)
        assert stderr == "", f"{cell.id} wrote to stderr: {stderr[:300]}"
    printed = "\n".join(_stream(cell, "stdout") + "".join(o.get("data", {}).get("text/plain", "")
                                                          for o in cell.outputs) for cell in code)
    for pattern in (r"absl|oneDNN", r"\b(batch_normalization|conv2d|dense|max_pooling2d|activation|flatten)_\d+\b"):
        found = re.search(pattern, printed)
        assert not found, f"the committed solutions print {found.group(0)!r}"


# --------------------------------------------------------------------------------------------
# staleness of the generated notebooks

@pytest.mark.parametrize("flag", ["--verify", "--check"])
def test_assign_verifies_with_verify_or_its_hidden_old_name(flag):
    assert assign._parser().parse_args([flag]).verify is True


def test_assign_help_shows_verify_not_check():
    shown = assign._parser().format_help()
    assert "--verify" in shown and "--check" not in shown


@pytest.mark.slow
def test_the_committed_generated_notebooks_are_up_to_date():
    assert assign.stale_outputs(ROOT) == []


@pytest.mark.slow
def test_stale_outputs_name_what_changed(tmp_path):
    for part in ("nbgrader_config.py", "source", "release", "solutions"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy2)(ROOT / part, tmp_path / part)
    source = nbformat.read(tmp_path / assign.SOURCE, as_version=4)

    # A change inside a solution changes the solutions notebook only (the release shows the stub).
    cell = _cell(source, "manual_batch_norm")
    cell.source = cell.source.replace("var = x.var(", "var = 1.0 * x.var(")
    nbformat.write(source, tmp_path / assign.SOURCE)
    assert assign.stale_outputs(tmp_path) == [assign.SOLUTIONS.as_posix()]

    # A change to a visible test shows up in both.
    cell = _cell(source, "test_build_modern_cnn")
    cell.source = cell.source.replace("_total = _model.count_params()", "_total = int(_model.count_params())")
    nbformat.write(source, tmp_path / assign.SOURCE)
    assert assign.stale_outputs(tmp_path) == [assign.RELEASE.as_posix(), assign.SOLUTIONS.as_posix()]

    # A hand-edited or missing generated file is stale too.
    shutil.copy2(ROOT / assign.SOURCE, tmp_path / assign.SOURCE)
    release = nbformat.read(tmp_path / assign.RELEASE, as_version=4)
    _cell(release, "build_modern_cnn").source += "\n# edited by hand"
    nbformat.write(release, tmp_path / assign.RELEASE)
    (tmp_path / assign.SOLUTIONS).unlink()
    assert assign.stale_outputs(tmp_path) == [assign.RELEASE.as_posix(), assign.SOLUTIONS.as_posix()]


def test_strip_cell_source_keeps_solution_code_but_drops_hidden_tests():
    source = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
              "assert f(1) == 1\n\n### BEGIN HIDDEN TESTS\nassert f(2) == 2\n### END HIDDEN TESTS\n")
    assert assign.strip_cell_source(source) == "def f(x):\n    \"\"\"Doc.\"\"\"\n    return x\nassert f(1) == 1"


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: autograder.data and the notebook's loader

def _write_idx(folder, images, labels, prefix):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def test_data_reads_idx_files_from_fashion_mnist_dir(tmp_path, monkeypatch):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(tmp_path, images, np.array([7, 0, 9]), "train")
    _write_idx(tmp_path, images[:2][::-1], np.array([1, 2]), "t10k")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))

    assert data.find_dataset_dir() == tmp_path
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (3, 28, 28) and x_test.shape == (2, 28, 28)
    assert np.array_equal(x_train, images) and np.array_equal(x_test, images[:2][::-1])
    assert y_train.tolist() == [7, 0, 9] and y_test.tolist() == [1, 2]
    x, y = data.training_subset(2)
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32
    assert np.allclose(x[..., 0], images[:2] / 255.0) and y.tolist() == [7, 0]


def test_data_reads_the_debian_package_when_installed(monkeypatch):
    if not all((data.DEBIAN_DIR / name).is_file() for name in data.FILES.values()):
        pytest.skip(f"dataset-fashion-mnist is not installed ({data.DEBIAN_DIR})")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data.DEBIAN_DIR))
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10


def test_missing_data_says_both_ways_to_get_it(tmp_path, monkeypatch):
    for name in ("home", "keras_home", "debian"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    with pytest.raises(data.DatasetMissing) as missing:
        data.find_dataset_dir()
    message = str(missing.value)
    for words in ("apt-get install dataset-fashion-mnist", "make data", "online",
                  "fashion_mnist.load_data()", str(tmp_path / "keras_home"), str(tmp_path / "debian")):
        assert words in message

    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "home"))
    with pytest.raises(data.DatasetMissing):
        data.load_fashion_mnist()


def test_the_data_command_prints_its_help(capsys):
    with pytest.raises(SystemExit) as done:
        data.main(["--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: python -m autograder data") and "fashion_mnist.load_data()" in printed


def test_notebook_loader_explains_how_to_get_missing_data():
    source = _cell(_read(assign.SOURCE), "demo_load_data").source

    def offline():
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    fake_keras = types.SimpleNamespace(
        datasets=types.SimpleNamespace(fashion_mnist=types.SimpleNamespace(load_data=offline)))
    with pytest.raises(RuntimeError) as failure:
        exec(source, {"keras": fake_keras, "np": np, "N_TRAIN": 10, "N_VAL": 10})  # noqa: S102
    message = str(failure.value)
    # what a student can do where they are: students have no course repository (its `make data` is
    # the instructor's way, in README.md and data.py's message)
    for words in ("internet access", 'python -c "import keras; keras.datasets.fashion_mnist.load_data()"',
                  "~/.keras/datasets/fashion-mnist", "KERAS_HOME", *data.FILES.values(),
                  "apt-get install dataset-fashion-mnist", str(data.DEBIAN_DIR)):
        assert words in message, words
    assert "make data" not in message and "repository" not in message


def test_the_introductions_grading_table_is_the_registrys():
    intro = _cell(_read(assign.SOURCE), "intro").source
    rows = re.findall(r"^\| (\d+) \| (.+?) \| ([\d.]+) \|$", intro, re.M)
    assert [int(number) for number, _, _ in rows] == list(range(1, len(EXERCISES) + 1))
    for (_, what, points), exercise in zip(rows, EXERCISES, strict=True):
        assert float(points) == exercise.points, (what, exercise.id)
        if exercise.kind.value != "training":
            assert what.startswith(f"`{exercise.function}`"), (what, exercise.id)
    auto = sum(e.points for e in EXERCISES)
    assert f"**Grading ({auto + MANUAL_POINTS:g} points: {auto:g} autograded, {MANUAL_POINTS:g} for written answers " \
           "graded by a person)**" in intro
    written_row = re.findall(r"^\| W1–W(\d+) \| (.+?) \| ([\d.]+) \(([\d.]+) each\) \|$", intro, re.M)
    assert written_row == [(str(len(WRITTEN_ANSWERS)), written_row[0][1], f"{MANUAL_POINTS:g}",
                            f"{WRITTEN_ANSWERS[0].points:g}")] and "graded by a person" in written_row[0][1]
    assert all(w.points == WRITTEN_ANSWERS[0].points for w in WRITTEN_ANSWERS)
    for exercise in EXERCISES:   # each exercise's heading gives the same number and points
        number = EXERCISES.index(exercise) + 1
        heading = f"### Exercise {number} ({exercise.points:g} point{'s' if exercise.points != 1 else ''})"
        assert heading in "\n".join(c.source for c in _read(assign.SOURCE).cells), heading


def test_data_help_prints_its_usage_and_links_nothing(monkeypatch, capsys):
    monkeypatch.setattr(data, "provision", lambda: pytest.fail("--help linked the data"))
    with pytest.raises(SystemExit) as done:
        data.main(["--help"])
    assert done.value.code == 0 and "usage: python -m autograder data" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e.kind.value == "numpy"], ids=lambda e: e.id)
def test_each_exercises_table_lists_its_hidden_checks_points_in_order(exercise):
    """The "What the grader checks" table has one row per hidden check, in the check module's order,
    with its points (the check modules are the source of truth; the table states them)."""
    from autograder.check_catalogue import CHECKS_DIR
    number = EXERCISES.index(exercise) + 1
    instructions = _cell(_read(assign.SOURCE), f"exercise_{number}_instructions").source
    table = instructions[instructions.index("**What the grader checks"):]
    points = [float(p) for p in re.findall(r"^\|.*\| ([\d.]+) \|$", table, re.M)]
    module = (CHECKS_DIR / exercise.check_module).read_text(encoding="utf-8")
    markers = [float(p) for p in re.findall(r"^@pytest\.mark\.points\(([\d.]+)\)$", module, re.M)]
    assert points == markers, (exercise.id, points, markers)


# --------------------------------------------------------------------------------------------
# the whole solutions notebook in FAST mode: executed beside the module's other tests (fast_mode_run),
# checked last

@pytest.mark.slow
def test_solutions_notebook_runs_top_to_bottom_in_fast_mode(fast_mode_run):
    nb = nbformat.reads(fast_mode_run.result(), as_version=4)     # raised if a cell failed
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert "(FAST mode)" in _stream(code[0], "stdout"), "BN_ASSIGNMENT_FAST=1 did not shrink the budget"
    printed = "".join(_stream(cell, "stdout") for cell in code)
    for expected in ("Exercise 1: all visible tests passed", "Exercise 4: visible test passed",
                     "Exercise 7: all visible tests passed", "Exercise 9: all visible tests passed",
                     "Exercise 10: all visible tests passed",
                     "What this run measured", "with batch statistics", "momentum 0.9",
                     "precise BN (re-estimated)", "debiased moving averages", "of which the initial 1.0",
                     "BN's lead after one epoch over 2 seeds", "Adam learning rate", "_one_line is not written",
                     "variance of its BN input / epsilon", "group norm, 8 groups",
                     "manual_batch_norm vs layer(x, training=True)", "GroupNormalization(groups=1)",
                     "This kernel has been running for"):
        assert expected in printed, expected
