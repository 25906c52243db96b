"""Damaged notebooks: unreadable, empty, damaged or oversized files, and cells run by their role."""

import math
from pathlib import Path

import nbformat
import pytest

from conftest import (
    FULL_MARKS,
    MANUAL_BN,
    SETUP,
    checks,
    messages,
    nbgrader_cell,
    needs_bwrap,
    scores,
    write_notebook,
)

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")

# --- damaged notebooks -----------------------------------------------------------------------------------

def _write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda p: _write(p, nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(MANUAL_BN)]))[:60]),
     "not valid JSON"),
    (lambda p: _write(p, bytes(range(256)) * 40), "not UTF-8 text"),
    (lambda p: _write(p, "[1, 2, 3]"), "not a Jupyter notebook"),
    (lambda p: _write(p, '{"metadata": {}, "nbformat": 4}'), "not a Jupyter notebook"),
    (lambda p: _write(p, "[" * 200000 + "]" * 200000), "not a Jupyter notebook"),
    (lambda p: _write(p, '{"cells": [], "nbformat": 99, "nbformat_minor": 0, "metadata": {}}'), "damaged notebook"),
    (lambda p: p, "cannot read"),
    (lambda p: p.mkdir() or p, "cannot read"),
], ids=["truncated", "binary", "json-list", "no-cells", "deeply-nested", "future-version", "missing", "a-folder"])
def test_an_unreadable_notebook_is_a_clear_error_for_every_check(tmp_path, graded, make, reason):
    results, _ = graded(make(tmp_path / "batchnorm.ipynb"))
    assert results["status"] == "error" and reason in results["error"], results["error"]
    assert results["error_side"] == "student"
    assert results["total"] == 0 and checks(results)
    assert all(reason in c["message"] for c in checks(results)), checks(results)
    assert math.isclose(sum(c["max_points"] for c in checks(results)), sum(FULL_MARKS.values()))


@needs_bwrap
def test_a_notebook_without_cells_is_graded_as_empty(tmp_path, graded, limits):
    limits(cell=5, call=10)
    results, _ = graded(_write(tmp_path / "batchnorm.ipynb",
                               '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'))
    assert results["status"] == "graded", results["error"]
    assert results["total"] == 0 and checks(results)
    assert all("is not defined in the notebook" in c["message"] for c in checks(results))


def test_a_notebook_with_damaged_cells_is_the_students_error(tmp_path, graded):
    content = ('{"cells": [1, "two", {"cell_type": "code", "source": 5, "metadata": [], "outputs": []}], '
               '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    results, _ = graded(_write(tmp_path / "batchnorm.ipynb", content))
    assert (results["status"], results["error_side"]) == ("error", "student")
    assert "damaged notebook" in results["error"]
    assert results["total"] == 0 and all("damaged notebook" in c["message"] for c in checks(results))



@needs_bwrap
def test_cells_are_run_by_role_not_by_position_or_name(tmp_path, graded, limits):
    limits(cell=3, call=20)
    wrong = MANUAL_BN.replace("keepdims=True)\n    return", "keepdims=True, ddof=1)\n    return")
    cells = [
        nbgrader_cell(SETUP + "import time\n", "course_setup", locked=True),      # a locked cell
        nbformat.v4.new_markdown_cell("# Exercise 1"),
        nbgrader_cell(wrong, "renamed_by_the_student", solution=True),
        nbgrader_cell(MANUAL_BN, "manual_batch_norm_solution", solution=True),    # a duplicate: it wins
        nbgrader_cell("import os\nos._exit(1)\nmanual_batch_norm = None\n", "test_manual_batch_norm",
                       grade=True, locked=True, points=4),                        # an edited test cell
        nbgrader_cell("manual_batch_norm = None\n", "my_own_tests", grade=True, points=0),
        nbgrader_cell("time.sleep(10**6)\n", "demo_training_race", locked=True),  # never run
        MANUAL_BN.replace("def manual_batch_norm", "def unused_helper"),           # no metadata at all
    ]
    results, submission = graded(write_notebook(tmp_path, *cells))
    assert results["status"] == "graded", results["error"]
    assert [index for index, _ in submission.cells] == [0, 2, 3, 7]
    assert not submission.cell_errors()
    assert scores(results) == {**FULL_MARKS, "build_model_with_bn": 0.0, "build_modern_cnn": 0.0}
    assert all("build_model_with_bn is not defined" in m for m in messages(results, "build_model_with_bn"))


def test_an_oversized_notebook_is_refused(tmp_path, graded, monkeypatch):
    from autograder import notebook as notebooks
    monkeypatch.setattr(notebooks, "MAX_NOTEBOOK_BYTES", 1000)
    results, _ = graded(write_notebook(tmp_path, SETUP, MANUAL_BN * 10))
    assert results["status"] == "error" and "MB that is read" in results["error"], results["error"]
