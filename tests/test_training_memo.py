"""The training check's memo: keyed on the architecture without names, and it changes no verdict.

The tests that build Keras models are marked slow (one TensorFlow import, then ~8 training runs
of 1-2 s: about 30 s in all on 2 cores).
"""

import json
import threading

import pytest

from autograder import provenance, reference_models, training, trainingcache
from autograder.models import architecture

# ---------------------------------------------------------------------------------------------
# No TensorFlow needed


def _comparison(bn=0.65, base=0.47):
    lead = bn - base
    return training.Comparison(bn_accuracy=bn, baseline_accuracy=base, lead=lead,
                               required_lead=training.REQUIRED_LEAD, passed=lead >= training.REQUIRED_LEAD,
                               seconds=2.0)


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"key": {"a": 1}}',
                                     '{"key": {"a": 1}, "value": {"bn_accuracy": 0.6}}',
                                     '{"key": {"a": 2}, "value": {"bn_accuracy": 0.6, "baseline_accuracy": 0.4,'
                                     ' "lead": 0.2, "required_lead": 0.075, "passed": true}}',
                                     '{"key": {"a": 1}, "value": {"bn_accuracy": NaN, "baseline_accuracy": 0.4,'
                                     ' "lead": 0.2, "required_lead": 0.075, "passed": true}}',
                                     '{"key": {"a": 1}, "value": {"bn_accuracy": 0.6, "baseline_accuracy": 0.4,'
                                     ' "lead": 0.2, "required_lead": 0.075, "passed": 1}}'])
def test_a_bad_or_foreign_memo_entry_reads_as_missing(tmp_path, content):
    path = tmp_path / "entry.json"
    path.write_text(content)
    assert training._read_memo(path, {"a": 1}) is None


def test_a_memo_entry_reads_back_as_the_comparison_it_stored(tmp_path):
    path = tmp_path / "memo" / "entry.json"
    stored = _comparison()
    training._write_memo(path, {"a": 1}, stored)
    found = training._read_memo(path, {"a": 1})
    assert (found.bn_accuracy, found.baseline_accuracy, found.lead, found.passed) == \
        (stored.bn_accuracy, stored.baseline_accuracy, stored.lead, stored.passed)
    assert not list(path.parent.glob(".*.tmp"))    # atomic write: no temp file left behind


def test_graders_writing_one_entry_at_once_never_show_a_torn_file(tmp_path):
    path = tmp_path / "entry.json"
    stored = _comparison()
    seen, stop = [], threading.Event()

    def write():
        for _ in range(200):
            training._write_memo(path, {"a": 1}, stored)

    def read():
        while not stop.is_set():
            if path.exists():
                seen.append(training._read_memo(path, {"a": 1}))
    writers = [threading.Thread(target=write) for _ in range(3)]
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert seen and all(found is not None and found.lead == stored.lead for found in seen)


def test_with_the_memo_off_every_comparison_is_computed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _comparison()
    for _ in range(2):
        training.memoized_compare({"class_name": "Sequential", "config": {"layers": []}}, compute, cache_dir=tmp_path,
                                  memo=False)
    assert len(calls) == 2
    assert not list(tmp_path.rglob("*.json"))


def test_only_names_are_left_out_of_the_canonical_form():
    # A hand-written Functional config: names in the four places Keras puts them, and a dtype
    # policy whose "name" is a hyperparameter, not a name.
    def config(model, first, second, policy="float32"):
        tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32",
                                                                "keras_history": [first, 0, 0]}}
        return {"class_name": "Functional", "config": {
            "name": model,
            "layers": [{"class_name": "InputLayer", "name": first, "config": {"name": first, "batch_shape": [None, 4]},
                        "inbound_nodes": []},
                       {"class_name": "Dense", "name": second,
                        "config": {"name": second, "units": 3, "dtype": {"class_name": "DTypePolicy",
                                                                         "config": {"name": policy}}},
                        "inbound_nodes": [{"args": [tensor], "kwargs": {}}]}],
            "input_layers": [[first, 0, 0]], "output_layers": [[second, 0, 0]]}}

    assert architecture.fingerprint(config("a", "in", "out")) == architecture.fingerprint(config("b", "x", "y"))
    assert architecture.fingerprint(config("a", "in", "out")) != \
        architecture.fingerprint(config("a", "in", "out", policy="float64"))
    assert architecture.canonical(config("a", "in", "out"))["config"]["output_layers"] == [[1, 0, 0]]


# ---------------------------------------------------------------------------------------------
# With Keras


def _keras():
    import keras  # noqa: PLC0415
    return keras


