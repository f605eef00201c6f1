"""The package's import graph: no cycle anywhere, and no private name imported across modules.

What two modules share is public in a small module that owns it; a module that reaches into
another's ``_private`` helpers, or two modules that import each other (even lazily, inside a
function), fail here. The graph is read from the source with ``ast``, so lazy imports count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import functional_metarl as fm

PACKAGE = Path(fm.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None]]:
    """``(imported module, imported name or None)`` for every import of ``module`` into the package."""
    path = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            if not target.startswith("functional_metarl"):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                out.append((submodule, None) if submodule in MODULES else (target, alias.name))
        elif isinstance(node, ast.Import):
            out.extend((a.name, None) for a in node.names if a.name.startswith("functional_metarl"))
    return out


def test_no_private_name_is_imported_from_another_module():
    offenders = [f"{module} imports {name} from {target}"
                 for module in MODULES for target, name in _imports(module)
                 if name is not None and name.startswith("_") and not name.startswith("__") and target != module]
    assert not offenders, "\n".join(offenders)


def test_no_import_cycle():
    graph = {m: sorted({t for t, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}
    # A package's __init__ gathers its submodules; a submodule importing its own package's
    # __init__ back would close a cycle, and so would any longer loop.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_reader_sees_imports():
    # The checks above would pass on an empty graph: make sure the reader finds real edges.
    edges = _imports("functional_metarl.meta.meta_steps")
    assert ("functional_metarl.meta.surrogates", "MetaGradient") in edges
    assert ("functional_metarl.checks", None) in edges
