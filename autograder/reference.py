"""The one reference implementation of each formula and model the checks compare against.

Batch norm is computed in float64. The known mistakes are the same formula with one thing
wrong, so a check can say which mistake a wrong answer matches.
"""

import numpy as np

# Keras' BatchNormalization defaults, which the notebook teaches.
KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.99


def batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5, *, axes=None, ddof=0, eps_inside_sqrt=True):
    """Training-mode batch normalization of ``x`` in float64.

    x: (N, F) or (N, H, W, C); statistics are taken over every axis but the last
    (``axes`` overrides that, for the mistake variants). gamma, beta: scalars or (F,)/(C,).
    Returns an array of x's shape: gamma * (x - mean) / sqrt(var + epsilon) + beta.
    """
    x = np.asarray(x, dtype=np.float64)
    if axes is None:
        axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    std = np.sqrt(var + epsilon) if eps_inside_sqrt else np.sqrt(var) + epsilon
    return np.asarray(gamma, np.float64) * (x - mean) / std + np.asarray(beta, np.float64)


def known_mistakes(x, gamma, beta, epsilon):
    """{key: (description, output)} for the mistakes students make most, each one change away from the reference."""
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


def matching_mistake(output, x, gamma, beta, epsilon, among=None, rtol=1e-5, atol=1e-5):
    """The key of the known mistake (of ``among``, default all) that ``output`` matches, or None."""
    output = np.asarray(output, dtype=np.float64)
    for key, (_, wrong) in known_mistakes(x, gamma, beta, epsilon).items():
        if (among is None or key in among) and wrong.shape == output.shape and np.all(np.isfinite(wrong)) \
                and np.allclose(output, wrong, rtol=rtol, atol=atol):
            return key
    return None


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
