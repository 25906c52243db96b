"""Visible never stricter than hidden, and the other way round: for each variant of an answer, "the grader
gives full marks" and "the visible test passes" agree.

Each variant is one function (the master's solution with one change, or a variant written out) with
one decision, taken once: accepted (both must give it everything) or rejected (both must refuse it).
The hidden side grades it with the exercise's check module on a small notebook in the sandboxed
worker (the other NumPy answers right, as in tests/test_numpy_checks.py, and imports; variants of
different functions share a notebook); the training check is not part of this (it trains). The visible side runs
the exercise's visible test cell, as released (hidden block stripped), in a plain Python process that
first runs the notebook's locked set-up cells (set-up, gradient checker, baseline model): that is
what a student's kernel holds when the test cell runs.
"""

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from autograder import assign
from autograder import synthetic_students as students
from autograder.exercises import BY_ID, Kind

from conftest import check_cells

pytestmark = pytest.mark.slow      # the visible tests import Keras (TensorFlow)

SOLUTIONS = students.solution_code()


@dataclass(frozen=True)
class Variant:
    name: str
    exercise: str
    code: str
    accepted: bool


def changed(exercise, old, new):
    """The master's solution of ``exercise`` with ``old`` replaced by ``new`` (which must be there)."""
    code = SOLUTIONS[BY_ID[exercise].function]
    assert old in code, f"{exercise}: {old!r} is no longer in the solution"
    return code.replace(old, new)


def accept(name, exercise, code):
    return Variant(name, exercise, code, True)


def reject(name, exercise, code):
    return Variant(name, exercise, code, False)


PRINTS = "\n    print('debugging:', {})"     # printing is allowed


def printing(exercise, first_line, shown):
    return changed(exercise, first_line, first_line + PRINTS.format(shown))


# --- the NumPy exercises ---------------------------------------------------------------------------

ONE_LINE_BACKWARD = """def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    s = np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / s
    dx = gamma / (m * s) * (m * dout - dout.sum(axis=axes, keepdims=True)
                            - x_hat * (dout * x_hat).sum(axis=axes, keepdims=True))
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
"""

MOVING_IN_PLACE = """def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    moving_mean *= momentum
    moving_mean += (1 - momentum) * batch_mean
    moving_var *= momentum
    moving_var += (1 - momentum) * batch_var
    return moving_mean, moving_var
"""

INFERENCE_IN_PLACE = """def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    x -= moving_mean
    x /= np.sqrt(moving_var + epsilon)
    return gamma * x + beta
"""

