"""Calibrate the ``training_improvement`` check: how far does a correct BN model lead, and how far do wrong ones?

For several seeds and budgets it trains the reference model without BN (the baseline) and a set
of "student" models through ``autograder.training.train_accuracy``, exactly as grading does, and
prints each model's training accuracy and lead over the baseline, the min/mean/max lead per
model, the seconds per run, the REQUIRED_LEAD those numbers suggest, and whether a run repeats
bit for bit in the same process and in a fresh one.

    .venv/bin/python benchmarks/calibrate_training_check.py            # 8 seeds, 3 budgets (~10 min)
    .venv/bin/python benchmarks/calibrate_training_check.py --seeds 5 --only-chosen

Grading uses one seed (SCHEDULE.seed); the spread over seeds shows how much the lead depends on
initialisation luck, i.e. how robust the margin is.

The calibration behind autograder/training.py's SCHEDULE and REQUIRED_LEAD (this script, ~10 min).
Leads over the baseline for seeds 0-7 (TF 2.21.0, Keras 3.15.1, 2 cores), at SCHEDULE = 2,048 images,
1 epoch, batch 64 (32 steps), Adam 1e-3:

    model                              lead min   mean    max   passes at 0.075
    reference Conv-BN-ReLU               +0.155  +0.178  +0.192    8/8
    Conv(use_bias=False)-BN-ReLU         +0.155  +0.178  +0.193    8/8
    Dense -> Softmax() head              +0.155  +0.178  +0.192    8/8
    Dropout(0.25) after Flatten          +0.075  +0.133  +0.169    8/8   (on the margin at seed 1)
    Dropout(0.5) after pools, Flatten    -0.235  -0.206  -0.185    0/8   (the review's model)
    old placement Conv(relu)-BN          +0.174  +0.206  +0.231    8/8   (placement is another check's job)
    BN on the input only                 +0.050  +0.089  +0.117    7/8
    BN after Flatten only                +0.155  +0.207  +0.224    8/8
    softmax regression (no conv, no BN)  -0.056  -0.009  +0.012    0/8
    no-BN model submitted as BN           0.000   0.000   0.000    0/8   (same training as the baseline)
    baseline accuracy 0.455-0.501 (mean 0.470); at the grading seed 0: BN 0.659, no BN 0.472, lead +0.187
    (re-measured after issue 24, same versions, with the Dropout and Softmax() rows added)

The first three are models Exercise 3 accepts: since it accepts no layer the baseline lacks but BN
and ReLU (Dropout lowers the lead, down to the margin or below), every model it accepts is compared
with the baseline on BN alone and clears the margin by at least 0.080 at every seed.

REQUIRED_LEAD is halfway between the worst correct lead (+0.154 when it was chosen, +0.155 now) and the
best lead of the no-BN model submitted as the BN model (0 by construction), +0.077, rounded down to 0.075.

Alternatives measured: 1,024 images / batch 32 (32 steps): correct leads +0.152 to +0.229, wider
spread, no faster. 6,016 images / batch 128 (47 steps, the setting first measured): correct leads
+0.109 to +0.176 and ~2x slower per run (batch 128 steps cost ~4x batch 64 steps here).

Time (wall clock on a machine shared with other jobs, load ~2): a run is ~1 s of fixed cost
(tracing the train step) plus ~18 ms a step, so ~1.5-2.2 s for the BN model once TensorFlow is
warm and ~2.3 s for the first run in a fresh process (~2.5 s of CPU time); the baseline ~0.9-1.3 s,
paid once per cache. Under heavy load (5+) expect 3-5 s. Repeatability:
the same seed gives bit-identical accuracies (and weights) twice in one process and in fresh
processes. A different thread count changes the last bits (weights differ, accuracy by ~0.0005),
and so, under load, could the executor's choice of thread for an op: since issue 22 the grader's
TensorFlow runs one thread per op, one op at a time, with deterministic kernels
(autograder/keras_runtime.py). Numbers can still differ slightly between machines (CPU, versions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import reference_models, training

ALTERNATIVE_SCHEDULES = [
    training.Schedule(n_images=1024, epochs=1, batch_size=32, seed=0),
    training.Schedule(n_images=6016, epochs=1, batch_size=128, seed=0),  # ~ the 6,000/128 first measured
]


# ---------------------------------------------------------------------------------------------
# Student models: the right one and wrong ones.

def _keras():
    import keras  # noqa: PLC0415
    return keras


def old_placement():
    """Conv(relu) -> BN: BN after the ReLU instead of between the Conv and its ReLU."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="old_placement")


