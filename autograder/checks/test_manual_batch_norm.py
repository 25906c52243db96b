"""manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5): batch normalization in NumPy.

Specification: statistics over every axis but the last, biased variance, epsilon inside the
square root, gamma and beta scalars or per-feature arrays, the input left unmodified, an array
of the input's shape out. Outputs are compared with the float64 reference with rtol = atol = 1e-5.

Each check is about one property. A wrong answer fails the check whose property it breaks and
is named when it matches a known mistake; the other checks accept the known mistakes that are
not theirs, so one mistake costs the points of one check.
"""

import numpy as np
import pytest

from autograder import reference

RTOL = ATOL = 1e-5
FUNCTION = "manual_batch_norm"


def _rng():
    return np.random.default_rng(2024)


def assert_batch_norm(answer, x, gamma, beta, epsilon, *, focus):
    """The answer equals the reference, or a known mistake that is not among ``focus``."""
    expected = reference.batch_norm(x, gamma, beta, epsilon)
    value = answer.value
    assert value.shape == expected.shape, (
        f"for an input of shape {x.shape} it returned shape {value.shape}; the output must have the "
        "input's shape (keep the statistics' axes with keepdims=True or let broadcasting do it)")
    if not np.all(np.isfinite(value)):
        if "no_epsilon" in focus and np.any(x.std(axis=tuple(range(x.ndim - 1))) == 0):
            pytest.fail("the output contains NaN for a feature with variance 0: epsilon left out; "
                        "divide by sqrt(var + epsilon)")
        pytest.fail("the output contains NaN or inf")
    if np.allclose(value, expected, rtol=RTOL, atol=ATOL):
        return
    others = set(reference.known_mistakes(x, gamma, beta, epsilon)) - set(focus)
    if reference.matching_mistake(value, x, gamma, beta, epsilon, among=others):
        return   # a mistake another check is about
    mistake = reference.matching_mistake(value, x, gamma, beta, epsilon, among=focus)
    if mistake:
        pytest.fail(reference.known_mistakes(x, gamma, beta, epsilon)[mistake][0])
    worst = np.max(np.abs(value - expected))
    pytest.fail(f"the output differs from batch normalization (largest difference {worst:.3g} "
                f"for an input of shape {x.shape})")


@pytest.mark.points(1.0)
def test_normalizes_each_feature_over_the_batch(call_array):
    """Normalizes each feature of an (N, F) batch with that feature's own mean and variance."""
    scales = np.array([1.0, 10.0, 100.0, 0.5, 1000.0])
    x = _rng().normal(size=(64, 5)) * scales + np.array([0.0, -5.0, 50.0, 3.0, 1000.0])
    answer = call_array(FUNCTION, x)
    assert_batch_norm(answer, x, 1.0, 0.0, 1e-5, focus={"per_sample", "all_elements"})


@pytest.mark.points(0.5)
def test_applies_per_feature_gamma_and_beta(call_array):
    """Scales by gamma and shifts by beta, per feature."""
    x = _rng().normal(size=(16, 3)) * 3.0 + 2.0
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    answer = call_array(FUNCTION, x, gamma=gamma, beta=beta)
    assert_batch_norm(answer, x, gamma, beta, 1e-5, focus={"gamma_beta_swapped", "no_scale_shift"})


@pytest.mark.points(0.5)
def test_uses_the_biased_variance(call_array):
    """Uses the biased variance (ddof=0), which a batch of 4 tells apart from ddof=1."""
    x = _rng().normal(size=(4, 3)) * np.array([1.0, 2.0, 4.0])
    answer = call_array(FUNCTION, x, gamma=2.0, beta=-1.0)
    assert_batch_norm(answer, x, 2.0, -1.0, 1e-5, focus={"ddof1"})


@pytest.mark.points(0.5)
def test_adds_epsilon_inside_the_square_root(call_array):
    """Divides by sqrt(var + epsilon): a large epsilon and constant features tell where it went."""
    rng = _rng()
    x = np.stack([rng.normal(size=8) * 2.0, np.full(8, 7.0), 3.0 + 0.01 * rng.normal(size=8)], axis=1)
    answer = call_array(FUNCTION, x, epsilon=1.0)
    assert_batch_norm(answer, x, 1.0, 0.0, 1.0, focus={"eps_outside_sqrt", "no_epsilon"})


@pytest.mark.points(1.0)
def test_normalizes_conv_activations_per_channel(call_array):
    """Normalizes (N, H, W, C) conv activations per channel, over batch and both spatial axes."""
    rng = _rng()
    trend = np.linspace(-3.0, 3.0, 5)[None, :, None, None] + np.linspace(0.0, 2.0, 5)[None, None, :, None]
    x = rng.normal(size=(6, 5, 5, 3)) * np.array([1.0, 5.0, 0.5]) + trend * np.array([1.0, 2.0, -1.0])
    gamma, beta = np.array([0.5, 2.0, 3.0]), np.array([0.0, 1.0, -1.0])
    answer = call_array(FUNCTION, x, gamma=gamma, beta=beta)
    assert_batch_norm(answer, x, gamma, beta, 1e-5, focus={"per_position", "nchw"})


@pytest.mark.points(0.25)
def test_leaves_its_input_unmodified(call_array):
    """Leaves the caller's array as it was."""
    x = _rng().normal(size=(10, 4)) * 5.0 + 3.0
    answer = call_array(FUNCTION, x)
    after = answer.args_after[0]
    assert after is not None and np.array_equal(after, x), (
        "manual_batch_norm changed its input x in place (e.g. x -= mean); compute on a copy or use "
        "x - mean, which makes a new array")


@pytest.mark.points(0.25)
def test_returns_a_float_array_of_the_input_shape(call_array):
    """Returns a floating-point NumPy array with the input's shape."""
    x = _rng().normal(size=(7, 2, 3, 4))
    answer = call_array(FUNCTION, x)
    assert answer.value.shape == x.shape, (
        f"for an input of shape {x.shape} it returned shape {answer.value.shape}; it must return the input's shape")
    assert answer.dtype.startswith("float"), (
        f"it returned a {answer.dtype}, not a floating-point NumPy array")
