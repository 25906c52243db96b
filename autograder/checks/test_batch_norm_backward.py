"""batch_norm_backward(dout, x, gamma, epsilon=1e-5) -> (dx, dgamma, dbeta): BN's backward pass.

Specification: the gradients of manual_batch_norm's output (training mode: batch statistics,
biased variance, epsilon inside the square root) with respect to x, gamma and beta, given the
upstream gradient dout. x and dout are (N, F), or (N, H, W, C) with statistics per channel;
gamma is a scalar or per-feature; dx has x's shape, dgamma and dbeta have shape (F,) or (C,).
The float64 reference is reference.batch_norm_backward, itself tested against centred differences.

One property per check, each read from the quantity it is about (answers.py), so that a slip costs
the checks of its property and no other:
- the path through the batch mean: BN's output does not change when a constant is added to a
  feature, so dx sums to 0 over the batch, per feature, whatever the divisor (the message names
  the statistics treated as constants when the variance's path is missing too);
- the path through the batch variance: with epsilon=0 the output does not change when a feature is
  scaled, so sum(dx * (x - mean)) = 0 per feature;
  (these two, and the epsilon check, on a batch of mean 0 whose rows and columns are permutations
  of one vector: how x is centred and which axes the forward statistics use do not enter there;
  the sums' checks see those)
- dgamma = sum(dout * x_hat) and dbeta = sum(dout), per feature (epsilon=0);
- the sums per channel for (N, H, W, C) activations: dgamma and dbeta of shape (C,);
- the divisor and epsilon: for a dout with no part along 1 or along x - mean (along the batch and
  along the features), both paths carry nothing and dx = gamma * dout / sqrt(var + epsilon)
  (epsilon=0.01 on a variance of 0.01; the unbiased variance is the forward pass's slip, not this
  check's).
Sums are compared within 1e-5 of the sum of their terms' magnitudes, so a correct answer computed
in float32 passes. Named mistakes (known_mistakes.batch_norm_backward_mistakes) are recognised on
the same quantities.

Weights (4 points). The central mistake, the batch statistics treated as constants (dx = dout *
gamma / s), fails both dx-path checks: 1.0 + 1.0 = 2.0, half of the exercise. The variance path
dropped costs 1.0; dgamma without x_hat 0.5; sums over axis 0 only 0.5; epsilon ignored or outside
the square root 0.5; not float arrays 0.25; inputs modified 0.25. The side checks score when
the answer is substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "batch_norm_backward"
NAMES = ("dx", "dgamma", "dbeta")


def _noise(shape, seed=8):
    """An upstream gradient's random part (drawn apart from the activations' own noise)."""
    return np.random.default_rng(seed).normal(size=shape)


def _activations(shape, spread=10.0):
    """Features of different scales and offsets, so that a per-sample or unscaled formula shows. Their
    standard deviations (``spread`` to 8 * ``spread``) make an epsilon of 1e-5 negligible where a
    check passes epsilon=0: ignoring the epsilon argument is one check's slip, not every check's."""
    rng = np.random.default_rng(7)
    return (rng.normal(size=shape) * np.linspace(spread, 8 * spread, shape[-1])
            + np.linspace(-2.0, 3.0, shape[-1]) * spread)


def _call(call_arrays, dout, x, gamma, reads, **kwargs) -> answers.Answer:
    """The answer, checked to be one and to have the right shape for the parts ``reads`` (indices)."""
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, gamma, **kwargs))
    answers.require_an_answer(FUNCTION, answer, [dout, x, gamma])
    answers.require_shapes(FUNCTION, answer, (x.shape, x.shape[-1:], x.shape[-1:]), NAMES, reads)
    return answer


def _named(quantity, dout, x, gamma, epsilon):
    """{key: (description, quantity of that mistake's (dx, dgamma, dbeta))} for this call."""
    return {key: (description, quantity(*out))
            for key, (description, out) in known_mistakes.batch_norm_backward_mistakes(dout, x, gamma, epsilon).items()}


def _centred(x):
    return x - x.mean(axis=reference.feature_axes(x), keepdims=True)


def _latin_square(n, std):
    """An (n, n) batch of mean 0 whose every row and every column is a permutation of one vector of
    this (biased) std: per-feature, per-sample and all-element statistics coincide, and a mean of 0
    makes x - mean equal to x, so the dx checks do not depend on which axes the forward
    statistics are taken over nor on how x is centred (the sums' checks see those)."""
    values = np.linspace(-1.0, 1.0, n)
    values = values / values.std() * std
    return values[(np.arange(n)[:, None] + np.arange(n)[None, :]) % n]


def _without_statistics_paths(dout, x):
    """dout with its parts along 1 and along x - mean removed, along the batch and along the features
    (alternating projections onto the intersection): then both statistics' paths carry nothing,
    whichever of the two axes a reduction takes."""
    centred = x - x.mean(axis=0, keepdims=True)
    for _ in range(500):
        for axis in (0, 1):
            dout = dout - dout.mean(axis=axis, keepdims=True)
            dout = dout - centred * (dout * centred).sum(axis=axis, keepdims=True) / (centred * centred).sum(
                axis=axis, keepdims=True)
    return dout


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_dx_flows_through_the_batch_mean(call_arrays):
    """dx sums to 0 over the batch, per feature: the path through the batch mean."""
    x = _latin_square(8, std=20.0)
    dout, gamma = _noise(x.shape) + 1.5, np.linspace(0.5, 3.0, 8)
    dx = _call(call_arrays, dout, x, gamma, reads=(0,), epsilon=0.0).parts[0]
    right = reference.batch_norm_backward(dout, x, gamma, 0.0)[0]
    both = not answers.within((dx * _centred(x)).sum(axis=0), np.zeros(8), np.abs(right * _centred(x)).sum(axis=0))
    answers.compare(FUNCTION, dx.sum(axis=0), np.zeros(8),
                    prop="adding a constant to a feature does not change BN's output, so dx must sum to 0 over "
                         "the batch, per feature (the path through the batch mean)",
                    on="an (8, 8) batch of mean 0 with a dout of mean 1.5, epsilon=0", scale=np.abs(right).sum(axis=0),
                    named=_named(lambda dx, *_: dx.sum(axis=0), dout, x, gamma, 0.0),
                    focus=("constant_statistics",) if both else ("no_mean_path",))


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_dx_flows_through_the_batch_variance(call_arrays):
    """sum(dx * (x - mean)) = 0 per feature with epsilon=0: the path through the batch variance."""
    x = _latin_square(8, std=20.0)
    dout, gamma = _noise(x.shape) * 2.0 + x / 10.0, np.linspace(0.5, 3.0, 8)
    dx = _call(call_arrays, dout, x, gamma, reads=(0,), epsilon=0.0).parts[0]
    right = reference.batch_norm_backward(dout, x, gamma, 0.0)[0]
    both = not answers.within(dx.sum(axis=0), np.zeros(8), np.abs(right).sum(axis=0))
    answers.compare(FUNCTION, (dx * _centred(x)).sum(axis=0), np.zeros(8),
                    prop="with epsilon=0, scaling a feature does not change BN's output, so sum(dx * (x - mean)) "
                         "must be 0 per feature (the path through the batch variance)",
                    on="an (8, 8) batch of mean 0 with a dout that grows with x",
                    scale=np.abs(right * _centred(x)).sum(axis=0),
                    named=_named(lambda dx, *_: (dx * _centred(x)).sum(axis=0), dout, x, gamma, 0.0),
                    focus=("constant_statistics",) if both else ("no_variance_path",))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_dgamma_sums_dout_times_x_hat(call_arrays):
    """dgamma = sum(dout * x_hat) and dbeta = sum(dout), per feature; a scalar gamma is accepted."""
    x = _activations((16, 3))
    dout = _noise(x.shape) + 1.0
    answer = _call(call_arrays, dout, x, 2.0, reads=(1, 2), epsilon=0.0)
    x_hat = reference.batch_norm(x, epsilon=0.0)
    scale = np.concatenate([np.abs(dout * x_hat).sum(axis=0), np.abs(dout).sum(axis=0)])
    answers.compare(FUNCTION, np.concatenate(answer.parts[1:]), np.concatenate([(dout * x_hat).sum(axis=0),
                                                                              dout.sum(axis=0)]),
                    prop="dgamma must be sum(dout * x_hat) and dbeta sum(dout), per feature "
                         "(shown: dgamma, then dbeta)",
                    on="a (16, 3) batch with gamma=2.0, epsilon=0", scale=scale,
                    named=_named(lambda dx, dgamma, dbeta: np.concatenate([dgamma, dbeta]), dout, x, 2.0, 0.0),
                    focus=("dgamma_without_x_hat",))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_conv_activations_sum_per_channel(call_arrays):
    """For (N, H, W, C) activations dgamma and dbeta sum over axes (0, 1, 2), one per channel."""
    x = _activations((4, 3, 3, 2))
    dout, gamma = _noise(x.shape) + x / 10.0, np.array([1.5, 0.5])
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, gamma, epsilon=0.0))
    answers.require_an_answer(FUNCTION, answer, [dout, x, gamma])
    mistakes = known_mistakes.batch_norm_backward_mistakes(dout, x, gamma, 0.0)
    if len(answer.parts) == 3 and answer.parts[1].shape == x.shape[1:]:
        answers.fail_with_mistake(FUNCTION, "batch_axis_only", mistakes)   # whatever dx is: dgamma over axis 0 only
    answer = _call(call_arrays, dout, x, gamma, reads=(1, 2), epsilon=0.0)
    axes = (0, 1, 2)
    x_hat = reference.batch_norm(x, epsilon=0.0)
    scale = np.concatenate([np.abs(dout * x_hat).sum(axis=axes), np.abs(dout).sum(axis=axes)])
    answers.compare(FUNCTION, np.concatenate(answer.parts[1:]),
                    np.concatenate([(dout * x_hat).sum(axis=axes), dout.sum(axis=axes)]),
                    prop="for (N, H, W, C) activations dgamma and dbeta must sum over N, H and W, one value per "
                         "channel (shown: dgamma, then dbeta)", on="(4, 3, 3, 2) activations, epsilon=0", scale=scale)


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_uses_the_epsilon_it_is_given(call_arrays):
    """dx = gamma * dout / sqrt(var + epsilon) for a dout the statistics' paths ignore, epsilon=0.01."""
    x = _latin_square(8, std=0.1)                                # variance 0.01, of the order of epsilon
    # one gamma for all features, so that dout * gamma keeps dout's zero means along both axes
    dout, gamma = _without_statistics_paths(_noise(x.shape) + x * 10.0, x), np.full(8, 1.5)
    dx = _call(call_arrays, dout, x, gamma, reads=(0,), epsilon=0.01).parts[0]
    if answers.within(dx, gamma * dout / np.sqrt(x.var(axis=0, ddof=1) + 0.01)):
        return      # the unbiased variance: the forward pass's slip, not epsilon's
    answers.compare(FUNCTION, dx, gamma * dout / np.sqrt(x.var(axis=0) + 0.01),
                    prop="for a dout with no part along 1 or x - mean both statistics' paths carry nothing, so dx "
                         "must be gamma * dout / sqrt(var + epsilon), epsilon inside the square root and the value "
                         "given", on="an (8, 8) batch of variance 0.01 with epsilon=0.01",
                    scale=np.abs(gamma * dout / np.sqrt(x.var(axis=0) + 0.01)),
                    named=_named(lambda dx, *_: dx, dout, x, gamma, 0.01), focus=("fixed_epsilon",))


MAIN_CHECKS = (test_dx_flows_through_the_batch_mean, test_dx_flows_through_the_batch_variance,
               test_dgamma_sums_dout_times_x_hat, test_conv_activations_sum_per_channel,
               test_uses_the_epsilon_it_is_given)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_float_arrays(call_arrays):
    """Returns (dx, dgamma, dbeta) as floating-point NumPy arrays."""
    x = _activations((8, 5))
    answer = answers.Answer.of(call_arrays(FUNCTION, _noise(x.shape), x, np.linspace(0.5, 1.5, 5)))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_arrays)
    answers.assert_float_arrays(FUNCTION, answer, NAMES)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_leaves_its_inputs_unmodified(call_arrays):
    """Leaves dout, x and gamma as they were."""
    x = _activations((8, 3))
    dout, gamma = _noise(x.shape), np.array([1.0, 2.0, 3.0])
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, gamma))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_arrays)
    answers.assert_inputs_unmodified(FUNCTION, answer, [dout, x, gamma], ["dout", "x", "gamma"])
