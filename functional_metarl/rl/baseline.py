"""The linear feature baseline of the MAML paper (after Duan et al. 2016).

Features per step: ``[obs, obs**2, t, t**2, t**3, 1]`` with ``t = step / 100``; a ridge
least-squares fit of the returns over the steps that happened. Pure and vmappable: padded
steps enter with weight 0 instead of being indexed out, and the ridge coefficient is chosen
from a fixed ladder by ``torch.where`` rather than by a Python retry loop.
"""

from __future__ import annotations

import torch

from .. import checks

__all__ = ["baseline_features", "fit_linear_baseline", "predict_linear_baseline", "linear_baseline_values"]


def baseline_features(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """obs: ``[T, B, d]``, mask: ``[T, B]`` -> features ``[T, B, 2d + 4]`` (zero on padding)."""
    if obs.ndim != 3 or mask.shape != obs.shape[:2]:
        raise ValueError(
            f"baseline_features expected obs [T, B, d] and mask [T, B], got {tuple(obs.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.to(obs.dtype).unsqueeze(-1)
    steps = torch.arange(obs.shape[0], device=obs.device, dtype=obs.dtype).view(-1, 1, 1) / 100.0
    t = steps.expand(*obs.shape[:2], 1)
    feats = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
    return feats * mask


def fit_linear_baseline(
    obs: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    reg_coeff: float = 1e-5,
    reg_ladder: int = 5,
    max_condition: float | None = None,
) -> torch.Tensor:
    """Ridge weights ``argmin_w sum_valid (f·w - G)^2 + reg * |w|^2``.

    The ridge coefficient starts at ``reg_coeff`` and is raised 10x (up to ``reg_ladder`` rungs)
    while the regularised normal matrix has condition number above ``max_condition``
    (default ``0.1 / eps`` of the dtype) or the solve is not finite.

    obs ``[T, B, d]``, returns ``[T, B]``, mask ``[T, B]`` -> weights ``[2d + 4]``.
    """
    if returns.shape != mask.shape:
        raise ValueError(f"returns expected shape {tuple(mask.shape)}, got {tuple(returns.shape)}")
    checks.positive_number(reg_coeff, "reg_coeff")
    checks.positive_int(reg_ladder, "reg_ladder")
    feats = baseline_features(obs, mask).reshape(-1, 2 * obs.shape[-1] + 4)
    target = (returns * mask.to(returns.dtype)).reshape(-1)
    xtx = feats.T @ feats
    xty = feats.T @ target
    if max_condition is None:
        max_condition = 0.1 / torch.finfo(obs.dtype).eps
    eye = torch.eye(xtx.shape[0], device=xtx.device, dtype=xtx.dtype)
    regs = reg_coeff * 10.0 ** torch.arange(reg_ladder, device=xtx.device, dtype=xtx.dtype)
    systems = xtx.unsqueeze(0) + regs.view(-1, 1, 1) * eye  # [L, F, F]
    # solve_ex reports a singular rung through ``info`` instead of raising, so a higher rung
    # can still be chosen (and it stays vmappable).
    solutions, info = torch.linalg.solve_ex(systems, xty.expand(reg_ladder, -1))  # [L, F]
    ok = (info == 0) & (torch.linalg.cond(systems) < max_condition) & torch.isfinite(solutions).all(dim=-1)
    solutions = torch.nan_to_num(solutions, nan=0.0, posinf=0.0, neginf=0.0)
    # Index of the first acceptable rung, or the last rung when none is acceptable.
    rung = torch.where(ok.any(), torch.argmax(ok.to(torch.int64)), torch.tensor(reg_ladder - 1, device=ok.device))
    return solutions[rung]


def predict_linear_baseline(weights: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Baseline values ``[T, B]`` (zero on padding) for obs ``[T, B, d]``."""
    return baseline_features(obs, mask) @ weights


def linear_baseline_values(obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fit on these episodes and predict on them, as MAML-RL does per task. ``-> [T, B]``."""
    return predict_linear_baseline(fit_linear_baseline(obs, returns, mask), obs, mask)
