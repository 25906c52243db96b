"""The reference the hidden checks compare against: right by Keras' own numbers, and the spec's counts.

The tests that import Keras (TensorFlow) are marked slow."""

import numpy as np
import pytest

from autograder import known_mistakes, reference, reference_models


def test_reference_normalizes_each_feature_to_zero_mean_unit_variance():
    x = np.random.default_rng(0).normal(size=(50, 4)) * [1, 10, 100, 1000] + [5, -5, 50, 0]
    y = reference.batch_norm(x, epsilon=0.0)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-12)


@pytest.mark.slow   # imports Keras (TensorFlow)
def test_reference_matches_keras_batch_normalization_in_training_mode():
    import keras
    x = np.random.default_rng(1).normal(size=(8, 5, 5, 3)).astype("float32") * 3 + 1
    layer = keras.layers.BatchNormalization()
    keras_out = np.asarray(layer(x, training=True))
    ours = reference.batch_norm(x, epsilon=reference.KERAS_BN_EPSILON)
    np.testing.assert_allclose(keras_out, ours, rtol=1e-4, atol=1e-4)


@pytest.mark.slow   # imports Keras (TensorFlow)
def test_keras_uses_moving_statistics_without_training_true():
    import keras
    x = np.random.default_rng(2).normal(size=(16, 3)).astype("float32") * 4 + 10
    layer = keras.layers.BatchNormalization()
    inference = np.asarray(layer(x))   # fresh moving mean 0, variance 1: almost the identity
    np.testing.assert_allclose(inference, x / np.sqrt(1 + reference.KERAS_BN_EPSILON), rtol=1e-5)
    assert layer.momentum == reference.KERAS_BN_MOMENTUM and layer.epsilon == reference.KERAS_BN_EPSILON


def test_every_known_mistake_differs_from_the_reference_on_the_check_inputs():
    x = np.random.default_rng(3).normal(size=(6, 5, 5, 3)) * [1, 5, 0.5] + [0, 2, -1]
    gamma, beta = np.array([0.5, 2.0, 3.0]), np.array([0.0, 1.0, -1.0])
    expected = reference.batch_norm(x, gamma, beta)
    mistakes = known_mistakes.batch_norm_mistakes(x, gamma, beta, 1e-5)
    for key, (_, wrong) in mistakes.items():
        if key in ("no_epsilon", "eps_outside_sqrt"):
            continue   # only a large epsilon shows these; their check uses epsilon=1
        assert not np.allclose(wrong, expected, rtol=1e-5, atol=1e-5), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


# --- the backward pass ----------------------------------------------------------------------
# Centred differences in float64 with h = 1e-6 are accurate to ~1e-8 here (O(h**2) truncation and
# O(1e-16 / h) rounding on values of order 1), so the analytic gradients must agree to 1e-6.
GRADIENT_RTOL = GRADIENT_ATOL = 1e-6


def _backward_case(shape, gamma_shape):
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape) * np.linspace(0.5, 3.0, shape[-1]) + np.linspace(-1.0, 2.0, shape[-1])
    gamma = rng.uniform(0.5, 2.0, size=gamma_shape) if gamma_shape else 1.7
    beta = rng.normal(size=shape[-1])
    return x, gamma, beta, rng.normal(size=shape)


