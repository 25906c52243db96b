"""Exercise 4's message on a lead below the margin (checks/model_with_bn.shortfall): it names the measured
lead, then says what Exercise 3's structure checks find, and blames only what they find wrong. And Exercise 3's
architecture rule, which makes Exercise 4 a comparison of BN alone: beside BN and ReLU, the baseline's layers
and nothing else (no Dropout).

The models are hand-written configs read by models.view, as the checks read them: no TensorFlow, except
in the one slow test that holds BASELINE_LAYERS against the reference models.
"""

import json

import pytest

from autograder import training
from autograder.checks import model_with_bn
from autograder.checks import test_build_model_with_bn as exercise_3
from autograder.checks import test_training_improvement as exercise_4
from autograder.models import view
from autograder.results import TRAINING_LEAD


def _layer(kind, **config):
    return {"class_name": kind, "module": "keras.layers", "config": config}


def _conv(filters, activation=None):
    return _layer("Conv2D", filters=filters, kernel_size=[3, 3], strides=[1, 1], padding="valid",
                  activation=activation, use_bias=True)


BN = _layer("BatchNormalization", axis=-1)
RELU = _layer("Activation", activation="relu")
POOL = _layer("MaxPooling2D", pool_size=[2, 2])
HEAD = [_layer("Flatten"), _layer("Dense", units=10, activation="softmax")]


def model(*layers):
    """The view of a Sequential model of ``layers`` on 28x28x1 images, as the checks get it."""
    config = {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [
        _layer("InputLayer", batch_shape=[None, 28, 28, 1]), *layers]}}
    return view.view(json.loads(json.dumps(config)))


CORRECT = model(_conv(32), BN, RELU, POOL, _conv(64), BN, _layer("ReLU"), POOL, *HEAD)
WITH_DROPOUT = model(_conv(32), BN, RELU, POOL, _conv(64), BN, RELU, POOL, _layer("Flatten"),
                     _layer("Dropout", rate=0.25), HEAD[1])
BN_AFTER_RELU = model(_conv(32), RELU, BN, POOL, _conv(64), RELU, BN, POOL, *HEAD)
OLD_PLACEMENT = model(_conv(32, "relu"), BN, POOL, _conv(64, "relu"), BN, POOL, *HEAD)
CHANGED = model(_conv(16), BN, RELU, POOL, _conv(64), BN, RELU, POOL, *HEAD)
NO_BN = model(_conv(32, "relu"), POOL, _conv(64, "relu"), POOL, *HEAD)
BN_AFTER_FLATTEN = model(_conv(32, "relu"), POOL, _conv(64, "relu"), POOL, _layer("Flatten"), BN, HEAD[1])
BN_ON_INPUT = model(BN, _conv(32, "relu"), POOL, _conv(64, "relu"), POOL, *HEAD)
DROPOUT = _layer("Dropout", rate=0.5)
DROPOUT_EVERYWHERE = model(_conv(32), BN, RELU, POOL, DROPOUT, _conv(64), BN, RELU, POOL, DROPOUT,
                           _layer("Flatten"), DROPOUT, HEAD[1])
TANH_AFTER_BN = model(_conv(32), BN, _layer("Activation", activation="tanh"), POOL, _conv(64), BN, RELU, POOL, *HEAD)
MODELS = {"correct": CORRECT, "dropout": WITH_DROPOUT, "bn_after_relu": BN_AFTER_RELU,
          "old_placement": OLD_PLACEMENT, "changed_filters": CHANGED, "no_bn": NO_BN,
          "bn_after_flatten": BN_AFTER_FLATTEN, "bn_on_input": BN_ON_INPUT, "dropout_everywhere": DROPOUT_EVERYWHERE,
          "tanh_after_bn": TANH_AFTER_BN}

PLACEMENT_BLAMED = "placement check finds"
PLACEMENT_CLEARED = "the placement is not what lowers the lead"
ARCHITECTURE_BLAMED = "architecture check finds that"


