"""Student models the grader refuses from their config: layers that carry code, and models too costly
to build or train (models/vet.py, models/cost.py)."""

import time
import uuid
from pathlib import Path

import pytest

from autograder import training
from autograder.errors import ModelRefused
from autograder.models import cost, vet

from conftest import (
    FULL_MARKS,
    GRADED,
    MANUAL_BN,
    SETUP,
    SETUP_KERAS,
    grade_from_environ,
    messages,
    needs_bwrap,
    scores,
    select,
    write_notebook,
)

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")

# --- models with code in them ----------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.slow
def test_layers_carrying_code_are_refused_without_running_in_the_grader(tmp_path, limits, graded, capfd):
    limits(cell=90, call=60)
    token = f"bn-hostile-{uuid.uuid4().hex}"
    marker = Path("/tmp") / token
    lambda_model = f'''\
def _spy(t):
    print("{token}")
    open("{marker}", "w").write("ran")
    return t

def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    L = keras.layers
    return keras.Sequential([keras.Input(shape=input_shape), L.Lambda(_spy),
        L.Conv2D(32, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(num_classes, activation="softmax")])
'''
    custom_layer = f'''\
@keras.saving.register_keras_serializable(package="student")
class Spy(keras.layers.Layer):
    def call(self, t):
        print("{token}")
        open("{marker}", "w").write("ran")
        return t

def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = Spy()(inputs)
    for f in (32, 32, 64, 64, 128):
        x = keras.layers.Conv2D(f, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''
    lies = "keras.Model.count_params = lambda self: 35210\nkeras.layers.Layer.count_params = lambda self: 0\n"
    results, _ = graded(write_notebook(tmp_path, SETUP_KERAS, lies, MANUAL_BN, lambda_model, custom_layer))
    printed = capfd.readouterr()

    assert results["status"] == "graded", results["error"]
    assert scores(results) == {**FULL_MARKS, "build_model_with_bn": 0.0, "build_modern_cnn": 0.0}
    assert all("Lambda layer" in m for m in messages(results, "build_model_with_bn"))
    assert all("Spy layer" in m and "custom" in m for m in messages(results, "build_modern_cnn"))
    assert not marker.exists(), "a layer's code ran outside the sandbox"
    assert token not in printed.out + printed.err


@pytest.mark.parametrize("layer", [
    {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wAAAA=="}}}},
    {"class_name": "Dense", "module": "os", "config": {"units": 1}},
    {"class_name": "Dense", "module": "keras.layers", "registered_name": "student>Dense", "config": {"units": 1}},
    {"class_name": "Spy", "module": "__main__", "registered_name": "student>Spy", "config": {}},
    {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {}}]}},
    "not a layer",
], ids=["lambda", "module-os", "registered", "custom-class", "nested-lambda", "malformed"])
def test_vet_config_refuses_code_carrying_layers(layer):
    config = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "module": "keras.layers", "config": {"batch_shape": [None, 4]}}, layer]}}
    with pytest.raises(ModelRefused):
        vet.vet_config(config)


# --- models too large for the grader: refused from their config, before Keras builds them -------------

def _layer(kind, **config):
    return {"class_name": kind, "module": "keras.layers", "config": config}


def sequential(input_shape, *layers) -> dict:
    """A Sequential config as to_json() writes it, from (kind, config) pairs."""
    return {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [
        _layer("InputLayer", batch_shape=[None, *input_shape]), *layers]}}


def conv_bn_relu(filters, padding="valid"):
    return [_layer("Conv2D", filters=filters, kernel_size=[3, 3], strides=[1, 1], padding=padding,
                   use_bias=True), _layer("BatchNormalization", axis=-1), _layer("ReLU")]


# The compute bomb: Conv2D 256 -> 1024 -> 1024, 3x3, each with BN and ReLU (it trained for
# 663 s in the grader), and a Dense layer of 400,000 units sent as JSON (16.8 GB in the grader).
COMPUTE_BOMB = sequential((28, 28, 1), *conv_bn_relu(256), *conv_bn_relu(1024), *conv_bn_relu(1024),
                          _layer("Flatten"), _layer("Dense", units=10, activation="softmax"))
MEMORY_BOMB_CONFIG = sequential((28, 28, 1), _layer("Flatten"), _layer("Dense", units=400_000),
                                _layer("Dense", units=10, activation="softmax"))
# Few weights, much compute: 256 filters at full resolution, three times.
SLOW_TO_TRAIN = sequential((28, 28, 1), *conv_bn_relu(256, "same"), *conv_bn_relu(256, "same"),
                           *conv_bn_relu(256, "same"), _layer("GlobalAveragePooling2D"),
                           _layer("Dense", units=10, activation="softmax"))


def test_the_memory_bomb_is_refused_for_its_parameters():
    with pytest.raises(ModelRefused, match=r"318,000,010 parameters, above the grader's cap of 7,099,700"):
        cost.check_bounds(MEMORY_BOMB_CONFIG)


def test_the_compute_bomb_is_refused_before_it_is_built():
    with pytest.raises(ModelRefused, match=r"parameters, above the grader's cap"):
        cost.check_bounds(COMPUTE_BOMB)


def test_a_model_too_slow_to_train_is_refused_for_the_training_check_only():
    found = cost.check_bounds(SLOW_TO_TRAIN)       # its structure can still be checked
    assert found.parameters < cost.MAX_PARAMETERS
    with pytest.raises(ModelRefused, match=r"GFLOP, above the grader's cap of 546 GFLOP"):
        cost.check_bounds(SLOW_TO_TRAIN, schedule=training.SCHEDULE)


def test_activations_too_large_for_a_batch_are_refused():
    wide = sequential((256, 256, 3), *conv_bn_relu(64, "same"), _layer("GlobalAveragePooling2D"),
                      _layer("Dense", units=10))
    with pytest.raises(ModelRefused, match=r"activations for a batch of 64 images take [\d,]+ MiB, "
                                                      r"above the grader's cap of 678 MiB"):
        cost.check_bounds(wide)


def test_a_model_without_an_input_shape_is_refused():
    config = sequential((28, 28, 1), _layer("Flatten"), _layer("Dense", units=10))
    del config["config"]["layers"][0]
    with pytest.raises(ModelRefused, match="no input shape"):
        cost.cost(config)


def test_a_layer_whose_output_would_be_empty_is_refused():
    config = sequential((4, 4, 1), *conv_bn_relu(8), *conv_bn_relu(8), *conv_bn_relu(8))
    with pytest.raises(ModelRefused, match="output would be empty"):
        cost.cost(config)


def test_functional_configs_are_followed_through_merging_layers():
    def node(*sources):
        args = [{"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}} for name in sources]
        return [{"args": [args] if len(args) > 1 else args, "kwargs": {}}]

    def entry(name, kind, sources, **config):
        return {**_layer(kind, **config), "name": name, "inbound_nodes": node(*sources) if sources else []}

    config = {"class_name": "Functional", "config": {"name": "f", "layers": [
        entry("in", "InputLayer", (), batch_shape=[None, 8, 8, 3]),
        entry("a", "Conv2D", ("in",), filters=4, kernel_size=[3, 3], padding="same"),
        entry("b", "Conv2D", ("in",), filters=4, kernel_size=[3, 3], padding="same"),
        entry("sum", "Add", ("a", "b")),
        entry("cat", "Concatenate", ("sum", "a"), axis=-1),
        entry("flat", "Flatten", ("cat",)),
        entry("out", "Dense", ("flat",), units=5)],
        "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}
    found = cost.cost(config)
    assert (found.input_shape, found.output_shape) == ((8, 8, 3), (5,))
    assert found.parameters == 2 * (3 * 3 * 3 * 4 + 4) + 8 * 8 * 8 * 5 + 5


@pytest.mark.slow
def test_the_caps_are_the_stated_multiples_of_the_reference_models():
    costs = cost.reference_costs()        # builds the reference models (imports Keras)
    assert cost.REFERENCE_PARAMETERS == max(c.parameters for c in costs.values())
    assert cost.REFERENCE_ACTIVATION_BYTES == max(c.batch_activation_bytes() for c in costs.values())
    at_training_shape = [c for c in costs.values() if c.input_shape == training.INPUT_SHAPE]
    assert cost.REFERENCE_TRAINING_FLOPS == max(
        c.training_flops(training.SCHEDULE.n_images, training.SCHEDULE.epochs) for c in at_training_shape)
    assert cost.ACTIVATION_BATCH == training.SCHEDULE.batch_size


@pytest.mark.slow
def test_parameter_counts_from_the_config_match_keras():
    from autograder import reference_models
    for (name, input_shape, num_classes), found in cost.reference_costs().items():
        model = getattr(reference_models, name)(input_shape, num_classes)
        assert found.parameters == model.count_params(), name
        assert found.output_shape == tuple(model.output_shape[1:]), name


BOMBS = f'''\
import json

