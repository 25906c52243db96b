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
    assert exercises.written_markdown_table() in readme, "regenerate the README's table: written_markdown_table()"


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


# --- the written answers, graded by a person -----------------------------------------------------------

SOURCE = ROOT / "source" / exercises.ASSIGNMENT_ID / exercises.NOTEBOOK_NAME
RELEASE = ROOT / "release" / exercises.ASSIGNMENT_ID / exercises.NOTEBOOK_NAME


def manually_graded(nb) -> list:
    """(grade_id, cell) of every manually graded answer cell (nbgrader: solution and grade), in order."""
    return [(notebook.grade_id(c), c) for c in nb.cells
            if notebook.nbgrader_metadata(c).get("solution") and notebook.nbgrader_metadata(c).get("grade")]


def test_the_notebooks_manually_graded_cells_are_the_registrys_written_answers():
    nb = notebook.read(SOURCE)
    cells = manually_graded(nb)
    assert [gid for gid, _ in cells] == [w.answer_cell for w in exercises.WRITTEN_ANSWERS]
    ids = [notebook.grade_id(c) for c in nb.cells]
    for answer, (_, cell) in zip(exercises.WRITTEN_ANSWERS, cells, strict=True):
        assert cell["cell_type"] == "markdown"
        assert notebook.nbgrader_metadata(cell)["points"] == answer.points, answer.id
        question = nb.cells[ids.index(answer.answer_cell) - 1]      # the locked question right above it
        assert notebook.grade_id(question) == answer.question_cell and notebook.nbgrader_metadata(question)["locked"]
        assert "graded by a person" in notebook.source(question) and "A good answer" in notebook.source(question)
    assert exercises.MANUAL_POINTS == 12 and exercises.TOTAL_POINTS == sum(e.points for e in EXERCISES)


def test_each_written_answer_has_a_model_answer_and_a_mark_scheme_inside_its_solution_region():
    from autograder.assign import BEGIN_MARK_SCHEME, END_MARK_SCHEME
    for gid, cell in manually_graded(notebook.read(SOURCE)):
        lines = [line.strip() for line in notebook.source(cell).splitlines()]
        begin, end = lines.index("### BEGIN SOLUTION"), lines.index("### END SOLUTION")
        scheme = lines.index(BEGIN_MARK_SCHEME), lines.index(END_MARK_SCHEME)
        assert begin == 0 and end == len(lines) - 1 and begin + 1 < scheme[0] < scheme[1] < end, gid
        assert "point" in " ".join(lines[scheme[0]:scheme[1]]), f"{gid}: say what earns each point"


def test_unanswered_is_nbgraders_text_stub():
    config = (ROOT / "nbgrader_config.py").read_text(encoding="utf-8")
    assert f'c.ClearSolutions.text_stub = "{exercises.UNANSWERED}"' in config


def test_the_release_has_the_written_answers_with_points_and_no_marking():
    from autograder.assign import leaked_marking
    released = notebook.read(RELEASE)
    cells = manually_graded(released)
    assert [(gid, notebook.nbgrader_metadata(c)["points"]) for gid, c in cells] == \
        [(w.answer_cell, w.points) for w in exercises.WRITTEN_ANSWERS]
    assert all(notebook.source(c).strip() == exercises.UNANSWERED for _, c in cells)
    text = "\n".join(notebook.source(c) for c in released.cells)
    assert "MARK SCHEME" not in text and "Model answer" not in text and "What earns each point" not in text
    import nbformat
    assert leaked_marking(nbformat.read(RELEASE, as_version=4)) == []


def test_a_release_with_marking_text_is_refused():
    import nbformat

    from autograder.assign import leaked_marking
    answer = exercises.WRITTEN_ANSWERS[0]
    meta = {"nbgrader": {"grade_id": answer.answer_cell, "solution": True, "grade": True, "points": 2.0}}
    clean = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(exercises.UNANSWERED, metadata=meta)])
    assert leaked_marking(clean) == []
    for leak in ("The model answer, left in place", f"{exercises.UNANSWERED}\n=== BEGIN MARK SCHEME ===\n1 point"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(leak, metadata=meta)])
        assert leaked_marking(nb) == [answer.answer_cell]
    elsewhere = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x\n### END MARK SCHEME")])
    assert leaked_marking(elsewhere) == ["cell 1"]