NUMPY_VARIANTS = [
    accept("manual: prints", "manual_batch_norm",
           printing("manual_batch_norm", "x = np.asarray(x, dtype=np.float64)", "x.shape")),
    accept("manual: np.array copy", "manual_batch_norm",
           changed("manual_batch_norm", "x = np.asarray(x, dtype=np.float64)", "x = np.array(x, dtype=float)")),
    accept("manual: epsilon honoured, written out", "manual_batch_norm",
           changed("manual_batch_norm", "x_hat = (x - mean) / np.sqrt(var + epsilon)",
                   "std = (var + epsilon) ** 0.5\n    x_hat = (x - mean) / std")),
    reject("manual: epsilon fixed at 1e-5", "manual_batch_norm",
           changed("manual_batch_norm", "np.sqrt(var + epsilon)", "np.sqrt(var + 1e-5)")),
    reject("manual: per sample", "manual_batch_norm",
           changed("manual_batch_norm", "axes = tuple(range(x.ndim - 1))", "axes = tuple(range(1, x.ndim))")),
    reject("manual: ddof=1", "manual_batch_norm",
           changed("manual_batch_norm", "var = x.var(axis=axes, keepdims=True)",
                   "var = x.var(axis=axes, keepdims=True, ddof=1)")),
    reject("manual: gamma and beta ignored", "manual_batch_norm",
           changed("manual_batch_norm", "return np.asarray(gamma) * x_hat + np.asarray(beta)", "return x_hat")),
    reject("manual: a list, not an array", "manual_batch_norm",
           changed("manual_batch_norm", "return np.asarray(gamma) * x_hat + np.asarray(beta)",
                   "return (np.asarray(gamma) * x_hat + np.asarray(beta)).tolist()")),

    accept("backward: a list for the tuple", "batch_norm_backward",
           changed("batch_norm_backward", "return dx, dgamma, dbeta", "return [dx, dgamma, dbeta]")),
    accept("backward: prints", "batch_norm_backward",
           printing("batch_norm_backward", "x = np.asarray(x, dtype=np.float64)", "x.shape")),
    accept("backward: the one-line version", "batch_norm_backward", ONE_LINE_BACKWARD),
    accept("backward: float32", "batch_norm_backward",
           changed("batch_norm_backward", "dout = np.asarray(dout, dtype=np.float64)\n"
                   "    x = np.asarray(x, dtype=np.float64)\n    gamma = np.asarray(gamma, dtype=np.float64)",
                   "dout = np.asarray(dout, dtype=np.float32)\n"
                   "    x = np.asarray(x, dtype=np.float32)\n    gamma = np.asarray(gamma, dtype=np.float32)")),
    reject("backward: epsilon fixed at 1e-5", "batch_norm_backward",
           changed("batch_norm_backward", "s = np.sqrt(var + epsilon)", "s = np.sqrt(var + 1e-5)")),
    reject("backward: constant statistics", "batch_norm_backward",
           changed("batch_norm_backward", "dx = dd + dmu / m", "dx = dx_hat / s")),
    reject("backward: no variance path", "batch_norm_backward",
           changed("batch_norm_backward", "dd = dx_hat / s + dvar * 2 * d / m", "dd = dx_hat / s")),
    reject("backward: gamma ignored in dx", "batch_norm_backward",
           changed("batch_norm_backward", "dx_hat = dout * gamma", "dx_hat = dout")),

    accept("moving: a list for the tuple", "update_moving_statistics",
           changed("update_moving_statistics", "return new_mean, new_var", "return [new_mean, new_var]")),
    accept("moving: prints", "update_moving_statistics",
           changed("update_moving_statistics", "return new_mean, new_var",
                   "print('debugging:', momentum)\n    return new_mean, new_var")),
    reject("moving: swapped convention", "update_moving_statistics",
           students._MOVING_TEMPLATE.format(keep="1 - momentum")),
    reject("moving: momentum fixed at 0.99", "update_moving_statistics",
           students._MOVING_TEMPLATE.format(keep="0.99")),
    reject("moving: the moving statistics updated in place", "update_moving_statistics", MOVING_IN_PLACE),

    accept("inference: prints", "batch_norm_inference",
           printing("batch_norm_inference", "x = np.asarray(x, dtype=np.float64)", "x.shape")),
    reject("inference: epsilon fixed at 1e-3", "batch_norm_inference",
           changed("batch_norm_inference", "dtype=np.float64) + epsilon)", "dtype=np.float64) + 1e-3)")),
    reject("inference: the batch's own statistics", "batch_norm_inference",
           students._inference(statistics="x.mean(axis=tuple(range(x.ndim - 1))), "
                                          "x.var(axis=tuple(range(x.ndim - 1)))")),
    reject("inference: x changed in place", "batch_norm_inference", INFERENCE_IN_PLACE),
    reject("inference: a list, not an array", "batch_norm_inference",
           changed("batch_norm_inference",
                   "return np.asarray(gamma, dtype=np.float64) * x_hat + np.asarray(beta, dtype=np.float64)",
                   "return (np.asarray(gamma, dtype=np.float64) * x_hat "
                   "+ np.asarray(beta, dtype=np.float64)).tolist()")),

    accept("debiased: prints", "debiased_moving_statistic",
           printing("debiased_moving_statistic", "moving = np.asarray(moving, dtype=np.float64)", "steps")),
    accept("debiased: no np.asarray", "debiased_moving_statistic",
           "def debiased_moving_statistic(moving, initial, momentum, steps):\n"
           "    return (moving - momentum ** steps * initial) / (1 - momentum ** steps)\n"),
    reject("debiased: Adam's correction alone", "debiased_moving_statistic",
           changed("debiased_moving_statistic", "return (moving - left * initial) / (1 - left)",
                   "return moving / (1 - left)")),
    accept("debiased: what is left of the start, by a loop", "debiased_moving_statistic",
           "def debiased_moving_statistic(moving, initial, momentum, steps):\n"
           "    left = 1.0\n"
           "    for _ in range(steps):\n"
           "        left = momentum * left\n"
           "    return (np.asarray(moving) - left * np.asarray(initial)) / (1 - left)\n"),
    reject("debiased: not renormalized", "debiased_moving_statistic",
           changed("debiased_moving_statistic", "return (moving - left * initial) / (1 - left)",
                   "return moving - left * initial")),
    reject("debiased: momentum**(steps - 1)", "debiased_moving_statistic",
           changed("debiased_moving_statistic", "left = momentum ** steps", "left = momentum ** (steps - 1)")),
    reject("debiased: momentum fixed at 0.99", "debiased_moving_statistic",
           changed("debiased_moving_statistic", "left = momentum ** steps", "left = 0.99 ** steps")),

    accept("population: a list for the tuple", "population_statistics",
           changed("population_statistics", "return mean, var", "return [mean, var]")),
    accept("population: prints", "population_statistics",
           changed("population_statistics", "return mean, var", "print('debugging:', mean)\n    return mean, var")),
    reject("population: averaged variances", "population_statistics",
           changed("population_statistics", "(variances + (means - mean) ** 2)", "variances")),
    reject("population: the paper's Algorithm 2", "population_statistics",
           students.STUDENTS["population_algorithm_2"].answers["population_statistics"]),
    reject("population: the batches not weighted by their sizes", "population_statistics",
           changed("population_statistics", "weights = weights / weights.sum()",
                   "weights = np.ones_like(weights) / len(weights)")),
    reject("population: lists, not arrays", "population_statistics",
           changed("population_statistics", "return mean, var", "return mean.tolist(), var.tolist()")),

    accept("group: prints", "group_norm",
           printing("group_norm", "x = np.asarray(x, dtype=np.float64)", "x.shape")),
    accept("group: a loop over samples", "group_norm",
           "def group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3):\n"
           "    x = np.asarray(x, dtype=np.float64)\n"
           "    out = np.empty_like(x)\n"
           "    size = x.shape[-1] // groups\n"
           "    for n in range(x.shape[0]):\n"
           "        for k in range(groups):\n"
           "            block = x[n, ..., k * size:(k + 1) * size]\n"
           "            out[n, ..., k * size:(k + 1) * size] = "
           "(block - block.mean()) / np.sqrt(block.var() + epsilon)\n"
           "    return gamma * out + beta\n"),
    accept("group: the epsilon given, in float32", "group_norm",      # the tests' epsilons differ from 1e-3
           changed("group_norm", "x_hat = ((grouped - mean) / np.sqrt(var + epsilon))",
                   "x_hat = ((grouped - mean).astype(np.float32) * (var + epsilon).astype(np.float32) ** -0.5)")),
    reject("group: epsilon fixed at 1e-3", "group_norm",
           changed("group_norm", "np.sqrt(var + epsilon)", "np.sqrt(var + 1e-3)")),
    reject("group: statistics shared across the batch", "group_norm", students._group(
        axes="tuple(range(0, grouped.ndim - 2)) + (grouped.ndim - 1,)")),
    reject("group: interleaved groups", "group_norm", students._group(
        shape="*x.shape[:-1], c // groups, groups", axes="tuple(range(1, grouped.ndim - 1))")),
    reject("group: the groups ignored", "group_norm", students._group(shape="*x.shape[:-1], 1, c")),
    reject("group: gamma and beta ignored", "group_norm",
           changed("group_norm",
                   "return np.asarray(gamma, dtype=np.float64) * x_hat + np.asarray(beta, dtype=np.float64)",
                   "return x_hat")),
    accept("group backward: a list for the tuple", "group_norm_backward",
           changed("group_norm_backward", "return dx.reshape(x.shape), dgamma, dbeta",
                   "return [dx.reshape(x.shape), dgamma, dbeta]")),
    accept("group backward: prints", "group_norm_backward",
           printing("group_norm_backward", "x = np.asarray(x, dtype=np.float64)", "x.shape")),
    accept("group backward: the formula written in means", "group_norm_backward", students._group_backward()),
    accept("group backward: float32", "group_norm_backward",
           changed("group_norm_backward", "dout = np.asarray(dout, dtype=np.float64)\n"
                   "    x = np.asarray(x, dtype=np.float64)\n    gamma = np.asarray(gamma, dtype=np.float64)",
                   "dout = np.asarray(dout, dtype=np.float32)\n"
                   "    x = np.asarray(x, dtype=np.float32)\n    gamma = np.asarray(gamma, dtype=np.float32)")),
    reject("group backward: constant statistics", "group_norm_backward",
           changed("group_norm_backward", "dx = dd + dmu / m", "dx = dx_hat / s")),
    reject("group backward: no variance path", "group_norm_backward",
           changed("group_norm_backward", "dd = dx_hat / s + dvar * 2 * d / m", "dd = dx_hat / s")),
    reject("group backward: epsilon fixed at 1e-3", "group_norm_backward",
           changed("group_norm_backward", "s = np.sqrt(var + epsilon)", "s = np.sqrt(var + 1e-3)")),
    reject("group backward: ddof=1", "group_norm_backward",
           students.STUDENTS["gn_backward_ddof1"].answers["group_norm_backward"]),
    reject("group backward: statistics over the batch", "group_norm_backward",
           students.STUDENTS["gn_backward_batch_statistics"].answers["group_norm_backward"]),
    reject("group backward: interleaved groups", "group_norm_backward",
           students.STUDENTS["gn_backward_interleaved_groups"].answers["group_norm_backward"]),
    reject("group backward: sums per group", "group_norm_backward",
           students.STUDENTS["gn_backward_sums_per_group"].answers["group_norm_backward"]),
    reject("group backward: gamma ignored in dx", "group_norm_backward",
           changed("group_norm_backward", "dx_hat = (dout * gamma).reshape(shape)", "dx_hat = dout.reshape(shape)")),
    reject("group backward: x centred in place", "group_norm_backward",
           changed("group_norm_backward", "d = grouped - mu", "grouped -= mu\n    d = grouped")),
    reject("group backward: group_norm's output as dx", "group_norm_backward",
           "def group_norm_backward(dout, x, groups, gamma, epsilon=1e-3):\n"
           "    g = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)\n"
           "    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)\n"
           "    x_hat = ((g - g.mean(axis=axes, keepdims=True)) / np.sqrt(g.var(axis=axes, keepdims=True) + epsilon))\n"
           "    x_hat = x_hat.reshape(x.shape)\n"
           "    sums = tuple(range(x.ndim - 1))\n"
           "    return gamma * x_hat, (dout * x_hat).sum(axis=sums), dout.sum(axis=sums)\n"),
]


