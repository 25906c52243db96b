"""The registry (autograder/exercises.py) is the one source: everything derived from it agrees with it."""

from pathlib import Path

import pytest

from autograder import exercises, notebook, provenance
from autograder.check_catalogue import CHECKS_DIR, collect_checks
from autograder.exercises import EXERCISES, Kind

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_table_is_the_registrys():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert exercises.markdown_table() in readme, "regenerate the README's table: exercises.markdown_table()"


def test_each_exercise_has_a_check_module_whose_points_add_up():
    totals = {}
    for row in collect_checks():
        totals[row["exercise"]] = totals.get(row["exercise"], 0.0) + row["max_points"]
    for exercise in EXERCISES:
        assert (CHECKS_DIR / exercise.check_module).is_file(), f"no hidden check module {exercise.check_module}"
    assert totals == pytest.approx({e.id: e.points for e in EXERCISES})


def test_the_release_states_each_exercise_as_the_registry_does():
    released = notebook.read(ROOT / "release" / exercises.ASSIGNMENT_ID / exercises.NOTEBOOK_NAME)
    by_id = {notebook.grade_id(c): c for c in released.cells}
    for exercise in EXERCISES:
        test = by_id[exercise.test_cell]
        assert notebook.nbgrader_metadata(test)["points"] == exercise.points, exercise.test_cell
        if exercise.solution_cell:
            assert notebook.source(by_id[exercise.solution_cell]).startswith(exercise.def_line), exercise.id


def test_the_kinds_keep_the_numpy_share_of_the_points():
    numpy = sum(e.points for e in exercises.of_kind(Kind.NUMPY))
    assert numpy / exercises.TOTAL_POINTS >= 0.6


def test_every_package_file_is_listed_as_scoring_or_not():
    package = provenance.PACKAGE_DIR
    files = {p.relative_to(package).as_posix() for p in package.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != "README.md"}
    scoring = {p.relative_to(package).as_posix() for pattern in provenance.SCORING for p in package.glob(pattern)}
    other = {p.relative_to(package).as_posix() for pattern in provenance.NOT_SCORING for p in package.glob(pattern)}
    assert not scoring & other, f"listed as both: {sorted(scoring & other)}"
    assert files <= scoring | other, f"decide whether these decide a score: {sorted(files - scoring - other)}"


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the grader's package, to edit."""
    import shutil
    copy = tmp_path / "autograder"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_editing_a_file_that_does_not_score_keeps_the_grader_hash(package_copy):
    before = provenance.grader_hash(package_copy)
    assert provenance.grader_hash(package_copy) == before
    (package_copy / "feedback.py").write_text("# presentation only: no regrade\n")
    (package_copy / "classroom" / "pool.py").write_text("# scheduling only: no regrade\n")
    (package_copy / "checks" / "README.md").write_text("edited\n")
    assert provenance.grader_hash(package_copy) == before


@pytest.mark.parametrize("scoring", ["checks/answers.py", "a check module"])
def test_editing_a_file_that_scores_changes_the_grader_hash(package_copy, scoring):
    before = provenance.grader_hash(package_copy)
    if scoring == "checks/answers.py":
        (package_copy / "checks" / "answers.py").write_text("# edited\n")
    else:
        check = next((package_copy / "checks").glob("test_*.py"))
        check.write_text(check.read_text() + "\n# a changed check\n")
    assert provenance.grader_hash(package_copy) != before
