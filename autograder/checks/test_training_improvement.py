"""training_improvement: the student's build_model_with_bn() trains faster than the baseline.

The grader rebuilds the student's model from its configuration (fresh weights; none of the
student's code runs), trains it and the reference model without BN for the same short, fixed,
seeded budget on the same Fashion-MNIST subset, and compares their training accuracy: the running
mean over the epoch's batches that Keras' fit reports, in training mode. The model is trained as
built: its Dropout, if any, is active. The budget, the required lead and the seed-to-seed
distribution they were calibrated on are in autograder/training.py. Its message, passed or not, and
also when the result comes from the memo, gives both measured accuracies, the lead and the required
margin. A lead below the margin is then explained from the model's structure, read by Exercise 3's
rules (model_with_bn.shortfall): what its placement check finds, then what its architecture check
finds and what that does to the lead (Dropout, a changed architecture), or, when they find nothing,
that the structure is not the cause.

Robust to what Exercise 3 accepts: Exercise 3 accepts no layer the baseline lacks but BN and ReLU, so
a model it accepts differs from the baseline by BN alone: the solution, and the same with
Conv2D(use_bias=False) or a separate Softmax layer, led by at least +0.155 over eight seeds
(benchmarks/calibrate_training_check.py). The placement is Exercise 3's to charge (half of it): BN
after the ReLU or after Flatten also speeds training up, and this check measures the speed-up.

Weight (1 point): one check.
"""

import pytest

from autograder import training
from autograder.checks.model_with_bn import FUNCTION, shortfall
from autograder.errors import TrainingRefused
from autograder.models import cost, rebuild, vet
from autograder.results import TRAINING_LEAD


@pytest.mark.points(1.0)
def test_bn_model_trains_faster_than_the_baseline(model_config, student_model, cache_dir, training_budget,
                                                   training_memo, record_timing, record_measure, record_property):
    """With BN, training accuracy after the short budget leads the model without BN by the calibrated margin."""
    config = model_config(FUNCTION)
    # refused when it costs too much to train, memoized or not (from the config: no Keras)
    with vet.reading_student_config():     # a config it cannot read is the student's
        cost.check_bounds(config, schedule=training.SCHEDULE)

    def train():
        # fresh weights, only for this training run; Keras (and TensorFlow) only when the memo misses
        return training.compare(rebuild.rebuild(config, schedule=training.SCHEDULE), cache_dir=cache_dir,
                                budget=training_budget)

    try:
        # Trained once per architecture and grader: the same architecture gets the memoized result.
        result = training.memoized_compare(config, train, cache_dir=cache_dir, memo=training_memo,
                                            budget=training_budget)
    except TrainingRefused as exc:
        pytest.fail(str(exc))
    record_timing("training_check", result.seconds)
    record_measure(TRAINING_LEAD, result.lead)
    schedule = training.SCHEDULE
    measured = (f"after {schedule.epochs} epoch(s) on {schedule.n_images:,} images (batch {schedule.batch_size}, "
                f"seed {schedule.seed}) your BN model reached a training accuracy of {result.bn_accuracy:.3f}, the "
                f"model without BN {result.baseline_accuracy:.3f}: a lead of {result.lead:+.3f}")
    record_property("message", f"{measured}, at least the required {result.required_lead:.3f}")
    # on a shortfall, what the structure checks find comes before what lowers the lead
    assert result.passed, (
        f"{measured}, below the required {result.required_lead:.3f} that a Conv -> BN -> ReLU model reaches. "
        f"{shortfall(student_model(FUNCTION))}")