def test_numerical_gradient_is_exact_for_a_quadratic():
    x = np.random.default_rng(4).normal(size=(3, 4))
    dout = np.random.default_rng(6).normal(size=(3, 4))
    numeric = reference.numerical_gradient(lambda v: v ** 2, x.copy(), dout)
    np.testing.assert_allclose(numeric, 2 * x * dout, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("shape, gamma_shape", [((8, 3), (3,)), ((8, 3), None), ((3, 2, 2, 2), (2,))],
                         ids=["NF-per-feature-gamma", "NF-scalar-gamma", "NHWC"])
def test_backward_dx_matches_centred_differences(shape, gamma_shape):
    x, gamma, beta, dout = _backward_case(shape, gamma_shape)
    dx, _, _ = reference.batch_norm_backward(dout, x, gamma)
    numeric = reference.numerical_gradient(lambda v: reference.batch_norm(v, gamma, beta), x.copy(), dout)
    np.testing.assert_allclose(dx, numeric, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL)


@pytest.mark.parametrize("shape", [(8, 3), (3, 2, 2, 2)], ids=["NF", "NHWC"])
def test_backward_parameter_gradients_match_centred_differences(shape):
    x, gamma, beta, dout = _backward_case(shape, (shape[-1],))
    _, dgamma, dbeta = reference.batch_norm_backward(dout, x, gamma)
    numeric_gamma = reference.numerical_gradient(lambda g: reference.batch_norm(x, g, beta), gamma.copy(), dout)
    numeric_beta = reference.numerical_gradient(lambda b: reference.batch_norm(x, gamma, b), beta.copy(), dout)
    assert dgamma.shape == dbeta.shape == (shape[-1],)
    np.testing.assert_allclose(dgamma, numeric_gamma, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL)
    np.testing.assert_allclose(dbeta, numeric_beta, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL)


def test_backward_mistakes_each_differ_from_the_reference():
    x, gamma, _, dout = _backward_case((3, 2, 2, 2), (2,))
    right = reference.batch_norm_backward(dout, x, gamma)
    mistakes = known_mistakes.batch_norm_backward_mistakes(dout, x, gamma, 1e-5)
    assert set(mistakes) == {"constant_statistics", "no_mean_path", "no_variance_path", "dgamma_without_x_hat",
                             "batch_axis_only"}
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


# --- moving statistics, inference, population statistics --------------------------------------

@pytest.mark.slow   # imports Keras (TensorFlow)
def test_moving_update_matches_keras_after_one_training_step():
    import keras
    x = np.random.default_rng(8).normal(size=(32, 3)).astype("float32") * [1.0, 3.0, 0.5] + [2.0, -1.0, 5.0]
    layer = keras.layers.BatchNormalization()
    layer(x, training=True)
    new_mean, new_var = reference.update_moving_statistics(np.zeros(3), np.ones(3), x.mean(axis=0), x.var(axis=0))
    np.testing.assert_allclose(np.asarray(layer.moving_mean), new_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), new_var, rtol=1e-5, atol=1e-6)


def test_moving_update_weighs_the_old_value_by_momentum():
    new_mean, new_var = reference.update_moving_statistics(np.array([1.0]), np.array([4.0]), np.array([11.0]),
                                                           np.array([24.0]), momentum=0.9)
    np.testing.assert_allclose([new_mean[0], new_var[0]], [0.9 * 1.0 + 0.1 * 11.0, 0.9 * 4.0 + 0.1 * 24.0])
    swapped = known_mistakes.update_moving_statistics_mistakes(np.array([1.0]), np.array([4.0]), np.array([11.0]),
                                                          np.array([24.0]), 0.9)["swapped_momentum"][1]
    np.testing.assert_allclose([swapped[0][0], swapped[1][0]], [0.1 * 1.0 + 0.9 * 11.0, 0.1 * 4.0 + 0.9 * 24.0])


def _inference_inputs():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 3, 3, 2)).astype("float32") * 2.0 + 1.0
    moving_mean, moving_var = np.array([0.5, -1.0]), np.array([3.0, 0.2])
    gamma, beta = np.array([1.5, 0.5]), np.array([0.1, -0.2])
    return x, moving_mean, moving_var, gamma, beta


def test_inference_matches_the_formula():
    x, moving_mean, moving_var, gamma, beta = _inference_inputs()
    ours = reference.batch_norm_inference(x, moving_mean, moving_var, gamma, beta)
    np.testing.assert_allclose(ours, gamma * (x - moving_mean) / np.sqrt(moving_var + 1e-3) + beta, rtol=1e-12)


