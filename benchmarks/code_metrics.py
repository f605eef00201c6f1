"""Size and shape of the package's code: the numbers issue 24 asks for before and after.

    python benchmarks/code_metrics.py                          # this checkout
    python benchmarks/code_metrics.py /path/to/other/checkout  # e.g. a worktree of an older commit

Prints, for ``functional_metarl`` under each root: the longest module and function (lines), the
number of functions over 60 lines, the number of ``raise`` statements, and the lines of
``runners/`` and ``meta/``. Lines are physical lines of the source files, blank lines and
docstrings included.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def metrics(root: Path) -> dict[str, object]:
    """The numbers for the package under ``root``."""
    package = root / "functional_metarl"
    if not package.is_dir():
        raise SystemExit(f"code_metrics.py: error: no functional_metarl package under {root}")
    modules, functions, raises = {}, {}, 0
    for path in sorted(package.rglob("*.py")):
        name = str(path.relative_to(root))
        source = path.read_text()
        modules[name] = len(source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[f"{name}:{node.name}"] = node.end_lineno - node.lineno + 1
            elif isinstance(node, ast.Raise):
                raises += 1
    longest_module = max(modules, key=modules.get)
    longest_function = max(functions, key=functions.get)
    return {
        "longest module": f"{longest_module} ({modules[longest_module]} lines)",
        "longest function": f"{longest_function} ({functions[longest_function]} lines)",
        "functions over 60 lines": sum(n > 60 for n in functions.values()),
        "raise statements": raises,
        "lines of runners/": sum(n for m, n in modules.items() if "/runners/" in m),
        "lines of meta/": sum(n for m, n in modules.items() if "/meta/" in m),
        "lines of the package": sum(modules.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=[ROOT], help="checkouts to measure (default: this one)")
    for root in parser.parse_args().roots:
        print(f"{root}:")
        for key, value in metrics(root).items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
