"""Discounted returns and GAE(lambda) with masks for episode ends.

Time is axis 0; any trailing axes are batch axes that broadcast (so ``[T]`` is the unbatched
form and ``[T, B]`` works without vmap). ``mask[t] = 1`` when step ``t`` happened, ``0`` on the
padding after an episode ended; padded steps get return / advantage 0 and bootstrap nothing.
"""

from __future__ import annotations

import torch

from .. import checks

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
    checks.probability(value, name)


def _reverse_affine_scan(decay: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``y_t = offset_t + decay_t * y_{t+1}`` with ``y_T = 0``, for every ``t`` at once.

    By recursive doubling: before the pass with shift ``k``, ``y_t = offset_t + decay_t *
    y_{t+k}`` holds for the current (composed) offset and decay, ``y`` beyond the end being 0;
    the pass composes each map with the one ``k`` steps later, so the relation then holds for
    ``2k``. ``ceil(log2 T)`` passes of a few whole-tensor ops replace ``T`` sequential steps
    (the step-per-index loops were about 40 % of the time of a MAML batch's returns, baseline
    and GAE). The sums run in another order than the loop's, so results agree with it to
    rounding, not bit for bit.
    decay, offset: ``[T, ...]`` -> ``[T, ...]``.
    """
    horizon = offset.shape[0]
    shift = 1
    while shift < horizon:
        pad = offset.new_zeros((shift, *offset.shape[1:]))
        offset = offset + decay * torch.cat([offset[shift:], pad])
        if shift * 2 < horizon:  # the last pass needs no composed decay
            decay = decay * torch.cat([decay[shift:], pad])
        shift *= 2
    return offset


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = mask_t * (r_t + gamma * G_{t+1})``, ``G_T = 0``.

    rewards, mask: ``[T, ...]`` -> returns ``[T, ...]``.
    """
    _check_time_major("mask", mask, rewards)
    _check_discount("gamma", gamma)
    mask = mask.to(rewards.dtype)
    return _reverse_affine_scan(gamma * mask, mask * rewards)


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
    return _reverse_affine_scan(gamma * lambda_ * mask, mask * deltas)
