"""The NumPy exercises' hidden checks on small notebooks: right answers, mistakes, and no free points.

Each notebook holds `import numpy as np` and the NumPy functions (the right ones from
students.NUMPY_RIGHT, with some replaced), so the sandboxed worker starts in about a second; only
the NumPy check modules run. The whole assignment, end to end, is tests/test_checks.py.
"""

import numpy as np
import pytest

from autograder import known_mistakes
from autograder import synthetic_students as students
from autograder.check_catalogue import CHECKS_DIR
from autograder.checks import answers
from autograder.exercises import Kind, of_kind

from conftest import check_cells

NUMPY_EXERCISES = tuple(e.id for e in of_kind(Kind.NUMPY))
POINTS = {e.id: e.points for e in of_kind(Kind.NUMPY)}


def grade_numpy(tmp_path, replaced: dict, exercises=NUMPY_EXERCISES) -> list:
    """Check rows for a notebook of the right NumPy answers with ``replaced`` ({function: code}) instead."""
    code = {**students.NUMPY_RIGHT, **replaced}
    _, rows = check_cells(tmp_path, ["import numpy as np", *(code[name] for name in NUMPY_EXERCISES)],
                          exercises)
    return [row.to_dict() for row in rows]


def scores(rows) -> dict:
    totals = {}
    for row in rows:
        totals[row["exercise"]] = totals.get(row["exercise"], 0.0) + row["points"]
    return totals


def failed(rows) -> set:
    return {row["id"] for row in rows if not row["passed"]}


def test_the_right_numpy_answers_score_every_point(tmp_path):
    rows = grade_numpy(tmp_path, {})
    assert scores(rows) == POINTS, [(r["id"], r["message"]) for r in rows if not r["passed"]]


@pytest.mark.parametrize("kind, expressions, words", [
    ("none", {}, "None"),
    ("zeros", students.RETURNS_ZEROS, "returns zeros"),
    ("input", students.RETURNS_INPUT, "returns its input unchanged"),
    ("constant", {"manual_batch_norm": "np.full_like(x, 0.5)",
                  "batch_norm_backward": "np.full_like(x, 0.5), np.full(x.shape[-1], 0.5), np.full(x.shape[-1], 0.5)",
                  "update_moving_statistics": "np.full(3, 0.5), np.full(3, 0.5)",
                  "batch_norm_inference": "np.full_like(x, 0.5)",
                  "debiased_moving_statistic": "np.full_like(np.asarray(moving, dtype=np.float64), 0.5)",
                  "population_statistics": "np.full(3, 0.5), np.full(3, 0.5)",
                  "group_norm": "np.full_like(x, 0.5)",
                  "group_norm_backward": "np.full_like(x, 0.5), np.full(x.shape[-1], 0.5), np.full(x.shape[-1], 0.5)"},
     "returns a constant"),
])
def test_a_non_answer_fails_every_check_with_a_message(tmp_path, kind, expressions, words):
    rows = grade_numpy(tmp_path, students.returning(expressions))
    assert scores(rows) == dict.fromkeys(NUMPY_EXERCISES, 0.0)
    for row in rows:
        assert words in row["message"], row
        assert "not an answer" in row["message"], row


# The synthetic student who makes each exercise's central mistake (known_mistakes.CENTRAL_MISTAKES).
CENTRAL_STUDENTS = {
    "manual_batch_norm": "bn_per_sample",
    "batch_norm_backward": "backward_constant_statistics",
    "update_moving_statistics": "moving_swapped_momentum",
    "batch_norm_inference": "inference_batch_statistics",
    "debiased_moving_statistic": "debiased_adam_only",
    "population_statistics": "population_averaged_variances",
    "group_norm": "group_batch_statistics",
    "group_norm_backward": "gn_backward_constant_statistics",
}


def test_every_numpy_exercises_central_mistake_has_a_student_who_makes_it():
    assert set(known_mistakes.CENTRAL_MISTAKES) == set(CENTRAL_STUDENTS) == set(NUMPY_EXERCISES)


