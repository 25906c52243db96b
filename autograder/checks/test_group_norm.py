"""group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3) -> np.ndarray: group normalization in NumPy.

Specification: x is (N, H, W, C) or (N, F); its C channels (the last axis) are split into
``groups`` consecutive blocks, as keras.layers.GroupNormalization lays them out: group k holds
channels k*C/G to (k+1)*C/G - 1. The mean and the biased variance are taken per sample and per
group, over H, W and the group's channels; then y = gamma * (x - mean) / sqrt(var + epsilon) +
beta with gamma and beta scalars or per channel. groups=1 is layer norm, groups=C instance norm.
The float64 reference is reference.group_norm, itself tested against keras.layers.GroupNormalization.

One property per check, each read from the quantity it is about (answers.py):
- each sample on its own: a sample's output is the same alone as in its batch, and (with
  epsilon=0) the output does not change when the batch is scaled, on samples of very different
  scales and offsets (the scaling tells a normalization from, say, x returned times 2);
- the groups: within each sample and each group of consecutive channels (6 channels in 3
  groups, groups=C, and (N, F) features in groups of 2), the output must be one multiple of x - the
  group's mean. The quantity is what is left once that best multiple is removed, so the divisor
  does not enter;
- the biased variance: on activations of one channel with groups=1 (so that no way of grouping
  channels enters) and epsilon=0, the multiple is 1 / std over the sample's 4 values;
- epsilon: on one channel with groups=1 and epsilon=0.1, on samples whose variance is 0.02
  to 0.05, the multiple is 1 / sqrt(var + 0.1) (the unbiased variance is the previous check's
  property);
- gamma and beta: the output with them against gamma * (the answer's own output without them) + beta.
Named mistakes (known_mistakes.group_norm_mistakes) are recognised on the same quantities.

Weights (3 points). The central mistake, statistics shared across the batch, fails the per-sample
check: 1.5, half of the exercise (and the groups check). Channels grouped by c mod G, the groups
ignored or a reshape that mixes channels across groups cost the groups check, 0.5; ddof=1 0.25;
epsilon ignored or outside the square root 0.25; gamma and beta wrong 0.25; not a float array
0.25. The side check scores when the answer is substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "group_norm"


def _rng():
    return np.random.default_rng(31)


def _feature_maps(shape, rng):
    """Channels with different scales and offsets, so that which channels share a group shows."""
    channels = shape[-1]
    return rng.normal(size=shape) * np.linspace(0.5, 3.0, channels) + np.linspace(-4.0, 4.0, channels)


def _factor(x, y, groups):
    """The least-squares multiple of (x - the group's mean) in each sample's and group's output."""
    return answers.best_multiple(answers.centred_groups(x, groups), answers.grouped(y, groups), axis=-1)[0]


def _off_the_line(x, y, groups):
    return answers.best_multiple(answers.centred_groups(x, groups), answers.grouped(y, groups), axis=-1)[1]


def _named(quantity, x, groups, **kwargs):
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": reference.KERAS_BN_EPSILON, **kwargs}
    with np.errstate(all="ignore"):
        return {key: (description, quantity(out)) for key, (description, out) in
                known_mistakes.group_norm_mistakes(x, groups, **args).items()}


@pytest.mark.points(1.5)
@pytest.mark.visible_counterpart
def test_normalizes_each_sample_on_its_own(call_array):
    """A sample's output is the same alone as in its batch, and does not change when the batch is scaled."""
    rng = _rng()
    # samples of very different scales and offsets; all variances large, so that an epsilon of 1e-3
    # ignored (epsilon=0 is passed) stays negligible
    x = 100.0 * (_feature_maps((4, 3, 3, 4), rng) * np.array([0.1, 1.0, 10.0, 3.0])[:, None, None, None]
                 + np.array([5.0, -2.0, 0.0, 20.0])[:, None, None, None])
    together = answers.normalized_values(call_array, FUNCTION, x, 2, epsilon=0.0)
    alone = [answers.normalized_values(call_array, FUNCTION, x[i:i + 1], 2, epsilon=0.0)[0] for i in (0, 2)]
    scaled = answers.normalized_values(call_array, FUNCTION, 3.0 * x, 2, epsilon=0.0)

    def quantity(out, singles, out_scaled):
        return np.concatenate([(out[[0, 2]] - np.stack(singles)).ravel(), (out_scaled - out).ravel()])

    def table(data):
        return known_mistakes.group_norm_mistakes(data, 2, 1.0, 0.0, 0.0)
    named = {key: (description, quantity(out, [table(x[i:i + 1]).get(key, (None, reference.group_norm(
        x[i:i + 1], 2, epsilon=0.0)))[1][0] for i in (0, 2)], table(3.0 * x)[key][1]))
        for key, (description, out) in table(x).items()}
    answers.compare(FUNCTION, quantity(together, alone, scaled), np.zeros(2 * x[0].size + x.size),
                    prop="each sample must be normalized on its own: samples 0 and 2 must get the same output alone "
                         "as in the batch, and with epsilon=0 the output must not change when the batch is scaled "
                         "by 3 (shown: the differences)",
                    on="4 samples of very different scales and offsets, groups=2, epsilon=0",
                    scale=np.abs(together).max(), named=named, focus=("batch_statistics",))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_groups_consecutive_channels(call_array):
    """Group k holds channels k*C/G to (k+1)*C/G - 1 (6 channels in 3 groups, groups=C, dense features)."""
    rng = _rng()
    for shape, groups, on in (((2, 3, 3, 6), 3, "conv activations, 6 channels in 3 groups"),
                              ((3, 2, 2, 4), 4, "conv activations, groups=C=4"),
                              ((5, 8), 4, "dense features, 4 groups of 2")):
        x = _feature_maps(shape, rng)
        y = answers.normalized_values(call_array, FUNCTION, x, groups)
        answers.compare(FUNCTION, _off_the_line(x, y, groups), np.zeros(answers.grouped(x, groups).shape),
                        prop="within each sample and each group of consecutive channels (group k: channels k*C/G to "
                             "(k+1)*C/G - 1) the output must be one multiple of x - the group's mean",
                        on=f"{shape} {on}", scale=np.abs(y).max(),
                        named=_named(lambda out, x=x, groups=groups: _off_the_line(x, out, groups), x, groups),
                        focus=("interleaved_groups", "ignored_groups"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_uses_the_biased_variance(call_array):
    """One channel, groups=1, epsilon=0: the biased variance (ddof=0) over each sample's 4 values."""
    # one channel, so that every way of grouping channels gives the same groups; a variance large
    # enough that an epsilon of 1e-3 ignored (epsilon=0 is passed) stays negligible
    x = _rng().normal(size=(5, 2, 2, 1)) * 100.0 + 3.0
    y = answers.normalized_values(call_array, FUNCTION, x, 1, epsilon=0.0)
    answers.compare(FUNCTION, _factor(x, y, 1), 1.0 / answers.grouped(x, 1).std(axis=-1),
                    prop="with groups=1 and epsilon=0 the multiple of x - mean must be 1 / std with the biased "
                         "variance (divide by the number of values, np.var's default)",
                    on="(5, 2, 2, 1) activations: 4 values per sample",
                    named=_named(lambda out: _factor(x, out, 1), x, 1, epsilon=0.0), focus=("ddof1",))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_uses_the_epsilon_it_is_given(call_array):
    """With epsilon=0.1 on samples whose variance is 0.02 to 0.05, the output uses that epsilon."""
    x = _rng().normal(size=(3, 3, 3, 1)) * np.array([0.3, 0.2, 0.25])[:, None, None, None]   # one channel
    y = answers.normalized_values(call_array, FUNCTION, x, 1, epsilon=0.1)
    got = _factor(x, y, 1)
    if answers.within(got, 1.0 / np.sqrt(answers.grouped(x, 1).var(axis=-1, ddof=1) + 0.1)):
        return      # epsilon right, on the unbiased variance: the previous check's property
    answers.compare(FUNCTION, got, 1.0 / np.sqrt(answers.grouped(x, 1).var(axis=-1) + 0.1),
                    prop="with groups=1 and epsilon=0.1 the multiple of x - mean must be 1 / sqrt(var + 0.1), "
                         "epsilon inside the square root and the value given",
                    on="one channel, samples whose variance is 0.02 to 0.05",
                    named=_named(lambda out: _factor(x, out, 1), x, 1, epsilon=0.1),
                    focus=("fixed_epsilon", "eps_outside_sqrt"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_applies_per_channel_gamma_and_beta(call_array):
    """Scales by gamma and shifts by beta, per channel."""
    x = _feature_maps((2, 3, 3, 6), _rng())
    gamma, beta = np.linspace(0.5, 3.0, 6), np.linspace(-1.0, 1.0, 6)
    z = answers.normalized_values(call_array, FUNCTION, x, 3)
    y = answers.output_like_x(call_array, FUNCTION, x, 3, gamma=gamma, beta=beta)
    answers.compare(FUNCTION, y - (gamma * z + beta), np.zeros_like(x),
                    prop="the output with gamma and beta must be gamma * (the output without them) + beta, "
                         "per channel", on="(2, 3, 3, 6) activations, 3 groups, gamma and beta per channel",
                    scale=np.abs(y).max())


MAIN_CHECKS = (test_normalizes_each_sample_on_its_own, test_groups_consecutive_channels, test_uses_the_biased_variance,
               test_uses_the_epsilon_it_is_given, test_applies_per_channel_gamma_and_beta)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is x's: the other checks compare it)."""
    x = _feature_maps((2, 2, 2, 4), _rng())
    answer = answers.Answer.of(call_array(FUNCTION, x, 2))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])
