"""Model-agnostic meta-learning (Finn et al. 2017) as pure functions.

``adapt`` runs the inner loop of one task; ``maml_loss`` is the meta-objective for a batch of
tasks, vmapped over the task axis. Differentiating ``maml_loss`` with ``torch.func.grad`` gives
the exact second-order meta-gradient (grad through grad); ``first_order=True`` stops the inner
gradient, which gives first-order MAML.

Argument order, as everywhere in the library: ``(params, data..., components..., *, settings)``
-- what is differentiated first, then the data, then the pure functions that define the
computation (losses, optimizers, policies), then keyword-only settings such as ``steps``.

These are the building blocks under the supervised learners (``meta.maml()`` and its family),
which add compilation, chunking and Meta-SGD / ANIL bookkeeping on top.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import optree
import torch
from torch.func import grad, vmap

from .. import checks
from ..optim import GradientTransformation, apply_updates
from ..tree import Params, tree_detach

__all__ = ["LossFn", "adapt", "adapt_sequence", "maml_loss", "meta_gradient", "check_task_batches"]

LossFn = Callable[[Params, Any], torch.Tensor]
"""``loss_fn(params, batch) -> 0-d Tensor``: one task's loss."""


def _check_parts(loss_fn: object, inner_opt: object) -> None:
    checks.function(loss_fn, "loss_fn", "loss_fn(params, batch) -> loss")
    checks.instance(inner_opt, "inner_opt", GradientTransformation)


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





def adapt(
    params: Params,
    batch: Any,
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
    opt_state: Any = None,
) -> Params:
    """``steps`` inner updates of ``params`` on ``loss_fn(params, batch)`` (one task, unbatched).

    Args:
        params: the initial params (``dict[str, Tensor]``).
        batch: one task's data, whatever ``loss_fn`` reads (e.g. ``RegressionBatch(x [K, 1], y [K, 1])``).
        loss_fn: ``loss_fn(params, batch) -> 0-d Tensor``.
        inner_opt: an ``optim`` ``(init, update)`` pair; its state carries across the steps.
        steps: number of inner updates (>= 1).
        first_order: treat each inner gradient as a constant (first-order MAML).
        opt_state: the inner optimizer's starting state; default ``inner_opt.init(params)``. Pass
            it to meta-learn it (Meta-SGD's step sizes).

    Returns:
        The adapted params, same keys and shapes; differentiable in ``params`` and ``opt_state``.
    """
    return adapt_sequence(params, [batch] * checks.positive_int(steps, "steps"), loss_fn, inner_opt,
                          first_order=first_order, opt_state=opt_state)


def adapt_sequence(
    params: Params,
    batches: Sequence[Any],
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    *,
    first_order: bool = False,
    opt_state: Any = None,
) -> Params:
    """One inner update per element of ``batches``, in order (one task, unbatched).

    For RL, where step ``k`` must learn from episodes of the policy adapted ``k`` times
    (pytorch-maml-rl's multi-step MAML); ``adapt`` is this with one batch repeated. The batches
    are data: the dependence of later episodes on the earlier updates is not differentiated.
    The inner optimizer's state is threaded through the steps (Adam's moments, step counts).
    """
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Sequence) or len(batches) < 1:
        raise ValueError(f"batches must be a non-empty sequence (one batch per inner step), got {type(batches).__name__}")
    _check_parts(loss_fn, inner_opt)
    checks.flag(first_order, "first_order")
    state = inner_opt.init(params) if opt_state is None else opt_state
    for batch in batches:
        grads = grad(loss_fn)(params, batch)
        if first_order:
            grads = tree_detach(grads)
        updates, state = inner_opt.update(grads, state, params)
        params = apply_updates(params, updates)
    return params


def maml_loss(
    params: Params,
    train_batches: Any,
    valid_batches: Any,
    inner_loss: LossFn,
    outer_loss: LossFn,
    inner_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
    opt_state: Any = None,
) -> torch.Tensor:
    """Mean over tasks of ``outer_loss(adapt(params, train_t, inner_loss), valid_t)`` -> 0-d.

    ``train_batches`` / ``valid_batches`` are pytrees whose leaves carry a leading task axis,
    ``[tasks, K, *feature]`` (see :func:`meta.check_task_batches`, which this calls first: a
    missing task axis, mismatched task counts or feature shapes raise ``ValueError``).
    ``torch.func.grad(maml_loss)`` is the exact second-order meta-gradient.
    """
    checks.params_dict(params, "maml_loss: params")
    check_task_batches(train_batches, valid_batches)
    checks.function(inner_loss, "inner_loss", "loss_fn(params, batch) -> loss")
    checks.function(outer_loss, "outer_loss", "loss_fn(params, batch) -> loss")
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    steps = checks.positive_int(steps, "steps")
    checks.flag(first_order, "first_order")

    def per_task(train: Any, valid: Any) -> torch.Tensor:
        adapted = adapt(params, train, inner_loss, inner_opt, steps=steps, first_order=first_order, opt_state=opt_state)
        return outer_loss(adapted, valid)

    return vmap(per_task)(train_batches, valid_batches).mean()


def meta_gradient(
    params: Params,
    train_batches: Any,
    valid_batches: Any,
    inner_loss: LossFn,
    outer_loss: LossFn,
    inner_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
) -> Params:
    """``d maml_loss / d params`` (exact second order unless ``first_order``); same keys as ``params``."""

    def loss(p: Params) -> torch.Tensor:
        return maml_loss(p, train_batches, valid_batches, inner_loss, outer_loss, inner_opt,
                         steps=steps, first_order=first_order)

    return grad(loss)(params)
