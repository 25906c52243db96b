"""A model's architecture as canonical data: its Keras config with the names left out.

Two configs with the same canonical form describe the same computation: the same layers, in the
same order, with the same hyperparameters, dtype policies, initializers (seeds included) and, in a
Functional model, the same connections. Only what cannot change the computation is dropped: the
model's and the layers' names, which Keras generates from a per-process counter (``conv2d_14``)
or the student chooses. Connections refer to layers by name; here they refer to the layer's
position in the model's layer list instead. Pure data in, pure data out: no Keras needed.

Everything not known to be a name is kept, so that anything unexpected makes two configs differ
(a memo miss) rather than look alike (a wrong verdict).
"""

import copy
import hashlib
import json


def _name_of(layer) -> object:
    """A layer entry's name, as Keras writes it (at the top of the entry, or inside its config)."""
    if not isinstance(layer, dict):
        return None
    inner = layer.get("config")
    return layer.get("name", inner.get("name") if isinstance(inner, dict) else None)


def _reference(ref, positions):
    """A [layer name, node index, tensor index] reference with the name replaced by the position."""
    if isinstance(ref, list) and ref and isinstance(ref[0], str):
        # A name not among the model's layers stays visible as such (so it can only cause a miss).
        return [positions.get(ref[0], f"unknown layer {ref[0]}"), *ref[1:]]
    if isinstance(ref, list):
        return [_reference(r, positions) for r in ref]
    return ref


def _tensors(value, positions):
    """An inbound node's arguments with each Keras tensor's history pointing at positions."""
    if isinstance(value, list):
        return [_tensors(v, positions) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("class_name") == "__keras_tensor__" and isinstance(value.get("config"), dict):
        tensor = dict(value, config=dict(value["config"]))
        if "keras_history" in tensor["config"]:
            tensor["config"]["keras_history"] = _reference(tensor["config"]["keras_history"], positions)
        return tensor
    return {k: _tensors(v, positions) for k, v in value.items()}


def _entry(entry, positions):
    """A model or layer entry without its name; a nested model's own layers are made canonical too."""
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    entry.pop("name", None)
    inner = entry.get("config")
    if isinstance(inner, dict):
        inner = dict(inner)
        inner.pop("name", None)       # the layer's own name; a DTypePolicy's "name" lies deeper and stays
        if isinstance(inner.get("layers"), list):
            inner = _model_body(inner)
        entry["config"] = inner
    if "inbound_nodes" in entry:
        entry["inbound_nodes"] = _tensors(entry["inbound_nodes"], positions)
    return entry


def _model_body(inner: dict) -> dict:
    """A model's config: layers by position, inputs and outputs referring to positions."""
    layers = inner["layers"]
    positions = {}
    for index, layer in enumerate(layers):
        name = _name_of(layer)
        if isinstance(name, str):
            positions.setdefault(name, index)
    inner["layers"] = [_entry(layer, positions) for layer in layers]
    for key in ("input_layers", "output_layers"):
        if key in inner:
            inner[key] = _reference(inner[key], positions)
    return inner


def canonical(config: dict) -> dict:
    """The model config without names (see the module's docstring); ``config`` is left unchanged."""
    return _entry(copy.deepcopy(config), {})


def fingerprint(config: dict) -> str:
    """A SHA-256 of the canonical form: equal for configs that differ only in names."""
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()
