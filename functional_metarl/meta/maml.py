"""Model-agnostic meta-learning (Finn et al. 2017) as pure functions.

``adapt`` runs the inner loop; ``maml_loss`` is the meta-objective for a batch of tasks,
vmapped over the task axis. Differentiating ``maml_loss`` with ``torch.func.grad`` gives the
exact second-order meta-gradient (grad through grad); ``first_order=True`` stops the inner
gradient, which gives first-order MAML.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.func import grad, vmap

from ..optim import GradientTransformation, apply_updates
from ..tree import Params, tree_detach

__all__ = ["adapt", "adapt_sequence", "maml_loss", "meta_gradient"]

LossFn = Callable[[Params, Any], torch.Tensor]


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"inner steps must be an int >= 1, got {steps!r}")


def adapt(
    params: Params,
    loss_fn: LossFn,
    batch: Any,
    inner_opt: GradientTransformation,
    steps: int = 1,
    first_order: bool = False,
    opt_state: Any = None,
) -> Params:
    """``steps`` inner updates of ``params`` on ``loss_fn(params, batch)`` (one task).

    ``opt_state`` defaults to ``inner_opt.init(params)``; pass it explicitly to meta-learn it
    (Meta-SGD's step sizes). Differentiable in ``params`` and ``opt_state`` unless
    ``first_order``, where each inner gradient is treated as a constant.
    """
    _check_steps(steps)
    return adapt_sequence(params, loss_fn, [batch] * steps, inner_opt, first_order, opt_state)


def adapt_sequence(
    params: Params,
    loss_fn: LossFn,
    batches: Sequence[Any],
    inner_opt: GradientTransformation,
    first_order: bool = False,
    opt_state: Any = None,
) -> Params:
    """One inner update per element of ``batches``, in order (one task).

    For RL, where step ``k`` must learn from episodes of the policy adapted ``k`` times
    (pytorch-maml-rl's multi-step MAML); ``adapt`` is this with one batch repeated. The batches
    are data: the dependence of later episodes on the earlier updates is not differentiated.
    """
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Sequence) or len(batches) < 1:
        raise ValueError(f"batches must be a non-empty sequence (one batch per inner step), got {type(batches).__name__}")
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
    steps: int = 1,
    first_order: bool = False,
    opt_state: Any = None,
) -> torch.Tensor:
    """Mean over tasks of ``outer_loss(adapt(params, inner_loss, train), valid)``.

    ``train_batches`` / ``valid_batches`` are pytrees whose leaves carry a leading task axis.
    """

    def per_task(train: Any, valid: Any) -> torch.Tensor:
        adapted = adapt(params, inner_loss, train, inner_opt, steps, first_order, opt_state)
        return outer_loss(adapted, valid)

    return vmap(per_task)(train_batches, valid_batches).mean()


def meta_gradient(
    params: Params,
    train_batches: Any,
    valid_batches: Any,
    inner_loss: LossFn,
    outer_loss: LossFn,
    inner_opt: GradientTransformation,
    steps: int = 1,
    first_order: bool = False,
) -> Params:
    """``d maml_loss / d params`` (exact second order unless ``first_order``)."""
    return grad(maml_loss)(params, train_batches, valid_batches, inner_loss, outer_loss, inner_opt, steps, first_order)