@pytest.mark.slow   # imports Keras (TensorFlow)
def test_inference_matches_keras_with_training_false():
    import keras
    x, moving_mean, moving_var, gamma, beta = _inference_inputs()
    ours = reference.batch_norm_inference(x, moving_mean, moving_var, gamma, beta)
    layer = keras.layers.BatchNormalization()
    layer.build(x.shape)
    layer.set_weights([gamma, beta, moving_mean, moving_var])   # gamma, beta, moving mean, moving variance
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), ours, rtol=1e-5, atol=1e-5)


def test_inference_mistakes_each_differ_from_the_reference():
    x = np.random.default_rng(10).normal(size=(6, 2)) * 3.0 + 5.0
    moving_mean, moving_var = np.array([0.0, 1.0]), np.array([4.0, 1e-3])
    right = reference.batch_norm_inference(x, moving_mean, moving_var)
    mistakes = known_mistakes.batch_norm_inference_mistakes(x, moving_mean, moving_var, 1.0, 0.0, 1e-3)
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


def _batches():
    rng = np.random.default_rng(12)
    sizes = [50, 7, 120, 33]
    return [rng.normal(size=(n, 3)) * rng.uniform(0.5, 3.0, size=3) + rng.normal(size=3) * 4 for n in sizes]


def test_population_statistics_equal_those_of_the_concatenated_batches():
    batches = _batches()
    mean, var = reference.population_statistics([b.mean(axis=0) for b in batches], [b.var(axis=0) for b in batches],
                                                [len(b) for b in batches])
    union = np.concatenate(batches)
    np.testing.assert_allclose(mean, union.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, union.var(axis=0), rtol=1e-12, atol=1e-12)


def test_population_mistakes_each_differ_from_the_reference():
    batches = _batches()
    args = ([b.mean(axis=0) for b in batches], [b.var(axis=0) for b in batches], [len(b) for b in batches])
    right = reference.population_statistics(*args)
    mistakes = known_mistakes.population_statistics_mistakes(*args)
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


@pytest.mark.slow   # builds Keras models
@pytest.mark.parametrize("builder, kwargs, total, non_trainable", [
    (reference_models.model_without_bn, {}, 34_826, 0),
    (reference_models.model_with_bn, {}, 35_210, 192),
    (reference_models.modern_cnn, {}, 141_994, 640),
    (reference_models.modern_cnn, {"input_shape": (28, 28, 1)}, 141_418, 640),
    (reference_models.modern_cnn, {"input_shape": (64, 64, 3), "num_classes": 5}, 141_349, 640),
])
def test_reference_models_have_the_specified_parameter_counts(builder, kwargs, total, non_trainable):
    from autograder.models.view import parameter_counts
    counted_total, _, counted_frozen = parameter_counts(builder(**kwargs))
    assert (counted_total, counted_frozen) == (total, non_trainable)


# --- debiased moving statistics --------------------------------------------------------------

def test_debiasing_recovers_the_weighted_average_of_the_batch_statistics():
    rng = np.random.default_rng(13)
    momentum, initial, steps = 0.99, np.array([1.0, 0.0, 2.5]), 37
    batches = rng.uniform(0.001, 0.01, size=(steps, 3))
    moving = initial.copy()
    for batch in batches:       # Keras' update, step by step
        moving, _ = reference.update_moving_statistics(moving, moving, batch, batch, momentum)
    weights = (1 - momentum) * momentum ** np.arange(steps - 1, -1, -1)     # batch t weighs (1-m) m^(T-t)
    np.testing.assert_allclose(weights.sum(), 1 - momentum ** steps, rtol=1e-12)
    expected = weights @ batches / weights.sum()
    np.testing.assert_allclose(reference.debiased_moving_statistic(moving, initial, momentum, steps), expected,
                               rtol=1e-10)


def test_debiasing_with_initial_zero_is_adams_bias_correction():
    moving = np.array([0.3, -0.2])
    np.testing.assert_allclose(reference.debiased_moving_statistic(moving, 0.0, 0.9, 4), moving / (1 - 0.9 ** 4))
    mistakes = known_mistakes.debiased_moving_statistic_mistakes(moving, 0.0, 0.9, 4)
    assert known_mistakes.close(mistakes["adam_only"][1], reference.debiased_moving_statistic(moving, 0.0, 0.9, 4))