def failure(check, found):
    """The message of one of Exercise 3's checks on the model ``found``, or None when it passes."""
    try:
        check(lambda function, **kwargs: found)
    except (AssertionError, pytest.fail.Exception) as error:
        return str(error)
    return None


def test_a_right_placement_with_an_extra_dropout_is_told_the_dropout_not_the_placement():
    message = model_with_bn.shortfall(WITH_DROPOUT)
    assert PLACEMENT_CLEARED in message and PLACEMENT_BLAMED not in message
    assert "adds Dropout(0.25)" in message
    assert "Dropout, which the baseline lacks, slows early training and lowers the lead" in message
    assert message.index(PLACEMENT_CLEARED) < message.index("Dropout")      # what the checks find comes first


@pytest.mark.parametrize("found", [BN_AFTER_RELU, OLD_PLACEMENT], ids=["bn_after_relu", "old_placement"])
def test_a_wrong_placement_is_named_as_exercise_3_names_it(found):
    message = model_with_bn.shortfall(found)
    errors = model_with_bn.placement_errors(view.flat_layers(found))
    assert errors and f"{PLACEMENT_BLAMED}: {'; '.join(errors)}" in message
    assert PLACEMENT_CLEARED not in message
    # BN and ReLU in the wrong order are not taken for layers the baseline lacks
    assert ARCHITECTURE_BLAMED not in message and "Dropout" not in message


def test_a_correct_model_is_told_the_seed_and_budget_not_its_structure():
    message = model_with_bn.shortfall(CORRECT)
    assert PLACEMENT_CLEARED in message and PLACEMENT_BLAMED not in message
    assert "your model's structure is right, and its lead was low for this seed and budget" in message
    assert ARCHITECTURE_BLAMED not in message and "Dropout" not in message


def test_a_changed_architecture_is_named():
    message = model_with_bn.shortfall(CHANGED)
    assert "has Conv2D(16) where the baseline has Conv2D(32)" in message
    assert "parameters" in message and "changed architecture trains at another pace" in message


def test_a_model_without_bn_is_told_so():
    assert "no BatchNormalization layer" in model_with_bn.shortfall(NO_BN)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_message_blames_only_what_exercise_3_finds_wrong(name):
    found = MODELS[name]
    message = model_with_bn.shortfall(found)
    if "no BatchNormalization layer" in message:
        assert failure(exercise_3.test_returns_a_model_the_grader_can_rebuild, found) is not None
        return
    placement = failure(exercise_3.test_places_batch_norm_between_conv_and_relu, found)
    architecture = failure(exercise_3.test_keeps_the_baseline_architecture, found)
    assert (PLACEMENT_BLAMED in message) == (placement is not None), placement
    assert (PLACEMENT_CLEARED in message) == (PLACEMENT_BLAMED not in message)
    assert (ARCHITECTURE_BLAMED in message) == (architecture is not None), architecture
    kept = model_with_bn.beside_bn_and_relu(view.flat_layers(found))
    assert ("Dropout, which the baseline lacks" in message) == any(layer.startswith("Dropout") for layer in kept)


@pytest.mark.parametrize("found, costs", [
    (WITH_DROPOUT, "adds Dropout(0.25)"), (DROPOUT_EVERYWHERE, "adds Dropout(0.5), Dropout(0.5), Dropout(0.5)"),
    (CHANGED, "has Conv2D(16) where the baseline has Conv2D(32)"),
    (model(_conv(32), BN, RELU, POOL, _conv(64), BN, RELU, POOL, _layer("Flatten"), _layer("Rescaling", scale=1.0),
           HEAD[1]), "adds Rescaling")], ids=["dropout", "dropout_everywhere", "filters", "rescaling"])
