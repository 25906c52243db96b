"""Judging an answer by property. Used by every NumPy check module.

One property per check (README.md in this folder): a check calls the student's function on inputs
chosen for its property, computes from what came back the one quantity the property is about
(each feature's output once its multiple of the centred feature is removed, the sum of dx over
the batch, the weight left on the initial value...), and compares it with the same quantity of the
float64 reference (``compare``). A slip in another property leaves that quantity as it is, so it
costs only its own property's check, whether or not any table names it. When the quantity fails,
the message names the property, the input, what was expected and what came back; when it equals
the same quantity of a named mistake the check is about, the message is that mistake's
description (``MistakeMade``, whose code results.json records).

No free points: a side property (a float array, inputs left unmodified) scores only when the
answer is substantive: it earns at least one of the exercise's main checks, or a main check
recognises one of the exercise's named mistakes in it (``require_a_main_check``). None, zeros,
an input returned unchanged or a constant array is not an answer: every check fails, saying so.

Tolerance: |got - want| <= RTOL * max(|want|, scale, 1) elementwise, where ``scale`` is the size of
what the quantity is made of (for a sum, the sum of its terms' magnitudes). A correct answer
computed in float32 meets it.
"""

from dataclasses import dataclass

import numpy as np
import pytest

from autograder import known_mistakes
from autograder.errors import StudentFault
from autograder.exercises import EXERCISES

RTOL = 1e-5     # relative to the larger of the quantity, the size of its terms, and 1


class MistakeMade(AssertionError):
    """A check's failure that names a known mistake: the message is the mistake's description and
    ``code`` its machine-readable code (known_mistakes.mistake_code: "<exercise>.<key>"), which grading
    records as the row's "mistake"."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def fail_with_mistake(function, key, mistakes):
    """Fail the check with the named mistake ``key`` of ``function``'s table ``mistakes``."""
    raise MistakeMade(mistakes[key][0], known_mistakes.mistake_code(_exercise(function), key))


@dataclass
class Answer:
    """What a student function returned, as plain float64 data: one part per returned array."""
    parts: tuple           # float64 arrays
    dtypes: tuple          # the dtype of each, as the worker saw it ("NoneType" for None)
    args_after: list       # each array argument after the call (None for scalars)

    @classmethod
    def of(cls, answer):
        """From the submission's ArrayAnswer (one array) or ArraysAnswer (a tuple of arrays)."""
        if hasattr(answer, "values"):
            return cls(tuple(answer.values), tuple(answer.dtypes), answer.args_after)
        return cls((answer.value,), (answer.dtype,), answer.args_after)


def not_an_answer(answer: Answer, inputs) -> str | None:
    """Why ``answer`` is no answer at all ("returns None", "returns zeros", ...), or None when it is
    something. Every part must be empty for it to be none: a tuple with one real part is an answer."""
    inputs = [np.asarray(a, np.float64) for a in inputs if isinstance(a, np.ndarray)]
    reasons = []
    for part, dtype in zip(answer.parts, answer.dtypes, strict=False):
        if dtype == "NoneType":
            reasons.append("returns None")
        elif any(part.shape == a.shape and np.array_equal(part, a) for a in inputs):
            reasons.append("returns its input unchanged")
        elif part.size and np.all(part == 0):
            reasons.append("returns zeros")
        elif part.size > 1 and np.all(part == part.flat[0]):
            reasons.append("returns a constant")
        else:
            return None
    return reasons[0] if reasons else "returns nothing"


class NotAnAnswer(AssertionError):
    """A check's failure because what came back is no answer at all (None, zeros, an input, a constant)."""


def _fail_not_an_answer(function, why, where=" on this check's input"):
    # said of this check's input only: an answer that is none on one input may earn other checks
    raise NotAnAnswer(f"{function} {why}{where}: that is not an answer, so this check earns nothing (a function "
                      "that gives no answer on any input earns nothing for the exercise, not even for a float array "
                      "or its inputs left unmodified)")


def tolerance(want, scale=0.0):
    """The largest difference allowed from ``want``, elementwise (see the module's docstring)."""
    return RTOL * np.maximum(np.maximum(np.abs(want), np.abs(scale)), 1.0)


