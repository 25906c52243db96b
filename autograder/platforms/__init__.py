"""Where courses already are: the platforms a graded class reaches after grades.csv.

* ``gradescope.py``: ``gradescope-run``, one submission graded inside Gradescope's container into its
  ``results.json``, and the options the exported autograder carries (``GradescopeOptions``).
* ``gradescope_export.py``: ``export gradescope``, the autograder zip (``setup.sh``, ``run_autograder``).
* ``canvas.py``: ``export canvas``, the gradebook CSV Canvas imports, filled in from grades.csv.
* ``canvas_push.py``: ``canvas push``, the changed grades posted through Canvas' REST API (canvasapi).

Every score they carry comes from the isolated grader's results; a grader-side error is never sent as a grade.
"""
