"""population_statistics(batch_means, batch_vars, batch_sizes) -> (mean, var): precise BN's statistics.

Specification: from B batches' per-channel means and biased variances (B, C) and their sizes
(B,), the exact mean and biased variance (C,) of the union of the batches:
    mean = sum_b w_b * mean_b,   var = sum_b w_b * (var_b + (mean_b - mean)**2),   w_b = n_b / sum(n).
Inputs are left unmodified. Compared with the float64 reference (reference.population_statistics,
itself tested against np.mean / np.var of the concatenated batches) with rtol = atol = 1e-5.

The known mistakes (known_mistakes.population_statistics_mistakes): averaging the batch variances
(the between-batch term dropped) is named by the equal-sizes check, whose batch means differ;
equal weights for batches of different sizes is named by the unequal-sizes check; the two at
once (np.mean over the batches) is named by both. The side checks (float arrays, inputs
unmodified) score only when the answer is the reference or a known mistake (answers.py).

The batches of the checks have means that differ systematically, as the batches of a network's
layer do when the data are not shuffled, or come from different sources: only the exact formula
gives the variance of their union. (Ioffe and Szegedy's Algorithm 2 averages the batch variances
on purpose, times m / (m - 1): for batches drawn at random that estimates the population's
variance without bias. The exercise asks for the exact statistics of the batches given.)

Weights (2 points). The central mistake, averaging the batch variances (no between-batch term),
fails the spread check: 1.0, half of the exercise. Equal weights cost the size check, 0.5 (both
at once cost both, 1.5); not float arrays 0.25; inputs modified 0.25.
"""

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder.checks import answers

FUNCTION = "population_statistics"
NAMES = ("mean", "var")
ARGUMENTS = ("batch_means", "batch_vars", "batch_sizes")


def _batches(sizes, seed):
    """Statistics of len(sizes) batches of 3 channels whose means and variances differ from batch to batch."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(sizes), 3)) * np.array([1.0, 5.0, 0.5]) + np.array([0.0, 10.0, -2.0])
    variances = rng.uniform(0.5, 4.0, size=(len(sizes), 3)) * np.array([1.0, 9.0, 0.25])
    return means, variances, np.asarray(sizes, dtype=np.int64)   # counts, as a student passes them


def _judged(call_arrays, batches):
    answer = answers.Answer.of(call_arrays(FUNCTION, *batches))
    return (answer, reference.population_statistics(*batches),
            known_mistakes.population_statistics_mistakes(*batches), list(batches))


@pytest.mark.points(1.0)
def test_adds_the_spread_of_the_batch_means_to_the_variance(call_arrays):
    """Batches of equal size with different means: the union's variance includes the between-batch term."""
    answer, expected, mistakes, inputs = _judged(call_arrays, _batches([32, 32, 32, 32], seed=1))
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs,
                          focus={"averaged_variances", "unweighted_averaged_variances"}, names=NAMES)


@pytest.mark.points(0.5)
def test_weighs_each_batch_by_its_size(call_arrays):
    """Batches of different sizes (the last one short, as at the end of an epoch) weigh by their size."""
    answer, expected, mistakes, inputs = _judged(call_arrays, _batches([64, 64, 64, 7], seed=2))
    answers.assert_answer(FUNCTION, answer, expected, mistakes, inputs,
                          focus={"unweighted", "unweighted_averaged_variances"}, names=NAMES)


@pytest.mark.points(0.25)
def test_returns_float_arrays(call_arrays):
    """Returns (mean, var) as floating-point NumPy arrays (the other checks compare their shapes, (C,))."""
    batches = _batches([10, 20, 30], seed=3)
    answer, expected, mistakes, inputs = _judged(call_arrays, batches)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_float_arrays(FUNCTION, answer, NAMES)


@pytest.mark.points(0.25)
def test_leaves_its_inputs_unmodified(call_arrays):
    """Leaves batch_means, batch_vars and batch_sizes as they were."""
    batches = _batches([16, 48, 8], seed=4)
    answer, expected, mistakes, inputs = _judged(call_arrays, batches)
    answers.require_the_work(FUNCTION, answer, expected, mistakes, inputs)
    answers.assert_inputs_unmodified(FUNCTION, answer, batches, ARGUMENTS)
