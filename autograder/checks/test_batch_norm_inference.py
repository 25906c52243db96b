"""batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3) -> np.ndarray

Specification: BN's inference-mode forward pass, gamma * (x - moving_mean) / sqrt(moving_var +
epsilon) + beta, with the moving statistics it is given ((C,) arrays), never the batch's own;
x is (N, F) or (N, H, W, C); gamma and beta are scalars or per-channel; the default epsilon is
Keras' (1e-3); x is left unmodified. Compared with the float64 reference
(reference.batch_norm_inference) with rtol = atol = 1e-5, on batches whose own statistics are
far from the moving ones.

The known mistakes (known_mistakes.batch_norm_inference_mistakes), each named by the checks whose
property it breaks and accepted by the others: the batch's own statistics (the moving-statistics
check and the conv check); epsilon outside the square root, or the given epsilon ignored (the
epsilon check, which calls with the default and with epsilon=0.1 on moving variances near it);
the variance used as a standard deviation (shown by moving variances far from 1). The side
checks (a float array, x unmodified) score only when the output is the reference or a known
mistake: x returned unchanged earns nothing (answers.py).

Weights (2 points). The central mistake, normalizing with the batch's own statistics, fails the
moving-statistics check and the conv check: 1.0 + 0.25 = 1.25. The others cost one check each:
epsilon outside the square root, the paper's 1e-5 as the default or the given epsilon ignored
0.25; the variance as a standard deviation 0.25; not a float array 0.25; inputs modified 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "batch_norm_inference"


def _rng():
    return np.random.default_rng(11)


def _judged(call_array, x, moving_mean, moving_var, **kwargs):
    """batch_norm_inference(x, moving_mean, moving_var, **kwargs) as an Answer, with the reference
    and the known mistakes for the same call."""
    args = {"gamma": 1.0, "beta": 0.0, "epsilon": reference.KERAS_BN_EPSILON, **kwargs}
    answer = answers.Answer.of(call_array(FUNCTION, x, moving_mean, moving_var, **kwargs))
    return (answer, reference.batch_norm_inference(x, moving_mean, moving_var, **args),
            known_mistakes.batch_norm_inference_mistakes(x, moving_mean, moving_var, **args),
            [x, moving_mean, moving_var, *kwargs.values()])


@pytest.mark.points(1.0)
def test_normalizes_with_the_moving_statistics(call_array):
    """Uses moving_mean and moving_var, not the batch's own statistics, then gamma and beta."""
    moving_mean, moving_var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 9.0])
    x = _rng().normal(size=(10, 3)) * np.array([0.5, 3.0, 1.0]) + np.array([6.0, 2.0, -4.0])
    gamma, beta = np.array([2.0, 0.5, 1.5]), np.array([0.1, -1.0, 3.0])
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var,
                                                 gamma=gamma, beta=beta, epsilon=1e-3)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"batch_statistics"})


@pytest.mark.points(0.25)
def test_adds_epsilon_inside_the_square_root(call_array):
    """Divides by sqrt(moving_var + epsilon): with Keras' default 1e-3, and with epsilon=0.1 when given it."""
    moving_mean, moving_var = np.array([0.0, 0.1, -0.1]), np.array([1e-4, 1e-3, 4e-3])
    x = _rng().normal(size=(8, 3)) * 0.05
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var)
    paper_epsilon = reference.batch_norm_inference(x, moving_mean, moving_var, epsilon=reference.PAPER_BN_EPSILON)
    if known_mistakes.close(answer.parts, paper_epsilon):
        pytest.fail("the default epsilon is 1e-5; batch_norm_inference's default is Keras' 1e-3")
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"eps_outside_sqrt"})
    moving_var = np.array([0.05, 0.1, 0.2])       # variances of the order of the epsilon given
    x = _rng().normal(size=(8, 3)) * np.sqrt(moving_var) + moving_mean
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var, epsilon=0.1)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"eps_outside_sqrt", "fixed_epsilon"})


@pytest.mark.points(0.25)
def test_divides_by_the_standard_deviation(call_array):
    """Divides by the square root of the variance, per channel of (N, H, W, C) activations."""
    moving_mean, moving_var = np.array([3.0, -1.0]), np.array([25.0, 0.04])
    x = _rng().normal(size=(2, 3, 3, 2)) * np.array([5.0, 0.2]) + moving_mean
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var, gamma=1.5, beta=-0.5,
                                                 epsilon=1e-3)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"var_as_std", "batch_statistics"})


@pytest.mark.points(0.25)
def test_returns_a_float_array(call_array):
    """Returns a floating-point NumPy array (its shape is x's: the other checks compare it)."""
    moving_mean, moving_var = np.array([1.0, -1.0, 0.0]), np.array([2.0, 0.5, 1.0])
    x = _rng().normal(size=(5, 3)) * 2.0
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var, gamma=2.0, beta=1.0)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_float_arrays(FUNCTION, answer, ["the output"])


@pytest.mark.points(0.25)
def test_leaves_its_inputs_unmodified(call_array):
    """Leaves x and the moving statistics as they were."""
    moving_mean, moving_var = np.array([0.5, -0.5]), np.array([2.0, 3.0])
    x = _rng().normal(size=(6, 2)) * 2.0 + 4.0
    answer, expected, mistakes, inputs = _judged(call_array, x, moving_mean, moving_var, epsilon=1e-3)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, inputs, ["x", "moving_mean", "moving_var"])
