"""What a model costs, from its config alone, before Keras builds it, and the caps above which the
grader refuses it (``check_bounds``).

A config is whatever the student's to_json() returned, so it never had to be buildable in the
sandbox: a 400,000-unit Dense layer is a few bytes of JSON and 16 GB of weights in the grader.
So shapes are propagated through the config with one pure formula per allowed layer (nothing is
built, no weight is allocated), and the model is refused above the caps below. Every config is
vetted first (vet.vet_config), so only the layers vet allows need a formula.
"""

import collections
import math
from dataclasses import dataclass

from autograder.errors import ModelRefused
from autograder.models.vet import ALLOWED_MODELS, vet_config

# Caps = headroom x the largest reference model (autograder/reference_models.py) at the input shapes the
# checks use. ``reference_costs()`` measures them with the same formulas, and
# tests/test_model_bounds.py checks the figures below against it, so a changed reference model cannot
# leave a stale cap behind.
#   parameters:        modern_cnn at (32, 32, 3)/10                 141,994  x50 = 7,099,700
#   activation memory: modern_cnn at (64, 64, 3)/5, every layer's
#                      output for a batch of 64 images, float32      339 MiB  x2  =   678 MiB
#   training cost:     modern_cnn at (28, 28, 1)/10 (the largest
#                      reference at the training check's input
#                      shape) for training.SCHEDULE                 273 GFLOP x2 =   546 GFLOP
# The headroom is for honest variants: an extra Dense(128) head, 'same' padding, no pooling before
# Flatten, or a modern-CNN-sized model submitted as the BN model (273 GFLOP, ~14 s to train on
# 2 cores, against ~3.5 s for the reference BN model's 31 GFLOP) all pass. Parameters get the most
# room: they are cheap (7 M float32 weights are 28 MB) and vary most between honest variants.
PARAMETER_HEADROOM = 50
ACTIVATION_HEADROOM = 2
TRAINING_HEADROOM = 2
REFERENCE_PARAMETERS = 141_994                  # modern_cnn((32, 32, 3), 10)
REFERENCE_ACTIVATION_BYTES = 355_534_080        # modern_cnn((64, 64, 3), 5), a batch of 64, float32
REFERENCE_TRAINING_FLOPS = 272_980_377_600      # modern_cnn((28, 28, 1), 10), training.SCHEDULE
MAX_PARAMETERS = PARAMETER_HEADROOM * REFERENCE_PARAMETERS
MAX_ACTIVATION_BYTES = ACTIVATION_HEADROOM * REFERENCE_ACTIVATION_BYTES
MAX_TRAINING_FLOPS = TRAINING_HEADROOM * REFERENCE_TRAINING_FLOPS
ACTIVATION_BATCH = 64            # training.SCHEDULE.batch_size: the largest batch the grader runs
BACKWARD_FACTOR = 3              # a training step costs ~3 forward passes (forward, two for backward)

# The reference models and the (input_shape, num_classes) the checks build them at.
REFERENCE_SHAPES = {
    "model_with_bn": [((28, 28, 1), 10), ((32, 32, 3), 5)],
    "model_without_bn": [((28, 28, 1), 10)],
    "modern_cnn": [((32, 32, 3), 10), ((28, 28, 1), 10), ((64, 64, 3), 5)],
}


@dataclass(frozen=True)
class Cost:
    """What a model costs, per image where it says so. Shapes exclude the batch axis."""
    input_shape: tuple
    output_shape: tuple
    parameters: int              # as model.count_params() counts them
    activation_bytes: int        # every layer's output for one image (what training keeps for backward)
    forward_flops: int           # one image through the model
    non_trainable: int = 0       # of the parameters: BN's moving statistics, frozen layers' weights

    def training_flops(self, n_images: int, epochs: int = 1) -> int:
        """The cost of training on ``n_images`` images for ``epochs`` epochs."""
        return BACKWARD_FACTOR * self.forward_flops * n_images * epochs

    def batch_activation_bytes(self, batch: int = ACTIVATION_BATCH) -> int:
        return self.activation_bytes * batch


