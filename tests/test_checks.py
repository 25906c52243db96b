"""The hidden checks, end to end: each synthetic student is graded in the sandbox like a real one.

The solution scores full marks, the release scores 0 with "not implemented", each common
mistake loses exactly the checks about it, with the mistake named, and an answer that does no work
(None, zeros, the input unchanged) earns nothing for its exercise.
"""

import json
import subprocess
import sys

import nbformat
import pytest

from autograder import settings
from autograder import synthetic_students as students
from autograder.check_catalogue import collect_checks
from autograder.classroom.pool import run_pool
from autograder.classroom.server import Task
from autograder.exercises import EXERCISE_IDS, EXERCISES, TOTAL_POINTS, Kind, of_kind
from autograder.grade import grade_notebook
from autograder.sandbox import Limits
from autograder.settings import Settings, TrainingBudget

pytestmark = pytest.mark.slow

BN = "manual_batch_norm::"
BACKWARD = "batch_norm_backward::"
MOVING = "update_moving_statistics::"
INFERENCE = "batch_norm_inference::"
POPULATION = "population_statistics::"
DEBIASED = "debiased_moving_statistic::"
GROUP = "group_norm::"
GN_BACKWARD = "group_norm_backward::"
NUMPY_EXERCISES = tuple(e.id for e in of_kind(Kind.NUMPY))
SLIP_FUNCTIONS = {e.function for e in of_kind(Kind.NUMPY, Kind.MODEL)}    # graded in rounds (_rounds)
WITH_BN = "build_model_with_bn::"
MODERN = "build_modern_cnn::"
TRAINING = "training_improvement::test_bn_model_trains_faster_than_the_baseline"
ALL_WITH_BN = {WITH_BN + name for name in ("test_returns_a_model_the_grader_can_rebuild",
                                           "test_outputs_class_probabilities",
                                           "test_places_batch_norm_between_conv_and_relu",
                                           "test_keeps_the_baseline_architecture",
                                           "test_honours_input_shape_and_num_classes")}
MODERN_SHAPES = {MODERN + "test_honours_input_shape_and_num_classes[28x28x1-10]",
                 MODERN + "test_honours_input_shape_and_num_classes[64x64x3-5]"}



class Every:
    """Every check of these exercises (resolved from the collected checks when the test runs)."""

    def __init__(self, *exercises):
        self.exercises = exercises

    def resolve(self) -> set:
        return {row["id"] for row in collect_checks() if row["exercise"] in self.exercises}


