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
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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
