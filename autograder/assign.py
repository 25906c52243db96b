"""``python -m autograder assign``: regenerate release/ and solutions/ from source/.

* ``release/batchnorm/batchnorm.ipynb`` is what students get: ``nbgrader generate_assignment``
  run from the repository root (so nbgrader_config.py applies) replaces solution bodies by the
  stub and removes the hidden-test blocks.
* ``solutions/batchnorm/batchnorm.ipynb`` is the worked notebook for instructors: the source
  with the solution markers and hidden-test blocks removed (the solution code stays), without
  nbgrader metadata, executed top to bottom so it keeps its plots and measured numbers.

Written answers (exercises.WRITTEN_ANSWERS) are nbgrader's manually graded answer cells: markdown,
``solution`` and ``grade`` with points. Their model answer and mark scheme are both inside the
solution region, the mark scheme between nbgrader's mark-scheme delimiters
(``=== BEGIN MARK SCHEME ===`` / ``=== END MARK SCHEME ===``; ``ClearMarkScheme`` matches
"BEGIN MARK SCHEME" anywhere in a line). nbgrader 0.9's ``ClearMarkScheme`` accepts a mark scheme
only in a *task* cell (``task: true``, "Manually graded task"): in any other cell it stops
generate_assignment ("Mark scheme region detected in a non-grade cell"). Inside the solution region,
``ClearSolutions`` (which runs first) replaces the model answer and the mark scheme together with
the text stub, so the release has neither; ``generate_release`` then refuses a release in which a
mark scheme or a written answer's model text survived. The solutions notebook keeps both (for
instructors), without the delimiter lines.

``--verify`` regenerates nothing and exits 1 naming the generated files that no longer match
source/ (outputs are not compared); ``--check``, its old name, is a hidden alias. ``--fast``
executes the solutions with BN_ASSIGNMENT_FAST=1; such a notebook is for trying things out, never
for committing: the committed one is executed with the full training budget (its metadata records
which budget was used).
"""

import argparse
import copy
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from .errors import ReleaseFailed
from .exercises import ASSIGNMENT_ID, BY_ANSWER_CELL, NOTEBOOK_NAME, UNANSWERED
from .notebook import release_path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path("source") / ASSIGNMENT_ID / NOTEBOOK_NAME
RELEASE = release_path(".")          # relative to a course folder: release/batchnorm/batchnorm.ipynb
SOLUTIONS = Path("solutions") / ASSIGNMENT_ID / NOTEBOOK_NAME

FAST_ENV = "BN_ASSIGNMENT_FAST"
CELL_TIMEOUT = 600  # seconds per cell when executing the solutions
KERNEL = "python3"
# Recorded in the solutions notebook's metadata: which training budget produced its outputs.
METADATA_KEY = "batchnorm_assignment"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
# nbgrader's ClearMarkScheme delimiters (its defaults), in the form nbgrader's documentation uses in markdown
BEGIN_MARK_SCHEME, END_MARK_SCHEME = "=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ==="
MARK_SCHEME_WORDS = ("BEGIN MARK SCHEME", "END MARK SCHEME")       # what ClearMarkScheme looks for in a line


# --------------------------------------------------------------------------------------------
# Solutions

def strip_cell_source(source: str, keep_mark_scheme: bool = True) -> str:
    """A cell's source without solution-marker lines, mark-scheme delimiter lines and hidden-test
    blocks (solution code and model answers kept; mark schemes too, unless ``keep_mark_scheme`` is
    False: then a written answer reads as a student who answered well would write it)."""
    kept, hidden, marking = [], False, False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN_HIDDEN:
            hidden = True
        elif marker == END_HIDDEN:
            hidden = False
        elif MARK_SCHEME_WORDS[0] in line:
            marking = not keep_mark_scheme
        elif MARK_SCHEME_WORDS[1] in line:
            marking = False
        elif not hidden and not marking and marker not in (BEGIN_SOLUTION, END_SOLUTION):
            kept.append(line)
    return "\n".join(kept).rstrip()


def solutions_notebook(repo_root=REPO_ROOT, keep_nbgrader_metadata=False, keep_mark_scheme=True):
    """The source notebook turned into the (not yet executed) solutions notebook."""
    nb = nbformat.read(Path(repo_root) / SOURCE, as_version=4)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.source = strip_cell_source(cell.source, keep_mark_scheme)
        if not keep_nbgrader_metadata:
            cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def kernel_env(fast: bool) -> dict:
    """The environment of an executing kernel: quiet TensorFlow, training budget set explicitly."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if fast:
        env[FAST_ENV] = "1"
    else:
        env.pop(FAST_ENV, None)
    return env


def execute_notebook(nb, cwd, fast=False, timeout=CELL_TIMEOUT, allow_errors=False):
    """Run ``nb`` in place in a fresh python3 kernel started in ``cwd``; return it."""
    from nbclient import NotebookClient  # noqa: PLC0415  (only needed when executing)

    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=kernel_env(fast))
    return nb


def write_solutions(repo_root=REPO_ROOT, fast=False) -> Path:
    """Build, execute and write solutions/batchnorm/batchnorm.ipynb; ReleaseFailed if a cell fails."""
    from nbclient.exceptions import CellExecutionError  # noqa: PLC0415

    repo_root = Path(repo_root)
    target = repo_root / SOLUTIONS
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = solutions_notebook(repo_root)
    try:
        execute_notebook(nb, cwd=target.parent, fast=fast)
    except CellExecutionError as error:
        raise ReleaseFailed(f"executing the solutions notebook failed:\n{error}") from error
    nb.metadata[METADATA_KEY] = {"training_budget": "fast" if fast else "full"}
    nbformat.validate(nb)
    nbformat.write(nb, target)
    return target


# --------------------------------------------------------------------------------------------
# Release

def nbgrader(course, *args: str) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in the course folder ``course`` with this Python, its output captured
    (stdout and stderr as one); ReleaseFailed with the end of its output when it fails."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
               # nbgrader's gradebook runs the `alembic` script by name, from this Python's bin folder
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise ReleaseFailed(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    return done


def leaked_marking(nb) -> list:
    """The grade_ids (or positions) of the released cells that still hold marking text: a mark
    scheme's delimiters, or a written answer's cell holding anything but nbgrader's text stub."""
    stub = UNANSWERED.strip()
    leaked = []
    for number, cell in enumerate(nb.cells, start=1):
        name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {number}"
        if any(word in cell.source for word in MARK_SCHEME_WORDS) \
                or (name in BY_ANSWER_CELL and cell.source.strip() != stub):
            leaked.append(name)
    return leaked


