"""batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3) -> np.ndarray

Specification: BN's inference-mode forward pass, gamma * (x - moving_mean) / sqrt(moving_var +
epsilon) + beta, with the moving statistics it is given ((C,) arrays), never the batch's own;
x is (N, F) or (N, H, W, C); gamma and beta are scalars or per-channel; the default epsilon is
Keras' (1e-3); x is left unmodified. The float64 reference is reference.batch_norm_inference.

One property per check, each read from the quantity it is about (answers.py):
- the centre: with gamma=1, beta=0 and epsilon=0, each channel's output must be one multiple of
  x - moving_mean, on a batch whose own statistics are far from the moving ones. The quantity is
  what is left once that best multiple is removed, so the divisor does not enter;
- the divisor: that multiple is 1 / sqrt(moving_var), per channel of (N, H, W, C) activations;
- epsilon: the multiple is 1 / sqrt(moving_var + epsilon) with Keras' default 1e-3 and with
  epsilon=0.1 given, on moving variances of the order of epsilon;
  (these two with moving_mean = 0, so that how x is centred does not enter)
- gamma and beta: the output with them against gamma * (the answer's own output without them) + beta.
Named mistakes (known_mistakes.batch_norm_inference_mistakes) are recognised on the same quantities.

Weights (2 points). The central mistake, normalizing with the batch's own statistics, fails the
centre check and the divisor check: 0.75 + 0.25 = 1.0, half of the exercise. The others cost one
check each: epsilon outside the square root, the paper's 1e-5 as the default or the given epsilon
ignored 0.25; the variance as a standard deviation 0.25 (0.5 with epsilon's check); gamma and beta
wrong 0.25; not a float array 0.25; inputs modified 0.25. The side checks score when the answer is
substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "batch_norm_inference"


def _rng():
    return np.random.default_rng(11)


def _factor(x, centre, y):
    """The least-squares multiple of (x - centre) in each channel's output."""
    return answers.best_multiple(answers.per_feature(x - centre), answers.per_feature(y))[0]


def _off_the_line(x, centre, y):
    return answers.best_multiple(answers.per_feature(x - centre), answers.per_feature(y))[1]


def _named(quantity, x, moving_mean, moving_var, **kwargs):
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": reference.KERAS_BN_EPSILON, **kwargs}
    with np.errstate(all="ignore"):
        return {key: (description, quantity(out)) for key, (description, out) in
                known_mistakes.batch_norm_inference_mistakes(x, moving_mean, moving_var, **args).items()}


