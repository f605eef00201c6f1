"""What the supervised meta-learning entry points share: the loss signature and the check of a
meta-batch of tasks (``meta.maml_loss`` and the learners of ``meta.supervised`` call it once, at
their boundary, outside anything vmapped)."""

from __future__ import annotations

from typing import Any, Callable

import optree
import torch

from ..tree import Params

__all__ = ["LossFn", "check_task_batches"]

LossFn = Callable[[Params, Any], torch.Tensor]
"""``loss_fn(params, batch) -> 0-d Tensor``: one task's loss."""


def check_task_batches(support: Any, query: Any) -> tuple[int, int, int]:
    """Check a meta-batch and return ``(tasks, K_support, K_query)``.

    Leaves must be tensors ``[tasks, K, *feature]``: floating-point leaves (inputs, regression
    targets) need at least one feature axis (a scalar per point is ``[tasks, K, 1]``), so data
    without its task axis (``[K, 1]``) is refused instead of being read as ``K`` one-point tasks;
    integer / bool leaves (class labels) may be ``[tasks, K]``. Support and query must have the
    same structure, the same task count, the same feature shapes and dtypes; K >= 1 on both sides.
    Raises ``ValueError`` / ``TypeError`` naming what was expected and what came.
    """
    s_leaves, s_spec = optree.tree_flatten(support)
    q_leaves, q_spec = optree.tree_flatten(query)
    if not s_leaves:
        raise ValueError("support batch has no tensors")
    if s_spec != q_spec:
        raise ValueError(f"support and query must have the same structure, got {s_spec} and {q_spec}")
    sizes = {}
    for side, leaves in (("support", s_leaves), ("query", q_leaves)):
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, torch.Tensor):
                raise TypeError(f"{side} leaf {i} must be a Tensor, got {type(leaf).__name__}")
            min_dims = 3 if leaf.is_floating_point() or leaf.is_complex() else 2
            if leaf.ndim < min_dims:
                expected = "[tasks, K, *feature] (a scalar per point is [tasks, K, 1])" if min_dims == 3 else "[tasks, K, ...]"
                raise ValueError(
                    f"{side} leaf {i} expected shape {expected}, got {tuple(leaf.shape)}; "
                    "is the leading task axis missing?"
                )
        tasks = {leaf.shape[0] for leaf in leaves}
        ks = {leaf.shape[1] for leaf in leaves}
        if len(tasks) != 1 or len(ks) != 1:
            raise ValueError(
                f"{side} leaves must share [tasks, K, ...], got shapes {[tuple(x.shape) for x in leaves]}"
            )
        sizes[side] = (tasks.pop(), ks.pop())
    (t_s, k_s), (t_q, k_q) = sizes["support"], sizes["query"]
    if t_s != t_q:
        raise ValueError(f"support has {t_s} tasks but query has {t_q}")
    if t_s < 1:
        raise ValueError("a meta-batch needs at least one task, got 0")
    if k_s < 1 or k_q < 1:
        raise ValueError(f"K must be >= 1 on both sides, got K_support={k_s}, K_query={k_q}")
    for i, (s, q) in enumerate(zip(s_leaves, q_leaves)):
        if s.shape[2:] != q.shape[2:] or s.dtype != q.dtype:
            raise ValueError(
                f"support and query leaf {i} disagree: {tuple(s.shape)} {s.dtype} vs {tuple(q.shape)} {q.dtype}"
                " (they may differ only in K, axis 1)"
            )
    return t_s, k_s, k_q
