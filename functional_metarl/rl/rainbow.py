"""Rainbow's loss (Hessel et al. 2018) as a pure function of params and a replay batch.

Composed from the unbatched pieces in :mod:`.distributional` and :mod:`.value_learning`, batched
with ``vmap``; the runner (``runners.rainbow``) only samples data and noise and applies updates.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.func import vmap

from .. import checks
from ..nn import QNetwork
from ..tree import Params
from .distributional import categorical_double_q_loss, categorical_q_values
from .value_learning import q_learning_loss

__all__ = ["q_values", "rainbow_loss"]


def q_values(params: Params, obs: torch.Tensor, net: QNetwork, *, atoms: torch.Tensor | None = None,
             noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean action values ``[..., A]``: the expectation over atoms when ``atoms`` is given."""
    out = net.apply(params, obs, noise)
    return out if atoms is None else categorical_q_values(out, atoms)


def rainbow_loss(
    params: Params,
    target_params: Params,
    batch: Any,
    weights: torch.Tensor,
    noise_online: dict | None,
    noise_target: dict | None,
    *,
    net: QNetwork,
    atoms: torch.Tensor | None,
    gamma: float,
    double: bool,
    huber_delta: float | None = 1.0,
    checked: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted Rainbow loss over a batch; pure.

    ``batch`` holds ``B`` n-step transitions (a ``runners.replay.Transition``: ``obs``,
    ``action``, ``reward``, ``next_obs``, ``done``, ``n_steps``, each with leading axis ``B``), ``weights [B]`` the importance weights (ones for
    uniform replay). The online net (with ``noise_online``) gives the distribution at
    ``s_tm1`` and, for double Q-learning, chooses the bootstrap action at ``s_t``; the target net
    (independent ``noise_target``) gives the bootstrap distribution. The per-transition losses
    are vmapped from the unbatched :func:`~functional_metarl.rl.categorical_double_q_loss`
    (or :func:`~functional_metarl.rl.q_learning_loss` when ``atoms`` is ``None``).

    ``huber_delta`` (scalar Q-head only): the Huber loss's threshold, ``None`` for ``0.5 td^2``.
    ``checked=False`` skips the argument checks and evaluates the net with
    :meth:`~functional_metarl.nn.QNetwork.apply_unchecked` (same numbers, bit for bit): for a hot
    loop whose inputs were checked once, and for ``torch.compile``.

    Returns ``(loss [], priorities [B])``: the weighted mean, and the per-transition KL (or
    ``|td|``) for the priority update.
    """
    if checked:
        checks.probability(gamma, "gamma")
        checks.flag(double, "double")
        checks.floating_tensor(weights, "weights", shape=tuple(batch.reward.shape))
    apply = net.apply if checked else net.apply_unchecked
    discount_t = gamma ** batch.n_steps.to(batch.reward.dtype) * (1.0 - batch.done)
    if double:
        # one online pass over s_tm1 and s_t (same noise); the s_t half only selects actions
        both = apply(params, torch.cat([batch.obs, batch.next_obs]), noise_online)
        out_tm1, out_sel = both[: batch.obs.shape[0]], both[batch.obs.shape[0] :].detach()
    else:
        out_tm1 = apply(params, batch.obs, noise_online)
    with torch.no_grad():
        out_t = apply(target_params, batch.next_obs, noise_target)
        if not double:
            out_sel = out_t
        q_sel = out_sel if atoms is None else categorical_q_values(out_sel, atoms)
        q_val = out_t if atoms is None else None
    if not checked:
        per, priorities = _batched_losses(out_tm1, batch.action, batch.reward, discount_t, out_t, q_sel, atoms, huber_delta)
        return torch.mean(weights * per), priorities.detach()
    if atoms is None:
        per, td = vmap(partial(q_learning_loss, huber_delta=huber_delta))(out_tm1, batch.action, batch.reward, discount_t, q_val, q_sel)
        priorities = td.abs()
    else:
        per = vmap(categorical_double_q_loss, in_dims=(None, 0, 0, 0, 0, 0, 0))(
            atoms, out_tm1, batch.action, batch.reward, discount_t, out_t, q_sel
        )
        # KL >= 0 exactly; rounding can leave it at -1e-9 when the two distributions agree.
        priorities = torch.clamp(per, min=0.0)
    return torch.mean(weights * per), priorities.detach()


def _batched_losses(out_tm1: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                    out_t: torch.Tensor, q_sel: torch.Tensor, atoms: torch.Tensor | None,
                    huber_delta: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-transition losses ``[B]`` and priorities ``[B]`` that ``vmap`` of
    :func:`~functional_metarl.rl.q_learning_loss` / :func:`~functional_metarl.rl.categorical_double_q_loss`
    gives, written with batched ops directly (the same elementwise arithmetic, so the same
    numbers: ``tests/test_rainbow.py`` checks it): ``vmap``'s dispatch costs more than these
    small tensors' arithmetic. out_tm1 / out_t ``[B, A]`` (or ``[B, A, K]`` logits), q_sel ``[B, A]``."""
    a_star = torch.argmax(q_sel, dim=-1, keepdim=True)  # [B, 1]
    taken = action.long().unsqueeze(-1)  # [B, 1]
    if atoms is None:
        target = (reward + discount * torch.gather(out_t, -1, a_star).squeeze(-1)).detach()
        td = target - torch.gather(out_tm1, -1, taken).squeeze(-1)
        if huber_delta is None:
            return 0.5 * td * td, td.abs()
        abs_td = td.abs()
        quad = torch.clamp(abs_td, max=huber_delta)
        return 0.5 * quad * quad + huber_delta * (abs_td - quad), abs_td
    K = atoms.shape[0]
    probs_t = torch.softmax(torch.gather(out_t, -2, a_star.unsqueeze(-1).expand(-1, 1, K)).squeeze(-2), dim=-1)  # [B, K]
    z_p = reward.unsqueeze(-1) + discount.unsqueeze(-1) * atoms  # [B, K]
    dz = atoms[1] - atoms[0]
    z_clipped = torch.clamp(z_p, atoms[0], atoms[-1])
    weight = torch.clamp(1.0 - (z_clipped.unsqueeze(-2) - atoms.unsqueeze(-1)).abs() / dz, 0.0, 1.0)  # [B, K, Kp]
    target = (weight @ probs_t.unsqueeze(-1)).squeeze(-1).detach()  # [B, K]
    log_p = torch.log_softmax(torch.gather(out_tm1, -2, taken.unsqueeze(-1).expand(-1, 1, K)).squeeze(-2), dim=-1)
    per = torch.sum(torch.special.xlogy(target, target) - target * log_p, dim=-1)
    return per, torch.clamp(per, min=0.0)
