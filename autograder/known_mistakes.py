"""The known mistakes of each NumPy exercise, their codes, and the helpers that match an answer to them.

Each exercise's ``*_mistakes`` function returns {key: (description, output)}: the reference formula
(reference.py) with one thing wrong, on the given input. A check compares an answer with them
(``matching_mistake``) to name the mistake, and carries its code (``mistake_code``) into results.json.
"""

import numpy as np

from autograder.reference import (
    KERAS_BN_EPSILON,
    KERAS_BN_MOMENTUM,
    PAPER_BN_EPSILON,
    batch_norm,
    batch_norm_backward,
    batch_norm_inference,
    group_norm,
    group_norm_backward,
    population_statistics,
    update_moving_statistics,
)

# Each exercise's function below returns {key: (description, output)}: the formula with one thing
# wrong (its output has the shape of the exercise's output: an array or a tuple of arrays).

def batch_norm_mistakes(x, gamma, beta, epsilon):
    """manual_batch_norm's known mistakes on this input."""
    x = np.asarray(x, dtype=np.float64)
    every_axis = tuple(range(x.ndim))
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = {
            "ddof1": ("variance computed with ddof=1 (unbiased); batch norm uses the biased variance "
                      "(ddof=0, np.var's default)", batch_norm(x, gamma, beta, epsilon, ddof=1)),
            "eps_outside_sqrt": ("epsilon added outside the square root; it belongs inside: "
                                 "sqrt(var + epsilon)", batch_norm(x, gamma, beta, epsilon, eps_inside_sqrt=False)),
            "no_epsilon": ("epsilon left out: a feature with variance 0 then divides by zero",
                           batch_norm(x, gamma, beta, 0.0)),
            "all_elements": ("statistics taken over all elements at once instead of per feature",
                             batch_norm(x, gamma, beta, epsilon, axes=every_axis)),
            "gamma_beta_swapped": ("gamma and beta swapped: gamma scales, beta shifts",
                                   batch_norm(x, beta, gamma, epsilon)),
            "no_scale_shift": ("gamma and beta not applied", batch_norm(x, 1.0, 0.0, epsilon)),
        }
        if x.ndim == 2:
            variants["per_sample"] = ("statistics taken per sample (axis=1) instead of per feature (axis=0)",
                                      batch_norm(x, gamma, beta, epsilon, axes=(1,)))
        if x.ndim == 4:
            variants["per_position"] = ("statistics taken over axis 0 only, i.e. per position; for conv "
                                        "activations (N, H, W, C) take them per channel, over axes (0, 1, 2)",
                                        batch_norm(x, gamma, beta, epsilon, axes=(0,)))
            variants["nchw"] = ("statistics taken over axes (0, 2, 3) as for NCHW; Keras is NHWC, the channel "
                                "is the last axis", _nchw_mistake(x, gamma, beta, epsilon))
            variants["per_sample"] = ("statistics taken per sample (over axes 1, 2, 3) instead of per channel "
                                      "over the batch (axes 0, 1, 2)",
                                      batch_norm(x, gamma, beta, epsilon, axes=(1, 2, 3)))
        if epsilon != PAPER_BN_EPSILON:
            variants["fixed_epsilon"] = (f"it uses epsilon {PAPER_BN_EPSILON:g} whatever epsilon it is given: "
                                         "use the epsilon argument", batch_norm(x, gamma, beta, PAPER_BN_EPSILON))
    return variants


def _nchw_mistake(x, gamma, beta, epsilon):
    # Treats axis 1 as the channel: statistics over (0, 2, 3), gamma/beta broadcast on the last axis
    # only when they are scalars (per-channel arrays would not even broadcast, which also shows).
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    try:
        return np.asarray(gamma) * (x - mean) / np.sqrt(var + epsilon) + np.asarray(beta)
    except ValueError:
        return np.full_like(x, np.nan)


