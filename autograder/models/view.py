"""The structure checks' view of a student's model: its layers, shapes and parameter counts, read
from its vetted config alone (no Keras, no weights), or from a keras.Model when one was rebuilt.
"""

import copy
from dataclasses import dataclass

from autograder.models import cost
from autograder.models.vet import ALLOWED_MODELS


@dataclass(frozen=True)
class Layer:
    kind: str          # class name
    config: dict

    @property
    def activation(self):
        if self.kind == "ReLU":
            return "relu"
        return self.config.get("activation")


@dataclass(frozen=True)
class ModelView:
    """A model read from its vetted config alone, without Keras: what the structure checks read.
    Built by ``view``; tests/test_model_view.py checks every field against the Keras rebuild."""
    layers: tuple            # Layer(kind, config), as flat_layers gives them for the Keras model
    input_shape: tuple       # (None, ...), like keras.Model.input_shape
    output_shape: tuple
    parameters: int          # as model.count_params() counts them
    non_trainable: int       # BN's moving mean and variance, and the weights of frozen layers


def view(config: dict) -> ModelView:
    """The read-only view of the model a vetted config describes; bounded first (check_bounds), so
    a refused model raises the same ModelRefused as ``rebuild``. No Keras, no weights."""
    found = cost.check_bounds(config)
    return ModelView(tuple(_config_layers(config)), (None, *found.input_shape), (None, *found.output_shape),
                     found.parameters, found.non_trainable)


def _config_layers(entry):
    """The layers of a model entry in the order Keras lists them, nested models expanded."""
    for layer in entry["config"]["layers"]:
        kind = layer.get("class_name")
        if kind in ALLOWED_MODELS:
            yield from _config_layers(layer)
        elif kind != "InputLayer":
            # a copy: the config is shared with the other checks and the training check
            config = layer.get("config")
            yield Layer(kind, _as_keras_gives_it(kind, copy.deepcopy(config) if isinstance(config, dict) else {}))


def _as_keras_gives_it(kind, config: dict) -> dict:
    """A layer's config with the fields the checks read in the form Keras' get_config() gives them
    after a rebuild (kernel_size 3 -> [3, 3], padding 'valid' when left out), so that a hand-written
    config that the cost estimate accepted reads like the rebuilt model's. Already checked by
    cost.check_bounds, so this cannot fail; configs from to_json() are left as they are."""
    if kind == "Conv2D":
        config["filters"] = cost._ints(config.get("filters"), 1, "number of filters")[0]
        for key, default in (("kernel_size", None), ("strides", 1), ("dilation_rate", 1)):
            config[key] = list(cost._ints(config.get(key, default), 2, key.replace("_", " ")))
        config.setdefault("padding", "valid")
    elif kind == "Dense":
        config["units"] = cost._ints(config.get("units"), 1, "number of units")[0]
    return config


def flat_layers(model) -> list:
    """The model's layers in call order with nested models expanded, InputLayers left out
    (a ModelView's, or a keras.Model's read from Keras)."""
    if isinstance(model, ModelView):
        return list(model.layers)
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


def layer_signature(layer: Layer) -> str:
    """A layer as the checks compare it: Conv2D(filters), ReLU (Activation("relu") or ReLU()),
    Dropout(rate), Dense(activation), otherwise its kind."""
    if layer.kind == "Conv2D":
        return f"Conv2D({layer.config['filters']})"
    if layer.kind in ("Activation", "ReLU") and layer.activation == "relu":
        return "ReLU"
    if layer.kind == "Dropout":
        return f"Dropout({round(float(layer.config['rate']), 3):g})"
    if layer.kind == "Dense":
        return f"Dense({layer.config.get('activation')})"
    return layer.kind


def layer_signatures(layers) -> list:
    """One signature per layer, a Dense followed by a softmax layer counted as Dense(softmax)."""
    found = []
    for layer in layers:
        is_softmax = layer.kind == "Softmax" or (layer.kind == "Activation"
                                                 and layer.config.get("activation") == "softmax")
        if is_softmax and found and found[-1] in ("Dense(None)", "Dense(linear)"):
            found[-1] = "Dense(softmax)"
        else:
            found.append(layer_signature(layer))
    return found


def placement_errors(layers) -> list:
    """Where a Conv2D is not 'Conv2D (linear) -> BatchNormalization -> ReLU'; one message each."""
    errors = []
    for i, layer in enumerate(layers):
        if layer.kind != "Conv2D":
            continue
        following = layers[i + 1:i + 3]
        convolutions = sum(1 for earlier in layers[:i + 1] if earlier.kind == 'Conv2D')
        name = f"Conv2D #{convolutions} ({layer.config['filters']} filters)"
        if layer.activation not in (None, "linear"):
            if following and following[0].kind == "BatchNormalization":
                errors.append(f"{name} has activation={layer.activation!r} and BN comes after it: that is "
                              "the old Conv(relu) -> BN placement; use Conv2D without activation, then "
                              "BatchNormalization, then ReLU")
            else:
                errors.append(f"{name} has activation={layer.activation!r}; the activation belongs after "
                              "BatchNormalization")
            continue
        kinds = [after.kind for after in following]
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
    return sum(layer.config["filters"] for layer in layers
               if layer.kind == "Conv2D" and not layer.config.get("use_bias", True))


def parameter_counts(model) -> tuple:
    """(total, trainable, non-trainable) parameter counts (a ModelView's or a keras.Model's)."""
    if isinstance(model, ModelView):
        return model.parameters, model.parameters - model.non_trainable, model.non_trainable
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    total = model.count_params()
    return total, trainable, total - trainable


def _size(shape):
    size = 1
    for n in shape:
        size *= int(n)
    return size