# --- the model builders --------------------------------------------------------------------------

def with_bn(conv="keras.layers.Conv2D(filters, 3)", relu='keras.layers.Activation("relu")', head=None,
            between="", after_pooling="", after_flatten="", sequential_blocks=False):
    """build_model_with_bn written out, with one part replaced."""
    head = head or 'outputs = keras.layers.Dense(num_classes, activation="softmax")(x)'
    if sequential_blocks:
        body = (f"        x = keras.Sequential([{conv}, keras.layers.BatchNormalization(), {relu}])(x)\n"
                "        x = keras.layers.MaxPooling2D(2)(x)\n")
    else:
        body = (f"        x = {conv}(x)\n{between}"
                "        x = keras.layers.BatchNormalization()(x)\n"
                f"        x = {relu}(x)\n"
                "        x = keras.layers.MaxPooling2D(2)(x)\n")
    body += after_pooling
    return ("def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):\n"
            "    inputs = keras.Input(shape=input_shape)\n"
            "    x = inputs\n"
            "    for filters in (32, 64):\n" + body +
            "    x = keras.layers.Flatten()(x)\n" + after_flatten +
            f"    {head}\n"
            "    return keras.Model(inputs, outputs)\n")


def modern(conv='keras.layers.Conv2D(filters, 3, padding="same")', relu='keras.layers.Activation("relu")',
           head=None, after_block="", between="", sequential_blocks=False,
           pooling="keras.layers.GlobalAveragePooling2D()",
           rates=(0.2, 0.3)):
    """build_modern_cnn written out, with one part replaced."""
    head = head or 'outputs = keras.layers.Dense(num_classes, activation="softmax")(x)'
    if sequential_blocks:
        block = (f"        return keras.Sequential([{conv}, keras.layers.BatchNormalization(), {relu}])(x)\n")
    else:
        block = (f"        x = {conv}(x)\n{between}"
                 "        x = keras.layers.BatchNormalization()(x)\n"
                 f"        x = {relu}(x)\n{after_block}"
                 "        return x\n")
    return ("def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):\n"
            "    def block(x, filters):\n" + block +
            "    inputs = keras.Input(shape=input_shape)\n"
            "    x = inputs\n"
            f"    for filters, rate in ((32, {rates[0]}), (64, {rates[1]})):\n"
            "        x = block(x, filters)\n"
            "        x = block(x, filters)\n"
            "        x = keras.layers.MaxPooling2D(2)(x)\n"
            "        if rate:\n"
            "            x = keras.layers.Dropout(rate)(x)\n"
            "    x = block(x, 128)\n"
            f"    x = {pooling}(x)\n"
            "    x = keras.layers.Dropout(0.5)(x)\n"
            f"    {head}\n"
            "    return keras.Model(inputs, outputs)\n")


