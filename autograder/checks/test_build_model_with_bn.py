"""build_model_with_bn(input_shape=(28, 28, 1), num_classes=10) -> keras.Model

Specification: the baseline network (Conv 32 -> pool -> Conv 64 -> pool -> Flatten -> Dense
softmax) with every convolution in a Conv2D (no activation) -> BatchNormalization -> ReLU block.
35,210 parameters (35,018 trainable, 192 non-trainable), one fewer per filter of each
Conv2D(use_bias=False) (35,114 with both), which is also right: BN's beta does the bias's job.
A model without any BatchNormalization layer (the given baseline) is not an answer: no check scores.

The rules, as the notebook states them (its visible test applies the same ones): a keras.Model
of built-in layers that the grader can rebuild from its configuration (no Lambda, no custom
layer); exactly two Conv2D, with 32 and 64 filters, each without activation and followed at once
by BatchNormalization and a plain ReLU (Activation("relu") or ReLU(); not ReLU(max_value=...),
leaky or thresholded); class probabilities out (Dense(softmax), or Dense then Softmax() or
Activation("softmax")); the parameter counts above; input_shape and num_classes honoured.
Accepted as well: nested Sequential blocks (their layers count in order), other layers that add
no parameters (an extra Dropout), Conv2D(use_bias=False).

Weights (2 points): rebuildable with the default shapes 0.25; probabilities out 0.25; the
placement, the centre of the exercise, 0.75 (the old Conv(relu) -> BN placement, BN after the
ReLU, a missing BN or a ReLU variant cost it); parameter counts 0.5; shapes honoured 0.25.
"""

import pytest

from autograder.checks import answers
from autograder.checks.model_with_bn import FUNCTION, NON_TRAINABLE, expected_parameters, placement_errors
from autograder.models import view


@pytest.mark.points(0.25)
def test_returns_a_model_the_grader_can_rebuild(student_model):
    """Returns a keras.Model of built-in layers that the grader can rebuild from its configuration."""
    model = student_model(FUNCTION)
    answers.require_batch_norm(FUNCTION, view.flat_layers(model))   # no free points
    assert tuple(model.output_shape) == (None, 10), (
        f"the default model's output has shape {tuple(model.output_shape)}; it must be (None, 10)")


@pytest.mark.points(0.25)
def test_outputs_class_probabilities(student_model):
    """Ends in Dense(softmax), or in a Dense followed by Softmax() or Activation("softmax")."""
    layers = view.flat_layers(student_model(FUNCTION))
    answers.require_batch_norm(FUNCTION, layers)   # no free points
    error = answers.softmax_output_error(layers)
    assert error is None, error


@pytest.mark.points(0.75)
def test_places_batch_norm_between_conv_and_relu(student_model):
    """Every Conv2D is linear and followed by BatchNormalization, then a plain ReLU."""
    layers = view.flat_layers(student_model(FUNCTION))
    convs = [layer for layer in layers if layer.kind == "Conv2D"]
    assert [c.config["filters"] for c in convs] == [32, 64], (
        f"expected two Conv2D layers with 32 and 64 filters, found {[c.config['filters'] for c in convs]}")
    errors = placement_errors(layers)
    assert not errors, "; ".join(errors)


@pytest.mark.points(0.5)
def test_has_the_expected_parameter_counts(student_model):
    """35,210 parameters (or 35,114 without conv biases), 192 of them non-trainable."""
    model = student_model(FUNCTION)
    total, trainable, frozen = view.parameter_counts(model)
    expected = expected_parameters(view.flat_layers(model))
    assert total == expected, (
        f"the model has {total:,} parameters ({trainable:,} trainable, {frozen:,} non-trainable); expected "
        f"{expected:,}: the baseline's 34,826 plus 4 per channel for 32 + 64 BN channels (35,210; one fewer "
        "per filter of a Conv2D(use_bias=False))")
    assert frozen == NON_TRAINABLE, (
        f"{frozen} non-trainable parameters; BN's moving mean and variance for 32 + 64 channels make 192")


@pytest.mark.points(0.25)
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