def test_debiasing_mistakes_each_differ_from_the_reference():
    moving, initial = np.array([0.05, 0.2, 1.3]), np.array([1.0, 1.0, 0.5])
    right = reference.debiased_moving_statistic(moving, initial, 0.9, 6)
    mistakes = known_mistakes.debiased_moving_statistic_mistakes(moving, initial, 0.9, 6)
    assert set(mistakes) == {"adam_only", "not_renormalized", "steps_minus_one"}
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


# --- group normalization -----------------------------------------------------------------------

def _feature_maps(shape=(3, 4, 5, 6), seed=14):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) * rng.uniform(0.5, 4.0, size=shape[-1]) + rng.normal(size=shape[-1]) * 3


def test_group_norm_normalizes_each_group_of_consecutive_channels_per_sample():
    x = _feature_maps()
    y = reference.group_norm(x, 3, epsilon=0.0)            # 6 channels: groups {0, 1}, {2, 3}, {4, 5}
    for n in range(x.shape[0]):
        for k in range(3):
            block = y[n, :, :, 2 * k:2 * k + 2]
            np.testing.assert_allclose([block.mean(), block.var()], [0.0, 1.0], atol=1e-12)


def test_group_norm_with_one_group_is_layer_norm():
    x = _feature_maps()
    per_sample = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + 1e-3)
    np.testing.assert_allclose(reference.group_norm(x, 1), per_sample, rtol=1e-12)


def test_group_norm_with_a_group_per_channel_is_instance_norm():
    x = _feature_maps()
    per_channel = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-3)
    np.testing.assert_allclose(reference.group_norm(x, 6), per_channel, rtol=1e-12)