def _ints(value, n, what) -> tuple:
    """An int or a list of n ints as a tuple of n positive ints; ModelRefused otherwise."""
    values = [value] * n if isinstance(value, int) else value
    if not isinstance(values, (list, tuple)) or len(values) != n or \
            not all(type(v) is int and 0 < v < 1 << 20 for v in values):
        raise ModelRefused(f"the model's {what} is {value!r:.60}, which the grader cannot use")
    return tuple(values)


def _spatial(size, kernel, stride, padding, dilation=1) -> int:
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return max(0, (size - dilation * (kernel - 1) - 1) // stride + 1)
    raise ModelRefused(f"padding={padding!r:.30} is not 'valid' or 'same'")


def _channels_last(kind, config):
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise ModelRefused(f"the {kind} layer uses data_format={config.get('data_format')!r:.30}; "
                           "this assignment's models are channels_last (NHWC)")


def _image(kind, shape):
    if len(shape) != 3:
        raise ModelRefused(f"the {kind} layer gets an input of shape {_text(shape)}, not (height, width, "
                           "channels)")
    return shape


def _text(shape) -> str:
    return "(None, " + ", ".join(map(str, shape)) + ")"


def _dtype_bytes(config) -> int:
    """Bytes per value of a layer's output: its dtype as a name, or as a DTypePolicy's config."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        policy = dtype.get("config", {})
        if not isinstance(policy, dict):
            raise ModelRefused(f"a layer's dtype policy has the configuration {policy!r:.60}, not an object "
                               "with a name such as 'float32'")
        dtype = policy.get("name")
    return 8 if isinstance(dtype, str) and "64" in dtype else 4


def _axes(axis, rank, kind) -> list:
    axes = [axis] if isinstance(axis, int) else axis
    if not isinstance(axes, (list, tuple)) or not all(type(a) is int and -rank <= a < rank for a in axes):
        raise ModelRefused(f"the {kind} layer's axis {axis!r:.30} does not fit its input")
    return [a % rank for a in axes]


def _layer_cost(kind, config, shapes):
    """(output shape, parameters, non-trainable parameters, forward FLOPs per image) of one allowed
    layer for its input shapes."""
    shape = shapes[0]
    size = math.prod(shape)
    if kind in ("Add", "Concatenate"):
        if len(shapes) < 2:
            raise ModelRefused(f"the {kind} layer needs two or more inputs")
        if kind == "Add":
            if any(s != shape for s in shapes):
                raise ModelRefused(f"the Add layer gets inputs of different shapes {[_text(s) for s in shapes]}")
            return shape, 0, 0, size * (len(shapes) - 1)
        axis = _axes(config.get("axis", -1), len(shape), kind)[0]
        if any(len(s) != len(shape) or any(a != b for i, (a, b) in enumerate(zip(s, shape, strict=True)) if i != axis)
               for s in shapes):
            raise ModelRefused(f"the Concatenate layer gets inputs that do not fit together "
                               f"{[_text(s) for s in shapes]}")
        return shape[:axis] + (sum(s[axis] for s in shapes),) + shape[axis + 1:], 0, 0, 0
    if len(shapes) != 1:
        raise ModelRefused(f"the {kind} layer gets {len(shapes)} inputs; it takes one")
    if kind == "Conv2D":
        _channels_last(kind, config)
        height, width, channels = _image(kind, shape)
        filters = _ints(config.get("filters"), 1, "number of filters")[0]
        kh, kw = _ints(config.get("kernel_size"), 2, "kernel size")
        sh, sw = _ints(config.get("strides", 1), 2, "strides")
        dh, dw = _ints(config.get("dilation_rate", 1), 2, "dilation rate")
        groups = _ints(config.get("groups", 1), 1, "number of groups")[0]
        if channels % groups or filters % groups:
            raise ModelRefused(f"Conv2D({filters}) has groups={groups}, which does not divide its channels")
        out = (_spatial(height, kh, sh, config.get("padding", "valid"), dh),
               _spatial(width, kw, sw, config.get("padding", "valid"), dw), filters)
        weights = kh * kw * (channels // groups) * filters
        bias = filters if config.get("use_bias", True) else 0
        return out, weights + bias, 0, 2 * out[0] * out[1] * weights + math.prod(out)
    if kind == "Dense":
        units = _ints(config.get("units"), 1, "number of units")[0]
        out = shape[:-1] + (units,)
        weights = shape[-1] * units
        return out, weights + (units if config.get("use_bias", True) else 0), 0, 2 * math.prod(shape[:-1]) * weights
    if kind in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        axes = _axes(config.get("axis", -1), len(shape), kind)
        features = math.prod(shape[a] for a in axes)
        learned = int(bool(config.get("center", True))) + int(bool(config.get("scale", True)))
        if kind == "GroupNormalization":
            groups = _ints(config.get("groups", 32), 1, "number of groups")[0]
            if features % groups:
                raise ModelRefused(f"GroupNormalization(groups={groups}) does not divide {features} channels")
        moving = 2 if kind == "BatchNormalization" else 0
        return shape, features * (learned + moving), features * moving, 5 * size
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        _channels_last(kind, config)
        height, width, channels = _image(kind, shape)
        ph, pw = _ints(config.get("pool_size", 2), 2, "pool size")
        strides = config.get("strides")
        sh, sw = _ints(strides, 2, "strides") if strides is not None else (ph, pw)
        out = (_spatial(height, ph, sh, config.get("padding", "valid")),
               _spatial(width, pw, sw, config.get("padding", "valid")), channels)
        return out, 0, 0, math.prod(out) * ph * pw
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        _channels_last(kind, config)
        channels = _image(kind, shape)[2]
        return ((1, 1, channels) if config.get("keepdims") else (channels,)), 0, 0, size
    if kind == "ZeroPadding2D":
        _channels_last(kind, config)
        height, width, channels = _image(kind, shape)
        (top, bottom), (left, right) = _padding(config.get("padding", 1))
        return (height + top + bottom, width + left + right, channels), 0, 0, 0
    if kind == "Flatten":
        return (size,), 0, 0, 0
    if kind == "Reshape":
        target = config.get("target_shape")
        if not isinstance(target, (list, tuple)) or not all(type(t) is int and (t > 0 or t == -1) for t in target) \
                or sum(t == -1 for t in target) > 1:
            raise ModelRefused(f"the Reshape layer's target shape {target!r:.60} is not one the grader can use")
        known = math.prod(t for t in target if t != -1)
        if (-1 in target and size % known) or (-1 not in target and known != size):
            raise ModelRefused(f"Reshape{tuple(target)} does not fit an input of shape {_text(shape)}")
        return tuple(size // known if t == -1 else t for t in target), 0, 0, 0
    if kind in ("Dropout", "SpatialDropout2D"):
        rate = config.get("rate")      # Keras requires it, between 0 and 1; the checks read it as a number
        if type(rate) not in (int, float) or not 0 <= rate <= 1:
            raise ModelRefused(f"the {kind} layer's rate {rate!r:.30} is not a number between 0 and 1")
        return shape, 0, 0, size
    if kind in ("Activation", "ReLU", "Softmax", "Rescaling"):
        return shape, 0, 0, size
    raise ModelRefused(f"the grader cannot work out the shapes of a {kind!s:.60} layer")


def _padding(padding) -> tuple:
    """ZeroPadding2D's padding (an int, (h, w) or ((top, bottom), (left, right))) as the last form."""
    if type(padding) is int:
        padding = (padding, padding)
    if isinstance(padding, (list, tuple)) and len(padding) == 2 and all(type(p) is int for p in padding):
        padding = ((padding[0], padding[0]), (padding[1], padding[1]))
    if not (isinstance(padding, (list, tuple)) and len(padding) == 2 and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(type(n) is int and 0 <= n < 1 << 16 for n in p)
            for p in padding)):
        raise ModelRefused(f"the ZeroPadding2D layer's padding {padding!r:.60} is not one the grader can use")
    return tuple(map(tuple, padding))