def generate_release(course_dir=REPO_ROOT) -> Path:
    """Run ``nbgrader generate_assignment`` in ``course_dir``; return the released notebook.
    ReleaseFailed when marking text survived into it (``leaked_marking``)."""
    course_dir = Path(course_dir)
    done = nbgrader(course_dir, "generate_assignment", ASSIGNMENT_ID, "--force")
    released = course_dir / RELEASE
    if not released.is_file():
        raise ReleaseFailed(f"nbgrader generate_assignment {ASSIGNMENT_ID} --force wrote no {released}:\n"
                            f"{done.stdout[-4000:]}")
    # Only the notebook belongs in release/ (nbgrader copies whatever else is in source/).
    for leftover in released.parent.iterdir():
        if leftover != released:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    leaked = leaked_marking(nbformat.read(released, as_version=4))
    if leaked:
        released.unlink()
        raise ReleaseFailed(f"the release would show marking text (a mark scheme or a model answer) in: "
                            f"{', '.join(leaked)}; keep each inside its cell's solution region")
    return released


# --------------------------------------------------------------------------------------------
# Staleness

def _release_signature(nb):
    return [(cell.cell_type, cell.source, cell.metadata.get("nbgrader")) for cell in nb.cells]


def _solutions_signature(nb):
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def _read(path: Path):
    return nbformat.read(path, as_version=4) if path.is_file() else None


_fresh_releases = {}     # digest of nbgrader_config.py and source/ -> signature of the release they generate


def _fresh_release_signature(repo_root: Path):
    """The signature of the release that ``nbgrader generate_assignment`` makes from repo_root's
    nbgrader_config.py and source/, in a temporary course folder; generated once per process for
    the same files (it takes seconds)."""
    inputs = [repo_root / "nbgrader_config.py",
              *sorted(p for p in (repo_root / SOURCE.parent).rglob("*")
                      if p.is_file() and ".ipynb_checkpoints" not in p.parts)]
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.relative_to(repo_root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    key = digest.hexdigest()
    if key not in _fresh_releases:
        with tempfile.TemporaryDirectory(prefix="bn-assign-") as tmp:
            course = Path(tmp)
            shutil.copy2(repo_root / "nbgrader_config.py", course / "nbgrader_config.py")
            shutil.copytree(repo_root / SOURCE.parent, course / SOURCE.parent,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            _fresh_releases[key] = _release_signature(_read(generate_release(course)))
    return _fresh_releases[key]


def stale_outputs(repo_root=REPO_ROOT) -> list:
    """The generated notebooks (paths relative to repo_root) that no longer match source/.

    release/ is stale when generating it afresh, in a temporary course folder, gives different
    cell types, sources or nbgrader metadata; solutions/ when its cell types and sources differ
    from the stripped source. Outputs are not compared. A missing file is stale.
    """
    repo_root = Path(repo_root)
    stale = []
    committed = _read(repo_root / RELEASE)
    if committed is None or _release_signature(committed) != _fresh_release_signature(repo_root):
        stale.append(RELEASE.as_posix())
    committed = _read(repo_root / SOLUTIONS)
    if committed is None or \
            _solutions_signature(committed) != _solutions_signature(solutions_notebook(repo_root)):
        stale.append(SOLUTIONS.as_posix())
    return stale


# --------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder assign",
        description="Regenerate release/ (nbgrader generate_assignment) and solutions/ (executed) "
                    "from source/.")
    parser.add_argument("--verify", action="store_true",
                        help="regenerate nothing; exit 1 and name the generated files that are stale")
    # the flag's old name (make check-release used it; so may habits), kept working but not shown
    parser.add_argument("--check", dest="verify", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--release-only", action="store_true",
                        help="regenerate release/ only (no notebook execution)")
    parser.add_argument("--fast", action="store_true",
                        help=f"execute the solutions with {FAST_ENV}=1 (a few seconds of training); "
                             "do not commit the result")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    try:
        if args.verify:
            stale = stale_outputs(REPO_ROOT)
            for path in stale:
                print(f"stale: {path}")
            if stale:
                print("run `python -m autograder assign` to regenerate")
                return 1
            print("release/ and solutions/ match source/")
            return 0

        released = generate_release(REPO_ROOT)
        print(f"wrote {released.relative_to(REPO_ROOT)}")
        if not args.release_only:
            budget = f"fast budget, {FAST_ENV}=1: do not commit it" if args.fast else "full training budget"
            print(f"executing the solutions notebook ({budget}) ...", flush=True)
            solutions = write_solutions(REPO_ROOT, fast=args.fast)
            print(f"wrote {solutions.relative_to(REPO_ROOT)}")
    except ReleaseFailed as error:
        print(error, file=sys.stderr)
        return 1
    return 0
