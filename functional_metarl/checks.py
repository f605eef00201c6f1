"""Argument checks for public entry points: one line each, one error format everywhere.

Every public function and config of the package validates its inputs once, at its boundary,
with these helpers; internal helpers trust their inputs. Each check returns the value it
accepted (so ``n = checks.positive_int(n, "n")`` reads as an assignment) and raises

* :class:`ArgumentTypeError` when the value is of the wrong kind (a float where an index is
  meant, a string or a bool where a number is meant, a number where a flag is meant): a
  ``TypeError`` that is also a ``ValueError``, so a caller that catches bad settings with
  ``except ValueError`` (a command line turning them into a usage error) catches these too;
* ``ValueError`` when it is of the right kind but out of range (non-finite, negative, not 0/1,
  a shape that would only broadcast);

with a message that names the argument, what was expected and what came.

Tensor *value* checks (:func:`binary_mask`, :func:`index_tensor`, :func:`finite_tensor`) read the
tensor on the host: call them where data enters (a batch builder, a replay buffer's ``add``),
never inside a step that runs every iteration on an accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeVar

import optree
import torch

__all__ = [
    "ArgumentTypeError",
    "positive_int",
    "non_negative_int",
    "int_in_range",
    "number",
    "positive_number",
    "non_negative_number",
    "probability",
    "flag",
    "one_of",
    "instance",
    "function",
    "tensor",
    "floating_tensor",
    "integer_tensor",
    "binary_mask",
    "index_tensor",
    "finite_tensor",
    "same_shape",
    "same_structure",
    "params_dict",
]

T = TypeVar("T")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (see the module docstring)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an int (not a bool) ``>= 1``."""
    return int_in_range(value, name, low=1)


def non_negative_int(value: object, name: str) -> int:
    """``value`` if it is an int (not a bool) ``>= 0``."""
    return int_in_range(value, name, low=0)


def int_in_range(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) with ``low <= value <= high`` (``None``: unbounded)."""
    if not _is_int(value):
        raise ArgumentTypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an int in {_interval(low, high, True, True)}, got {value}")
    return value  # type: ignore[return-value]


def number(value: object, name: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float if it is a finite int or float (not a bool) in the given interval.

    ``low`` / ``high``: bounds (``None``: unbounded); ``low_open`` / ``high_open``: exclude them.
    """
    if not _is_number(value):
        raise ArgumentTypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    x = float(value)  # type: ignore[arg-type]
    ok = math.isfinite(x)
    if ok and low is not None:
        ok = x > low if low_open else x >= low
    if ok and high is not None:
        ok = x < high if high_open else x <= high
    if not ok:
        raise ValueError(f"{name} must be a finite number in {_interval(low, high, not low_open, not high_open)}, "
                         f"got {value!r}")
    return x


def positive_number(value: object, name: str) -> float:
    """``value`` as a float if it is finite and ``> 0``."""
    return number(value, name, low=0.0, low_open=True)


def non_negative_number(value: object, name: str) -> float:
    """``value`` as a float if it is finite and ``>= 0``."""
    return number(value, name, low=0.0)


def probability(value: object, name: str) -> float:
    """``value`` as a float if it lies in ``[0, 1]``."""
    return number(value, name, low=0.0, high=1.0)


def flag(value: object, name: str) -> bool:
    """``value`` if it is a bool: a string such as ``"false"`` or a number is refused, not read as true."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})")
    return value


def one_of(value: T, name: str, choices: Collection[Any]) -> T:
    """``value`` if it is one of ``choices`` (compared with ``==``); a value of none of the
    choices' types (a number where names are meant, a bool where numbers are) is a wrong kind."""
    if not any(type(value) is type(c) for c in choices):
        raise ArgumentTypeError(f"{name} must be one of {tuple(choices)!r}, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)!r}, got {value!r}")
    return value


def instance(value: T, name: str, types: type | tuple[type, ...]) -> T:
    """``value`` if it is an instance of ``types``."""
    if not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        article = "an" if expected[0].lower() in "aeiou" else "a"
        raise ArgumentTypeError(f"{name} must be {article} {expected}, got {type(value).__name__}")
    return value


def function(value: T, name: str, signature: str = "") -> T:
    """``value`` if it is callable; ``signature`` (e.g. ``"(params, batch) -> loss"``) goes in the message."""
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be a callable {signature}".rstrip() + f", got {type(value).__name__}")
    return value


