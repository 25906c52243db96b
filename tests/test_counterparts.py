"""Which hidden checks have a visible counterpart (the ``visible_counterpart`` marker,
autograder/checks/README.md): the decision per check, written out for a reviewer, against the markers
and the released notebook.

A check is a counterpart when the exercise's visible test cell, as released, asserts the same
property, so that an answer failing the check fails the visible test too. Each decision below has
its one-line reason and, for a counterpart, the text of the visible test that asserts it (a piece
of its code or of its assertion's message): when the visible test loses it, the decision must be
taken again.
"""

from pathlib import Path

from autograder import exercises, notebook
from autograder.check_catalogue import collect_checks
from autograder.exercises import BY_ID

ROOT = Path(__file__).resolve().parent.parent
HIDDEN_BLOCK = "### BEGIN HIDDEN TESTS"

# check id: (counterpart?, why, the visible test's text that asserts the property (empty when not one))
DECISIONS = {
    # Exercise 1
    "manual_batch_norm::test_normalizes_each_feature_over_the_batch": (
        True, "test 3: each column's output is a multiple of x - the column's mean (worked example)",
        ("take the mean and variance of each column (over the batch)",)),
    "manual_batch_norm::test_normalizes_conv_activations_per_channel": (
        True, "test 5: conv activations' output is per channel a multiple of x - the channel's mean over N, H, W",
        ("conv example: each channel's output is not a multiple of x minus the channel's mean",)),
    "manual_batch_norm::test_divides_by_the_standard_deviation": (
        True, "test 4: the factor on x - mean is 1 / std, [1, 0.5], epsilon=0",
        ("multiplies it by [1, 0.5]",)),
    "manual_batch_norm::test_uses_the_biased_variance": (
        True, "test 4: rejects the unbiased variance's factor, requires the biased one's",
        ("the variance looks unbiased (divided by m - 1)",)),
    "manual_batch_norm::test_adds_epsilon_inside_the_square_root": (
        True, "test 7: epsilon=3 given, inside the square root ([[-0.5], [0.5]])",
        ("divide by sqrt(var + epsilon), epsilon inside the square root",)),
    "manual_batch_norm::test_applies_per_feature_gamma_and_beta": (
        True, "test 2: output with per-feature gamma, beta = gamma * (output without them) + beta",
        ("values by gamma, then add beta, per feature",)),
    "manual_batch_norm::test_leaves_its_input_unmodified": (
        True, "_bn asserts x unchanged after every call",
        ("manual_batch_norm changed its input x in place",)),
    "manual_batch_norm::test_returns_a_float_array": (
        True, "_bn asserts a floating-point ndarray after every call",
        ("manual_batch_norm must return a floating-point NumPy array",)),
    # Exercise 2
    "batch_norm_backward::test_dx_flows_through_the_batch_mean": (
        True, "asserts dx sums to 0 over the batch per feature (the mean's path), dense and conv",
        ("dx misses the path through the mean",)),
    "batch_norm_backward::test_dx_flows_through_the_batch_variance": (
        True, "asserts sum(dx * (x - mean)) = 0 per feature with epsilon=0 (the variance's path)",
        ("dx misses the path through the variance",)),
    "batch_norm_backward::test_dgamma_sums_dout_times_x_hat": (
        True, "asserts dbeta = sum(dout) and dgamma = the numerical gradient, sum(dout * x_hat)",
        ("dbeta should be dout summed over axes", "dgamma = sum(dout * x_hat), per feature")),
    "batch_norm_backward::test_conv_activations_sum_per_channel": (
        True, "on (N, H, W, C) input asserts dgamma, dbeta of shape (C,), summed over N, H, W",
        ("conv input (N, H, W, C)", "sum over every axis but the last")),
    "batch_norm_backward::test_uses_the_epsilon_it_is_given": (
        True, "epsilon=0.01 with a dout the statistics' paths ignore: dx = gamma * dout / sqrt(var + epsilon)",
        ("with epsilon=0.01 dx is what epsilon=1e-5 gives", "s = sqrt(var + epsilon)")),
    "batch_norm_backward::test_returns_float_arrays": (
        True, "_backward asserts dx, dgamma, dbeta are floating-point ndarrays",
        ("batch_norm_backward must return a tuple (dx, dgamma, dbeta)", "must be a floating-point NumPy array")),
    "batch_norm_backward::test_leaves_its_inputs_unmodified": (
        True, "_backward asserts dout, x and gamma unchanged after every call",
        ("batch_norm_backward changed its input {name} in place",)),
    # Exercise 3
    "build_model_with_bn::test_returns_a_model_the_grader_can_rebuild": (
        True, "asserts a keras.Model of built-in layers only, output (None, 10)",
        ("accepts built-in Keras layers only (no Lambda", "expected (None, 10)")),
    "build_model_with_bn::test_outputs_class_probabilities": (
        True, "asserts the grader's softmax-output rule (_softmax_error)",
        ("assert _softmax_error(_layers) is None",)),
    "build_model_with_bn::test_places_batch_norm_between_conv_and_relu": (
        True, "asserts the grader's placement rule: linear Conv2D -> BatchNormalization -> plain ReLU",
        ("_errors = _placement_errors(_layers)",)),
    "build_model_with_bn::test_keeps_the_baseline_architecture": (
        True, "asserts the baseline's layers beside BN and ReLU, 35,210 parameters, 192 non-trainable",
        ("Keep the baseline's layers and add only BatchNormalization and ReLU", "35_210 - _without_bias(_layers)",
         "expected 192")),
    "build_model_with_bn::test_honours_input_shape_and_num_classes": (
        True, "asserts input (32, 32, 3) and 5 classes map to (None, 32, 32, 3) -> (None, 5)",
        ("use the input_shape and num_classes arguments instead of fixed numbers",)),
    # Exercise 4
    "training_improvement::test_bn_model_trains_faster_than_the_baseline": (
        False, "the visible test asserts only a lead above 0 on the student's own run; the check requires "
               "training.REQUIRED_LEAD on the grader's seeded run, so a lead below it passes the visible test", ()),
    # Exercise 5
    "update_moving_statistics::test_updates_the_mean_with_the_default_momentum": (
        True, "test 1: default momentum 0.99, new_mean [0.1, 1.9]",
        ("expected new_mean [0.1, 1.9]",)),
    "update_moving_statistics::test_updates_the_variance_with_the_default_momentum": (
        True, "test 2: default momentum 0.99, new_var [1.04, 4.2]",
        ("[1.04, 4.2], 1% of the way towards the batch variance",)),
    "update_moving_statistics::test_uses_the_momentum_it_is_given": (
        True, "test 3: momentum=0.9 gives new_mean [1, 1] and new_var [1.4, 6]",
        ("use the momentum argument, not a fixed number",)),
    "update_moving_statistics::test_leaves_its_inputs_unmodified": (
        True, "_update asserts the four statistics unchanged after every call",
        ("update_moving_statistics changed its input {name} in place",)),
    # Exercise 6
    "batch_norm_inference::test_normalizes_with_the_moving_statistics": (
        True, "test 3: on a batch far from the moving statistics, the output is a multiple of x - moving_mean",
        ("centre x on the moving mean, not on anything computed from the batch",)),
    "batch_norm_inference::test_divides_by_the_standard_deviation": (
        True, "test 4: the multiple is 1 / sqrt(moving_var), per channel of (N, H, W, C) activations",
        ("by [0.05, 0.1], channel by channel",)),
    "batch_norm_inference::test_adds_epsilon_inside_the_square_root": (
        True, "test 5: Keras' default 1e-3 and epsilon=1 given, inside the square root",
        ("batch_norm_inference's default is Keras' 1e-3", "the epsilon given, inside the square root")),
    "batch_norm_inference::test_applies_per_channel_gamma_and_beta": (
        True, "test 2: output with per-channel gamma, beta = gamma * (output without them) + beta",
        ("values by gamma, then add beta, per channel",)),
    "batch_norm_inference::test_returns_a_float_array": (
        True, "_infer asserts a floating-point ndarray of x's shape after every call",
        ("batch_norm_inference must return a floating-point NumPy array",)),
    "batch_norm_inference::test_leaves_its_inputs_unmodified": (
        True, "_infer asserts x, moving_mean and moving_var unchanged after every call",
        ("batch_norm_inference changed its input {name} in place",)),
    # Exercise 7
    "debiased_moving_statistic::test_removes_what_is_left_of_a_non_zero_initial_value": (
        True, "test 2: the share of initial removed is a power of momentum (what some count of updates leaves)",
        ("must be the share of the start that the updates leave",)),
    "debiased_moving_statistic::test_renormalizes_by_the_weight_of_the_batches": (
        True, "test 3: raising moving and initial together by 1 raises the result by 1",
        ("raising moving and initial together by 1 must raise the result by 1",)),
    "debiased_moving_statistic::test_counts_one_factor_of_momentum_per_update": (
        True, "test 4: after 2 updates the share removed is momentum**2, not momentum**1",
        ("the share removed is what steps - 1 updates leave of the start",)),
    "debiased_moving_statistic::test_broadcasts_and_leaves_its_inputs_unmodified": (
        True, "_debiased asserts the broadcast shape and moving, initial unchanged; test 5 broadcasts (2, 3) with (3,)",
        ("debiased_moving_statistic changed its input {name} in place", "broadcast to {shape}")),
    # Exercise 8
    "population_statistics::test_adds_the_spread_of_the_batch_means_to_the_variance": (
        True, "tests 1 and 3: the union's variance includes the batch means' spread ([0, 2, 4, 6] has variance 5)",
        ("must raise the union's variance by 4",)),
    "population_statistics::test_averages_the_batch_means": (
        True, "test 1: batches of equal size, the mean is 3",
        ("the mean of [0, 2, 4, 6] is 3",)),
    "population_statistics::test_weighs_each_batch_by_its_size": (
        True, "test 4: batches of sizes 2 and 1, mean and variance weighted by size",
        ("weight each batch by its size", "by its size in the variance too")),
    "population_statistics::test_uses_the_biased_variance_of_the_union": (
        True, "test 2: batches with a common mean, the union's variance divides by n, not n - 1",
        ("BN's variance is the biased one: divide by n",)),
    "population_statistics::test_returns_float_arrays_and_leaves_its_inputs_unmodified": (
        True, "_population asserts floating-point ndarrays and its three arguments unchanged",
        ("population_statistics changed its input {name} in place",
         "mean and var must be floating-point NumPy arrays")),
    # Exercise 9
    "group_norm::test_normalizes_each_sample_on_its_own": (
        True, "test 3: a sample's output is the same alone as in its batch, with mean 0",
        ("sample 0 gets a different output alone than in a batch of 5",)),
    "group_norm::test_groups_consecutive_channels": (
        True, "test 4: output a multiple of x - the group's mean per sample and group of consecutive channels",
        ("take the statistics per sample and per group of consecutive channels",)),
    "group_norm::test_uses_the_biased_variance": (
        True, "test 5: rejects the unbiased variance, every group of the worked example becomes [-1, 1]",
        ("group norm divides by n (np.var's default ddof=0)",)),
    "group_norm::test_uses_the_epsilon_it_is_given": (
        True, "test 6: epsilon=0.1 given, inside the square root",
        ("divide by sqrt(var + epsilon), with the epsilon given",)),
    "group_norm::test_applies_per_channel_gamma_and_beta": (
        True, "test 2: output with per-channel gamma, beta = gamma * (output without them) + beta",
        ("multiply the normalized values by gamma, then add beta, per channel",)),
    "group_norm::test_returns_a_float_array": (
        True, "_gn asserts a floating-point ndarray after every call",
        ("group_norm must return a floating-point NumPy array",)),
    # Exercise 10
    "group_norm_backward::test_dx_flows_through_the_group_mean": (
        True, "asserts dx sums to 0 over each sample's group (the mean's path)",
        ("so dx must sum to 0 over each sample's group",)),
    "group_norm_backward::test_dx_flows_through_the_group_variance": (
        True, "asserts sum(dx * (x - mean)) = 0 over each sample's group with epsilon=0 (the variance's path)",
        ("dx * (x - mean) must sum to 0 over each sample's group",)),
    "group_norm_backward::test_each_sample_on_its_own": (
        True, "asserts sample 0's dx is the same alone as in its batch",
        ("sample 0 gets a different dx alone than in a batch of 3",)),
    "group_norm_backward::test_groups_consecutive_channels": (
        True, "dx against the numerical gradient of consecutive-group norm: 6 channels in 3 groups, groups=C, "
              "dense groups of 2 (the check's three cases)",
        ("6 channels in 3 groups", "4 groups of 2 features", "groups=C=4", "assert _close(_dx, _numeric), (")),
    "group_norm_backward::test_dgamma_and_dbeta_sum_per_channel": (
        True, "asserts dgamma, dbeta of shape (C,), dbeta = sum(dout), dgamma = the numerical gradient",
        ("dbeta should be dout summed over axes", "value per channel summed over every axis but the last",
         "differs from the numerical gradient")),
    "group_norm_backward::test_divides_by_sqrt_of_the_biased_variance_plus_epsilon": (
        True, "epsilon=0.01 with a dout the paths ignore: dx = gamma * dout / sqrt(biased var + epsilon)",
        ("group norm uses the biased variance (divide by m)", "epsilon goes inside the square root")),
    "group_norm_backward::test_returns_float_arrays_and_leaves_its_inputs_unmodified": (
        True, "_backward asserts floating-point ndarrays and dout, x, gamma unchanged",
        ("group_norm_backward changed its input {name} in place", "must be a floating-point NumPy array")),
    # Exercise 11
    "build_modern_cnn::test_uses_conv_bn_relu_blocks": (
        True, "asserts the placement rule and 3x3 'same' convolutions",
        ("_errors = _placement_errors(_layers)", "use 3x3 kernels with padding='same'")),
    "build_modern_cnn::test_has_the_filters_pooling_dropout_and_head": (
        True, "asserts the table's layers in order, extra Dropout allowed",
        ("the layers differ from the table in the instructions",)),
    "build_modern_cnn::test_has_the_expected_parameter_counts": (
        True, "asserts 141,994 parameters (less the bias-free savings), 640 non-trainable",
        ("141_994 - _without_bias(_layers)", "== 640")),
    "build_modern_cnn::test_honours_input_shape_and_num_classes[28x28x1-10]": (
        True, "asserts (28, 28, 1), 10 classes: the shapes and 141,418 parameters",
        ("(((28, 28, 1), 10), 141_418)", "use the arguments instead of fixed numbers")),
    "build_modern_cnn::test_honours_input_shape_and_num_classes[64x64x3-5]": (
        True, "asserts (64, 64, 3), 5 classes: the shapes and 141,349 parameters",
        ("(((64, 64, 3), 5), 141_349)", "use the arguments instead of fixed numbers")),
}


