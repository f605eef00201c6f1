"""Discounted returns and GAE(lambda) with masks for episode ends.

Time is axis 0; any trailing axes are batch axes that broadcast (so ``[T]`` is the unbatched
form and ``[T, B]`` works without vmap). ``mask[t] = 1`` when step ``t`` happened, ``0`` on the
padding after an episode ended; padded steps get return / advantage 0 and bootstrap nothing.
"""

from __future__ import annotations

import torch

__all__ = ["discounted_returns", "gae"]


def _check_time_major(name: str, x: torch.Tensor, like: torch.Tensor) -> None:
    if not isinstance(like, torch.Tensor) or not isinstance(x, torch.Tensor):
        bad = name if not isinstance(x, torch.Tensor) else "rewards"
        raise TypeError(f"{bad} must be a Tensor [T, ...]")
    if like.ndim == 0 or like.shape[0] == 0:
        raise ValueError(f"rewards expected shape [T, ...] with T >= 1, got {tuple(like.shape)}")
    if not like.is_floating_point():
        raise TypeError(f"rewards must be floating point, got {like.dtype}")
    if x.shape != like.shape:
        raise ValueError(f"{name} expected shape {tuple(like.shape)} (same as rewards), got {tuple(x.shape)}")


def _check_discount(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = mask_t * (r_t + gamma * G_{t+1})``, ``G_T = 0``.

    rewards, mask: ``[T, ...]`` -> returns ``[T, ...]``.
    """
    _check_time_major("mask", mask, rewards)
    _check_discount("gamma", gamma)
    mask = mask.to(rewards.dtype)
    out = []
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = mask[t] * (rewards[t] + gamma * running)
        out.append(running)
    return torch.stack(out[::-1])


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lambda_: float
) -> torch.Tensor:
    """Generalised advantage estimation (Schulman et al. 2016).

    ``delta_t = r_t + gamma * mask_{t+1} V_{t+1} - V_t`` (with ``V_T = 0``) and
    ``A_t = mask_t * (delta_t + gamma * lambda * A_{t+1})``.

    rewards, values, mask: ``[T, ...]`` -> advantages ``[T, ...]``.
    """
    _check_time_major("values", values, rewards)
    _check_time_major("mask", mask, rewards)
    _check_discount("gamma", gamma)
    _check_discount("lambda_", lambda_)
    mask = mask.to(rewards.dtype)
    values = values * mask
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    deltas = rewards + gamma * next_values - values
    out = []
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = mask[t] * (deltas[t] + gamma * lambda_ * running)
        out.append(running)
    return torch.stack(out[::-1])
