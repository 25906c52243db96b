"""``python -m autograder export <platform> [options]``: the file a platform imports, one module per platform.

* ``export canvas``: the gradebook CSV Canvas imports, filled in from grades.csv (canvas.py);
* ``export gradescope``: the autograder zip Gradescope runs (gradescope_export.py).

Each module has ``main(argv)``; this one only picks it.
"""

import importlib
import sys

PLATFORMS = {
    "canvas": ("autograder.platforms.canvas", "the gradebook CSV Canvas imports, filled in from grades.csv"),
    "gradescope": ("autograder.platforms.gradescope_export", "the autograder zip Gradescope runs"),
}


def usage() -> str:
    lines = ["usage: python -m autograder export <platform> [options]", "", "platforms:"]
    lines += [f"  {name:<12} {summary}" for name, (_, summary) in PLATFORMS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in PLATFORMS:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(usage(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    name = PLATFORMS[argv[0]][0]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        print(f"export {argv[0]}: not available in this installation ({name} is missing)", file=sys.stderr)
        return 2
    return module.main(argv[1:]) or 0