def _functional(filters=(32, 64), activation="relu", bn_first=True, names=None, padding="valid", seed=None,
                dtype=None):
    """model_with_bn's architecture with knobs; ``names`` gives every layer (and the model) a chosen name."""
    keras = _keras()
    layers = keras.layers
    counter = iter(range(100))

    def name():
        return f"{names}_{next(counter)}" if names else None
    inputs = keras.Input(shape=(28, 28, 1), name=name())
    x = inputs
    for f in filters:
        x = layers.Conv2D(f, 3, padding=padding, name=name(), dtype=dtype,
                          kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
        steps = [layers.BatchNormalization(name=name(), dtype=dtype),
                 layers.Activation(activation, name=name(), dtype=dtype)]
        for step in (steps if bn_first else steps[::-1]):
            x = step(x)
        x = layers.MaxPooling2D(2, name=name(), dtype=dtype)(x)
    x = layers.Flatten(name=name(), dtype=dtype)(x)
    outputs = layers.Dense(10, activation="softmax", name=name(), dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name() or "with_bn")


def _config(model) -> dict:
    return json.loads(model.to_json())


@pytest.mark.slow
def test_differently_named_identical_architectures_share_an_entry():
    keras = _keras()
    auto, again, chosen = _functional(), _functional(), _functional(names="student")
    assert _config(auto) != _config(again)              # Keras numbered the second model's layers on
    keys = {architecture.fingerprint(_config(m)) for m in (auto, again, chosen)}
    assert len(keys) == 1
    sequential = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    renamed = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="f"),
                                keras.layers.Dense(10, name="d")],
                               name="mine")
    assert architecture.fingerprint(_config(sequential)) == architecture.fingerprint(_config(renamed))


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    {"filters": (16, 64)}, {"activation": "tanh"}, {"bn_first": False}, {"padding": "same"}, {"seed": 7},
    {"dtype": "float64"}])
def test_a_change_to_the_computation_gives_a_different_key(change):
    assert architecture.fingerprint(_config(_functional(**change))) != architecture.fingerprint(_config(_functional()))


@pytest.mark.slow
def test_a_different_connection_between_the_same_layers_gives_a_different_key():
    keras = _keras()
    layers = keras.layers

    def wired(second_from_first):
        inputs = keras.Input(shape=(28, 28, 1))
        flat = layers.Flatten()(inputs)
        a = layers.Dense(8)(flat)
        b = layers.Dense(8)(a if second_from_first else flat)
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.Add()([a, b])))
    chain, parallel = _config(wired(True)), _config(wired(False))
    assert ([layer["class_name"] for layer in chain["config"]["layers"]]
            == [layer["class_name"] for layer in parallel["config"]["layers"]])
    assert architecture.fingerprint(chain) != architecture.fingerprint(parallel)


@pytest.mark.slow
def test_the_key_follows_what_decides_the_verdict():
    config = _config(_functional())
    small = training.Schedule(n_images=256, epochs=1, batch_size=64, seed=3)
    keys = [training.memo_key(config), training.memo_key(config, small),
            training.memo_key(config, required_lead=0.1)]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == 3


@pytest.mark.slow
def test_the_memo_changes_no_verdict(tmp_path, monkeypatch):
    """Each model: compared without the memo (a renamed copy), then through a cold memo, then a warm
    one; the accuracies and the verdict are the same every time, and only one entry per architecture."""
    cache = tmp_path / "cache"
    keras = _keras()

    def old_placement(names=None):
        inputs = keras.Input(shape=(28, 28, 1), name=names and f"{names}_in")
        x = inputs
        for i, f in enumerate((32, 64)):
            x = keras.layers.Conv2D(f, 3, activation="relu", name=names and f"{names}_c{i}")(x)
            x = keras.layers.BatchNormalization(name=names and f"{names}_b{i}")(x)
            x = keras.layers.MaxPooling2D(2, name=names and f"{names}_p{i}")(x)
        x = keras.layers.Flatten(name=names and f"{names}_f")(x)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name=names and f"{names}_d")(x))

    def without_bn(names=None):
        model = reference_models.model_without_bn()
        if names:      # the same model, every layer renamed through its config
            config = _config(model)
            renamed = json.loads(json.dumps(config).replace('"without_bn"', f'"{names}"')
                                 .replace('"conv2d', f'"{names}_conv2d'))
            model = keras.models.model_from_json(json.dumps(renamed))
        return model

    verdicts = {}
    for label, build in [("with BN", _functional), ("old placement", old_placement), ("no BN", without_bn)]:
        plain = training.compare(build(names="renamed"), cache_dir=cache)     # no memo: compare never uses it
        model = build()
        config = _config(model)
        runs = []

        def compute():      # called by memoized_compare in this iteration, so runs and model are this one's
            runs.append(1)  # noqa: B023
            return training.compare(model, cache_dir=cache)  # noqa: B023
        cold = training.memoized_compare(config, compute, cache_dir=cache)
        warm = training.memoized_compare(config, compute, cache_dir=cache)
        assert len(runs) == 1, label                     # the warm one came from the memo
        outcomes = {(r.bn_accuracy, r.baseline_accuracy, r.lead, r.passed) for r in (plain, cold, warm)}
        assert len(outcomes) == 1, (label, outcomes)
        verdicts[label] = plain.passed
    assert verdicts == {"with BN": True, "old placement": True, "no BN": False}
    assert len(list((cache / trainingcache.MEMO).glob("*.json"))) == 3