def tensor(value: object, name: str, *, ndim: int | None = None, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``value`` if it is a Tensor, with exactly ``ndim`` axes / exactly ``shape`` when given.

    ``shape`` entries of ``-1`` match any size; nothing is allowed to broadcast.
    """
    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {tuple(value.shape)}")
    if shape is not None and (value.ndim != len(shape) or any(s not in (-1, v) for s, v in zip(shape, value.shape))):
        wanted = str(tuple(shape)) if -1 not in shape else "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ")"
        raise ValueError(f"{name} expected shape {wanted}, got {tuple(value.shape)}")
    return value


def floating_tensor(value: object, name: str, **shape: Any) -> torch.Tensor:
    """:func:`tensor` with a floating-point dtype."""
    x = tensor(value, name, **shape)
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point Tensor, got dtype {x.dtype}")
    return x


def integer_tensor(value: object, name: str, **shape: Any) -> torch.Tensor:
    """:func:`tensor` with an integer dtype (an index or a count, never a float that would be truncated)."""
    x = tensor(value, name, **shape)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must be an integer Tensor, got dtype {x.dtype}")
    return x


def binary_mask(value: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` if every entry is 0 or 1 (any dtype). Reads the tensor on the host."""
    if not bool(((value == 0) | (value == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1, got values such as {_bad_example(value)}")
    return value


def index_tensor(value: torch.Tensor, name: str, size: int) -> torch.Tensor:
    """``value`` if it is an integer Tensor with entries in ``[0, size)``. Reads the tensor on the host."""
    integer_tensor(value, name)
    if value.numel() and (int(value.min()) < 0 or int(value.max()) >= size):
        raise ValueError(f"{name} must hold indices in [0, {size}), got values in "
                         f"[{int(value.min())}, {int(value.max())}]")
    return value


def finite_tensor(value: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` if it has no NaN or infinity. Reads the tensor on the host."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got non-finite entries (NaN or infinity)")
    return value


def same_shape(value: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """``value`` if its shape equals ``like``'s exactly (no broadcasting)."""
    if value.shape != like.shape:
        raise ValueError(f"{name} expected shape {tuple(like.shape)} (as {like_name}), got {tuple(value.shape)}")
    return value


def same_structure(value: T, name: str, like: Any, like_name: str) -> T:
    """``value`` if it is a tree with ``like``'s structure (keys) and leaf shapes."""
    if isinstance(value, dict) and isinstance(like, dict) and set(value) != set(like):
        raise ValueError(f"{name} must have the keys of {like_name}: keys differ, missing "
                         f"{sorted(set(like) - set(value), key=str)}, unexpected {sorted(set(value) - set(like), key=str)}")
    leaves, spec = optree.tree_flatten(value)
    like_leaves, like_spec = optree.tree_flatten(like)
    if spec != like_spec:
        raise ValueError(f"{name} must have the structure of {like_name}: expected {like_spec}, got {spec}")
    for i, (a, b) in enumerate(zip(leaves, like_leaves)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            path = optree.tree_paths(like)[i]
            raise ValueError(f"{name}{_path(path)} expected shape {tuple(b.shape)} (as {like_name}), got {tuple(a.shape)}")
    return value


def params_dict(value: T, name: str) -> T:
    """``value`` if it is a non-empty ``dict[str, Tensor]`` of floating-point tensors (a params dict)."""
    if not isinstance(value, dict) or not value:
        raise ArgumentTypeError(f"{name} must be a non-empty dict[str, Tensor], got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, torch.Tensor):
            raise ArgumentTypeError(f"{name}[{k!r}] must be a Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise ArgumentTypeError(f"{name}[{k!r}] must be floating point, got {v.dtype}")
    return value


def _path(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p!r}]" for p in path)


def _interval(low: float | None, high: float | None, low_closed: bool, high_closed: bool) -> str:
    left = "(-inf" if low is None else ("[" if low_closed else "(") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + ("]" if high_closed else ")")
    return f"{left}, {right}"


def _bad_example(mask: torch.Tensor) -> list[float]:
    bad = mask[(mask != 0) & (mask != 1)]
    return [float(x) for x in bad.flatten()[:3]]