def within(got, want, scale=0.0) -> bool:
    """``got`` has ``want``'s shape, is finite, and is within tolerance of it everywhere."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return got.shape == want.shape and bool(np.all(np.isfinite(got))) and bool(
        np.all(np.abs(got - want) <= tolerance(want, scale)))


def show(values, limit=4) -> str:
    """A small slice of an array for a message: its first few values, rounded."""
    flat = np.asarray(values, np.float64).ravel()
    shown = ", ".join(f"{v:.4g}" for v in flat[:limit])
    return f"[{shown}{', ...' if flat.size > limit else ''}]"


def require_an_answer(function, answer: Answer, inputs):
    """Fail the check, saying so, when ``answer`` is no answer at all (``not_an_answer``)."""
    why = not_an_answer(answer, inputs)
    if why:
        _fail_not_an_answer(function, why)


def require_shapes(function, answer: Answer, shapes, names=("the output",), reads=None):
    """Fail naming the part whose shape differs (or the count of parts) before any quantity is read;
    ``reads``: the indices of the parts whose shapes matter to the check (default: every part)."""
    if len(answer.parts) != len(shapes):
        pytest.fail(f"{function} returned {len(answer.parts)} arrays; it must return {len(shapes)}: "
                    + ", ".join(names))
    for i in range(len(shapes)) if reads is None else reads:
        if answer.parts[i].shape != tuple(shapes[i]):
            pytest.fail(f"{function}'s {names[i]} has shape {answer.parts[i].shape}; it must have shape "
                        f"{tuple(shapes[i])}")


def grouped(a, groups):
    """``a`` as (N, groups, values): each sample's groups of consecutive channels (Keras' layout),
    their values over H and W."""
    n, channels = a.shape[0], a.shape[-1]
    return a.reshape(n, -1, groups, channels // groups).transpose(0, 2, 1, 3).reshape(n, groups, -1)


def centred_groups(x, groups):
    """``grouped(x, groups)`` less each sample's group mean."""
    xs = grouped(x, groups)
    return xs - xs.mean(axis=-1, keepdims=True)


def output_like_x(call_array, function, x, *args, **kwargs) -> np.ndarray:
    """``function(x, *args, **kwargs)``'s output, checked to be an answer of x's shape (a
    normalization: manual_batch_norm, batch_norm_inference, group_norm)."""
    answer = Answer.of(call_array(function, x, *args, **kwargs))
    require_an_answer(function, answer, [x, *args, *kwargs.values()])
    require_shapes(function, answer, [x.shape])
    return answer.parts[0]


def per_feature(a) -> np.ndarray:
    """``a`` as (values, features): one column per feature (the last axis), its values over every other axis."""
    return np.moveaxis(a, -1, 0).reshape(a.shape[-1], -1).T


def best_multiple(centred, y, axis=0):
    """(factor, rest): the least-squares multiple of ``centred`` in ``y`` along ``axis`` (one factor
    per feature, per group...), and what is left of ``y`` once it is removed. A normalization's
    output is such a multiple of its centred input, whatever it divides by: ``rest`` is 0 then,
    and ``factor`` is what it divides by, inverted."""
    factor = (y * centred).sum(axis=axis, keepdims=True) / (centred * centred).sum(axis=axis, keepdims=True)
    return np.squeeze(factor, axis=axis), y - factor * centred


def normalized_values(call_array, function, x, *args, **kwargs) -> np.ndarray:
    """A normalization's output with gamma=1 and beta=0 (the defaults), its normalized values. An
    answer that swaps gamma and beta returns a constant then: its normalized values are those it
    gives for gamma=0, beta=1 (whether gamma and beta are applied right is their own check's property)."""
    value = Answer.of(call_array(function, x, *args, **kwargs)).parts[0]
    if value.shape == x.shape and value.size > 1 and np.all(value == value.flat[0]):
        swapped = Answer.of(call_array(function, x, *args, gamma=0.0, beta=1.0, **kwargs))
        if not not_an_answer(swapped, [x]) and swapped.parts[0].shape == x.shape:
            return swapped.parts[0]
    return output_like_x(call_array, function, x, *args, **kwargs)


