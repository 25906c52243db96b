"""build_model_with_bn(input_shape=(28, 28, 1), num_classes=10) -> keras.Model

Specification: the baseline network (Conv 32 -> pool -> Conv 64 -> pool -> Flatten -> Dense
softmax) with every convolution in a Conv2D (no activation) -> BatchNormalization -> ReLU block,
and nothing else added. 35,210 parameters (35,018 trainable, 192 non-trainable), one fewer per
filter of each Conv2D(use_bias=False) (35,114 with both), which is also right: BN's beta does the
bias's job. A model without any BatchNormalization layer (the given baseline) is not an answer: no
check scores.

The rules, as the notebook states them (its visible test applies the same ones): a keras.Model
of built-in layers that the grader can rebuild from its configuration (no Lambda, no custom
layer); every Conv2D without activation and followed at once by BatchNormalization and a plain
ReLU (Activation("relu") or ReLU(); not ReLU(max_value=...), leaky or thresholded); class
probabilities out (Dense(softmax), or Dense then Softmax() or Activation("softmax")); beside
BatchNormalization and ReLU, the baseline's layers in its order and nothing else (no Dropout, no
other layer without parameters: Exercise 4 compares this model with the baseline, so BN and its
ReLU are the only difference; model_with_bn.BASELINE_LAYERS); the parameter counts above;
input_shape and num_classes honoured. Accepted as well: nested Sequential blocks (their layers
count in order), Conv2D(use_bias=False).

Weights (2 points): rebuildable with the default shapes 0.25; probabilities out 0.25; the
placement, the centre of the exercise, 1.0, half the exercise (the old Conv(relu) -> BN placement,
BN after the ReLU, a missing BN or a ReLU variant cost it); the baseline's architecture beside BN
and ReLU (its layers, nothing added, and the parameter counts) 0.25; shapes honoured 0.25.
"""

import pytest

from autograder.checks import answers
from autograder.checks.model_with_bn import (
    BASELINE_LAYERS,
    FUNCTION,
    NON_TRAINABLE,
    beside_bn_and_relu,
    expected_parameters,
    layer_errors,
    placement_errors,
)
from autograder.models import view


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_returns_a_model_the_grader_can_rebuild(student_model):
    """Returns a keras.Model of built-in layers that the grader can rebuild from its configuration."""
    model = student_model(FUNCTION)
    answers.require_batch_norm(FUNCTION, view.flat_layers(model))   # no free points
    assert tuple(model.output_shape) == (None, 10), (
        f"the default model's output has shape {tuple(model.output_shape)}; it must be (None, 10)")


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_outputs_class_probabilities(student_model):
    """Ends in Dense(softmax), or in a Dense followed by Softmax() or Activation("softmax")."""
    layers = view.flat_layers(student_model(FUNCTION))
    answers.require_batch_norm(FUNCTION, layers)   # no free points
    error = answers.softmax_output_error(layers)
    assert error is None, error


@pytest.mark.points(1.0)
@pytest.mark.visible_counterpart
def test_places_batch_norm_between_conv_and_relu(student_model):
    """Every Conv2D is linear and followed by BatchNormalization, then a plain ReLU."""
    layers = view.flat_layers(student_model(FUNCTION))
    answers.require_batch_norm(FUNCTION, layers)   # no free points
    errors = placement_errors(layers)
    assert not errors, "; ".join(errors)


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_keeps_the_baseline_architecture(student_model):
    """Beside BN and ReLU, the baseline's layers and nothing else; 35,210 parameters (35,114 without conv
    biases), 192 of them non-trainable."""
    model = student_model(FUNCTION)
    layers = view.flat_layers(model)
    answers.require_batch_norm(FUNCTION, layers)   # no free points
    differences = layer_errors(layers)
    assert not differences, (
        f"beside BatchNormalization and ReLU, the model {'; it '.join(differences)}: its layers are "
        f"{' -> '.join(beside_bn_and_relu(layers))}, the baseline's {' -> '.join(BASELINE_LAYERS)}. Keep the "
        "baseline's layers and add only BatchNormalization and ReLU, no Dropout or other layer: Exercise 4 "
        "compares this model with the baseline, so BN must be the only difference")
    total, trainable, frozen = view.parameter_counts(model)
    expected = expected_parameters(layers)
    assert total == expected, (
        f"the model has {total:,} parameters ({trainable:,} trainable, {frozen:,} non-trainable); expected "
        f"{expected:,}: the baseline's 34,826 plus 4 per channel for 32 + 64 BN channels (35,210; one fewer "
        "per filter of a Conv2D(use_bias=False)); compare the kernel sizes, padding and pooling with the baseline's")
    assert frozen == NON_TRAINABLE, (
        f"{frozen} non-trainable parameters; BN's moving mean and variance for 32 + 64 channels make 192")


@pytest.mark.points(0.25)
@pytest.mark.visible_counterpart
def test_honours_input_shape_and_num_classes(student_model):
    """Builds for the input_shape and num_classes it is given."""
    model = student_model(FUNCTION, input_shape=(32, 32, 3), num_classes=5)
    answers.require_batch_norm(FUNCTION, view.flat_layers(model))   # no free points
    assert tuple(model.input_shape) == (None, 32, 32, 3), (
        f"build_model_with_bn(input_shape=(32, 32, 3), ...) has input shape {tuple(model.input_shape)}; "
        "pass input_shape to keras.Input")
    assert tuple(model.output_shape) == (None, 5), (
        f"build_model_with_bn(num_classes=5) has output shape {tuple(model.output_shape)}; "
        "the last Dense layer needs num_classes units")
