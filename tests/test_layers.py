"""The packages are layers (README, "Layout"): every import of the project's code, read with `ast`
(those inside functions too; not those under `if TYPE_CHECKING:`, which never run)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("harness", "baseline", "cluster")
# package -> the project's packages it may import (the lower layers)
MAY_IMPORT = {"harness": {"harness", "baseline", "cluster"}, "baseline": {"baseline"}, "cluster": {"cluster"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)
    return found


def imports_of(name: str) -> set[str]:
    """The project's modules that module `name` imports, but the packages it is inside (their
    __init__ is imported before it in any case)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                wanted.add(target)
    return wanted


GRAPH = {name: imports_of(name) for name in MODULES}


def test_packages_import_only_the_layers_below_them():
    wrong = sorted((name, target) for name, targets in GRAPH.items() for target in targets
                   if target.split(".")[0] not in MAY_IMPORT[name.split(".")[0]])
    assert wrong == []


def test_only_the_driver_picks_an_executor_and_no_executor_imports_the_driver():
    users = sorted(name for name, targets in GRAPH.items() if not name.startswith("harness.executors")
                   and any(t.startswith("harness.executors") for t in targets))
    assert users == ["harness.run"]
    assert not any(t in ("harness.run", "harness.api") for name, targets in GRAPH.items()
                   if name.startswith("harness.executors") for t in targets)


def test_no_module_imports_one_that_imports_it_back():
    cycles, state = [], {}  # state: 1 while on the walk's path, 2 once done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name, [name])
    assert cycles == []
    assert GRAPH["harness.run"] and "harness.executors" in GRAPH["harness.run"]  # the walk sees imports
