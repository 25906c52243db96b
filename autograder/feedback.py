"""Per-student feedback pages built from a results document: what passed, what failed and why, the points.

The page shows, per exercise (with its title), each check's outcome, its points and the message the
grader wrote for the student. It never shows a hidden check's code, its id or its expected values:
the only text taken from the checks is the rows' ``message``. Everything a student can influence
(their id, the messages, which may quote their output or exception text) is HTML-escaped.
"""

import html
from pathlib import Path

from . import results
from .exercises import EXERCISES

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
.summary { font-size: 1.15rem; margin: .4rem 0 1.2rem; }
.error { background: #fdecea; border-left: 4px solid #c0392b; padding: .6rem .9rem; margin: 1rem 0; }
.note { background: #eef4fb; border-left: 4px solid #2e6fb5; padding: .5rem .9rem; margin: 1rem 0; }
section { border-top: 1px solid #ddd; padding-top: .4rem; margin-top: 1rem; }
h2 { font-size: 1.15rem; display: flex; justify-content: space-between; }
ul { list-style: none; padding-left: 0; }
li { margin: .35rem 0; display: flex; gap: .6rem; }
.mark { font-weight: bold; width: 1.2rem; flex: none; }
.pass .mark { color: #1e8449; } .fail .mark { color: #c0392b; }
.pts { color: #555; flex: none; width: 6.5rem; }
.msg { white-space: pre-wrap; word-break: break-word; }
"""


HEADING = "<h1>Batch Normalization: feedback</h1>"     # also how grade-class recognises its own pages


def _esc(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def render(result: dict, *, student: str = "", message: str = "") -> str:
    """The feedback page (a complete HTML document) for one results document."""
    checks = list(result.get("checks") or [])
    by_exercise = {}
    for row in checks:
        by_exercise.setdefault(row.get("exercise"), []).append(row)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Batch Normalization feedback{(' - ' + _esc(student)) if student else ''}</title>",
        f"<style>{_CSS}</style></head><body>",
        HEADING,
    ]
    if student:
        parts.append(f"<p>Student: <strong>{_esc(student)}</strong></p>")
    parts.append(f'<p class="summary">Score: <strong>{results.format_points(result.get("total", 0))}</strong> '
                 f'/ {results.format_points(result.get("max_total", 0))} points</p>')
    if result.get("status") == "error":
        parts.append('<div class="error"><strong>Your notebook could not be graded.</strong> '
                     f'<span class="msg">{_esc(result.get("error") or "unknown reason")}</span>'
                     + (" This is a problem on the grader's side, not in your notebook: it will be graded again."
                        if result.get("error_side") == "grader" else "") + '</div>')
    if message:
        parts.append(f'<div class="note msg">{_esc(message)}</div>')

    groups = [(e.id, e.title, e.points) for e in EXERCISES]
    known = {e.id for e in EXERCISES}
    others = [ex for ex in by_exercise if ex not in known]
    groups += [(ex, "Other checks", None) for ex in others]
    for exercise_id, title, points in groups:
        rows = by_exercise.get(exercise_id, [])
        got = sum(float(r.get("points", 0)) for r in rows)
        out_of = sum(float(r.get("max_points", 0)) for r in rows) if rows else (points or 0)
        parts.append("<section>")
        parts.append(f"<h2><span>{_esc(title)}</span><span>{results.format_points(got)} / {results.format_points(out_of)} points</span></h2>")
        if not rows:
            parts.append("<p>No checks ran for this exercise.</p>")
        else:
            parts.append("<ul>")
            for r in rows:
                ok = bool(r.get("passed"))
                msg = r.get("message") or ("passed" if ok else "failed")
                parts.append(
                    f'<li class="{"pass" if ok else "fail"}">'
                    f'<span class="mark">{"&#10003;" if ok else "&#10007;"}</span>'
                    f'<span class="pts">{results.format_points(r.get("points", 0))} / {results.format_points(r.get("max_points", 0))}</span>'
                    f'<span class="msg">{_esc(msg)}</span></li>')
            parts.append("</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(result: dict, path, *, student: str = "", message: str = "") -> Path:
    """Render and write the feedback page for ``result`` to ``path`` (atomically)."""
    results.write_atomic(render(result, student=student, message=message), path)
    return Path(path)
