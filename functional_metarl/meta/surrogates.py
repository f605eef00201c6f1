"""The MAML-RL outer objective: the TRPO surrogate of the adapted policies, its meta-gradient,
and the scoring of candidate params that a meta-step's line search or monitoring needs.

Leaves ``[N, T, E, ...]`` for batches, ``[N, *param_shape]`` for adapted params.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch.func import grad, grad_and_value, vmap

from .. import checks
from ..distributions import DistParams
from ..nn import Functional
from ..optim import GradientTransformation
from ..rl import masked_episode_mean, surrogate_loss
from ..tree import Params, tree_detach
from .adaptation import adaptation_path, check_policy, split_meta_params
from .batch import RLBatch, TrainData, check_rl_batch, check_train_data, per_step_batches
from .estimators import MAML, Estimator, check_post_rewards
from .supervised import MetaParams

__all__ = [
    "MetaGradient",
    "ScoreFn",
    "maml_surrogate",
    "surrogate_gradient",
    "surrogate_gradient_fn",
    "surrogate_gradient_through",
    "score_fn",
    "adapted_distributions",
    "surrogate_of_distributions",
    "mean_kl",
    "check_surrogate_inputs",
]


class MetaGradient(NamedTuple):
    """The meta-gradient at the current meta-params and what its forward pass saw.

    grads: as the meta-params (``Params`` or ``MetaParams``); loss: the surrogate (0-d);
    adapted: the adapted params, detached (leaves ``[N, ...]``); dist: the adapted policies'
    distribution on ``valid.obs``, detached (the "old" policy of the meta-step).
    """

    grads: Any
    loss: torch.Tensor
    adapted: Params
    dist: DistParams


#: ``(meta_params, train, valid, old_log_prob [N, T, E], old_dist) -> (surrogate, mean KL)``.
ScoreFn = Callable[[Any, TrainData, RLBatch, torch.Tensor, DistParams], tuple[torch.Tensor, torch.Tensor]]


def check_surrogate_inputs(valid: RLBatch, old_log_prob: torch.Tensor | None, policy: Functional) -> None:
    """The checks every outer surrogate makes before adapting."""
    check_policy(policy)
    check_rl_batch(valid, "valid", policy.distribution, task_axis=True)
    if old_log_prob is not None:
        checks.same_shape(checks.tensor(old_log_prob, "old_log_prob"), "old_log_prob", valid.mask, "valid.mask")


def adapted_distributions(adapted: Params, valid: RLBatch, policy: Functional) -> DistParams:
    """The adapted policies' (leaves ``[N, ...]``) distributions on ``valid.obs``."""
    num_train_tasks = next(iter(adapted.values())).shape[0]
    if num_train_tasks != valid.mask.shape[0]:
        raise ValueError(f"train has {num_train_tasks} tasks but valid has {valid.mask.shape[0]}")
    return policy.distribution.params(policy.apply_stacked(adapted, valid.obs))


def surrogate_of_distributions(dist: DistParams, valid: RLBatch, old_log_prob: torch.Tensor | None,
                               policy: Functional) -> torch.Tensor:
    """Mean over tasks of the TRPO surrogate of the adapted policies' distributions ``dist`` on
    ``valid``; ``old_log_prob=None`` takes ``dist`` itself (detached) as the old policy."""
    log_prob = policy.distribution.log_prob(dist, valid.actions)
    old = log_prob.detach() if old_log_prob is None else old_log_prob
    return vmap(surrogate_loss)(log_prob, old, valid.advantages, valid.mask).mean()


