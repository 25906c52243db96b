"""The released notebook's contract, as the check compares a student's notebook with it.

Only the release's nbgrader cells are kept: their ids, types, flags and points, nbgrader's
checksum, and the source of every locked cell (set-up cells, which the grader runs from the
release; visible test cells, which the check runs from the release; demonstrations and locked
instructions, which nbgrader's autograde restores). Answer cells keep no source. All of it is in
the notebook students already have: nothing here comes from the hidden checks.

In this project the contract is read from the released notebook, found as grading finds it
(``notebook.released_notebook``). The student kit ships it as ``contract.json`` next to this module,
written when the kit is built (``kit.py``); that file, when present, wins.

``locked_cell_problems`` compares a student's notebook with the contract: what nbgrader's autograde
would overwrite or refuse (``changed_locked_cell``).
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import notebook as notebooks
from ..errors import NotebookUnreadable
from ..exercises import ASSIGNMENT_ID, NOTEBOOK_NAME
from .report import Problem
from .source import Cells

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


def load() -> Contract | None:
    """The kit's contract.json when there is one, else the release's; None when neither is found."""
    if CONTRACT_FILE.is_file():
        return Contract.from_json(CONTRACT_FILE.read_text(encoding="utf-8"))
    path = notebooks.released_notebook()
    if path is None:
        return None
    try:
        return from_release(notebooks.read(path), origin=str(path))
    except NotebookUnreadable:
        return None


# --- a student's notebook against the contract ------------------------------------------------------

def locked_cell_problems(notebook: notebooks.Notebook, contract, cells: Cells) -> list:
    """What nbgrader's autograde would overwrite or refuse, compared with the release's cells."""
    if contract is None:
        return []
    released = contract.by_id
    problems, seen = [], {}
    for index, cell in enumerate(notebook.cells):
        meta = notebooks.nbgrader_metadata(cell) if isinstance(cell, dict) else {}
        if not meta:
            continue
        cell_id = cells.ids[index]
        if not cell_id:
            if any(meta.get(flag) for flag in ("solution", "grade", "locked")):
                problems.append(Problem("changed_locked_cell", index + 1, (
                    f"cell {index + 1} has nbgrader metadata without a grade_id, so nbgrader cannot tell which "
                    "cell it is; its metadata is damaged: copy the cell's code into a fresh copy of the release")))
            continue
        seen.setdefault(cell_id, []).append(index)
        if cell_id not in released:
            problems.append(Problem("changed_locked_cell", index + 1, (
                f"{cells.describe(index)} has the cell id {cell_id!r}, which the released notebook does not have "
                "(copied from another notebook, or its metadata edited); nbgrader drops that id: if it is your "
                "answer, move its code into the answer cell it belongs to")))
            continue
        original = released[cell_id]
        changes = []
        if str(cell.get("cell_type")) != original.cell_type:
            changes.append(f"its type is {cell.get('cell_type')}, not {original.cell_type}")
        for flag in ("locked", "solution", "grade"):
            if bool(meta.get(flag)) != getattr(original, flag):
                changes.append(f"its nbgrader flag {flag!r} is {bool(meta.get(flag))}, not {getattr(original, flag)}")
        if original.grade and _points(meta.get("points")) != original.points:
            changes.append(f"its points are {meta.get('points')!r}, not {original.points:g}")
        if original.checksum and meta.get("checksum") not in (None, original.checksum):
            changes.append("its nbgrader checksum was changed")
        if original.locked and notebooks.source(cell) != original.source:
            what = "a visible test" if original.grade else "a locked cell"
            problems.append(Problem("changed_locked_cell", index + 1, (
                f"{cells.describe(index)} was edited, but it is {what}: the grader uses the release's version, "
                "so your change is lost (and an answer written there is not graded); undo the edit: copy the "
                "cell back from a fresh copy of the release")))
        if changes:
            problems.append(Problem("changed_locked_cell", index + 1, (
                f"{cells.describe(index)}: {'; '.join(changes)}; nbgrader restores or refuses such a cell: "
                "undo it (copy the cell back from a fresh copy of the release, then your code into it)")))
    for cell_id, indices in seen.items():
        if len(indices) > 1 and cell_id in released:
            numbers = ", ".join(str(i + 1) for i in indices)
            problems.append(Problem("changed_locked_cell", indices[0] + 1, (
                f"cells {numbers} all have the cell id {cell_id!r} (a cell copied with its metadata); nbgrader "
                f"keeps the id on the last one only: keep one cell with this id, and make the copy a plain "
                "cell (delete it and add a new cell, then paste its code)")))
    present = {cells.ids[i] for i in range(len(cells.ids))}
    if released and not present & set(released):
        problems.append(Problem("changed_locked_cell", None, (
            "the notebook has none of the released notebook's cell ids: it is not the released "
            f"{NOTEBOOK_NAME}, or a program removed its nbgrader metadata; start from a fresh copy of the "
            "release and paste your answers into its answer cells")))
        return problems
    for cell_id, original in released.items():
        if cell_id not in present:
            kind = {notebooks.Role.SOLUTION: "answer cell", notebooks.Role.TEST: "visible test cell"}.get(
                original.role, "locked cell" if original.locked else "cell")
            problems.append(Problem("changed_locked_cell", None, (
                f"the {kind} {cell_id!r} (cell {original.position} of the release) was deleted; nbgrader "
                "grades by cell id: copy it back from a fresh copy of the release, in the same place")))
    return problems


def _points(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
