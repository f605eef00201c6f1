"""Distributional RL on a fixed categorical support (C51, Bellemare et al. 2017).

Unbatched first: every function handles one transition; batch with ``torch.func.vmap``.
"""

from __future__ import annotations

import torch

from .. import checks

__all__ = ["categorical_projection", "categorical_q_values", "categorical_double_q_loss"]


def categorical_projection(z_p: torch.Tensor, probs: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Project the distribution with atoms ``z_p [Kp]`` and probabilities ``probs [Kp]`` onto
    the fixed, evenly spaced support ``z_q [K]``. Returns probabilities ``[K]``.

    This is the projection ``Phi`` of Bellemare et al. (2017), Eq. 7: each source atom is
    clipped to ``[z_q[0], z_q[-1]]`` and its mass split between the two neighbouring target
    atoms in proportion to closeness,

        ``(Phi p)_i = sum_j clip(1 - |clip(z_p[j]) - z_q[i]| / dz, 0, 1) * probs[j]``.

    Written this way, a source atom that lands exactly on a target atom gives all its mass
    to that atom. The paper's Algorithm 1 (``l = floor(b)``, ``u = ceil(b)``, add
    ``p (u - b)`` to ``l`` and ``p (b - l)`` to ``u``) loses that mass when ``b`` is an integer
    (both shares are 0); popular implementations patch it by shifting ``l`` / ``u``. We follow
    Eq. 7, which is what Algorithm 1 means, and so conserve mass exactly.
    """
    if z_p.ndim != 1 or probs.shape != z_p.shape or z_q.ndim != 1:
        raise ValueError(
            f"categorical_projection expected z_p [Kp], probs [Kp], z_q [K], got "
            f"{tuple(z_p.shape)}, {tuple(probs.shape)}, {tuple(z_q.shape)}"
        )
    if z_q.shape[0] < 2:
        raise ValueError(f"the support z_q needs at least 2 atoms, got {z_q.shape[0]}")
    v_min, v_max = z_q[0], z_q[-1]
    dz = z_q[1] - z_q[0]
    z_clipped = torch.clamp(z_p, v_min, v_max)  # [Kp]
    weight = torch.clamp(1.0 - (z_clipped.unsqueeze(0) - z_q.unsqueeze(1)).abs() / dz, 0.0, 1.0)  # [K, Kp]
    return weight @ probs


def categorical_q_values(logits: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Expected values ``sum_i softmax(logits)_i z_i``. logits ``[..., A, K]``, atoms ``[K]`` -> ``[..., A]``."""
    return torch.sum(torch.softmax(logits, dim=-1) * atoms, dim=-1)


def categorical_double_q_loss(
    atoms: torch.Tensor,
    logits_tm1: torch.Tensor,
    a_tm1: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    logits_t: torch.Tensor,
    q_t_selector: torch.Tensor,
) -> torch.Tensor:
    """Rainbow's distributional (double, n-step) loss for one transition.

    The target distribution is the target net's distribution at ``s_t`` for the action
    ``argmax_a q_t_selector[a]`` (the online net's mean values: double Q-learning; pass the
    target net's own mean values for plain C51), shifted to ``r_t + discount_t * z`` and
    projected onto ``atoms``. It carries no gradient.

    Returns ``KL(target || softmax(logits_tm1[a_tm1]))``, a ``[]`` tensor. Its gradient equals
    the cross-entropy's (the target is fixed) and its value is what Rainbow prioritises by
    ("the KL loss"); cross-entropy, which some implementations use as priority, differs from
    it by the target's entropy.

    Args:
        atoms: the fixed support ``[K]`` (evenly spaced).
        logits_tm1: online logits at ``s_tm1``, ``[A, K]``.
        a_tm1: action taken, ``[]`` integer.
        r_t: n-step return ``[]``; discount_t: ``gamma^n (1 - terminated)``, ``[]``.
        logits_t: target-net logits at ``s_t``, ``[A, K]``.
        q_t_selector: values ``[A]`` that choose the bootstrap action.
    """
    if logits_tm1.ndim != 2 or logits_t.shape != logits_tm1.shape or atoms.shape != logits_tm1.shape[-1:]:
        raise ValueError(
            f"categorical_double_q_loss expected logits [A, K] and atoms [K], got {tuple(logits_tm1.shape)}, "
            f"{tuple(logits_t.shape)} and {tuple(atoms.shape)}"
        )
    if q_t_selector.shape != logits_t.shape[:1]:
        raise ValueError(f"q_t_selector expected shape {tuple(logits_t.shape[:1])}, got {tuple(q_t_selector.shape)}")
    checks.integer_tensor(a_tm1, "a_tm1", ndim=0)  # an index: a float would be truncated
    a_star = torch.argmax(q_t_selector)
    probs_t = torch.softmax(logits_t[a_star], dim=-1)
    target = categorical_projection(r_t + discount_t * atoms, probs_t, atoms).detach()
    log_p = torch.log_softmax(logits_tm1[a_tm1.long()], dim=-1)
    return torch.sum(torch.special.xlogy(target, target) - target * log_p)
