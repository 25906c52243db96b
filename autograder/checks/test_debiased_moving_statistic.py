"""debiased_moving_statistic(moving, initial, momentum, steps) -> np.ndarray: a moving average without its start.

Specification: after ``steps`` updates new = momentum * moving + (1 - momentum) * batch, what is
left of the moving statistic's initial value is momentum**steps * initial, and the batch
statistics' weights sum to 1 - momentum**steps. The function returns
    (moving - momentum**steps * initial) / (1 - momentum**steps),
the weighted average of the batch statistics alone. steps >= 1; the arguments broadcast
(moving (C,) or (L, C), initial a scalar or (C,)); the inputs are left unmodified. Compared with
the float64 reference (reference.debiased_moving_statistic, itself tested against Keras' update
step by step) with rtol = atol = 1e-5.

The known mistakes (known_mistakes.debiased_moving_statistic_mistakes), each named by one check and
accepted by the others: Adam's bias correction alone, moving / (1 - momentum**steps), which is
right only for an initial value of 0 (the check on a moving variance that started at 1.0);
subtracting what is left of the initial value without dividing by 1 - momentum**steps;
momentum**(steps - 1) instead of momentum**steps. The side check (inputs unmodified, arguments
that broadcast) scores only when the answer is the reference or a known mistake (answers.py).

Weights (2 points). The central mistake, Adam's correction alone, fails the non-zero-start check:
1.0, half of the exercise. Not renormalizing costs 0.5, momentum**(steps - 1) 0.25, inputs
modified 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "debiased_moving_statistic"
ARGUMENTS = ("moving", "initial", "momentum", "steps")


def _judged(call_array, moving, initial, momentum, steps):
    """debiased_moving_statistic(...) as an Answer, with the reference and the known mistakes for the same call."""
    answer = answers.Answer.of(call_array(FUNCTION, moving, initial, momentum, steps))
    return (answer, reference.debiased_moving_statistic(moving, initial, momentum, steps),
            known_mistakes.debiased_moving_statistic_mistakes(moving, initial, momentum, steps),
            [moving, initial, momentum, steps])


@pytest.mark.points(1.0)
def test_removes_what_is_left_of_a_non_zero_initial_value(call_array):
    """A moving variance that started at 1.0, after 47 updates at momentum 0.99: 0.99**47 = 62% of it is left."""
    steps, momentum = 47, 0.99
    batch_average = np.array([0.002, 0.004, 0.01, 0.05])        # what the batches' variances average to
    left = momentum ** steps
    moving = left * 1.0 + (1 - left) * batch_average           # as Keras' moving variance would hold it
    answer, expected, mistakes, inputs = _judged(call_array, moving, 1.0, momentum, steps)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"adam_only"})


@pytest.mark.points(0.5)
def test_renormalizes_by_the_weight_of_the_batches(call_array):
    """Divides by 1 - momentum**steps after removing the initial value (per-channel initial values, momentum 0.9)."""
    moving = np.array([0.8, -0.3, 2.1])
    answer, expected, mistakes, inputs = _judged(call_array, moving, np.array([0.5, 0.0, 1.0]), 0.9, 5)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"not_renormalized"})


@pytest.mark.points(0.25)
def test_counts_one_factor_of_momentum_per_update(call_array):
    """After 3 updates at momentum 0.8 the initial value weighs 0.8**3."""
    answer, expected, mistakes, inputs = _judged(call_array, np.array([1.5, 2.5]), 2.0, 0.8, 3)
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs, focus={"steps_minus_one"})


@pytest.mark.points(0.25)
def test_broadcasts_and_leaves_its_inputs_unmodified(call_array):
    """Moving statistics of two layers (2, 3) with per-channel initial values (3,); the inputs stay as they were."""
    moving, initial = np.array([[0.4, 0.9, 1.2], [0.1, 0.6, 0.3]]), np.array([1.0, 0.0, 0.5])
    answer, expected, mistakes, inputs = _judged(call_array, moving, initial, 0.95, 10)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, inputs, ARGUMENTS)
