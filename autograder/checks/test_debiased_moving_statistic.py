"""debiased_moving_statistic(moving, initial, momentum, steps) -> np.ndarray: a moving average without its start.

Specification: after ``steps`` updates new = momentum * moving + (1 - momentum) * batch, what is
left of the moving statistic's initial value is momentum**steps * initial, and the batch
statistics' weights sum to 1 - momentum**steps. The function returns
    (moving - momentum**steps * initial) / (1 - momentum**steps),
the weighted average of the batch statistics alone. steps >= 1; the arguments broadcast
(moving (C,) or (L, C), initial a scalar or (C,)); the inputs are left unmodified. The float64
reference is reference.debiased_moving_statistic, itself tested against Keras' update step by step.

One property per check, each read from the quantity it is about (answers.py). The answer's two
weights are read from its own outputs: a = how much the result rises when moving rises by 1, and
b = how much it falls when initial rises by 1 (for the formula, 1 / (1 - momentum**steps) and
momentum**steps / (1 - momentum**steps)).
- what is left of the initial value is removed: b / a, the share of the initial value removed,
  must be what is left of it after some number of updates, a power of momentum (which power is the
  last check's property), on a moving variance that started at 1.0;
- the renormalization: a - b = 1, i.e. raising moving and initial together by 1 raises the result
  by 1, since the weights of the batches and of the initial value sum to 1;
- one factor of momentum per update: b / a = momentum**steps;
- the arguments broadcast and are left unmodified (a side check).
Named mistakes (known_mistakes.debiased_moving_statistic_mistakes) are recognised on the same
quantities.

Weights (2 points). The central mistake, Adam's correction alone (right only for an initial
value of 0), fails the removal check: 1.0, half of the exercise (and the renormalization and the
power too). Not renormalizing costs 0.5, momentum**(steps - 1) 0.25, inputs modified 0.25. The side
check scores when the answer is substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes
from autograder.checks import answers

FUNCTION = "debiased_moving_statistic"
ARGUMENTS = ("moving", "initial", "momentum", "steps")


def _value(call_array, moving, initial, momentum, steps):
    answer = answers.Answer.of(call_array(FUNCTION, moving, initial, momentum, steps))
    answers.require_an_answer(FUNCTION, answer, [moving, initial])
    answers.require_shapes(FUNCTION, answer, [np.broadcast_shapes(np.shape(moving), np.shape(initial))])
    return answer.parts[0]


def _weights(function, moving, initial, momentum, steps):
    """(a, b): the rise of function(...) per unit of moving, and its fall per unit of initial."""
    base = function(moving, initial, momentum, steps)
    return (function(moving + 1.0, initial, momentum, steps) - base,
            base - function(moving, np.asarray(initial, np.float64) + 1.0, momentum, steps))


def _share_removed(function, moving, initial, momentum, steps):
    a, b = _weights(function, moving, initial, momentum, steps)
    with np.errstate(all="ignore"):
        return b / a


def _named_shares(moving, initial, momentum, steps):
    """{key: (description, share removed)} of each named mistake."""
    def mistake(key):
        return lambda *args: known_mistakes.debiased_moving_statistic_mistakes(*args)[key][1]
    table = known_mistakes.debiased_moving_statistic_mistakes(moving, initial, momentum, steps)
    return {key: (description, _share_removed(mistake(key), moving, initial, momentum, steps))
            for key, (description, _) in table.items()}


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_removes_what_is_left_of_a_non_zero_initial_value(call_array):
    """A moving variance that started at 1.0, after 47 updates at momentum 0.99: 0.99**47 = 62% of it is left."""
    steps, momentum = 47, 0.99
    batch_average = np.array([0.002, 0.004, 0.01, 0.05])        # what the batches' variances average to
    left = momentum ** steps
    moving = left * 1.0 + (1 - left) * batch_average           # as Keras' moving variance would hold it
    share = _share_removed(lambda *args: _value(call_array, *args), moving, 1.0, momentum, steps)
    power = np.round(np.log(np.clip(share, 1e-300, None)) / np.log(momentum))
    if np.all((power >= 1) & (power <= 2 * steps)) and answers.within(share, momentum ** power):
        return      # what is left after some count of updates: which count is the last check's property
    answers.compare(FUNCTION, share, np.full(4, left),
                    prop="the result must fall by momentum**steps / (1 - momentum**steps) for each unit of initial "
                         "value, i.e. remove what is left of it (shown: the share of the initial value removed, "
                         "relative to the weight on moving)",
                    on="a moving variance that started at 1.0, after 47 updates at momentum 0.99",
                    named=_named_shares(moving, 1.0, momentum, steps), focus=("adam_only",))


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_renormalizes_by_the_weight_of_the_batches(call_array):
    """Divides by 1 - momentum**steps: raising moving and initial together by 1 raises the result by 1."""
    moving, initial = np.array([0.8, -0.3, 2.1]), np.array([0.5, 0.0, 1.0])
    rise = _value(call_array, moving + 1.0, initial + 1.0, 0.9, 5) - _value(call_array, moving, initial, 0.9, 5)

    def named_rise(out):
        return out(moving + 1.0, initial + 1.0) - out(moving, initial)
    named = {key: (description, named_rise(lambda m, i, key=key: known_mistakes.debiased_moving_statistic_mistakes(
        m, i, 0.9, 5)[key][1])) for key, (description, _) in
        known_mistakes.debiased_moving_statistic_mistakes(moving, initial, 0.9, 5).items()}
    answers.compare(FUNCTION, rise, np.ones(3),
                    prop="raising moving and initial by 1 together must raise the result by 1: the batches' "
                         "weights, 1 - momentum**steps, and the initial value's add up to 1, so the result is "
                         "an average (shown: the rise)",
                    on="moving [0.8, -0.3, 2.1], initial [0.5, 0, 1], momentum 0.9, 5 steps", named=named,
                    focus=("not_renormalized",))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_counts_one_factor_of_momentum_per_update(call_array):
    """After 3 updates at momentum 0.8 the initial value weighs 0.8**3."""
    moving = np.array([1.5, 2.5])
    share = _share_removed(lambda *args: _value(call_array, *args), moving, 2.0, 0.8, 3)
    answers.compare(FUNCTION, share, np.full(2, 0.8 ** 3),
                    prop="after 3 updates at momentum 0.8 the initial value weighs 0.8**3 (shown: the share of "
                         "the initial value removed, relative to the weight on moving)",
                    on="moving [1.5, 2.5], initial 2.0, momentum 0.8, 3 steps",
                    named=_named_shares(moving, 2.0, 0.8, 3), focus=("steps_minus_one",))


MAIN_CHECKS = (test_removes_what_is_left_of_a_non_zero_initial_value, test_renormalizes_by_the_weight_of_the_batches,
               test_counts_one_factor_of_momentum_per_update)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_broadcasts_and_leaves_its_inputs_unmodified(call_array):
    """Moving statistics of two layers (2, 3) with per-channel initial values (3,); the inputs stay as they were."""
    moving, initial = np.array([[0.4, 0.9, 1.2], [0.1, 0.6, 0.3]]), np.array([1.0, 0.0, 0.5])
    answer = answers.Answer.of(call_array(FUNCTION, moving, initial, 0.95, 10))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_array)
    answers.require_shapes(FUNCTION, answer, [moving.shape])      # broadcast: one row per layer
    answers.assert_inputs_unmodified(FUNCTION, answer, [moving, initial], ["moving", "initial"])
