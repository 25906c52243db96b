"""The one registry of the assignment: every exercise, and everything that follows from it.

An exercise has an id, the function students write, its signature, a kind, its points and a title.
Everything else is derived from these (the notebook's cell ids, the check module's name, the CSV
columns, the README's table) or checked against them by one test (tests/test_registry.py: the
notebook's points, each check module's total, the README table, the demo class's rows).

The written answers (``WRITTEN_ANSWERS``) are graded by a person in nbgrader's formgrader: each is a
locked markdown question (``question_cell``) followed by a manually graded markdown answer cell
(``answer_cell``, nbgrader's ``solution`` and ``grade`` with ``points``). Their points are reported
apart from the autograded ones everywhere (grades.csv, the class report, the feedback page).

Adding an exercise: an entry here, a reference (reference.py) with its mistakes (known_mistakes.py),
a check module (checks/test_<id>.py), the notebook's cells (source/), and one synthetic student per
mistake (synthetic_students.py).
"""

from dataclasses import dataclass
from enum import Enum

ASSIGNMENT_ID = "batchnorm"          # the one assignment: its folder in submitted/, grade-class/, release/
NOTEBOOK_NAME = "batchnorm.ipynb"
ASSIGNMENT_TITLE = "Batch Normalization"     # what people call it: the feedback page's heading, Canvas' column


def unknown_assignment(name: str) -> str | None:
    """The usage error for the assignment name a command line was given (``grade-class batchnorm``,
    ``report``, ``similarity``, nbgrader's ``autograde batchnorm``), or None for ASSIGNMENT_ID. Those
    command lines take the name for compatibility and check it here, once, at the edge; nothing
    behind them takes an assignment: every folder is ASSIGNMENT_ID's."""
    if name == ASSIGNMENT_ID:
        return None
    return f"unknown assignment {name!r}; this course has {ASSIGNMENT_ID!r}"


class Kind(str, Enum):
    NUMPY = "numpy"          # a NumPy function, compared with a float64 reference
    MODEL = "model"          # a Keras model builder, read from its config
    TRAINING = "training"    # a model builder's model, trained by the grader


@dataclass(frozen=True)
class Exercise:
    id: str             # also the check module's name (checks/test_<id>.py) and the test cell's (test_<id>)
    function: str       # the student function the checks call
    signature: str      # as the notebook states it, without "def" (README and synthetic students use it)
    kind: Kind
    points: float
    title: str          # what feedback and the nbgrader bridge call it

    @property
    def test_cell(self) -> str:
        """nbgrader grade_id of the exercise's autograded test cell."""
        return f"test_{self.id}"

    @property
    def solution_cell(self) -> str | None:
        """nbgrader grade_id of the solution cell that defines the function (a training exercise
        trains another exercise's function, so it has none of its own)."""
        return None if self.kind is Kind.TRAINING else self.function

    @property
    def check_module(self) -> str:
        """The hidden check module's file name in autograder/checks/."""
        return f"test_{self.id}.py"

    @property
    def def_line(self) -> str:
        """The function's first line, as the released notebook gives it."""
        return f"def {self.signature.split(' -> ')[0]}:"


def _numpy(id_, signature, points, title):
    return Exercise(id_, id_, signature, Kind.NUMPY, points, title)


# In notebook order. The NumPy maths and statistics carry 20 of the 25 points.
EXERCISES = (
    _numpy("manual_batch_norm", "manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5) -> np.ndarray", 3.0,
           "Batch normalization in NumPy"),
    _numpy("batch_norm_backward", "batch_norm_backward(dout, x, gamma, epsilon=1e-5) -> (dx, dgamma, dbeta)", 4.0,
           "The backward pass, derived"),
    Exercise("build_model_with_bn", "build_model_with_bn",
             "build_model_with_bn(input_shape=(28, 28, 1), num_classes=10) -> keras.Model", Kind.MODEL, 2.0,
             "Conv -> BN -> ReLU model"),
    Exercise("training_improvement", "build_model_with_bn",
             "build_model_with_bn(input_shape=(28, 28, 1), num_classes=10) -> keras.Model", Kind.TRAINING, 1.0,
             "BN speeds up training"),
    _numpy("update_moving_statistics", "update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, "
                                       "momentum=0.99) -> (new_mean, new_var)", 1.0,
           "Moving averages of the statistics"),
    _numpy("batch_norm_inference", "batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, "
                                   "epsilon=1e-3) -> np.ndarray", 2.0,
           "BN at inference"),
    _numpy("debiased_moving_statistic", "debiased_moving_statistic(moving, initial, momentum, steps) -> np.ndarray",
           2.0, "Debiased moving statistics"),
    _numpy("population_statistics", "population_statistics(batch_means, batch_vars, batch_sizes) -> (mean, var)",
           2.0, "Population statistics (precise BN)"),
    _numpy("group_norm", "group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3) -> np.ndarray", 3.0,
           "Group normalization in NumPy"),
    _numpy("group_norm_backward", "group_norm_backward(dout, x, groups, gamma, epsilon=1e-3) -> (dx, dgamma, dbeta)",
           3.0, "Group norm's backward pass, derived"),
    Exercise("build_modern_cnn", "build_modern_cnn",
             "build_modern_cnn(input_shape=(32, 32, 3), num_classes=10) -> keras.Model", Kind.MODEL, 2.0,
             "Modern CNN builder"),
)


