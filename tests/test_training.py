"""The training_improvement check: reference BN passes, no-BN fails, results repeat, the baseline is cached.

Tests that import TensorFlow are marked slow (``-m "not slow"`` skips them): about 25 s in all on
2 cores, most of it one TensorFlow import and a few 1-2 s training runs.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import reference, training
from autograder.training import Budget, TrainingCheckError

ROOT = Path(__file__).resolve().parent.parent

# For the mechanics (cache, repeatability across processes, errors): the same code path as
# BUDGET at a fraction of the cost. Two epochs, to cover that path too.
SMALL = Budget(n_images=256, epochs=2, batch_size=64, seed=3)


def _dense_model(units, activation):
    import keras  # noqa: PLC0415
    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(units, activation=activation)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


# ---------------------------------------------------------------------------------------------
# No TensorFlow needed


def test_budget_is_frozen_and_the_constants_are_sane():
    with pytest.raises(AttributeError):
        training.BUDGET.seed = 1
    assert 0 < training.REQUIRED_LEAD < 0.2
    assert training.BUDGET.n_images % training.BUDGET.batch_size == 0  # every step a full batch


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path))
    assert training.default_cache_dir() == tmp_path
    monkeypatch.delenv(training.CACHE_ENV)
    assert training.default_cache_dir() == Path.home() / ".cache" / "bn-autograder"


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"key": {}, "accuracy": 0.5}',
                                     '{"key": {"a": 1}, "accuracy": "0.5"}', '{"key": {"a": 1}, "accuracy": 7.0}'])
def test_a_bad_cache_entry_reads_as_missing(tmp_path, content):
    path = tmp_path / "entry.json"
    path.write_text(content)
    assert training._read_cache(path, {"a": 1}) is None
    training._write_cache(path, {"a": 1}, 0.5)
    assert training._read_cache(path, {"a": 1}) == 0.5
    assert not list(tmp_path.glob(".baseline-*"))  # no temp file left behind


# ---------------------------------------------------------------------------------------------
# TensorFlow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bn-cache")


@pytest.fixture(scope="module")
def reference_comparison(cache_dir):
    return training.compare(reference.model_with_bn(), cache_dir=cache_dir)


@pytest.mark.slow
def test_the_reference_bn_model_passes(reference_comparison):
    result = reference_comparison
    assert result.passed, result.summary()
    assert result.lead == pytest.approx(result.bn_accuracy - result.baseline_accuracy)
    assert result.lead >= training.REQUIRED_LEAD == result.required_lead
    assert 0.0 < result.baseline_accuracy < result.bn_accuracy <= 1.0
    assert result.seconds > 0


@pytest.mark.slow
def test_the_no_bn_model_submitted_as_the_bn_model_fails(cache_dir, reference_comparison):
    result = training.compare(reference.model_without_bn(), cache_dir=cache_dir)
    assert not result.passed
    assert result.lead == 0.0  # the very same training as the baseline's
    assert result.baseline_accuracy == reference_comparison.baseline_accuracy


@pytest.mark.slow
def test_training_twice_in_one_process_gives_the_same_accuracy(reference_comparison):
    model = reference.model_with_bn()
    assert training.train_accuracy(model) == reference_comparison.bn_accuracy
    # The check trains a seeded copy, so the given model is untouched and a second call repeats too.
    assert training.train_accuracy(model) == reference_comparison.bn_accuracy


@pytest.mark.slow
def test_a_fresh_process_gives_the_same_accuracies_and_prints_nothing(tmp_path):
    here = (training.train_accuracy(reference.model_without_bn(), SMALL),
            training.train_accuracy(reference.model_with_bn(), SMALL))
    # The baseline first, so TensorFlow is imported inside the check, whose start-up chatter
    # on stderr must be swallowed too.
    code = ("from autograder import reference, training\n"
            f"print(repr(training.baseline_accuracy({str(tmp_path)!r}, training.{SMALL!r})))\n"
            f"print(repr(training.train_accuracy(reference.model_with_bn(), training.{SMALL!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stderr == ""
    assert tuple(float(line) for line in out.stdout.split()) == here


@pytest.mark.slow
def test_training_prints_nothing(capfd):
    model = reference.model_without_bn()  # may import TensorFlow, which talks on stderr
    capfd.readouterr()
    training.train_accuracy(model, SMALL)
    assert capfd.readouterr() == ("", "")


@pytest.mark.slow
def test_the_baseline_is_cached_reused_and_recomputed_when_corrupt(tmp_path, monkeypatch):
    calls = []
    real = training.train_accuracy

    def counting(model, budget=training.BUDGET):
        calls.append(model.name)
        return real(model, budget)

    monkeypatch.setattr(training, "train_accuracy", counting)

    first = training.baseline_accuracy(tmp_path, SMALL)
    [entry] = tmp_path.glob("baseline-*.json")
    stored = json.loads(entry.read_text())
    assert stored["accuracy"] == first and stored["key"]["budget"]["n_images"] == SMALL.n_images
    assert {"tensorflow", "keras", "data_sha256"} <= set(stored["key"])
    assert len(calls) == 1 and calls[0] == "without_bn"

    assert training.baseline_accuracy(tmp_path, SMALL) == first
    assert len(calls) == 1  # reused

    entry.write_text('{"accuracy": 0.4')  # e.g. a grader killed mid-write by hand
    assert training.baseline_accuracy(tmp_path, SMALL) == first
    assert len(calls) == 2  # recomputed, not fatal
    assert json.loads(entry.read_text())["accuracy"] == first

    other = Budget(n_images=SMALL.n_images, epochs=1, batch_size=SMALL.batch_size, seed=SMALL.seed)
    assert training.baseline_key(other) != training.baseline_key(SMALL)


@pytest.mark.slow
def test_a_wrong_output_size_is_explained():
    with pytest.raises(TrainingCheckError) as error:
        training.train_accuracy(_dense_model(5, "softmax"), SMALL)
    assert "(None, 5)" in str(error.value) and "Dense(10, activation='softmax')" in str(error.value)


@pytest.mark.slow
def test_logits_instead_of_probabilities_are_explained():
    with pytest.raises(TrainingCheckError, match="softmax"):
        training.train_accuracy(_dense_model(10, None), SMALL)


@pytest.mark.slow
def test_a_wrong_input_shape_is_explained():
    import keras  # noqa: PLC0415
    inputs = keras.Input(shape=(32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(TrainingCheckError, match=r"input has shape \(None, 32, 32, 3\)"):
        training.train_accuracy(model, SMALL)


@pytest.mark.slow
def test_a_diverging_training_is_reported():
    exploding = Budget(n_images=256, epochs=1, batch_size=64, seed=0, learning_rate=1e12)
    with pytest.raises(TrainingCheckError, match="NaN"):
        training.train_accuracy(reference.model_without_bn(), exploding)
    assert not math.isnan(training.train_accuracy(reference.model_without_bn(), SMALL))