@pytest.mark.parametrize("exercise", NUMPY_EXERCISES)
def test_the_central_mistake_costs_at_least_half_of_its_exercise(tmp_path, exercise):
    student = students.STUDENTS[CENTRAL_STUDENTS[exercise]]
    rows = grade_numpy(tmp_path, student.answers, exercises=(exercise,))
    lost = POINTS[exercise] - scores(rows)[exercise]
    assert lost >= POINTS[exercise] / 2, [(r["id"], r["points"]) for r in rows]
    code = known_mistakes.mistake_code(exercise, known_mistakes.CENTRAL_MISTAKES[exercise])
    named = {r["mistake"] for r in rows if not r["passed"]} - {None}
    assert named == {code}, [(r["id"], r["message"]) for r in rows]


def test_a_slip_no_table_names_keeps_the_side_points(tmp_path):
    halved = students.NUMPY_RIGHT["population_statistics"].replace("return mean, var", "return mean / 2, var")
    rows = grade_numpy(tmp_path, {"population_statistics": halved}, exercises=("population_statistics",))
    assert failed(rows) == {"population_statistics::test_averages_the_batch_means"}
    assert scores(rows) == {"population_statistics": 1.75}
    message = next(r["message"] for r in rows if r["id"].endswith("test_averages_the_batch_means"))
    assert message.startswith("the mean of batches of equal size must be the average of their means: on 3 batches")
    assert "expected [" in message and "got [" in message


def test_an_answer_that_earns_no_main_check_earns_no_side_points(tmp_path):
    wrong = students.NUMPY_RIGHT["population_statistics"].replace("return mean, var",
                                                                  "return mean + 1.0, var * 2 + 1.0")
    rows = grade_numpy(tmp_path, {"population_statistics": wrong}, exercises=("population_statistics",))
    assert scores(rows) == {"population_statistics": 0.0}
    side = next(r for r in rows if r["id"].endswith("test_returns_float_arrays_and_leaves_its_inputs_unmodified"))
    assert "earns none of its main checks and makes none of its named mistakes" in side["message"]


# group_norm's forward output as dx: per sample, per group and summing to 0 over each group, but no gradient
FORWARD_AS_DX = """def group_norm_backward(dout, x, groups, gamma, epsilon=1e-3):
    grouped = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    mean, var = grouped.mean(axis=axes, keepdims=True), grouped.var(axis=axes, keepdims=True)
    x_hat = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    sums = tuple(range(x.ndim - 1))
    return gamma * x_hat, (dout * x_hat).sum(axis=sums), dout.sum(axis=sums)
"""


def test_a_dx_that_ignores_dout_earns_none_of_the_checks_reading_dx(tmp_path):
    rows = grade_numpy(tmp_path, {"group_norm_backward": FORWARD_AS_DX}, exercises=("group_norm_backward",))
    dx_checks = {r["id"] for r in rows} - {"group_norm_backward::test_dgamma_and_dbeta_sum_per_channel",
                                          "group_norm_backward::test_returns_float_arrays_and_leaves_its_inputs_unmodified"}
    assert failed(rows) == dx_checks and len(dx_checks) == 5
    assert scores(rows) == {"group_norm_backward": 0.5}          # its dgamma and dbeta are right
    assert all("it must depend on dout" in r["message"] for r in rows if r["id"] in dx_checks)


def test_two_mistakes_in_different_outputs_cost_their_checks(tmp_path):
    naive = students._backward(dx="dx_hat / std", dgamma="dout.sum(axis=axes)")
    rows = grade_numpy(tmp_path, {"batch_norm_backward": naive}, exercises=("batch_norm_backward",))
    assert failed(rows) == {"batch_norm_backward::test_dx_flows_through_the_batch_mean",
                            "batch_norm_backward::test_dx_flows_through_the_batch_variance",
                            "batch_norm_backward::test_dgamma_sums_dout_times_x_hat",
                            "batch_norm_backward::test_conv_activations_sum_per_channel"}
    messages = " ".join(r["message"] for r in rows)
    assert "as constants" in messages and "dgamma = sum(dout) leaves out x_hat" in messages