def compare(function, got, want, *, prop, on, scale=0.0, named=None, focus=()):
    """Pass when the quantity ``got`` equals ``want`` within tolerance. Otherwise fail with the named
    mistake of ``focus`` whose same quantity ``got`` equals (``named``: {key: (description, quantity)};
    ``focus`` is a tuple, the first that matches names it), or with ``prop`` (what the property
    requires, e.g. "each feature's output is a multiple of the centred feature"), the input ``on``,
    and a slice of what was expected and what came back."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if within(got, want, scale):
        return
    for key in focus:        # in the order given: the first that matches names the mistake
        if key in (named or {}) and within(got, named[key][1], scale):
            raise MistakeMade(named[key][0], known_mistakes.mistake_code(_exercise(function), key))
    if got.shape != want.shape:
        pytest.fail(f"{prop}: on {on} this quantity has shape {got.shape}, expected {want.shape}")
    if not np.all(np.isfinite(got)):
        pytest.fail(f"{prop}: on {on} it contains NaN or inf ({show(got)})")
    worst = float(np.max(np.abs(got - want)))
    pytest.fail(f"{prop}: on {on} expected {show(want)}, got {show(got)} (largest difference {worst:.3g}, "
                f"allowed {float(np.max(tolerance(want, scale))):.2g})")


def require_a_main_check(function, main_checks, *fixtures):
    """The gate of a side-property check: pass when the answer is substantive, i.e. it earns at least
    one of the exercise's main checks (each called with ``fixtures``, raising when its property
    fails) or one of them recognises a named mistake in it. Otherwise fail: with the not-an-answer message when
    that is why, else saying that the side property earns nothing."""
    nothing = None
    for check in main_checks:
        try:
            check(*fixtures)
            return
        except MistakeMade:
            return
        except NotAnAnswer as exc:
            nothing = nothing or exc
        except (AssertionError, pytest.fail.Exception, StudentFault):   # the student's verdicts; any other
            continue                                                    # exception is the grader's: it propagates
    if nothing:
        raise nothing.with_traceback(None)
    pytest.fail(f"{function} earns none of its main checks and makes none of its named mistakes, so this "
                "side property earns nothing; the main checks' messages say what differs")


def require_batch_norm(function, layers):
    """The gate for a model builder: a model without BatchNormalization is not an answer."""
    if not any(layer.kind == "BatchNormalization" for layer in layers):
        _fail_not_an_answer(function, "returns a model without any BatchNormalization layer", where="")


def _exercise(function) -> str:
    return next((e.id for e in EXERCISES if e.function == function and e.solution_cell), function)


def assert_inputs_unmodified(function, answer: Answer, inputs, names):
    """Each array argument is as it was before the call."""
    for name, before, after in zip(names, inputs, answer.args_after, strict=False):
        if isinstance(before, np.ndarray):
            assert after is not None and after.shape == before.shape and np.array_equal(after, before), (
                f"{function} changed its input {name} in place (e.g. {name} -= ...); compute on a copy "
                f"or use {name} - ..., which makes a new array")


def assert_float_arrays(function, answer: Answer, names):
    """Each returned part is a floating-point NumPy array (not a list, not integers)."""
    for name, dtype in zip(names, answer.dtypes, strict=False):
        assert dtype.startswith("float"), (
            f"{function} returned {name} as a {dtype}, not a floating-point NumPy array")


# --- rules the two model builders share (the notebook states each; its visible tests apply the same) ---

def relu_errors(layers) -> list:
    """Where a ReLU layer is not a plain ReLU: ReLU(max_value=...), a negative slope or a threshold
    make another non-linearity (ReLU6, leaky ReLU). Activation("relu") and ReLU() are both plain."""
    errors = []
    for layer in layers:
        if layer.kind != "ReLU":
            continue
        config = layer.config
        changed = {key: config[key] for key in ("max_value", "negative_slope", "threshold")
                   if config.get(key) not in (None, 0)}      # 0.0 == 0: the defaults are None, 0.0, 0.0
        if changed:
            errors.append("ReLU(" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ") is not a plain ReLU; "
                          "use keras.layers.ReLU() or keras.layers.Activation(\"relu\")")
    return errors


def softmax_output_error(layers) -> str | None:
    """Why the model's output is not class probabilities, or None: it must end in Dense(softmax), or a
    Dense without activation followed by a Softmax layer or Activation("softmax")."""
    if not layers:
        return "the model has no layers"
    last = layers[-1]
    if last.kind == "Dense" and last.config.get("activation") == "softmax":
        return None
    if (last.kind == "Softmax" or (last.kind == "Activation" and last.config.get("activation") == "softmax")) \
            and len(layers) > 1 and layers[-2].kind == "Dense" \
            and layers[-2].config.get("activation") in (None, "linear"):
        return None
    return (f"the model ends in {last.kind}"
            + (f"(activation={last.config.get('activation')!r})" if "activation" in last.config else "")
            + "; it must output class probabilities: end in Dense(num_classes, activation=\"softmax\"), or a "
              "Dense(num_classes) followed by keras.layers.Softmax() or Activation(\"softmax\")")
