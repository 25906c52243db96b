"""The ``training_improvement`` check: does the student's BN model train faster than the baseline?

The student's ``build_model_with_bn()`` (rebuilt from its Keras config elsewhere) and the reference
model without BN (``reference_models.model_without_bn()``) are each trained for the same short, seeded
budget on the same Fashion-MNIST subset. The check passes when BN's *training* accuracy (the
running accuracy ``fit`` reports over the epoch, which is what shows the speed-up) leads the
baseline's by at least ``REQUIRED_LEAD``. The baseline is the same for every submission, so it is
cached on disk and a class pays for it once; so is a whole comparison, by architecture (the memo).

SCHEDULE and REQUIRED_LEAD are calibrated in benchmarks/calibrate_training_check.py (its docstring
holds the measured leads, times and repeatability). The cache is trainingcache.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autograder import data, keras_runtime, provenance, reference_models, trainingcache
from autograder.errors import ModelRefused, TrainingRefused
from autograder.models import architecture, cost, vet
from autograder.settings import TrainingBudget, default_cache_dir  # noqa: F401 (their home is settings.py)

log = logging.getLogger(__name__)

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Schedule:
    """What one training run gets: the first ``n_images`` training images, seen ``epochs`` times."""

    n_images: int                # the first n of Fashion-MNIST's training images
    epochs: int = 1
    batch_size: int = 64
    seed: int = 0                # weights, dropout and the order of the images
    learning_rate: float = 1e-3  # Adam's


# 32 steps of 64 images: early enough that BN's head start shows (+0.15 to +0.19 over 8 seeds),
# and cheap, since ~1 s of a run is the fixed cost of tracing the train step (see the calibration).
# n_images is a multiple of batch_size: every step sees a full batch.
SCHEDULE = Schedule(n_images=2048, epochs=1, batch_size=64, seed=0, learning_rate=1e-3)
# Halfway between the worst correct lead and the no-BN model's 0 (see the calibration).
REQUIRED_LEAD = 0.075
# Past its training runs' budget, how long a grader waits for another computing the same cache entry
# (building the model, importing Keras) before it computes the entry itself.
CLAIM_SLACK_SECONDS = 30.0


@dataclass(frozen=True)
class Comparison:
    """The outcome of one check: both training accuracies, the lead and whether it is enough."""

    bn_accuracy: float
    baseline_accuracy: float
    lead: float
    required_lead: float
    passed: bool
    seconds: float

    def summary(self) -> str:
        verdict = "passed" if self.passed else "not enough"
        return (f"training accuracy after the short budget: with BN {self.bn_accuracy:.3f}, "
                f"without BN {self.baseline_accuracy:.3f}; lead {self.lead:+.3f} "
                f"(needs at least {self.required_lead:+.3f}): {verdict}")


# ---------------------------------------------------------------------------------------------
# Training


@functools.lru_cache(maxsize=4)
def _subset(n_images: int):
    # Reading the IDX file takes ~0.4 s; the baseline and the student's model share one read.
    x, y = data.training_subset(n_images)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@contextlib.contextmanager
def _silenced():
    """Swallow everything printed meanwhile: Python's streams, warnings, and TF's C++ logs on fds 1 and 2.

    TensorFlow logs from C++ straight to file descriptor 2, past ``sys.stderr``, so redirecting the
    Python objects alone is not enough. Not thread-safe: nothing else should print meanwhile.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:  # no such descriptor (some embedded interpreters): nothing to hide there
                    pass
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
                    contextlib.redirect_stderr(devnull), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_declared_shapes(model) -> None:
    """Fail early, in the student's terms, on a model that cannot be trained on 10-class 28x28x1 images."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):  # e.g. a Sequential never built: the probe call decides
        return
    if len(inputs) != 1:
        raise TrainingRefused(f"the model has {len(inputs)} inputs; it must take one batch of "
                              f"images of shape (None, 28, 28, 1)")
    if len(outputs) != 1:
        raise TrainingRefused(f"the model has {len(outputs)} outputs; it must have one, "
                              f"Dense({NUM_CLASSES}, activation='softmax')")
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 4 or any(d not in (None, want) for d, want in zip(in_shape[1:], INPUT_SHAPE, strict=True)):
        raise TrainingRefused(f"the model's input has shape {_shape_text(in_shape)}; it must take "
                              f"Fashion-MNIST images of shape (None, 28, 28, 1)")
    if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES:
        raise TrainingRefused(f"the model's output has shape {_shape_text(out_shape)}; it must be "
                              f"(None, {NUM_CLASSES}): end the model in "
                              f"Dense({NUM_CLASSES}, activation='softmax')")


def _check_outputs_are_probabilities(model, x) -> None:
    """Call the model on a few images: the output must be one (n, 10) softmax per image."""
    try:
        out = model(x, training=False)
    except Exception as error:  # noqa: BLE001 (any failure here is the student's model's)
        raise TrainingRefused(f"the model could not be applied to a batch of Fashion-MNIST images "
                              f"of shape (None, 28, 28, 1): {_first_line(error)}") from error
    if isinstance(out, (list, tuple, dict)):
        raise TrainingRefused(f"the model has {len(out)} outputs; it must have one, "
                              f"Dense({NUM_CLASSES}, activation='softmax')")
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (len(x), NUM_CLASSES):
        raise TrainingRefused(f"the model's output has shape {_shape_text((None,) + out.shape[1:])}; "
                              f"it must be (None, {NUM_CLASSES}): end the model in "
                              f"Dense({NUM_CLASSES}, activation='softmax')")
    sums = out.sum(axis=1)
    # The check's loss expects probabilities: logits or sigmoids would train badly and look like "no lead".
    if not np.all(np.isfinite(out)) or out.min() < -1e-6 or np.abs(sums - 1).max() > 1e-3:
        raise TrainingRefused(f"the model's outputs are not class probabilities (a row sums to "
                              f"{sums[np.argmax(np.abs(sums - 1))]:.3g}, not 1); the last layer must "
                              f"be Dense({NUM_CLASSES}, activation='softmax')")


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rss_bytes() -> int:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run_budget(keras, budget: TrainingBudget, started: float):
    """A callback that stops training at the end of the first batch past the training check's
    wall-clock or memory budget (TrainingBudget.seconds, .memory_bytes); ``reason`` says
    which. One batch of a model within the grader's caps (models.cost) is short, so the overshoot is small."""
    baseline = _rss_bytes()

    class RunBudget(keras.callbacks.Callback):
        reason = None

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.monotonic() - started
            grown = _rss_bytes() - baseline
            if seconds > budget.seconds:
                self.reason = (f"training was stopped after {seconds:.0f} s, past the grader's "
                               f"{budget.seconds:g} s budget for the training check")
            elif grown > budget.memory_bytes:
                self.reason = (f"training was stopped when it had taken {grown / 2**20:,.0f} MiB more memory, "
                               f"past the grader's {budget.memory_bytes / 2**20:,.0f} MiB budget for "
                               "the training check")
            if self.reason:
                self.model.stop_training = True

    return RunBudget()


