"""The package's imports run one way: no module imports, at its top or inside a function,
a module that imports it back (directly or through others), nor a module of a later stage
than its own (the layer order in samplegan_tune/__init__.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import samplegan_tune
from samplegan_tune.core.moved import MOVED

PACKAGE = Path(__file__).parent.parent / "samplegan_tune"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            targets |= {n for n in names if n in modules and n != name}
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "samplegan_tune.tuning.search" in graph["samplegan_tune.tuning.final_fit"]
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_a_cycle_inside_a_function_is_found() -> None:
    """The check sees the imports hidden in function bodies (the two it was written for)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    source = ast.parse("def f():\n    from samplegan_tune.tuning.search import X\n")
    found = [n.module for n in ast.walk(source) if isinstance(n, ast.ImportFrom)]
    assert found == ["samplegan_tune.tuning.search"]


def layer(module: str) -> int:
    """The stage a module belongs to (its index in LAYERS); -1 for the package itself."""
    parts = module.split(".")
    return samplegan_tune.LAYERS.index(parts[1]) if len(parts) > 1 else -1


def test_imports_follow_the_layer_order() -> None:
    graph = import_graph()
    stray = [
        m for m in graph if m != "samplegan_tune" and m.split(".")[1] not in samplegan_tune.LAYERS
    ]
    assert not stray, f"modules outside every stage: {stray}"
    graph.pop("samplegan_tune")  # the package itself only installs the old names (core.moved)
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_a_module_of_the_old_flat_layout_imports_as_its_new_home() -> None:
    """Tune pickled our objects under the old paths: an experiment from before still loads."""
    for old, new in MOVED.items():
        module = importlib.import_module(f"samplegan_tune.{new}")
        assert importlib.import_module(f"samplegan_tune.{old}") is module, old
    from samplegan_tune.search import CollapseStopper  # what an old tuner.pkl names

    from samplegan_tune.tuning.search import CollapseStopper as now

    assert CollapseStopper is now