def _input_shape(entry) -> tuple:
    """The shape (without the batch axis) an InputLayer entry declares."""
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if shape is None and isinstance(config.get("shape"), (list, tuple)):
        shape = [None, *config["shape"]]
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise ModelRefused("the model's input has no shape; start the model with keras.Input(shape=input_shape)")
    return _fixed(shape[1:])


def _fixed(shape) -> tuple:
    if not all(type(d) is int and 0 < d < 1 << 24 for d in shape):
        raise ModelRefused(f"the model's input shape {tuple(shape)!r:.80} is not fully known; the grader "
                           "needs a fixed shape such as keras.Input(shape=input_shape)")
    return tuple(shape)


class _Tally:
    """Running totals while shapes are propagated."""

    def __init__(self):
        self.parameters = self.activation_bytes = self.forward_flops = self.non_trainable = 0
        self.layers = 0
        self.frozen = 0          # > 0 inside a nested model with trainable=False

    def add(self, kind, config, shapes):
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise ModelRefused(f"the model has more than {MAX_LAYERS} layers, above the grader's cap")
        out, parameters, non_trainable, flops = _layer_cost(kind, config, shapes)
        if not all(type(d) is int and d > 0 for d in out):
            raise ModelRefused(f"the {kind} layer's output would be empty {_text(out)}: the input is too "
                               "small for the layers before it")
        self.parameters += parameters
        # a frozen layer's weights are all non-trainable, as Keras counts them
        self.non_trainable += parameters if self.frozen or config.get("trainable") is False else non_trainable
        self.activation_bytes += math.prod(out) * _dtype_bytes(config)
        self.forward_flops += flops
        return out


