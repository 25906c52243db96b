"""build_modern_cnn(input_shape=(32, 32, 3), num_classes=10) -> keras.Model

Specification: [Conv 32 -> BN -> ReLU] x 2 -> MaxPool -> Dropout 0.2; the same with 64 filters
-> Dropout 0.3; Conv 128 -> BN -> ReLU -> GlobalAveragePooling -> Dropout 0.5 -> Dense softmax;
3x3 kernels, 'same' padding. 141,994 parameters at the defaults (640 non-trainable), 320 fewer
with Conv2D(use_bias=False) on every convolution. It must honour any input_shape and num_classes.
A model without any BatchNormalization layer is not an answer: no check scores.

The rules, as the notebook states them (its visible test applies the same ones): a keras.Model
of built-in layers that the grader can rebuild from its configuration; every Conv2D 3x3 with
padding 'same', without activation, followed at once by BatchNormalization and a plain ReLU
(Activation("relu") or ReLU()); the layers of the table in order, where a Dense followed by
Softmax() or Activation("softmax") counts as Dense(softmax) and Dropout layers beyond the three
of the table are allowed; the parameter counts; any input_shape and num_classes. Nested
Sequential blocks count layer by layer; Conv2D(use_bias=False) is accepted.

Weights (2 points): Conv -> BN -> ReLU blocks 0.5; the table's layers 0.5; parameter counts 0.5;
two other shapes 0.25 each.
"""

import pytest

from autograder.checks import answers
from autograder.models import view

FUNCTION = "build_modern_cnn"
EXPECTED_TOTALS = {   # (input_shape, num_classes): parameters with conv biases
    ((32, 32, 3), 10): 141_994,
    ((28, 28, 1), 10): 141_418,
    ((64, 64, 3), 5): 141_349,
}
EXPECTED_LAYERS = (
    ["Conv2D(32)", "BatchNormalization", "ReLU"] * 2 + ["MaxPooling2D", "Dropout(0.2)"]
    + ["Conv2D(64)", "BatchNormalization", "ReLU"] * 2 + ["MaxPooling2D", "Dropout(0.3)"]
    + ["Conv2D(128)", "BatchNormalization", "ReLU", "GlobalAveragePooling2D", "Dropout(0.5)", "Dense(softmax)"]
)


def aligned(expected, found) -> list:
    """``found`` with the Dropout layers that the table does not have left out (extra ones are allowed)."""
    kept, i = [], 0
    for signature in found:
        if i < len(expected) and signature == expected[i]:
            kept.append(signature)
            i += 1
        elif not signature.startswith("Dropout("):
            kept.append(signature)
            i += 1
    return kept


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_uses_conv_bn_relu_blocks(student_model):
    """Every Conv2D is a linear 3x3 'same' convolution followed by BatchNormalization, then ReLU."""
    layers = view.flat_layers(student_model(FUNCTION))
    errors = view.placement_errors(layers) + answers.relu_errors(layers)
    assert not errors, "; ".join(errors)
    for conv in (layer for layer in layers if layer.kind == "Conv2D"):
        assert tuple(conv.config["kernel_size"]) == (3, 3) and conv.config["padding"] == "same", (
            f"Conv2D({conv.config['filters']}) has kernel {tuple(conv.config['kernel_size'])} and padding "
            f"{conv.config['padding']!r}; use 3x3 kernels with padding='same'")


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_has_the_filters_pooling_dropout_and_head(student_model):
    """Filters 32, 32, 64, 64, 128; pooling; dropout 0.2, 0.3, 0.5; global average pooling; softmax head."""
    every = view.layer_signatures(view.flat_layers(student_model(FUNCTION)))
    found = aligned(EXPECTED_LAYERS, every)
    for position, (want, got) in enumerate(zip(EXPECTED_LAYERS, found, strict=False), start=1):
        assert want == got, (f"layer {position} should be {want}, found {got}; the layers are: "
                             f"{' -> '.join(every)}")
    assert len(found) == len(EXPECTED_LAYERS), (
        f"expected {len(EXPECTED_LAYERS)} layers (and any extra Dropout), found {len(found)}: {' -> '.join(every)}")


@pytest.mark.points(0.5)
@pytest.mark.visible_counterpart
def test_has_the_expected_parameter_counts(student_model):
    """141,994 parameters at the defaults (141,674 without conv biases), 640 non-trainable."""
    model = student_model(FUNCTION)
    total, trainable, frozen = view.parameter_counts(model)
    expected = EXPECTED_TOTALS[((32, 32, 3), 10)] - view.bias_free_savings(view.flat_layers(model))
    assert total == expected, (
        f"the model has {total:,} parameters ({trainable:,} trainable, {frozen:,} non-trainable); "
        f"expected {expected:,} (141,994 with conv biases, one fewer per filter of a Conv2D(use_bias=False))")
    assert frozen == 640, f"{frozen} non-trainable parameters; BN's moving statistics for 320 channels make 640"


@pytest.mark.points(0.25)   # each of the two shapes
@pytest.mark.visible_counterpart
@pytest.mark.parametrize("input_shape, num_classes", [((28, 28, 1), 10), ((64, 64, 3), 5)],
                         ids=["28x28x1-10", "64x64x3-5"])
def test_honours_input_shape_and_num_classes(student_model, input_shape, num_classes):
    """Builds for any input_shape and num_classes (checked at (28, 28, 1)/10 and (64, 64, 3)/5)."""
    model = student_model(FUNCTION, input_shape=input_shape, num_classes=num_classes)
    answers.require_batch_norm(FUNCTION, view.flat_layers(model))   # no free points
    call = f"build_modern_cnn(input_shape={input_shape}, num_classes={num_classes})"
    assert tuple(model.input_shape) == (None, *input_shape), (
        f"{call} has input shape {tuple(model.input_shape)}; pass input_shape to keras.Input")
    assert tuple(model.output_shape) == (None, num_classes), (
        f"{call} has output shape {tuple(model.output_shape)}; the last Dense layer needs num_classes units")
    total, _, _ = view.parameter_counts(model)
    expected = EXPECTED_TOTALS[(input_shape, num_classes)] - view.bias_free_savings(view.flat_layers(model))
    assert total == expected, (
        f"{call} has {total:,} parameters; expected {expected:,}")