def bn_on_input_only():
    """One BN on the raw pixels, none inside: normalises the data, not the hidden activations."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.BatchNormalization()(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="bn_input_only")


def bn_before_classifier_only():
    """The baseline with a single BN after Flatten, in front of the softmax layer."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="bn_classifier_only")


def conv_without_bias():
    """A correct variant: Conv(use_bias=False) -> BN -> ReLU (BN's beta makes the conv bias redundant)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="conv_without_bias")


def _with_bn(dropout_after_pooling=0.0, dropout_after_flatten=0.0, separate_softmax=False, name="with_bn"):
    """The reference Conv-BN-ReLU model, with Dropout layers added or the softmax as a layer of its own."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        if dropout_after_pooling:
            x = layers.Dropout(dropout_after_pooling)(x)
    x = layers.Flatten()(x)
    if dropout_after_flatten:
        x = layers.Dropout(dropout_after_flatten)(x)
    if separate_softmax:
        outputs = layers.Softmax()(layers.Dense(10)(x))
    else:
        outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def separate_softmax():
    """A correct variant: Dense(10) followed by a Softmax layer."""
    return _with_bn(separate_softmax=True, name="separate_softmax")


def dropout_after_flatten():
    """Conv-BN-ReLU with an extra Dropout(0.25) after Flatten: a layer the baseline lacks."""
    return _with_bn(dropout_after_flatten=0.25, name="dropout_after_flatten")


def dropout_everywhere():
    """Conv-BN-ReLU with Dropout(0.5) after each pooling and after Flatten (the review's model)."""
    return _with_bn(dropout_after_pooling=0.5, dropout_after_flatten=0.5, name="dropout_everywhere")


def softmax_regression():
    """No convolution and no BN: Flatten -> Dense(10, softmax)."""
    keras = _keras()
    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs, name="softmax_regression")


CORRECT = ("reference Conv-BN-ReLU", "Conv(no bias)-BN-ReLU", "Dense -> Softmax() head")
NO_BN = "no-BN model as the BN model"
MODELS = {
    CORRECT[0]: reference_models.model_with_bn,
    CORRECT[1]: conv_without_bias,
    CORRECT[2]: separate_softmax,
    "Dropout(0.25) after Flatten": dropout_after_flatten,
    "Dropout(0.5) x3 (pools, Flatten)": dropout_everywhere,
    "old placement Conv(relu)-BN": old_placement,
    "BN on the input only": bn_on_input_only,
    "BN before the classifier only": bn_before_classifier_only,
    "softmax regression (no conv)": softmax_regression,
    NO_BN: reference_models.model_without_bn,
}


# ---------------------------------------------------------------------------------------------

def timed(build, budget):
    model = build()  # built outside the timing, as grading receives a built model
    start = time.perf_counter()
    accuracy = training.train_accuracy(model, budget)
    return accuracy, time.perf_counter() - start


