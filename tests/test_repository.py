"""The repository's promises: CI runs the README's commands; run outputs are not committed."""

import ast
import re
from pathlib import Path

from conftest import REPO


def readme_block(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    install, test = readme_block("Install"), [line.split("#")[0].strip() for line in readme_block("Test")]
    assert install == ['pip install -e ".[test]"'] and test == ["pytest", "pytest -m slow"]
    assert install[0] in ci
    assert all(command in ci for command in test)  # the everyday suite and the long tests, both


def test_results_folder_ignores_run_outputs():
    ignore = (REPO / ".gitignore").read_text().splitlines()
    assert "results/*" in ignore and "!results/README.md" in ignore


PACKAGES = {"benchmark": REPO / "benchmark", "benchmark_methods": REPO / "methods",
            "benchmark_datasets": REPO / "datasets", "benchmark_leaderboard": REPO / "leaderboard"}


def module_files() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def imports_at_load(name: str, path, modules: set[str]) -> set[str]:
    """The project modules `name` imports when it is loaded (top level only: imports inside
    functions run later and cannot form a load-time cycle; `if TYPE_CHECKING:` blocks never run)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    anchor = package.split(".")[: len(package.split(".")) - sub.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found |= {f"{base}.{a.name}" for a in sub.names}
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles():
    files = module_files()
    graph = {name: imports_at_load(name, path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [name, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_imports_are_resolved_against_the_real_graph():
    """The cycle check sees real edges (a parser that found none would pass vacuously)."""
    files = module_files()
    assert imports_at_load("benchmark.data.prepared", files["benchmark.data.prepared"], set(files)) == {
        "benchmark.data.split", "benchmark.errors"}


def test_modules_stay_small():
    long = {name: n for name, path in module_files().items() if (n := len(path.read_text().splitlines())) > 300}
    assert not long, f"modules over 300 lines: {long}"
