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

from typing import Any, Sequence

import torch
from torch.func import grad, vmap

from .. import checks
from ..optim import GradientTransformation, apply_updates
from ..tree import Params, tree_detach
from .task_batches import LossFn, check_task_batches

__all__ = ["adapt", "adapt_sequence", "maml_loss", "meta_gradient"]


def _check_parts(loss_fn: object, inner_opt: object) -> None:
    checks.function(loss_fn, "loss_fn", "loss_fn(params, batch) -> loss")
    checks.instance(inner_opt, "inner_opt", GradientTransformation)


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