@dataclass(frozen=True)
class WrittenAnswer:
    """A written answer, graded by a person (nbgrader's manually graded answer cell)."""
    id: str             # the answer cell's grade_id, ``written_<topic>``
    points: float
    title: str          # what the feedback page, the report and the CSV's readers call it

    @property
    def answer_cell(self) -> str:
        """nbgrader grade_id of the manually graded markdown answer cell (and the CSV's column)."""
        return self.id

    @property
    def question_cell(self) -> str:
        """nbgrader grade_id of the locked markdown question above it."""
        return f"{self.id}_question"


# What an unanswered written answer holds: nbgrader's text stub (c.ClearSolutions.text_stub in
# nbgrader_config.py, which tests/test_registry.py compares with this).
UNANSWERED = "YOUR ANSWER HERE"

# In notebook order; 2 points each, graded by a person.
WRITTEN_ANSWERS = (
    WrittenAnswer("written_bn_order", 2.0, "Why Conv -> BN -> ReLU, and where the parameters are"),
    WrittenAnswer("written_learning_rates", 2.0, "Does the learning-rate table support the paper's claim?"),
    WrittenAnswer("written_epoch_gap", 2.0, "The gap between training and validation accuracy after epoch 1"),
    WrittenAnswer("written_moving_variance", 2.0, "Why the initial value still weighs in the moving variance"),
    WrittenAnswer("written_population_variance", 2.0, "The variance of a union of batches, and Algorithm 2"),
    WrittenAnswer("written_choose_norm", 2.0, "BN, LN or GN: which, where, and why"),
)

EXERCISE_IDS = tuple(e.id for e in EXERCISES)
BY_ID = {e.id: e for e in EXERCISES}
BY_TEST_CELL = {e.test_cell: e for e in EXERCISES}
TOTAL_POINTS = sum(e.points for e in EXERCISES)      # the autograded points (the isolated grader's)
WRITTEN_IDS = tuple(w.id for w in WRITTEN_ANSWERS)
BY_ANSWER_CELL = {w.answer_cell: w for w in WRITTEN_ANSWERS}
MANUAL_POINTS = sum(w.points for w in WRITTEN_ANSWERS)   # the written answers' (a person's)

# Answer cells no check reads: the grader runs them like any answer cell (the optional one-line
# backward pass after Exercise 2).
OPTIONAL_ANSWER_CELLS = ("batch_norm_backward_one_line",)


def of_kind(*kinds: Kind) -> tuple:
    """The exercises of these kinds, in notebook order."""
    return tuple(e for e in EXERCISES if e.kind in kinds)


def markdown_table() -> str:
    """The README's table of exercises, from this registry (tests/test_registry.py compares them)."""
    lines = ["| exercise | function | points |", "| --- | --- | --- |"]
    for e in EXERCISES:
        what = (f"the student's `{e.function}()`, trained by the grader against the baseline"
                if e.kind is Kind.TRAINING else f"`{e.signature}`")
        lines.append(f"| `{e.id}` | {what} | {e.points:g} |")
    return "\n".join(lines)


def written_markdown_table() -> str:
    """The README's table of written answers, from this registry (tests/test_registry.py compares them)."""
    lines = ["| written answer (answer cell) | graded by a person: | points |", "| --- | --- | --- |"]
    lines += [f"| `{w.answer_cell}` | {w.title} | {w.points:g} |" for w in WRITTEN_ANSWERS]
    return "\n".join(lines)
