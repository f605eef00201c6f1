"""Action distributions: log-probabilities, entropies and KL divergences as plain tensor
functions, and :class:`Distribution` values that bundle them per family.

A policy template (``nn.gaussian_policy``, ``nn.categorical_policy``) carries its
:class:`Distribution`; algorithms call ``policy.distribution.log_prob(...)`` and never dispatch
on a name (rlax's ``_src/distributions.py`` is the model: a distribution is a value of pure
functions).

``torch.distributions`` validates arguments with Python ``if`` on tensor values, which breaks
under ``vmap``; these functions are pure and work under every torch.func transform. Each
reduces over the last (event) axis and keeps the leading ones.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch

__all__ = [
    "Distribution",
    "DistParams",
    "GAUSSIAN",
    "CATEGORICAL",
    "gaussian_log_prob",
    "gaussian_entropy",
    "gaussian_kl",
    "categorical_log_prob",
    "categorical_entropy",
    "categorical_kl",
]

_LOG_2PI = math.log(2 * math.pi)


def _check_event(where: str, name: str, x: torch.Tensor, like_name: str, like: torch.Tensor,
                 broadcast: bool = False) -> None:
    """``x`` has ``like``'s shape (or, with ``broadcast``, broadcasts to it without growing it)."""
    for n, t in ((like_name, like), (name, x)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {n} must be a Tensor, got {type(t).__name__}")
    if like.ndim == 0:
        raise ValueError(f"{where}: {like_name} expected shape [..., d] with an event axis, got a 0-d tensor")
    if broadcast:
        ok = x.ndim >= 1 and x.shape[-1] == like.shape[-1] and x.ndim <= like.ndim and all(
            a in (1, b) for a, b in zip(x.shape[::-1], like.shape[::-1]))
    else:
        ok = x.shape == like.shape
    if not ok:
        rule = "broadcastable to" if broadcast else "equal to"
        raise ValueError(f"{where}: {name} expected a shape {rule} {like_name}'s {tuple(like.shape)}, got {tuple(x.shape)}")


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2) summed over the last axis. ``[..., d] -> [...]``.

    ``x`` has ``mean``'s shape; ``log_std`` has it too or broadcasts to it (a state-independent
    ``[d]``)."""
    _check_event("gaussian_log_prob", "x", x, "mean", mean)
    _check_event("gaussian_log_prob", "log_std", log_std, "mean", mean, broadcast=True)
    z = (x - mean) * torch.exp(-log_std)
    return torch.sum(-0.5 * z * z - log_std - 0.5 * _LOG_2PI, dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian. ``[..., d] -> [...]``."""
    return torch.sum(log_std + 0.5 * (1.0 + _LOG_2PI), dim=-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last axis. ``[..., d] -> [...]``."""
    _check_event("gaussian_kl", "mean_q", mean_q, "mean_p", mean_p)
    _check_event("gaussian_kl", "log_std_p", log_std_p, "mean_p", mean_p, broadcast=True)
    _check_event("gaussian_kl", "log_std_q", log_std_q, "mean_p", mean_p, broadcast=True)
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * torch.exp(-2 * log_std_q)
    return torch.sum(0.5 * (var_ratio + mean_term - 1.0) + log_std_q - log_std_p, dim=-1)


def categorical_log_prob(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[action]. ``logits: [..., n]``, ``action: [...]`` (integer) -> ``[...]``.

    A floating-point ``action`` is refused rather than truncated to an index. Indices outside
    ``[0, n)`` are not checked here (that would need a host sync under vmap); ``gather`` raises
    for them on CPU, and the envs check the actions they are given."""
    if not isinstance(action, torch.Tensor) or action.is_floating_point() or action.dtype == torch.bool:
        got = action.dtype if isinstance(action, torch.Tensor) else type(action).__name__
        raise TypeError(f"categorical_log_prob: action must be an integer Tensor of indices, got {got}")
    if not isinstance(logits, torch.Tensor) or logits.ndim == 0 or action.shape != logits.shape[:-1]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"categorical_log_prob: action expected shape logits.shape[:-1], got action "
                         f"{tuple(action.shape)} for logits {got}")
    log_p = torch.log_softmax(logits, dim=-1)
    return torch.gather(log_p, -1, action.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits). ``[..., n] -> [...]``."""
    log_p = torch.log_softmax(logits, dim=-1)
    # xlogy gives 0 for a zero-probability (masked, -inf logit) action instead of 0 * -inf = nan.
    return -torch.sum(torch.special.xlogy(torch.exp(log_p), torch.exp(log_p)), dim=-1)


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between categoricals given by logits. ``[..., n] -> [...]``."""
    _check_event("categorical_kl", "logits_q", logits_q, "logits_p", logits_p)
    log_p = torch.log_softmax(logits_p, dim=-1)
    log_q = torch.log_softmax(logits_q, dim=-1)
    p = torch.exp(log_p)
    # Terms with p = 0 contribute 0 (their log_p is -inf, which would give nan).
    return torch.sum(torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)), dim=-1)


