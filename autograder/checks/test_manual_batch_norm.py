"""manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5): batch normalization in NumPy.

Specification: statistics over every axis but the last, biased variance, epsilon inside the
square root, gamma and beta scalars or per-feature arrays, the input left unmodified, an array
of the input's shape out. Outputs are compared with the float64 reference (reference.batch_norm)
with rtol = atol = 1e-5.

Each check is about one property. A wrong answer fails the check whose property it breaks and
is named when it matches a known mistake (known_mistakes.batch_norm_mistakes); the other checks accept
the known mistakes that are not theirs, so one mistake costs the points of one check. The side
checks (input unmodified, a float array) score only when the output is batch normalization or a
known mistake of it: None, zeros, x itself or a constant earns nothing (answers.py).

Weights (3 points). The central mistake, statistics per sample instead of per feature over the
batch, fails the two normalization checks: 1.0 + 0.5 = 1.5, half of the exercise. The others cost
one check each: all elements at once 1.0; per position or NCHW axes 0.5; gamma and beta swapped
or left out 0.5; ddof=1 0.25; epsilon outside the square root, left out or ignored when given
(the check passes epsilon=1.0) 0.25; x modified in place 0.25; not a float array 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "manual_batch_norm"


def _rng():
    return np.random.default_rng(2024)


def _judged(call_array, x, **kwargs):
    """manual_batch_norm(x, **kwargs) as an Answer, with the reference and the known mistakes for the same call."""
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": 1e-5, **kwargs}
    answer = answers.Answer.of(call_array(FUNCTION, x, **kwargs))
    return (answer, reference.batch_norm(x, **args), known_mistakes.batch_norm_mistakes(x, **args),
            [x, *kwargs.values()])


def assert_batch_norm(call_array, x, *, focus, **kwargs):
    """The answer equals the reference, or a known mistake that is not among ``focus``."""
    answer, expected, mistakes, inputs = _judged(call_array, x, **kwargs)
    value = answer.parts[0]
    if value.shape == x.shape and not np.all(np.isfinite(value)) and "no_epsilon" in focus \
            and np.any(x.std(axis=reference.feature_axes(x)) == 0):
        raise answers.MistakeMade("the output contains NaN for a feature with variance 0: epsilon left out; "
                                  "divide by sqrt(var + epsilon)", known_mistakes.mistake_code(FUNCTION, "no_epsilon"))
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus=focus)


@pytest.mark.points(1.0)
def test_normalizes_each_feature_over_the_batch(call_array):
    """Normalizes each feature of an (N, F) batch with that feature's own mean and variance."""
    scales = np.array([1.0, 10.0, 100.0, 0.5, 1000.0])
    x = _rng().normal(size=(64, 5)) * scales + np.array([0.0, -5.0, 50.0, 3.0, 1000.0])
    assert_batch_norm(call_array, x, focus={"per_sample", "all_elements"})


@pytest.mark.points(0.5)
def test_applies_per_feature_gamma_and_beta(call_array):
    """Scales by gamma and shifts by beta, per feature."""
    x = _rng().normal(size=(16, 3)) * 3.0 + 2.0
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    assert_batch_norm(call_array, x, gamma=gamma, beta=beta, focus={"gamma_beta_swapped", "no_scale_shift"})


@pytest.mark.points(0.25)
def test_uses_the_biased_variance(call_array):
    """Uses the biased variance (ddof=0), which a batch of 4 tells apart from ddof=1."""
    x = _rng().normal(size=(4, 3)) * np.array([1.0, 2.0, 4.0])
    assert_batch_norm(call_array, x, gamma=2.0, beta=-1.0, focus={"ddof1"})


@pytest.mark.points(0.25)
def test_adds_epsilon_inside_the_square_root(call_array):
    """Divides by sqrt(var + epsilon) with the epsilon it is given: epsilon=1.0 and constant features tell."""
    rng = _rng()
    x = np.stack([rng.normal(size=8) * 2.0, np.full(8, 7.0), 3.0 + 0.01 * rng.normal(size=8)], axis=1)
    assert_batch_norm(call_array, x, epsilon=1.0, focus={"eps_outside_sqrt", "no_epsilon", "fixed_epsilon"})


@pytest.mark.points(0.5)
def test_normalizes_conv_activations_per_channel(call_array):
    """Normalizes (N, H, W, C) conv activations per channel, over batch and both spatial axes."""
    rng = _rng()
    trend = np.linspace(-3.0, 3.0, 5)[None, :, None, None] + np.linspace(0.0, 2.0, 5)[None, None, :, None]
    x = rng.normal(size=(6, 5, 5, 3)) * np.array([1.0, 5.0, 0.5]) + trend * np.array([1.0, 2.0, -1.0])
    gamma, beta = np.array([0.5, 2.0, 3.0]), np.array([0.0, 1.0, -1.0])
    assert_batch_norm(call_array, x, gamma=gamma, beta=beta, focus={"per_position", "nchw", "per_sample"})


@pytest.mark.points(0.25)
def test_leaves_its_input_unmodified(call_array):
    """Leaves the caller's array as it was."""
    x = _rng().normal(size=(10, 4)) * 5.0 + 3.0
    answer, expected, mistakes, inputs = _judged(call_array, x)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, [x], ["x"])


@pytest.mark.points(0.25)
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is the input's: the other checks compare it)."""
    x = _rng().normal(size=(7, 4)) * 2.0 - 1.0
    answer, expected, mistakes, inputs = _judged(call_array, x)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])
