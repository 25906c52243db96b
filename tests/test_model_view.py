"""models.view (the structure checks' model, read from the config without Keras) agrees with the
Keras rebuild on every reference model and every synthetic student's model, so the two cannot drift."""

import json

import pytest

from autograder import reference_models
from autograder import synthetic_students as students
from autograder.errors import ModelRefused
from autograder.models import architecture, cost, rebuild, vet, view

# The call signatures the structure checks and the training check ask the worker for.
CALLS = {
    "build_model_with_bn": [{}, {"input_shape": (32, 32, 3), "num_classes": 5}],
    "build_modern_cnn": [{}, {"input_shape": (28, 28, 1), "num_classes": 10},
                         {"input_shape": (64, 64, 3), "num_classes": 5}],
}


def _plain(value):
    """JSON's view of a value: tuples as lists, as a config travels from the worker."""
    return json.loads(json.dumps(value))


def _configs_of_students() -> dict:
    """{(student, function, call): vetted config} of every model a synthetic student's notebook builds."""
    import keras
    import numpy as np
    solutions = students.solution_code()
    built = {}        # (function, its code, call) -> config or None: most students share the solution's code
    found = {}
    for student in students.STUDENTS.values():
        if student.raw or student.unanswered:
            continue
        answers = {**solutions, **student.answers}
        for function, calls in CALLS.items():
            for kwargs in calls:
                key = (function, answers[function], tuple(kwargs.items()))
                if key not in built:
                    built[key] = _build(answers[function], function, kwargs, keras, np)
                if built[key] is not None:
                    found[(student.name, function, tuple(kwargs.items()))] = built[key]
    return found


def _build(code, function, kwargs, keras, np):
    """The vetted config of ``function(**kwargs)`` defined by ``code``, or None: an answer that does not
    define the function (students.crashing), raises, or is refused (a Lambda layer)."""
    namespace = {"keras": keras, "np": np, "build_model_without_bn": reference_models.model_without_bn}
    try:
        exec(code, namespace)
        config = json.loads(namespace[function](**kwargs).to_json())
        vet.vet_config(config)
    except Exception:
        return None
    return config


def _reference_configs() -> dict:
    found = {}
    for name, shapes in cost.REFERENCE_SHAPES.items():
        for input_shape, num_classes in shapes:
            model = getattr(reference_models, name)(input_shape, num_classes)
            found[(name, input_shape, num_classes)] = json.loads(model.to_json())
    return found


def _frozen_configs() -> dict:
    """Frozen layers and a frozen nested model: their weights are non-trainable in Keras' count."""
    import keras
    inner = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization()])
    inner.trainable = False
    inputs = keras.Input((28, 28, 1))
    x = inner(inputs)
    dense = keras.layers.Dense(4)
    dense.trainable = False
    x = dense(keras.layers.Flatten()(keras.layers.ReLU()(x)))
    nested = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    return {("frozen nested model and Dense",): json.loads(nested.to_json())}


def assert_view_matches_keras(config, label):
    read = view.view(config)
    model = rebuild.rebuild(config)
    keras_layers = view.flat_layers(model)
    assert [layer.kind for layer in view.flat_layers(read)] == [layer.kind for layer in keras_layers], label
    for mine, theirs in zip(view.flat_layers(read), keras_layers, strict=True):
        assert _plain(mine.config) == _plain(theirs.config), (label, mine.kind)
    assert read.input_shape == tuple(model.input_shape), label
    assert read.output_shape == tuple(model.output_shape), label
    assert view.parameter_counts(read) == view.parameter_counts(model), label


@pytest.mark.slow
def test_the_view_of_every_reference_model_matches_the_keras_rebuild():
    for label, config in _reference_configs().items():
        assert_view_matches_keras(config, label)


@pytest.mark.slow
def test_the_view_of_every_students_model_matches_the_keras_rebuild():
    configs = _configs_of_students()
    assert {label[1] for label in configs} == set(CALLS)      # both builders were read
    seen = set()
    for label, config in configs.items():
        fingerprint = architecture.fingerprint(config)     # the config without Keras' generated names
        if fingerprint not in seen:      # most students hand in the solution's models
            seen.add(fingerprint)
            assert_view_matches_keras(config, label)
    assert len(seen) >= 8, len(seen)     # the solution's five calls and the students' own models


@pytest.mark.slow
def test_the_view_counts_frozen_weights_as_non_trainable_like_keras():
    for label, config in _frozen_configs().items():
        read = view.view(config)
        assert read.non_trainable > 0, label
        assert_view_matches_keras(config, label)


def test_the_view_refuses_a_model_above_the_caps():
    config = json.loads(json.dumps(_dense_config(units=20_000)))
    with pytest.raises(ModelRefused, match="above the grader's cap"):
        view.view(config)


def _dense_config(units):
    """A Sequential Flatten -> Dense(units) config, written by hand (no Keras)."""
    return {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "module": "keras.layers", "config": {"batch_shape": [None, 28, 28, 1],
                                                                          "name": "in"}},
        {"class_name": "Flatten", "module": "keras.layers", "config": {"name": "f"}},
        {"class_name": "Dense", "module": "keras.layers", "config": {"name": "d", "units": units}}]}}
