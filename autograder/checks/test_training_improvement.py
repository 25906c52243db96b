"""training_improvement: the student's build_model_with_bn() trains faster than the baseline.

The grader rebuilds the student's model from its configuration (fresh weights; none of the
student's code runs), trains it and the reference model without BN for the same short, fixed,
seeded budget on the same Fashion-MNIST subset, and compares their training accuracy. The
budget, the required lead and the seed-to-seed distribution they were calibrated on are in
autograder/training.py.
"""

import pytest

from autograder import modelcheck, training

FUNCTION = "build_model_with_bn"


@pytest.mark.points(2.0)
def test_bn_model_trains_faster_than_the_baseline(model_config, cache_dir, record_timing):
    """With BN, training accuracy after the short budget leads the model without BN by the calibrated margin."""
    config = model_config(FUNCTION)
    # refused when it costs too much to train, memoized or not (from the config: no Keras)
    modelcheck.check_bounds(config, training_budget=training.BUDGET)

    def train():
        # fresh weights, only for this training run; Keras (and TensorFlow) only when the memo misses
        return training.compare(modelcheck.rebuild(config, training_budget=training.BUDGET), cache_dir=cache_dir)

    try:
        # Trained once per architecture and grader: the same architecture gets the memoized result.
        result = training.memoized_compare(config, train, cache_dir=cache_dir)
    except training.TrainingCheckError as exc:
        pytest.fail(str(exc))
    record_timing("training_check", result.seconds)
    budget = training.BUDGET
    assert result.passed, (
        f"after {budget.epochs} epoch(s) on {budget.n_images:,} images your BN model reached a training "
        f"accuracy of {result.bn_accuracy:.3f}, the model without BN {result.baseline_accuracy:.3f}: a lead "
        f"of {result.lead:+.3f}, below the {result.required_lead:.2f} that a Conv -> BN -> ReLU model reaches; "
        "check that BatchNormalization sits between each Conv2D and its ReLU")
