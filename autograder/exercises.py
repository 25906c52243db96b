"""The assignment's contract: exercise ids, the functions students write, and the cells that hold them.

Every other part of the package (the notebook's test cells, the hidden checks, the nbgrader
bridge, the CSV columns) takes these names from here, so that renaming one breaks a test
instead of silently scoring zero.
"""

from dataclasses import dataclass

ASSIGNMENT_ID = "batchnorm"
NOTEBOOK_NAME = "batchnorm.ipynb"


@dataclass(frozen=True)
class Exercise:
    id: str             # check module is autograder/checks/test_<id>.py
    function: str       # the student function the checks call
    test_cell: str      # nbgrader grade_id of the autograded test cell
    title: str          # what feedback and the CSV call it
    points: float       # the test cell's points; the check module's markers add up to this


# In notebook order. The NumPy maths and statistics (manual_batch_norm, batch_norm_backward,
# update_moving_statistics, batch_norm_inference, population_statistics) carry 12 of the 18 points.
EXERCISES = (
    Exercise("manual_batch_norm", "manual_batch_norm", "test_manual_batch_norm",
             "Batch normalization in NumPy", 3.0),
    Exercise("batch_norm_backward", "batch_norm_backward", "test_batch_norm_backward",
             "The backward pass", 4.0),
    Exercise("build_model_with_bn", "build_model_with_bn", "test_build_model_with_bn",
             "Conv -> BN -> ReLU model", 2.0),
    # Scored by training the student's build_model_with_bn against the reference model.
    Exercise("training_improvement", "build_model_with_bn", "test_training_improvement",
             "BN speeds up training", 2.0),
    Exercise("update_moving_statistics", "update_moving_statistics", "test_update_moving_statistics",
             "Moving averages of the statistics", 1.0),
    Exercise("batch_norm_inference", "batch_norm_inference", "test_batch_norm_inference",
             "BN at inference", 2.0),
    Exercise("population_statistics", "population_statistics", "test_population_statistics",
             "Population statistics (precise BN)", 2.0),
    Exercise("build_modern_cnn", "build_modern_cnn", "test_build_modern_cnn",
             "Modern CNN builder", 2.0),
)

EXERCISE_IDS = tuple(e.id for e in EXERCISES)
BY_ID = {e.id: e for e in EXERCISES}
BY_TEST_CELL = {e.test_cell: e for e in EXERCISES}

def nbgrader_metadata(cell) -> dict:
    """A notebook cell's nbgrader metadata ({} for a plain cell, or a damaged one)."""
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str:
    """The cell's nbgrader grade_id, "" when it has none."""
    return str(nbgrader_metadata(cell).get("grade_id", ""))


# Locked notebook cells whose grade_id starts with this are demonstrations (plots, the
# training race). The grader never runs them; every other locked code cell is set-up.
DEMO_CELL_PREFIX = "demo_"
