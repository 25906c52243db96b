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

from autograder import reference_models, training, trainingcache
from autograder.errors import TrainingRefused
from autograder.training import Schedule, TrainingBudget

ROOT = Path(__file__).resolve().parent.parent

# For the mechanics (cache, repeatability across processes, errors): the same code path as
# SCHEDULE at a fraction of the cost. Two epochs, to cover that path too.
SMALL = Schedule(n_images=256, epochs=2, batch_size=64, seed=3)


def _dense_model(units, activation):
    import keras  # noqa: PLC0415
    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(units, activation=activation)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


# ---------------------------------------------------------------------------------------------
# No TensorFlow needed


def test_the_budget_cannot_be_changed_in_place():
    with pytest.raises(AttributeError):
        training.SCHEDULE.seed = 1


def test_every_step_of_the_budget_sees_a_full_batch():
    assert training.SCHEDULE.n_images % training.SCHEDULE.batch_size == 0


def test_the_training_budget_cannot_be_changed_in_place():
    with pytest.raises(AttributeError):
        TrainingBudget().seconds = 1


def test_training_reads_no_environment_variable():
    # Its settings come from the caller (settings.from_environ at the edges): no os.environ here.
    for module in (training, trainingcache):
        source = Path(module.__file__).read_text()
        assert "os.environ" not in source and "getenv" not in source


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"key": {}, "value": 0.5}',
                                     '{"key": {"a": 1}, "value": "0.5"}', '{"key": {"a": 1}, "value": 7.0}'])
def test_a_bad_cache_entry_reads_as_missing(tmp_path, content):
    path = tmp_path / "entry.json"
    path.write_text(content)
    assert training._read_baseline(path, {"a": 1}) is None


def test_a_cache_entry_written_over_a_bad_one_reads_back(tmp_path):
    path = tmp_path / "entry.json"
    path.write_text("{not json")
    trainingcache.write(path, {"a": 1}, 0.5)
    assert training._read_baseline(path, {"a": 1}) == 0.5