def _train(model, schedule: Schedule, budget: TrainingBudget) -> float:
    keras = keras_runtime.keras()   # lazy: importing TensorFlow takes ~3.5 s

    started = time.monotonic()
    try:   # bounded before anything is built or trained: the cost follows from the config alone
        cost.check_bounds(json.loads(model.to_json()), schedule=schedule)
    except ModelRefused as error:
        raise TrainingRefused(str(error)) from None
    _check_declared_shapes(model)
    x, y = _subset(schedule.n_images)
    # Seed, then clone: the clone's weights are drawn here, under the seed, so the result does not
    # depend on what ran before in the process nor on how the given model was built, and the given
    # model is left untouched (calling twice does not continue training it).
    keras.utils.set_random_seed(schedule.seed)
    try:
        fresh = keras.models.clone_model(model)
    except Exception as error:  # noqa: BLE001
        raise TrainingRefused(f"the model could not be rebuilt from its configuration: "
                              f"{_first_line(error)}; build it from standard Keras layers") from error
    _check_outputs_are_probabilities(fresh, x[:8])
    fresh.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Our own seeded permutation with shuffle=False: the order is fixed by the schedule, not by
    # Keras' shuffling internals. (The same order every epoch; the check is about speed.)
    order = np.random.default_rng(schedule.seed).permutation(len(x))
    run_budget = _run_budget(keras, budget, started)
    try:
        history = fresh.fit(x[order], y[order], batch_size=schedule.batch_size, epochs=schedule.epochs,
                            shuffle=False, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), run_budget])
    except Exception as error:  # noqa: BLE001
        raise TrainingRefused(f"training the model failed: {_first_line(error)}") from error
    if run_budget.reason:
        raise TrainingRefused(f"{run_budget.reason} (a model within the grader's size caps trains in "
                              "a few seconds)")
    loss = history.history.get("loss", [math.nan])[-1]
    accuracy = history.history.get("accuracy", [math.nan])[-1]
    if not (math.isfinite(loss) and math.isfinite(accuracy)):
        raise TrainingRefused("training diverged (the loss became NaN or infinite); check for a "
                              "layer that can blow up, e.g. a missing activation or a custom layer")
    return float(accuracy)


