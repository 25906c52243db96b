"""manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5): batch normalization in NumPy.

Specification: y = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the mean and the biased
variance over every axis but the last, gamma and beta scalars or per feature, x left unmodified,
an array of x's shape out.

One property per check, each read from the quantity it is about (answers.py), so that a slip costs
the checks of its property and no other:
- which values the statistics come from: with gamma=1 and beta=0, each feature's output must be
  one multiple of its centred values, x - mean, with the mean over the batch (over N, H, W for
  conv activations). The quantity is what is left of the output once that best multiple is
  removed, so the divisor (the variance, epsilon) does not enter;
- how the spread becomes the divisor: the factor that multiplies x - mean, read on batches whose
  rows and columns are permutations of one vector (so per-feature, per-sample and all-element
  statistics coincide and the statistics' axes do not enter): with epsilon=0, 1 / std (the biased
  or the unbiased variance, which the next check tells apart), the biased variance's, and with
  epsilon=0.01 on variances of 0.01, 1 / sqrt(var + epsilon);
- gamma and beta: the output with gamma and beta against gamma * (the answer's own output without
  them) + beta, so a wrong normalization does not enter.
Named mistakes (known_mistakes.batch_norm_mistakes) are recognised on the same quantities.

Weights (3 points). The central mistake, statistics per sample instead of per feature over the
batch, fails the two checks of the statistics' axes, 1.0 + 0.5 = 1.5, half of the exercise. All
elements at once costs 1.5 as well; per position or NCHW axes 0.5; the divisor wrong (no division, the variance as a
standard deviation) 0.75; ddof=1 0.25; epsilon outside the square root, left out or ignored 0.25;
gamma and beta swapped or left out 0.25; x modified in place 0.25; not a float array 0.25. The two
side checks score when the answer is substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "manual_batch_norm"


def _rng():
    return np.random.default_rng(2024)


def _centred(x):
    """x - mean per feature (over every axis but the last), one column per feature."""
    xs = answers.per_feature(x)
    return xs - xs.mean(axis=0)


def off_the_centred_line(x, y):
    """What is left of each feature's output ``y`` once its best multiple of (x - mean) is removed,
    the mean over every axis but the last: zero for batch normalization whatever the divisor."""
    return answers.best_multiple(_centred(x), answers.per_feature(y))[1]


def factor(x, y):
    """The factor that multiplies each feature's x - mean in the output (least squares, per feature)."""
    return answers.best_multiple(_centred(x), answers.per_feature(y))[0]


def _named(quantity, x, **kwargs):
    """{key: (description, quantity of that mistake's output)} for this call."""
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": reference.PAPER_BN_EPSILON, **kwargs}
    with np.errstate(all="ignore"):
        return {key: (description, quantity(x, out))
                for key, (description, out) in known_mistakes.batch_norm_mistakes(x, **args).items()}


def _latin_square(n, mean=5.0, std=2.0):
    """An (n, n) batch whose every row and every column is a permutation of one vector of this mean
    and (biased) std: per-feature, per-sample and all-element statistics are then the same, so the
    divisor checks do not depend on the axes the statistics are taken over."""
    values = np.linspace(-1.0, 1.0, n)
    values = (values - values.mean()) / values.std() * std + mean
    return values[(np.arange(n)[:, None] + np.arange(n)[None, :]) % n]


