"""group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3) -> np.ndarray: group normalization in NumPy.

Specification: x is (N, H, W, C) or (N, F); its C channels (the last axis) are split into
``groups`` consecutive blocks, as keras.layers.GroupNormalization lays them out: group k holds
channels k*C/G to (k+1)*C/G - 1. The mean and the biased variance are taken per sample and per
group, over H, W and the group's channels; then y = gamma * (x - mean) / sqrt(var + epsilon) +
beta with gamma and beta scalars or per channel. groups=1 is layer norm, groups=C instance norm.
Outputs are compared with the float64 reference (reference.group_norm, itself tested against
keras.layers.GroupNormalization) with rtol = atol = 1e-5.

The known mistakes (known_mistakes.group_norm_mistakes), each named by one check and accepted by the
others: statistics shared by the whole batch (the per-sample check, whose samples differ in
scale and offset); channels grouped by c mod G (the consecutive-groups check); the groups
ignored, i.e. statistics over all channels of a sample (the groups check, with groups=C and
groups=2); the unbiased variance (the (N, F) check, whose groups hold 2 values); the given
epsilon ignored (the epsilon check, epsilon=0.1 on groups whose variance is 0.02 to 0.06). The
side check (a float array) scores only when the answer is the reference or a known mistake.

Weights (3 points). The central mistake, statistics shared across the batch, fails the per-sample
check: 1.5, half of the exercise. The others cost one check each: interleaved groups 0.5; the
groups ignored 0.25; ddof=1 0.25; epsilon ignored 0.25; not a float array 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "group_norm"


def _rng():
    return np.random.default_rng(31)


def _judged(call_array, x, groups, **kwargs):
    """group_norm(x, groups, **kwargs) as an Answer, with the reference and the known mistakes for the same call."""
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": reference.KERAS_BN_EPSILON, **kwargs}
    answer = answers.Answer.of(call_array(FUNCTION, x, groups, **kwargs))
    return (answer, reference.group_norm(x, groups, **args), known_mistakes.group_norm_mistakes(x, groups, **args),
            [x, groups, *kwargs.values()])


def assert_group_norm(call_array, x, groups, *, focus, **kwargs):
    """The answer equals the reference, or a known mistake that is not among ``focus``."""
    answer, expected, mistakes, inputs = _judged(call_array, x, groups, **kwargs)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus=focus)


def _feature_maps(shape, rng):
    """Channels with different scales and offsets, so that which channels share a group shows."""
    channels = shape[-1]
    return rng.normal(size=shape) * np.linspace(0.5, 3.0, channels) + np.linspace(-4.0, 4.0, channels)


@pytest.mark.points(1.5)
def test_normalizes_each_sample_on_its_own(call_array):
    """Statistics per sample and group: samples of very different scale and offset do not share them."""
    rng = _rng()
    x = _feature_maps((4, 3, 3, 4), rng) * np.array([0.1, 1.0, 10.0, 3.0])[:, None, None, None] \
        + np.array([5.0, -2.0, 0.0, 20.0])[:, None, None, None]
    assert_group_norm(call_array, x, 2, focus={"batch_statistics"})


@pytest.mark.points(0.5)
def test_groups_consecutive_channels(call_array):
    """Group k holds channels k*C/G to (k+1)*C/G - 1 (6 channels, 3 groups), then per-channel gamma and beta."""
    x = _feature_maps((2, 3, 3, 6), _rng())
    gamma, beta = np.linspace(0.5, 3.0, 6), np.linspace(-1.0, 1.0, 6)
    assert_group_norm(call_array, x, 3, gamma=gamma, beta=beta, focus={"interleaved_groups"})


@pytest.mark.points(0.25)
def test_uses_the_groups_it_is_given(call_array):
    """groups=C is instance norm (each channel of each sample on its own), and groups=2 splits 4 channels in two."""
    x = _feature_maps((3, 2, 2, 4), _rng())
    assert_group_norm(call_array, x, 4, focus={"ignored_groups"})
    assert_group_norm(call_array, x, 2, focus={"ignored_groups"})


@pytest.mark.points(0.25)
def test_uses_the_biased_variance_on_dense_features(call_array):
    """An (N, F) input with groups of 2 features: the biased variance (ddof=0) tells apart from ddof=1."""
    x = _feature_maps((5, 8), _rng())
    assert_group_norm(call_array, x, 4, gamma=2.0, beta=-1.0, focus={"ddof1"})


@pytest.mark.points(0.25)
def test_uses_the_epsilon_it_is_given(call_array):
    """With epsilon=0.1 on groups whose variance is 0.02 to 0.06, the output uses that epsilon."""
    x = _feature_maps((3, 2, 2, 4), _rng()) * 0.1
    assert_group_norm(call_array, x, 2, epsilon=0.1, focus={"fixed_epsilon"})


@pytest.mark.points(0.25)
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is x's: the other checks compare it)."""
    x = _feature_maps((2, 2, 2, 4), _rng())
    answer, expected, mistakes, inputs = _judged(call_array, x, 2)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])
