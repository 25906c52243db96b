"""What a student runs before submitting: ``python -m autograder check NOTEBOOK``.

- ``check.py``: runs the notebook exactly as the grader does (the same cells, the same per-cell and
  total limits, the sandbox where bubblewrap is available), then each visible test cell against the
  result, and reports what would go wrong when it is graded. It runs no hidden check and shows no
  hidden verdict. It reads the notebook's code with ``source.py`` (what each cell binds and calls,
  and how the messages name cells) and reports with ``report.py`` (the problems, one line per
  exercise, the text and the JSON).
- ``contract.py``: what the check compares a notebook with: the released notebook's nbgrader cells
  (the locked cells' sources, the cell ids, the points). In this project it is read from the
  release; in the student kit it ships as ``contract.json``, generated when the kit is built. Its
  ``locked_cell_problems`` is the comparison.
- ``kit.py``: ``python -m autograder student-kit --output DIR`` builds the wheel students install
  (the runner, the sandbox and the contract; nothing of ``checks/``, ``reference.py`` or ``known_mistakes.py``). It is
  not part of the kit.
"""
