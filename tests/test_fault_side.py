"""Whose fault a failure is: a grader-side failure is an error, never a graded zero; without any
isolation grading refuses unless --allow-unsandboxed; a sandbox that cannot start or confine itself."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from autograder import grade, settings, training
from autograder import synthetic_students as students
from autograder.errors import SandboxUnavailable
from autograder.models import view
from autograder.results import Result
from autograder.sandbox import process as sandbox_process
from autograder.sandbox.isolation import Isolation
from autograder.submission import Submission

from conftest import (
    BUILD_WITH_BN,
    FULL_MARKS,
    MANUAL_BN,
    OFFERED,
    SETUP,
    grade_from_environ,
    nbgrader_cell,
    needs_bwrap,
    outcome,
    scores,
    select,
    unique_digits,
    write_notebook,
)

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")


@needs_bwrap
def test_a_sandbox_that_cannot_start_is_the_graders_error_not_the_students(tmp_path, limits, monkeypatch):
    monkeypatch.setenv("BN_AUTOGRADER_ZYGOTE", "0")    # a forked worker that cannot start is started fresh
    original = sandbox_process.bubblewrap_argv           # (test_zygote.py); bwrap cannot find the worker
    monkeypatch.setattr(sandbox_process, "bubblewrap_argv",
                        lambda *a, **k: [*original(*a, **k)[:-1], "/nowhere/worker.py"])
    with Submission.open(write_notebook(tmp_path, SETUP, MANUAL_BN), limits()) as s:
        with pytest.raises(SandboxUnavailable, match="(?s)did not start.*/nowhere/worker.py"):
            s.call_array("manual_batch_norm", np.ones((2, 2)))
        started = time.monotonic()
        with pytest.raises(SandboxUnavailable):      # remembered: no cell is blamed, nothing is retried
            s.cell_errors()
        assert time.monotonic() - started < 1 and not s.skipped


# --- "neither": grading refuses, unless the instructor accepts the risk -----------------------------

def test_without_any_isolation_grade_refuses_saying_what_to_install(tmp_path, limits, graded, in_mode, capsys):
    in_mode("none")
    limits(cell=5, call=10)
    path = write_notebook(tmp_path, SETUP, MANUAL_BN)
    results, submission = graded(path)
    assert_grader_error(results, "no isolation is available", "apt-get install bubblewrap", "5.13",
                        "--allow-unsandboxed")
    assert submission is None and results["isolation"] is None          # no worker was started
    assert grade.main([str(path), "--output", str(tmp_path / "results.json")]) == 1
    assert "no isolation is available" in json.loads((tmp_path / "results.json").read_text())["error"]


def test_without_any_isolation_grade_class_refuses_before_grading_anything(tmp_path, in_mode, capsys):
    from autograder.classroom import cli
    in_mode("none")
    course = tmp_path / "course"
    write_notebook(course / "submitted" / "ann" / "batchnorm", SETUP, MANUAL_BN, name="batchnorm.ipynb")
    assert cli.main(["batchnorm", "--course-dir", str(course), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "no isolation is available" in err and "--allow-unsandboxed" in err, err
    assert not (course / "grade-class").exists() and not (course / "grades.csv").exists()


def test_allow_unsandboxed_grading_is_recorded(tmp_path, limits, graded, in_mode):
    in_mode("none")
    limits(cell=5, call=10)
    results, _ = graded(write_notebook(tmp_path, SETUP, MANUAL_BN), allow_unsandboxed=True)
    assert results["status"] == "graded" and results["isolation"] == "none"
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]
    from autograder.classroom import store
    assert store.message_for([], Result.from_dict(results)).endswith("graded WITHOUT isolation (--allow-unsandboxed)")


def test_allow_unsandboxed_travels_to_every_path_that_grades():
    from autograder.classroom import cli, cluster
    from autograder.nbgrader_bridge import IsolatedGrade
    allowed = settings.from_environ(flags=cli._parser().parse_args(["batchnorm", "--allow-unsandboxed"]))
    assert allowed.allow_unsandboxed and not settings.from_environ().allow_unsandboxed    # the command line
    sent = json.loads(json.dumps(allowed.to_dict()))                     # the grader processes' start
    assert settings.Settings.from_dict(sent).allow_unsandboxed is True
    assert settings.Settings.from_dict(cluster._remote_settings(allowed)).allow_unsandboxed is True  # the Dask payload
    assert settings.Settings.from_dict(settings.from_environ().to_dict()).allow_unsandboxed is False
    assert IsolatedGrade(allow_unsandboxed=True)._settings().allow_unsandboxed          # nbgrader's config
    assert not IsolatedGrade()._settings().allow_unsandboxed


# --- a worker that cannot confine itself never runs student code ------------------------------------

@pytest.mark.skipif(not OFFERED.confinement, reason=f"no Landlock + seccomp here: {OFFERED.confinement_reason}")
def test_a_worker_that_cannot_confine_itself_is_the_graders_error(tmp_path, limits, monkeypatch):
    limits_ = limits(cell=5, call=10)
    tag = unique_digits()
    marker = Path("/tmp") / f"bn-unconfined-{tag}"
    original = sandbox_process.SandboxedProcess._plain_command

    def broken_allow_list(self, hide=()):   # a path Landlock cannot open: confine() raises
        argv, cwd, env, passed, unprivileged = original(self, hide)
        env[sandbox_process.CONFINE_VARIABLE] = json.dumps({"read_only": ["/no\0where"], "read_write": []})
        return argv, cwd, env, passed, unprivileged

    monkeypatch.setattr(sandbox_process.SandboxedProcess, "_plain_command", broken_allow_list)
    cell = f"open({str(marker)!r}, 'w').write('ran unconfined')\n"
    with Submission.open(write_notebook(tmp_path, SETUP, cell, MANUAL_BN), limits_, isolation=Isolation.LANDLOCK) as s:
        with pytest.raises(SandboxUnavailable, match="could not apply its landlock isolation"):
            s.call_array("manual_batch_norm", np.ones((2, 2)))
    assert not marker.exists()


# --- failures on the grader's side: status error, never a graded zero ---------------------------------

def assert_grader_error(results, *needles):
    assert (results["status"], results["error_side"]) == ("error", "grader"), results["error"]
    assert results["error"].startswith("grader-side failure, not the student's: ")
    assert Result.from_dict(results).grader_fault
    assert results["total"] == 0
    for needle in needles:
        assert needle in results["error"], results["error"]


@needs_bwrap
def test_a_missing_interpreter_is_the_graders_error(tmp_path, limits, graded, monkeypatch):
    limits(cell=5, call=10)
    monkeypatch.setattr(sandbox_process, "interpreter", lambda: "/nowhere/bin/python")
    results, _ = graded(write_notebook(tmp_path, SETUP, MANUAL_BN))
    assert_grader_error(results, "did not start", "/nowhere/bin/python")


@pytest.mark.slow
@needs_bwrap
def test_a_check_that_crashes_on_a_well_formed_answer_is_the_graders_error(tmp_path, limits, graded, monkeypatch):
    limits(cell=120, call=120)      # generous: under load a call past its limit would be the student's timeout

    def broken(model):
        raise KeyError("a bug in the check")

    monkeypatch.setattr(view, "flat_layers", broken)
    results, _ = graded(write_notebook(tmp_path, SETUP, MANUAL_BN, BUILD_WITH_BN))
    assert_grader_error(results, "the check crashed: KeyError", "build_model_with_bn::")


def _setup_cell(grade_id, source):
    return nbgrader_cell(source, grade_id, locked=True)


@pytest.mark.slow
@needs_bwrap
def test_a_set_up_cell_that_fails_for_lack_of_memory_is_the_graders_error(tmp_path, limits, graded, monkeypatch):
    # A worker forked from the zygote finds keras imported, in pages its cgroup is not charged for.
    monkeypatch.setenv("BN_AUTOGRADER_ZYGOTE", "0")
    limits(cell=30, call=20, memory_mb=64)        # too little for the instructor's `import keras`
    results, _ = graded(write_notebook(tmp_path, _setup_cell("setup", SETUP), MANUAL_BN))
    assert_grader_error(results)
    assert "set-up cell 'setup'" in results["error"] or "did not start" in results["error"]


@needs_bwrap
def test_the_instructors_set_up_source_runs_in_place_of_an_edited_copy(tmp_path, limits, graded):
    limits(cell=10, call=20)
    uses_setup = MANUAL_BN.replace("    x = np.asarray",
                                   "    assert layer_out_early.shape == (32, 10)\n    x = np.asarray")
    edited = _setup_cell("covariate_shift_data", "raise RuntimeError('the student edited a locked cell')\n")
    results, submission = graded(write_notebook(tmp_path, SETUP, edited, uses_setup))
    assert results["status"] == "graded", results["error"]
    assert not submission.cell_errors()
    assert scores(results)["manual_batch_norm"] == FULL_MARKS["manual_batch_norm"]


@pytest.mark.slow
@needs_bwrap
def test_a_set_up_cell_broken_by_the_students_own_cell_is_not_the_graders_error(tmp_path, limits, graded):
    limits(cell=30, call=20)      # the released set-up cells before it run again alone, `import keras` too
    breaks_numpy = "import sys\nsys.modules['numpy'] = None\ndel np\n"
    results, submission = graded(write_notebook(tmp_path, SETUP, breaks_numpy,
                                          _setup_cell("covariate_shift_data", "unused"), MANUAL_BN))
    assert results["status"] == "graded", results["error"]
    assert "NameError" in outcome(submission, 2)       # np is gone: the student's doing, and it stays theirs


@needs_bwrap
@pytest.mark.slow      # imports TensorFlow (the training check runs, and finds no data)
def test_a_missing_data_set_is_the_graders_error(tmp_path, limits, monkeypatch):
    limits(cell=30, call=30)
    select(monkeypatch, "training_improvement")
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(empty))
    monkeypatch.setenv("BN_AUTOGRADER_TRAINING_MEMO", "0")
    monkeypatch.setattr(training, "_subset", training._subset.__wrapped__)     # no copy read earlier
    results = grade_from_environ(write_notebook(tmp_path / "nb", SETUP, BUILD_WITH_BN), cache_dir=tmp_path / "cache")
    assert_grader_error(results, "Fashion-MNIST is missing on the grading machine")


@needs_bwrap
def test_answers_of_the_wrong_shape_or_kind_are_the_students_zero_not_a_crash(tmp_path, limits, monkeypatch):
    limits(cell=5, call=10)
    numpy_exercises = ("manual_batch_norm", "batch_norm_backward", "update_moving_statistics",
                       "batch_norm_inference", "population_statistics")
    select(monkeypatch, *numpy_exercises)
    odd = {"manual_batch_norm": "np.ones((2, 3, 4, 5, 6))", "batch_norm_backward": "np.ones(7), 1.0, np.zeros(0)",
           "update_moving_statistics": "(moving_mean,) * 3", "batch_norm_inference": "'text'",
           "population_statistics": "[batch_means]"}
    results = grade_from_environ(write_notebook(tmp_path, SETUP, *students.returning(odd).values()))
    assert results["status"] == "graded", results["error"]
    assert {c["exercise"] for c in results["checks"] if c["max_points"]} >= set(numpy_exercises)
    assert sum(c["points"] for c in results["checks"]) == 0