def batch_norm_backward_mistakes(dout, x, gamma, epsilon):
    """batch_norm_backward's known mistakes on this input; each output is (dx, dgamma, dbeta)."""
    variants = {
        "constant_statistics": (
            "dx = dout * gamma / sigma treats the batch mean and variance as constants; they are computed "
            "from x, so the gradient also flows through them: dx needs the path through mu and the path "
            "through sigma^2",
            batch_norm_backward(dout, x, gamma, epsilon, mean_path=False, variance_path=False)),
        "no_mean_path": (
            "dx leaves out the path through the batch mean: it subtracts x_hat * mean(dx_hat * x_hat) but "
            "not mean(dx_hat)",
            batch_norm_backward(dout, x, gamma, epsilon, mean_path=False)),
        "no_variance_path": (
            "dx leaves out the path through the batch variance: it subtracts mean(dx_hat) but not "
            "x_hat * mean(dx_hat * x_hat)",
            batch_norm_backward(dout, x, gamma, epsilon, variance_path=False)),
        "dgamma_without_x_hat": (
            "dgamma = sum(dout) leaves out x_hat; gamma multiplies x_hat, so dgamma = sum(dout * x_hat)",
            batch_norm_backward(dout, x, gamma, epsilon, dgamma_from_x_hat=False)),
    }
    if np.ndim(x) == 4:
        variants["batch_axis_only"] = (
            "the sums and means are taken over the batch axis only (axis=0); for conv activations "
            "(N, H, W, C) take them per channel, over axes (0, 1, 2), so dgamma and dbeta have shape (C,)",
            batch_norm_backward(dout, x, gamma, epsilon, axes=(0,)))
    if epsilon != PAPER_BN_EPSILON:
        variants["fixed_epsilon"] = (
            f"it uses epsilon {PAPER_BN_EPSILON:g} whatever epsilon it is given: use the epsilon argument "
            "(it is part of s = sqrt(sigma^2 + epsilon), in the forward pass and so in every gradient)",
            batch_norm_backward(dout, x, gamma, PAPER_BN_EPSILON))
    return variants


def update_moving_statistics_mistakes(moving_mean, moving_var, batch_mean, batch_var, momentum):
    """update_moving_statistics's known mistakes on this input; each output is (new_mean, new_var)."""
    return {
        "swapped_momentum": (
            "momentum weighs the new batch here; in Keras' convention it weighs the old moving value: "
            "new = momentum * moving + (1 - momentum) * batch (PyTorch's momentum=0.1 is Keras' 0.9)",
            update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum, swapped=True)),
        "fixed_momentum": (
            f"it uses momentum {KERAS_BN_MOMENTUM} whatever momentum it is given: use the momentum argument",
            update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, KERAS_BN_MOMENTUM)),
    }


def batch_norm_inference_mistakes(x, moving_mean, moving_var, gamma, beta, epsilon):
    """batch_norm_inference's known mistakes on this input."""
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = {
            "batch_statistics": (
                "it normalizes with the batch's own mean and variance; at inference BN uses the moving "
                "statistics it was given, so each example's output does not depend on the rest of the batch",
                batch_norm(x, gamma, beta, epsilon)),
            "eps_outside_sqrt": (
                "epsilon added outside the square root; it belongs inside: sqrt(moving_var + epsilon)",
                batch_norm_inference(x, moving_mean, moving_var, gamma, beta, epsilon, eps_inside_sqrt=False)),
            "var_as_std": (
                "it divides by the variance as if it were the standard deviation; divide by "
                "sqrt(moving_var + epsilon)",
                batch_norm_inference(x, moving_mean, moving_var, gamma, beta, epsilon, var_as_std=True)),
        }
        if epsilon != KERAS_BN_EPSILON:
            variants["fixed_epsilon"] = (
                f"it uses epsilon {KERAS_BN_EPSILON:g} whatever epsilon it is given: use the epsilon argument",
                batch_norm_inference(x, moving_mean, moving_var, gamma, beta, KERAS_BN_EPSILON))
    return variants


