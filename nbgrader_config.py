"""nbgrader settings for the Batch Normalization course (run nbgrader from this folder)."""

import os

c = get_config()  # noqa: F821  (nbgrader provides get_config)

c.CourseDirectory.course_id = "dl-batchnorm"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Any stderr in a test cell scores 0 in nbgrader. TensorFlow's C++ logs only stay quiet when the
# variable is set before the kernel process starts, so set it here, where every kernel that
# nbgrader starts (validate, autograde) inherits it; and drop the log and warning lines that
# TensorFlow and Keras still print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"(?m)^(WARNING: All log messages before absl|[IWE]\d{4} [\d:. ]+|.*(oneDNN|cpu_feature_guard|"
    r"rebuild TensorFlow|tensorflow|keras|absl).*)"
)

# A cell that runs longer than this is interrupted (an endless loop must not hang a class).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# Feedback must never show the hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# --- Autograde: every score comes from the isolated grader, never from the student's kernel -------
# nbgrader's default list starts with Execute, which runs the whole notebook in a Jupyter kernel and
# scores test cells by their outputs (code in that kernel can fake them). IsolatedGrade replaces it:
# it grades the sanitized notebook with autograder.grade.grade_notebook (student code in the sandboxed
# worker, hidden checks in the grader) and writes each test cell's points as its execute_result, which
# SaveAutoGrades records as partial credit. See autograder/nbgrader_bridge.py.
c.Autograde.autograde_preprocessors = [
    "autograder.nbgrader_bridge.IsolatedGrade",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# IsolatedGrade takes grade-class's stored result for every unchanged submission, and grades the
# others all at once before nbgrader imports the first: in this many parallel grader processes, or on
# a Dask cluster (as `grade-class --scheduler`).
# c.IsolatedGrade.jobs = 2
# c.IsolatedGrade.scheduler = "tcp://scheduler-host:8786"

# LMS downloads (downloaded/batchnorm/archive/*.zip): how `nbgrader zip_collect` and
# `python -m autograder grade-class` find the student id in a file name (nbgrader's documented pattern).
c.FileNameCollectorPlugin.named_regexp = (
    r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"
)