MAX_LAYERS = 1000    # the references have 23; a config with more is not one of this assignment's models


def _model_shapes(entry, shape, tally) -> tuple:
    """(input shape, output shape) of a Sequential or Functional entry; ``shape`` is what a nested
    model is given (None: the model's own declared input)."""
    kind = entry.get("class_name")
    config = entry.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelRefused(f"the {kind!s:.60} model's configuration has no list of layers")
    if kind == "Sequential":
        return _sequential_shapes(config, shape, tally)
    return _functional_shapes(config, shape, tally)


def _apply(entry, shapes, tally) -> tuple:
    kind = entry.get("class_name")
    if kind in ALLOWED_MODELS:
        if len(shapes) != 1:
            raise ModelRefused(f"a nested {kind} model gets {len(shapes)} inputs; it takes one")
        frozen = isinstance(entry.get("config"), dict) and entry["config"].get("trainable") is False
        tally.frozen += frozen
        try:
            return _model_shapes(entry, shapes[0], tally)[1]
        finally:
            tally.frozen -= frozen
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return tally.add(kind, config, shapes)


def _entered(declared, given, tally) -> tuple:
    """The shape a model's input takes: its declared one, which must match what it is given."""
    if given is not None and declared is not None and given != declared:
        raise ModelRefused(f"a nested model expects inputs of shape {_text(declared)} but gets {_text(given)}")
    shape = given if declared is None else declared
    if shape is None:
        raise ModelRefused("the model has no input shape; start it with keras.Input(shape=input_shape)")
    tally.activation_bytes += math.prod(shape) * 4
    return shape