# ---------------------------------------------------------------------------------------------
# The key is read without TensorFlow, and still follows the versions and the data

def test_the_key_follows_the_library_versions(monkeypatch):
    config = {"class_name": "Sequential", "config": {"layers": []}}
    before = training.memo_key(config)
    for package in ("tensorflow-cpu", "keras"):
        monkeypatch.setattr(provenance, "installed_version",
                            lambda *names, bumped=package: "99.0" if bumped in names else "1.0")
        assert training.memo_key(config) != before, package
    assert before["baseline"]["tensorflow"] and before["baseline"]["keras"]


def test_the_key_follows_the_training_files_bytes(tmp_path, monkeypatch):
    """The same files elsewhere give the same key; training labels that differ by one byte, another."""
    from autograder import data
    config = {"class_name": "Sequential", "config": {"layers": []}}
    source = data.find_dataset_dir()
    original = training.memo_key(config)
    for name in data.FILES.values():
        (tmp_path / name).symlink_to((source / name).resolve())
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    same = training.memo_key(config)
    assert same == original          # the same bytes in another folder: the same key
    labels = tmp_path / data.FILES["train_labels"]
    changed = bytearray((source / data.FILES["train_labels"]).read_bytes())
    changed[-1] ^= 1
    labels.unlink()
    labels.write_bytes(bytes(changed))
    assert training.memo_key(config) != same


# ---------------------------------------------------------------------------------------------
# Graders sharing a cache compute each entry once (trainingcache.claimed)

_CONFIG = {"class_name": "Sequential", "config": {"layers": []}}


@pytest.fixture
def another_grader():
    """Holds an entry's lock as another grader would (a flock belongs to an open file, so a second
    open in this process is another holder) until it is released or the test ends."""
    import fcntl
    import os
    held = {}

    def hold(entry):
        held[entry] = trainingcache._lock_descriptor(entry)
        fcntl.flock(held[entry], fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(entry):
        os.close(held.pop(entry))
    hold.release = release
    yield hold
    for fd in held.values():
        os.close(fd)


@pytest.fixture
def polling(monkeypatch):
    """An event set once a grader has tried a held lock twice, so is in its wait, not past it."""
    polled, failed, try_lock = threading.Event(), [], trainingcache._try_lock

    def spied(fd):
        taken = try_lock(fd)
        if not taken:
            failed.append(fd)
            if len(failed) >= 2:
                polled.set()
        return taken
    monkeypatch.setattr(trainingcache, "_try_lock", spied)
    return polled


def _in_thread(function):
    found = []
    thread = threading.Thread(target=lambda: found.append(function()), daemon=True)
    thread.start()
    return thread, found


def _memo_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "memo_key", lambda *a, **k: {"memo": 1})
    return trainingcache.entry_path(tmp_path, trainingcache.MEMO, {"memo": 1})


def _baseline_entry(tmp_path, monkeypatch, trained):
    """The baseline's entry, with a training that records that it ran and gives 0.5."""
    monkeypatch.setattr(training, "baseline_key", lambda *a, **k: {"baseline": 1})
    monkeypatch.setattr(training, "train_accuracy", lambda *a, **k: trained.append(1) or 0.5)
    monkeypatch.setattr(reference_models, "model_without_bn", lambda: None)
    return trainingcache.entry_path(tmp_path, trainingcache.BASELINE, {"baseline": 1})


def test_a_grader_reads_the_comparison_another_grader_is_making_instead_of_making_it(
        tmp_path, monkeypatch, another_grader, polling):
    entry = _memo_entry(tmp_path, monkeypatch)
    computed = []
    monkeypatch.setattr(training, "_help_with_baseline", lambda *a: None)
    another_grader(entry)
    grader, found = _in_thread(lambda: training.memoized_compare(
        _CONFIG, lambda: computed.append(1) or _comparison(), cache_dir=tmp_path))
    assert polling.wait(30)
    assert grader.is_alive() and not computed                      # it waits, having computed nothing
    training._write_memo(entry, {"memo": 1}, _comparison(bn=0.7))     # the other grader's result
    another_grader.release(entry)
    grader.join(30)
    assert not computed and found[0].bn_accuracy == 0.7


