"""Judging an answer: the reference, a named mistake, or no answer at all. Used by every check module.

No free points (the rule every check follows; README.md in this folder says how to apply it):
a check of a side property (shape, dtype, inputs left unmodified, honours its arguments) awards
its points only when the answer does the exercise's work: on that check's own input it equals
the float64 reference or one of the exercise's named mistakes (``require_the_work``), and for a
model builder the model has BatchNormalization (``require_batch_norm``). None, zeros, an input
returned unchanged or a constant array is not an answer: every check of the exercise fails,
saying so.

The property checks use ``assert_answer``: one check, one property. An answer passes when it
equals the reference, part by part, or where a part differs, when it equals the part of a named
mistake that another check is about (that mistake costs that check, not this one).
"""

from dataclasses import dataclass

import numpy as np
import pytest

from autograder import known_mistakes
from autograder.exercises import EXERCISES

RTOL = ATOL = 1e-5     # float64 reference vs the student's float64 (or float32) answer


class MistakeMade(AssertionError):
    """A check's failure that names a known mistake: the message is the mistake's description and
    ``code`` its machine-readable code (known_mistakes.mistake_code: "<exercise>.<key>"), which grading
    records as the row's "mistake"."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def fail_with_mistake(function, key, mistakes):
    """Fail the check with the named mistake ``key`` of ``function``'s table ``mistakes``."""
    exercise = next((e.id for e in EXERCISES if e.function == function and e.solution_cell), function)
    raise MistakeMade(mistakes[key][0], known_mistakes.mistake_code(exercise, key))


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


def _matches(part, want) -> bool:
    return known_mistakes.close(part, want, RTOL, ATOL)


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


def _fail_not_an_answer(function, why):
    pytest.fail(f"{function} {why}: that is not an answer, so none of {function}'s checks score "
                "(not even shape, dtype or inputs left unmodified)")


def known_parts(answer: Answer, expected, mistakes) -> bool:
    """Each part of ``answer`` equals the reference's or that part of a named mistake."""
    want = known_mistakes.as_parts(expected)
    wrong = [known_mistakes.as_parts(out) for _, out in mistakes.values()]
    return len(answer.parts) == len(want) and all(
        _matches(part, right) or any(_matches(part, w[i]) for w in wrong)
        for i, (part, right) in enumerate(zip(answer.parts, want, strict=True)))


def require_the_work(function, answer: Answer, expected, mistakes, inputs):
    """The gate of a side-property check: fail unless the answer does the exercise's work, i.e. each
    part is the reference's or a named mistake's on this check's input."""
    if known_parts(answer, expected, mistakes):
        return
    nothing = not_an_answer(answer, inputs)
    if nothing:
        _fail_not_an_answer(function, nothing)
    pytest.fail(f"on this check's input {function} returns neither the right result nor a known mistake, so "
                "this side property earns nothing; the exercise's other checks say what differs")


def require_batch_norm(function, layers):
    """The gate for a model builder: a model without BatchNormalization is not an answer."""
    if not any(layer.kind == "BatchNormalization" for layer in layers):
        _fail_not_an_answer(function, "returns a model without any BatchNormalization layer")


def assert_answer(function, answer: Answer, expected, mistakes, inputs, *, focus, names=("the output",)):
    """Pass when ``answer`` equals ``expected`` part by part, or where a part differs, equals that
    part of a mistake outside ``focus``. Fail naming the mistake of ``focus`` it makes, saying it
    is not an answer, or with the largest difference."""
    want = known_mistakes.as_parts(expected)
    parts = answer.parts
    if len(parts) != len(want):
        _fail_shape(function, answer, inputs, f"it returned {len(parts)} arrays; it must return "
                                              f"{len(want)}: {', '.join(names)}")
    differ = [i for i, (p, w) in enumerate(zip(parts, want, strict=True)) if not _matches(p, w)]
    if not differ:
        return
    why = not_an_answer(answer, inputs)
    if why:
        _fail_not_an_answer(function, why)
    for i in differ:
        made = [key for key, (_, out) in mistakes.items() if _matches(parts[i], known_mistakes.as_parts(out)[i])]
        if any(key not in focus for key in made):
            continue       # another check's mistake
        if made:
            fail_with_mistake(function, made[0], mistakes)
        name, part, right = names[i] if i < len(names) else f"part {i + 1}", parts[i], want[i]
        if part.shape != right.shape:
            pytest.fail(f"{name} has shape {part.shape}; it must have shape {right.shape}")
        if not np.all(np.isfinite(part)):
            pytest.fail(f"{name} contains NaN or inf")
        worst = np.max(np.abs(part - right))
        pytest.fail(f"{name} differs from the right result (largest difference {worst:.3g}, "
                    f"tolerance rtol = atol = {RTOL:g})")


def _fail_shape(function, answer, inputs, message):
    why = not_an_answer(answer, inputs)
    if why:
        _fail_not_an_answer(function, why)
    pytest.fail(message)


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