class Config:
    def __init__(self, config):
        self.config = config
    def to_json(self):
        return json.dumps(self.config)

def build_model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    return Config({COMPUTE_BOMB!r})

def build_modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    return Config({MEMORY_BOMB_CONFIG!r})
'''.replace("None", "None")


@needs_bwrap
def test_model_bombs_cost_only_their_checks(tmp_path, limits, monkeypatch):
    limits(cell=10, call=20)
    select(monkeypatch, *GRADED, "training_improvement")
    started = time.monotonic()
    results = grade_from_environ(write_notebook(tmp_path, SETUP, MANUAL_BN, BOMBS))
    elapsed = time.monotonic() - started
    assert results["status"] == "graded", results["error"]
    by_exercise = {}
    for check in results["checks"]:
        by_exercise.setdefault(check["exercise"], []).append(check)
    assert sum(c["points"] for c in by_exercise["manual_batch_norm"]) == FULL_MARKS["manual_batch_norm"]
    for exercise in ("build_model_with_bn", "training_improvement", "build_modern_cnn"):
        assert all(c["points"] == 0 and "above the grader's cap" in c["message"] for c in by_exercise[exercise]), \
            [c["message"] for c in by_exercise[exercise]]
    assert elapsed < 120, elapsed      # refused before building: no 11-minute training, no 16 GB