SEPARATE_SOFTMAX = "outputs = keras.layers.Softmax()(keras.layers.Dense(num_classes)(x))"
SOFTMAX_ACTIVATION = 'outputs = keras.layers.Activation("softmax")(keras.layers.Dense(num_classes)(x))'
DROPOUT_BETWEEN = "        x = keras.layers.Dropout(0.1)(x)\n"

MODEL_VARIANTS = [
    accept("with_bn: the solution written out", "build_model_with_bn", with_bn()),
    accept("with_bn: ReLU as a layer", "build_model_with_bn", with_bn(relu="keras.layers.ReLU()")),
    accept("with_bn: use_bias=False", "build_model_with_bn",
           with_bn(conv="keras.layers.Conv2D(filters, 3, use_bias=False)")),
    accept("with_bn: nested Sequential blocks", "build_model_with_bn", with_bn(sequential_blocks=True)),
    accept("with_bn: a separate Softmax layer", "build_model_with_bn", with_bn(head=SEPARATE_SOFTMAX)),
    accept("with_bn: Activation('softmax')", "build_model_with_bn", with_bn(head=SOFTMAX_ACTIVATION)),
    accept("with_bn: prints", "build_model_with_bn",
           with_bn().replace("    inputs = keras.Input",
                             "    print('building', input_shape)\n    inputs = keras.Input")),
    accept("with_bn: a Sequential model", "build_model_with_bn",
           "def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):\n"
           "    layers = keras.layers\n"
           "    return keras.Sequential([keras.Input(shape=input_shape),\n"
           "        layers.Conv2D(32, 3), layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2),\n"
           "        layers.Conv2D(64, 3), layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2),\n"
           "        layers.Flatten(), layers.Dense(num_classes, activation='softmax')])\n"),
    reject("with_bn: ReLU(max_value=6)", "build_model_with_bn", with_bn(relu="keras.layers.ReLU(max_value=6.0)")),
    reject("with_bn: ReLU(negative_slope=0.1)", "build_model_with_bn",
           with_bn(relu="keras.layers.ReLU(negative_slope=0.1)")),
    reject("with_bn: LeakyReLU", "build_model_with_bn", with_bn(relu="keras.layers.LeakyReLU()")),
    reject("with_bn: Conv(relu) -> BN", "build_model_with_bn",
           with_bn(conv='keras.layers.Conv2D(filters, 3, activation="relu")')),
    reject("with_bn: a Dropout between Conv and BN", "build_model_with_bn", with_bn(between=DROPOUT_BETWEEN)),
    # Exercise 3 accepts no layer the baseline lacks but BN and ReLU (Exercise 4 compares BN alone)
    reject("with_bn: an extra Dropout", "build_model_with_bn",
           with_bn(after_flatten="    x = keras.layers.Dropout(0.25)(x)\n")),
    reject("with_bn: Dropout(0.5) after each pooling and after Flatten", "build_model_with_bn",
           with_bn(after_pooling="        x = keras.layers.Dropout(0.5)(x)\n",
                   after_flatten="    x = keras.layers.Dropout(0.5)(x)\n")),
    reject("with_bn: a Rescaling layer", "build_model_with_bn",
           with_bn(after_flatten="    x = keras.layers.Rescaling(1.0)(x)\n")),
    reject("with_bn: logits out", "build_model_with_bn", with_bn(head="outputs = keras.layers.Dense(num_classes)(x)")),
    reject("with_bn: a Lambda layer", "build_model_with_bn",
           with_bn(after_flatten="    x = keras.layers.Lambda(lambda t: t)(x)\n")),
    reject("with_bn: padding 'same'", "build_model_with_bn",
           with_bn(conv='keras.layers.Conv2D(filters, 3, padding="same")')),

    accept("modern: the solution written out", "build_modern_cnn", modern()),
    accept("modern: ReLU as a layer", "build_modern_cnn", modern(relu="keras.layers.ReLU()")),
    accept("modern: use_bias=False", "build_modern_cnn",
           modern(conv='keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)')),
    accept("modern: nested Sequential blocks", "build_modern_cnn", modern(sequential_blocks=True)),
    accept("modern: an extra Dropout in every block", "build_modern_cnn",
           modern(after_block="        x = keras.layers.Dropout(0.1)(x)\n")),
    accept("modern: a separate Softmax layer", "build_modern_cnn", modern(head=SEPARATE_SOFTMAX)),
    accept("modern: prints", "build_modern_cnn",
           modern().replace("    inputs = keras.Input",
                            "    print('building', input_shape)\n    inputs = keras.Input")),
    reject("modern: ReLU(max_value=6)", "build_modern_cnn", modern(relu="keras.layers.ReLU(max_value=6.0)")),
    reject("modern: Flatten instead of global average pooling", "build_modern_cnn",
           modern(pooling="keras.layers.Flatten()")),
    reject("modern: the first Dropout left out", "build_modern_cnn", modern(rates=(0, 0.3))),
    reject("modern: a Dropout between Conv and BN", "build_modern_cnn", modern(between=DROPOUT_BETWEEN)),
    reject("modern: logits out", "build_modern_cnn", modern(head="outputs = keras.layers.Dense(num_classes)(x)")),
]