def test_every_check_is_decided_and_marked_as_decided():
    rows = collect_checks()
    assert set(DECISIONS) == {row["id"] for row in rows}, "decide each new or renamed check here"
    marked = {row["id"] for row in rows if row["counterpart"]}
    decided = {check for check, (counterpart, _, _) in DECISIONS.items() if counterpart}
    assert marked == decided, (f"marked but not decided: {sorted(marked - decided)}; "
                               f"decided but not marked: {sorted(decided - marked)}")


def test_each_counterpart_is_asserted_by_its_released_visible_test():
    released = notebook.read(ROOT / "release" / exercises.ASSIGNMENT_ID / exercises.NOTEBOOK_NAME)
    visible = {notebook.grade_id(cell): notebook.source(cell).split(HIDDEN_BLOCK)[0] for cell in released.cells}
    for check, (counterpart, reason, anchors) in DECISIONS.items():
        assert reason, check
        if not counterpart:
            assert not anchors, f"{check}: not a counterpart, so no visible text asserts it"
            continue
        test_cell = BY_ID[check.split("::")[0]].test_cell
        assert visible.get(test_cell, "").strip(), f"{check}: the release has no visible test cell {test_cell}"
        assert anchors, f"{check}: a counterpart names the visible test's text that asserts it"
        for anchor in anchors:
            assert anchor in visible[test_cell], f"{check}: {test_cell} no longer has {anchor!r}: decide again"


def test_a_result_carries_the_counterpart_flag():
    from autograder.errors import Side
    from autograder.results import CheckResult, Result
    catalogue = [{"id": "manual_batch_norm::test_a", "exercise": "manual_batch_norm", "max_points": 1.0,
                  "counterpart": True},
                 {"id": "manual_batch_norm::test_b", "exercise": "manual_batch_norm", "max_points": 1.0,
                  "counterpart": False}]
    failed = Result.failed("the notebook is not JSON", Side.STUDENT, checks=catalogue)
    assert [c.counterpart for c in failed.checks] == [True, False]
    again = Result.from_json(failed.to_json())
    assert [c.counterpart for c in again.checks] == [True, False]
    older = CheckResult("manual_batch_norm::test_a", "manual_batch_norm", 1.0, 1.0, True, "passed").to_dict()
    del older["counterpart"]                          # written before the field existed
    assert CheckResult.from_dict(older).counterpart is False
