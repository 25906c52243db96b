"""The one reference implementation of each formula and model the checks compare against.

Batch norm is computed in float64. The known mistakes are the same formula with one thing
wrong, so a check can say which mistake a wrong answer matches.
"""

import numpy as np

# Keras' BatchNormalization defaults, which the notebook teaches. The paper and PyTorch use
# epsilon 1e-5, which is manual_batch_norm's and batch_norm_backward's default.
KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.99
PAPER_BN_EPSILON = 1e-5


def feature_axes(x) -> tuple:
    """The axes BN takes statistics over: every axis but the last (the feature or channel)."""
    return tuple(range(np.ndim(x) - 1))


def _std(var, epsilon, *, eps_inside_sqrt=True, var_as_std=False):
    """The denominator, sqrt(var + epsilon); the flags are the mistakes students make with it."""
    if var_as_std:
        return var + epsilon
    return np.sqrt(var + epsilon) if eps_inside_sqrt else np.sqrt(var) + epsilon


def normalize(x, mean, var, gamma=1.0, beta=0.0, epsilon=PAPER_BN_EPSILON, *, eps_inside_sqrt=True,
              var_as_std=False):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta in float64: BN with given statistics.

    x: (N, F) or (N, H, W, C); mean, var: anything that broadcasts against x ((F,), (C,) or kept
    dimensions); gamma, beta: scalars or (F,)/(C,). Returns an array of x's shape.
    """
    x = np.asarray(x, dtype=np.float64)
    std = _std(np.asarray(var, np.float64), epsilon, eps_inside_sqrt=eps_inside_sqrt, var_as_std=var_as_std)
    return np.asarray(gamma, np.float64) * (x - np.asarray(mean, np.float64)) / std + np.asarray(beta, np.float64)


def batch_norm(x, gamma=1.0, beta=0.0, epsilon=PAPER_BN_EPSILON, *, axes=None, ddof=0, eps_inside_sqrt=True):
    """Training-mode batch normalization of ``x`` in float64 (manual_batch_norm).

    x: (N, F) or (N, H, W, C); statistics are taken over every axis but the last
    (``axes`` overrides that, for the mistake variants). gamma, beta: scalars or (F,)/(C,).
    Returns an array of x's shape: gamma * (x - mean) / sqrt(var + epsilon) + beta.
    """
    x = np.asarray(x, dtype=np.float64)
    axes = feature_axes(x) if axes is None else axes
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    return normalize(x, mean, var, gamma, beta, epsilon, eps_inside_sqrt=eps_inside_sqrt)


def batch_norm_backward(dout, x, gamma=1.0, epsilon=PAPER_BN_EPSILON, *, axes=None, mean_path=True,
                        variance_path=True, dgamma_from_x_hat=True):
    """Gradients of training-mode BN (batch_norm's output) in float64: (dx, dgamma, dbeta).

    dout, x: (N, F) or (N, H, W, C); gamma: scalar or (F,)/(C,). Statistics and sums are over
    every axis but the last (``axes`` overrides that). dx has x's shape; dgamma and dbeta are one
    per feature, (F,) or (C,), whatever gamma's shape (a scalar gamma is one shared by all).
    With m the number of values per feature, x_hat = (x - mean) / std and dx_hat = dout * gamma:
        dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / std
    where the mean(dx_hat) term flows through the batch mean and the x_hat term through the
    batch variance. The flags drop one piece each: the mistake variants.
    """
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    axes = feature_axes(x) if axes is None else axes
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    std = _std(var, epsilon)
    x_hat = normalize(x, mean, var, epsilon=epsilon)      # the forward pass's, before gamma and beta
    dx_hat = dout * np.asarray(gamma, np.float64)
    dx = dx_hat
    if mean_path:
        dx = dx - dx_hat.mean(axis=axes, keepdims=True)
    if variance_path:
        dx = dx - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    dgamma = (dout * x_hat if dgamma_from_x_hat else dout).sum(axis=axes)
    return dx / std, dgamma, dout.sum(axis=axes)


def numerical_gradient(f, x, dout, h=1e-6):
    """Centred-difference gradient of sum(f(x) * dout) with respect to the float64 array ``x``.

    f: a function of x alone; x: any shape (perturbed in place and restored); dout: f(x)'s shape.
    Each element costs two calls of f; the error is O(h**2) plus rounding O(eps / h).
    """
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        plus = np.sum(f(x) * dout)
        x[index] = saved - h
        minus = np.sum(f(x) * dout)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * h)
    return grad


def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=KERAS_BN_MOMENTUM,
                             *, swapped=False):
    """One step of BN's moving averages, Keras' convention: new = momentum * moving + (1 - momentum) * batch.

    All four statistics: (C,) (or scalars); momentum: the weight of the old moving value (PyTorch's
    momentum is the weight of the batch: its 0.1 is Keras' 0.9). Returns (new_mean, new_var).
    ``swapped`` puts momentum on the batch instead: the mistake variant.
    """
    keep = 1.0 - momentum if swapped else momentum
    def step(moving, batch):
        return keep * np.asarray(moving, np.float64) + (1.0 - keep) * np.asarray(batch, np.float64)
    return step(moving_mean, batch_mean), step(moving_var, batch_var)


def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=KERAS_BN_EPSILON, **mistake):
    """Inference-mode BN: normalize x with the moving statistics (C,), not the batch's own.

    x: (N, F) or (N, H, W, C); gamma, beta: scalars or (C,). Returns an array of x's shape. The
    default epsilon is Keras' (1e-3). ``mistake`` passes normalize's eps_inside_sqrt / var_as_std.
    """
    return normalize(x, moving_mean, moving_var, gamma, beta, epsilon, **mistake)


def population_statistics(batch_means, batch_vars, batch_sizes, *, weighted=True, between_batches=True):
    """The exact mean and biased variance of the union of B batches, from their statistics.

    batch_means, batch_vars: (B, C), each batch's mean and biased variance per channel;
    batch_sizes: (B,). Returns (mean, var), each (C,). With weights w_b = n_b / sum(n):
        mean = sum_b w_b * mean_b
        var  = sum_b w_b * (var_b + (mean_b - mean)**2)     (within-batch + between-batch)
    ``weighted=False`` (equal weights) and ``between_batches=False`` are the mistake variants.
    """
    means = np.asarray(batch_means, np.float64)
    variances = np.asarray(batch_vars, np.float64)
    sizes = np.asarray(batch_sizes, np.float64)
    weights = (sizes if weighted else np.ones_like(sizes)) / (sizes.sum() if weighted else len(sizes))
    mean = weights @ means
    spread = (means - mean) ** 2 if between_batches else 0.0
    return mean, weights @ (variances + spread)


def debiased_moving_statistic(moving, initial, momentum, steps):
    """A moving average with what is left of its initial value removed, renormalized.

    After ``steps`` updates new = momentum * moving + (1 - momentum) * batch, a moving statistic is
    momentum**steps * initial + sum_t (1 - momentum) * momentum**(steps - t) * batch_t, and the
    batches' weights sum to 1 - momentum**steps. So
        (moving - momentum**steps * initial) / (1 - momentum**steps)
    is the weighted average of the batch statistics alone. Adam's bias correction (Kingma and Ba,
    2015) is the case initial = 0. All arguments broadcast (steps >= 1); float64 out.
    """
    moving, initial = np.asarray(moving, np.float64), np.asarray(initial, np.float64)
    left = np.asarray(momentum, np.float64) ** np.asarray(steps, np.float64)
    return (moving - left * initial) / (1.0 - left)


def group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=KERAS_BN_EPSILON, *, interleaved=False, ddof=0,
               across_batch=False):
    """Group normalization (Wu and He, 2018) in float64, laid out as keras.layers.GroupNormalization.

    x: (N, H, W, C) or (N, F). The C channels (the last axis) are split into ``groups`` consecutive
    blocks of C / groups: group k holds channels k*C/G to (k+1)*C/G - 1. Mean and biased variance
    are taken per sample and per group, over every other axis but the batch's (H, W and the group's
    channels); gamma, beta: scalars or (C,). groups=1 is layer norm, groups=C instance norm.
    ``interleaved`` (channel c in group c mod G), ``ddof`` and ``across_batch`` (statistics shared
    by the whole batch) are the mistake variants.
    """
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[-1]
    if interleaved:
        grouped, group_axis = x.reshape(*x.shape[:-1], channels // groups, groups), x.ndim
    else:
        grouped, group_axis = x.reshape(*x.shape[:-1], groups, channels // groups), x.ndim - 1
    axes = tuple(a for a in range(0 if across_batch else 1, grouped.ndim) if a != group_axis)
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, keepdims=True, ddof=ddof)
    x_hat = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    return np.asarray(gamma, np.float64) * x_hat + np.asarray(beta, np.float64)


# ---------------------------------------------------------------------------------------------
# Known mistakes. Each exercise's function below returns {key: (description, output)}: the
# formula with one thing wrong (its output has the shape of the exercise's output: an array or
# a tuple of arrays). A check compares an answer with them (matching_mistake) to name the mistake.

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
    }


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


def as_parts(output) -> tuple:
    """An output as a tuple of float64 arrays (a single array is a tuple of one)."""
    items = output if isinstance(output, (tuple, list)) else (output,)
    return tuple(np.asarray(item, dtype=np.float64) for item in items)


def close(output, expected, rtol=1e-5, atol=1e-5) -> bool:
    """Every part of ``output`` has the shape of ``expected``'s and is finite and allclose to it."""
    got, want = as_parts(output), as_parts(expected)
    return len(got) == len(want) and all(
        g.shape == w.shape and np.all(np.isfinite(w)) and np.allclose(g, w, rtol=rtol, atol=atol)
        for g, w in zip(got, want))


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
    "update_moving_statistics": lambda: [update_moving_statistics_mistakes(_sample(3), _sample(3) ** 2, _sample(3, seed=1),
                                                                           _sample(3, seed=1) ** 2, 0.9)],
    "batch_norm_inference": lambda: [batch_norm_inference_mistakes(_sample(6, 3), _sample(3, seed=1),
                                                                   _sample(3, seed=2) ** 2, 1.5, 0.5, 0.1)],
    "debiased_moving_statistic": lambda: [debiased_moving_statistic_mistakes(_sample(3) ** 2, 1.0, 0.9, 5)],
    "population_statistics": lambda: [population_statistics_mistakes(_sample(4, 3), _sample(4, 3, seed=1) ** 2,
                                                                     np.array([8.0, 8.0, 8.0, 3.0]))],
    "group_norm": lambda: [group_norm_mistakes(_sample(3, 2, 2, 4), 2, 1.5, 0.5, 0.1)],
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


# ---------------------------------------------------------------------------------------------
# Reference Keras models. Imported lazily: NumPy-only checks should not pay for TensorFlow.

def _keras():
    import keras  # noqa: PLC0415  (deliberately lazy)
    return keras


def model_without_bn(input_shape=(28, 28, 1), num_classes=10):
    """The lecture's baseline: Conv(relu) 32 -> pool -> Conv(relu) 64 -> pool -> Dense softmax."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="without_bn")


def _conv_bn_relu(layers, x, filters, padding="valid"):
    x = layers.Conv2D(filters, 3, padding=padding)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    """The baseline with every Conv followed by BN, then ReLU."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = _conv_bn_relu(layers, inputs, 32)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(layers, x, 64)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="with_bn")


def modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    """[Conv32-BN-ReLU]x2 - pool - drop .2, [Conv64-BN-ReLU]x2 - pool - drop .3, Conv128-BN-ReLU - GAP - drop .5 - softmax."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters, rate in ((32, 0.2), (64, 0.3)):
        x = _conv_bn_relu(layers, x, filters, "same")
        x = _conv_bn_relu(layers, x, filters, "same")
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(rate)(x)
    x = _conv_bn_relu(layers, x, 128, "same")
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="modern_cnn")
