"""Synthetic students: the released notebook answered correctly, with one common mistake, or badly.

The demo class and the project's tests are built from these, so every mistake the hidden checks
claim to recognise is also a submission that is graded end to end.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .assign import solutions_notebook
from .exercises import BY_ID, Kind, of_kind
from .notebook import grade_id, nbgrader_metadata, released_notebook


def solution_code() -> dict:
    """{grade_id: code} of every solution cell in the master notebook, markers stripped; a written
    answer's is its model answer without the mark scheme (what a student who answered well writes)."""
    master = solutions_notebook(keep_nbgrader_metadata=True, keep_mark_scheme=False)
    return {grade_id(c): c.source for c in master.cells if nbgrader_metadata(c).get("solution")}


# --- answers with one mistake each -------------------------------------------------------------

_BN_TEMPLATE = BY_ID["manual_batch_norm"].def_line + '''
    x = np.asarray(x, dtype=np.float64)
    axes = {axes}
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True{ddof})
    return gamma * (x - mean) / {denominator} + beta
'''


def _bn(axes="tuple(range(x.ndim - 1))", ddof="", denominator="np.sqrt(var + epsilon)"):
    return _BN_TEMPLATE.format(axes=axes, ddof=ddof, denominator=denominator)


BN_IN_PLACE = BY_ID["manual_batch_norm"].def_line + '''
    axes = tuple(range(x.ndim - 1))
    x -= x.mean(axis=axes, keepdims=True)          # changes the caller's array
    x /= np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)
    return gamma * x + beta
'''

_BACKWARD_TEMPLATE = BY_ID["batch_norm_backward"].def_line + '''
    axes = {axes}
    mean = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(x.var(axis=axes, keepdims=True) + {epsilon})
    x_hat = (x - mean) / std
    dx_hat = dout * gamma
    dx = {dx}
    return dx, {dgamma}, dout.sum(axis=axes)
'''
_BACKWARD_DX = ("(dx_hat - dx_hat.mean(axis=axes, keepdims=True)\n"
                "          - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / std")


def _backward(axes="tuple(range(x.ndim - 1))", dx=_BACKWARD_DX, dgamma="(dout * x_hat).sum(axis=axes)",
              epsilon="epsilon"):
    return _BACKWARD_TEMPLATE.format(axes=axes, dx=dx, dgamma=dgamma, epsilon=epsilon)


_MOVING_TEMPLATE = BY_ID["update_moving_statistics"].def_line + '''
    keep = {keep}
    return keep * moving_mean + (1 - keep) * batch_mean, keep * moving_var + (1 - keep) * batch_var
'''
MOVING_SWAPPED = _MOVING_TEMPLATE.format(keep="1 - momentum      # PyTorch's convention: momentum weighs the batch")


_INFERENCE_TEMPLATE = BY_ID["batch_norm_inference"].def_line + '''
    mean, var = {statistics}
    return gamma * (x - mean) / {denominator} + beta
'''


def _inference(statistics="moving_mean, moving_var", denominator="np.sqrt(var + epsilon)"):
    return _INFERENCE_TEMPLATE.format(statistics=statistics, denominator=denominator)


_POPULATION_TEMPLATE = BY_ID["population_statistics"].def_line + '''
    weights = {weights}
    mean = weights @ batch_means
    var = weights @ {within}
    return mean, var
'''


def _population(weights="batch_sizes / batch_sizes.sum()", within="(batch_vars + (batch_means - mean) ** 2)"):
    return _POPULATION_TEMPLATE.format(weights=weights, within=within)


_DEBIASED_TEMPLATE = BY_ID["debiased_moving_statistic"].def_line + '''
    moving, initial = np.asarray(moving, dtype=np.float64), np.asarray(initial, dtype=np.float64)
    left = momentum ** {power}
    return {expression}
'''


def _debiased(power="steps", expression="(moving - left * initial) / (1 - left)"):
    return _DEBIASED_TEMPLATE.format(power=power, expression=expression)


_GROUP_TEMPLATE = BY_ID["group_norm"].def_line + '''
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    grouped = x.reshape({shape})
    axes = {axes}
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, keepdims=True{ddof})
    x_hat = ((grouped - mean) / np.sqrt(var + {epsilon})).reshape(x.shape)
    return gamma * x_hat + beta
'''


