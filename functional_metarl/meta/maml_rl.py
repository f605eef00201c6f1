"""MAML for reinforcement learning: the inner REINFORCE step, the outer surrogate, and the
TRPO meta-step of Finn et al. (2017), built from the pure pieces in ``rl`` and ``meta.maml``.

Per-task data is an :class:`RLBatch` with time-major leaves ``[T, E, ...]``; a meta-batch stacks
tasks on a leading axis ``[N, T, E, ...]`` and everything per task is vmapped over it.

The inner-loop data ``train`` is one RLBatch, or a tuple of RLBatches with one per inner step:
with several steps, step ``k`` should learn from episodes of the policy adapted ``k`` times
(as the trainer collects them); one RLBatch with ``steps > 1`` reuses the same episodes, whose
REINFORCE gradient is then off-policy after the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import torch
from torch.func import grad, grad_and_value, vjp, vmap

from ..envs.rollout import Episodes
from ..nn import Functional
from ..nn.core import _check_positive_int
from ..optim import GradientTransformation, apply_updates
from ..rl import (
    backtracking_line_search,
    categorical_kl,
    categorical_log_prob,
    discounted_returns,
    gae,
    gauss_newton_operator,
    gaussian_kl,
    gaussian_log_prob,
    linear_baseline_values,
    masked_episode_mean,
    normalize_advantages,
    policy_gradient_loss,
    surrogate_loss,
    trpo_step_direction,
)
from ..tree import Params, ravel, tree_detach, tree_map
from ._checks import _check_opt
from .maml import _check_steps, adapt_sequence
from .supervised import MetaParams

__all__ = [
    "RLBatch",
    "TrainData",
    "adapt_rl",
    "adapt_tasks",
    "make_rl_batch",
    "make_rl_batches",
    "scale_by_final_reward",
    "reinforce_loss",
    "adapted_distribution",
    "policy_distribution",
    "maml_surrogate",
    "TRPOConfig",
    "TRPOStats",
    "maml_trpo_step",
    "maml_gradient_step",
    "default_score_fn",
]


class RLBatch(NamedTuple):
    """Episodes of one task with their advantages. obs ``[T, E, d]``, actions ``[T, E, a]``,
    advantages ``[T, E]``, mask ``[T, E]`` (a leading task axis when batched).

    Two optional fields, filled by :func:`make_rl_batch` and read only by the meta-gradient
    estimators that need them (``meta.estimators``; E-MAML's score term needs the post-update
    returns): ``rewards [T, E]`` (per-step rewards) and ``advantage_std`` (0-d; the detached
    scale the advantages were divided by when normalized, 1 otherwise). A batch built from the
    first four fields alone has them ``None``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor | None = None
    advantage_std: torch.Tensor | None = None


def _check_episodes(episodes: Episodes) -> None:
    """Shapes ``[N, T, E, ...]`` and values of a batch of episodes (see ``envs.Episodes``)."""
    if not isinstance(episodes, Episodes):
        raise TypeError(f"episodes must be an envs.Episodes, got {type(episodes).__name__}")
    for name, x in zip(Episodes._fields, episodes):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"episodes.{name} must be a Tensor, got {type(x).__name__}")
    rewards, mask = episodes.rewards, episodes.mask
    if rewards.ndim != 3 or 0 in rewards.shape:
        raise ValueError(f"episodes.rewards expected shape [N, T, E] (task-major, non-empty), got {tuple(rewards.shape)}")
    if mask.shape != rewards.shape:
        raise ValueError(f"episodes.mask expected shape {tuple(rewards.shape)} (as rewards), got {tuple(mask.shape)}")
    if episodes.obs.ndim != 4 or episodes.obs.shape[:3] != rewards.shape:
        raise ValueError(f"episodes.obs expected shape {tuple(rewards.shape)} + [obs_dim], got {tuple(episodes.obs.shape)}")
    if episodes.actions.shape[:3] != rewards.shape or episodes.actions.ndim not in (3, 4):
        raise ValueError(f"episodes.actions expected shape {tuple(rewards.shape)} (+ [act_dim]), "
                         f"got {tuple(episodes.actions.shape)}")
    if not rewards.is_floating_point() or not episodes.obs.is_floating_point():
        raise TypeError(f"episodes.rewards and episodes.obs must be floating point, got {rewards.dtype} and "
                        f"{episodes.obs.dtype}")
    if not torch.isfinite(rewards).all():
        raise ValueError("episodes.rewards contain non-finite values (NaN or inf); refusing to learn from them")
    if not torch.isfinite(episodes.obs).all():
        raise ValueError("episodes.obs contain non-finite values (NaN or inf)")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("episodes.mask must hold only 0 and 1 (1 where the step happened)")


def make_rl_batch(
    obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor,
    gamma: float = 0.99, gae_lambda: float = 1.0, normalize: bool = True,
) -> RLBatch:
    """One task's episodes -> advantages by GAE over a freshly fitted linear baseline.

    obs ``[T, E, d]``, actions ``[T, E, a]`` or integer ``[T, E]``, rewards and mask ``[T, E]``
    (unbatched: vmap it over tasks, as :func:`make_rl_batches` does).
    """
    returns = discounted_returns(rewards, mask, gamma)
    values = linear_baseline_values(obs, returns, mask)
    advantages = gae(rewards, values, mask, gamma, gae_lambda)
    if normalize:
        std = _advantage_std(advantages, mask)
        advantages = normalize_advantages(advantages, mask)
    else:
        std = torch.ones((), dtype=advantages.dtype, device=advantages.device)
    return RLBatch(obs, actions, advantages, mask, rewards, std)