def mean_kl(policy: Functional, old: DistParams, new: DistParams, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tasks of the per-episode-mean KL(old || new). dists ``[N, T, E, ...]``, mask ``[N, T, E]``."""
    return vmap(masked_episode_mean)(policy.distribution.kl(old, new), mask).mean()


def _surrogate(params: Params | MetaParams, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor | None,
               policy: Functional, inner_opt: GradientTransformation, steps: int, first_order: bool,
               estimator: Estimator) -> tuple[torch.Tensor, Params]:
    policy_params, inner_state = split_meta_params(params)
    path = adaptation_path(policy_params, train, policy, inner_opt, steps=steps, first_order=first_order,
                           inner_state=inner_state, inner_objective=estimator.inner_objective)
    adapted = path[-1]
    loss = surrogate_of_distributions(adapted_distributions(adapted, valid, policy), valid, old_log_prob, policy)
    if estimator.outer_term is not None:
        loss = loss + estimator.outer_term(path[:-1], per_step_batches(train, steps), valid, policy)
    return loss, adapted


def maml_surrogate(
    params: Params | MetaParams, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor | None,
    policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1, first_order: bool = False,
    estimator: Estimator = MAML,
) -> tuple[torch.Tensor, Params]:
    """Mean over tasks of the TRPO surrogate of the adapted policies, and the adapted params.

    Its value and adapted params are the same for every estimator (they share the inner step,
    and E-MAML's extra term is 0 in value); its gradient is the estimator's meta-gradient.

    Args:
        params: policy params, or ``MetaParams(policy_params, inner_state)`` to meta-learn the
            inner optimizer's state too (Meta-SGD: ``optim.meta_sgd`` with ``MetaSgdState(lr)``).
        train: one RLBatch (leaves ``[N, T, E, ...]``), or a tuple with one per inner step.
        valid: the post-update episodes, leaves ``[N, T, E, ...]``.
        old_log_prob: ``[N, T, E]``, or ``None`` to take the adapted policy itself (detached) as
            the old one: value and gradient are then those at the current params.
        policy: the policy template.
        inner_opt: the inner optimizer.
        steps: inner steps.
        first_order: treat the inner gradients as constants.
        estimator: a ``meta.estimators.Estimator`` (default :data:`MAML`).

    Returns:
        ``(loss, adapted)``, adapted leaves ``[N, *param_shape]``.
    """
    check_surrogate_inputs(valid, old_log_prob, policy)
    check_train_data(train, steps, policy.distribution)
    checks.instance(estimator, "estimator", Estimator)
    checks.flag(first_order, "first_order")
    if estimator.needs_post_rewards:
        check_post_rewards(valid, estimator.name)
    return _surrogate(params, train, valid, old_log_prob, policy, inner_opt, steps, first_order, estimator)


def surrogate_gradient_fn(
    policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1, first_order: bool = False,
    estimator: Estimator = MAML, compile: bool = False,
) -> Callable[[Any, TrainData, RLBatch], MetaGradient]:
    """``(params, train, valid) -> MetaGradient``: the meta-gradient of :func:`maml_surrogate`
    (with ``old_log_prob=None``) at ``params``, and the adapted policies it saw. Inputs are
    trusted (the meta-steps check them once per call). ``compile``: ``torch.compile`` the
    gradient (it and the line search are where a meta-iteration's time goes)."""
    check_policy(policy)
    checks.positive_int(steps, "steps")
    checks.flag(first_order, "first_order")
    checks.flag(compile, "compile")
    checks.instance(estimator, "estimator", Estimator)

    def surrogate(params: Any, train: TrainData, valid: RLBatch) -> tuple[torch.Tensor, Params]:
        return _surrogate(params, train, valid, None, policy, inner_opt, steps, first_order, estimator)

    value_and_grad = grad_and_value(surrogate, has_aux=True)
    if compile:
        value_and_grad = torch.compile(value_and_grad, dynamic=False)

    def gradient(params: Any, train: TrainData, valid: RLBatch) -> MetaGradient:
        grads, (loss, adapted) = value_and_grad(params, train, valid)
        adapted = tree_detach(adapted)
        with torch.no_grad():
            dist = adapted_distributions(adapted, valid, policy)
        return MetaGradient(grads, loss, adapted, tuple(d.detach() for d in dist))

    return gradient


def surrogate_gradient(
    params: Params | MetaParams, train: TrainData, valid: RLBatch, policy: Functional,
    inner_opt: GradientTransformation, *, steps: int = 1, first_order: bool = False, estimator: Estimator = MAML,
) -> MetaGradient:
    """The meta-gradient of :func:`maml_surrogate` at ``params`` (with ``old_log_prob=None``), and
    the adapted policies it saw. Inputs as :func:`maml_surrogate`'s."""
    check_surrogate_inputs(valid, None, policy)
    check_train_data(train, steps, policy.distribution)
    return surrogate_gradient_fn(policy, inner_opt, steps=steps, first_order=first_order, estimator=estimator)(
        params, train, valid)


def surrogate_gradient_through(
    adapted: Params, pullback: Callable[[Params], tuple[Params]], valid: RLBatch, policy: Functional,
) -> MetaGradient:
    """The :data:`MAML` meta-gradient from a kept adaptation, ``meta.adapt_tasks_vjp(params,
    train, ...)``: the chain rule ``d loss / d params = pullback(d loss / d adapted)``, without
    adapting again. Equals :func:`surrogate_gradient`'s result at those ``params`` and ``train``."""
    check_surrogate_inputs(valid, None, policy)

    def outer(stacked: Params) -> tuple[torch.Tensor, tuple[torch.Tensor, DistParams]]:
        dist = adapted_distributions(stacked, valid, policy)
        loss = surrogate_of_distributions(dist, valid, None, policy)
        return loss, (loss, dist)

    adapted_grads, (loss, dist) = grad(outer, has_aux=True)(adapted)
    (grads,) = pullback(adapted_grads)
    return MetaGradient(grads, loss, tree_detach(adapted), tuple(d.detach() for d in dist))


def score_fn(policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1,
             compile: bool = False) -> ScoreFn:
    """What a meta-step scores at candidate params: ``(params, train, valid, old_log_prob,
    old_dist) -> (surrogate loss, mean KL(old_dist || adapted))`` from one forward pass of the
    adapted policies on ``valid.obs``. Call it under ``no_grad``. Every estimator has the same
    value, so this one function scores them all. Leaves ``[N, T, E, ...]``; old_log_prob
    ``[N, T, E]``; old_dist as ``policy_distribution``. ``compile``: ``torch.compile`` it."""
    check_policy(policy)
    checks.positive_int(steps, "steps")
    checks.flag(compile, "compile")

    def score(params: Any, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor,
              old_dist: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        policy_params, inner_state = split_meta_params(params)
        adapted = adaptation_path(policy_params, train, policy, inner_opt, steps=steps, first_order=True,
                                  inner_state=inner_state)[-1]
        dist = adapted_distributions(adapted, valid, policy)
        return surrogate_of_distributions(dist, valid, old_log_prob, policy), mean_kl(policy, old_dist, dist, valid.mask)

    return torch.compile(score, dynamic=False) if compile else score