def population_statistics_mistakes(batch_means, batch_vars, batch_sizes):
    """population_statistics's known mistakes on this input; each output is (mean, var)."""
    return {
        "averaged_variances": (
            "the variance is the average of the batch variances, which drops the between-batch term: "
            "the union's variance also counts how far each batch mean is from the overall mean, "
            "var = sum_b w_b * (var_b + (mean_b - mean)**2)",
            population_statistics(batch_means, batch_vars, batch_sizes, between_batches=False)),
        "unweighted": (
            "the batches are averaged with equal weights although their sizes differ; weigh each batch "
            "by its size, w_b = n_b / sum(n)",
            population_statistics(batch_means, batch_vars, batch_sizes, weighted=False)),
        "unweighted_averaged_variances": (
            "the batch means and variances are averaged with equal weights (np.mean over the batches): "
            "weigh each batch by its size, and add the between-batch term (mean_b - mean)**2 to the variance",
            population_statistics(batch_means, batch_vars, batch_sizes, weighted=False, between_batches=False)),
        "algorithm_2": (
            "this is the paper's Algorithm 2: the average of the batch means, and m / (m - 1) times the average of "
            "the batch variances. For batches drawn at random that estimates the population's variance without "
            "bias; the exercise asks for the exact mean and biased variance of the union of the batches given, "
            "whose variance also counts how far each batch mean is from the overall mean (the between-batch "
            "term), weighs each batch by its size, and divides by the total count",
            _algorithm_2(batch_means, batch_vars, batch_sizes)),
        "unbiased_union": (
            "the union's variance is the unbiased one (it divides by n - 1 for n values in all); the exercise asks "
            "for the biased variance of the union, as BN uses: divide by n",
            _unbiased_union(batch_means, batch_vars, batch_sizes)),
    }


def _algorithm_2(batch_means, batch_vars, batch_sizes):
    """Ioffe and Szegedy's Algorithm 2, step 10, for batches of m values each (m: the mean size)."""
    m = float(np.mean(batch_sizes))
    return np.mean(batch_means, axis=0), m / (m - 1.0) * np.mean(batch_vars, axis=0)


def _unbiased_union(batch_means, batch_vars, batch_sizes):
    mean, var = population_statistics(batch_means, batch_vars, batch_sizes)
    n = float(np.sum(batch_sizes))
    return mean, var * n / (n - 1.0)


