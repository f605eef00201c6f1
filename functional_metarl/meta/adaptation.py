"""The MAML-RL inner loop: REINFORCE losses of a policy template and the adaptation of the
params of every task of a meta-batch to its inner batches.

Shapes: one task's batch has leaves ``[T, E, ...]``; a meta-batch ``[N, T, E, ...]``; adapted
("stacked") params lead with the task axis, ``[N, *param_shape]``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.func import grad, vjp, vmap

from .. import checks
from ..distributions import DistParams
from ..nn import Functional
from ..optim import GradientTransformation, apply_updates
from ..rl import policy_gradient_loss
from ..tree import Params, tree_detach, tree_map
from .maml import adapt_sequence
from .batch import RLBatch, TrainData, check_rl_batch, check_train_data, per_step_batches
from .supervised import MetaParams

__all__ = [
    "InnerObjective",
    "check_policy",
    "policy_distribution",
    "reinforce_loss",
    "task_losses",
    "adapt_rl",
    "adapt_tasks",
    "adaptation_path",
    "adapt_tasks_vjp",
    "adapted_distribution",
    "split_meta_params",
]

#: ``(log_prob [T, E], advantages [T, E], mask [T, E]) -> []``: one task's inner objective as a loss
#: (``rl.policy_gradient_loss`` for REINFORCE; the estimators of ``meta.estimators`` bring others).
InnerObjective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_policy(policy: object, name: str = "policy") -> Functional:
    """``policy`` if it is a policy template: an ``nn.Functional`` that carries a distribution."""
    checks.instance(policy, name, Functional)
    if policy.distribution is None:  # type: ignore[union-attr]
        raise ValueError(f"{name} must be a policy template (nn.gaussian_policy or nn.categorical_policy, which carry a "
                         "distribution); got a network with distribution=None (e.g. nn.mlp)")
    return policy  # type: ignore[return-value]


def policy_distribution(params: Params, obs: torch.Tensor, policy: Functional, *,
                        params_per_task: bool = False) -> DistParams:
    """The action distribution's parameters at ``obs [..., obs_dim]``: ``(mean, log_std)`` for a
    Gaussian policy, ``(logits,)`` for a categorical one. ``params_per_task``: stacked params
    (leaves ``[N, *shape]``) and ``obs [N, ..., obs_dim]``, run by ``apply_stacked``."""
    check_policy(policy)
    checks.flag(params_per_task, "params_per_task")
    forward = policy.apply_stacked if params_per_task else policy.apply
    return policy.distribution.params(forward(params, obs))


def reinforce_loss(params: Params, batch: RLBatch, policy: Functional) -> torch.Tensor:
    """The inner-loop loss of one task: REINFORCE with baseline advantages -> 0-d.

    ``-sum_{t,e} mask * log pi(a | s) * A / E`` (``rl.policy_gradient_loss``); batch leaves
    ``[T, E, ...]`` (one task, no task axis).
    """
    dist = policy.distribution.params(policy.apply(params, batch.obs))
    return policy_gradient_loss(policy.distribution.log_prob(dist, batch.actions), batch.advantages, batch.mask)


def task_losses(policy: Functional, stacked: Params, batch: RLBatch,
                objective: InnerObjective = policy_gradient_loss) -> torch.Tensor:
    """The inner loss of every task: stacked params and batch leaves ``[N, ...]`` -> ``[N]``
    (:func:`reinforce_loss` per task with the default ``objective``)."""
    dist = policy.distribution.params(policy.apply_stacked(stacked, batch.obs))
    return vmap(objective)(policy.distribution.log_prob(dist, batch.actions), batch.advantages, batch.mask)


def split_meta_params(meta: Params | MetaParams) -> tuple[Params, Any]:
    """``(policy params, learned inner-optimizer state or None)`` of meta-params."""
    if isinstance(meta, MetaParams):
        return meta.params, (meta.inner_state if meta.inner_state != () else None)
    return meta, None


def adaptation_path(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int, first_order: bool, params_per_task: bool = False, inner_state: Any = None,
    inner_objective: InnerObjective = policy_gradient_loss,
) -> list[Params]:
    """The stacked params of every task before each inner step and after the last (``steps + 1``
    entries, leaves ``[N, *shape]``); inputs are trusted (see :func:`adapt_tasks`).

    Computed as the gradient of the *summed* task losses with respect to stacked per-task copies
    of the params (task ``i``'s loss depends on copy ``i`` only, so that gradient is every task's
    own inner gradient), and differentiable through the copies. The network then runs as batched
    matmuls (``Functional.apply_stacked``) instead of under vmap, which makes second-order
    meta-gradients and curvature products cheaper; the optimizer update stays vmapped, so any
    inner optimizer (not only elementwise ones) is applied per task. ``inner_objective`` replaces
    the REINFORCE loss (the meta-gradient estimators' inner objectives).
    """
    batches = per_step_batches(train, steps)
    num_tasks = batches[0].obs.shape[0]
    stacked = params if params_per_task else tree_map(lambda p: p.expand(num_tasks, *p.shape), params)
    if inner_state is None:
        state = vmap(inner_opt.init)(stacked)
    else:
        state = tree_map(lambda a: a.expand(num_tasks, *a.shape), inner_state)
    path = [stacked]
    for batch in batches:
        grads = grad(lambda sp, b=batch: task_losses(policy, sp, b, inner_objective).sum())(stacked)
        if first_order:
            grads = tree_detach(grads)
        updates, state = vmap(inner_opt.update)(grads, state, stacked)
        stacked = apply_updates(stacked, updates)
        path.append(stacked)
    return path


def adapt_tasks(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False, params_per_task: bool = False, inner_state: Any = None,
) -> Params:
    """The adapted params of every task of ``train`` (leaves ``[N, T, E, ...]``): leaves
    ``[N, *shape]``, differentiable in ``params`` (and ``inner_state``).

    Args:
        params: shared params, or (``params_per_task``) one set per task, leaves ``[N, *shape]``.
        train: one RLBatch for every step, or a tuple with one per inner step.
        policy: a policy template.
        inner_opt: the inner optimizer (``optim.sgd(lr)``, ``optim.meta_sgd``, ...).
        steps: inner steps.
        first_order: treat the inner gradients as constants (first-order MAML).
        params_per_task: whether ``params`` already lead with the task axis.
        inner_state: the inner optimizer's starting state, shared by all tasks and differentiable
            (Meta-SGD's learned step sizes); default ``inner_opt.init`` per task.
    """
    check_policy(policy)
    check_train_data(train, steps, policy.distribution)
    checks.flag(first_order, "first_order")
    checks.flag(params_per_task, "params_per_task")
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    return adaptation_path(params, train, policy, inner_opt, steps=steps, first_order=first_order,
                           params_per_task=params_per_task, inner_state=inner_state)[-1]


def adapt_rl(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False,
) -> Params:
    """The inner loop of one task on REINFORCE losses (unbatched: leaves ``[T, E, ...]``).

    ``train``: one RLBatch used for all ``steps``, or a tuple of ``steps`` RLBatches, one per step.
    """
    check_policy(policy)
    checks.positive_int(steps, "steps")
    if not isinstance(train, RLBatch):
        if not isinstance(train, (tuple, list)) or not all(isinstance(b, RLBatch) for b in train):
            raise TypeError(f"train must be an RLBatch or a tuple of RLBatches (one per inner step), "
                            f"got {type(train).__name__}")
        if len(train) != steps:
            raise ValueError(f"train: got {len(train)} per-step inner batches for {steps} inner steps; expected one "
                             "per step")
    batches = per_step_batches(train, steps)
    for k, batch in enumerate(batches):
        check_rl_batch(batch, f"train[{k}]", policy.distribution, task_axis=False)
    return adapt_sequence(params, batches, lambda p, b: reinforce_loss(p, b, policy), inner_opt,
                          first_order=first_order)


def adapted_distribution(
    params: Params, train: TrainData, obs: torch.Tensor, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False,
) -> DistParams:
    """The distribution of the policy adapted on ``train`` (one task), at ``obs [T, E, d]``:
    ``(mean, log_std)`` or ``(logits,)`` (see :func:`policy_distribution`)."""
    adapted = adapt_rl(params, train, policy, inner_opt, steps=steps, first_order=first_order)
    return policy.distribution.params(policy.apply(adapted, obs))


def adapt_tasks_vjp(
    params: Params, train: RLBatch, policy: Functional, inner_opt: GradientTransformation, *,
    first_order: bool = False,
) -> tuple[Params, Callable[[Params], tuple[Params]]]:
    """One inner step of every task and its vector-Jacobian product: ``(adapted, pullback)``,
    ``pullback(cotangent of adapted) -> (cotangent of params,)``.

    A runner that adapts to collect the post-update episodes keeps this instead of adapting
    again inside the meta-gradient: ``meta.surrogate_gradient_through`` then gives the meta-step's
    gradient from it without recomputing the inner forward and backward passes.
    """
    check_policy(policy)
    check_train_data(train, 1, policy.distribution)
    return vjp(lambda p: adaptation_path(p, train, policy, inner_opt, steps=1, first_order=first_order)[-1], params)
