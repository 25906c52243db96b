"""The class side: every submission of a course graded, stored and reported.

    collect -> grade (server: pool | cluster) -> store -> grades CSV

* ``collect.py``: LMS zip downloads into ``submitted/``, then each student's notebook or why none.
* ``server.py``: the grader-process server and its protocol, and ``GraderProcess``, its parent's
  handle: one process loads the grader once and grades one submission at a time.
* ``pool.py``: N grader processes on this machine; ``cluster.py``: the same on Dask workers.
* ``store.py``: each student's result, sidecar and feedback page; when a stored result is kept.
* ``grades.py``: the class CSV and the end-of-run table.
* ``classrun.py``: ``run``, the orchestration of the above (re-exported here), and its ``ClassRun``.
* ``cli.py``: ``python -m autograder grade-class``.

``run`` and ``ClassRun`` are imported when first used, so that a grader process
(``python -m autograder.classroom.server``) loads none of the rest.
"""

__all__ = ["run", "ClassRun"]


def __getattr__(name):
    if name in __all__:
        from . import classrun
        return getattr(classrun, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
