"""Policy-gradient, PPO and TRPO surrogate losses over masked episodes.

Inputs are time-major ``[T, B]`` (steps x episodes). Reductions follow MAML-RL: average over
each episode's valid steps, then over episodes.
"""

from __future__ import annotations

import torch

from .. import checks

__all__ = ["masked_episode_mean", "normalize_advantages", "policy_gradient_loss", "ppo_clip_loss", "surrogate_loss"]


def _check_time_major(where: str, **tensors: torch.Tensor) -> None:
    """Every tensor is ``[T, B]`` with ``T, B >= 1`` and all share one shape: nothing broadcasts.

    Shapes only (static under vmap and compile); the first keyword is the reference.
    """
    (first_name, first), *rest = tensors.items()
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a Tensor [T, B], got {type(x).__name__}")
    if first.ndim != 2:
        raise ValueError(f"{where}: {first_name} expected shape [T, B] (time-major, one task; "
                         f"add a batch axis for a single episode), got {tuple(first.shape)}")
    if 0 in first.shape:
        raise ValueError(f"{where}: {first_name} has an empty axis, shape {tuple(first.shape)}")
    for name, x in rest:
        if x.shape != first.shape:
            raise ValueError(f"{where}: {name} expected shape {tuple(first.shape)} (as {first_name}), "
                             f"got {tuple(x.shape)}; shapes must match exactly, nothing is broadcast")
    if not first.is_floating_point():
        raise TypeError(f"{where}: {first_name} must be floating point, got {first.dtype}")


def masked_episode_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each episode's valid steps, then over episodes. ``x, mask: [T, B] -> []``."""
    _check_time_major("masked_episode_mean", x=x, mask=mask)
    mask = mask.to(x.dtype)
    lengths = mask.sum(dim=0).clamp_min(1.0)
    return torch.mean((x * mask).sum(dim=0) / lengths)


def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-std over the valid steps; padding stays 0. ``[T, B] -> [T, B]``."""
    _check_time_major("normalize_advantages", advantages=advantages, mask=mask)
    checks.non_negative_number(eps, "eps")
    mask = mask.to(advantages.dtype)
    count = mask.sum().clamp_min(1.0)
    mean = (advantages * mask).sum() / count
    var = (((advantages - mean) * mask) ** 2).sum() / count
    return (advantages - mean) / torch.sqrt(var + eps) * mask


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss ``-E[log pi(a|s) A]``; advantages are treated as constants. ``[T, B] -> []``."""
    _check_time_major("policy_gradient_loss", log_prob=log_prob, advantages=advantages, mask=mask)
    return -masked_episode_mean(log_prob * advantages.detach(), mask)


def surrogate_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """TRPO surrogate ``-E[pi/pi_old A]``. ``[T, B] -> []``."""
    _check_time_major("surrogate_loss", log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages, mask=mask)
    ratio = torch.exp(log_prob - old_log_prob.detach())
    return -masked_episode_mean(ratio * advantages.detach(), mask)


def ppo_clip_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """PPO clipped surrogate ``-E[min(r A, clip(r, 1-eps, 1+eps) A)]`` with ``r = exp(log_prob -
    old_log_prob)``. All four inputs ``[T, B]`` (time-major, one task) -> ``[]``."""
    checks.positive_number(clip_eps, "clip_eps")
    _check_time_major("ppo_clip_loss", log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages, mask=mask)
    ratio = torch.exp(log_prob - old_log_prob.detach())
    adv = advantages.detach()
    objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    return -masked_episode_mean(objective, mask)