def _centred_statistics(call_array, x, focus, on):
    y = answers.normalized_values(call_array, FUNCTION, x)
    answers.compare(FUNCTION, off_the_centred_line(x, y), np.zeros(answers.per_feature(x).shape),
                    prop="with gamma=1 and beta=0 each feature's output must be one multiple of x - mean, the "
                         "mean taken per feature over " + on[1],
                    on=on[0], scale=np.abs(y).max(), named=_named(off_the_centred_line, x), focus=focus)


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_normalizes_each_feature_over_the_batch(call_array):
    """Centres each feature of an (N, F) batch on its own mean over the batch."""
    scales = np.array([1.0, 10.0, 100.0, 0.5, 1000.0])
    x = _rng().normal(size=(64, 5)) * scales + np.array([0.0, -5.0, 50.0, 3.0, 1000.0])
    _centred_statistics(call_array, x, ("per_sample", "all_elements"),
                        ("a (64, 5) batch of features with different means and scales", "the batch (axis 0)"))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_normalizes_conv_activations_per_channel(call_array):
    """Centres each channel of (N, H, W, C) conv activations over N, H and W."""
    rng = _rng()
    trend = np.linspace(-3.0, 3.0, 5)[None, :, None, None] + np.linspace(0.0, 2.0, 5)[None, None, :, None]
    x = rng.normal(size=(6, 5, 5, 3)) * np.array([1.0, 5.0, 0.5]) + trend * np.array([1.0, 2.0, -1.0])
    _centred_statistics(call_array, x, ("per_sample", "per_position", "nchw", "all_elements"),
                        ("(6, 5, 5, 3) conv activations whose channels vary with the position",
                         "N, H and W (axes 0, 1, 2)"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_divides_by_the_standard_deviation(call_array):
    """Divides x - mean by the standard deviation (epsilon=0)."""
    x = _latin_square(8)
    y = answers.normalized_values(call_array, FUNCTION, x, epsilon=0.0)
    got = factor(x, y)
    want = 1.0 / x.std(axis=0)
    unbiased = 1.0 / x.std(axis=0, ddof=1)
    if answers.within(got, unbiased):
        return      # the unbiased variance: the next check's property
    answers.compare(FUNCTION, got, want, prop="with epsilon=0 each feature's x - mean must be divided by its "
                    "standard deviation, so the factor on it is 1 / std", on="an (8, 8) batch whose rows and "
                    "columns all have mean 5 and std 2", named=_named(factor, x, epsilon=0.0), focus=())


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_uses_the_biased_variance(call_array):
    """Uses the biased variance (ddof=0), which a batch of 4 tells apart from ddof=1."""
    x = _latin_square(4)
    y = answers.normalized_values(call_array, FUNCTION, x, epsilon=0.0)
    answers.compare(FUNCTION, factor(x, y), 1.0 / x.std(axis=0),
                    prop="the variance must be the biased one (divide by m, np.var's default), so with "
                         "epsilon=0 the factor on x - mean is 1 / np.std(x, axis=0)",
                    on="a (4, 4) batch whose rows and columns all have mean 5 and std 2",
                    named=_named(factor, x, epsilon=0.0), focus=("ddof1",))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_adds_epsilon_inside_the_square_root(call_array):
    """Divides by sqrt(var + epsilon) with the epsilon it is given (epsilon=0.01 on variances of 0.01)."""
    x = _latin_square(8, mean=-1.0, std=0.1)
    y = answers.normalized_values(call_array, FUNCTION, x, epsilon=0.01)
    got = factor(x, y)
    if answers.within(got, 1.0 / np.sqrt(x.var(axis=0, ddof=1) + 0.01)):
        return      # epsilon right, on the unbiased variance: the biased-variance check's property
    answers.compare(FUNCTION, got, 1.0 / np.sqrt(x.var(axis=0) + 0.01),
                    prop="with epsilon=0.01 the factor on x - mean must be 1 / sqrt(var + epsilon), epsilon "
                         "inside the square root and the value given",
                    on="an (8, 8) batch whose rows and columns all have variance 0.01",
                    named=_named(factor, x, epsilon=0.01),
                    focus=("eps_outside_sqrt", "fixed_epsilon", "no_epsilon"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_applies_per_feature_gamma_and_beta(call_array):
    """Scales by gamma and shifts by beta, per feature."""
    x = _rng().normal(size=(16, 3)) * 3.0 + 2.0
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    z = answers.normalized_values(call_array, FUNCTION, x)
    y = answers.output_like_x(call_array, FUNCTION, x, gamma=gamma, beta=beta)
    args = {"gamma": gamma, "beta": beta, "epsilon": reference.PAPER_BN_EPSILON}
    right_z = reference.batch_norm(x)
    named = {key: (description, out - (gamma * right_z + beta))
             for key, (description, out) in known_mistakes.batch_norm_mistakes(x, **args).items()}
    answers.compare(FUNCTION, y - (gamma * z + beta), np.zeros_like(x),
                    prop="the output with gamma and beta must be gamma * (the output without them) + beta, "
                         "per feature", on="a (16, 3) batch with gamma=[1, 2, 3] and beta=[11, 12, 13]",
                    scale=np.abs(y).max(), named=named, focus=("gamma_beta_swapped", "no_scale_shift"))


MAIN_CHECKS = (test_normalizes_each_feature_over_the_batch, test_normalizes_conv_activations_per_channel,
               test_divides_by_the_standard_deviation, test_uses_the_biased_variance,
               test_adds_epsilon_inside_the_square_root, test_applies_per_feature_gamma_and_beta)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_leaves_its_input_unmodified(call_array):
    """Leaves the caller's array as it was."""
    x = _rng().normal(size=(10, 4)) * 5.0 + 3.0
    answer = answers.Answer.of(call_array(FUNCTION, x))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.assert_inputs_unmodified(FUNCTION, answer, [x], ["x"])


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is the input's: the other checks compare it)."""
    x = _rng().normal(size=(7, 4)) * 2.0 - 1.0
    answer = answers.Answer.of(call_array(FUNCTION, x))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])
