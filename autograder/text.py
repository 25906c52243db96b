"""Text that came from a student, made safe to keep and to show: bounded in length, with control
characters written out.

A check's message, a cell's error and a model's layer name can all hold what the student's code
chose: megabytes of it, or terminal escape sequences that redraw the line above as a fake "PASS".
Everything the grader keeps (results.json, grades.csv, feedback pages) and prints passes through
``bounded`` once, where the result is built, so no reader downstream needs to care.
"""

MESSAGE_CHARS = 4000            # a check's message, a cell's error: a few KB, whole sentences fit
SHORT_CHARS = 600               # one part of a message (a student's exception text)

# Control characters but newline and tab, which a message may use to lay itself out; DEL and C1 too.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029", 0x202E: "\\u202e", 0x202D: "\\u202d",
                 0x2066: "\\u2066", 0x2067: "\\u2067", 0x2068: "\\u2068", 0x2069: "\\u2069"})
# Lone surrogates: no UTF-8 encoder writes them, so a print or a file write of one would fail.
_CONTROL.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})


def escaped(text: str) -> str:
    """``text`` whole, its control characters written as visible escapes (for text that must not be
    cut, such as a CSV cell listing every student)."""
    return text.translate(_CONTROL)


def shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word's end, "..." marking the cut (a line
    of a report; the whole text is said elsewhere)."""
    if len(text) <= limit:
        return text
    cut = text[:max(0, limit - 3)]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "..."


def bounded(text, limit: int = MESSAGE_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters, its control characters (ESC,
    carriage return, bidirectional overrides...) written as visible escapes, never interpreted.
    Idempotent: a bounded text is returned unchanged, so a result read back (results.json) and
    bounded again is the same."""
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:  # noqa: BLE001 - an object whose __str__ fails is still shown
            text = f"<{type(text).__name__}>"
    shown = text[:limit + 1].translate(_CONTROL)      # escapes only lengthen it
    if len(shown) <= limit:
        return shown
    note = f"... (cut at {limit} characters)"
    return shown[:max(0, limit - len(note))] + note
