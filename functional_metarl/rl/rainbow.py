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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted Rainbow loss over a batch; pure.

    ``batch`` holds ``B`` n-step transitions (a ``runners.replay.Transition``: ``obs``,
    ``action``, ``reward``, ``next_obs``, ``done``, ``n_steps``, each with leading axis ``B``), ``weights [B]`` the importance weights (ones for
    uniform replay). The online net (with ``noise_online``) gives the distribution at
    ``s_tm1`` and, for double Q-learning, chooses the bootstrap action at ``s_t``; the target net
    (independent ``noise_target``) gives the bootstrap distribution. The per-transition losses
    are vmapped from the unbatched :func:`~functional_metarl.rl.categorical_double_q_loss`
    (or :func:`~functional_metarl.rl.q_learning_loss` when ``atoms`` is ``None``).

    Returns ``(loss [], priorities [B])``: the weighted mean, and the per-transition KL (or
    ``|td|``) for the priority update.
    """
    checks.probability(gamma, "gamma")
    checks.flag(double, "double")
    checks.floating_tensor(weights, "weights", shape=tuple(batch.reward.shape))
    discount_t = gamma ** batch.n_steps.to(batch.reward.dtype) * (1.0 - batch.done)
    if double:
        # one online pass over s_tm1 and s_t (same noise); the s_t half only selects actions
        both = net.apply(params, torch.cat([batch.obs, batch.next_obs]), noise_online)
        out_tm1, out_sel = both[: batch.obs.shape[0]], both[batch.obs.shape[0] :].detach()
    else:
        out_tm1 = net.apply(params, batch.obs, noise_online)
    with torch.no_grad():
        out_t = net.apply(target_params, batch.next_obs, noise_target)
        if not double:
            out_sel = out_t
        q_sel = out_sel if atoms is None else categorical_q_values(out_sel, atoms)
        q_val = out_t if atoms is None else None
    if atoms is None:
        per, td = vmap(partial(q_learning_loss, huber_delta=1.0))(out_tm1, batch.action, batch.reward, discount_t, q_val, q_sel)
        priorities = td.abs()
    else:
        per = vmap(categorical_double_q_loss, in_dims=(None, 0, 0, 0, 0, 0, 0))(
            atoms, out_tm1, batch.action, batch.reward, discount_t, out_t, q_sel
        )
        # KL >= 0 exactly; rounding can leave it at -1e-9 when the two distributions agree.
        priorities = torch.clamp(per, min=0.0)
    return torch.mean(weights * per), priorities.detach()
