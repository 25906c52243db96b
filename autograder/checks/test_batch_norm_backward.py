"""batch_norm_backward(dout, x, gamma, epsilon=1e-5) -> (dx, dgamma, dbeta): BN's backward pass.

Specification: the gradients of manual_batch_norm's output (training mode: batch statistics,
biased variance, epsilon inside the square root) with respect to x, gamma and beta, given the
upstream gradient dout. x and dout are (N, F), or (N, H, W, C) with statistics per channel;
gamma is a scalar or per-feature; dx has x's shape, dgamma and dbeta have shape (F,) or (C,).
Each of the three is compared with the float64 reference (reference.batch_norm_backward, itself
tested against centred differences) with rtol = atol = 1e-5.

One property per check. The known mistakes (known_mistakes.batch_norm_backward_mistakes) are each
named by the checks whose property they break and accepted by the others: the batch mean and
variance treated as constants (both dx checks: the mean-path check, whose dout is chosen so that
the variance path carries nothing, and the variance-path check), the variance path dropped,
dgamma without x_hat, sums over the batch axis only for conv activations, and epsilon ignored
(the check passes epsilon=0.01 on features whose variance is 0.005 to 0.06). The side checks
(float arrays, inputs unmodified) score only when the answer is the reference or a known mistake
(answers.py).

Weights (4 points). The central mistake, the batch statistics treated as constants (dx = dout *
gamma / s), fails both dx checks: 1.0 + 1.0 = 2.0, half of the exercise. The others cost one
check each: the variance path dropped 1.0; dgamma without x_hat 0.5; sums over axis 0 only 0.5;
epsilon ignored 0.5; not float arrays 0.25; inputs modified 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "batch_norm_backward"
NAMES = ("dx", "dgamma", "dbeta")


def _rng():
    return np.random.default_rng(7)


def _activations(shape):
    """Features of different scales and offsets, so that a per-sample or unscaled formula shows."""
    rng = _rng()
    return rng.normal(size=shape) * np.linspace(0.5, 4.0, shape[-1]) + np.linspace(-2.0, 3.0, shape[-1])


def _judged(call_arrays, dout, x, gamma, **kwargs):
    """batch_norm_backward(dout, x, gamma, **kwargs) as an Answer, with the reference and the known
    mistakes for the same call."""
    epsilon = kwargs.get("epsilon", reference.PAPER_BN_EPSILON)
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, gamma, **kwargs))
    return (answer, reference.batch_norm_backward(dout, x, gamma, epsilon),
            known_mistakes.batch_norm_backward_mistakes(dout, x, gamma, epsilon), [dout, x, gamma])


def assert_backward(call_arrays, dout, x, gamma, *, focus, **kwargs):
    """(dx, dgamma, dbeta) equal the reference's, or a known mistake's that is not among ``focus``."""
    answer, expected, mistakes, inputs = _judged(call_arrays, dout, x, gamma, **kwargs)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus=focus, names=NAMES)


def _orthogonal_to_x_hat(dout, x):
    """dout with its component along x_hat removed per feature: then sum(dout * x_hat) = 0, so the
    path through the variance carries nothing, while mean(dout) != 0 keeps the mean path."""
    axes = reference.feature_axes(x)
    x_hat = reference.batch_norm(x)
    along = (dout * x_hat).sum(axis=axes, keepdims=True) / (x_hat * x_hat).sum(axis=axes, keepdims=True)
    return dout - along * x_hat


@pytest.mark.points(1.0)
def test_dx_flows_through_the_batch_mean(call_arrays):
    """dx includes the path through the batch mean (with a dout that the variance path ignores)."""
    x = _activations((32, 4))
    dout = _orthogonal_to_x_hat(_rng().normal(size=x.shape) + 1.5, x)
    assert_backward(call_arrays, dout, x, np.array([1.0, 2.0, 0.5, 3.0]), focus={"constant_statistics"})


@pytest.mark.points(1.0)
def test_dx_flows_through_the_batch_variance(call_arrays):
    """dx includes the path through the batch variance."""
    x = _activations((32, 4))
    dout = _rng().normal(size=x.shape) * 2.0 + x
    assert_backward(call_arrays, dout, x, np.array([1.0, 2.0, 0.5, 3.0]),
                    focus={"no_variance_path", "constant_statistics"})


@pytest.mark.points(0.5)
def test_dgamma_sums_dout_times_x_hat(call_arrays):
    """dgamma = sum(dout * x_hat) and dbeta = sum(dout), per feature; a scalar gamma is accepted."""
    x = _activations((16, 3))
    dout = _rng().normal(size=x.shape) + 1.0
    assert_backward(call_arrays, dout, x, 2.0, focus={"dgamma_without_x_hat"})


@pytest.mark.points(0.5)
def test_conv_activations_sum_per_channel(call_arrays):
    """For (N, H, W, C) activations the statistics and sums are per channel, over axes (0, 1, 2)."""
    x = _activations((4, 3, 3, 2))
    dout = _rng().normal(size=x.shape) + x
    answer, expected, mistakes, inputs = _judged(call_arrays, dout, x, np.array([1.5, 0.5]))
    if len(answer.parts) == 3 and answer.parts[1].shape == x.shape[1:] and not answers.not_an_answer(answer, inputs):
        answers.fail_with_mistake(FUNCTION, "batch_axis_only", mistakes)   # whatever dx is: dgamma over axis 0 only
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"batch_axis_only"}, names=NAMES)


@pytest.mark.points(0.5)
def test_uses_the_epsilon_it_is_given(call_arrays):
    """With epsilon=0.01 on features whose variance is 0.005 to 0.06, the gradients use that epsilon."""
    x = _activations((12, 3)) * np.array([0.1, 0.2, 0.3]) / np.array([0.5, 2.25, 4.0])   # std 0.1 to 0.3
    dout = _rng().normal(size=x.shape) + x * 10.0
    assert_backward(call_arrays, dout, x, np.array([1.5, 0.5, 2.0]), epsilon=0.01, focus={"fixed_epsilon"})


@pytest.mark.points(0.25)
def test_returns_float_arrays(call_arrays):
    """Returns (dx, dgamma, dbeta) as floating-point NumPy arrays (the other checks compare their shapes)."""
    x = _activations((8, 5))
    dout = _rng().normal(size=x.shape)
    answer, expected, mistakes, inputs = _judged(call_arrays, dout, x, np.linspace(0.5, 1.5, 5))
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_float_arrays(FUNCTION, answer, NAMES)


@pytest.mark.points(0.25)
def test_leaves_its_inputs_unmodified(call_arrays):
    """Leaves dout, x and gamma as they were."""
    x = _activations((8, 3))
    dout, gamma = _rng().normal(size=x.shape), np.array([1.0, 2.0, 3.0])
    answer, expected, mistakes, inputs = _judged(call_arrays, dout, x, gamma)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, inputs, ["dout", "x", "gamma"])