def test_a_grader_waiting_for_a_comparison_trains_the_baseline_the_other_needs(
        tmp_path, monkeypatch, another_grader):
    trained = []
    baseline = _baseline_entry(tmp_path, monkeypatch, trained)
    memo = _memo_entry(tmp_path, monkeypatch)
    another_grader(memo)
    helped = threading.Event()
    monkeypatch.setattr(training, "_help_with_baseline",
                        lambda *a, help=training._help_with_baseline: (help(*a), helped.set()))
    grader, found = _in_thread(lambda: training.memoized_compare(_CONFIG, _comparison, cache_dir=tmp_path))
    assert helped.wait(30)
    assert trained == [1] and trainingcache.read(baseline, {"baseline": 1}) == 0.5
    assert training.baseline_accuracy(tmp_path) == 0.5 and trained == [1]     # the holder's: read, not trained
    training._write_memo(memo, {"memo": 1}, _comparison(bn=0.7))
    another_grader.release(memo)
    grader.join(30)
    assert found[0].bn_accuracy == 0.7


def test_a_failure_while_helping_is_left_to_the_comparison(tmp_path, monkeypatch, another_grader):
    memo = _memo_entry(tmp_path, monkeypatch)

    def baseline_fails(*args):
        raise RuntimeError("no dataset")
    monkeypatch.setattr(training, "baseline_accuracy", baseline_fails)
    another_grader(memo)
    another_grader.release(memo)      # the other grader gave up, writing nothing: this one computes
    training._help_with_baseline(tmp_path, training.SCHEDULE, training.TrainingBudget())     # raises nothing
    assert training.memoized_compare(_CONFIG, lambda: _comparison(bn=0.6), cache_dir=tmp_path).bn_accuracy == 0.6


def test_a_free_entry_is_computed_at_once_and_kept(tmp_path, monkeypatch):
    entry = _memo_entry(tmp_path, monkeypatch)
    helped = []
    monkeypatch.setattr(training, "_help_with_baseline", lambda *a: helped.append(1))
    result = training.memoized_compare(_CONFIG, lambda: _comparison(bn=0.7), cache_dir=tmp_path)
    assert result.bn_accuracy == 0.7 and not helped
    assert training._read_memo(entry, {"memo": 1}).bn_accuracy == 0.7


def test_the_lock_is_released_when_the_comparison_fails(tmp_path, monkeypatch):
    from autograder.errors import TrainingRefused
    entry = _memo_entry(tmp_path, monkeypatch)

    def refused():
        raise TrainingRefused("too big")
    with pytest.raises(TrainingRefused):
        training.memoized_compare(_CONFIG, refused, cache_dir=tmp_path)
    fd = trainingcache._lock_descriptor(entry)
    try:
        assert trainingcache._try_lock(fd)
    finally:
        import os
        os.close(fd)


def test_a_grader_reads_the_baseline_another_grader_is_training_instead_of_training_it(
        tmp_path, monkeypatch, another_grader, polling):
    trained = []
    entry = _baseline_entry(tmp_path, monkeypatch, trained)
    another_grader(entry)
    grader, found = _in_thread(lambda: training.baseline_accuracy(tmp_path))
    assert polling.wait(30)
    assert grader.is_alive() and not trained
    trainingcache.write(entry, {"baseline": 1}, 0.4)     # the other grader's number, then its lock goes
    another_grader.release(entry)
    grader.join(30)
    assert found == [0.4] and not trained


def test_a_holder_still_at_it_after_the_wait_only_costs_time(tmp_path, caplog, another_grader):
    entry = tmp_path / "training-memo" / "entry.json"
    another_grader(entry)
    ran = []
    with trainingcache.claimed(entry, wait=0):
        ran.append(1)
    assert ran and "computing it here too" in caplog.text


def test_a_cache_that_cannot_hold_a_lock_only_costs_time(tmp_path):
    (tmp_path / "training-memo").write_text("a file where the folder would be")
    ran = []
    with trainingcache.claimed(tmp_path / "training-memo" / "entry.json", wait=60):
        ran.append(1)
    assert ran


def test_a_dead_graders_lock_is_free(tmp_path, caplog):
    import subprocess
    import sys
    entry = tmp_path / "training-memo" / "entry.json"
    entry.parent.mkdir()
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(entry.with_suffix(".lock"))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
    finally:
        holder.kill()
        holder.wait()
    ran = []
    with trainingcache.claimed(entry, wait=0):
        ran.append(1)
    assert ran and "computing it here too" not in caplog.text