def describe(budget) -> str:
    steps = -(-budget.n_images // budget.batch_size) * budget.epochs
    return (f"{budget.n_images} images x {budget.epochs} epoch(s), batch {budget.batch_size} "
            f"({steps} steps), Adam lr {budget.learning_rate:g}")


def calibrate(budget, seeds):
    """{model: [(seed, accuracy, lead, seconds)]} and the baseline's [(seed, accuracy, seconds)]."""
    rows = {name: [] for name in MODELS}
    baseline = []
    short = {name: name[:13] for name in MODELS}
    print(f"\n== budget: {describe(budget)}")
    print("seed  no-BN   " + "  ".join(f"{short[n]:>13}" for n in MODELS) + "   (accuracy / lead)")
    for seed in seeds:
        b = dataclasses.replace(budget, seed=seed)
        base, base_s = timed(reference_models.model_without_bn, b)
        baseline.append((seed, base, base_s))
        cells = []
        for name, build in MODELS.items():
            acc, sec = timed(build, b)
            rows[name].append((seed, acc, acc - base, sec))
            cells.append(f"{acc:.3f}/{acc - base:+.3f}")
        print(f"{seed:>4}  {base:.3f}   " + "  ".join(f"{c:>13}" for c in cells), flush=True)
    return rows, baseline


def summarise(rows, baseline, required):
    print(f"\n{'model':<32} {'min lead':>9} {'mean':>7} {'max':>7}  {'passes':>7}  {'s/run (median, max)':>20}")
    for name, runs in rows.items():
        leads = [r[2] for r in runs]
        secs = [r[3] for r in runs]
        passes = sum(lead >= required for lead in leads)
        print(f"{name:<32} {min(leads):>+9.3f} {statistics.mean(leads):>+7.3f} {max(leads):>+7.3f}  "
              f"{passes:>3}/{len(leads):<3}  {statistics.median(secs):>9.2f}, {max(secs):.2f}")
    secs = [s for _, _, s in baseline]
    accs = [a for _, a, _ in baseline]
    print(f"{'(baseline no-BN accuracy)':<32} {min(accs):>9.3f} {statistics.mean(accs):>7.3f} "
          f"{max(accs):>7.3f}  {'':>7}  {statistics.median(secs):>9.2f}, {max(secs):.2f}")


def suggest(rows):
    worst_correct = min(r[2] for name in CORRECT for r in rows[name])
    best_wrong = max(r[2] for r in rows[NO_BN])
    return worst_correct, best_wrong, (worst_correct + best_wrong) / 2


FRESH_PROCESS = """
import json, sys, time
from autograder import reference_models, training
start = time.perf_counter()
model = reference_models.model_with_bn()           # the first TF work in the process: cold, as in grading
built = time.perf_counter()
bn = training.train_accuracy(model)
trained = time.perf_counter()
base = training.train_accuracy(reference_models.model_without_bn())
print(json.dumps({"bn": bn, "base": base, "import_and_build": built - start,
                  "cold_bn_seconds": trained - built}))
"""


def repeatability():
    print(f"\n== repeatability at BUDGET ({describe(training.SCHEDULE)}, seed {training.SCHEDULE.seed})")
    here = [(training.train_accuracy(reference_models.model_with_bn()),
             training.train_accuracy(reference_models.model_without_bn())) for _ in range(2)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    fresh = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        fresh.append(json.loads(out.strip().splitlines()[-1]))
    print(f"same process, twice: BN {here[0][0]!r} / {here[1][0]!r}, no-BN {here[0][1]!r} / {here[1][1]!r}"
          f" -> {'identical' if here[0] == here[1] else 'DIFFERENT'}")
    for i, f in enumerate(fresh, 1):
        print(f"fresh process {i}:     BN {f['bn']!r}, no-BN {f['base']!r}; cold BN training "
              f"{f['cold_bn_seconds']:.2f} s (import TF + build {f['import_and_build']:.2f} s)")
    same = all((f["bn"], f["base"]) == here[0] for f in fresh)
    print(f"fresh processes vs this one -> {'identical' if same else 'DIFFERENT'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 (default 8)")
    parser.add_argument("--only-chosen", action="store_true", help="skip the alternative budgets")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))

    print(f"chosen BUDGET = {training.SCHEDULE}; REQUIRED_LEAD = {training.REQUIRED_LEAD}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with training._silenced():  # TensorFlow's start-up chatter on stderr
        import keras  # noqa: F401, PLC0415
    timed(reference_models.model_with_bn, training.SCHEDULE)  # warm-up: TF's one-time start-up, not counted

    budgets = [training.SCHEDULE] + ([] if args.only_chosen else ALTERNATIVE_SCHEDULES)
    results = {}
    for budget in budgets:
        rows, baseline = calibrate(budget, seeds)
        worst, best_wrong, middle = suggest(rows)
        results[budget] = middle
        summarise(rows, baseline, training.REQUIRED_LEAD if budget == training.SCHEDULE else middle)
        print(f"worst correct lead {worst:+.3f}, best no-BN-as-BN lead {best_wrong:+.3f} "
              f"-> halfway {middle:+.3f}" + ("" if budget == training.SCHEDULE else
                                              " (passes above counted against this halfway value)"))

    repeatability()
    print(f"\nREQUIRED_LEAD in autograder/training.py: {training.REQUIRED_LEAD} "
          f"(halfway suggestion for the chosen budget: {results[training.SCHEDULE]:+.3f})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (timings are wall clock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