# student -> ({checks it fails} or Every(...), words that a message of those checks must contain)
EXPECTED = {
    "full_marks": (set(), None),
    "bn_ddof1": ({BN + "test_uses_the_biased_variance"}, "ddof=1"),
    "bn_eps_outside_sqrt": ({BN + "test_adds_epsilon_inside_the_square_root"}, "outside the square root"),
    "bn_no_epsilon": ({BN + "test_adds_epsilon_inside_the_square_root"}, "epsilon left out"),
    "bn_per_sample": ({BN + "test_normalizes_each_feature_over_the_batch",
                       BN + "test_normalizes_conv_activations_per_channel"}, "per sample"),
    "bn_all_elements": ({BN + "test_normalizes_each_feature_over_the_batch",
                         BN + "test_normalizes_conv_activations_per_channel"}, "all elements"),
    "bn_per_position": ({BN + "test_normalizes_conv_activations_per_channel"}, "per position"),
    "bn_nchw": ({BN + "test_normalizes_conv_activations_per_channel"}, "NCHW"),
    "bn_in_place": ({BN + "test_leaves_its_input_unmodified"}, "in place"),
    "old_placement": ({WITH_BN + "test_places_batch_norm_between_conv_and_relu"}, "old Conv(relu) -> BN"),
    "no_bn": (ALL_WITH_BN | {TRAINING}, "without any BatchNormalization layer: that is not an answer"),
    "lambda_layer": (ALL_WITH_BN | {TRAINING}, "Lambda"),
    # Exercise 3 accepts no layer the baseline lacks but BN and ReLU; at the grading seed this one still trains
    # fast enough for Exercise 4 (+0.169, benchmarks/calibrate_training_check.py)
    "extra_dropout": ({WITH_BN + "test_keeps_the_baseline_architecture"}, "adds Dropout(0.25)"),
    "modern_fixed_shape": (MODERN_SHAPES, "input shape"),
    "modern_no_dropout": ({MODERN + "test_has_the_filters_pooling_dropout_and_head"}, "Dropout(0.2)"),
    "backward_constant_statistics": ({BACKWARD + "test_dx_flows_through_the_batch_mean",
                                      BACKWARD + "test_dx_flows_through_the_batch_variance"}, "as constants"),
    "backward_no_variance_path": ({BACKWARD + "test_dx_flows_through_the_batch_variance"},
                                  "path through the batch variance"),
    "backward_dgamma_without_x_hat": ({BACKWARD + "test_dgamma_sums_dout_times_x_hat",
                                       BACKWARD + "test_conv_activations_sum_per_channel"}, "leaves out x_hat"),
    "backward_batch_axis_only": ({BACKWARD + "test_conv_activations_sum_per_channel"}, "batch axis only"),
    "moving_swapped_momentum": ({MOVING + "test_updates_the_mean_with_the_default_momentum",
                                 MOVING + "test_updates_the_variance_with_the_default_momentum",
                                 MOVING + "test_uses_the_momentum_it_is_given"}, "weighs the new batch"),
    "inference_batch_statistics": ({INFERENCE + "test_normalizes_with_the_moving_statistics",
                                    INFERENCE + "test_divides_by_the_standard_deviation",
                                    INFERENCE + "test_adds_epsilon_inside_the_square_root"},
                                   "batch's own mean and variance"),
    "inference_eps_outside_sqrt": ({INFERENCE + "test_adds_epsilon_inside_the_square_root"},
                                   "outside the square root"),
    "inference_var_as_std": ({INFERENCE + "test_divides_by_the_standard_deviation",
                              INFERENCE + "test_adds_epsilon_inside_the_square_root"}, "as if it were the standard"),
    "population_averaged_variances": ({POPULATION + "test_adds_the_spread_of_the_batch_means_to_the_variance"},
                                      "between-batch term"),
    "population_unweighted": ({POPULATION + "test_weighs_each_batch_by_its_size"}, "equal weights"),
    "population_algorithm_2": ({POPULATION + "test_adds_the_spread_of_the_batch_means_to_the_variance",
                                POPULATION + "test_weighs_each_batch_by_its_size",
                                POPULATION + "test_uses_the_biased_variance_of_the_union"}, "Algorithm 2"),
    "population_unbiased_union": ({POPULATION + "test_uses_the_biased_variance_of_the_union"}, "n - 1"),
    "backward_no_mean_path": ({BACKWARD + "test_dx_flows_through_the_batch_mean"}, "path through the batch mean"),
    "bn_fixed_epsilon": ({BN + "test_adds_epsilon_inside_the_square_root"}, "whatever epsilon it is given"),
    "backward_fixed_epsilon": ({BACKWARD + "test_uses_the_epsilon_it_is_given"}, "whatever epsilon it is given"),
    "inference_fixed_epsilon": ({INFERENCE + "test_adds_epsilon_inside_the_square_root"},
                                "whatever epsilon it is given"),
    "debiased_adam_only": ({DEBIASED + "test_removes_what_is_left_of_a_non_zero_initial_value",
                            DEBIASED + "test_renormalizes_by_the_weight_of_the_batches",
                            DEBIASED + "test_counts_one_factor_of_momentum_per_update"},
                           "Adam's bias correction"),
    "debiased_not_renormalized": ({DEBIASED + "test_renormalizes_by_the_weight_of_the_batches"},
                                  "does not divide by 1 - momentum**steps"),
    "debiased_steps_minus_one": ({DEBIASED + "test_counts_one_factor_of_momentum_per_update"},
                                 "momentum**(steps - 1)"),
    "group_batch_statistics": ({GROUP + "test_normalizes_each_sample_on_its_own",
                                GROUP + "test_groups_consecutive_channels",
                                GROUP + "test_uses_the_biased_variance", GROUP + "test_uses_the_epsilon_it_is_given"},
                               "shared by the whole batch"),
    "group_interleaved": ({GROUP + "test_groups_consecutive_channels"}, "interleaved"),
    "group_ddof1": ({GROUP + "test_uses_the_biased_variance"}, "ddof=1"),
    "group_ignored_groups": ({GROUP + "test_groups_consecutive_channels"}, "groups argument is ignored"),
    "group_fixed_epsilon": ({GROUP + "test_uses_the_epsilon_it_is_given"}, "whatever epsilon it is given"),
    "gn_backward_constant_statistics": ({GN_BACKWARD + "test_dx_flows_through_the_group_mean",
                                         GN_BACKWARD + "test_dx_flows_through_the_group_variance"}, "as constants"),
    "gn_backward_no_mean_path": ({GN_BACKWARD + "test_dx_flows_through_the_group_mean"},
                                 "path through the group's mean"),
    "gn_backward_no_variance_path": ({GN_BACKWARD + "test_dx_flows_through_the_group_variance"},
                                     "path through the group's variance"),
    "gn_backward_ddof1": ({GN_BACKWARD + "test_divides_by_sqrt_of_the_biased_variance_plus_epsilon"}, "ddof=1"),
    "gn_backward_eps_outside_sqrt": ({GN_BACKWARD + "test_divides_by_sqrt_of_the_biased_variance_plus_epsilon"},
                                     "outside the square root"),
    "gn_backward_fixed_epsilon": ({GN_BACKWARD + "test_divides_by_sqrt_of_the_biased_variance_plus_epsilon"},
                                  "whatever epsilon it is given"),
    "gn_backward_batch_statistics": ({GN_BACKWARD + "test_each_sample_on_its_own"}, "over the whole batch"),
    "gn_backward_interleaved_groups": ({GN_BACKWARD + "test_groups_consecutive_channels"}, "interleaved"),
    "gn_backward_ignored_groups": ({GN_BACKWARD + "test_groups_consecutive_channels"}, "groups argument is ignored"),
    "gn_backward_sums_per_group": ({GN_BACKWARD + "test_dgamma_and_dbeta_sum_per_channel"}, "summed per group"),
    "gn_backward_sums_per_sample": ({GN_BACKWARD + "test_dgamma_and_dbeta_sum_per_channel"},
                                    "summed over the statistics' axes"),
    "returns_none": (Every(*NUMPY_EXERCISES), "None is not an answer"),
    "returns_zeros": (Every(*NUMPY_EXERCISES), "returns zeros on this check's input: that is not an answer"),
    "returns_input": (Every(*NUMPY_EXERCISES), "returns its input unchanged on this check's input: that is not an "
                                              "answer"),
}
OTHERS = {"unanswered", "crashing", "corrupt"}      # graded with EXPECTED's students, for the tests below
# students whose training check trains nothing (no model, or one refused before training): graded
# beside the solution, whose grading fills the cache (baseline, architecture) that the others share
UNTRAINED = {"unanswered", "corrupt"} | {name for name, (fails, _) in EXPECTED.items()
                                         if isinstance(fails, set) and TRAINING in fails}