def _group(shape="*x.shape[:-1], groups, c // groups", axes="tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)",
           ddof="", epsilon="epsilon"):
    return _GROUP_TEMPLATE.format(shape=shape, axes=axes, ddof=ddof, epsilon=epsilon)


_GROUP_BACKWARD_TEMPLATE = BY_ID["group_norm_backward"].def_line + '''
    x, dout = np.asarray(x, dtype=np.float64), np.asarray(dout, dtype=np.float64)
    c = x.shape[-1]
    shape = ({shape})
    grouped = x.reshape(shape)
    axes = {axes}
    mean = grouped.mean(axis=axes, keepdims=True)
    std = {denominator}
    x_hat = (grouped - mean) / std
    dx_hat = (dout * gamma).reshape(shape)
    dx = ({dx}).reshape(x.shape)
    x_hat = x_hat.reshape(x.shape)
    return dx, {sums}
'''
_GROUP_BACKWARD_DX = ("(dx_hat - dx_hat.mean(axis=axes, keepdims=True)\n"
                      "          - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / std")
_PER_CHANNEL_SUMS = "(dout * x_hat).sum(axis=tuple(range(x.ndim - 1))), dout.sum(axis=tuple(range(x.ndim - 1)))"


def _group_backward(shape="*x.shape[:-1], groups, c // groups",
                    axes="tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)",
                    denominator="np.sqrt(grouped.var(axis=axes, keepdims=True) + epsilon)", dx=_GROUP_BACKWARD_DX,
                    sums=_PER_CHANNEL_SUMS):
    return _GROUP_BACKWARD_TEMPLATE.format(shape=shape, axes=axes, denominator=denominator, dx=dx, sums=sums)


# The NumPy exercises answered right from the same templates: the tests grade the NumPy checks on
# small notebooks of these (a mistake student changes one of them), without the whole assignment.
NUMPY_RIGHT = {
    "manual_batch_norm": _bn(),
    "batch_norm_backward": _backward(),
    "update_moving_statistics": _MOVING_TEMPLATE.format(keep="momentum"),
    "batch_norm_inference": _inference(),
    "debiased_moving_statistic": _debiased(),
    "population_statistics": _population(),
    "group_norm": _group(),
    "group_norm_backward": _group_backward(),
}


# --- answers that do no work: they must earn nothing (no free points) --------------------------

RETURNS_ZEROS = {
    "manual_batch_norm": "np.zeros_like(x)",
    "batch_norm_backward": "np.zeros_like(x), np.zeros(x.shape[-1]), np.zeros(x.shape[-1])",
    "update_moving_statistics": "np.zeros_like(moving_mean), np.zeros_like(moving_var)",
    "batch_norm_inference": "np.zeros_like(x)",
    "debiased_moving_statistic": "np.zeros_like(np.asarray(moving, dtype=np.float64))",
    "population_statistics": "np.zeros(batch_means.shape[1]), np.zeros(batch_means.shape[1])",
    "group_norm": "np.zeros_like(x)",
    "group_norm_backward": "np.zeros_like(x), np.zeros(x.shape[-1]), np.zeros(x.shape[-1])",
}
RETURNS_INPUT = {
    "manual_batch_norm": "x",
    "batch_norm_backward": "dout, np.zeros(x.shape[-1]), np.zeros(x.shape[-1])",
    "update_moving_statistics": "moving_mean, moving_var",
    "batch_norm_inference": "x",
    "debiased_moving_statistic": "moving",
    "population_statistics": "batch_means, batch_vars",
    "group_norm": "x",
    "group_norm_backward": "dout, np.zeros(x.shape[-1]), np.zeros(x.shape[-1])",
}


def returning(expressions: dict) -> dict:
    """{function: code} for NumPy functions that return these expressions (None when given None)."""
    return {e.function: f"{e.def_line}\n    return {expressions.get(e.function)}\n" for e in of_kind(Kind.NUMPY)}


OLD_PLACEMENT = '''def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(num_classes, activation="softmax"),
    ])
'''

NO_BN_AT_ALL = '''def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    return build_model_without_bn(input_shape, num_classes)
'''

EXTRA_DROPOUT = '''def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.25)(x)           # a layer the baseline lacks
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''

LAMBDA_LAYER = '''def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''

