"""align_trainer's modules import each other without cycles (issue 23: layers point down). The graph is built
from the source with ast: every `import` and `from ... import` that runs, at module level or inside a function
(a lazy import is still a dependency); only `if TYPE_CHECKING:` blocks are left out (annotations, never run)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "trainer_image" / "align_trainer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def imports(path: Path, modules: set[str]) -> set[str]:
    """The align_trainer modules `path` imports (`from pkg import name`: pkg.name when that is a module, else pkg)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in node.orelse:  # the else branch runs
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` depends on the submodule; on pkg itself only for names that are not modules
            subs = [f"{target}.{a.name}" for a in node.names]
            found.update(c for c in subs if c in modules)
            if target in modules and not all(c in modules for c in subs):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {name}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imports(path, set(paths)) for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_trainer_import_graph_is_acyclic() -> None:
    edges = graph()
    assert len(edges) > 40 and "align_trainer.runtime" in edges["align_trainer.main"]  # the graph is real
    found = cycles(edges)
    assert not found, "import cycles in align_trainer:\n" + "\n".join(
        " <-> ".join(c) + "\n  " + "; ".join(f"{m} -> {sorted(edges[m] & set(c))}" for m in c) for c in found)


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_lower_layers_do_not_import_higher_ones() -> None:
    """The leaf types import nothing of align_trainer; graders never import the evaluation or the runtime."""
    edges = graph()
    assert edges["align_trainer.contracts"] == set() and edges["align_trainer.inference"] == set()
    for name, targets in edges.items():
        if name.startswith("align_trainer.graders"):
            assert not {t for t in targets if t.startswith(("align_trainer.evaluation", "align_trainer.runtime"))}, \
                (name, targets)
