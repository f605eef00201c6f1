"""Deterministic-policy-gradient math for DDPG (Lillicrap et al. 2015) and TD3 (Fujimoto et al. 2018).

Everything here is pure. The per-sample pieces are unbatched (rlax style); the batch-level
functions apply them to the whole batch at once: they are elementwise, so that equals ``vmap``
of them bit for bit, without vmap's per-call cost (DDPG / TD3 make one update per env step):

- ``td_target(r_t, discount_t, q_tp1)``: the DDPG target ``r + gamma (1 - term) Q'(s', mu'(s'))``.
- ``clipped_double_q_target(r_t, discount_t, q1_tp1, q2_tp1)``: TD3's ``r + gamma (1 - term) min(Q1', Q2')``.
- ``smoothed_target_action(a_tp1, noise, noise_clip, low, high)``: TD3 target-policy smoothing
  ``clip(mu'(s') + clip(noise, -c, c), low, high)``; the noise is passed in (drawn by the runner's
  generator), already scaled by its std.
- ``ddpg_targets`` / ``td3_targets``: the above over a :class:`TransitionBatch` batch, with networks.
- ``critic_loss`` / ``twin_critic_loss``: mean squared TD error (sum over the twin critics).
- ``dpg_actor_loss``: ``-mean_s Q(s, mu(s))`` (the deterministic policy gradient, Silver et al. 2014).
- ``polyak_update(target, online, tau)``: ``tau * online + (1 - tau) * target`` leaf-wise.
- ``ou_noise_step``: one Ornstein-Uhlenbeck step (DDPG's exploration noise) from given normals.
- ``is_policy_update_step``: TD3's delayed actor / target schedule.

Terminal handling: the discount is ``gamma * (1 - terminated)``, where ``terminated`` is the
MDP's own end (gymnasium's ``terminated``), never a time-limit truncation. Both papers write
the target with a terminal flag; many implementations (and the TD3 reference code for
HalfCheetah) store ``done = terminated or truncated`` and so stop bootstrapping at a time limit,
which makes the target non-Markov. We follow the MDP definition and bootstrap through
truncations.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import optree
import torch
from torch.func import vmap

from .. import checks
from ..nn import Functional
from ..tree import Params, Tree, tree_map

__all__ = [
    "TransitionBatch",
    "td_target",
    "clipped_double_q_target",
    "smoothed_target_action",
    "squared_td_error",
    "ddpg_targets",
    "td3_targets",
    "critic_loss",
    "twin_critic_loss",
    "dpg_actor_loss",
    "polyak_update",
    "ou_noise_step",
    "is_policy_update_step",
    "check_transition",
]


class TransitionBatch(NamedTuple):
    """A batch of transitions. ``obs, next_obs: [B, obs_dim]``; ``action: [B, act_dim]``;
    ``reward, terminated: [B]`` (``terminated`` as 0/1 floats of the reward's dtype)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


def check_transition(batch: TransitionBatch, where: str = "transition batch") -> None:
    """Raise ``TypeError`` / ``ValueError`` unless ``batch`` is a well-formed :class:`TransitionBatch`."""
    if not isinstance(batch, TransitionBatch):
        raise TypeError(f"{where}: expected a TransitionBatch, got {type(batch).__name__}")
    for name, value in batch._asdict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{where}: {name} must be a floating-point tensor, got {value.dtype}")
    b = batch.reward.shape[0] if batch.reward.ndim == 1 else None
    if b is None:
        raise ValueError(f"{where}: reward expected shape [B], got {tuple(batch.reward.shape)}")
    expected = {
        "obs": 2, "action": 2, "next_obs": 2, "terminated": 1,
    }
    for name, ndim in expected.items():
        value = getattr(batch, name)
        if value.ndim != ndim or value.shape[0] != b:
            want = "[B]" if ndim == 1 else "[B, dim]"
            raise ValueError(f"{where}: {name} expected shape {want} with B={b}, got {tuple(value.shape)}")
    if batch.obs.shape != batch.next_obs.shape:
        raise ValueError(f"{where}: obs and next_obs differ in shape: {tuple(batch.obs.shape)} vs {tuple(batch.next_obs.shape)}")


def _check_gamma(gamma: float) -> None:
    checks.probability(gamma, "gamma")


# ---------------------------------------------------------------------------- unbatched pieces
def _same_shape(where: str, **tensors: torch.Tensor) -> None:
    """All tensors share the first one's shape: per-transition values never broadcast."""
    (first_name, first), *rest = tensors.items()
    for name, x in rest:
        if x.shape != first.shape:
            raise ValueError(f"{where}: {name} expected shape {tuple(first.shape)} (as {first_name}), got {tuple(x.shape)}")


def td_target(r_t: torch.Tensor, discount_t: torch.Tensor, q_tp1: torch.Tensor) -> torch.Tensor:
    """DDPG target for one transition: ``r_t + discount_t * q_tp1`` (all scalars ``[]``).

    ``discount_t = gamma * (1 - terminated_t)``; ``q_tp1 = Q'(s_{t+1}, mu'(s_{t+1}))`` from the
    target networks. The result carries no gradient (it is a regression target).
    """
    _same_shape("td_target", r_t=r_t, discount_t=discount_t, q_tp1=q_tp1)
    return (r_t + discount_t * q_tp1).detach()


def clipped_double_q_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, q1_tp1: torch.Tensor, q2_tp1: torch.Tensor
) -> torch.Tensor:
    """TD3 clipped double-Q target for one transition: ``r_t + discount_t * min(q1_tp1, q2_tp1)``."""
    _same_shape("clipped_double_q_target", r_t=r_t, discount_t=discount_t, q1_tp1=q1_tp1, q2_tp1=q2_tp1)
    return (r_t + discount_t * torch.minimum(q1_tp1, q2_tp1)).detach()


