"""Rebuild a student's model from its Keras config, safely, and read its structure.

A config is data, but deserializing it can run code (Lambda layers hold marshalled bytecode,
custom classes name modules to import). So before Keras sees it, every layer's class is checked
against the built-in layers this assignment uses, and Keras is asked with ``safe_mode=True``.
"""

import copy
from dataclasses import dataclass

ALLOWED_LAYERS = {
    "InputLayer", "Conv2D", "BatchNormalization", "Activation", "ReLU", "MaxPooling2D",
    "AveragePooling2D", "Dropout", "SpatialDropout2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Flatten", "Dense", "Softmax", "LayerNormalization", "GroupNormalization", "ZeroPadding2D",
    "Add", "Concatenate", "Rescaling", "Reshape",
}
ALLOWED_MODELS = {"Sequential", "Functional", "Model"}


class ModelRefused(Exception):
    """The config cannot be rebuilt safely; the message says which layer and why."""


def _layer_entries(config):
    """Every (class_name, module, config) in a model config, nested models included."""
    stack = [config]
    while stack:
        entry = stack.pop()
        if not isinstance(entry, dict):
            raise ModelRefused("the model configuration is malformed")
        yield entry.get("class_name"), entry.get("module"), entry.get("registered_name"), entry
        inner = entry.get("config", {})
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
            stack.extend(inner["layers"])


def vet_config(config: dict) -> None:
    """Raise ModelRefused unless every layer is a built-in Keras layer this assignment allows."""
    for class_name, module, registered, entry in _layer_entries(config):
        if class_name == "Lambda":
            raise ModelRefused("the model contains a Lambda layer; the grader does not run code from "
                               "Lambda or custom layers, use built-in Keras layers only")
        if class_name not in ALLOWED_LAYERS | ALLOWED_MODELS:
            raise ModelRefused(f"the model contains a {class_name!s:.60} layer, which is not a built-in "
                               "layer this assignment uses (custom and Lambda layers are refused)")
        if module is not None and not str(module).startswith("keras"):
            raise ModelRefused(f"the {class_name} layer comes from module {module!s:.60}, not from Keras")
        if registered not in (None, class_name):
            raise ModelRefused(f"the {class_name} layer is a registered custom object ({registered!s:.60})")


def rebuild(config: dict):
    """A fresh keras.Model from a vetted config (new weights; nothing of the student's runs)."""
    import keras
    vet_config(config)
    try:
        # Keras consumes the dict it deserializes; the caller's copy is reused by other checks.
        model = keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the configuration describes a {type(model).__name__}, not a model")
        return model
    except Exception as exc:  # Keras raises many kinds for configs it cannot rebuild
        raise ModelRefused(f"Keras could not rebuild the model from its configuration: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None


@dataclass(frozen=True)
class Layer:
    kind: str          # class name
    config: dict

    @property
    def activation(self):
        if self.kind == "ReLU":
            return "relu"
        return self.config.get("activation")


def flat_layers(model) -> list:
    """The model's layers in call order with nested models expanded, InputLayers left out."""
    import keras
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += flat_layers(layer)
        elif type(layer).__name__ != "InputLayer":
            layers.append(Layer(type(layer).__name__, layer.get_config()))
    return layers


def describe(layer: Layer) -> str:
    if layer.kind == "Conv2D":
        return f"Conv2D({layer.config['filters']}, activation={layer.config.get('activation')!r})"
    if layer.kind == "Activation":
        return f"Activation({layer.config.get('activation')!r})"
    if layer.kind == "Dropout":
        return f"Dropout({layer.config.get('rate')})"
    return layer.kind


def placement_errors(layers) -> list:
    """Where a Conv2D is not 'Conv2D (linear) -> BatchNormalization -> ReLU'; one message each."""
    errors = []
    for i, layer in enumerate(layers):
        if layer.kind != "Conv2D":
            continue
        following = layers[i + 1:i + 3]
        name = f"Conv2D #{sum(1 for l in layers[:i + 1] if l.kind == 'Conv2D')} ({layer.config['filters']} filters)"
        if layer.activation not in (None, "linear"):
            if following and following[0].kind == "BatchNormalization":
                errors.append(f"{name} has activation={layer.activation!r} and BN comes after it: that is "
                              "the old Conv(relu) -> BN placement; use Conv2D without activation, then "
                              "BatchNormalization, then ReLU")
            else:
                errors.append(f"{name} has activation={layer.activation!r}; the activation belongs after "
                              "BatchNormalization")
            continue
        kinds = [l.kind for l in following]
        if not kinds or kinds[0] != "BatchNormalization":
            errors.append(f"{name} is followed by {describe(following[0]) if following else 'nothing'}, "
                          "not by BatchNormalization")
        elif len(following) < 2 or following[1].activation != "relu" or following[1].kind not in ("Activation", "ReLU"):
            errors.append(f"{name} -> BatchNormalization is followed by "
                          f"{describe(following[1]) if len(following) > 1 else 'nothing'}, not by ReLU")
    return errors


def bias_free_savings(layers) -> int:
    """Parameters saved by Conv2D(use_bias=False): one per filter of each bias-free convolution.
    Right before BN a bias is redundant (BN's beta shifts), so either choice is correct."""
    return sum(l.config["filters"] for l in layers if l.kind == "Conv2D" and not l.config.get("use_bias", True))


def parameter_counts(model) -> tuple:
    """(total, trainable, non-trainable) parameter counts."""
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    total = model.count_params()
    return total, trainable, total - trainable


def _size(shape):
    size = 1
    for n in shape:
        size *= int(n)
    return size
