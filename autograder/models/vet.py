"""Vetting a student's model config: only built-in layers this assignment uses.

A config is data, but deserializing it can run code (Lambda layers hold marshalled bytecode,
custom classes name modules to import). So before Keras sees it, every layer's class is checked
against the built-in layers this assignment uses, and Keras is asked with ``safe_mode=True``.
"""

from autograder.errors import ModelRefused

ALLOWED_LAYERS = {
    "InputLayer", "Conv2D", "BatchNormalization", "Activation", "ReLU", "MaxPooling2D",
    "AveragePooling2D", "Dropout", "SpatialDropout2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Flatten", "Dense", "Softmax", "LayerNormalization", "GroupNormalization", "ZeroPadding2D",
    "Add", "Concatenate", "Rescaling", "Reshape",
}
ALLOWED_MODELS = {"Sequential", "Functional", "Model"}


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
