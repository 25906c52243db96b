"""The one float64 reference implementation of each formula the checks compare against.

Batch norm is computed in float64. The known mistakes are the same formula with one thing
wrong (the flags of these functions); their tables, codes and the judging helpers are in
mistakes.py, the reference Keras models in reference_models.py.
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


def _grouped(a, groups, interleaved=False):
    """(a reshaped so that its channels' groups have an axis of their own, that axis): (..., G, C/G) with
    consecutive groups (Keras' layout), or (..., C/G, G) with channel c in group c mod G (``interleaved``)."""
    channels = a.shape[-1]
    if interleaved:
        return a.reshape(*a.shape[:-1], channels // groups, groups), a.ndim
    return a.reshape(*a.shape[:-1], groups, channels // groups), a.ndim - 1


def _group_axes(grouped, group_axis, across_batch=False):
    """The axes group norm takes its statistics over: every axis of the grouped array but the batch's
    (unless ``across_batch``) and the group's."""
    return tuple(a for a in range(0 if across_batch else 1, grouped.ndim) if a != group_axis)


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
    grouped, group_axis = _grouped(x, groups, interleaved)
    axes = _group_axes(grouped, group_axis, across_batch)
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, keepdims=True, ddof=ddof)
    x_hat = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    return np.asarray(gamma, np.float64) * x_hat + np.asarray(beta, np.float64)


def group_norm_backward(dout, x, groups, gamma=1.0, epsilon=KERAS_BN_EPSILON, *, mean_path=True,
                        variance_path=True, ddof=0, eps_inside_sqrt=True, across_batch=False, interleaved=False,
                        sums="channel"):
    """Gradients of group_norm's output in float64: (dx, dgamma, dbeta).

    dout, x: (N, H, W, C) or (N, F); gamma: scalar or (C,). The statistics are group_norm's (per
    sample and per group of consecutive channels, biased variance). dx has x's shape; dgamma and
    dbeta are one per channel, (C,), summed over every axis but the last, whatever gamma's shape.
    Within each sample's group of m values, with x_hat = (x - mean) / std and dx_hat = dout * gamma:
        dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / std
    where the mean(dx_hat) term flows through the group's mean and the x_hat term through its
    variance (batch_norm_backward's formula, over a group instead of a feature). The flags are the
    mistake variants: a path left out, the unbiased variance (``ddof``), epsilon outside the square
    root, statistics shared by the batch, interleaved groups, and dgamma, dbeta summed per group
    (``sums="group"``: shape (G,)) or over the statistics' axes (``sums="sample"``: shape (N, G)).
    """
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    grouped, group_axis = _grouped(x, groups, interleaved)
    axes = _group_axes(grouped, group_axis, across_batch)
    mean = grouped.mean(axis=axes, keepdims=True)
    std = _std(grouped.var(axis=axes, keepdims=True, ddof=ddof), epsilon, eps_inside_sqrt=eps_inside_sqrt)
    x_hat = (grouped - mean) / std
    dx_hat = _grouped(dout * np.asarray(gamma, np.float64), groups, interleaved)[0]
    dx = dx_hat
    if mean_path:
        dx = dx - dx_hat.mean(axis=axes, keepdims=True)
    if variance_path:
        dx = dx - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    x_hat = x_hat.reshape(x.shape)
    if sums == "channel":
        channel_axes = feature_axes(x)
        dgamma, dbeta = (dout * x_hat).sum(axis=channel_axes), dout.sum(axis=channel_axes)
    else:
        blocks, block_axis = _grouped(np.stack([dout * x_hat, dout]), groups)     # consecutive groups
        per = _group_axes(blocks[0], block_axis - 1, across_batch=(sums == "group"))
        dgamma, dbeta = (block.sum(axis=per) for block in blocks)
    return (dx / std).reshape(x.shape), dgamma, dbeta
