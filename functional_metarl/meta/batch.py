"""MAML-RL data: per-task episodes turned into the batches an inner step and the outer
surrogate learn from.

Per-task data is an :class:`RLBatch` with time-major leaves ``[T, E, ...]``; a meta-batch
stacks tasks on a leading axis ``[N, T, E, ...]``. The inner-loop data ``train`` is one
RLBatch, or a tuple with one per inner step (:data:`TrainData`): step ``k`` should learn from
episodes of the policy adapted ``k`` times, as the MAML trainer collects them; one RLBatch with
``steps > 1`` reuses the same episodes, whose REINFORCE gradient is then off-policy after the
first step.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch.func import vmap

from .. import checks
from ..distributions import Distribution
from ..envs.rollout import Episodes
from ..rl import discounted_returns, gae, linear_baseline_values, normalize_advantages

__all__ = [
    "RLBatch",
    "TrainData",
    "make_rl_batch",
    "make_rl_batches",
    "FINAL_REWARD_WINDOW",
    "scale_by_final_reward",
    "per_step_batches",
    "check_rl_batch",
    "check_train_data",
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

TrainData = RLBatch | tuple[RLBatch, ...]


def check_episodes(episodes: Episodes) -> None:
    """Shapes ``[N, T, E, ...]`` and values of a batch of episodes (see ``envs.Episodes``): the
    boundary check of the MAML-RL path, run once per batch where the data enters."""
    checks.instance(episodes, "episodes", Episodes)
    for name, x in zip(Episodes._fields, episodes):
        checks.tensor(x, f"episodes.{name}")
    rewards, mask = episodes.rewards, episodes.mask
    if rewards.ndim != 3 or 0 in rewards.shape:
        raise ValueError(f"episodes.rewards expected shape [N, T, E] (task-major, non-empty), got {tuple(rewards.shape)}")
    checks.same_shape(mask, "episodes.mask", rewards, "episodes.rewards")
    if episodes.obs.ndim != 4 or episodes.obs.shape[:3] != rewards.shape:
        raise ValueError(f"episodes.obs expected shape {tuple(rewards.shape)} + [obs_dim], got {tuple(episodes.obs.shape)}")
    if episodes.actions.shape[:3] != rewards.shape or episodes.actions.ndim not in (3, 4):
        raise ValueError(f"episodes.actions expected shape {tuple(rewards.shape)} (+ [act_dim]), "
                         f"got {tuple(episodes.actions.shape)}")
    checks.floating_tensor(rewards, "episodes.rewards")
    checks.floating_tensor(episodes.obs, "episodes.obs")
    checks.finite_tensor(rewards, "episodes.rewards")
    checks.finite_tensor(episodes.obs, "episodes.obs")
    checks.binary_mask(mask, "episodes.mask")


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
        std = _advantage_scale(advantages, mask)
        advantages = normalize_advantages(advantages, mask)
    else:
        std = torch.ones((), dtype=advantages.dtype, device=advantages.device)
    return RLBatch(obs, actions, advantages, mask, rewards, std)


def _advantage_scale(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
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
    check_episodes(episodes)
    checks.probability(gamma, "gamma")
    checks.probability(gae_lambda, "gae_lambda")
    checks.flag(normalize, "normalize")
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
    checks.instance(batch, "batch", RLBatch)
    if batch.rewards is None:
        raise ValueError("scale_by_final_reward: batch.rewards is None; build the batch with make_rl_batches")
    if batch.rewards.ndim != 3 or batch.advantages.shape != batch.rewards.shape:
        raise ValueError(f"scale_by_final_reward: expected a task-major batch, rewards and advantages [N, T, E], "
                         f"got {tuple(batch.rewards.shape)} and {tuple(batch.advantages.shape)}")
    checks.positive_number(reference, "reference")
    checks.int_in_range(window, "window", 1, batch.rewards.shape[1])
    if bool((batch.rewards > 0).any()):
        raise ValueError("scale_by_final_reward: expects cost-like rewards (all <= 0, the negative remaining error), "
                         f"got a maximum of {float(batch.rewards.max())}")
    error = -batch.rewards[:, -window:].mean(dim=(1, 2))  # [N]
    scale = error / reference
    # A task that ended at the goal (s_n = 0) takes no step; its scale is left as it was.
    std = None if batch.advantage_std is None else batch.advantage_std / torch.where(scale > 0, scale, 1.0)
    return batch._replace(advantages=batch.advantages * scale[:, None, None], advantage_std=std)


def per_step_batches(train: TrainData, steps: int) -> tuple[RLBatch, ...]:
    """The inner batch of every step: ``train`` repeated ``steps`` times, or the tuple itself."""
    return (train,) * steps if isinstance(train, RLBatch) else tuple(train)


def check_train_data(train: object, steps: int, distribution: Distribution) -> tuple[RLBatch, ...]:
    """The per-step inner batches of ``train`` (one RLBatch, or a tuple of ``steps``), each checked
    by :func:`check_rl_batch` with a task axis."""
    checks.positive_int(steps, "steps")
    if isinstance(train, RLBatch):
        batches = (train,) * steps
    elif isinstance(train, (tuple, list)) and all(isinstance(b, RLBatch) for b in train):
        if len(train) != steps:
            raise ValueError(f"train: got {len(train)} per-step inner batches for {steps} inner steps; expected one per step")
        batches = tuple(train)
    else:
        raise TypeError(f"train must be an RLBatch or a tuple of RLBatches (one per inner step), got {type(train).__name__}")
    for k, batch in enumerate(batches):
        check_rl_batch(batch, f"train[{k}]" if len(batches) > 1 else "train", distribution, task_axis=True)
    return batches


def check_rl_batch(batch: RLBatch, name: str, distribution: Distribution, task_axis: bool) -> None:
    """Shapes of an RLBatch: obs ``[(N,) T, E, d]``, actions ``[(N,) T, E, a]`` (Gaussian) or
    integer ``[(N,) T, E]`` (categorical), advantages and mask ``[(N,) T, E]``."""
    lead = 3 if task_axis else 2
    axes = "[N, T, E]" if task_axis else "[T, E]"
    checks.instance(batch, name, RLBatch)
    if batch.mask.ndim != lead:
        raise ValueError(f"{name}.mask expected shape {axes}, got {tuple(batch.mask.shape)}")
    shape = batch.mask.shape
    if batch.advantages.shape != shape:
        raise ValueError(f"{name}.advantages expected shape {tuple(shape)} (as mask), got {tuple(batch.advantages.shape)}")
    if batch.obs.shape[:lead] != shape or batch.obs.ndim != lead + 1:
        raise ValueError(f"{name}.obs expected shape {tuple(shape)} + [obs_dim], got {tuple(batch.obs.shape)}")
    if distribution.discrete:
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