@pytest.mark.points(0.75)
@pytest.mark.visible_counterpart
def test_normalizes_with_the_moving_statistics(call_array):
    """Centres each channel on moving_mean, not on the batch's own mean (nothing computed from the batch)."""
    moving_mean, moving_var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 9.0])
    x = _rng().normal(size=(10, 3)) * np.array([0.5, 3.0, 1.0]) + np.array([6.0, 2.0, -4.0])
    y = answers.normalized_values(call_array, FUNCTION, x, moving_mean, moving_var, epsilon=0.0)
    answers.compare(FUNCTION, _off_the_line(x, moving_mean, y), np.zeros(x.shape),
                    prop="with gamma=1, beta=0 and epsilon=0 each channel's output must be one multiple of "
                         "x - moving_mean (nothing computed from the batch)",
                    on="a (10, 3) batch whose own means and variances are far from the moving ones",
                    scale=np.abs(y).max(),
                    named=_named(lambda out: _off_the_line(x, moving_mean, out), x, moving_mean, moving_var,
                                 epsilon=0.0), focus=("batch_statistics",))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_divides_by_the_standard_deviation(call_array):
    """Divides by sqrt(moving_var), per channel of (N, H, W, C) activations (epsilon=0)."""
    # variances large enough that an epsilon of 1e-3 ignored (epsilon=0 is passed) stays within tolerance
    moving_mean, moving_var = np.zeros(2), np.array([400.0, 100.0])     # x - moving_mean is x: the centre's slips
    x = _rng().normal(size=(2, 3, 3, 2)) * np.array([20.0, 3.0]) + np.array([3.0, -1.0])   # do not enter
    y = answers.normalized_values(call_array, FUNCTION, x, moving_mean, moving_var, epsilon=0.0)
    answers.compare(FUNCTION, _factor(x, moving_mean, y), 1.0 / np.sqrt(moving_var),
                    prop="with epsilon=0 the multiple of x - moving_mean must be 1 / sqrt(moving_var), per channel",
                    on="(2, 3, 3, 2) activations with moving variances 400 and 100",
                    named=_named(lambda out: _factor(x, moving_mean, out), x, moving_mean, moving_var, epsilon=0.0),
                    focus=("var_as_std", "batch_statistics"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_adds_epsilon_inside_the_square_root(call_array):
    """Divides by sqrt(moving_var + epsilon): with Keras' default 1e-3, and with epsilon=0.1 when given it."""
    moving_mean, moving_var = np.zeros(3), np.array([1e-4, 1e-3, 4e-3])
    x = _rng().normal(size=(8, 3)) * 0.05 + np.array([0.0, 0.1, -0.1])
    y = answers.normalized_values(call_array, FUNCTION, x, moving_mean, moving_var)
    got = _factor(x, moving_mean, y)
    if answers.within(got, 1.0 / np.sqrt(moving_var + reference.PAPER_BN_EPSILON)):
        pytest.fail("the default epsilon is 1e-5; batch_norm_inference's default is Keras' 1e-3")
    answers.compare(FUNCTION, got, 1.0 / np.sqrt(moving_var + reference.KERAS_BN_EPSILON),
                    prop="with the default epsilon the multiple of x - moving_mean must be "
                         "1 / sqrt(moving_var + 1e-3), epsilon inside the square root",
                    on="moving variances 1e-4 to 4e-3", focus=("eps_outside_sqrt",),
                    named=_named(lambda out: _factor(x, moving_mean, out), x, moving_mean, moving_var))
    moving_var = np.array([0.05, 0.1, 0.2])       # variances of the order of the epsilon given
    x = _rng().normal(size=(8, 3)) * np.sqrt(moving_var) + moving_mean
    y = answers.normalized_values(call_array, FUNCTION, x, moving_mean, moving_var, epsilon=0.1)
    answers.compare(FUNCTION, _factor(x, moving_mean, y), 1.0 / np.sqrt(moving_var + 0.1),
                    prop="with epsilon=0.1 the multiple of x - moving_mean must be 1 / sqrt(moving_var + 0.1), "
                         "the epsilon given", on="moving variances 0.05 to 0.2", focus=("eps_outside_sqrt",
                                                                                       "fixed_epsilon"),
                    named=_named(lambda out: _factor(x, moving_mean, out), x, moving_mean, moving_var, epsilon=0.1))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_applies_per_channel_gamma_and_beta(call_array):
    """Scales by gamma and shifts by beta, per channel."""
    moving_mean, moving_var = np.array([1.0, -1.0, 0.0]), np.array([2.0, 0.5, 1.0])
    x = _rng().normal(size=(6, 3)) * 2.0
    gamma, beta = np.array([2.0, 0.5, 1.5]), np.array([0.1, -1.0, 3.0])
    z = answers.normalized_values(call_array, FUNCTION, x, moving_mean, moving_var)
    y = answers.output_like_x(call_array, FUNCTION, x, moving_mean, moving_var, gamma=gamma, beta=beta)
    answers.compare(FUNCTION, y - (gamma * z + beta), np.zeros_like(x),
                    prop="the output with gamma and beta must be gamma * (the output without them) + beta, "
                         "per channel", on="a (6, 3) batch with gamma=[2, 0.5, 1.5] and beta=[0.1, -1, 3]",
                    scale=np.abs(y).max())


MAIN_CHECKS = (test_normalizes_with_the_moving_statistics, test_divides_by_the_standard_deviation,
               test_adds_epsilon_inside_the_square_root, test_applies_per_channel_gamma_and_beta)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is x's: the other checks compare it)."""
    moving_mean, moving_var = np.array([1.0, -1.0, 0.0]), np.array([2.0, 0.5, 1.0])
    x = _rng().normal(size=(5, 3)) * 2.0
    answer = answers.Answer.of(call_array(FUNCTION, x, moving_mean, moving_var, gamma=2.0, beta=1.0))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_leaves_its_inputs_unmodified(call_array):
    """Leaves x and the moving statistics as they were."""
    moving_mean, moving_var = np.array([0.5, -0.5]), np.array([2.0, 3.0])
    x = _rng().normal(size=(6, 2)) * 2.0 + 4.0
    answer = answers.Answer.of(call_array(FUNCTION, x, moving_mean, moving_var, epsilon=1e-3))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.assert_inputs_unmodified(FUNCTION, answer, [x, moving_mean, moving_var], ["x", "moving_mean", "moving_var"])
