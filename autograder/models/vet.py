"""Vetting a student's model config: read within bounds, and only built-in layers this assignment uses.

``parse_config`` is the one reader of the JSON a student's ``to_json()`` gave: it refuses text that
is too large, not a JSON object, nested too deeply or with too many values, before anything walks
it (the canonical form, the cost and the view all recurse or copy). ``reading_student_config``
makes any other failure while the grader reads a config the student's (a refused model), never
a crash of the grader.

A config is data, but deserializing it can run code (Lambda layers hold marshalled bytecode,
custom classes name modules to import). So before Keras sees it, every layer's class is checked
against the built-in layers this assignment uses, and Keras is asked with ``safe_mode=True``.
"""

import contextlib
import json

from autograder.errors import ModelRefused

# The bounds of a config's JSON, checked by parse_config before anything walks it.
#   text:  the worker already caps a model's JSON at 4,000,000 characters; the same cap here, so
#          that a config from elsewhere is bounded too (the largest reference model's is 19,339).
#   depth: the deepest to_json() of the reference models (autograder/reference_models.py, every model at
#          every shape of cost.REFERENCE_SHAPES, Keras 3.15) is 11 levels, the top object counting
#          as 1 (a layer's dtype policy or initializer config inside the model's layer list). Each
#          nested Sequential or Functional model adds 3 or 4 levels, so 64 (about 6x) leaves room
#          for a dozen nested blocks, while the grader's recursive readers (architecture's
#          canonical form, copy.deepcopy, json.dumps) stay far below Python's recursion limit.
#   nodes: every dict, list and scalar counts as one (dict keys do not). The reference models
#          have at most 1,169 (modern_cnn); cost.MAX_LAYERS (1,000) layers of ~50 values each
#          make 50,000, so 200,000 refuses no model the cost estimate would accept.
MAX_CONFIG_CHARS = 4_000_000
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_NODES = 200_000


def parse_config(text: str) -> dict:
    """The student's model config from the JSON text its ``to_json()`` gave, or ModelRefused.

    The one reader of a student's model JSON: the text must be at most MAX_CONFIG_CHARS long and
    a JSON object nested at most MAX_CONFIG_DEPTH deep with at most MAX_CONFIG_NODES values
    (dicts, lists and scalars). Depth and size are measured with an explicit stack, not by
    recursion. Its layers are not vetted here (``vet_config``)."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ModelRefused(f"the model's configuration is a {type(text).__name__}, not JSON text")
    if len(text) > MAX_CONFIG_CHARS:
        raise ModelRefused(f"the model's configuration is {len(text):,} characters of JSON, above the "
                           f"grader's cap of {MAX_CONFIG_CHARS:,}")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:   # json's RecursionError: past ~1,000 levels
        reason = "it is nested far too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise ModelRefused(f"the model's configuration is not JSON the grader can read: {reason}") from None
    if not isinstance(config, dict):
        raise ModelRefused(f"the model's configuration is a JSON {type(config).__name__}, not an object; "
                           "return a keras.Model")
    _check_size(config)
    return config


def _check_size(config) -> None:
    """ModelRefused when ``config`` is nested deeper than MAX_CONFIG_DEPTH or holds more than
    MAX_CONFIG_NODES values; an explicit stack, so any depth is measured without recursion."""
    nodes = 0
    stack = [(config, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise ModelRefused(f"the model's configuration holds more than {MAX_CONFIG_NODES:,} values, above "
                               "the grader's cap; this assignment's models need a few thousand")
        if depth > MAX_CONFIG_DEPTH:
            raise ModelRefused(f"the model's configuration is nested more than {MAX_CONFIG_DEPTH} levels deep, "
                               "above the grader's cap; a Keras model's configuration needs about a dozen")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


# What reading a malformed config can raise in the grader's pure-data readers (cost, view,
# architecture, vet). Not ImportError, OSError or a GraderFault: those can only be ours.
_UNREADABLE = (LookupError, TypeError, AttributeError, ValueError, ArithmeticError, RecursionError)


@contextlib.contextmanager
def reading_student_config():
    """While the grader reads a student's model config (vetting, cost, view, fingerprint), any
    unexpected exception (a KeyError, TypeError, RecursionError...) is the config's doing: it
    becomes ModelRefused("the grader could not read the model's configuration: <reason>").
    ModelRefused and every other StudentFault or GraderFault pass unchanged. Also a decorator."""
    try:
        yield
    except _UNREADABLE as exc:
        reason = ("it is nested too deeply" if isinstance(exc, RecursionError)
                  else f"{type(exc).__name__}: {str(exc)[:160]}")
        raise ModelRefused(f"the grader could not read the model's configuration: {reason}") from exc

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
    for class_name, module, registered, _entry in _layer_entries(config):
        if class_name == "Lambda":
            raise ModelRefused("the model contains a Lambda layer; the grader does not run code from "
                               "Lambda or custom layers, use built-in Keras layers only")
        if not isinstance(class_name, str) or class_name not in ALLOWED_LAYERS | ALLOWED_MODELS:
            raise ModelRefused(f"the model contains a {class_name!s:.60} layer, which is not a built-in "
                               "layer this assignment uses (custom and Lambda layers are refused)")
        if module is not None and not str(module).startswith("keras"):
            raise ModelRefused(f"the {class_name} layer comes from module {module!s:.60}, not from Keras")
        if registered not in (None, class_name):
            raise ModelRefused(f"the {class_name} layer is a registered custom object ({registered!s:.60})")