VARIANTS = NUMPY_VARIANTS + MODEL_VARIANTS


# --- the hidden side --------------------------------------------------------------------------------

def batches(variants) -> list:
    """The variants in groups with at most one per function: each group is graded as one notebook."""
    groups = []
    for variant in variants:
        group = next((g for g in groups if all(v.exercise != variant.exercise for v in g)), None)
        if group is None:
            groups.append([variant])
        else:
            group.append(variant)
    return groups


def hidden_results(tmp_path, group) -> dict:
    """{variant name: (full marks?, the failed checks' messages)}: the group's check modules on one small
    notebook in the sandboxed worker (the other NumPy answers right; a model builder with just imports)."""
    code = dict(students.NUMPY_RIGHT)
    code.update({BY_ID[v.exercise].function: v.code for v in group})
    run, checked = check_cells(tmp_path, ["import numpy as np\nimport keras", *code.values()],
                               sorted({v.exercise for v in group}))
    rows = [row.to_dict() for row in checked]
    assert rows and run.findings.fault is None, f"the grader failed ({run.findings.fault})"
    results = {}
    for variant in group:
        mine = [row for row in rows if row["exercise"] == variant.exercise]
        score = sum(row["points"] for row in mine)
        results[variant.name] = (score == BY_ID[variant.exercise].points,
                                 [f"{r['id']}: {r['message']}" for r in mine if not r["passed"]])
    return results


