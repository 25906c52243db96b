"""update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99) -> (new_mean, new_var)

Specification: one step of BN's moving averages in Keras' convention, new = momentum * moving +
(1 - momentum) * batch, for the mean and the variance, per channel ((C,) arrays); the default
momentum is Keras' (0.99); the inputs are left unmodified. Compared with the float64 reference
(reference.update_moving_statistics) with rtol = atol = 1e-5, on batch statistics far from the
moving ones so that every weighting shows.

The known mistakes (known_mistakes.update_moving_statistics_mistakes), each named by one check and
accepted by the others: momentum on the batch instead of the moving value (PyTorch's convention;
the default-momentum check, and the momentum=0.9 check too) and momentum fixed at 0.99 whatever
it is given (the momentum=0.9 check). The side check (inputs unmodified) scores only when the
answer is the reference or a known mistake: returning the moving statistics unchanged earns
nothing (answers.py).

Weights (1 point). The central mistake, the swapped (PyTorch) convention, fails both momentum
checks: 0.5 + 0.25 = 0.75. Momentum fixed at 0.99 costs 0.25, inputs modified 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "update_moving_statistics"
NAMES = ("new_mean", "new_var")
ARGUMENTS = ("moving_mean", "moving_var", "batch_mean", "batch_var")


def _statistics():
    """Moving statistics near a fresh layer's (0, 1) and batch statistics far from them."""
    moving_mean, moving_var = np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0, 0.5])
    batch_mean, batch_var = np.array([40.0, -25.0, 10.0]), np.array([90.0, 16.0, 300.0])
    return moving_mean, moving_var, batch_mean, batch_var


def _judged(call_arrays, statistics, **kwargs):
    momentum = kwargs.get("momentum", reference.KERAS_BN_MOMENTUM)
    answer = answers.Answer.of(call_arrays(FUNCTION, *statistics, **kwargs))
    return (answer, reference.update_moving_statistics(*statistics, momentum),
            known_mistakes.update_moving_statistics_mistakes(*statistics, momentum), list(statistics))


@pytest.mark.points(0.5)
def test_keeps_momentum_of_the_moving_value(call_arrays):
    """With the default momentum 0.99: new = 0.99 * moving + 0.01 * batch (Keras' convention)."""
    answer, expected, mistakes, inputs = _judged(call_arrays, _statistics())
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"swapped_momentum"}, names=NAMES)


@pytest.mark.points(0.25)
def test_uses_the_momentum_it_is_given(call_arrays):
    """With momentum=0.9 (PyTorch's momentum=0.1): new = 0.9 * moving + 0.1 * batch."""
    answer, expected, mistakes, inputs = _judged(call_arrays, _statistics(), momentum=0.9)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"fixed_momentum", "swapped_momentum"},
                          names=NAMES)


@pytest.mark.points(0.25)
def test_leaves_its_inputs_unmodified(call_arrays):
    """Returns new arrays and leaves the four statistics it was given as they were."""
    statistics = _statistics()
    answer, expected, mistakes, inputs = _judged(call_arrays, statistics, momentum=0.8)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, statistics, ARGUMENTS)