def test_naive_averaging_of_batch_statistics_names_both_population_mistakes(tmp_path):
    naive = ("def population_statistics(batch_means, batch_vars, batch_sizes):\n"
             "    return batch_means.mean(axis=0), batch_vars.mean(axis=0)\n")
    rows = grade_numpy(tmp_path, {"population_statistics": naive}, exercises=("population_statistics",))
    assert scores(rows) == {"population_statistics": 0.75}   # the mean, the biased variance, the side check
    messages = {r["id"].split("::")[1]: r["message"] for r in rows if not r["passed"]}
    assert "between-batch term" in messages["test_adds_the_spread_of_the_batch_means_to_the_variance"]
    assert "equal weights" in messages["test_weighs_each_batch_by_its_size"]


def test_the_papers_algorithm_2_is_named_and_keeps_the_mean(tmp_path):
    paper = ("def population_statistics(batch_means, batch_vars, batch_sizes):\n"
             "    m = batch_sizes.mean()\n"
             "    return batch_means.mean(axis=0), m / (m - 1) * batch_vars.mean(axis=0)\n")
    rows = grade_numpy(tmp_path, {"population_statistics": paper}, exercises=("population_statistics",))
    assert scores(rows) == {"population_statistics": 0.5}
    assert "population_statistics.algorithm_2" in {r["mistake"] for r in rows}


def test_ignoring_the_momentum_argument_is_said(tmp_path):
    fixed = students.NUMPY_RIGHT["update_moving_statistics"].replace("keep = momentum", "keep = 0.99")
    rows = grade_numpy(tmp_path, {"update_moving_statistics": fixed}, exercises=("update_moving_statistics",))
    assert failed(rows) == {"update_moving_statistics::test_uses_the_momentum_it_is_given"}
    assert "whatever momentum it is given" in " ".join(r["message"] for r in rows)


# --- the judging rules themselves, without a sandbox ------------------------------------------

def _answer(*parts, dtype="float64"):
    return answers.Answer(tuple(np.asarray(p, np.float64) for p in parts), (dtype,) * len(parts), [])


@pytest.mark.parametrize("parts, dtype, why", [
    ((np.nan,), "NoneType", "returns None"),
    ((np.zeros((4, 3)),), "float64", "returns zeros"),
    ((np.full((4, 3), 2.5),), "float64", "returns a constant"),
    ((np.arange(12.0).reshape(4, 3),), "float64", "returns its input unchanged"),
    ((np.arange(12.0).reshape(4, 3), np.zeros(3)), "float64", "returns its input unchanged"),
])
def test_not_an_answer_says_what_came_back(parts, dtype, why):
    assert answers.not_an_answer(_answer(*parts, dtype=dtype), [np.arange(12.0).reshape(4, 3)]) == why


def test_an_answer_with_one_real_part_is_an_answer():
    x = np.arange(12.0).reshape(4, 3)
    assert answers.not_an_answer(_answer(np.zeros_like(x), np.array([1.0, 2.0, 3.0])), [x]) is None


def test_a_sum_is_compared_within_the_size_of_its_terms():
    terms = np.full(32, 3.0) * np.array([1, -1] * 16)          # they sum to 0, each of size 3
    assert answers.within(terms.sum() + 5e-4, 0.0, scale=np.abs(terms).sum())          # 96 * 1e-5 allowed
    assert not answers.within(terms.sum() + 5e-3, 0.0, scale=np.abs(terms).sum())
    assert not answers.within(5e-4, 0.0)                                                # 1e-5 without a scale


def test_compare_names_a_mistake_of_its_focus_only():
    named = {"slip": ("the slip's description", np.array([2.0]))}
    with pytest.raises(answers.MistakeMade, match="the slip's description"):
        answers.compare("manual_batch_norm", np.array([2.0]), np.array([1.0]), prop="p", on="o", named=named,
                        focus={"slip"})
    with pytest.raises(pytest.fail.Exception, match=r"^p: on o expected \[1\], got \[2\]"):
        answers.compare("manual_batch_norm", np.array([2.0]), np.array([1.0]), prop="p", on="o", named=named)


