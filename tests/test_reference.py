"""The reference the hidden checks compare against: right by Keras' own numbers, and the spec's counts."""

import numpy as np
import pytest

from autograder import reference
from autograder.exercises import EXERCISES
from autograder.grade import collect_checks


def test_reference_normalizes_each_feature_to_zero_mean_unit_variance():
    x = np.random.default_rng(0).normal(size=(50, 4)) * [1, 10, 100, 1000] + [5, -5, 50, 0]
    y = reference.batch_norm(x, epsilon=0.0)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-12)


def test_reference_matches_keras_batch_normalization_in_training_mode():
    import keras
    x = np.random.default_rng(1).normal(size=(8, 5, 5, 3)).astype("float32") * 3 + 1
    layer = keras.layers.BatchNormalization()
    keras_out = np.asarray(layer(x, training=True))
    ours = reference.batch_norm(x, epsilon=reference.KERAS_BN_EPSILON)
    np.testing.assert_allclose(keras_out, ours, rtol=1e-4, atol=1e-4)


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
    for key, (_, wrong) in reference.known_mistakes(x, gamma, beta, 1e-5).items():
        if key in ("no_epsilon", "eps_outside_sqrt"):
            continue   # only a large epsilon shows these; their check uses epsilon=1
        assert not np.allclose(wrong, expected, rtol=1e-5, atol=1e-5), key
        assert reference.matching_mistake(wrong, x, gamma, beta, 1e-5) == key


@pytest.mark.parametrize("builder, kwargs, total, non_trainable", [
    (reference.model_without_bn, {}, 34_826, 0),
    (reference.model_with_bn, {}, 35_210, 192),
    (reference.modern_cnn, {}, 141_994, 640),
    (reference.modern_cnn, {"input_shape": (28, 28, 1)}, 141_418, 640),
    (reference.modern_cnn, {"input_shape": (64, 64, 3), "num_classes": 5}, 141_349, 640),
])
def test_reference_models_have_the_specified_parameter_counts(builder, kwargs, total, non_trainable):
    from autograder.modelcheck import parameter_counts
    counted_total, _, counted_frozen = parameter_counts(builder(**kwargs))
    assert (counted_total, counted_frozen) == (total, non_trainable)


def test_check_points_add_up_to_each_exercise_s_points():
    points = {}
    for row in collect_checks():
        points[row["exercise"]] = points.get(row["exercise"], 0.0) + row["max_points"]
    assert points == {e.id: e.points for e in EXERCISES}