MODERN_FIXED_SHAPE = '''def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    inputs = keras.Input(shape=(32, 32, 3))            # ignores input_shape
    x = inputs
    for filters, rate in ((32, 0.2), (64, 0.3)):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Dropout(rate)(x)
    x = keras.layers.Conv2D(128, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))   # ignores num_classes
'''

MODERN_NO_DROPOUT = '''def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (32, 64):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(128, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


@dataclass(frozen=True)
class Student:
    name: str
    about: str
    answers: dict = field(default_factory=dict)   # {solution grade_id: code}; others keep the solution
    unanswered: bool = False                      # hand in the release as it is
    extra_cells: tuple = ()                       # (after grade_id, code): cells the student added
    raw: bytes = b""                              # hand in these bytes instead of a notebook


STUDENTS = {s.name: s for s in (
    Student("full_marks", "every exercise answered correctly"),
    Student("unanswered", "handed in the release without answering", unanswered=True),
    Student("bn_ddof1", "variance with ddof=1", {"manual_batch_norm": _bn(ddof=", ddof=1")}),
    Student("bn_eps_outside_sqrt", "epsilon outside the square root",
            {"manual_batch_norm": _bn(denominator="(np.sqrt(var) + epsilon)")}),
    Student("bn_no_epsilon", "epsilon left out", {"manual_batch_norm": _bn(denominator="np.sqrt(var)")}),
    Student("bn_per_sample", "statistics per sample, over every axis but the batch's",
            {"manual_batch_norm": _bn(axes="tuple(range(1, x.ndim))")}),
    Student("bn_all_elements", "statistics over all elements", {"manual_batch_norm": _bn(axes="None")}),
    Student("bn_per_position", "statistics over axis 0 only", {"manual_batch_norm": _bn(axes="0")}),
    Student("bn_nchw", "statistics over NCHW axes on 4-D input",
            {"manual_batch_norm": _bn(axes="(0,) if x.ndim == 2 else (0, 2, 3)")}),
    Student("bn_in_place", "modifies its input", {"manual_batch_norm": BN_IN_PLACE}),
    Student("old_placement", "Conv(relu) -> BN, the old placement", {"build_model_with_bn": OLD_PLACEMENT}),
    Student("no_bn", "returns the model without BN", {"build_model_with_bn": NO_BN_AT_ALL}),
    Student("lambda_layer", "a Lambda layer in the BN model", {"build_model_with_bn": LAMBDA_LAYER}),
    Student("extra_dropout", "an extra Dropout(0.25) after Flatten in the BN model",
            {"build_model_with_bn": EXTRA_DROPOUT}),
    Student("modern_fixed_shape", "ignores input_shape and num_classes",
            {"build_modern_cnn": MODERN_FIXED_SHAPE}),
    Student("modern_no_dropout", "leaves out the dropout layers", {"build_modern_cnn": MODERN_NO_DROPOUT}),
    Student("crashing", "a cell that raises at top level, and a function that raises",
            {"build_modern_cnn": 'def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):\n'
                                 '    raise ValueError("shapes do not match")\n'},
            extra_cells=(("manual_batch_norm", "undefined_name + 1"),)),
    Student("endless_loop", "an endless loop at top level in one cell",
            extra_cells=(("build_model_with_bn", "while True:\n    pass"),)),
    Student("corrupt", "a truncated file that is not valid JSON", raw=b'{"cells": [{"cell_type": "code", "sou'),
    Student("backward_constant_statistics", "backward pass with the batch mean and variance as constants",
            {"batch_norm_backward": _backward(dx="dx_hat / std")}),
    Student("backward_no_variance_path", "backward pass without the path through the variance",
            {"batch_norm_backward": _backward(dx="(dx_hat - dx_hat.mean(axis=axes, keepdims=True)) / std")}),
    Student("backward_no_mean_path", "backward pass without the path through the mean",
            {"batch_norm_backward": _backward(dx="(dx_hat - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) "
                                                 "/ std")}),
    Student("backward_dgamma_without_x_hat", "dgamma = sum(dout)",
            {"batch_norm_backward": _backward(dgamma="dout.sum(axis=axes)")}),
    Student("backward_batch_axis_only", "backward pass over axis 0 only for conv activations",
            {"batch_norm_backward": _backward(axes="0")}),
    Student("moving_swapped_momentum", "momentum on the batch (PyTorch's convention)",
            {"update_moving_statistics": MOVING_SWAPPED}),
    Student("inference_batch_statistics", "inference with the batch's own statistics",
            {"batch_norm_inference": _inference(statistics="x.mean(axis=tuple(range(x.ndim - 1))), "
                                                        "x.var(axis=tuple(range(x.ndim - 1)))")}),
    Student("inference_eps_outside_sqrt", "inference with epsilon outside the square root",
            {"batch_norm_inference": _inference(denominator="(np.sqrt(var) + epsilon)")}),
    Student("inference_var_as_std", "inference dividing by the variance",
            {"batch_norm_inference": _inference(denominator="(var + epsilon)")}),
    Student("population_averaged_variances", "the batch variances averaged, no between-batch term",
            {"population_statistics": _population(within="batch_vars")}),
    Student("population_unweighted", "batches averaged with equal weights",
            {"population_statistics": _population(weights="np.full(len(batch_sizes), 1 / len(batch_sizes))")}),
    Student("population_algorithm_2", "the paper's Algorithm 2: averages, and m / (m - 1) on the variances",
            {"population_statistics": BY_ID["population_statistics"].def_line + """
    m = batch_sizes.mean()
    return batch_means.mean(axis=0), m / (m - 1) * batch_vars.mean(axis=0)
"""}),
    Student("population_unbiased_union", "the union's variance divided by n - 1",
            {"population_statistics": _population().replace("    return mean, var", "    n = batch_sizes.sum()\n"
                                                            "    return mean, var * n / (n - 1)")}),
    Student("bn_fixed_epsilon", "epsilon 1e-5 whatever epsilon is given",
            {"manual_batch_norm": _bn(denominator="np.sqrt(var + 1e-5)")}),
    Student("backward_fixed_epsilon", "backward pass with epsilon 1e-5 whatever epsilon is given",
            {"batch_norm_backward": _backward(epsilon="1e-5")}),
    Student("inference_fixed_epsilon", "inference with epsilon 1e-3 whatever epsilon is given",
            {"batch_norm_inference": _inference(denominator="np.sqrt(var + 1e-3)")}),
    Student("debiased_adam_only", "Adam's bias correction alone: moving / (1 - momentum**steps)",
            {"debiased_moving_statistic": _debiased(expression="moving / (1 - left)")}),
    Student("debiased_not_renormalized", "the initial value's share subtracted, not renormalized",
            {"debiased_moving_statistic": _debiased(expression="moving - left * initial")}),
    Student("debiased_steps_minus_one", "momentum**(steps - 1)",
            {"debiased_moving_statistic": _debiased(power="(steps - 1)")}),
    Student("group_batch_statistics", "group norm with statistics shared across the batch",
            {"group_norm": _group(axes="tuple(range(0, grouped.ndim - 2)) + (grouped.ndim - 1,)")}),
    Student("group_interleaved", "channel c in group c mod groups",
            {"group_norm": _group(shape="*x.shape[:-1], c // groups, groups",
                                  axes="tuple(range(1, grouped.ndim - 1))")}),
    Student("group_ddof1", "group norm with the unbiased variance", {"group_norm": _group(ddof=", ddof=1")}),
    Student("group_ignored_groups", "group norm over all channels of a sample, whatever groups is",
            {"group_norm": _group(shape="*x.shape[:-1], 1, c")}),
    Student("group_fixed_epsilon", "group norm with epsilon 1e-3 whatever epsilon is given",
            {"group_norm": _group(epsilon="1e-3")}),
    Student("gn_backward_constant_statistics", "group norm's backward pass with the group statistics as constants",
            {"group_norm_backward": _group_backward(dx="dx_hat / std")}),
    Student("gn_backward_no_mean_path", "group norm's backward pass without the path through the mean",
            {"group_norm_backward": _group_backward(
                dx="(dx_hat - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / std")}),
    Student("gn_backward_no_variance_path", "group norm's backward pass without the path through the variance",
            {"group_norm_backward": _group_backward(dx="(dx_hat - dx_hat.mean(axis=axes, keepdims=True)) / std")}),
    Student("gn_backward_ddof1", "group norm's backward pass with the unbiased variance",
            {"group_norm_backward": _group_backward(
                denominator="np.sqrt(grouped.var(axis=axes, keepdims=True, ddof=1) + epsilon)")}),
    Student("gn_backward_eps_outside_sqrt", "group norm's backward pass with epsilon outside the square root",
            {"group_norm_backward": _group_backward(
                denominator="(np.sqrt(grouped.var(axis=axes, keepdims=True)) + epsilon)")}),
    Student("gn_backward_fixed_epsilon", "group norm's backward pass with epsilon 1e-3 whatever epsilon is given",
            {"group_norm_backward": _group_backward(
                denominator="np.sqrt(grouped.var(axis=axes, keepdims=True) + 1e-3)")}),
    Student("gn_backward_batch_statistics", "group norm's backward pass with statistics over the whole batch",
            {"group_norm_backward": _group_backward(axes="tuple(range(0, grouped.ndim - 2)) + (grouped.ndim - 1,)")}),
    Student("gn_backward_interleaved_groups", "group norm's backward pass with channel c in group c mod groups",
            {"group_norm_backward": _group_backward(shape="*x.shape[:-1], c // groups, groups",
                                                    axes="tuple(range(1, grouped.ndim - 1))")}),
    Student("gn_backward_ignored_groups", "group norm's backward pass over all channels of a sample",
            {"group_norm_backward": _group_backward(shape="*x.shape[:-1], 1, c")}),
    Student("gn_backward_sums_per_group", "group norm's dgamma and dbeta summed per group",
            {"group_norm_backward": _group_backward(
                sums="*(a.reshape(-1, groups, c // groups).sum(axis=(0, 2)) for a in (dout * x_hat, dout))")}),
    Student("gn_backward_sums_per_sample", "group norm's dgamma and dbeta summed over the statistics' axes",
            {"group_norm_backward": _group_backward(
                sums="*(a.reshape(shape).sum(axis=axes) for a in (dout * x_hat, dout))")}),
    Student("returns_none", "every NumPy function returns None", returning({})),
    Student("returns_zeros", "every NumPy function returns zeros", returning(RETURNS_ZEROS)),
    Student("returns_input", "every NumPy function returns its input unchanged", returning(RETURNS_INPUT)),
)}

# The class `python -m autograder demo` grades: one student per kind of outcome, each new mistake,
# the answers that earn nothing; the other manual_batch_norm mistakes are graded by the tests.
DEMO_CLASS = (
    "full_marks", "unanswered", "bn_ddof1", "bn_per_sample", "bn_in_place", "old_placement", "no_bn",
    "lambda_layer", "modern_fixed_shape", "crashing", "endless_loop", "corrupt",
    "backward_constant_statistics", "backward_no_variance_path", "backward_dgamma_without_x_hat",
    "backward_batch_axis_only", "moving_swapped_momentum", "inference_batch_statistics",
    "inference_eps_outside_sqrt", "inference_var_as_std", "population_averaged_variances",
    "population_unweighted", "bn_fixed_epsilon", "backward_fixed_epsilon", "inference_fixed_epsilon",
    "debiased_adam_only", "debiased_not_renormalized", "debiased_steps_minus_one", "group_batch_statistics",
    "group_interleaved", "group_ddof1", "group_ignored_groups", "group_fixed_epsilon",
    "gn_backward_constant_statistics", "gn_backward_no_variance_path", "gn_backward_batch_statistics",
    "gn_backward_sums_per_group", "returns_none", "returns_zeros", "returns_input",
)


def build_notebook(student: Student, course=None):
    """The notebook ``student`` hands in, built from the master's solutions and the release the grader
    uses (notebook.released_notebook: the course folder's ``course`` when given, or the working
    directory's, else this project's committed one)."""
    path = released_notebook(course)
    if path is None:
        raise FileNotFoundError("no released notebook (release/batchnorm/batchnorm.ipynb): run "
                                "`python -m autograder assign` first")
    release = nbformat.read(path, as_version=4)
    if student.unanswered:
        return release
    answers = {**solution_code(), **student.answers}
    cells = []
    for cell in release.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
        cells.append(cell)
        for after, code in student.extra_cells:
            if grade_id(cell) == after:
                cells.append(nbformat.v4.new_code_cell(code))
    release.cells = cells
    return release


def write_submission(student: Student, path: Path, course=None) -> Path:
    """Write what ``student`` hands in to ``path`` (a notebook, or the raw bytes), built on the release
    of the course folder ``course`` when it has one (build_notebook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if student.raw:
        path.write_bytes(student.raw)
    else:
        path.write_text(json.dumps(build_notebook(student, course), indent=1), encoding="utf-8")
    return path
