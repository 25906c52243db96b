"""The package's shape: no import cycle, the worker stands alone, tests share helpers through conftest."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autograder"
TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set:
    """Every autograder module ``path`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("autograder")}


def _graph() -> dict:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    return {name: {m for m in _imports(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_module_of_the_package_imports_itself_back():
    graph = _graph()
    # A package's __init__ importing its own submodules is not a cycle of jobs; leave those edges out.
    edges = {a: {b for b in deps if not (a + ".").startswith(b + ".")} for a, deps in graph.items()}
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_sandboxed_worker_files_import_nothing_from_the_package():
    graph = _graph()
    for module in ("autograder.sandbox.worker", "autograder.sandbox.confine"):
        assert not graph[module], f"{module} runs inside the sandbox, where the package is hidden: {graph[module]}"


def test_tests_share_helpers_through_conftest_not_each_other():
    test_modules = {p.stem for p in TESTS.glob("test_*.py")}
    for path in TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & test_modules, f"{path.name} imports {imported & test_modules}"


def test_the_results_and_the_settings_are_leaves():
    graph = _graph()
    # results.py: the check catalogue is passed in (Result.failed(checks=...)), never collected here
    assert graph["autograder.results"] <= {"autograder.errors", "autograder.text", "autograder.exercises",
                                           "autograder.provenance"}, graph["autograder.results"]
    assert "pytest" not in (PACKAGE / "results.py").read_text()
    # settings.py: the student's kit carries it; only the sandbox's Limits
    assert graph["autograder.settings"] <= {"autograder.sandbox"}, graph["autograder.settings"]
