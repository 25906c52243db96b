"""The released notebook's contract, as the check compares a student's notebook with it.

Only the release's nbgrader cells are kept: their ids, types, flags and points, nbgrader's
checksum, and the source of every locked cell (set-up cells, which the grader runs from the
release; visible test cells, which the check runs from the release; demonstrations and locked
instructions, which nbgrader's autograde restores). Answer cells keep no source. All of it is in
the notebook students already have: nothing here comes from the hidden checks.

In this project the contract is read from the released notebook, found as grading finds it
(``notebook.released_paths``). The student kit ships it as ``contract.json`` next to this module,
written when the kit is built (``kit.py``); that file, when present, wins.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import notebook as notebooks
from ..errors import NotebookUnreadable
from ..exercises import ASSIGNMENT_ID, NOTEBOOK_NAME
from ..sandbox import PACKAGE_DIR

CONTRACT_FILE = Path(__file__).with_name("contract.json")
FORMAT = 1


@dataclass(frozen=True)
class ContractCell:
    grade_id: str
    position: int              # 1-based, in the release (markdown cells counted)
    cell_type: str
    locked: bool
    solution: bool
    grade: bool
    points: float | None
    checksum: str | None       # nbgrader's, as the release records it
    source: str | None         # a locked cell's source; None for an answer cell

    def as_cell(self) -> dict:
        """The cell as a notebook cell dict (for notebook.role)."""
        meta = {"grade_id": self.grade_id, "locked": self.locked, "solution": self.solution, "grade": self.grade}
        return {"cell_type": self.cell_type, "source": self.source or "", "metadata": {"nbgrader": meta}}

    @property
    def role(self) -> notebooks.Role:
        return notebooks.role(self.as_cell())


@dataclass(frozen=True)
class Contract:
    cells: tuple               # ContractCell, in release order
    origin: str                # where it came from: the release's path, or "kit"
    digest: str                # sha256 of the cells, to tell a kit built for another release

    @property
    def by_id(self) -> dict:
        return {cell.grade_id: cell for cell in self.cells}

    def setup_sources(self) -> dict:
        """{grade_id: code} of the release's set-up cells, in order (what the grader runs instead
        of the student's copies)."""
        return {c.grade_id: c.source for c in self.cells if c.role is notebooks.Role.SETUP}

    def test_source(self, grade_id: str) -> str | None:
        cell = self.by_id.get(grade_id)
        return cell.source if cell is not None and cell.role is notebooks.Role.TEST else None

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME,
                           "digest": self.digest, "cells": [asdict(c) for c in self.cells]},
                          indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str = "kit") -> "Contract":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"contract format {data.get('format')!r}, expected {FORMAT}")
        cells = tuple(ContractCell(**cell) for cell in data["cells"])
        return cls(cells, origin, data["digest"])


def from_release(notebook: notebooks.Notebook, origin: str = "release") -> Contract:
    """The contract of a released notebook (read by notebook.read)."""
    cells = []
    for position, cell in enumerate(notebook.cells, start=1):
        meta = notebooks.nbgrader_metadata(cell)
        grade_id = notebooks.grade_id(cell)
        if not grade_id:
            continue
        locked = bool(meta.get("locked"))
        points = meta.get("points")
        cells.append(ContractCell(
            grade_id=grade_id, position=position, cell_type=str(cell.get("cell_type")), locked=locked,
            solution=bool(meta.get("solution")), grade=bool(meta.get("grade")),
            points=float(points) if meta.get("grade") and points is not None else None,
            checksum=meta.get("checksum"), source=notebooks.source(cell) if locked else None))
    digest = hashlib.sha256(json.dumps([asdict(c) for c in cells], sort_keys=True).encode()).hexdigest()
    return Contract(tuple(cells), origin, digest)


def release_path() -> Path | None:
    """The released notebook grading would use, or None."""
    return next((path for path in notebooks.released_paths(PACKAGE_DIR) if path.is_file()), None)


def load() -> Contract | None:
    """The kit's contract.json when there is one, else the release's; None when neither is found."""
    if CONTRACT_FILE.is_file():
        return Contract.from_json(CONTRACT_FILE.read_text(encoding="utf-8"))
    path = release_path()
    if path is None:
        return None
    try:
        return from_release(notebooks.read(path), origin=str(path))
    except NotebookUnreadable:
        return None