DistParams = tuple[torch.Tensor, ...]  # a distribution's parameters: (mean, log_std) or (logits,)


class Distribution(NamedTuple):
    """An action distribution as a value of pure functions of its parameters (a ``DistParams``
    tuple: ``(mean, log_std)`` for :data:`GAUSSIAN`, ``(logits,)`` for :data:`CATEGORICAL`).

    Every function works under vmap / grad and keeps the leading axes ``[...]``:

    * ``params(out) -> DistParams``: the policy network's output as the tuple;
    * ``log_prob(dist, action) -> [...]``: ``action [..., d]`` (float) or ``[...]`` (integer index);
    * ``entropy(dist) -> [...]``;
    * ``kl(old, new) -> [...]``: ``KL(old || new)``;
    * ``sample(dist, noise) -> action``: a sample from explicit noise of :meth:`noise_size` entries
      per action (standard normal for a Gaussian, standard Gumbel for a categorical: then the
      argmax of ``logits + noise`` is an exact sample of ``softmax(logits)``);
    * ``fisher(old, tangent) -> DistParams``: the Hessian of ``kl(old, new)`` in ``new`` at
      ``new = old`` times ``tangent``, entry by entry, in closed form; ``None`` where none is
      coded (TRPO then differentiates ``kl`` twice instead).

    ``discrete``: actions are integer indices (``[...]``) rather than vectors (``[..., d]``).
    """

    name: str
    discrete: bool
    params: Callable[[Any], DistParams]
    log_prob: Callable[[DistParams, torch.Tensor], torch.Tensor]
    entropy: Callable[[DistParams], torch.Tensor]
    kl: Callable[[DistParams, DistParams], torch.Tensor]
    sample: Callable[[DistParams, torch.Tensor], torch.Tensor]
    fisher: Callable[[DistParams, DistParams], DistParams] | None


def _gaussian_fisher(old: DistParams, tangent: DistParams) -> DistParams:
    # d2 KL / d mean2 = 1 / sigma^2 and d2 KL / d log_std2 = 2, per entry.
    return tangent[0] * torch.exp(-2 * old[1]), 2.0 * tangent[1]


GAUSSIAN = Distribution(
    name="gaussian",
    discrete=False,
    params=lambda out: tuple(out),
    log_prob=lambda d, action: gaussian_log_prob(d[0], d[1], action),
    entropy=lambda d: gaussian_entropy(d[1]).expand(d[0].shape[:-1]),
    kl=lambda old, new: gaussian_kl(old[0], old[1], new[0], new[1]),
    sample=lambda d, noise: torch.addcmul(d[0], torch.exp(d[1]), noise),
    fisher=_gaussian_fisher,
)
"""Diagonal Gaussian over ``[..., d]`` actions; a policy outputs ``(mean, log_std)``."""

CATEGORICAL = Distribution(
    name="categorical",
    discrete=True,
    params=lambda out: (out,),
    log_prob=lambda d, action: categorical_log_prob(d[0], action),
    entropy=lambda d: categorical_entropy(d[0]),
    kl=lambda old, new: categorical_kl(old[0], new[0]),
    sample=lambda d, noise: torch.argmax(d[0] + noise, dim=-1),
    fisher=None,
)
"""Categorical over ``num_actions`` integer actions; a policy outputs ``logits [..., num_actions]``."""