def test_writing_a_cache_entry_leaves_no_temporary_file(tmp_path):
    trainingcache.write(tmp_path / "entry.json", {"a": 1}, 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.json"]


def test_the_baseline_and_the_memo_are_kept_apart_by_key_and_kind(tmp_path):
    paths = {trainingcache.entry_path(tmp_path, kind, key) for kind in (trainingcache.BASELINE, trainingcache.MEMO)
             for key in ({"a": 1}, {"a": 2})}
    assert len(paths) == 4 and all(p.parent.parent == tmp_path for p in paths)


# ---------------------------------------------------------------------------------------------
# TensorFlow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bn-cache")


@pytest.fixture(scope="module")
def reference_comparison(cache_dir):
    return training.compare(reference_models.model_with_bn(), cache_dir=cache_dir)


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
    result = training.compare(reference_models.model_without_bn(), cache_dir=cache_dir)
    assert not result.passed
    assert result.lead == 0.0  # the very same training as the baseline's
    assert result.baseline_accuracy == reference_comparison.baseline_accuracy


@pytest.mark.slow
def test_training_twice_in_one_process_gives_the_same_accuracy(reference_comparison):
    model = reference_models.model_with_bn()
    assert training.train_accuracy(model) == reference_comparison.bn_accuracy
    # The check trains a seeded copy, so the given model is untouched and a second call repeats too.
    assert training.train_accuracy(model) == reference_comparison.bn_accuracy


@pytest.mark.slow
def test_a_fresh_process_reproduces_the_accuracies_silently(tmp_path):
    # The baseline first, so TensorFlow is imported inside the check, whose start-up chatter
    # on stderr must be swallowed too. The fresh process trains beside this one (one thread each).
    code = ("from autograder import reference_models, training\n"
            f"print(repr(training.baseline_accuracy({str(tmp_path)!r}, training.{SMALL!r})))\n"
            f"print(repr(training.train_accuracy(reference_models.model_with_bn(), training.{SMALL!r})))")
    fresh = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        here = (training.train_accuracy(reference_models.model_without_bn(), SMALL),
                training.train_accuracy(reference_models.model_with_bn(), SMALL))
    finally:
        stdout, stderr = fresh.communicate(timeout=600)
    assert fresh.returncode == 0, stderr[-3000:]
    assert stderr == ""
    assert tuple(float(line) for line in stdout.split()) == here


# Two steps: the second one's accuracy and the final weights depend on the first update's bits.
TWO_STEPS = Schedule(n_images=128, epochs=1, batch_size=64, seed=5)
FINGERPRINT = f"""
from autograder.keras_runtime import keras
keras = keras()
import hashlib, tensorflow as tf
from autograder import reference_models, training
fit = keras.Model.fit
def recording(self, *args, **kwargs):
    history = fit(self, *args, **kwargs)
    print(hashlib.sha256(b"".join(w.numpy().tobytes() for w in self.weights)).hexdigest(),
          repr(history.history["loss"]))
    return history
keras.Model.fit = recording
print(repr(training.train_accuracy(reference_models.model_with_bn(), training.{TWO_STEPS!r})))
print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.slow
def test_a_training_repeats_bit_for_bit_in_a_fresh_process_under_load():
    def fingerprint():
        return subprocess.run([sys.executable, "-c", FINGERPRINT], cwd=ROOT, capture_output=True, text=True,
                              check=True, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    at_rest = fingerprint()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])     # the other core, taken
    try:
        loaded = fingerprint()
    finally:
        busy.kill()
        busy.wait()
    assert at_rest == loaded
    assert at_rest.splitlines()[-1] == "1 1"          # one thread per op, one op at a time


@pytest.mark.slow
def test_training_prints_nothing(capfd):
    model = reference_models.model_without_bn()  # may import TensorFlow, which talks on stderr
    capfd.readouterr()
    training.train_accuracy(model, SMALL)
    assert capfd.readouterr() == ("", "")


@pytest.fixture
def trainings(monkeypatch):
    """The names of the models train_accuracy trains during the test, in order."""
    calls = []
    real = training.train_accuracy

    def counting(model, schedule=training.SCHEDULE, budget=TrainingBudget()):
        calls.append(model.name)
        return real(model, schedule, budget)

    monkeypatch.setattr(training, "train_accuracy", counting)
    return calls


@pytest.mark.slow
def test_the_baseline_is_trained_once_into_the_cache(tmp_path, trainings):
    first = training.baseline_accuracy(tmp_path, SMALL)
    [entry] = (tmp_path / trainingcache.BASELINE).glob("*.json")
    stored = json.loads(entry.read_text())
    assert stored["value"] == first and stored["key"]["budget"]["n_images"] == SMALL.n_images
    assert {"tensorflow", "keras", "data_sha256"} <= set(stored["key"])
    assert trainings == ["without_bn"]


@pytest.mark.slow
def test_a_cached_baseline_is_reused(tmp_path, trainings):
    first = training.baseline_accuracy(tmp_path, SMALL)
    assert training.baseline_accuracy(tmp_path, SMALL) == first
    assert trainings == ["without_bn"]


@pytest.mark.slow
def test_a_corrupt_cache_entry_is_replaced_by_a_recomputed_one(tmp_path, trainings):
    first = training.baseline_accuracy(tmp_path, SMALL)
    [entry] = (tmp_path / trainingcache.BASELINE).glob("*.json")
    entry.write_text('{"value": 0.4')  # e.g. a grader killed mid-write by hand
    assert training.baseline_accuracy(tmp_path, SMALL) == first
    assert trainings == ["without_bn", "without_bn"]
    assert json.loads(entry.read_text())["value"] == first


@pytest.mark.slow
def test_another_budget_has_another_baseline_key():
    other = Schedule(n_images=SMALL.n_images, epochs=1, batch_size=SMALL.batch_size, seed=SMALL.seed)
    assert training.baseline_key(other) != training.baseline_key(SMALL)


# ---------------------------------------------------------------------------------------------
# The training check's bounds: a model too costly to train is refused before it is built, and a
# run past the wall-clock or memory budget is stopped.


@pytest.mark.slow
def test_a_model_above_the_training_cap_is_refused_before_training():
    import keras  # noqa: PLC0415
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for _ in range(3):                      # few weights, much compute: 256 filters at 28x28
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(256, 3, padding="same")(x)))
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(TrainingRefused, match=r"would cost [\d,]+ GFLOP, above the grader's cap of 546 GFLOP"):
        training.train_accuracy(model, training.SCHEDULE)


@pytest.mark.slow
def test_training_past_the_wall_clock_budget_is_stopped():
    with pytest.raises(TrainingRefused, match=r"stopped after \d+ s, past the grader's 0.001 s budget"):
        training.train_accuracy(reference_models.model_without_bn(), SMALL, TrainingBudget(seconds=0.001))


@pytest.mark.slow
def test_training_past_the_memory_budget_is_stopped(monkeypatch):
    readings = iter(range(1 << 30, 1 << 40, 64 << 20))     # the process grows by 64 MiB a batch
    monkeypatch.setattr(training, "_rss_bytes", lambda: next(readings))
    with pytest.raises(TrainingRefused, match=r"taken 128 MiB more memory, past the grader's 100 MiB budget"):
        training.train_accuracy(reference_models.model_without_bn(), SMALL, TrainingBudget(memory_bytes=100 << 20))


@pytest.mark.slow
def test_a_wrong_output_size_is_explained():
    with pytest.raises(TrainingRefused) as error:
        training.train_accuracy(_dense_model(5, "softmax"), SMALL)
    assert "(None, 5)" in str(error.value) and "Dense(10, activation='softmax')" in str(error.value)


@pytest.mark.slow
def test_logits_instead_of_probabilities_are_explained():
    with pytest.raises(TrainingRefused, match="softmax"):
        training.train_accuracy(_dense_model(10, None), SMALL)


@pytest.mark.slow
def test_a_wrong_input_shape_is_explained():
    import keras  # noqa: PLC0415
    inputs = keras.Input(shape=(32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(TrainingRefused, match=r"input has shape \(None, 32, 32, 3\)"):
        training.train_accuracy(model, SMALL)


@pytest.mark.slow
def test_a_diverging_training_is_reported():
    exploding = Schedule(n_images=256, epochs=1, batch_size=64, seed=0, learning_rate=1e12)
    with pytest.raises(TrainingRefused, match="NaN"):
        training.train_accuracy(reference_models.model_without_bn(), exploding)
    assert not math.isnan(training.train_accuracy(reference_models.model_without_bn(), SMALL))