# Code a student adds to the unanswered release to patch what grades it (test_patching_the_kernel_...).
FAKES = {
    "numpy": "import numpy\nnumpy.allclose = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n"
             "numpy.testing.assert_allclose = lambda *a, **k: None\n",
    "builtins": "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 0\n"
                "builtins.AssertionError = type('Nope', (Exception,), {})\n",
    "pytest": "import sys, types\nfake = types.ModuleType('pytest')\nfake.fail = lambda *a, **k: None\n"
              "sys.modules['pytest'] = fake\n",
    "autograder": "import sys, types\nfake = types.ModuleType('autograder')\n"
                  "fake.grade_notebook = lambda *a, **k: {'total': 12.0}\nsys.modules['autograder'] = fake\n"
                  "sys.modules['autograder.grade'] = fake\n",
}
PATCHERS = {f"patches_{name}": code for name, code in FAKES.items()}    # graded with the untrained students


@pytest.fixture(scope="module")
def grader_cache(shared_grader_cache):
    """The module's grader cache: the training baseline and memo, filled by the first gradings (the
    session's, conftest.shared_grader_cache: the later modules that grade the solution reuse it)."""
    return shared_grader_cache


def _slip(name) -> str | None:
    """The function of a student whose notebook differs from the solution in that one graded function
    only (a NumPy function or a model builder), else None."""
    student = students.STUDENTS.get(name)
    if student is None or student.unanswered or student.raw or student.extra_cells or len(student.answers) != 1:
        return None
    (function,) = student.answers
    return function if function in SLIP_FUNCTIONS else None


def _owned(function) -> set:
    """The exercises whose checks call ``function`` (build_model_with_bn: Exercise 3 and the training check)."""
    return {e.id for e in EXERCISES if e.function == function}


def _rounds(names) -> list:
    """Single-slip students in rounds of at most one per function: one notebook grades a round."""
    rounds = []
    for name in names:
        function = _slip(name)
        chosen = next((r for r in rounds if function not in r), None)
        if chosen is None:
            rounds.append(chosen := {})
        chosen[function] = name
    return rounds