def _advantage_std(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The scale ``sqrt(var + eps)`` that ``rl.normalize_advantages`` divides by. ``[T, E] -> []``."""
    mask = mask.to(advantages.dtype)
    count = mask.sum().clamp_min(1.0)
    mean = (advantages * mask).sum() / count
    var = (((advantages - mean) * mask) ** 2).sum() / count
    return torch.sqrt(var + eps).detach()


def make_rl_batches(episodes: Episodes, gamma: float = 0.99, gae_lambda: float = 1.0, normalize: bool = True) -> RLBatch:
    """:func:`make_rl_batch` vmapped over the task axis of ``episodes`` (``[N, T, E, ...]``).

    This is the boundary of the MAML-RL path, so the values are checked here once per batch
    (outside vmap): rewards finite, mask 0/1, obs finite, shapes task-major.
    """
    _check_episodes(episodes)
    for value, name in ((gamma, "gamma"), (gae_lambda, "gae_lambda")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"make_rl_batches: {name} must be a float in [0, 1], got {value!r}")
    if not isinstance(normalize, bool):
        raise TypeError(f"make_rl_batches: normalize must be a bool, got {type(normalize).__name__}")
    fn = partial(make_rl_batch, gamma=gamma, gae_lambda=gae_lambda, normalize=normalize)
    return vmap(fn)(episodes.obs, episodes.actions, episodes.rewards, episodes.mask)


FINAL_REWARD_WINDOW = 10  # final steps of each episode that scale_by_final_reward reads by default


def scale_by_final_reward(batch: RLBatch, reference: float, window: int = FINAL_REWARD_WINDOW) -> RLBatch:
    """Make each task's inner step as long as its episodes end far from success.

    For a cost-like reward that measures the remaining error (2D navigation: ``-distance`` to
    the goal), ``d_n = |mean reward of task n over the last window steps of its episodes|`` is
    how far those episodes end from the goal; padded steps of finished episodes count as 0.
    A normalized policy gradient has about the same length whatever ``d_n``, so a fixed step
    overshoots near goals and falls short of far ones (``docs/results/estimators.md``). This
    multiplies task ``n``'s advantages by ``s_n = d_n / reference``, which makes its REINFORCE
    step ``s_n`` times as long (the step is linear in the advantages): a proportional
    correction, with ``reference`` the error at which the step keeps its length. ``s_n`` is
    data, not a function of the params, so meta-gradients treat it as a constant, as they treat
    the normalization's scale.

    Args:
        batch: a task-major :class:`RLBatch` (leaves ``[N, T, E, ...]``) that has ``rewards``
            (:func:`make_rl_batches` fills them); every reward must be ``<= 0``.
        reference: the positive error ``d`` at which a task's step is left as it is.
        window: how many final steps of each episode measure the error (``1 <= window <= T``).

    Returns:
        The batch with ``advantages [N, T, E]`` times ``s_n`` and ``advantage_std`` divided by
        it (it stays the scale that turns the advantages back into baseline residuals; a task
        with ``s_n = 0``, whose advantages are then all 0, keeps its ``advantage_std``).
    """
    if not isinstance(batch, RLBatch):
        raise TypeError(f"scale_by_final_reward: batch must be an RLBatch, got {type(batch).__name__}")
    if batch.rewards is None:
        raise ValueError("scale_by_final_reward: batch.rewards is None; build the batch with make_rl_batches")
    if batch.rewards.ndim != 3 or batch.advantages.shape != batch.rewards.shape:
        raise ValueError(f"scale_by_final_reward: expected a task-major batch, rewards and advantages [N, T, E], "
                         f"got {tuple(batch.rewards.shape)} and {tuple(batch.advantages.shape)}")
    if isinstance(reference, bool) or not isinstance(reference, (int, float)) or not (
            reference > 0 and math.isfinite(reference)):
        raise ValueError(f"scale_by_final_reward: reference must be a positive finite number, got {reference!r}")
    horizon = batch.rewards.shape[1]
    _check_positive_int(window, "window")
    if window > horizon:
        raise ValueError(f"scale_by_final_reward: window must be at most the horizon {horizon}, got {window}")
    if bool((batch.rewards > 0).any()):
        raise ValueError("scale_by_final_reward: expects cost-like rewards (all <= 0, the negative remaining error), "
                         f"got a maximum of {float(batch.rewards.max())}")
    error = -batch.rewards[:, -window:].mean(dim=(1, 2))  # [N]
    scale = error / reference
    # A task that ended at the goal (s_n = 0) takes no step; its scale is left as it was.
    std = None if batch.advantage_std is None else batch.advantage_std / torch.where(scale > 0, scale, 1.0)
    return batch._replace(advantages=batch.advantages * scale[:, None, None], advantage_std=std)


Dist = tuple[torch.Tensor, ...]  # a policy's output as a tuple: (mean, log_std) or (logits,)


def _check_policy(policy: object, where: str) -> Functional:
    """A policy template: a ``Functional`` whose ``distribution`` is set (not a plain ``nn.mlp``)."""
    if not isinstance(policy, Functional):
        raise TypeError(f"{where}: policy must be an nn.Functional policy template, got {type(policy).__name__}")
    if policy.distribution is None:
        raise ValueError(
            f"{where}: policy must be a policy template (nn.gaussian_policy or nn.categorical_policy, "
            "distribution 'gaussian' / 'categorical'); got a network with distribution=None (e.g. nn.mlp)"
        )
    return policy


def _as_dist(policy: Functional, out: Any) -> Dist:
    """The policy's output as a tuple of tensors (see ``Dist``)."""
    return policy.distribution.params(out)


def policy_distribution(params: Params, obs: torch.Tensor, policy: Functional, *, params_per_task: bool = False) -> Dist:
    """The action distribution at ``obs [..., obs_dim]`` as a tuple: ``(mean, log_std)`` for a
    Gaussian policy, ``(logits,)`` for a categorical one. ``params_per_task``: stacked params
    (leaves ``[N, *shape]``) and ``obs [N, ..., obs_dim]``, run by ``apply_stacked``."""
    _check_policy(policy, "policy_distribution")
    forward = policy.apply_stacked if params_per_task else policy.apply
    return _as_dist(policy, forward(params, obs))


def _log_prob(policy: Functional, dist: Dist, actions: torch.Tensor) -> torch.Tensor:
    return policy.distribution.log_prob(dist, actions)


def _kl(policy: Functional, old: Dist, new: Dist) -> torch.Tensor:
    return policy.distribution.kl(old, new)


def reinforce_loss(params: Params, batch: RLBatch, policy: Functional) -> torch.Tensor:
    """The inner-loop loss of one task: REINFORCE with baseline advantages -> 0-d.

    ``-sum_{t,e} mask * log pi(a | s) * A / E`` (``rl.policy_gradient_loss``); batch leaves
    ``[T, E, ...]`` (one task, no task axis).
    """
    dist = _as_dist(policy, policy.apply(params, batch.obs))
    return policy_gradient_loss(_log_prob(policy, dist, batch.actions), batch.advantages, batch.mask)


TrainData = RLBatch | tuple[RLBatch, ...]


def adapt_rl(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False,
) -> Params:
    """The inner loop of one task on REINFORCE losses (unbatched: leaves ``[T, E, ...]``).

    ``train``: one RLBatch used for all ``steps``, or a tuple of ``steps`` RLBatches, one per step.
    """
    _check_policy(policy, "adapt_rl")
    return adapt_sequence(params, _per_step_batches(train, steps), partial(reinforce_loss, policy=policy), inner_opt,
                          first_order=first_order)


def _per_step_batches(train: TrainData, steps: int) -> tuple[RLBatch, ...]:
    if isinstance(train, RLBatch):
        _check_steps(steps)
        return (train,) * steps
    if not isinstance(train, (tuple, list)) or not all(isinstance(b, RLBatch) for b in train):
        raise TypeError(f"train must be an RLBatch or a tuple of RLBatches (one per inner step), got {type(train).__name__}")
    if len(train) != steps:
        raise ValueError(f"got {len(train)} per-step inner batches for {steps} inner steps; expected one per step")
    return tuple(train)


def _check_rl_batch(batch: RLBatch, name: str, policy: Functional, task_axis: bool) -> None:
    """Shapes of an RLBatch: obs ``[(N,) T, E, d]``, actions ``[(N,) T, E, a]`` (Gaussian) or
    integer ``[(N,) T, E]`` (categorical), advantages and mask ``[(N,) T, E]``."""
    lead = 3 if task_axis else 2
    axes = "[N, T, E]" if task_axis else "[T, E]"
    if not isinstance(batch, RLBatch):
        raise TypeError(f"{name} must be an RLBatch, got {type(batch).__name__}")
    if batch.mask.ndim != lead:
        raise ValueError(f"{name}.mask expected shape {axes}, got {tuple(batch.mask.shape)}")
    shape = batch.mask.shape
    if batch.advantages.shape != shape:
        raise ValueError(f"{name}.advantages expected shape {tuple(shape)} (as mask), got {tuple(batch.advantages.shape)}")
    if batch.obs.shape[:lead] != shape or batch.obs.ndim != lead + 1:
        raise ValueError(f"{name}.obs expected shape {tuple(shape)} + [obs_dim], got {tuple(batch.obs.shape)}")
    if policy.distribution.discrete:
        if batch.actions.shape != shape or batch.actions.is_floating_point():
            raise ValueError(f"{name}.actions of a categorical policy expected integer shape {tuple(shape)}, "
                             f"got {tuple(batch.actions.shape)} {batch.actions.dtype}")
    elif batch.actions.shape[:lead] != shape or batch.actions.ndim != lead + 1:
        raise ValueError(f"{name}.actions expected shape {tuple(shape)} + [act_dim], got {tuple(batch.actions.shape)}")
    if batch.rewards is not None and batch.rewards.shape != shape:
        raise ValueError(f"{name}.rewards expected shape {tuple(shape)} (as mask), got {tuple(batch.rewards.shape)}")
    if batch.advantage_std is not None and batch.advantage_std.shape != shape[: lead - 2]:
        raise ValueError(f"{name}.advantage_std expected shape {tuple(shape[: lead - 2])} (one scale per task), "
                         f"got {tuple(batch.advantage_std.shape)}")


def _task_losses(policy: Functional, stacked: Params, batch: RLBatch) -> torch.Tensor:
    """``reinforce_loss`` of every task: stacked params and batch leaves ``[N, ...]`` -> ``[N]``."""
    dist = _as_dist(policy, policy.apply_stacked(stacked, batch.obs))
    return vmap(policy_gradient_loss)(_log_prob(policy, dist, batch.actions), batch.advantages, batch.mask)


def adapt_tasks(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False, params_per_task: bool = False, inner_state: Any = None,
) -> Params:
    """``vmap(adapt_rl)`` over the tasks of ``train`` (leaves ``[N, T, E, ...]``): the adapted
    params of every task, leaves ``[N, *shape]``. ``params`` are shared, or (``params_per_task``)
    one set per task.

    Computed as the gradient of the *summed* task losses with respect to stacked per-task copies
    of the params (task ``i``'s loss depends on copy ``i`` only, so that gradient is every task's
    own inner gradient), and differentiable through the copies. The network then runs as batched
    matmuls (``Functional.apply_stacked``) instead of under vmap, which makes the second-order
    meta-gradient and the curvature products cheaper; the optimizer update stays vmapped, so any
    inner optimizer (not only elementwise ones) is treated per task.
    ``inner_state``: the inner optimizer's starting state, shared by all tasks and differentiable
    (Meta-SGD's learned step sizes); default ``inner_opt.init`` per task.
    """
    _check_policy(policy, "adapt_tasks")
    return _adapt_stacked(params, train, policy, inner_opt, steps=steps, first_order=first_order,
                          params_per_task=params_per_task, inner_state=inner_state)[-1]


def _adapt_stacked(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int, first_order: bool, params_per_task: bool = False, inner_state: Any = None,
    task_losses: Callable[[Functional, Params, RLBatch], torch.Tensor] | None = None,
) -> list[Params]:
    """:func:`adapt_tasks` returning the stacked params before every inner step and after the
    last (``steps + 1`` entries); ``task_losses(policy, stacked, batch) -> [N]`` replaces the
    REINFORCE losses (the meta-gradient estimators' inner objectives)."""
    task_losses = _task_losses if task_losses is None else task_losses
    batches = _per_step_batches(train, steps)
    for k, batch in enumerate(batches):
        _check_rl_batch(batch, f"train[{k}]" if len(batches) > 1 else "train", policy, task_axis=True)
    num_tasks = batches[0].obs.shape[0]
    stacked = params if params_per_task else tree_map(lambda p: p.expand(num_tasks, *p.shape), params)
    if inner_state is None:
        state = vmap(inner_opt.init)(stacked)
    else:
        state = tree_map(lambda a: a.expand(num_tasks, *a.shape), inner_state)
    path = [stacked]
    for batch in batches:
        grads = grad(lambda sp, b=batch: task_losses(policy, sp, b).sum())(stacked)
        if first_order:
            grads = tree_detach(grads)
        updates, state = vmap(inner_opt.update)(grads, state, stacked)
        stacked = apply_updates(stacked, updates)
        path.append(stacked)
    return path


def adapted_distribution(
    params: Params, train: TrainData, obs: torch.Tensor, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False,
) -> Dist:
    """The distribution of the policy adapted on ``train`` (one task), at ``obs [T, E, d]``:
    ``(mean, log_std)`` or ``(logits,)`` (see :func:`policy_distribution`)."""
    adapted = adapt_rl(params, train, policy, inner_opt, steps=steps, first_order=first_order)
    return _as_dist(policy, policy.apply(adapted, obs))


def _split_meta(meta: Params | MetaParams) -> tuple[Params, Any]:
    """``(policy params, learned inner-optimizer state or None)`` of meta-params."""
    if isinstance(meta, MetaParams):
        return meta.params, (meta.inner_state if meta.inner_state != () else None)
    return meta, None


def maml_surrogate(
    params: Params | MetaParams, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor | None,
    policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1, first_order: bool = False,
) -> tuple[torch.Tensor, Params]:
    """Mean over tasks of the TRPO surrogate of the adapted policies, and the adapted params.

    train (one RLBatch, or a tuple with one per inner step) / valid leaves ``[N, T, E, ...]``;
    old_log_prob ``[N, T, E]``, or ``None`` to take the adapted policy itself (detached) as the
    old one: value and gradient are then those at the current params, which saves a separate
    pass to compute the old log-probabilities.
    ``params`` may be ``MetaParams(policy_params, inner_state)`` to meta-learn the inner
    optimizer's state as well (Meta-SGD: ``optim.meta_sgd`` with ``MetaSgdState(lr)``).
    Returns ``(loss, adapted)`` with adapted leaves ``[N, *param_shape]``.
    """
    _check_surrogate_inputs(valid, old_log_prob, policy, "maml_surrogate")
    policy_params, inner_state = _split_meta(params)
    adapted = adapt_tasks(policy_params, train, policy, inner_opt, steps=steps, first_order=first_order,
                          inner_state=inner_state)
    return _adapted_surrogate(adapted, valid, old_log_prob, policy), adapted


def _adapt_tasks_vjp(
    params: Params, train: TrainData, policy: Functional, inner_opt: GradientTransformation, *,
    steps: int = 1, first_order: bool = False,
) -> tuple[Params, Callable[[Params], tuple[Params]]]:
    """:func:`adapt_tasks` of shared ``params`` and its vector-Jacobian product: ``(adapted,
    pullback)``, ``pullback(cotangent of adapted) -> (cotangent of params,)``.

    A runner that adapts to collect the post-update episodes can keep this instead of adapting
    again inside the meta-gradient: :func:`_surrogate_grad_through` then gives
    ``grad_and_value(maml_surrogate, has_aux=True)``'s result from it, without recomputing the
    inner forward and backward passes.
    """
    return vjp(lambda p: adapt_tasks(p, train, policy, inner_opt, steps=steps, first_order=first_order), params)


def _surrogate_grad_through(
    adapted: Params, pullback: Callable[[Params], tuple[Params]], valid: RLBatch, policy: Functional,
) -> tuple[Params, tuple[torch.Tensor, Params, Dist]]:
    """``(grads, (loss, adapted, dist))``: what ``grad_and_value(maml_surrogate, has_aux=True)(params,
    train, valid, None)`` gives, plus the adapted policies' distribution on ``valid.obs`` (for the
    meta-step's old policy), from ``_adapt_tasks_vjp(params, train, ...)``: the chain rule through
    the kept adaptation, ``d loss / d params = pullback(d loss / d adapted)``."""
    _check_surrogate_inputs(valid, None, policy, "maml_surrogate")

    def outer(stacked: Params) -> tuple[torch.Tensor, tuple[torch.Tensor, Dist]]:
        dist = _adapted_dist(stacked, valid, policy)
        loss = _surrogate_of_dist(dist, valid, None, policy)
        return loss, (loss, dist)

    adapted_grads, (loss, dist) = grad(outer, has_aux=True)(adapted)
    (grads,) = pullback(adapted_grads)
    return grads, (loss, adapted, dist)


def _check_surrogate_inputs(valid: RLBatch, old_log_prob: torch.Tensor | None, policy: Functional, where: str) -> None:
    """The checks every outer surrogate makes before adapting (``maml_surrogate`` and the estimators')."""
    _check_policy(policy, where)
    _check_rl_batch(valid, "valid", policy, task_axis=True)
    if old_log_prob is not None and old_log_prob.shape != valid.mask.shape:
        raise ValueError(f"old_log_prob expected shape {tuple(valid.mask.shape)} (as valid.mask), "
                         f"got {tuple(old_log_prob.shape)}")


def _adapted_surrogate(adapted: Params, valid: RLBatch, old_log_prob: torch.Tensor | None,
                       policy: Functional) -> torch.Tensor:
    """Mean over tasks of the TRPO surrogate of the adapted policies (leaves ``[N, ...]``) on ``valid``;
    ``old_log_prob=None`` takes the adapted policy itself (detached) as the old one."""
    return _surrogate_of_dist(_adapted_dist(adapted, valid, policy), valid, old_log_prob, policy)


def _adapted_dist(adapted: Params, valid: RLBatch, policy: Functional) -> Dist:
    """The adapted policies' (leaves ``[N, ...]``) distributions on ``valid.obs``."""
    num_train_tasks = next(iter(adapted.values())).shape[0]
    if num_train_tasks != valid.mask.shape[0]:
        raise ValueError(f"train has {num_train_tasks} tasks but valid has {valid.mask.shape[0]}")
    return _as_dist(policy, policy.apply_stacked(adapted, valid.obs))


def _surrogate_of_dist(dist: Dist, valid: RLBatch, old_log_prob: torch.Tensor | None, policy: Functional) -> torch.Tensor:
    """Mean over tasks of the TRPO surrogate of the adapted policies' distributions ``dist`` on
    ``valid`` (leaves ``[N, T, E, ...]``); ``old_log_prob=None`` takes ``dist`` itself (detached)."""
    log_prob = _log_prob(policy, dist, valid.actions)
    old = log_prob.detach() if old_log_prob is None else old_log_prob
    return vmap(surrogate_loss)(log_prob, old, valid.advantages, valid.mask).mean()


def _mean_kl(policy: Functional, old: Dist, new: Dist, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tasks of the per-episode-mean KL(old || new). dists ``[N, T, E, ...]``, mask ``[N, T, E]``."""
    return vmap(masked_episode_mean)(_kl(policy, old, new), mask).mean()


def _surrogate_and_kl(
    params: Params | MetaParams, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor, old_dist: Dist,
    policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a meta-step's line search scores at ``params``: ``(surrogate loss, mean KL(old_dist
    || adapted))`` from one forward pass of the adapted policies on ``valid.obs`` (scoring the
    loss and the KL separately took two). Call it under ``no_grad``.

    Every estimator of ``meta.estimators`` has ``maml_surrogate``'s value and adapted params
    (its inner objective differs from the plain one only in higher derivatives, and E-MAML's
    extra term is 0 in value), so this one function scores them all.
    Leaves ``[N, T, E, ...]``; old_log_prob ``[N, T, E]``; old_dist as ``policy_distribution``.
    """
    policy_params, inner_state = _split_meta(params)
    adapted = adapt_tasks(policy_params, train, policy, inner_opt, steps=steps, first_order=True,
                          inner_state=inner_state)
    dist = _adapted_dist(adapted, valid, policy)
    return _surrogate_of_dist(dist, valid, old_log_prob, policy), _mean_kl(policy, old_dist, dist, valid.mask)


@dataclass(frozen=True)
class TRPOConfig:
    """TRPO meta-step settings. max-KL 0.01, 10 CG iterations, damping 1e-5 and 15 line-search
    steps x 0.8 are pytorch-maml-rl's defaults.

    curvature: ``"exact"`` (default) = Hessian of the mean KL in the meta-params *through* the
    adaptation, computed exactly as a Gauss-Newton/Fisher product (what pytorch-maml-rl's
    double-backward HVP computes, about 3x cheaper); ``"adapted"`` = Fisher of the adapted
    policies in their own params, ignoring the inner step's Jacobian. ``"adapted"`` makes each
    product cheaper but misjudges the KL along the step, so the line search backtracks further
    and, on 2D navigation, learning is slower per meta-iteration (see the README).
    fisher_subsample: use every k-th episode of each task for the curvature products only (as
    TRPO implementations commonly do); with ``"exact"`` this applies to the inner-loop episodes
    too, so the adaptation inside each product is the one on that subsample.
    fisher_tasks: use only the first k tasks of the meta-batch for the curvature (tasks are drawn
    i.i.d., so this is a random subset); ``None`` = all.
    The meta-gradient and the line search always use every task and every episode.
    ``TRPOConfig(fisher_subsample=1, fisher_tasks=None)`` reproduces pytorch-maml-rl's step; the
    default curvature sample (every 4th episode of 10 tasks: 12.5% of the episodes) is what makes
    a meta-iteration fast. A product costs in proportion to its sample. A smaller one (every 10th
    episode) made the iteration 20% faster with the same line-search acceptance, but the same
    500-iteration run learned worse (post-adaptation return about 2 lower), so it is not the default.
    """

    max_kl: float = 1e-2
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_max_steps: int = 15
    ls_backtrack_ratio: float = 0.8
    curvature: str = "exact"
    fisher_subsample: int = 4
    fisher_tasks: int | None = 10

    def __post_init__(self):
        if not self.max_kl > 0:
            raise ValueError(f"max_kl must be positive, got {self.max_kl}")
        if self.cg_iters < 1:
            raise ValueError(f"cg_iters must be >= 1, got {self.cg_iters}")
        if self.cg_damping < 0:
            raise ValueError(f"cg_damping must be >= 0, got {self.cg_damping}")
        if self.ls_max_steps < 1:
            raise ValueError(f"ls_max_steps must be >= 1, got {self.ls_max_steps}")
        if not 0 < self.ls_backtrack_ratio < 1:
            raise ValueError(f"ls_backtrack_ratio must lie in (0, 1), got {self.ls_backtrack_ratio}")
        if self.curvature not in ("exact", "adapted"):
            raise ValueError(f"curvature must be 'exact' or 'adapted', got {self.curvature!r}")
        if self.fisher_subsample < 1:
            raise ValueError(f"fisher_subsample must be >= 1, got {self.fisher_subsample}")
        if self.fisher_tasks is not None and self.fisher_tasks < 1:
            raise ValueError(f"fisher_tasks must be None or >= 1, got {self.fisher_tasks}")


class TRPOStats(NamedTuple):
    """Python floats describing one meta-step (for logging; read after the step, not inside it)."""

    meta_loss: float  # surrogate before the step
    loss_after: float
    kl: float  # mean KL(old || new) of the adapted policies after the step
    step_fraction: float  # accepted line-search fraction, 0 if rejected
    grad_norm: float


def _gaussian_mean_kl_curvature(
    old: tuple[torch.Tensor, torch.Tensor], tangent: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian of ``_mean_kl(old, new)`` in ``new = (mean, log_std)`` at ``new = old``, times
    ``tangent``, in closed form: ``d2/dmean2 = 1/sigma^2`` and ``d2/dlog_std2 = 2`` per entry,
    scaled by the weights of the masked means. (The generic jvp-of-grad path gives the same.)
    """
    mask = mask.to(old[0].dtype)
    num_tasks, num_episodes = mask.shape[0], mask.shape[-1]
    weight = mask / mask.sum(dim=1, keepdim=True).clamp_min(1.0) / (num_tasks * num_episodes)  # [N, T, E]
    weight = weight.unsqueeze(-1)
    return tangent[0] * torch.exp(-2 * old[1]) * weight, 2.0 * tangent[1] * weight


def _subsample(batch: TrainData, every: int, tasks: int | None) -> TrainData:
    """Every ``every``-th episode of the first ``tasks`` tasks (leaves ``[N, T, E, ...]``)."""
    if not isinstance(batch, RLBatch):
        return tuple(_subsample(b, every, tasks) for b in batch)
    per_step = (None if x is None else x[:tasks, :, ::every] for x in batch[:5])
    return RLBatch(*per_step, None if batch.advantage_std is None else batch.advantage_std[:tasks])


def _meta_gradient_at(
    grad_fn: Callable, params: Params | MetaParams, train: TrainData, valid: RLBatch, policy: Functional,
) -> tuple[Params | MetaParams, torch.Tensor, Params, Dist]:
    """Call a meta-step's ``grad_fn``: ``(grads, loss, adapted, old_dist)``, with ``adapted`` and
    the adapted policies' distribution on ``valid.obs`` (``old_dist``) detached. A ``grad_fn`` may
    return that distribution as a third aux entry, ``(grads, (loss, adapted, dist))``, from the
    forward pass it already made (``MAMLTrainer``'s default path does); else it is computed here."""
    grads, aux = grad_fn(params, train, valid, None)
    loss, adapted = aux[0], tree_detach(aux[1])
    if not torch.isfinite(loss):
        raise FloatingPointError(f"meta-loss is not finite ({float(loss)}); stopping before the update")
    if len(aux) > 2:
        old_dist = tuple(d.detach() for d in aux[2])
    else:
        with torch.no_grad():
            old_dist = _adapted_dist(adapted, valid, policy)
    return grads, loss, adapted, old_dist


def default_score_fn(policy: Functional, inner_opt: GradientTransformation, steps: int) -> Callable:
    """What the meta-steps evaluate at new params unless given a ``score_fn``: the surrogate and
    the mean KL from one forward pass, ``(params, train, valid, old_log_prob, old_dist) -> (loss, kl)``.
    Build it here to compile it (``torch.compile(default_score_fn(...))``) and pass it as ``score_fn``."""
    _check_policy(policy, "default_score_fn")
    _check_opt(inner_opt, "inner_opt")
    _check_steps(steps)
    return partial(_surrogate_and_kl, policy=policy, inner_opt=inner_opt, steps=steps)


def _check_step_fns(where: str, grad_fn: object, score_fn: object) -> None:
    """The meta-steps' optional replacements of the meta-gradient and of the scoring of new
    params: None or callables."""
    for name, fn, args in (("grad_fn", grad_fn, "(params, train, valid, old_log_prob)"),
                           ("score_fn", score_fn, "(params, train, valid, old_log_prob, old_dist)")):
        if fn is not None and not callable(fn):
            raise TypeError(f"{where}: {name} must be None or a callable {args}, got {type(fn).__name__}")


def _estimator_pieces(
    estimator: str, policy: Functional, inner_opt: GradientTransformation, steps: int, first_order: bool,
) -> tuple[Callable, Callable | None]:
    """``(surrogate, stacked inner losses or None)`` of a meta-gradient estimator; ``"maml"`` gives
    ``maml_surrogate`` itself, so the default path is the one it always was."""
    from .estimators import _inner_task_losses, check_estimator, estimator_surrogate

    if check_estimator(estimator) == "maml":
        return partial(maml_surrogate, policy=policy, inner_opt=inner_opt, steps=steps, first_order=first_order), None
    surrogate = partial(estimator_surrogate, policy=policy, inner_opt=inner_opt, steps=steps, first_order=first_order,
                        estimator=estimator)
    return surrogate, _inner_task_losses(estimator)


def maml_trpo_step(
    params: Params | MetaParams,
    train: TrainData,
    valid: RLBatch,
    policy: Functional,
    inner_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
    config: TRPOConfig = TRPOConfig(),
    grad_fn: Callable | None = None,
    estimator: str = "maml",
    score_fn: Callable | None = None,
) -> tuple[Params | MetaParams, TRPOStats]:
    """One TRPO meta-update of ``params`` on a meta-batch (leaves ``[N, T, E, ...]``): the
    MAML-RL meta-step of Finn et al. (2017). Returns ``(new_params, stats)``.

    ``params`` may be ``MetaParams(policy_params, inner_state)``: the trust region then covers
    the learned inner-optimizer state too (its effect on the adapted policies enters the KL
    through the exact curvature), and the result has the same structure.
    ``grad_fn`` optionally replaces ``grad_and_value(maml_surrogate, has_aux=True)`` (e.g. by a
    compiled version of it), called as ``grad_fn(params, train, valid, None)`` and returning
    ``(grads, (loss, adapted))`` or ``(grads, (loss, adapted, dist))`` with the adapted policies'
    distribution on ``valid.obs`` (saves the step a forward pass); likewise
    ``score_fn`` replaces what the line search evaluates, :func:`default_score_fn`'s
    ``score_fn(params, train, valid, old_log_prob, old_dist)
    -> (loss, kl)`` under ``no_grad`` (e.g. compiled: the evaluations are a quarter of the step).
    ``estimator`` picks the meta-gradient estimator (``meta.estimators``; ``"maml"``, the default,
    is this function as it always was); with ``"dice"`` / ``"lvc"`` the exact curvature also
    differentiates through that estimator's inner objective (same values, its Jacobian).
    """
    _check_policy(policy, "maml_trpo_step")
    _check_step_fns("maml_trpo_step", grad_fn, score_fn)
    if not isinstance(config, TRPOConfig):
        raise TypeError(f"config must be a TRPOConfig, got {type(config).__name__}")
    surrogate, task_losses = _estimator_pieces(estimator, policy, inner_opt, steps, first_order)
    grad_fn = grad_fn or grad_and_value(surrogate, has_aux=True)
    score_fn = score_fn or default_score_fn(policy, inner_opt, steps)
    # One pass gives the meta-gradient, the loss and the adapted params at the current point.
    grads, old_loss, adapted0, old_dist = _meta_gradient_at(grad_fn, params, train, valid, policy)
    old_log_prob = _log_prob(policy, old_dist, valid.actions)
    flat_params, unravel = ravel(params)
    flat_grad, _ = ravel(grads)

    sub_valid = _subsample(valid, config.fisher_subsample, config.fisher_tasks)
    if config.curvature == "exact":
        sub_train = _subsample(train, config.fisher_subsample, config.fisher_tasks)

        def outputs_fn(flat: torch.Tensor) -> Dist:
            policy_params, inner_state = _split_meta(unravel(flat))
            if task_losses is None:
                adapted = adapt_tasks(policy_params, sub_train, policy, inner_opt, steps=steps, first_order=first_order,
                                      inner_state=inner_state)
            else:
                adapted = _adapt_stacked(policy_params, sub_train, policy, inner_opt, steps=steps,
                                         first_order=first_order, inner_state=inner_state, task_losses=task_losses)[-1]
            return _as_dist(policy, policy.apply_stacked(adapted, sub_valid.obs))
    else:
        if isinstance(params, MetaParams):
            raise ValueError("curvature='adapted' needs plain policy params; with a learned inner-optimizer state "
                             "(MetaParams) use curvature='exact'")
        sub_adapted = tree_map(lambda a: a[: config.fisher_tasks], adapted0)

        def outputs_fn(flat: torch.Tensor) -> Dist:
            shift = unravel(flat - flat_params)  # adapted(theta) ~ adapted(theta0) + (theta - theta0)
            moved = tree_map(lambda a, s: a + s, sub_adapted, shift)
            return _as_dist(policy, policy.apply_stacked(moved, sub_valid.obs))

    closed_form = (partial(_gaussian_mean_kl_curvature, mask=sub_valid.mask)
                   if policy.distribution.fisher is not None else None)
    curvature = gauss_newton_operator(
        outputs_fn, lambda old, new: _mean_kl(policy, old, new, sub_valid.mask), flat_params,
        output_curvature=closed_form,
    )
    full_step = trpo_step_direction(curvature, flat_grad.detach(), config.max_kl, config.cg_iters, config.cg_damping)

    def loss_and_kl(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return score_fn(unravel(flat), train, valid, old_log_prob, old_dist)

    result = backtracking_line_search(
        loss_and_kl, flat_params.detach(), full_step, float(old_loss), config.max_kl,
        config.ls_max_steps, config.ls_backtrack_ratio,
    )
    new_params = tree_map(lambda p: p.detach().clone(), unravel(result.params))
    stats = TRPOStats(
        meta_loss=float(old_loss), loss_after=result.loss, kl=result.kl,
        step_fraction=result.step_fraction, grad_norm=float(flat_grad.norm()),
    )
    if not all(math.isfinite(v) for v in stats):
        raise FloatingPointError(f"TRPO meta-step produced non-finite statistics {stats}")
    return new_params, stats


def maml_gradient_step(
    params: Params | MetaParams,
    meta_opt_state: Any,
    train: TrainData,
    valid: RLBatch,
    policy: Functional,
    inner_opt: GradientTransformation,
    meta_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
    grad_fn: Callable | None = None,
    estimator: str = "maml",
    score_fn: Callable | None = None,
) -> tuple[Params | MetaParams, Any, TRPOStats]:
    """A plain first-order-optimizer meta-step (e.g. Adam) on the exact meta-gradient.

    ``meta_opt_state = meta_opt.init(params)`` to start. Returns ``(new_params,
    new_meta_opt_state, stats)``; ``stats.kl`` is the mean KL of the adapted policies before and
    after the step, for monitoring. ``estimator``: the meta-gradient estimator (``meta.estimators``).
    ``grad_fn`` / ``score_fn``: replacements (e.g. compiled) of the meta-gradient and of the
    function that scores the new params, as in :func:`maml_trpo_step`.
    """
    _check_policy(policy, "maml_gradient_step")
    _check_step_fns("maml_gradient_step", grad_fn, score_fn)
    surrogate, _ = _estimator_pieces(estimator, policy, inner_opt, steps, first_order)
    grad_fn = grad_fn or grad_and_value(surrogate, has_aux=True)
    grads, loss, _, old_dist = _meta_gradient_at(grad_fn, params, train, valid, policy)
    updates, meta_opt_state = meta_opt.update(grads, meta_opt_state, params)
    new_params = tree_map(lambda p, u: (p + u).detach(), params, updates)
    with torch.no_grad():
        old_log_prob = _log_prob(policy, old_dist, valid.actions)
        score_fn = score_fn or default_score_fn(policy, inner_opt, steps)
        loss_after, kl = score_fn(new_params, train, valid, old_log_prob, old_dist)
    flat_grad, _ = ravel(grads)
    stats = TRPOStats(float(loss), float(loss_after), float(kl), 1.0, float(flat_grad.norm()))
    return new_params, meta_opt_state, stats
