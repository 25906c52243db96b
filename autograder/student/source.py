"""The student's notebook as code: what its cells bind, define and call, and how messages name them.

Nothing here runs the notebook: the code of each cell is read with ``ast`` (after the worker's
``python_source``, which turns IPython magics into what the worker runs).

- ``bindings``, ``defined_functions``: the globals a cell binds, the functions it defines.
- ``loading_calls``, ``trains``: the calls that load a dataset or train, which an answer cell must
  not make; ``loading_problems`` reports them (``loads_data_or_trains``).
- ``Cells``: a notebook's cells with their roles and ids, named as the messages name them
  ("cell 9 (the answer cell of Exercise 1)").
"""

import ast

from .. import notebook as notebooks
from ..exercises import EXERCISES, Kind
from ..sandbox.worker import python_source
from .report import Problem

# Calls that load a dataset or train, which an answer cell must not make: the grader has no copy of
# the data, and training runs into the cell limit. load_data may be called by name or attribute;
# the others only as methods (model.fit), so that a student's own function named fit is not taken.
LOADING_FUNCTIONS = {"load_data"}
TRAINING_METHODS = {"fit", "fit_generator", "train_on_batch"}


# --- reading the notebook's code -------------------------------------------------------------------

def _parse(code: str):
    try:
        return ast.parse(python_source(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def bindings(code: str) -> set:
    """The global names a cell's code binds when it runs (assignments, defs, imports, loop and with
    targets...), not those bound inside its functions."""
    tree = _parse(code)
    names = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    if tree is not None:
        visit(tree)
    return names


def defined_functions(code: str) -> list:
    tree = _parse(code)
    return [] if tree is None else [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _called_name(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Name) and function.id in LOADING_FUNCTIONS:
        return function.id
    if isinstance(function, ast.Attribute) and function.attr in LOADING_FUNCTIONS | TRAINING_METHODS:
        return function.attr
    return None


def loading_calls(code: str, *, everywhere: bool) -> list:
    """[(name, line)] of the calls that load data or train. ``everywhere``: also inside function
    bodies (an answer cell's function runs when the grader calls it); otherwise only what runs when
    the cell runs: its top level and the bodies of its own functions that it calls there."""
    tree = _parse(code)
    if tree is None:
        return []
    if everywhere:
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    else:
        functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        nodes, stack, called = [], list(tree.body), set()
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) \
                    and not getattr(node, "_runs", False):
                continue
            if isinstance(node, ast.Call):
                nodes.append(node)
                name = node.func.id if isinstance(node.func, ast.Name) else None
                if name in functions and name not in called:
                    called.add(name)
                    functions[name]._runs = True
                    stack.append(functions[name])
            stack.extend(ast.iter_child_nodes(node))
    found = sorted({(name, node.lineno) for node in nodes if (name := _called_name(node))}, key=lambda f: f[1])
    return found


def trains(code: str) -> bool:
    return bool(loading_calls(code, everywhere=True))


# --- the notebook's cells, as the messages name them -------------------------------------------------

_ANSWERS = {e.function: (n, e) for n, e in enumerate(EXERCISES, start=1) if e.kind is not Kind.TRAINING}
_TESTS = {e.test_cell: (n, e) for n, e in enumerate(EXERCISES, start=1)}


class Cells:
    """A notebook's cells with their roles, ids and the globals each binds."""

    def __init__(self, notebook: notebooks.Notebook):
        self.cells = notebook.cells
        self.roles = [notebooks.role(c) for c in self.cells]
        self.ids = [notebooks.grade_id(c) if isinstance(c, dict) else "" for c in self.cells]
        self.codes = [notebooks.source(c) if role is not notebooks.Role.TEXT else ""
                      for c, role in zip(self.cells, self.roles, strict=True)]
        self.bound = [bindings(code) if code else set() for code in self.codes]

    def describe(self, index: int) -> str:
        """'cell 9 (the answer cell of Exercise 1)'."""
        return f"cell {index + 1} ({self.what(index)})"

    def what(self, index: int) -> str:
        role, cell_id = self.roles[index], self.ids[index]
        if role is notebooks.Role.SOLUTION:
            return f"the answer cell of Exercise {_ANSWERS[cell_id][0]}" if cell_id in _ANSWERS \
                else f"the answer cell {cell_id!r}"
        if role is notebooks.Role.TEST:
            return f"the visible test of Exercise {_TESTS[cell_id][0]}" if cell_id in _TESTS \
                else f"the test cell {cell_id!r}"
        if role is notebooks.Role.SETUP:
            return f"the locked set-up cell {cell_id!r}"
        if role is notebooks.Role.DEMO:
            return f"the demonstration cell {cell_id!r}"
        if role is notebooks.Role.ADDED:
            first = next((line.strip() for line in self.codes[index].splitlines() if line.strip()), "")
            first = first if len(first) <= 40 else first[:37] + "..."
            return f"a cell you added, starting {first!r}" if first else "a cell you added"
        return f"the text cell {cell_id!r}" if cell_id else "a text cell"

    def last(self, grade_id: str, role: notebooks.Role) -> int | None:
        """The last cell with this id and role (nbgrader keeps the last of duplicated ids)."""
        found = [i for i, (r, g) in enumerate(zip(self.roles, self.ids, strict=True)) if r is role and g == grade_id]
        return found[-1] if found else None

    def answer_cell(self, exercise) -> int | None:
        return self.last(exercise.function, notebooks.Role.SOLUTION)

    def test_cell(self, exercise) -> int | None:
        return self.last(exercise.test_cell, notebooks.Role.TEST)

    def binders(self, name: str) -> list:
        return [i for i, names in enumerate(self.bound) if name in names]


# --- answer cells and added cells that load data or train -----------------------------------------

def loading_problems(cells: Cells) -> dict:
    """{cell index: Problem} for the answer cells and added cells that load data or train."""
    found = {}
    for index, role in enumerate(cells.roles):
        if role not in (notebooks.Role.SOLUTION, notebooks.Role.ADDED):
            continue
        calls = loading_calls(cells.codes[index], everywhere=role is notebooks.Role.SOLUTION)
        if not calls:
            continue
        named = ", ".join(f"{name}() on line {line}" for name, line in calls)
        found[index] = Problem("loads_data_or_trains", index + 1, (
            f"{cells.describe(index)} calls {named}: the grader runs this cell with no dataset and "
            "a time limit, so it fails or runs out of time there; keep loading data and training in the "
            "notebook's demonstration cells: answer cells, and cells you add, should only define functions"))
    return found