@pytest.fixture(scope="module")
def graded(tmp_path_factory, grader_cache):
    """grade(student name) -> results. At the first call every student these tests name is graded,
    once for the module, as grade-class grades a class: by two grader processes (classroom.pool),
    the solution and what trains nothing first (UNTRAINED, PATCHERS), so that the training
    baseline and the solution's architecture are in the cache before the others share it. Students
    who differ from the solution in one function only are graded in rounds, one student per
    function in a notebook (the exercises' checks are independent); each one's result is the rows
    of its function's exercises from its round and the solution's rows for the rest, and
    test_a_round_grades_each_exercise_as_its_student holds every row of a round to its own
    students' expectations."""
    folder = tmp_path_factory.mktemp("submissions")
    found = settings.Settings(Limits(), TrainingBudget(), grader_cache, memo=True)
    cache, rounds = {}, {}

    def task(name, notebook):
        path = folder / name / "batchnorm.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        return Task(name, str(path))

    def grade_all(names, chosen_rounds, jobs):
        """Grade the students ``names`` and the rounds, the solution first, then the rounds (the
        longest gradings: the first rounds hold the most students), then the other students."""
        tasks = [Task(name, str(students.write_submission(students.STUDENTS[name], folder / name / "batchnorm.ipynb")))
                 if name not in PATCHERS else task(name, _with_cell(PATCHERS[name])) for name in names]
        round_tasks = []
        for chosen in chosen_rounds:
            answers = {function: students.STUDENTS[name].answers[function] for function, name in chosen.items()}
            student = students.Student(f"round-{len(rounds)}", "one slip per function", answers)
            rounds[student.name] = chosen
            round_tasks.append(task(student.name, students.build_notebook(student)))
        solution = [t for t in tasks if t.student == "full_marks"]
        tasks = solution + round_tasks + [t for t in tasks if t not in solution]
        run_pool(tasks, jobs=jobs, settings=found,
                 on_result=lambda task, result: cache.__setitem__(task.student, result.to_dict()))

    def share_out():
        for round_name, chosen in rounds.items():
            for function, name in chosen.items():
                mine = {c["id"]: c for c in cache[round_name]["checks"] if c["exercise"] in _owned(function)}
                cache[name] = {**cache["full_marks"],
                               "checks": [mine.get(c["id"], c) for c in cache["full_marks"]["checks"]]}

    def grade(name):
        if not cache:
            names = sorted((set(EXPECTED) | OTHERS) - {"full_marks"})
            every_round = _rounds([n for n in names if _slip(n)])
            untrained = [r for r in every_round if UNTRAINED & set(r.values())]
            grade_all(["full_marks", *(n for n in names if n in UNTRAINED and not _slip(n)), *PATCHERS],
                      untrained, jobs=2)
            grade_all([n for n in names if n not in UNTRAINED and not _slip(n)],
                      [r for r in every_round if r not in untrained], jobs=2)
            share_out()
        if name not in cache:
            grade_all([name], [], jobs=1)
        return cache[name]
    grade.rounds = rounds
    grade.cache = cache
    return grade


def failed(result) -> set:
    return {c["id"] for c in result["checks"] if not c["passed"]}


def test_every_check_appears_in_every_result(graded):
    ids = [row["id"] for row in collect_checks()]
    for name in ("full_marks", "unanswered", "corrupt"):
        assert [c["id"] for c in graded(name)["checks"]] == ids


def test_the_solution_scores_full_marks(graded):
    result = graded("full_marks")
    assert result["status"] == "graded" and result["error"] is None
    assert result["total"] == result["max_total"] == TOTAL_POINTS, failed(result)
    assert {"worker_start", "checks", "training_check", "total"} <= set(result["timings"])
    training = next(c for c in result["checks"] if c["id"] == TRAINING)
    for words in ("your BN model reached a training accuracy of", "the model without BN", "a lead of", "required"):
        assert words in training["message"], training["message"]     # the measurements, also when passed


def test_the_unanswered_release_scores_zero_saying_not_implemented(graded):
    result = graded("unanswered")
    assert result["status"] == "graded" and result["total"] == 0.0
    for check in result["checks"]:
        assert "not implemented" in check["message"], check


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_mistake_is_named_by_exactly_its_checks(graded, name):
    should_fail, words = EXPECTED[name]
    should_fail = should_fail.resolve() if isinstance(should_fail, Every) else should_fail
    result = graded(name)
    assert failed(result) == should_fail
    messages = [c["message"] for c in result["checks"] if c["id"] in should_fail]
    if words:
        assert any(words in message for message in messages), messages


