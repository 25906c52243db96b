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
import sys

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
    """The keras module, TensorFlow pinned first (once per process)."""
    global _ready
    with _absent(UNUSED_BY_TRAINING) if "keras" not in sys.modules else contextlib.nullcontext():
        import keras as module  # noqa: PLC0415  (lazy: importing TensorFlow takes ~3.5 s)
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