def train_accuracy(model, schedule: Schedule = SCHEDULE, budget: TrainingBudget = TrainingBudget()) -> float:
    """The training accuracy of a fresh copy of ``model`` over the last epoch of ``schedule``.

    Seeded and silent: the same model and schedule give the same number in one process or in two
    (on the same machine; a different thread count or CPU changes the last bits, ~0.001).
    Raises TrainingRefused with a message for the student when the model cannot be trained, when
    it is above the grader's caps (models.cost, checked from its config before anything is built), or when
    training runs past ``budget``'s wall-clock time or memory.
    """
    with _silenced():
        return _train(model, schedule, budget)


# ---------------------------------------------------------------------------------------------
# The baseline (cached in trainingcache.py)


def baseline_key(schedule: Schedule = SCHEDULE) -> dict:
    """Everything the baseline's accuracy depends on; a change in any of it means a new cache entry.
    Read without importing TensorFlow or Keras, so that a memoized comparison needs neither."""
    return {
        "budget": dataclasses.asdict(schedule),     # "budget": the name cached entries have
        "tensorflow": provenance.installed_version("tensorflow-cpu", "tensorflow"),
        "keras": provenance.installed_version("keras"),
        "data_sha256": trainingcache.training_files_sha256(),
        # The baseline model, the training procedure and TensorFlow's set-up, so editing any of them
        # cannot serve a stale number.
        "code": trainingcache.source_hash(reference_models.model_without_bn, _train, keras_runtime),
    }


def _read_baseline(path: Path, key: dict):
    """The cached accuracy, or None when the entry is missing, corrupt, for another key or not an accuracy."""
    accuracy = trainingcache.read(path, key)
    return accuracy if isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0 else None


def baseline_accuracy(cache_dir: Path | None = None, schedule: Schedule = SCHEDULE,
                      budget: TrainingBudget = TrainingBudget()) -> float:
    """The reference model without BN's training accuracy for ``schedule``, computed once per cache
    dir (None: settings.default_cache_dir(); BN_AUTOGRADER_CACHE is read by the caller)."""
    with _silenced():
        key = baseline_key(schedule)
    path = trainingcache.entry_path(cache_dir, trainingcache.BASELINE, key)
    accuracy = _read_baseline(path, key)
    if accuracy is None:
        # one grader trains it; another that needs it meanwhile waits for its number
        with trainingcache.claimed(path, wait=budget.seconds + CLAIM_SLACK_SECONDS):
            accuracy = _read_baseline(path, key)
            if accuracy is None:
                with _silenced():
                    model = reference_models.model_without_bn()
                accuracy = train_accuracy(model, schedule, budget)
                trainingcache.write(path, key, accuracy)
    return accuracy


def _help_with_baseline(cache_dir, schedule, budget) -> None:
    """Train the baseline if no grader has it yet: what a grader waiting for another's comparison does
    meanwhile, since that comparison needs the baseline after its own training. A failure here is
    left to the comparison this grader then reads or makes, which meets it again if it is real."""
    try:
        baseline_accuracy(cache_dir, schedule, budget)
    except Exception as exc:  # noqa: BLE001 - only a head start failed
        log.info("training the baseline while another grader trains the same architecture failed: %s", exc)


