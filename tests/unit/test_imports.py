"""Data flows one way between the driver's and the CLI's modules: none imports one that imports it
back (lazy and TYPE_CHECKING imports count too: a cycle hidden in a function is still one)."""

from __future__ import annotations

import ast
import sys

from support import REPO

PACKAGES = ("driver", "cli")


def import_graph() -> dict[str, set[str]]:
    """``driver.x`` -> the project modules it imports, anywhere in its code."""
    modules = {f"{p}.{f.stem}": f for p in PACKAGES for f in sorted((REPO / p).glob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package if node.level == 1 else ""
                targets = (
                    [f"{base}.{node.module}"]
                    if node.module
                    else [f"{base}.{a.name}" for a in node.names]
                )
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memberlog."):
                module = node.module.removeprefix("memberlog.")  # type: ignore[union-attr]
                targets = [module, *(f"{module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("memberlog.") for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert "driver.options" in graph["driver.member"]  # the walk sees imports at all
    assert "driver.names" in graph["cli.main"]  # and the CLI's absolute ones
    assert cycles(graph) == []


if __name__ == "__main__":  # the edges and the verdict, for a report
    g = import_graph()
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges between them")
    for m in sorted(g):
        print(f"  {m} -> {', '.join(sorted(g[m])) or '-'}")
    print("import cycles:", cycles(g) or "none")
    sys.exit(1 if cycles(g) else 0)