def test_a_round_grades_each_exercise_as_its_student(graded):
    """Every row of a round's notebook is its own student's: the exercises with a student in the round
    fail exactly that student's checks, the others pass (no slip reaches another exercise's rows)."""
    graded("full_marks")
    assert graded.rounds, "no NumPy-slip student was graded in rounds"
    for round_name, chosen in graded.rounds.items():
        expected = set().union(*(EXPECTED[name][0] for name in chosen.values()))
        assert failed(graded.cache[round_name]) == expected, round_name


def test_a_function_that_raises_costs_only_its_exercise_naming_the_exception(graded):
    result = graded("crashing")
    assert {c["exercise"] for c in result["checks"] if not c["passed"]} == {"build_modern_cnn"}
    assert all("raised ValueError: shapes do not match" in c["message"]
               for c in result["checks"] if c["exercise"] == "build_modern_cnn")


def test_a_corrupt_notebook_is_a_zero_point_error_with_its_reason(graded):
    result = graded("corrupt")
    assert result["status"] == "error" and result["total"] == 0.0
    assert "not valid JSON" in result["error"]
    assert all("not valid JSON" in c["message"] for c in result["checks"])


def _with_cell(extra_code):
    """The release as handed in unanswered, with a cell of ``extra_code`` added at the end."""
    notebook = students.build_notebook(students.STUDENTS["unanswered"])
    notebook.cells.append(nbformat.v4.new_code_cell(extra_code))
    return notebook


@pytest.mark.parametrize("patched", sorted(FAKES))
def test_patching_the_kernel_cannot_raise_the_score(graded, patched):
    result = graded(f"patches_{patched}")
    assert result["status"] == "graded", result["error"]
    assert result["total"] == 0.0, [c for c in result["checks"] if c["passed"]]


def test_regrading_the_same_submission_gives_the_same_result(graded, grader_cache, tmp_path):
    """Its notebook alone, its model trained again (the memo off; the baseline's repeat in a fresh process
    is test_training's): the same rows as its grading in a round."""
    first = graded("old_placement")
    path = students.write_submission(students.STUDENTS["old_placement"], tmp_path / "again.ipynb")
    again = grade_notebook(path, Settings(cache_dir=grader_cache, memo=False)).to_dict()
    assert [(c["id"], c["points"], c["message"]) for c in again["checks"]] == \
           [(c["id"], c["points"], c["message"]) for c in first["checks"]]


def test_the_grade_command_writes_results_json(tmp_path, graded, grader_cache):
    graded("full_marks")          # the solution's architecture (bn_ddof1's too) is in the cache's memo
    path = students.write_submission(students.STUDENTS["bn_ddof1"], tmp_path / "nb.ipynb")
    output = tmp_path / "out" / "results.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(path), "--output", str(output),
                           "--cache-dir", str(grader_cache)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(output.read_text())
    assert {"total", "max_total", "status", "error", "error_side", "notes", "checks", "versions",
            "timings"} <= set(result)
    assert result["total"] == TOTAL_POINTS - 0.25 and result["status"] == "graded"
    assert {c["exercise"] for c in result["checks"]} == set(EXERCISE_IDS)
    assert "FAIL  0.00/0.25  manual_batch_norm::test_uses_the_biased_variance" in done.stdout


def test_plain_pytest_runs_the_same_checks(tmp_path):
    path = students.write_submission(students.STUDENTS["bn_ddof1"], tmp_path / "nb.ipynb")
    done = subprocess.run([sys.executable, "-m", "pytest", "autograder/checks", "--submission", str(path),
                           "--cache-dir", str(tmp_path / "cache"), "-q", "-p", "no:cacheprovider",
                           "-k", "manual_batch_norm"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "1 failed, 7 passed" in done.stdout and "ddof=1" in done.stdout


def test_the_training_check_gives_its_measurements_also_from_the_memo(graded, grader_cache, tmp_path):
    first = graded("full_marks")      # the first grading in the module's cache: trained, and memoized
    path = students.write_submission(students.STUDENTS["full_marks"], tmp_path / "nb.ipynb")
    again = grade_notebook(path, Settings(cache_dir=grader_cache)).to_dict()
    messages = [next(c["message"] for c in result["checks"] if c["id"] == TRAINING) for result in (first, again)]
    assert messages[0] == messages[1], messages          # the second comes from the memo
    for words in ("training accuracy of", "without BN", "a lead of +", "at least the required"):
        assert words in messages[1], messages[1]