def test_group_norm_of_one_sample_does_not_depend_on_its_batch():
    x = _feature_maps()
    other = np.concatenate([x[:1], _feature_maps(seed=15)[1:] * 10])
    np.testing.assert_allclose(reference.group_norm(x, 2)[0], reference.group_norm(other, 2)[0], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("shape, groups", [((3, 4, 5, 6), 3), ((3, 4, 5, 6), 1), ((3, 4, 5, 6), 6), ((5, 8), 4)],
                         ids=["NHWC-3-groups", "layer-norm", "instance-norm", "NF-4-groups"])
def test_group_norm_matches_keras_group_normalization(shape, groups):
    import keras
    x = _feature_maps(shape).astype("float32")
    rng = np.random.default_rng(16)
    gamma, beta, epsilon = rng.uniform(0.5, 2.0, shape[-1]), rng.normal(size=shape[-1]), 0.05
    layer = keras.layers.GroupNormalization(groups=groups, epsilon=epsilon)
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(np.asarray(layer(x)), reference.group_norm(x, groups, gamma, beta, epsilon),
                               rtol=1e-4, atol=1e-4)


def test_group_norm_mistakes_each_differ_from_the_reference():
    x = _feature_maps((4, 2, 2, 6))
    gamma, beta = np.linspace(0.5, 2.0, 6), np.linspace(-1.0, 1.0, 6)
    right = reference.group_norm(x, 3, gamma, beta, 0.1)
    mistakes = known_mistakes.group_norm_mistakes(x, 3, gamma, beta, 0.1)
    assert set(mistakes) == {"batch_statistics", "ddof1", "interleaved_groups", "ignored_groups", "fixed_epsilon"}
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


GROUP_BACKWARD_CASES = [((3, 2, 2, 6), 3, (6,)), ((3, 2, 2, 6), 1, (6,)), ((3, 2, 2, 6), 6, None), ((4, 8), 4, (8,))]
GROUP_BACKWARD_IDS = ["NHWC-3-groups", "layer-norm", "instance-norm-scalar-gamma", "NF-4-groups"]


@pytest.mark.parametrize("shape, groups, gamma_shape", GROUP_BACKWARD_CASES, ids=GROUP_BACKWARD_IDS)
def test_group_norm_backward_matches_centred_differences(shape, groups, gamma_shape):
    x, gamma, beta, dout = _backward_case(shape, gamma_shape)
    gamma_array = np.broadcast_to(np.asarray(gamma, np.float64), shape[-1:]).copy()
    dx, dgamma, dbeta = reference.group_norm_backward(dout, x, groups, gamma, 0.05)
    numeric_x = reference.numerical_gradient(lambda v: reference.group_norm(v, groups, gamma, beta, 0.05),
                                             x.copy(), dout)
    numeric_gamma = reference.numerical_gradient(lambda g: reference.group_norm(x, groups, g, beta, 0.05),
                                                 gamma_array, dout)
    numeric_beta = reference.numerical_gradient(lambda b: reference.group_norm(x, groups, gamma, b, 0.05),
                                                beta.copy(), dout)
    assert dx.shape == shape and dgamma.shape == dbeta.shape == shape[-1:]
    for got, numeric in ((dx, numeric_x), (dgamma, numeric_gamma), (dbeta, numeric_beta)):
        np.testing.assert_allclose(got, numeric, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL)


@pytest.mark.slow   # imports Keras (TensorFlow)
@pytest.mark.parametrize("shape, groups, gamma_shape", GROUP_BACKWARD_CASES, ids=GROUP_BACKWARD_IDS)
def test_group_norm_backward_matches_the_gradient_of_keras_group_normalization(shape, groups, gamma_shape):
    """GradientTape through keras.layers.GroupNormalization, on x, gamma and beta (float64, so that the
    comparison is tight)."""
    import keras
    import tensorflow as tf
    x, _, beta, dout = _backward_case(shape, gamma_shape)
    gamma = np.random.default_rng(17).uniform(0.5, 2.0, size=shape[-1])
    layer = keras.layers.GroupNormalization(groups=groups, epsilon=0.05, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(layer(inputs) * dout)
    keras_dx, keras_dgamma, keras_dbeta = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
    dx, dgamma, dbeta = reference.group_norm_backward(dout, x, groups, gamma, 0.05)
    for ours, theirs in ((dx, keras_dx), (dgamma, keras_dgamma), (dbeta, keras_dbeta)):
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-8, atol=1e-10)


def test_group_norm_backward_mistakes_each_differ_from_the_reference():
    x, gamma, _, dout = _backward_case((4, 2, 2, 6), (6,))
    right = reference.group_norm_backward(dout, x, 3, gamma, 0.1)
    mistakes = known_mistakes.group_norm_backward_mistakes(dout, x, 3, gamma, 0.1)
    assert set(mistakes) == {"constant_statistics", "no_mean_path", "no_variance_path", "ddof1", "eps_outside_sqrt",
                             "batch_statistics", "sums_per_group", "sums_per_sample", "interleaved_groups",
                             "ignored_groups", "fixed_epsilon"}
    for key, (_, wrong) in mistakes.items():
        assert not known_mistakes.close(wrong, right), key
        assert known_mistakes.matching_mistake(wrong, mistakes) == key


def test_epsilon_mistakes_appear_only_for_a_non_default_epsilon():
    x = _feature_maps((4, 3)) * 0.1
    assert "fixed_epsilon" not in known_mistakes.batch_norm_mistakes(x, 1.0, 0.0, reference.PAPER_BN_EPSILON)
    assert "fixed_epsilon" in known_mistakes.batch_norm_mistakes(x, 1.0, 0.0, 0.1)
    assert "fixed_epsilon" not in known_mistakes.batch_norm_backward_mistakes(x, x, 1.0, reference.PAPER_BN_EPSILON)
    assert "fixed_epsilon" in known_mistakes.batch_norm_backward_mistakes(x, x, 1.0, 0.1)
    args = (x, np.zeros(3), np.full(3, 0.01), 1.0, 0.0)
    assert "fixed_epsilon" not in known_mistakes.batch_norm_inference_mistakes(*args, reference.KERAS_BN_EPSILON)
    assert "fixed_epsilon" in known_mistakes.batch_norm_inference_mistakes(*args, 0.1)