def _sequential_shapes(config, given, tally) -> tuple:
    layers = config["layers"]
    declared = None
    if layers and isinstance(layers[0], dict) and layers[0].get("class_name") == "InputLayer":
        declared = _input_shape(layers[0])
        layers = layers[1:]
    elif isinstance(config.get("build_input_shape"), (list, tuple)) and len(config["build_input_shape"]) > 1:
        declared = _fixed(config["build_input_shape"][1:])
    shape = first = _entered(declared, given, tally)
    for layer in layers:
        if not isinstance(layer, dict):
            raise ModelRefused("the model configuration is malformed")
        shape = _apply(layer, [shape], tally)
    return first, shape


def _history(tensor):
    """(layer name, node index, tensor index) of a serialized Keras tensor, or None when it is not one."""
    if not isinstance(tensor, dict) or tensor.get("class_name") != "__keras_tensor__":
        return None
    config = tensor.get("config")
    history = config.get("keras_history") if isinstance(config, dict) else None
    if not isinstance(history, (list, tuple)) or len(history) != 3 or not isinstance(history[0], str) \
            or type(history[1]) is not int:
        raise ModelRefused("the model's configuration has a malformed connection between layers")
    return history[0], history[1], history[2]


def _node_inputs(node) -> list:
    """The (layer, node, tensor) each input of a serialized call comes from, in order."""
    if isinstance(node, dict):
        found = []
        queue = collections.deque([node.get("args", [])])
        while queue:
            item = queue.popleft()
            history = _history(item)
            if history is not None:
                found.append(history)
            elif isinstance(item, (list, tuple)):
                queue.extendleft(reversed(item))
        return found
    if isinstance(node, list):     # Keras 2's [[name, node, tensor, kwargs], ...]
        return [tuple(item[:3]) for item in node if isinstance(item, list) and len(item) >= 3
                and isinstance(item[0], str) and type(item[1]) is int]
    raise ModelRefused("the model's configuration has a malformed connection between layers")


def _functional_shapes(config, given, tally) -> tuple:
    layers = {}
    for entry in config["layers"]:
        if not isinstance(entry, dict):
            raise ModelRefused("the model configuration is malformed")
        inner = entry.get("config")
        name = entry.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
        if not isinstance(name, str) or name in layers:
            raise ModelRefused("the model's configuration has layers without a unique name")
        if not isinstance(entry.get("inbound_nodes") or [], list):
            raise ModelRefused(f"the {name!s:.60} layer's inbound nodes are not a list")
        layers[name] = entry
    inputs, outputs = config.get("input_layers"), config.get("output_layers")
    inputs = _endpoints(inputs, "input")
    outputs = _endpoints(outputs, "output")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelRefused(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the grader "
                           "bounds models with one of each")
    done = {}                      # (layer, node) -> output shape
    input_name = inputs[0][0]
    if input_name not in layers or layers[input_name].get("class_name") != "InputLayer":
        raise ModelRefused("the model's input is not an InputLayer")
    first = done[(input_name, 0)] = _entered(_input_shape(layers[input_name]), given, tally)

    # Each node (a layer's call) is applied once all its inputs are known: those ready at first in
    # the order they are listed (Keras writes them in call order), then each as its last input is
    # found. Linear in the nodes and their inputs, whatever the order (a student's config may list a
    # thousand layers backwards); a node that never gets its inputs (a missing layer, a cycle) is
    # never applied.
    nodes = [(name, node, entry, _node_inputs(inbound)) for name, entry in layers.items() if name != input_name
             for node, inbound in enumerate(entry.get("inbound_nodes") or [])]
    unknown, needed_by, ready = [], {}, collections.deque()
    for index, (name, _node, _entry, sources) in enumerate(nodes):
        if not sources:
            raise ModelRefused(f"the {name!s:.60} layer has no input")
        needs = {(source, source_node) for source, source_node, _ in sources} - done.keys()
        unknown.append(len(needs))
        for key in needs:
            needed_by.setdefault(key, []).append(index)
        if not needs:
            ready.append(index)
    while ready:
        name, node, entry, sources = nodes[ready.popleft()]
        done[(name, node)] = _apply(entry, [done[(s, n)] for s, n, _ in sources], tally)
        for index in needed_by.pop((name, node), ()):
            unknown[index] -= 1
            if not unknown[index]:
                ready.append(index)
    if outputs[0][:2] not in done:
        raise ModelRefused("the model's output does not follow from its input through its layers (a "
                           "connection refers to a layer it does not have, or they form a cycle)")
    applied = {name for name, _ in done}
    unconnected = [name for name in layers if name not in applied]
    if unconnected:      # every layer the checks read must have been bounded here (Keras lists no others)
        raise ModelRefused(f"the model lists the {unconnected[0]!s:.60} layer, which is not connected between "
                           "its input and its output")
    return first, done[outputs[0][:2]]