def test_a_model_without_batch_norm_is_not_an_answer():
    from autograder.models.view import Layer
    baseline = [Layer("Conv2D", {"filters": 32, "activation": "relu"}), Layer("MaxPooling2D", {}),
                Layer("Flatten", {}), Layer("Dense", {"units": 10, "activation": "softmax"})]
    with pytest.raises(answers.NotAnAnswer, match="without any BatchNormalization layer: that is not an answer"):
        answers.require_batch_norm("build_modern_cnn", baseline)
    answers.require_batch_norm("build_modern_cnn", baseline[:1] + [Layer("BatchNormalization", {})] + baseline[1:])


def test_every_check_module_states_its_weights():
    from autograder.exercises import EXERCISES
    for exercise in EXERCISES:
        doc = (CHECKS_DIR / exercise.check_module).read_text(encoding="utf-8").split('"""')[1]
        assert "Weight" in doc, f"{exercise.check_module}: the docstring does not state the weights"


# The answers issue 23 reported, graded again: each keeps at least half of its exercise unless its loss
# is the exercise's central mistake (Algorithm 2 drops the between-batch term), and the float32 backward
# pass keeps every point.
REPORTED = {
    "group_norm with epsilon outside the square root": (
        "group_norm", students._group().replace("np.sqrt(var + epsilon)", "(np.sqrt(var) + epsilon)"), 2.75),
    "population_statistics with the unbiased variance of the union": (
        "population_statistics", students.STUDENTS["population_unbiased_union"].answers["population_statistics"],
        1.75),
    "population_statistics with the between-batch term unweighted": (
        "population_statistics", students._population().replace(
            "    var = weights @ (batch_vars + (batch_means - mean) ** 2)",
            "    var = weights @ batch_vars + ((batch_means - mean) ** 2).mean(axis=0)"), 1.75),
    "batch_norm_backward with ddof=1": (
        "batch_norm_backward", students._backward().replace("keepdims=True) + epsilon",
                                                            "keepdims=True, ddof=1) + epsilon"), 2.0),
    "batch_norm_backward with epsilon outside the square root": (
        "batch_norm_backward", students._backward().replace(
            "np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)",
            "(np.sqrt(x.var(axis=axes, keepdims=True)) + epsilon)"), 3.5),
    "group_norm reshaped as (N, groups, -1) on NHWC data": (
        "group_norm", students._group(shape="x.shape[0], groups, -1", axes="(2,)"), 2.5),
    "population_statistics following Algorithm 2 (central: no between-batch term)": (
        "population_statistics", students.STUDENTS["population_algorithm_2"].answers["population_statistics"], 0.5),
    "a correct group norm backward pass computed in float32": (
        "group_norm_backward", students._group_backward().replace(
            "    c = x.shape[-1]", "    x, dout, gamma = (np.asarray(a, np.float32) for a in (x, dout, gamma))\n"
                                  "    c = x.shape[-1]", 1), 3.0),
    "group_norm_backward with the unbiased variance in s and x_hat": (
        "group_norm_backward", students.STUDENTS["gn_backward_ddof1"].answers["group_norm_backward"], 2.75),
    "a correct backward pass computed in float32": (
        "batch_norm_backward", students._backward().replace(
            "    axes =", "    x, dout, gamma = (np.asarray(a, np.float32) for a in (x, dout, gamma))\n"
                          "    axes =", 1), 4.0),
}


@pytest.mark.slow           # ten sandboxed gradings: test-fast stays under its minute
@pytest.mark.parametrize("answer", sorted(REPORTED))
def test_the_answers_the_issue_reported_keep_what_they_should(tmp_path, answer):
    exercise, code, points = REPORTED[answer]
    rows = grade_numpy(tmp_path, {exercise: code}, exercises=(exercise,))
    assert scores(rows)[exercise] == points, [(r["id"], r["message"][:120]) for r in rows if not r["passed"]]
    if "central" not in answer:
        assert points >= POINTS[exercise] / 2
