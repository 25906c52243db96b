"""group_norm_backward(dout, x, groups, gamma, epsilon=1e-3) -> (dx, dgamma, dbeta): group norm's backward pass.

Specification: the gradients of group_norm's output (per sample, per group of consecutive
channels, biased variance, epsilon inside the square root) with respect to x, gamma and beta,
given the upstream gradient dout. x and dout are (N, H, W, C) or (N, F); gamma is a scalar or one
value per channel; dx has x's shape, dgamma and dbeta have shape (C,): gamma and beta are per
channel, so their gradients sum over N, H and W, while the statistics are per sample and group.
The float64 reference is reference.group_norm_backward, itself tested against centred differences
and against the gradient of keras.layers.GroupNormalization.

One property per check, each read from the quantity it is about (answers.py), so that a slip costs
the checks of its property and no other. The path, divisor and sums checks run on a Latin cube
(_latin_cube): (8, 2, 4, 8) activations in which each sample's channel, each sample's position and
each position's channel over the batch holds every value of one vector once. Then every way of
grouping the channels, per sample or over the batch, gives the same statistics and the same x_hat,
and a dout that is a function of the cube's index gives every grouping the same gradient: those
checks do not depend on how the groups are formed nor on which axes the statistics use (the groups'
and the per-sample checks see those); the paths' and the divisor's cube has mean 0, so how x is
centred does not enter there either (the sums' check sees that):
- the path through the group's mean: group norm's output does not change when a constant is added to
  a sample's group, so dx sums to 0 over each sample's group (the message names the statistics
  treated as constants when the variance's path is missing too);
- the path through the group's variance: with epsilon=0 the output does not change when a sample's
  group is scaled around its mean, so sum(dx * (x - mean)) = 0 over each sample's group (what the
  unbiased variance gives there is the divisor check's slip, not this check's);
- each sample on its own: a sample's dx is the same alone as in its batch;
- the groups of consecutive channels: a group's dx does not change when the other groups' x and dout
  change (6 channels in 3 groups, groups=C, and (N, F) features in groups of 2);
- dgamma = sum(dout * x_hat) and dbeta = sum(dout), per channel over N, H and W (epsilon=0, a scalar
  gamma; the unbiased variance in x_hat is the divisor check's slip);
- the divisor and epsilon: for a dout with no part along 1 or along x - mean in any group, both paths
  carry nothing and dx = gamma * dout / sqrt(var + epsilon), with the biased variance (epsilon=0.01
  on a variance of 0.01).
Sums are compared within 1e-5 of the sum of their terms' magnitudes, so a correct answer computed
in float32 passes. Named mistakes (known_mistakes.group_norm_backward_mistakes) are recognised on
the same quantities.

Weights (3 points). The central mistake, the statistics treated as constants (dx = dout * gamma /
s), fails both dx-path checks: 0.75 + 0.75 = 1.5, half of the exercise. A path dropped costs 0.75;
statistics over the batch 0.5; groups interleaved or ignored 0.25; dgamma and dbeta summed per
group or per sample 0.25; the unbiased variance, epsilon ignored or outside the square root 0.25;
not float arrays or inputs modified 0.25. The side check scores when the answer is substantive
(answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "group_norm_backward"
NAMES = ("dx", "dgamma", "dbeta")


def _rng(seed=41):
    return np.random.default_rng(seed)


def _call(call_arrays, dout, x, groups, gamma, reads, **kwargs) -> answers.Answer:
    """The answer, checked to be one and to have the right shape for the parts ``reads`` (indices)."""
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, groups, gamma, **kwargs))
    answers.require_an_answer(FUNCTION, answer, [dout, x, gamma])
    answers.require_shapes(FUNCTION, answer, (x.shape, x.shape[-1:], x.shape[-1:]), NAMES, reads)
    if 0 in reads:      # a dx of zeros has every sum a path check reads: it must be an answer on its own
        answers.require_an_answer(f"{FUNCTION}'s dx", answers.Answer(answer.parts[:1], answer.dtypes[:1], []),
                                  [dout, x])
        _require_dx_of_dout(call_arrays, answer.parts[0], dout, x, groups, gamma, **kwargs)
    return answer


def _require_dx_of_dout(call_arrays, dx, dout, x, groups, gamma, **kwargs):
    """A dx that stays the same when dout doubles is no gradient (group_norm's own output, say, sums to 0
    over each group and is per sample and per group: it would pass the checks reading those properties)."""
    again = answers.Answer.of(call_arrays(FUNCTION, 2.0 * dout, x, groups, gamma, **kwargs)).parts
    if again and np.array_equal(again[0], dx):
        raise answers.NotAnAnswer(
            f"{FUNCTION}'s dx is the same for dout and for 2 * dout on this check's input: dx is the gradient "
            "with respect to x given the upstream gradient dout, so it must depend on dout; that is not an answer, "
            "so this check earns nothing")


def _mistakes(dout, x, groups, gamma, epsilon):
    with np.errstate(all="ignore"):
        return known_mistakes.group_norm_backward_mistakes(dout, x, groups, gamma, epsilon)


def _named(quantity, dout, x, groups, gamma, epsilon):
    """{key: (description, quantity of that mistake's (dx, dgamma, dbeta))} for this call."""
    return {key: (description, quantity(*out))
            for key, (description, out) in _mistakes(dout, x, groups, gamma, epsilon).items()}


LATIN = 8      # values per fiber of the Latin cube below


def _latin_index():
    """(8, 2, 4, 8) indices s = (n + p + c) mod 8, p = 4 h + w: along the batch, the positions or the
    channels, every fiber of the cube holds each index once."""
    n, p, c = np.ogrid[:LATIN, :LATIN, :LATIN]
    return ((n + p + c) % LATIN).reshape(LATIN, 2, 4, LATIN)


def _unit(vector, *against):
    """``vector`` with its parts along 1 and along ``against`` removed, then of mean 0 and std 1."""
    for other in (np.ones_like(vector), *against):
        vector = vector - other * (vector @ other) / (other @ other)
    return vector / vector.std()


def _values():
    return _unit(np.linspace(-1.0, 1.0, LATIN) ** 3 + np.linspace(0.0, 0.3, LATIN))


def _latin_cube(std, mean):
    """(8, 2, 4, 8) activations of value mean + std * v[(n + p + c) mod 8] (v of mean 0, std 1): each
    sample's channel over H and W, each sample's position over the channels, each position and channel
    over the batch holds every value of v once. So every way of grouping the channels (consecutive,
    interleaved, ignored, chunks of a flattened sample), per sample or over the batch, gives the same
    mean and variance, and the same normalized value to each entry."""
    return mean + std * _values()[_latin_index()]


def _by_index(mean_part, x_hat_part):
    """A gradient that is a function of the cube's index: mean_part + x_hat_part * v + f with f of mean
    0 and orthogonal to v. Every group, however formed, pairs the same values of it with the same
    values of x_hat, so sees the same two moments: mean(.) = mean_part and mean(. * x_hat) = x_hat_part."""
    values = _values()
    rest = _unit(np.random.default_rng(71).normal(size=LATIN), values)
    return (mean_part + x_hat_part * values + rest)[_latin_index()]


def _path_case():
    """(dout, x, groups, gamma): a batch for the paths' checks (see the module's docstring)."""
    gamma = np.linspace(0.5, 2.0, LATIN)
    return _by_index(1.5, 0.8) / gamma, _latin_cube(std=20.0, mean=0.0), 4, gamma


def _group_sums(groups):
    """dx's sum over each sample's group, from (dx, dgamma, dbeta)."""
    return lambda dx, *_: answers.grouped(dx, groups).sum(axis=-1)


def _group_moments(x, groups):
    """sum(dx * (x - mean)) over each sample's group, from (dx, dgamma, dbeta)."""
    return lambda dx, *_: (answers.grouped(dx, groups) * answers.centred_groups(x, groups)).sum(axis=-1)


@pytest.mark.points(0.75)
@pytest.mark.visible_counterpart
def test_dx_flows_through_the_group_mean(call_arrays):
    """dx sums to 0 over each sample's group: the path through the group's mean."""
    dout, x, groups, gamma = _path_case()
    dx = _call(call_arrays, dout, x, groups, gamma, reads=(0,), epsilon=0.0).parts[0]
    right = reference.group_norm_backward(dout, x, groups, gamma, 0.0)[0]
    scale = np.abs(answers.grouped(right, groups)).sum(axis=-1)
    moments_scale = np.abs(answers.grouped(right, groups) * answers.centred_groups(x, groups)).sum(axis=-1)
    both = not answers.within(_group_moments(x, groups)(dx), np.zeros_like(scale), moments_scale)
    answers.compare(FUNCTION, _group_sums(groups)(dx), np.zeros_like(scale),
                    prop="adding a constant to a sample's group does not change group norm's output, so dx must sum "
                         "to 0 over each sample's group (the path through the group's mean)",
                    on="(8, 2, 4, 8) activations of mean 0 in 4 groups with a dout of mean 1.5 / gamma, epsilon=0",
                    scale=scale, named=_named(_group_sums(groups), dout, x, groups, gamma, 0.0),
                    focus=("constant_statistics",) if both else ("no_mean_path",))


@pytest.mark.points(0.75)
@pytest.mark.visible_counterpart
def test_dx_flows_through_the_group_variance(call_arrays):
    """sum(dx * (x - mean)) = 0 over each sample's group with epsilon=0: the path through the group's variance."""
    dout, x, groups, gamma = _path_case()
    dx = _call(call_arrays, dout, x, groups, gamma, reads=(0,), epsilon=0.0).parts[0]
    right = reference.group_norm_backward(dout, x, groups, gamma, 0.0)[0]
    scale = np.abs(answers.grouped(right, groups) * answers.centred_groups(x, groups)).sum(axis=-1)
    named = _named(_group_moments(x, groups), dout, x, groups, gamma, 0.0)
    got = _group_moments(x, groups)(dx)
    if answers.within(got, named["ddof1"][1], scale):
        return      # the unbiased variance: the divisor check's slip, not this path's
    sums_scale = np.abs(answers.grouped(right, groups)).sum(axis=-1)
    both = not answers.within(_group_sums(groups)(dx), np.zeros_like(sums_scale), sums_scale)
    answers.compare(FUNCTION, got, np.zeros_like(scale),
                    prop="with epsilon=0, scaling a sample's group around its mean does not change group norm's "
                         "output, so sum(dx * (x - mean)) must be 0 over each sample's group (the path through the "
                         "group's variance)",
                    on="(8, 2, 4, 8) activations of mean 0 in 4 groups with a dout that grows with x, epsilon=0",
                    scale=scale, named=named, focus=("constant_statistics",) if both else ("no_variance_path",))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_each_sample_on_its_own(call_arrays):
    """A sample's dx is the same alone as in its batch: the statistics are per sample."""
    rng = _rng(43)
    x = (rng.normal(size=(4, 3, 3, 4)) * np.linspace(0.5, 3.0, 4) + np.linspace(-4.0, 4.0, 4)) \
        * np.array([1.0, 10.0, 0.5, 3.0])[:, None, None, None] + np.array([5.0, -2.0, 0.0, 20.0])[:, None, None, None]
    dout, gamma, groups, epsilon = rng.normal(size=x.shape) + 0.5, np.linspace(0.5, 2.0, 4), 2, 0.01
    chosen = (0, 2)
    together = _call(call_arrays, dout, x, groups, gamma, reads=(0,), epsilon=epsilon).parts[0]
    alone = [_call(call_arrays, dout[i:i + 1], x[i:i + 1], groups, gamma, reads=(0,), epsilon=epsilon).parts[0][0]
             for i in chosen]

    def quantity(out, singles):
        return (out[list(chosen)] - np.stack(singles)).ravel()

    right = reference.group_norm_backward(dout, x, groups, gamma, epsilon)[0]
    wrong = _mistakes(dout, x, groups, gamma, epsilon)["batch_statistics"]
    wrong_alone = [_mistakes(dout[i:i + 1], x[i:i + 1], groups, gamma, epsilon)["batch_statistics"][1][0][0]
                   for i in chosen]
    answers.compare(FUNCTION, quantity(together, alone), np.zeros(2 * x[0].size),
                    prop="each sample's gradient must come from its own statistics: samples 0 and 2 must get the "
                         "same dx alone as in the batch (shown: the differences)",
                    on="4 samples of very different scales and offsets, groups=2, epsilon=0.01",
                    scale=np.abs(right).max(),
                    named={"batch_statistics": (wrong[0], quantity(wrong[1][0], wrong_alone))},
                    focus=("batch_statistics",))


def _locality(dx_of, x, dout, groups, rng):
    """For each group k: how much group k's dx changes when the other groups' x and dout are replaced."""
    size = x.shape[-1] // groups
    base = dx_of(x, dout)
    parts = []
    for k in range(groups):
        others = np.ones(x.shape[-1], bool)
        others[k * size:(k + 1) * size] = False
        x_k, dout_k = x.copy(), dout.copy()
        x_k[..., others] = rng.normal(size=x[..., others].shape) * 7.0 + 4.0
        dout_k[..., others] = rng.normal(size=x[..., others].shape) * 3.0
        parts.append((dx_of(x_k, dout_k) - base)[..., ~others].ravel())
    return np.concatenate(parts)


def _check_groups_on(call_arrays, shape, groups, on):
    rng = _rng(47)
    channels = shape[-1]
    x = rng.normal(size=shape) * np.linspace(0.5, 3.0, channels) + np.linspace(-4.0, 4.0, channels)
    dout, gamma = rng.normal(size=shape), np.linspace(0.5, 2.0, channels)

    def answer(x, dout):
        return _call(call_arrays, dout, x, groups, gamma, reads=(0,)).parts[0]

    def mistake(key):
        return lambda x, dout: _mistakes(dout, x, groups, gamma, reference.KERAS_BN_EPSILON)[key][1][0]

    got = _locality(answer, x, dout, groups, _rng(53))
    table = _mistakes(dout, x, groups, gamma, reference.KERAS_BN_EPSILON)
    named = {key: (table[key][0], _locality(mistake(key), x, dout, groups, _rng(53)))
             for key in ("interleaved_groups", "ignored_groups") if key in table}
    answers.compare(FUNCTION, got, np.zeros_like(got),
                    prop="the gradient of a group (group k: channels k*C/G to (k+1)*C/G - 1) must come from that "
                         "group only: its dx must not change when the other groups' x and dout change (shown: the "
                         "changes)", on=f"{shape} {on}",
                    scale=np.abs(answer(x, dout)).max(), named=named, focus=("interleaved_groups", "ignored_groups"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_groups_consecutive_channels(call_arrays):
    """Group k (channels k*C/G to (k+1)*C/G - 1): its dx does not change when the other groups change."""
    for shape, groups, on in (((2, 3, 3, 6), 3, "conv activations, 6 channels in 3 groups"),
                              ((3, 2, 2, 4), 4, "conv activations, groups=C=4"),
                              ((5, 8), 4, "dense features, 4 groups of 2")):
        _check_groups_on(call_arrays, shape, groups, on)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_dgamma_and_dbeta_sum_per_channel(call_arrays):
    """dgamma = sum(dout * x_hat) and dbeta = sum(dout), per channel over N, H and W; a scalar gamma is accepted."""
    x, groups = _latin_cube(std=20.0, mean=-3.0), 4
    dout = _rng(59).normal(size=x.shape) + 1.0
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, groups, 2.0, epsilon=0.0))
    answers.require_an_answer(FUNCTION, answer, [dout, x])
    mistakes = _mistakes(dout, x, groups, 2.0, 0.0)

    def sums(dx, dgamma, dbeta):
        return np.concatenate([np.ravel(dgamma), np.ravel(dbeta)])
    right = reference.group_norm_backward(dout, x, groups, 2.0, 0.0)
    x_hat = reference.group_norm(x, groups, epsilon=0.0)
    scale = np.concatenate([np.abs(dout * x_hat).sum(axis=(0, 1, 2)), np.abs(dout).sum(axis=(0, 1, 2))])
    if len(answer.parts) == 3:
        for key in ("sums_per_group", "sums_per_sample"):
            wrong = mistakes[key][1]
            if answer.parts[1].shape == wrong[1].shape and answers.within(sums(*answer.parts), sums(*wrong),
                                                                          np.abs(sums(*wrong)).max()):
                answers.fail_with_mistake(FUNCTION, key, mistakes)
    answer = _call(call_arrays, dout, x, groups, 2.0, reads=(1, 2), epsilon=0.0)
    if answers.within(sums(*answer.parts), sums(*mistakes["ddof1"][1]), scale):
        return      # x_hat with the unbiased variance: the divisor check's slip, not the sums'
    answers.compare(FUNCTION, sums(*answer.parts), sums(*right),
                    prop="dgamma must be sum(dout * x_hat) and dbeta sum(dout), one value per channel, summed over "
                         "N, H and W (shown: dgamma, then dbeta)",
                    on="(8, 2, 4, 8) activations in 4 groups with gamma=2.0, epsilon=0", scale=scale)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_divides_by_sqrt_of_the_biased_variance_plus_epsilon(call_arrays):
    """dx = gamma * dout / sqrt(var + epsilon) for a dout the statistics' paths ignore, epsilon=0.01."""
    x, groups = _latin_cube(std=0.1, mean=0.5), 4            # variance 0.01, of the order of epsilon
    # one gamma for all channels, so that dout * gamma keeps dout's zero moments in every grouping
    dout, gamma = _by_index(0.0, 0.0), np.full(LATIN, 1.5)
    dx = _call(call_arrays, dout, x, groups, gamma, reads=(0,), epsilon=0.01).parts[0]
    expected = gamma * dout / np.sqrt(0.01 + 0.01)
    answers.compare(FUNCTION, dx, expected,
                    prop="for a dout with no part along 1 or along x - mean in any group both statistics' paths carry "
                         "nothing, so dx must be gamma * dout / sqrt(var + epsilon): the biased variance, epsilon "
                         "inside the square root and the value given",
                    on="(8, 2, 4, 8) activations of variance 0.01 in 4 groups, epsilon=0.01", scale=np.abs(expected),
                    named=_named(lambda dx, *_: dx, dout, x, groups, gamma, 0.01),
                    focus=("ddof1", "fixed_epsilon", "eps_outside_sqrt"))


MAIN_CHECKS = (test_dx_flows_through_the_group_mean, test_dx_flows_through_the_group_variance,
               test_each_sample_on_its_own, test_groups_consecutive_channels, test_dgamma_and_dbeta_sum_per_channel,
               test_divides_by_sqrt_of_the_biased_variance_plus_epsilon)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_float_arrays_and_leaves_its_inputs_unmodified(call_arrays):
    """Returns (dx, dgamma, dbeta) as floating-point NumPy arrays, and leaves dout, x and gamma as they were."""
    rng = _rng(67)
    x = rng.normal(size=(3, 2, 2, 4)) * 3.0 + 1.0
    dout, gamma = rng.normal(size=x.shape), np.linspace(0.5, 1.5, 4)
    answer = answers.Answer.of(call_arrays(FUNCTION, dout, x, 2, gamma))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_arrays)
    answers.assert_float_arrays(FUNCTION, answer, NAMES)
    answers.assert_inputs_unmodified(FUNCTION, answer, [dout, x, 2, gamma], ["dout", "x", "groups", "gamma"])
