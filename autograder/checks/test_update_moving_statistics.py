"""update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99) -> (new_mean, new_var)

Specification: one step of BN's moving averages in Keras' convention, new = momentum * moving +
(1 - momentum) * batch, for the mean and the variance, per channel ((C,) arrays); the default
momentum is Keras' (0.99); the inputs are left unmodified. Compared with the float64 reference
(reference.update_moving_statistics), on batch statistics far from the moving ones so that every
weighting shows.

One property per check (answers.py): the new mean with the default momentum; the new variance with
the default momentum (so a slip in one of the two formulas costs that one's check); the momentum
given (momentum=0.9), read from both outputs; the inputs left unmodified. Named mistakes
(known_mistakes.update_moving_statistics_mistakes): momentum on the batch instead of the moving value
(PyTorch's convention), momentum fixed at 0.99 whatever it is given.

Weights (1 point). The central mistake, the swapped (PyTorch) convention, fails the three momentum
checks: 0.75. Momentum fixed at 0.99 costs 0.25, a slip in one formula 0.25 (or 0.5 with the
momentum check), inputs modified 0.25. The side check scores when the answer is substantive (answers.py).
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "update_moving_statistics"
NAMES = ("new_mean", "new_var")
ARGUMENTS = ("moving_mean", "moving_var", "batch_mean", "batch_var")
ON = "moving statistics near (0, 1) and batch statistics far from them"


def _statistics():
    """Moving statistics near a fresh layer's (0, 1) and batch statistics far from them."""
    moving_mean, moving_var = np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0, 0.5])
    batch_mean, batch_var = np.array([40.0, -25.0, 10.0]), np.array([90.0, 16.0, 300.0])
    return moving_mean, moving_var, batch_mean, batch_var


def _updated(call_arrays, **kwargs):
    """(answer, reference, named mistakes) for the statistics above."""
    statistics = _statistics()
    momentum = kwargs.get("momentum", reference.KERAS_BN_MOMENTUM)
    answer = answers.Answer.of(call_arrays(FUNCTION, *statistics, **kwargs))
    answers.require_an_answer(FUNCTION, answer, statistics)
    answers.require_shapes(FUNCTION, answer, [(3,), (3,)], NAMES)
    return (answer, reference.update_moving_statistics(*statistics, momentum),
            known_mistakes.update_moving_statistics_mistakes(*statistics, momentum))


def _one_part(call_arrays, part, prop):
    answer, right, mistakes = _updated(call_arrays)
    answers.compare(FUNCTION, answer.parts[part], right[part], prop=prop, on=ON + " (momentum 0.99)",
                    named={key: (description, out[part]) for key, (description, out) in mistakes.items()},
                    focus=("swapped_momentum",))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_updates_the_mean_with_the_default_momentum(call_arrays):
    """With the default momentum 0.99: new_mean = 0.99 * moving_mean + 0.01 * batch_mean (Keras' convention)."""
    _one_part(call_arrays, 0, "new_mean must be momentum * moving_mean + (1 - momentum) * batch_mean")


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_updates_the_variance_with_the_default_momentum(call_arrays):
    """With the default momentum 0.99: new_var = 0.99 * moving_var + 0.01 * batch_var."""
    _one_part(call_arrays, 1, "new_var must be momentum * moving_var + (1 - momentum) * batch_var")


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_uses_the_momentum_it_is_given(call_arrays):
    """With momentum=0.9 (PyTorch's momentum=0.1): new = 0.9 * moving + 0.1 * batch."""
    answer, right, mistakes = _updated(call_arrays, momentum=0.9)
    answers.compare(FUNCTION, np.concatenate(answer.parts), np.concatenate(right),
                    prop="with momentum=0.9, new = 0.9 * moving + 0.1 * batch (shown: new_mean, then new_var)",
                    on=ON, named={key: (description, np.concatenate(out)) for key, (description, out) in
                                  mistakes.items()}, focus=("fixed_momentum", "swapped_momentum"))


MAIN_CHECKS = (test_updates_the_mean_with_the_default_momentum, test_updates_the_variance_with_the_default_momentum,
               test_uses_the_momentum_it_is_given)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_leaves_its_inputs_unmodified(call_arrays):
    """Returns new arrays and leaves the four statistics it was given as they were."""
    statistics = _statistics()
    answer = answers.Answer.of(call_arrays(FUNCTION, *statistics, momentum=0.8))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_arrays)
    answers.assert_inputs_unmodified(FUNCTION, answer, statistics, ARGUMENTS)