# --- the visible side -------------------------------------------------------------------------------

RUNNER = r'''
import contextlib, io, json, sys, traceback
jobs = json.load(sys.stdin)
setup = jobs.pop("setup")
base = {}
with contextlib.redirect_stdout(io.StringIO()):
    exec(setup, base)
results = {}
for name, (code, test) in jobs.items():
    namespace = dict(base)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
            exec(test, namespace)
        results[name] = [True, ""]
    except Exception as error:
        results[name] = [False, f"{type(error).__name__}: {error}"[:600]]
print("RESULTS " + json.dumps(results))
'''


def visible_passes(variants) -> dict:
    """{variant name: (passed, message)} from the exercises' visible test cells, in one fresh Python."""
    nb = assign.solutions_notebook(keep_nbgrader_metadata=True)
    by_id = {cell.metadata.get("nbgrader", {}).get("grade_id", ""): cell.source for cell in nb.cells}
    setup = "\n\n".join(by_id[cell_id] for cell_id in ("setup", "gradient_checker", "given_model_without_bn"))
    jobs = {"setup": setup}
    for variant in variants:
        jobs[variant.name] = (variant.code, by_id[BY_ID[variant.exercise].test_cell])
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(jobs), capture_output=True, text=True,
                          timeout=1200, env=assign.kernel_env(fast=True))
    line = next((printed for printed in done.stdout.splitlines() if printed.startswith("RESULTS ")), None)
    assert line, f"the visible tests did not run:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return {name: tuple(result) for name, result in json.loads(line[len("RESULTS "):]).items()}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """(hidden, visible) for every variant. The groups are graded two at a time, each in a fresh
    Python (a grader process of its own, as grade-class has), while the visible tests' Python runs
    beside them: the three take about what the hidden side alone took one group at a time."""
    with ThreadPoolExecutor(1) as visible_side, \
            ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as hidden_side:
        visible = visible_side.submit(visible_passes, VARIANTS)
        groups = sorted(batches(VARIANTS), key=len, reverse=True)
        graded = [hidden_side.submit(hidden_results, tmp_path_factory.mktemp("hidden"), group) for group in groups]
        hidden = {}
        for group in graded:
            hidden.update(group.result())
        return hidden, visible.result()


def test_the_variants_cover_every_graded_function_both_ways():
    covered = {v.exercise for v in VARIANTS}
    assert covered == {e.id for e in BY_ID.values() if e.kind is not Kind.TRAINING}
    for exercise in covered:
        decisions = {v.accepted for v in VARIANTS if v.exercise == exercise}
        assert decisions == {True, False}, exercise
    assert len({v.name for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_the_visible_test_agrees_with_the_grader(verdicts, variant):
    hidden, visible = verdicts
    full_marks, failures = hidden[variant.name]
    passed, message = visible[variant.name]
    decision = "accepted" if variant.accepted else "rejected"
    assert full_marks == variant.accepted, f"the grader: {decision} was decided, but {failures or 'full marks'}"
    assert passed == variant.accepted, f"the visible test: {decision} was decided, but {message or 'it passes'}"
