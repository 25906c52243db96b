"""The grader's own process imports TensorFlow only to train: with the training check's result in the
memo and the baseline cached, grading a notebook leaves TensorFlow and Keras unimported in it."""

import json
import os
import subprocess
import sys

import pytest

from autograder import sandbox
from autograder import synthetic_students as students

needs_bwrap = pytest.mark.skipif(not sandbox.bubblewrap_available(), reason="bubblewrap cannot run here")

# `python -m autograder ...` with, at its end, the grader process's TensorFlow and Keras modules
# written to the file given first.
PROBE = """
import json, runpy, sys
probe = sys.argv.pop(1)
try:
    runpy.run_module("autograder", run_name="__main__", alter_sys=True)
finally:
    with open(probe, "w") as f:
        json.dump(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")), f)
"""


def grade_and_probe(notebook, cache, folder):
    """(results, the TensorFlow/Keras modules the grader's process imported)."""
    folder.mkdir()
    probe, output = folder / "modules.json", folder / "results.json"
    subprocess.run([sys.executable, "-c", PROBE, str(probe), "grade", str(notebook), "--output", str(output),
                    "--cache-dir", str(cache)], check=False, capture_output=True, timeout=600)
    return json.loads(output.read_text()), json.loads(probe.read_text())


@pytest.mark.slow
@needs_bwrap
def test_a_memoized_architecture_is_graded_without_importing_tensorflow(tmp_path):
    notebook = students.write_submission(students.STUDENTS["full_marks"], tmp_path / "submission.ipynb")
    cache = tmp_path / "cache"
    first, first_modules = grade_and_probe(notebook, cache, tmp_path / "first")
    assert first["total"] == first["max_total"], first
    assert "tensorflow" in first_modules          # the memo was empty: it trained, the probe sees it
    second, second_modules = grade_and_probe(notebook, cache, tmp_path / "second")
    assert second["total"] == second["max_total"], second
    assert second_modules == [], second_modules


@pytest.mark.slow
def test_the_graders_keras_import_brings_neither_jax_nor_pyplot_and_leaves_both_importable():
    """keras_runtime.keras(): TensorFlow and Keras import them when installed, and training uses
    neither (about 1 s of every training grader's start); later imports of both still work. Keras is
    on TensorFlow whatever KERAS_BACKEND says (the training check was calibrated there)."""
    probe = ("import sys; from autograder import keras_runtime; keras = keras_runtime.keras();"
             " print(keras.backend.backend(), 'jax' in sys.modules, 'matplotlib.pyplot' in sys.modules);"
             " import jax, matplotlib.pyplot; print(jax.numpy.add(1, 2))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, KERAS_BACKEND="jax"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["tensorflow", "False", "False", "3"]
