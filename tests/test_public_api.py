"""Habits of the public API, checked: every name in every module's ``__all__`` exists, and every
public function, class and public method has a docstring and type annotations.

A NamedTuple's auto-generated docstring (``Name(field, ...)``) does not count as one.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import functional_metarl as fm


def _public_modules() -> list[ModuleType]:
    modules = [fm]
    for info in pkgutil.walk_packages(fm.__path__, "functional_metarl."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


MODULES = _public_modules()


def _public_objects():
    """(qualified name, object) for every class and function named in some module's __all__,
    each once, under the module that defines it."""
    seen: dict[int, tuple[str, object]] = {}
    for module in MODULES:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(seen.values(), key=lambda item: item[0])


OBJECTS = _public_objects()


def _unannotated(fn, skip_first: bool) -> list[str]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1 if skip_first else 0:]
    missing = [p.name for p in params
               if p.annotation is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
        missing.append("return")
    return missing


@pytest.mark.parametrize("module", MODULES, ids=[m.__name__ for m in MODULES])
def test_all_names_exist(module):
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"{module.__name__}.__all__ names {name!r}, which the module lacks"


def test_every_subpackage_is_exported_from_the_top():
    for name in ("envs", "meta", "nn", "optim", "rl", "runners", "tree"):
        assert name in fm.__all__


def _problems(qualname: str, obj: object) -> list[str]:
    problems = []
    doc = (obj.__doc__ or "").strip()
    if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
        problems.append(f"{qualname}: no docstring")
    if inspect.isfunction(obj):
        missing = _unannotated(obj, skip_first=False)
        if missing:
            problems.append(f"{qualname}: unannotated {missing}")
        return problems
    for name, member in vars(obj).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        if not (member.__doc__ or "").strip():
            problems.append(f"{qualname}.{name}: no docstring")
        missing = _unannotated(member, skip_first=not isinstance(inspect.getattr_static(obj, name), staticmethod))
        if missing:
            problems.append(f"{qualname}.{name}: unannotated {missing}")
    return problems


@pytest.mark.parametrize("qualname,obj", OBJECTS, ids=[q for q, _ in OBJECTS])
def test_public_name_has_docstring_and_annotations(qualname, obj):
    problems = _problems(qualname, obj)
    assert not problems, "\n".join(problems)


def test_the_walk_sees_the_whole_library():
    # a guard on the guard: the walk must find the core entry points
    names = {q for q, _ in OBJECTS}
    for expected in ("functional_metarl.meta.maml.maml_loss", "functional_metarl.envs.rollout.rollout",
                     "functional_metarl.meta.meta_steps.trpo", "functional_metarl.nn.core.Functional"):
        assert expected in names
    assert len(OBJECTS) > 150
