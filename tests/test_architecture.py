"""The import arrows of docs/architecture.md hold: they run one way (no cycle), the foundation
modules import nothing else from the package, and the book's reading path (report, figures) never
imports torch, so result pages execute in seconds."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "lcnn_core"
FOUNDATIONS = {"reference", "config", "provenance", "atomic", "checks", "linalg", "oracles"}


def module_name(path):
    return ".".join(path.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__") or "__init__"


def imports(path):
    """(package modules imported, top-level third-party packages imported) of one file."""
    here = module_name(path).split(".")
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + (path.name == "__init__.py")]
            if node.module:
                inside.add(".".join(base + node.module.split(".")))
            else:
                inside |= {".".join(base + [a.name]) for a in node.names if a.name != "__version__"}
        elif isinstance(node, ast.Import):
            outside |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            outside.add(node.module.split(".")[0])
    return {m for m in inside if m}, outside


GRAPH = {module_name(p): imports(p) for p in PKG.rglob("*.py")}


def test_the_import_graph_has_no_cycle():
    state = {}

    def visit(m, path):
        if state.get(m) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) == "done" or m not in GRAPH:
            return
        state[m] = "open"
        for t in sorted(GRAPH[m][0]):
            visit(t, path + [m])
        state[m] = "done"

    for m in sorted(GRAPH):
        visit(m, [])


def test_foundation_modules_import_nothing_else_from_the_package():
    for m in FOUNDATIONS:
        assert GRAPH[m][0] <= FOUNDATIONS, f"{m} imports {sorted(GRAPH[m][0] - FOUNDATIONS)}"


def test_the_reading_path_of_the_book_never_imports_torch():
    seen, todo = set(), ["report", "figures"]
    while todo:
        m = todo.pop()
        if m in seen or m not in GRAPH:
            continue
        seen.add(m)
        assert "torch" not in GRAPH[m][1], f"report needs torch through {m}"
        todo += GRAPH[m][0]
