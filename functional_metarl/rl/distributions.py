"""Log-probabilities, entropies and KL divergences as plain tensor functions.

``torch.distributions`` validates arguments with Python ``if`` on tensor values, which breaks
under ``vmap``; these functions are pure and work under every torch.func transform. Each
reduces over the last (event) axis and keeps the leading ones.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "gaussian_log_prob",
    "gaussian_entropy",
    "gaussian_kl",
    "categorical_log_prob",
    "categorical_entropy",
    "categorical_kl",
]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2) summed over the last axis. ``[..., d] -> [...]``."""
    z = (x - mean) * torch.exp(-log_std)
    return torch.sum(-0.5 * z * z - log_std - 0.5 * _LOG_2PI, dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian. ``[..., d] -> [...]``."""
    return torch.sum(log_std + 0.5 * (1.0 + _LOG_2PI), dim=-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last axis. ``[..., d] -> [...]``."""
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * torch.exp(-2 * log_std_q)
    return torch.sum(0.5 * (var_ratio + mean_term - 1.0) + log_std_q - log_std_p, dim=-1)


def categorical_log_prob(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[action]. ``logits: [..., n]``, ``action: [...]`` (integer) -> ``[...]``."""
    log_p = torch.log_softmax(logits, dim=-1)
    return torch.gather(log_p, -1, action.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits, dim=-1)
    # xlogy gives 0 for a zero-probability (masked, -inf logit) action instead of 0 * -inf = nan.
    return -torch.sum(torch.special.xlogy(torch.exp(log_p), torch.exp(log_p)), dim=-1)


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between categoricals given by logits. ``[..., n] -> [...]``."""
    log_p = torch.log_softmax(logits_p, dim=-1)
    log_q = torch.log_softmax(logits_q, dim=-1)
    p = torch.exp(log_p)
    # Terms with p = 0 contribute 0 (their log_p is -inf, which would give nan).
    return torch.sum(torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)), dim=-1)
