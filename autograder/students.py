"""Synthetic students: the released notebook answered correctly, with one common mistake, or badly.

The demo class and the project's tests are built from these, so every mistake the hidden checks
claim to recognise is also a submission that is graded end to end.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .assign import REPO_ROOT, RELEASE, solutions_notebook
from .exercises import grade_id, nbgrader_metadata

RELEASE_NOTEBOOK = REPO_ROOT / RELEASE


def solution_code() -> dict:
    """{grade_id: code} of every solution cell in the master notebook, markers stripped."""
    master = solutions_notebook(keep_nbgrader_metadata=True)
    return {grade_id(c): c.source for c in master.cells if nbgrader_metadata(c).get("solution")}


# --- answers with one mistake each -------------------------------------------------------------

_BN_TEMPLATE = '''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    x = np.asarray(x, dtype=np.float64)
    axes = {axes}
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True{ddof})
    return gamma * (x - mean) / {denominator} + beta
'''


def _bn(axes="tuple(range(x.ndim - 1))", ddof="", denominator="np.sqrt(var + epsilon)"):
    return _BN_TEMPLATE.format(axes=axes, ddof=ddof, denominator=denominator)


BN_IN_PLACE = '''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    axes = tuple(range(x.ndim - 1))
    x -= x.mean(axis=axes, keepdims=True)          # changes the caller's array
    x /= np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)
    return gamma * x + beta
'''

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
    Student("bn_per_sample", "statistics over axis=1", {"manual_batch_norm": _bn(axes="1")}),
    Student("bn_all_elements", "statistics over all elements", {"manual_batch_norm": _bn(axes="None")}),
    Student("bn_per_position", "statistics over axis 0 only", {"manual_batch_norm": _bn(axes="0")}),
    Student("bn_nchw", "statistics over NCHW axes on 4-D input",
            {"manual_batch_norm": _bn(axes="(0,) if x.ndim == 2 else (0, 2, 3)")}),
    Student("bn_in_place", "modifies its input", {"manual_batch_norm": BN_IN_PLACE}),
    Student("old_placement", "Conv(relu) -> BN, the old placement", {"build_model_with_bn": OLD_PLACEMENT}),
    Student("no_bn", "returns the model without BN", {"build_model_with_bn": NO_BN_AT_ALL}),
    Student("lambda_layer", "a Lambda layer in the BN model", {"build_model_with_bn": LAMBDA_LAYER}),
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
)}


def build_notebook(student: Student):
    """The notebook ``student`` hands in, built from the committed release and the master's solutions."""
    release = nbformat.read(RELEASE_NOTEBOOK, as_version=4)
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


def write_submission(student: Student, path: Path) -> Path:
    """Write what ``student`` hands in to ``path`` (a notebook, or the raw bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if student.raw:
        path.write_bytes(student.raw)
    else:
        path.write_text(json.dumps(build_notebook(student), indent=1), encoding="utf-8")
    return path
