"""The pages' jinja2 templates (feedback.html, report.html, similarity.html), from one environment.

Autoescaping is on: everything a student wrote that a page shows (names, messages, code) is escaped.
"""

import functools


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2  # noqa: PLC0415 - only the pages need it
    return jinja2.Environment(loader=jinja2.PackageLoader("autograder", "templates"),
                              autoescape=True, keep_trailing_newline=True)


@functools.lru_cache(maxsize=8)
def template(name: str):
    """The template ``name`` (e.g. "feedback.html"), compiled once per process."""
    return _environment().get_template(name)