def _endpoints(value, what) -> list:
    """A Functional config's input_layers/output_layers as [(name, node, tensor)]."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)
                                              and type(v[1]) is int for v in value):
        raise ModelRefused(f"the model's configuration has no {what} layers the grader can read")
    return [tuple(v) for v in value]


def cost(config: dict) -> Cost:
    """What the model a config describes costs, worked out from the config alone (no Keras)."""
    vet_config(config)
    if config.get("class_name") not in ALLOWED_MODELS:
        raise ModelRefused(f"the configuration describes a {config.get('class_name')!s:.60}, not a model")
    tally = _Tally()
    tally.frozen = int(isinstance(config.get("config"), dict) and config["config"].get("trainable") is False)
    first, output = _model_shapes(config, None, tally)
    return Cost(tuple(first), tuple(output), tally.parameters, tally.activation_bytes, tally.forward_flops,
                tally.non_trainable)


def check_bounds(config: dict, *, schedule=None) -> Cost:
    """The config's Cost, or ModelRefused saying which figure is above which cap. With a training
    budget (training.Schedule), the cost of training on it is bounded too."""
    found = cost(config)
    if found.parameters > MAX_PARAMETERS:
        raise ModelRefused(f"the model has {found.parameters:,} parameters, above the grader's cap of "
                           f"{MAX_PARAMETERS:,} ({PARAMETER_HEADROOM}x the largest reference model's); "
                           "this assignment's models need far fewer")
    if found.batch_activation_bytes() > MAX_ACTIVATION_BYTES:
        raise ModelRefused(f"the model's activations for a batch of {ACTIVATION_BATCH} images take "
                           f"{found.batch_activation_bytes() / 2**20:,.0f} MiB, above the grader's cap of "
                           f"{MAX_ACTIVATION_BYTES / 2**20:,.0f} MiB ({ACTIVATION_HEADROOM}x the largest reference "
                           "model's); use fewer filters or pool earlier")
    if schedule is not None:
        flops = found.training_flops(schedule.n_images, schedule.epochs)
        if flops > MAX_TRAINING_FLOPS:
            raise ModelRefused(f"training the model for the check's budget ({schedule.n_images:,} images, "
                               f"{schedule.epochs} epoch(s)) would cost {flops / 1e9:,.0f} GFLOP, above "
                               f"the grader's cap of {MAX_TRAINING_FLOPS / 1e9:,.0f} GFLOP "
                               f"({TRAINING_HEADROOM}x the largest reference model's); use fewer filters")
    return found


def reference_costs() -> dict:
    """{(reference model, input_shape, num_classes): Cost} at the shapes the checks build them at;
    the caps above are derived from these figures (needs Keras)."""
    import json

    from autograder import reference_models
    found = {}
    for name, shapes in REFERENCE_SHAPES.items():
        for input_shape, num_classes in shapes:
            model = getattr(reference_models, name)(input_shape, num_classes)
            found[(name, input_shape, num_classes)] = cost(json.loads(model.to_json()))
    return found
