"""The one notebook reader: a handed-in file -> a v4 notebook without outputs, with each cell's role.

Everything that reads a submission (grade-class's intake, the grader, the pool, the cluster, the
nbgrader bridge) reads it here, so a fault is reported the same way everywhere: one
``NotebookUnreadable`` with one message per fault, written for the student.

A v4 notebook is used as parsed, after a structural check of its cells: nbformat's import
(jsonschema's format checkers) costs about 2 s of a grader process's start, so nbformat is
imported only to convert older versions. Outputs and attachments are dropped as soon as the JSON
is parsed: the grader needs only the code, and huge outputs then cost nothing further.

Cell roles (nbgrader metadata): a solution cell holds an answer; a test cell (graded, or with an
exercise's test grade_id) is the visible test, which the grader never runs; a locked cell whose
grade_id starts with ``demo_`` is a demonstration the grader never runs; every other locked code
cell is the instructor's set-up, which the grader runs from the released notebook's source. A code
cell without nbgrader metadata is one the student added.
"""

import json
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import NotebookUnreadable
from .exercises import ASSIGNMENT_ID, BY_TEST_CELL, NOTEBOOK_NAME

MAX_NOTEBOOK_BYTES = 100 << 20     # the largest notebook read; with many plots one is a few MB
BIG_NOTEBOOK_NOTE = 5 << 20        # say that outputs were removed above this size
DEMO_CELL_PREFIX = "demo_"         # locked demonstrations (plots, the training race): never run
PROJECT_DIR = Path(__file__).resolve().parent.parent    # this project, whose release/ ships with the grader


class Role(str, Enum):
    SETUP = "setup"          # locked code: the instructor's, run from the release
    SOLUTION = "solution"    # the student's answer
    TEST = "test"            # a visible test cell: the grader has its own checks
    DEMO = "demo"            # a locked demonstration
    ADDED = "added"          # a code cell the student added
    TEXT = "text"            # markdown and raw cells


