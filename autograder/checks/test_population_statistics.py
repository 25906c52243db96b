"""population_statistics(batch_means, batch_vars, batch_sizes) -> (mean, var): precise BN's statistics.

Specification: from B batches' per-channel means and biased variances (B, C) and their sizes
(B,), the exact mean and biased variance (C,) of the union of the batches:
    mean = sum_b w_b * mean_b,   var = sum_b w_b * (var_b + (mean_b - mean)**2),   w_b = n_b / sum(n).
Inputs are left unmodified. The float64 reference is reference.population_statistics, itself
tested against np.mean / np.var of the concatenated batches.

The batches of the checks have means that differ systematically, as the batches of a network's
layer do when the data are not shuffled, or come from different sources: only the exact formula
gives the variance of their union. (Ioffe and Szegedy's Algorithm 2 averages the batch variances
on purpose, times m / (m - 1): for batches drawn at random that estimates the population's
variance without bias. The exercise asks for the exact statistics of the batches given; Algorithm
2 is a named mistake.)

One property per check, each read from the quantity it is about (answers.py):
- the between-batch term: batches of equal size (so the weights do not enter) whose means differ:
  the variance of the union, within plus between (or that times n / (n - 1): the unbiased
  variance is the biased-variance check's property);
- the mean: batches of equal size, the mean of the batch means;
- the weights: batches of different sizes (the last one short, as at the end of an epoch) whose
  size-weighted mean is 0 (so how the between-batch term subtracts the mean does not enter): the
  mean and the variance weigh each batch by its size (the variance is also accepted times
  n / (n - 1), or without its between-batch term: those are the other checks' properties);
- the biased variance of the union: batches of equal size whose means are all 0, whose union's
  biased variance is the average of their variances;
- a side check: float arrays, inputs unmodified.
Named mistakes (known_mistakes.population_statistics_mistakes) are recognised on the same quantities.

Weights (2 points). The central mistake, averaging the batch variances (no between-batch term),
fails the spread check: 1.0, half of the exercise. Equal weights cost the weights check, 0.25
(with the variances also averaged, np.mean over the batches, 1.25); the unbiased variance of the union 0.25; the paper's
Algorithm 2 1.5 (the spread, the weights and the biased variance: it keeps the mean and the side
check); the side check 0.25. The side check scores when the answer is substantive (answers.py).
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


def _collapsed(batches):
    """The same batches with every batch mean moved to 0: no spread between them, and no mean for
    the between-batch term to subtract."""
    means, variances, sizes = batches
    return np.zeros_like(means), variances, sizes


def _answer(call_arrays, batches) -> answers.Answer:
    answer = answers.Answer.of(call_arrays(FUNCTION, *batches))
    answers.require_an_answer(FUNCTION, answer, list(batches))
    answers.require_shapes(FUNCTION, answer, [(3,), (3,)], NAMES)
    return answer


def _named(quantity, *batch_sets):
    """{key: (description, quantity of that mistake's answers on ``batch_sets``)}."""
    tables = [known_mistakes.population_statistics_mistakes(*batches) for batches in batch_sets]
    return {key: (description, quantity(*(table[key][1] for table in tables)))
            for key, (description, _) in tables[0].items()}


def _total(batches) -> float:
    return float(np.sum(batches[2]))


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_adds_the_spread_of_the_batch_means_to_the_variance(call_arrays):
    """Batches of equal size with different means: the union's variance includes the between-batch term."""
    batches = _batches([32, 32, 32, 32], seed=1)
    answer = _answer(call_arrays, batches)
    var = reference.population_statistics(*batches)[1]
    n = _total(batches)
    if answers.within(answer.parts[1], var * n / (n - 1)):
        return      # the unbiased variance of the union: the biased-variance check's property
    mistakes = known_mistakes.population_statistics_mistakes(*batches)
    answers.compare(FUNCTION, answer.parts[1], var,
                    prop="the variance of the union must be the average within the batches plus the spread of the "
                         "batch means between them, sum_b w_b * (var_b + (mean_b - mean)**2)",
                    on="4 batches of 32 with different means",
                    named={key: (description, out[1]) for key, (description, out) in mistakes.items()},
                    focus=("algorithm_2", "averaged_variances", "unweighted_averaged_variances"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_averages_the_batch_means(call_arrays):
    """Batches of equal size: the mean is the average of the batch means."""
    batches = _batches([16, 16, 16], seed=5)
    answer = _answer(call_arrays, batches)
    answers.compare(FUNCTION, answer.parts[0], reference.population_statistics(*batches)[0],
                    prop="the mean of batches of equal size must be the average of their means",
                    on="3 batches of 16")


def _centred_on_zero(batches):
    """The same batches with their means shifted so that the size-weighted overall mean is 0: then
    (mean_b - mean) is mean_b, so how the between-batch term is written does not enter, while equal
    weights still give another mean (the sizes differ)."""
    means, variances, sizes = batches
    return means - reference.population_statistics(*batches)[0], variances, sizes


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_weighs_each_batch_by_its_size(call_arrays):
    """Batches of different sizes (the last one short, as at the end of an epoch) weigh by their size."""
    batches = _centred_on_zero(_batches([64, 64, 64, 7], seed=2))
    answer = _answer(call_arrays, batches)
    mean, var = reference.population_statistics(*batches)
    n = _total(batches)
    within_only = reference.population_statistics(*batches, between_batches=False)[1]
    for other in (var * n / (n - 1), within_only):    # the biased-variance check's and the spread check's
        if answers.within(answer.parts[1], other):
            var = other
    answers.compare(FUNCTION, np.concatenate(answer.parts), np.concatenate([mean, var]),
                    prop="each batch must weigh n_b / sum(n) in the mean and in the variance (shown: mean, then var)",
                    on="batches of 64, 64, 64 and 7 whose weighted mean is 0", named=_named(np.concatenate, batches),
                    focus=("unweighted", "unweighted_averaged_variances"))


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_uses_the_biased_variance_of_the_union(call_arrays):
    """The union's variance divides by the total count (biased), not by n - 1, nor m / (m - 1) per batch."""
    batches = _collapsed(_batches([8, 8, 8, 8], seed=6))
    answer = _answer(call_arrays, batches)
    answers.compare(FUNCTION, answer.parts[1], reference.population_statistics(*batches)[1],
                    prop="the union's variance must be the biased one (divide by the total count n): for batches of "
                         "equal size and equal means, the average of their variances",
                    on="4 batches of 8 whose means are all 0", named=_named(lambda out: out[1], batches),
                    focus=("unbiased_union", "algorithm_2"))


MAIN_CHECKS = (test_adds_the_spread_of_the_batch_means_to_the_variance, test_averages_the_batch_means,
               test_weighs_each_batch_by_its_size, test_uses_the_biased_variance_of_the_union)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_float_arrays_and_leaves_its_inputs_unmodified(call_arrays):
    """Returns (mean, var) as floating-point NumPy arrays and leaves its three arguments as they were."""
    batches = _batches([16, 48, 8], seed=4)
    answer = answers.Answer.of(call_arrays(FUNCTION, *batches))
    answers.require_a_main_check(FUNCTION, MAIN_CHECKS, call_arrays)
    answers.assert_float_arrays(FUNCTION, answer, NAMES)
    answers.assert_inputs_unmodified(FUNCTION, answer, batches, ARGUMENTS)