def debiased_moving_statistic_mistakes(moving, initial, momentum, steps):
    """debiased_moving_statistic's known mistakes on this input."""
    moving, initial = np.asarray(moving, np.float64), np.asarray(initial, np.float64)
    left = np.asarray(momentum, np.float64) ** np.asarray(steps, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        earlier = np.asarray(momentum, np.float64) ** (np.asarray(steps, np.float64) - 1.0)
        return {
            "adam_only": (
                "it divides by 1 - momentum**steps without first removing momentum**steps * initial: that is "
                "Adam's bias correction, right only when the initial value is 0; BN's moving variance starts "
                "at 1, so subtract what is left of it before dividing",
                moving / (1.0 - left)),
            "not_renormalized": (
                "it subtracts momentum**steps * initial but does not divide by 1 - momentum**steps: the "
                "batches' weights sum to 1 - momentum**steps, so what is left is not yet an average",
                moving - left * initial),
            "steps_minus_one": (
                "it uses momentum**(steps - 1); after `steps` updates the initial value has been multiplied "
                "by momentum once per update, momentum**steps",
                (moving - earlier * initial) / (1.0 - earlier)),
        }


def group_norm_mistakes(x, groups, gamma, beta, epsilon):
    """group_norm's known mistakes on this input (only those that differ from the formula on it)."""
    channels = np.shape(x)[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = {
            "batch_statistics": (
                "the mean and variance are shared by the whole batch (taken over axis 0 too); group norm takes "
                "them per sample and per group, so one sample's output does not depend on the rest of its batch",
                group_norm(x, groups, gamma, beta, epsilon, across_batch=True)),
            "ddof1": (
                "variance computed with ddof=1 (unbiased); group norm, like Keras' GroupNormalization, uses the "
                "biased variance (ddof=0, np.var's default)",
                group_norm(x, groups, gamma, beta, epsilon, ddof=1)),
        }
        if 1 < groups < channels:
            variants["interleaved_groups"] = (
                "channel c is put in group c mod groups (interleaved); Keras' GroupNormalization groups "
                "consecutive channels: group k holds channels k*C/G to (k+1)*C/G - 1 (a reshape to "
                "(..., groups, C // groups))",
                group_norm(x, groups, gamma, beta, epsilon, interleaved=True))
        if groups != 1:
            variants["ignored_groups"] = (
                "the groups argument is ignored: the statistics are taken over all channels of a sample at "
                "once, as for groups=1; take them per group of C / groups consecutive channels",
                group_norm(x, 1, gamma, beta, epsilon))
        if epsilon != KERAS_BN_EPSILON:
            variants["fixed_epsilon"] = (
                f"it uses epsilon {KERAS_BN_EPSILON:g} whatever epsilon it is given: use the epsilon argument",
                group_norm(x, groups, gamma, beta, KERAS_BN_EPSILON))
    return variants


def group_norm_backward_mistakes(dout, x, groups, gamma, epsilon):
    """group_norm_backward's known mistakes on this input (only those that differ from the formula on it);
    each output is (dx, dgamma, dbeta)."""
    channels = np.shape(x)[-1]

    def wrong(**flags):
        return group_norm_backward(dout, x, groups, gamma, epsilon, **flags)
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = {
            "constant_statistics": (
                "dx = dout * gamma / s treats each group's mean and variance as constants; they are computed from "
                "the group's values, so every x_i of a sample's group reaches every output of that group through "
                "them: dx needs the path through mu and the path through sigma^2",
                wrong(mean_path=False, variance_path=False)),
            "no_mean_path": (
                "dx leaves out the path through the group's mean: what comes back through mu (stage 1) is "
                "missing, so dx does not sum to 0 over each sample's group",
                wrong(mean_path=False)),
            "no_variance_path": (
                "dx leaves out the path through the group's variance: what comes back through sigma^2 and s "
                "(stages 3 and 4) is missing",
                wrong(variance_path=False)),
            "ddof1": (
                "the variance is computed with ddof=1 (unbiased); group norm, like Keras' GroupNormalization, uses "
                "the biased variance (ddof=0, np.var's default) in s = sqrt(sigma^2 + epsilon)",
                wrong(ddof=1)),
            "eps_outside_sqrt": (
                "epsilon added outside the square root; it belongs inside: s = sqrt(sigma^2 + epsilon)",
                wrong(eps_inside_sqrt=False)),
            "batch_statistics": (
                "the statistics are taken over the whole batch (axis 0 too), as batch norm's backward pass does; "
                "group norm takes them per sample and per group, so one sample's gradient does not depend on the "
                "rest of its batch",
                wrong(across_batch=True)),
            "sums_per_sample": (
                "dgamma and dbeta are summed over the statistics' axes, per sample and group (shape (N, G)); "
                "gamma and beta are one value per channel shared by every sample, so sum over N, H and W: "
                "shape (C,)",
                wrong(sums="sample")),
        }
        if groups < channels:       # with groups=C a group is a channel
            variants["sums_per_group"] = (
                "dgamma and dbeta are summed per group (over the batch and the group's channels, shape (G,)); "
                "gamma and beta have one value per channel, so sum over N, H and W only: shape (C,)",
                wrong(sums="group"))
        if 1 < groups < channels:
            variants["interleaved_groups"] = (
                "channel c is put in group c mod groups (interleaved); Keras' GroupNormalization groups "
                "consecutive channels: group k holds channels k*C/G to (k+1)*C/G - 1 (a reshape to "
                "(..., groups, C // groups))",
                wrong(interleaved=True))
        if groups != 1:
            variants["ignored_groups"] = (
                "the groups argument is ignored: the statistics are taken over all channels of a sample at "
                "once, as for groups=1; take them per group of C / groups consecutive channels",
                group_norm_backward(dout, x, 1, gamma, epsilon))
        if epsilon != KERAS_BN_EPSILON:
            variants["fixed_epsilon"] = (
                f"it uses epsilon {KERAS_BN_EPSILON:g} whatever epsilon it is given: use the epsilon argument "
                "(it is part of s = sqrt(sigma^2 + epsilon), in the forward pass and so in every gradient)",
                group_norm_backward(dout, x, groups, gamma, KERAS_BN_EPSILON))
    return variants


def as_parts(output) -> tuple:
    """An output as a tuple of float64 arrays (a single array is a tuple of one)."""
    items = output if isinstance(output, (tuple, list)) else (output,)
    return tuple(np.asarray(item, dtype=np.float64) for item in items)


def close(output, expected, rtol=1e-5, atol=1e-5) -> bool:
    """Every part of ``output`` has the shape of ``expected``'s and is finite and allclose to it."""
    got, want = as_parts(output), as_parts(expected)
    return len(got) == len(want) and all(
        g.shape == w.shape and np.all(np.isfinite(w)) and np.allclose(g, w, rtol=rtol, atol=atol)
        for g, w in zip(got, want, strict=True))


def matching_mistake(output, mistakes, among=None, rtol=1e-5, atol=1e-5):
    """The key of the mistake (of ``among``, default all of ``mistakes``) that ``output`` equals, or None."""
    for key, (_, wrong) in mistakes.items():
        if (among is None or key in among) and close(output, wrong, rtol, atol):
            return key
    return None


# ---------------------------------------------------------------------------------------------
# Mistake codes: "<exercise>.<key>", one per key of the tables above. A check that names a mistake
# carries its code into results.json ("mistake"), and the class report counts students by code.
# MISTAKE_TABLES gives each exercise's tables on small sample inputs: one table per input shape
# whose table has keys of its own (manual_batch_norm's per_sample is 2-D, its nchw 4-D). A new
# exercise with a mistake table adds one entry here.

def _sample(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape) + 1.0


MISTAKE_TABLES = {   # a non-default epsilon, so that the "fixed_epsilon" keys appear too
    "manual_batch_norm": lambda: [batch_norm_mistakes(_sample(*shape), 1.5, 0.5, 0.1)
                                  for shape in ((6, 3), (4, 3, 3, 2))],
    "batch_norm_backward": lambda: [batch_norm_backward_mistakes(_sample(*shape, seed=1), _sample(*shape), 1.5, 0.1)
                                    for shape in ((6, 3), (4, 3, 3, 2))],
    "update_moving_statistics": lambda: [update_moving_statistics_mistakes(_sample(3), _sample(3) ** 2,
                                                                           _sample(3, seed=1),
                                                                           _sample(3, seed=1) ** 2, 0.9)],
    "batch_norm_inference": lambda: [batch_norm_inference_mistakes(_sample(6, 3), _sample(3, seed=1),
                                                                   _sample(3, seed=2) ** 2, 1.5, 0.5, 0.1)],
    "debiased_moving_statistic": lambda: [debiased_moving_statistic_mistakes(_sample(3) ** 2, 1.0, 0.9, 5)],
    "population_statistics": lambda: [population_statistics_mistakes(_sample(4, 3), _sample(4, 3, seed=1) ** 2,
                                                                     np.array([8.0, 8.0, 8.0, 3.0]))],
    "group_norm": lambda: [group_norm_mistakes(_sample(3, 2, 2, 4), 2, 1.5, 0.5, 0.1)],
    "group_norm_backward": lambda: [group_norm_backward_mistakes(_sample(3, 2, 2, 4, seed=1), _sample(3, 2, 2, 4), 2,
                                                                 1.5, 0.1)],
}


# The one misconception each NumPy exercise exists to teach: its check module weighs it at least half
# of the exercise's points (tests/test_numpy_checks.py grades a synthetic student who makes it).
CENTRAL_MISTAKES = {
    "manual_batch_norm": "per_sample",
    "batch_norm_backward": "constant_statistics",
    "update_moving_statistics": "swapped_momentum",
    "batch_norm_inference": "batch_statistics",
    "debiased_moving_statistic": "adam_only",
    "population_statistics": "averaged_variances",
    "group_norm": "batch_statistics",
    "group_norm_backward": "constant_statistics",
}


def mistake_code(exercise: str, key: str) -> str:
    """The machine-readable code of a named mistake: "<exercise>.<key>" (manual_batch_norm.ddof1)."""
    return f"{exercise}.{key}"


def mistake_codes() -> dict:
    """{code: description} of every named mistake the tables can produce, in the tables' order."""
    codes = {}
    with np.errstate(all="ignore"):
        for exercise, tables in MISTAKE_TABLES.items():
            for table in tables():
                for key, (description, _) in table.items():
                    codes.setdefault(mistake_code(exercise, key), description)
    return codes