@dataclass
class Notebook:
    """A submission as the grader uses it: v4 cells without outputs, and notes on what was done."""
    cells: list
    version: int = 4                             # the nbformat version it was handed in as
    notes: list = field(default_factory=list)    # "converted from nbformat v3 to v4", ...

    def to_json(self) -> str:
        """The notebook as a v4 .ipynb document (for a copy the grader writes)."""
        return json.dumps({"cells": self.cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
                          ensure_ascii=False)


# --- reading ---------------------------------------------------------------------------------------

def read(source, *, name: str | None = None) -> Notebook:
    """A handed-in notebook (a path, or its bytes) as a Notebook; NotebookUnreadable saying why not."""
    raw = read_bytes(source, name)
    if not raw.strip():
        raise NotebookUnreadable("the notebook file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotebookUnreadable("the file is not UTF-8 text; is it really a .ipynb notebook?") from None
    size = len(raw)
    del raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookUnreadable(f"the notebook is not valid JSON (truncated or corrupted?): {e}") from None
    except RecursionError:
        raise NotebookUnreadable("the file is not a Jupyter notebook (its JSON is nested too deeply)") from None
    del text
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise NotebookUnreadable("the file is JSON but not a Jupyter notebook")
    version = data.get("nbformat")
    for cell in _all_cells(data):
        _strip(cell)
    notes = [] if version == 4 else [f"converted from nbformat v{version} to v4"]
    cells = _v4_cells(data) if version == 4 else _converted_cells(data)
    if size > BIG_NOTEBOOK_NOTE:
        notes.append(f"outputs removed before grading (the notebook was {size / 2**20:.0f} MB)")
    return Notebook(cells, version if isinstance(version, int) else 0, notes)


def read_bytes(source, name: str | None = None) -> bytes:
    """A handed-in file's bytes, at most MAX_NOTEBOOK_BYTES of them; NotebookUnreadable otherwise."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_NOTEBOOK_BYTES:
                raise NotebookUnreadable(f"the notebook is {size / 2**20:.0f} MB, more than the "
                                         f"{MAX_NOTEBOOK_BYTES >> 20} MB that is read")
            data = path.read_bytes()
        except OSError as exc:
            raise NotebookUnreadable(f"cannot read {name or path.name}: {exc.strerror}") from None
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookUnreadable(f"the notebook is {len(data) / 2**20:.0f} MB, more than the "
                                 f"{MAX_NOTEBOOK_BYTES >> 20} MB that is read")
    return data


def _all_cells(data: dict) -> list:
    """Every cell dict of a v4 notebook, or of a v3 one's worksheets."""
    cells = list(data["cells"]) if isinstance(data.get("cells"), list) else []
    for sheet in data.get("worksheets") or []:
        if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list):
            cells += sheet["cells"]
    return [c for c in cells if isinstance(c, dict)]


def _strip(cell: dict) -> None:
    """Outputs, execution counts and attachments removed: the grader needs only the code."""
    if "outputs" in cell:
        cell["outputs"] = []
    if cell.get("cell_type") == "code":
        cell["execution_count"] = None
    cell.pop("attachments", None)


def _v4_cells(data: dict) -> list:
    """A v4 notebook's cells as parsed, after the check nbformat's schema would have made of them."""
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise NotebookUnreadable("a damaged notebook: its cells are not a list")
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise NotebookUnreadable(f"a damaged notebook: cell {number} is not a notebook cell")
        text = cell.get("source", "")
        if not (isinstance(text, str) or (isinstance(text, list) and all(isinstance(line, str) for line in text))):
            raise NotebookUnreadable(f"a damaged notebook: cell {number}'s source is not text")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookUnreadable(f"a damaged notebook: cell {number}'s metadata is not a mapping")
    return cells


def _converted_cells(data: dict) -> list:
    """An older notebook's cells, converted to v4 by nbformat (imported only here: see above)."""
    import nbformat  # noqa: PLC0415
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as e:  # nbformat raises many kinds for damaged notebooks
        raise NotebookUnreadable(f"a damaged notebook: {type(e).__name__}: {e}") from None
    for cell in converted.cells:
        _strip(cell)
    return json.loads(json.dumps(converted.cells))


# --- cells and their roles -------------------------------------------------------------------------

def nbgrader_metadata(cell) -> dict:
    """A cell's nbgrader metadata ({} for a plain cell, or a damaged one)."""
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str:
    """The cell's nbgrader grade_id, "" when it has none."""
    return str(nbgrader_metadata(cell).get("grade_id", ""))


def source(cell) -> str:
    """A cell's text; a damaged cell (source not text) has none."""
    text = cell.get("source", "")
    if isinstance(text, list) and all(isinstance(line, str) for line in text):
        return "".join(text)
    return text if isinstance(text, str) else ""


def role(cell) -> Role:
    if not isinstance(cell, dict) or cell.get("cell_type") != "code":
        return Role.TEXT
    meta = nbgrader_metadata(cell)
    cell_id = str(meta.get("grade_id", ""))
    if cell_id.startswith(DEMO_CELL_PREFIX):
        return Role.DEMO
    if meta.get("grade") or cell_id in BY_TEST_CELL:
        return Role.TEST
    if meta.get("solution"):
        return Role.SOLUTION
    if meta.get("locked"):
        return Role.SETUP
    return Role.ADDED


def cells_to_run(notebook: Notebook, setup_sources=None) -> list:
    """[(cell index, code)] the grader runs, in notebook order: solution cells, cells the student
    added and set-up cells; never demo or test cells. Cells are chosen by role, not position, so
    deleted, duplicated or moved cells still run. A set-up cell whose grade_id is in
    ``setup_sources`` runs the instructor's source instead of its own."""
    run = []
    for index, cell in enumerate(notebook.cells):
        kind = role(cell)
        if kind in (Role.TEXT, Role.DEMO, Role.TEST):
            continue
        code = source(cell)
        if kind is Role.SETUP and setup_sources and grade_id(cell) in setup_sources:
            code = setup_sources[grade_id(cell)]
        if code.strip():
            run.append((index, code))
    return run


def setup_sources(notebook: Notebook) -> dict:
    """{grade_id: code} of a notebook's set-up cells, in notebook order."""
    return {grade_id(c): source(c) for c in notebook.cells if role(c) is Role.SETUP}


def release_path(course) -> Path:
    """release/batchnorm/batchnorm.ipynb of the course folder ``course``: where nbgrader's
    ``generate_assignment`` writes the released (student) notebook."""
    return Path(course) / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME


def released_paths(course=None) -> list:
    """Where the released notebook may be, first found first used: the release of the course folder
    ``course`` when given, then the working directory's (the course folder grade-class and nbgrader
    run in), then the one that ships with the grader (this project's release/)."""
    folders = ([Path(course)] if course is not None else []) + [Path.cwd(), PROJECT_DIR]
    paths = [release_path(folder) for folder in folders]
    return [path for n, path in enumerate(paths) if path not in paths[:n]]


def released_notebook(course=None) -> Path | None:
    """The released notebook's path (``released_paths``: the course's, else this project's), or None."""
    return next((path for path in released_paths(course) if path.is_file()), None)


_released_setup = {}


def instructor_setup_cells() -> dict:
    """{grade_id: code} of the released notebook's set-up cells ({} when none is found).

    A student's copy of a locked cell is only as locked as their editor: the grader runs these
    sources in place of the submission's (nbgrader autograde restores locked cells the same way,
    from its database), so that a set-up cell's failure can be told apart from the student's own."""
    for path in released_paths():
        key = str(path)
        if key not in _released_setup:
            try:
                _released_setup[key] = setup_sources(read(path)) if path.is_file() else {}
            except NotebookUnreadable:
                _released_setup[key] = {}
        if _released_setup[key]:
            return _released_setup[key]
    return {}
