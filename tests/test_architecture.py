"""The layout shows the architecture: imports only go down docs/ARCHITECTURE.md's layers, nothing
imports in a cycle, the top of benchmark/ stays small, and no two product modules share a name."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"benchmark": ROOT / "benchmark", "benchmark_methods": ROOT / "methods",
            "benchmark_datasets": ROOT / "datasets", "benchmark_leaderboard": ROOT / "leaderboard"}
ALLOWED_CYCLES = [{"benchmark.sweep.executors", "benchmark.sweep.ray_executor"}]  # Ray, optional, loaded on demand


def modules() -> dict[str, Path]:
    found = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports anywhere in its file (a package's own __init__
    left out for its children)."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        type_only = {id(n) for block in ast.walk(tree) if is_type_checking_block(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in type_only:  # `if TYPE_CHECKING:` imports are annotations, never run
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name)
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def documented_layers() -> list[list[str]]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split("<!-- layers")[1].split("<!-- /layers -->")[0]
    rows = [line for line in table.splitlines() if re.match(r"\| \d", line)]
    return [re.findall(r"`([\w.]+)`", row.split("|")[2]) for row in rows]


def layer_of(module: str, layers: list[list[str]]) -> int:
    best = max(((len(p), i) for i, names in enumerate(layers) for p in names
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is in no layer of docs/ARCHITECTURE.md"
    return best[1]


def test_no_module_uses_relative_imports_that_the_graph_would_miss():
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), module


def test_every_import_goes_to_the_same_or_a_lower_documented_layer():
    layers = documented_layers()
    assert len(layers) >= 8
    upward = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps
              if layer_of(d, layers) > layer_of(m, layers)]
    assert upward == []


def strongly_connected(graph: dict[str, set[str]], nodes: list[str]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one member: the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                cycles.append(component)

    for v in nodes:
        if v not in index:
            visit(v)
    return cycles


def test_nothing_imports_in_a_cycle():
    cycles = strongly_connected(import_graph(), sorted(modules()))
    assert ALLOWED_CYCLES[0] in cycles  # the check sees the one cycle it allows
    assert [c for c in cycles if c not in ALLOWED_CYCLES] == []


def test_the_top_of_the_engine_is_small_and_every_subpackage_says_what_it_is_for():
    top = sorted(p.name for p in (ROOT / "benchmark").glob("*.py"))
    assert len([n for n in top if n != "__main__.py"]) <= 12, top
    for init in (ROOT / "benchmark").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 12, f"{init.parent.name}/ needs a docstring saying what it is for"


def test_no_two_product_modules_share_a_file_name():
    names = defaultdict(list)
    for path in modules().values():
        if path.name != "__init__.py":
            names[path.name].append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
