"""The worker builds the student's models with Keras' NumPy backend, without importing TensorFlow,
and the models it hands back are the ones Keras builds with TensorFlow.

One sandboxed worker for the module (~5 s) and one TensorFlow import in this process.
"""

import json

import nbformat
import pytest

from autograder import synthetic_students as students
from autograder.models import architecture
from autograder.sandbox import process
from autograder.submission import Submission

pytestmark = pytest.mark.slow

PROBES = '''\
import sys
import numpy as np

def tensorflow_loaded():
    return np.array([float("tensorflow" in sys.modules)])

def tensorflow_sum():
    import tensorflow as tf
    return np.array([float(tf.reduce_sum(tf.constant([1.0, 2.0])))])

def keras_backend_is_numpy():
    return np.array([float(keras.backend.backend() == "numpy")])
'''


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    notebook = students.build_notebook(students.STUDENTS["full_marks"])
    notebook.cells.append(nbformat.v4.new_code_cell(PROBES))
    path = tmp_path_factory.mktemp("worker") / "batchnorm.ipynb"
    nbformat.write(notebook, path)
    with Submission.open(path) as submission:
        assert not submission.cell_errors()
        yield submission


def test_the_worker_uses_the_numpy_backend(worker):
    assert process.WORKER_KERAS_BACKEND == "numpy"
    assert worker.call_array("keras_backend_is_numpy").value.tolist() == [1.0]


def test_the_set_up_cell_does_not_import_tensorflow(worker):
    assert worker.call_array("tensorflow_loaded").value.tolist() == [0.0]


def test_a_students_own_tensorflow_import_still_works(worker):
    assert worker.call_array("tensorflow_sum").value.tolist() == [3.0]


@pytest.mark.parametrize("function, kwargs", [("build_model_with_bn", {}), ("build_modern_cnn", {}),
                                              ("build_modern_cnn", {"input_shape": (28, 28, 1), "num_classes": 5})])
def test_the_workers_model_is_the_one_keras_builds_with_tensorflow(worker, function, kwargs):
    import keras  # noqa: PLC0415  (this process: the TensorFlow backend, like the grader)
    assert keras.backend.backend() == "tensorflow"
    namespace = {"keras": keras, "np": __import__("numpy")}
    exec(students.solution_code()[function], namespace)
    here = json.loads(namespace[function](**kwargs).to_json())
    there = worker.model_config(function, **kwargs)
    assert architecture.fingerprint(there) == architecture.fingerprint(here)
