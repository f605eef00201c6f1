"""Policy-gradient, PPO and TRPO surrogate losses over masked episodes.

Inputs are time-major ``[T, B]`` (steps x episodes). Reductions follow MAML-RL: average over
each episode's valid steps, then over episodes.
"""

from __future__ import annotations

import torch

__all__ = ["masked_episode_mean", "normalize_advantages", "policy_gradient_loss", "ppo_clip_loss", "surrogate_loss"]


def masked_episode_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each episode's valid steps, then over episodes. ``[T, B] -> []``."""
    if x.shape != mask.shape:
        raise ValueError(f"expected x and mask of one shape, got {tuple(x.shape)} and {tuple(mask.shape)}")
    mask = mask.to(x.dtype)
    lengths = mask.sum(dim=0).clamp_min(1.0)
    return torch.mean((x * mask).sum(dim=0) / lengths)


def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-std over the valid steps; padding stays 0. ``[T, B] -> [T, B]``."""
    mask = mask.to(advantages.dtype)
    count = mask.sum().clamp_min(1.0)
    mean = (advantages * mask).sum() / count
    var = (((advantages - mean) * mask) ** 2).sum() / count
    return (advantages - mean) / torch.sqrt(var + eps) * mask


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss ``-E[log pi(a|s) A]``; advantages are treated as constants. ``[T, B] -> []``."""
    return -masked_episode_mean(log_prob * advantages.detach(), mask)


def surrogate_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """TRPO surrogate ``-E[pi/pi_old A]``. ``[T, B] -> []``."""
    ratio = torch.exp(log_prob - old_log_prob.detach())
    return -masked_episode_mean(ratio * advantages.detach(), mask)


def ppo_clip_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """PPO clipped surrogate ``-E[min(r A, clip(r, 1-eps, 1+eps) A)]``. ``[T, B] -> []``."""
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be positive, got {clip_eps}")
    ratio = torch.exp(log_prob - old_log_prob.detach())
    adv = advantages.detach()
    objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    return -masked_episode_mean(objective, mask)