# ---------------------------------------------------------------------------------------------
# The memo: a whole comparison, by architecture
#
# The check is seeded and deterministic, so its outcome depends only on the architecture (the
# config without names, see models/architecture.py), the schedule and the grader. Most correct answers share
# an architecture: they are trained once per cache. Only complete comparisons are kept; a model
# that could not be trained is judged again each time (cheap, and a bound that stopped training
# may depend on the machine's load).

def memo_key(config: dict, schedule: Schedule = SCHEDULE, required_lead: float = REQUIRED_LEAD) -> dict:
    """Everything a comparison depends on: the architecture, the schedule and the margin, everything the
    baseline depends on (versions, data, code), and the source of this module, of the vetting and
    the bounds (models.vet, models.cost) and of the canonical form (models.architecture),
    so that a changed grader never serves a stale result."""
    return {
        "architecture": architecture.fingerprint(config),
        "required_lead": required_lead,
        "baseline": baseline_key(schedule),
        "grader_code": trainingcache.source_hash(sys.modules[__name__], trainingcache, vet, cost, architecture),
    }


_MEMO_FIELDS = ("bn_accuracy", "baseline_accuracy", "lead", "required_lead", "passed")


def _read_memo(path: Path, key: dict):
    """The memoized Comparison (seconds 0), or None when missing, corrupt or for another key."""
    stored = trainingcache.read(path, key)
    try:
        if set(stored) != set(_MEMO_FIELDS):
            return None
        if not all(isinstance(stored[f], float) and math.isfinite(stored[f]) for f in _MEMO_FIELDS[:4]) \
                or not isinstance(stored["passed"], bool):
            return None
        return Comparison(**stored, seconds=0.0)
    except (ValueError, KeyError, TypeError):
        return None


def _write_memo(path: Path, key: dict, result: Comparison) -> None:
    trainingcache.write(path, key, {f: getattr(result, f) for f in _MEMO_FIELDS})


def memoized_compare(config: dict, compute, cache_dir: Path | None = None, schedule: Schedule = SCHEDULE,
                     required_lead: float = REQUIRED_LEAD, memo: bool = True,
                     budget: TrainingBudget = TrainingBudget()) -> Comparison:
    """``compute()`` (a Comparison for the model of the vetted ``config``, trained within ``budget``), or
    its memoized result for the same architecture, schedule, margin and grader. What ``compute`` raises
    is passed on, not kept. ``memo`` False computes every time (settings' BN_AUTOGRADER_TRAINING_MEMO=0,
    read by the caller). While another grader trains the same architecture, this one trains the
    baseline that both need (compare trains the student's model first), then reads the other's result."""
    if not memo:
        return compute()
    start = time.perf_counter()
    with _silenced():
        key = memo_key(config, schedule, required_lead)
    path = trainingcache.entry_path(cache_dir, trainingcache.MEMO, key)
    found = _read_memo(path, key)
    if found is None:
        with trainingcache.claimed(path, wait=2 * budget.seconds + CLAIM_SLACK_SECONDS,
                                   while_waiting=lambda: _help_with_baseline(cache_dir, schedule, budget)):
            found = _read_memo(path, key)
            if found is None:
                result = compute()
                if isinstance(result, Comparison):
                    _write_memo(path, key, result)
                return result
    return dataclasses.replace(found, seconds=time.perf_counter() - start)


def compare(student_model, cache_dir: Path | None = None, schedule: Schedule = SCHEDULE,
            required_lead: float = REQUIRED_LEAD, budget: TrainingBudget = TrainingBudget()) -> Comparison:
    """Train the student's BN model and compare its training accuracy with the cached baseline's;
    each training run stops past ``budget``."""
    start = time.perf_counter()
    bn = train_accuracy(student_model, schedule, budget)
    base = baseline_accuracy(cache_dir, schedule, budget)
    lead = bn - base
    return Comparison(bn_accuracy=bn, baseline_accuracy=base, lead=lead, required_lead=required_lead,
                      passed=lead >= required_lead, seconds=time.perf_counter() - start)
