"""A student's model as a fresh keras.Model: vetted and bounded first, then deserialized in safe mode.

The only module of models/ that imports Keras, and only when called.
"""

import copy

from autograder.errors import ModelRefused
from autograder.models import cost
from autograder.models.vet import reading_student_config


def rebuild(config: dict, *, schedule=None):
    """A fresh keras.Model from a vetted config (new weights; nothing of the student's runs). The
    config is bounded first (check_bounds), so a model too large for the grader is never built."""
    with reading_student_config():     # a config it cannot read is the student's
        cost.check_bounds(config, schedule=schedule)
    from autograder.keras_runtime import keras as pinned  # after the bounds: a refused model costs no Keras at all
    keras = pinned()
    try:
        # Keras consumes the dict it deserializes; the caller's copy is reused by other checks.
        model = keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the configuration describes a {type(model).__name__}, not a model")
        return model
    except Exception as exc:  # Keras raises many kinds for configs it cannot rebuild
        raise ModelRefused(f"Keras could not rebuild the model from its configuration: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