def smoothed_target_action(
    a_tp1: torch.Tensor, noise: torch.Tensor, noise_clip: float, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """TD3 target-policy smoothing for one action ``[act_dim]``:
    ``clip(a_tp1 + clip(noise, -noise_clip, noise_clip), low, high)``.

    ``noise`` is ``sigma * eps`` with ``eps ~ N(0, I)`` drawn by the caller. Fujimoto et al. use
    ``sigma = 0.2`` and ``c = 0.5`` for actions in ``[-1, 1]``; for other ranges the runner
    scales both by the action half-range (as the authors' code does with ``max_action``).
    """
    _same_shape("smoothed_target_action", a_tp1=a_tp1, noise=noise)
    return torch.clamp(a_tp1 + torch.clamp(noise, -noise_clip, noise_clip), low, high)


def squared_td_error(q_t: torch.Tensor, target_t: torch.Tensor) -> torch.Tensor:
    """``(q_t - target_t)^2`` for one transition; the target is treated as a constant."""
    _same_shape("squared_td_error", q_t=q_t, target_t=target_t)
    return (q_t - target_t.detach()) ** 2


# ---------------------------------------------------------------------------- batched, with networks
def _q(params: Params, obs: torch.Tensor, action: torch.Tensor, critic: Functional) -> torch.Tensor:
    return critic.apply(params, torch.cat([obs, action], dim=-1))


def ddpg_targets(
    target_actor_params: Params, target_critic_params: Params, batch: TransitionBatch,
    actor: Functional, critic: Functional, *, gamma: float,
) -> torch.Tensor:
    """DDPG regression targets ``y_i = r_i + gamma (1 - term_i) Q'(s'_i, mu'(s'_i))``; ``[B]``.

    Lillicrap et al. 2015, Algorithm 1. Uses the target actor and target critic.
    """
    check_transition(batch)
    _check_gamma(gamma)
    with torch.no_grad():
        q_tp1 = _q(target_critic_params, batch.next_obs, actor.apply(target_actor_params, batch.next_obs), critic)
        discount = gamma * (1.0 - batch.terminated)
        return td_target(batch.reward, discount, q_tp1)  # elementwise: vmap(td_target) without its cost


def td3_targets(
    target_actor_params: Params,
    target_critic_params: Params,
    batch: TransitionBatch,
    smoothing_noise: torch.Tensor,
    actor: Functional,
    critic: Functional,
    *,
    gamma: float,
    noise_clip: float | torch.Tensor,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
) -> torch.Tensor:
    """TD3 targets ``y = r + gamma (1 - term) min_j Q'_j(s', clip(mu'(s') + clip(eps, -c, c), low, high))``; ``[B]``.

    Fujimoto et al. 2018, Algorithm 1. ``target_critic_params`` is the twin critics' params
    stacked on a leading axis of size 2; ``smoothing_noise: [B, act_dim]`` is ``sigma * N(0, I)``;
    ``noise_clip`` is a number or a ``[act_dim]`` tensor.
    """
    check_transition(batch)
    _check_gamma(gamma)
    if smoothing_noise.shape != batch.action.shape:
        raise ValueError(f"smoothing_noise expected shape {tuple(batch.action.shape)}, got {tuple(smoothing_noise.shape)}")
    sizes = {v.shape[0] for v in target_critic_params.values()}
    if sizes != {2}:
        raise ValueError(f"td3_targets expects twin critic params stacked on a leading axis of 2, got leading sizes {sorted(sizes)}")
    with torch.no_grad():
        a_tp1 = actor.apply(target_actor_params, batch.next_obs)
        clip = torch.as_tensor(noise_clip, dtype=a_tp1.dtype, device=a_tp1.device).expand(a_tp1.shape[-1])
        # elementwise (clip and bounds broadcast over the batch): vmap(..., in_dims=(0, 0, None, None, None)) without its cost
        a_tp1 = smoothed_target_action(a_tp1, smoothing_noise, clip, action_low, action_high)
        q_tp1 = vmap(_q, in_dims=(0, None, None, None))(target_critic_params, batch.next_obs, a_tp1, critic)  # [2, B]
        discount = gamma * (1.0 - batch.terminated)
        return clipped_double_q_target(batch.reward, discount, q_tp1[0], q_tp1[1])  # elementwise, as above


def critic_loss(critic_params: Params, batch: TransitionBatch, targets: torch.Tensor, critic: Functional) -> torch.Tensor:
    """``mean_i (Q(s_i, a_i) - y_i)^2`` (Lillicrap et al. 2015, Algorithm 1); a 0-d tensor."""
    if targets.shape != batch.reward.shape:
        raise ValueError(f"targets expected shape {tuple(batch.reward.shape)}, got {tuple(targets.shape)}")
    q = _q(critic_params, batch.obs, batch.action, critic)
    return squared_td_error(q, targets).mean()  # elementwise: vmap(squared_td_error) without its cost


def twin_critic_loss(critic_params: Params, batch: TransitionBatch, targets: torch.Tensor, critic: Functional) -> torch.Tensor:
    """TD3: both critics regress on the one shared target; ``sum_j mean_i (Q_j(s_i, a_i) - y_i)^2``.

    ``critic_params``: stacked on a leading axis (2 for TD3).
    """
    per_critic = vmap(critic_loss, in_dims=(0, None, None, None))(critic_params, batch, targets, critic)
    return per_critic.sum()


def dpg_actor_loss(actor_params: Params, critic_params: Params, obs: torch.Tensor, actor: Functional,
                   critic: Functional) -> torch.Tensor:
    """Deterministic policy gradient loss ``-mean_s Q(s, mu(s))``; a 0-d tensor.

    Its gradient w.r.t. ``actor_params`` is ``-mean_s grad_a Q(s, a)|_{a=mu(s)} grad_theta mu(s)``
    (Silver et al. 2014; Lillicrap et al. 2015 eq. 6). TD3 passes the first critic's params.
    ``obs: [B, obs_dim]``.
    """
    return -_q(critic_params, obs, actor.apply(actor_params, obs), critic).mean()


# ---------------------------------------------------------------------------- small helpers
def polyak_update(target: Tree, online: Tree, tau: float | torch.Tensor, foreach: bool = False) -> Tree:
    """Soft target update ``target <- tau * online + (1 - tau) * target``, leaf-wise, out of place.

    ``tau`` in ``[0, 1]``: 0 keeps the target, 1 copies the online params. The result carries no
    gradient. ``foreach=True`` computes the same ops (``tau * o``, ``(1 - tau) * t``, their sum)
    with one ``torch._foreach_*`` call each over all leaves: bit-equal, fewer dispatches.
    """
    if not isinstance(tau, torch.Tensor):
        checks.probability(tau, "tau")
    checks.same_structure(online, "online", target, "target")
    if checks.flag(foreach, "foreach"):
        t_leaves, spec = optree.tree_flatten(target, none_is_leaf=False)
        mixed = torch._foreach_mul(optree.tree_leaves(online, none_is_leaf=False), tau)
        torch._foreach_add_(mixed, torch._foreach_mul(t_leaves, 1.0 - tau))
        return optree.tree_unflatten(spec, [x.detach() for x in mixed])

    def mix(t: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return (tau * o + (1.0 - tau) * t).detach()

    return tree_map(mix, target, online)


def ou_noise_step(x: torch.Tensor, eps: torch.Tensor, theta: float = 0.15, sigma: float = 0.2, dt: float = 1.0, mu: float = 0.0) -> torch.Tensor:
    """One Ornstein-Uhlenbeck step ``x + theta (mu - x) dt + sigma sqrt(dt) eps`` (``eps ~ N(0, I)`` given).

    Lillicrap et al. 2015 (sec. 7) explore with OU noise, ``theta = 0.15``, ``sigma = 0.2``.
    """
    _same_shape("ou_noise_step", x=x, eps=eps)
    checks.non_negative_number(theta, "theta")
    checks.non_negative_number(sigma, "sigma")
    checks.positive_number(dt, "dt")
    checks.number(mu, "mu")
    return x + theta * (mu - x) * dt + sigma * math.sqrt(dt) * eps


def is_policy_update_step(critic_updates: int, policy_delay: int) -> bool:
    """TD3's delayed updates: update the actor and the targets after every ``policy_delay``-th
    critic update (``critic_updates`` counts from 1). ``policy_delay = 1`` is DDPG."""
    checks.positive_int(policy_delay, "policy_delay")
    return critic_updates % policy_delay == 0
