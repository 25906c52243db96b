"""Keras in the grader's own process, set up so that training gives the same bits whatever the load.

TensorFlow's CPU kernels split their work by the threads they get, and oneDNN's kernels run on one
thread when they are called from a thread of TensorFlow's own pool: which ops run inline on which
thread follows the executor's timing, so under load a training run could sum in another order and
end a few ulps (one image of accuracy) apart. Pinned to one thread per op and one op at a time, with
TensorFlow's deterministic kernels, every run does the same arithmetic in the same order. The
grader's code imports Keras through ``keras()``; the thread counts can only be set before
TensorFlow's runtime starts, so the first import in a process decides.
"""

import contextlib
import os
import sys

from .errors import GraderFault

_ready = False

# Imported by TensorFlow (TFLite's converter of JAX functions) and by Keras (its image gallery) when
# they are installed, and used by neither in the grader's training: about 1 s of its TensorFlow
# import. The sandboxed worker needs both (Keras' NumPy backend, the notebook's plots).
UNUSED_BY_TRAINING = ("jax", "matplotlib.pyplot")


@contextlib.contextmanager
def _absent(names):
    """Those of ``names`` not imported yet read as not installed while the block runs (a None in
    sys.modules makes their import raise ImportError, which both importers expect); then as before."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def keras():
    """The keras module on TensorFlow, TensorFlow pinned first (once per process). The training
    check was calibrated on TensorFlow: an instructor's KERAS_BACKEND or keras.json does not apply."""
    global _ready
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"      # read by Keras at its import, before keras.json
        with _absent(UNUSED_BY_TRAINING):
            import keras  # noqa: F401, PLC0415  (lazy: importing TensorFlow takes ~3.5 s)
    import keras as module  # noqa: PLC0415
    if module.backend.backend() != "tensorflow":
        raise GraderFault(f"Keras was loaded in the grader's process on the {module.backend.backend()} backend, "
                          "before the training check asked for it on TensorFlow")
    if not _ready:
        _ready = True
        import tensorflow as tf  # noqa: PLC0415
        tf.config.experimental.enable_op_determinism()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the runtime started before (something imported TensorFlow and ran an op)
            pass
    return module