def test_exercise_3_costs_a_layer_the_baseline_lacks_only_its_architecture_check(found, costs):
    """Dropout or any other layer the baseline lacks, parameters or not, costs the architecture check alone."""
    architecture = failure(exercise_3.test_keeps_the_baseline_architecture, found)
    assert architecture is not None and costs in architecture
    for check in (exercise_3.test_returns_a_model_the_grader_can_rebuild, exercise_3.test_outputs_class_probabilities,
                  exercise_3.test_places_batch_norm_between_conv_and_relu):
        assert failure(check, found) is None


@pytest.mark.parametrize("found", [
    CORRECT, model(_conv(32), BN, RELU, POOL, _conv(64), BN, RELU, POOL, _layer("Flatten"),
                   _layer("Dense", units=10, activation="linear"), _layer("Softmax")),
    model(_conv(32), BN, _layer("ReLU"), POOL, _conv(64), BN, RELU, POOL, *HEAD)], ids=["correct", "softmax", "relu"])
def test_exercise_3_accepts_the_baseline_with_bn_and_relu_added(found):
    assert failure(exercise_3.test_keeps_the_baseline_architecture, found) is None
    assert failure(exercise_3.test_places_batch_norm_between_conv_and_relu, found) is None


@pytest.mark.parametrize("found", [BN_AFTER_RELU, OLD_PLACEMENT, TANH_AFTER_BN], ids=["after_relu", "old", "tanh"])
def test_a_misplaced_bn_or_another_non_linearity_costs_the_placement_check_alone(found):
    """Where BN and the block's non-linearity sit is the placement check's: the architecture check does not
    charge it again."""
    assert failure(exercise_3.test_places_batch_norm_between_conv_and_relu, found) is not None
    assert failure(exercise_3.test_keeps_the_baseline_architecture, found) is None


def test_the_checks_failure_message_gives_the_lead_then_the_structure(monkeypatch):
    """The check itself, with a measured comparison instead of a training run (no TensorFlow)."""
    measured = training.Comparison(bn_accuracy=0.61, baseline_accuracy=0.55, lead=0.06,
                                   required_lead=training.REQUIRED_LEAD, passed=False, seconds=0.0)
    monkeypatch.setattr(training, "memoized_compare", lambda *args, **kwargs: measured)
    config = {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [
        _layer("InputLayer", batch_shape=[None, 28, 28, 1]), _conv(32), BN, RELU, POOL, _conv(64), BN, RELU,
        POOL, _layer("Flatten"), _layer("Dropout", rate=0.25), HEAD[1]]}}
    measures = {}
    with pytest.raises(AssertionError) as failed:
        exercise_4.test_bn_model_trains_faster_than_the_baseline(
            model_config=lambda function: config, student_model=lambda function: view.view(config),
            cache_dir=None, training_budget=training.TrainingBudget(), training_memo=True,
            record_timing=lambda *args: None, record_measure=measures.__setitem__,
            record_property=lambda *args: None)
    message = str(failed.value)
    assert measures == {TRAINING_LEAD: 0.06}            # the lead Gradescope's leaderboard shows
    assert "0.610" in message and "0.550" in message and "a lead of +0.060" in message
    assert f"below the required {training.REQUIRED_LEAD:.3f}" in message
    assert message.index("a lead of") < message.index(PLACEMENT_CLEARED) < message.index("adds Dropout(0.25)")
    assert "check that BatchNormalization sits" not in message


@pytest.mark.slow
def test_the_baseline_layers_are_the_reference_models():
    from autograder import reference_models
    baseline = view.view(json.loads(reference_models.model_without_bn().to_json()))
    with_bn = view.view(json.loads(reference_models.model_with_bn().to_json()))
    assert tuple(view.layer_signatures(view.flat_layers(baseline))) == model_with_bn.BASELINE_LAYERS
    assert tuple(model_with_bn.beside_bn_and_relu(view.flat_layers(with_bn))) == model_with_bn.BASELINE_LAYERS
    assert "its lead was low for this seed and budget" in model_with_bn.shortfall(with_bn)
