"""A student's model read as data: vetted, bounded, viewed, fingerprinted and, only to train it, rebuilt.

The grader never runs the student's model code; it reads the Keras config the sandboxed worker
handed back. Each module does one job, all of them without Keras except ``rebuild``:

* ``vet``: the one reader of a student's model JSON, ``parse_config`` (size, depth and number of
  values bounded before anything walks it); ``reading_student_config``, which makes any other
  failure while the grader reads a config a refused model, never a grader crash; and the layers a
  config may hold (built-in Keras layers this assignment uses, no Lambda or custom ones), ``vet_config``.
* ``cost``: what a model costs (parameters, activation memory, FLOPs), worked out from the config
  alone, and ``check_bounds``, which refuses a model above the grader's caps before it is built.
* ``view``: the structure checks' read-only ``ModelView`` (layers, shapes, parameter counts) and
  what they ask of it (``flat_layers``, ``placement_errors``, ``parameter_counts``, ...).
* ``architecture``: the config without names, the training memo's key (``fingerprint``).
* ``rebuild``: a fresh keras.Model from a config, after ``vet`` and ``cost``, in Keras' safe mode.

Imports go one way: vet <- cost <- view, and vet, cost <- rebuild. A refusal is ``errors.ModelRefused``.
"""
