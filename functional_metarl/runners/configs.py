"""Runner configs from plain mappings (a YAML file, a JSON ``metrics.json``), checked on load.

:func:`config_from_dict` builds any config dataclass (a :class:`~functional_metarl.runners.RunConfig`
subclass, and the dataclasses nested in it such as ``MAMLConfig.trpo``) from a mapping and
refuses, before anything runs:

* an **unknown key** (``ValueError`` naming the key path, e.g. ``trpo.max_kll``, and listing the
  allowed keys);
* a **wrong type** (``TypeError`` naming the key path, the value and the expected type): a bool
  is not an int, a string is not a number, a float is not an int (``iterations: 2.0``); an int
  where a float is expected is taken as that float; a list stands for a tuple;
* an **out-of-range value** (the config's own ``__post_init__`` check, re-raised with the key path
  and the value in front of its message, which says what is allowed).

:func:`load_yaml` reads a YAML file with a resolver for ``1e-3``-style floats (PyYAML's YAML 1.1
rules read them as strings).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

__all__ = ["config_from_dict", "load_yaml"]

C = TypeVar("C")

_NAMES = {bool: "a bool", int: "an int", float: "a number", str: "a string", dict: "a mapping"}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-3`` and ``5e+4`` (no dot) as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``1e-3`` read as a float).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not valid YAML or does not hold a mapping (naming the path).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def config_from_dict(config_class: type[C], values: dict[str, Any], path: str = "") -> C:
    """``config_class(**values)``, checked key by key (see the module docstring).

    Args:
        config_class: a dataclass, e.g. ``runners.MAMLConfig``.
        values: its settings as plain values (nested dataclasses as nested mappings, tuples as
            lists); missing keys keep their defaults.
        path: the key path of ``values`` in a larger document (``"trpo"``), for messages.

    Returns:
        The config instance.

    Raises:
        ValueError: an unknown key, a missing required key or an out-of-range value.
        TypeError: a value of the wrong type, or ``values`` not a mapping.
    """
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"config_class must be a dataclass type, got {config_class!r}")
    where = path or config_class.__name__
    if not isinstance(values, dict):
        what = f"config key {path!r}" if path else "the config"
        raise TypeError(f"{what} must be a mapping of {config_class.__name__} settings, got {values!r} "
                        f"({type(values).__name__})")
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        key = _join(path, unknown[0])
        raise ValueError(f"unknown config key {key!r} (in {where}); allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(config_class)
    kwargs = {name: _convert(value, hints[name], _join(path, name)) for name, value in values.items()}
    missing = sorted(name for name, f in fields.items() if name not in kwargs and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ValueError(f"config key {_join(path, missing[0])!r} is required (in {where})")
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as error:
        name = _field_named(str(error), fields)
        if name is None:
            message = f"{where}: {error}"
        elif name in kwargs:
            message = f"config key {_join(path, name)!r} = {kwargs[name]!r}: {error}"
        else:  # a default that another setting rules out (e.g. switch_goal_at past iterations)
            message = f"config key {_join(path, name)!r} (default {_default(fields[name])!r}): {error}"
        try:
            raised = type(error)(message)
        except Exception:  # an exception type that does not take one message
            raised = TypeError(message) if isinstance(error, TypeError) else ValueError(message)
        raise raised from None


def _default(field: Any) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field_named(message: str, fields: dict[str, Any]) -> str | None:
    """The field a ``__post_init__`` message is about: the one its first word names (``hidden[0] ...``)."""
    match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", message)
    return match.group(1) if match and match.group(1) in fields else None


def _convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (a dataclass from a mapping, tuples from lists), or TypeError."""
    origin = typing.get_origin(hint)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except TypeError as error:
                errors.append(error)
        allowed = " or ".join(_describe(o) for o in options)
        raise TypeError(f"config key {key!r} must be {allowed}, got {value!r} ({type(value).__name__})")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return config_from_dict(hint, value, key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {key!r} must be {_describe(hint)}, got {value!r} ({type(value).__name__})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise TypeError(f"config key {key!r} must be {_describe(hint)}, got {value!r} ({len(value)} entries)")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))) if args else tuple(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"config key {key!r} must be a mapping, got {value!r} ({type(value).__name__})")
        return dict(value)
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {key!r} must be a list, got {value!r} ({type(value).__name__})")
        return list(value)
    if hint is Any:
        return value
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True  # an annotation this loader does not know: the config's own checks decide
    if not ok:
        raise TypeError(f"config key {key!r} must be {_describe(hint)}, got {value!r} ({type(value).__name__})")
    return value


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {hint.__name__} settings"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))
