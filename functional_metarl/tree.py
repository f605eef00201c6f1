"""Pytree helpers over optree.

A *tree* here is any nesting of dict / list / tuple / NamedTuple with tensors at the leaves;
in practice it is a params dict ``{name: Tensor}``. Every helper is pure and out of place,
so it can sit inside ``torch.func.grad`` / ``vmap`` / ``torch.compile``.
"""

from __future__ import annotations

from typing import Any, Callable

import optree
import torch

from . import checks

Tree = Any
Params = dict[str, torch.Tensor]

__all__ = [
    "Params",
    "Tree",
    "tree_map",
    "tree_add",
    "tree_sub",
    "tree_scale",
    "tree_axpy",
    "tree_dot",
    "tree_norm",
    "tree_zeros_like",
    "tree_detach",
    "tree_size",
    "ravel",
    "check_params",
]

# torch.func already understands dict/list/tuple/NamedTuple; optree does too with
# namespace="" (its default registry), so we use plain optree calls throughout.


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf-wise over one or more trees of the same structure."""
    return optree.tree_map(fn, tree, *rest, none_is_leaf=False)


def tree_add(a: Tree, b: Tree) -> Tree:
    """``a + b`` leaf-wise. ``b`` must have ``a``'s structure (keys) and leaf shapes: nothing broadcasts."""
    checks.same_structure(b, "b", a, "a")
    return tree_map(torch.add, a, b)


def tree_sub(a: Tree, b: Tree) -> Tree:
    """``a - b`` leaf-wise; same structure and leaf shapes, as :func:`tree_add`."""
    checks.same_structure(b, "b", a, "a")
    return tree_map(torch.sub, a, b)


def tree_scale(tree: Tree, scalar: float | torch.Tensor) -> Tree:
    """``scalar * tree`` leaf-wise."""
    return tree_map(lambda x: x * scalar, tree)


def tree_axpy(alpha: float | torch.Tensor, x: Tree, y: Tree) -> Tree:
    """``alpha * x + y`` leaf-wise (the BLAS name); same structure and leaf shapes, as :func:`tree_add`."""
    checks.same_structure(y, "y", x, "x")
    return tree_map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_dot(a: Tree, b: Tree) -> torch.Tensor:
    """Sum over leaves of ``<a_leaf, b_leaf>``; a 0-d tensor. Same structure and leaf shapes, as
    :func:`tree_add` (a missing key or a leaf that would broadcast is refused, not summed over)."""
    checks.same_structure(b, "b", a, "a")
    leaves = [torch.sum(x * y) for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b))]
    return torch.stack(leaves).sum()


def tree_norm(tree: Tree) -> torch.Tensor:
    """Global Euclidean norm over all leaves; a 0-d tensor."""
    return torch.sqrt(tree_dot(tree, tree))


def tree_zeros_like(tree: Tree) -> Tree:
    """Zeros shaped like every leaf of ``tree``."""
    return tree_map(torch.zeros_like, tree)


def tree_detach(tree: Tree) -> Tree:
    """Every leaf detached from autograd (a stop-gradient; works under torch.func transforms)."""
    return tree_map(torch.Tensor.detach, tree)


def tree_size(tree: Tree) -> int:
    """Total number of scalars over all leaves."""
    return sum(x.numel() for x in optree.tree_leaves(tree))


def ravel(tree: Tree) -> tuple[torch.Tensor, Callable[[torch.Tensor], Tree]]:
    """Flatten a tree to one 1-D vector and return ``(flat, unravel)``.

    ``unravel(flat)`` rebuilds a tree of the original structure, shapes and order; it is
    differentiable (views of one vector), which TRPO needs for its flat search direction.
    """
    leaves, spec = optree.tree_flatten(tree)
    shapes = [leaf.shape for leaf in leaves]
    sizes = [leaf.numel() for leaf in leaves]
    flat = torch.cat([leaf.reshape(-1) for leaf in leaves]) if leaves else torch.zeros(0)

    def unravel(vector: torch.Tensor) -> Tree:
        if vector.ndim != 1 or vector.shape[0] != sum(sizes):
            raise ValueError(
                f"unravel expected a 1-D vector of length {sum(sizes)}, got shape {tuple(vector.shape)}"
            )
        chunks = torch.split(vector, sizes)
        return optree.tree_unflatten(spec, [c.reshape(s) for c, s in zip(chunks, shapes)])

    return flat, unravel


def check_params(params: Any, expected: dict[str, torch.Size], where: str) -> None:
    """Raise if ``params`` is not a dict with exactly the expected keys and shapes.

    Shapes must match exactly; a stack of per-task params goes through ``vmap``, under which
    each leaf shows its per-task shape.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{where}: expected params as dict[str, Tensor], got {type(params).__name__}")
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{where}: params keys do not match the network; missing {missing}, unexpected {extra}"
        )
    for name, shape in expected.items():
        value = params[name]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}: params[{name!r}] must be a Tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{where}: params[{name!r}] expected shape {tuple(shape)}, got {tuple(value.shape)}")
