"""Guard: every public name (every entry of every ``__all__`` in the package) is mentioned, as a
whole word, in at least one test file, and exists in the module that exports it.

Modules are found by walking the package, so a new module is covered as soon as it exists. A
mention is the weakest evidence of a test; the tests themselves must check behaviour. Names that
cannot be tested on their own (type aliases: names for types, no behaviour) are listed below with
the reason; everything else needs a test.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import functional_metarl

TESTS = Path(__file__).resolve().parent

# Names exempt from the guard, each with its reason. Keep this list short and explicit.
ALLOWED_UNMENTIONED = {
    "Params": "type alias (tree.Params = dict[str, Tensor]): no behaviour of its own",
    "Tree": "type alias (tree.Tree, any pytree): no behaviour of its own",
    "LossFn": "type alias (meta.supervised.LossFn, a loss callable's signature): no behaviour of its own",
    "TrainData": "type alias (meta.maml_rl.TrainData = RLBatch | tuple[RLBatch, ...]): no behaviour of its own",
    "__version__": "package metadata string, not an API",
}


def public_names() -> dict[str, list[str]]:
    """``name -> [modules whose __all__ lists it]`` over the package and all its submodules."""
    modules = [functional_metarl] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(functional_metarl.__path__, functional_metarl.__name__ + ".")
    ]
    names: dict[str, list[str]] = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            names.setdefault(name, []).append(module.__name__)
    return names


def _test_sources() -> str:
    """All test files but this one (which names the allow-list)."""
    return "\n".join(p.read_text() for p in sorted(TESTS.rglob("*.py")) if p.resolve() != Path(__file__).resolve())


def unmentioned(names, text: str) -> list[str]:
    """The names that occur in ``text`` nowhere as a whole word."""
    return sorted(n for n in names if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", text))


def test_unmentioned_finds_missing_names_and_only_whole_words():
    text = "from x import adapt_rl, Foo\nfoo_bar = 1\n"
    assert unmentioned(["adapt_rl", "Foo", "adapt", "foo", "bar", "__version__"], text) == ["__version__", "adapt", "bar", "foo"]


def test_every_exported_name_exists():
    missing = []
    for name, modules in public_names().items():
        for module in modules:
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"{module}.{name}")
    assert not missing, f"__all__ lists names the module does not define: {missing}"


def test_every_public_name_is_mentioned_in_a_test():
    names = public_names()
    assert len(names) > 100  # the walk found the package (a broken walk must not pass vacuously)
    stale = sorted(set(ALLOWED_UNMENTIONED) - set(names))
    assert not stale, f"allow-listed names that are no longer public (remove them): {stale}"
    missing = [n for n in unmentioned(names, _test_sources()) if n not in ALLOWED_UNMENTIONED]
    report = "\n".join(f"  {n}  (exported by {', '.join(names[n])})" for n in missing)
    assert not missing, f"public names that no test file mentions; add a test that checks each:\n{report}"
