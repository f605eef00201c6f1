"""Meta-policy-gradient estimators for MAML-RL, as pure surrogates, and a ProMP-style meta-step.

The MAML-RL meta-objective is the return after an inner policy-gradient step. Two objectives
must be kept apart (Rothfuss et al. 2019, ProMP, section 4 "formulations I and II"):

* **Formulation I** (what E-MAML differentiates): the inner step uses the *sampled* gradient,
  ``theta' = theta + alpha g_hat(D, theta)`` with ``D ~ pi_theta``, and
  ``J_I(theta) = E_{D ~ pi_theta}[V(theta')]``. Its gradient is
  ``E_D[(I + alpha grad g_hat)^T grad V(theta')] + E_D[grad log P(D | theta) V(theta')]``.
  The first term is what the ``maml`` surrogate differentiates (``D`` fixed, ``grad g_hat`` =
  ``sum_t grad^2 log pi_t A_t``); the second, the *score term of the pre-update episodes*, is what
  it drops and what E-MAML (Stadie et al. 2018) adds.
* **Formulation II** (what DiCE and LVC target): the inner step uses the *expected* gradient,
  ``J_II(theta) = V(theta + alpha grad V(theta))``, with
  ``grad J_II = (I + alpha grad^2 V(theta))^T grad V(theta')``. An estimator of it needs an
  estimate of the inner objective's Hessian; the estimators differ only there:

  - ``maml``: ``H_hat = sum_t grad^2 log pi_t A_t`` -- biased (it lacks the score products);
  - ``dice`` (Foerster et al. 2018, the MagicBox operator ``box(x) = exp(x - stop_grad(x))``,
    with the baseline of Mao et al. 2019): the inner objective
    ``sum_t box(c_t) r_t + sum_t (box(c_{t-1}) - box(c_t)) b_t``, ``c_t = sum_{k<=t} log pi_k``;
    its Hessian ``sum_k grad^2 log pi_k A_k + sum_{k,j} s_k s_j^T A_{max(k,j)}`` (``s_k`` the
    score of step ``k``) is unbiased for ``grad^2 V`` (undiscounted returns);
  - ``lvc`` (ProMP's low-variance curvature objective ``sum_t box(log pi_t) A_t``): Hessian
    ``sum_k (grad^2 log pi_k + s_k s_k^T) A_k`` -- the DiCE one without the cross-time products
    ``k != j``: exact at horizon 1, biased at longer horizons (ProMP argues the bias is small and
    the variance much lower).

All three inner objectives have the **same gradient** as the library's REINFORCE loss (``box``
is 1 in value and has the gradient of its argument), so the inner step -- the adapted params --
is identical for every estimator; only the meta-gradient differs. DiCE is written on the
advantages of the batch: with ``w_t = A_t - A_{t+1}`` (``A`` beyond the episode = 0),
``sum_{t >= k} w_t = A_k`` and ``sum_t box(c_t) w_t`` has exactly the REINFORCE gradient. For
``gamma = 1`` and ``A_t = G_t - b_t`` this *is* the DiCE objective with rewards ``r_t`` and
baselines ``b_t`` above (the sums telescope); for ``gamma < 1`` the library's inner step, like
the MAML paper's code, drops the ``gamma^t`` weights and is not the gradient of any objective,
and the construction keeps that inner step and gives its score-product curvature.
Advantage normalisation is a per-task positive scale (detached) and a constant baseline.

Equation numbers are not given: they could not be checked against the papers in this
session, so the sections are named instead.

Shapes: per task time-major ``[T, E]``; meta-batches ``[N, T, E, ...]`` (see ``meta.maml_rl``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import torch
from torch.func import grad_and_value, vmap

from ..nn import Functional
from ..optim import GradientTransformation
from ..rl import masked_episode_mean, policy_gradient_loss, ppo_clip_loss
from ..tree import Params, ravel, tree_map
from .maml_rl import (
    RLBatch,
    TrainData,
    _adapt_stacked,
    _adapted_surrogate,
    _as_dist,
    _check_policy,
    _check_rl_batch,
    _check_surrogate_inputs,
    _log_prob,
    _mean_kl,
    _per_step_batches,
    _split_meta,
    _task_losses,
)
from .supervised import MetaParams

__all__ = [
    "ESTIMATORS",
    "check_estimator",
    "magic_box",
    "dice_objective",
    "lvc_inner_loss",
    "dice_inner_loss",
    "inner_loss",
    "emaml_score_term",
    "estimator_surrogate",
    "ProMPConfig",
    "ProMPState",
    "ProMPStats",
    "promp_init",
    "maml_promp_step",
]

ESTIMATORS = ("maml", "e-maml", "dice", "lvc")


def check_estimator(estimator: object) -> str:
    """``estimator`` if it names one of :data:`ESTIMATORS`, else ``ValueError`` / ``TypeError``."""
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, one of {ESTIMATORS}, got {type(estimator).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    return estimator


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """DiCE's MagicBox ``box(x) = exp(x - stop_grad(x))``: 1 in value, ``d box(x) = box(x) dx``
    to every order (Foerster et al. 2018, section 3). Elementwise, any shape."""
    return torch.exp(x - x.detach())


def _check_time_major(where: str, **tensors: torch.Tensor | None) -> None:
    (first_name, first), *rest = tensors.items()
    for name, x in tensors.items():
        if x is not None and not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a Tensor [T, B], got {type(x).__name__}")
    if first.ndim != 2 or 0 in first.shape:
        raise ValueError(f"{where}: {first_name} expected shape [T, B] (time-major, non-empty), got {tuple(first.shape)}")
    for name, x in rest:
        if x is not None and x.shape != first.shape:
            raise ValueError(f"{where}: {name} expected shape {tuple(first.shape)} (as {first_name}), got {tuple(x.shape)}")


def dice_objective(
    log_prob: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, values: torch.Tensor | None = None
) -> torch.Tensor:
    """The DiCE objective of the (undiscounted) return, mean over episodes -> 0-d.

    ``L = sum_t box(c_t) r_t  [+ sum_t (box(c_{t-1}) - box(c_t)) b_t]``, ``c_t = sum_{k<=t} log pi_k``,
    ``box(c_{-1}) = 1`` (Foerster et al. 2018; the baseline term is Mao et al. 2019's, which keeps
    every order unbiased: given the history up to ``s_t``, the expectation over ``a_t`` of the
    derivatives of ``box(c_t)`` equals those of ``box(c_{t-1})``). Its value is the sampled
    return; its ``n``-th derivative is an unbiased estimate of the ``n``-th derivative of the
    expected return. Pass ``gamma^t r_t`` and ``gamma^t b_t`` for a discounted return.
    log_prob, rewards, mask, values: ``[T, B]``.
    """
    _check_time_major("dice_objective", log_prob=log_prob, rewards=rewards, mask=mask, values=values)
    m = mask.to(log_prob.dtype)
    c = torch.cumsum(log_prob * m, dim=0)
    out = magic_box(c) * rewards * m
    if values is not None:
        c_prev = torch.cat([torch.zeros_like(c[:1]), c[:-1]])
        out = out + (magic_box(c_prev) - magic_box(c)) * values * m
    return out.sum(dim=0).mean()


def lvc_inner_loss(log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ProMP's low-variance-curvature inner loss ``-E[box(log pi_t) A_t]`` (section 5). ``[T, B] -> []``.

    Same value of gradient as ``rl.policy_gradient_loss`` (REINFORCE); Hessian
    ``-E[sum_t (grad^2 log pi_t + s_t s_t^T) A_t]`` (same per-episode-length weights).
    """
    _check_time_major("lvc_inner_loss", log_prob=log_prob, advantages=advantages, mask=mask)
    return -masked_episode_mean(magic_box(log_prob) * advantages.detach(), mask)


def dice_inner_loss(log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DiCE inner loss on advantage increments ``-E[sum_t box(c_t) (A_t - A_{t+1})]``. ``[T, B] -> []``.

    ``c_t = sum_{k<=t} mask_k log pi_k``, ``A`` is 0 beyond each episode, and each episode is
    weighted by ``1 / length`` as in ``rl.policy_gradient_loss``, whose gradient this has exactly.
    Hessian: ``-E[sum_k grad^2 log pi_k A_k + sum_{k,j} s_k s_j^T A_{max(k,j)}]``. For ``gamma = 1``
    and ``A = G - b`` it equals ``-dice_objective(log_prob, rewards, mask, b)`` up to a constant
    (per-episode-length weights aside).
    """
    _check_time_major("dice_inner_loss", log_prob=log_prob, advantages=advantages, mask=mask)
    m = mask.to(log_prob.dtype)
    adv = advantages.detach() * m
    increments = adv - torch.cat([adv[1:], torch.zeros_like(adv[:1])])
    c = torch.cumsum(log_prob * m, dim=0)
    return -masked_episode_mean(magic_box(c) * increments, mask)


_INNER = {"maml": policy_gradient_loss, "e-maml": policy_gradient_loss, "dice": dice_inner_loss, "lvc": lvc_inner_loss}


def inner_loss(params: Params, batch: RLBatch, policy: Functional, *, estimator: str = "maml") -> torch.Tensor:
    """The inner objective of one task (unbatched, leaves ``[T, E, ...]``) under ``estimator``.

    Its gradient is the inner step (the same for every estimator: REINFORCE with the batch's
    advantages); its Hessian is the estimator's curvature estimate of the inner objective:
    ``maml`` / ``e-maml`` = :func:`meta.reinforce_loss`, ``dice`` = :func:`dice_inner_loss`,
    ``lvc`` = :func:`lvc_inner_loss` on the policy's log-probabilities.
    """
    _check_policy(policy, "inner_loss")
    loss_fn = _INNER[check_estimator(estimator)]
    _check_rl_batch(batch, "batch", policy, task_axis=False)
    dist = _as_dist(policy, policy.apply(params, batch.obs))
    return loss_fn(_log_prob(policy, dist, batch.actions), batch.advantages, batch.mask)


def _stacked_inner_losses(estimator: str) -> Callable[[Functional, Params, RLBatch], torch.Tensor]:
    """``(policy, stacked params [N, ...], batch [N, T, E, ...]) -> [N]`` inner losses."""
    if estimator in ("maml", "e-maml"):
        return _task_losses
    loss_fn = _INNER[estimator]

    def losses(policy: Functional, stacked: Params, batch: RLBatch) -> torch.Tensor:
        dist = _as_dist(policy, policy.apply_stacked(stacked, batch.obs))
        return vmap(loss_fn)(_log_prob(policy, dist, batch.actions), batch.advantages, batch.mask)

    return losses


def _require_rewards(valid: RLBatch, where: str) -> None:
    """E-MAML reads the post-update rewards; a batch built from the first four fields lacks them."""
    if valid.rewards is None or valid.advantage_std is None:
        raise ValueError(f"{where}: estimator 'e-maml' needs the post-update rewards, but valid.rewards / "
                         "valid.advantage_std are None (build the batch with meta.make_rl_batches, which fills them)")


def emaml_score_term(
    path: list[Params], train: tuple[RLBatch, ...], valid: RLBatch, policy: Functional,
) -> torch.Tensor:
    """E-MAML's score term of the pre-update episodes, as a loss -> 0-d (value 0).

    ``-mean_n (box(S_n) - 1) (u_n - b_n)`` with ``S_n = sum_k sum_{t,e} mask log pi_{theta_k}(a | s)``
    the log-likelihood of task ``n``'s inner-loop episodes (batch ``k`` under the params adapted
    ``k`` times, ``path[k]``), ``u_n = masked_episode_mean(rewards') / advantage_std'`` the
    post-update return in the units of the outer surrogate (mean reward per step, divided by the
    scale of the post-update advantages), and ``b_n`` the mean of ``u`` over the *other* tasks
    (independent of task ``n``'s episodes, so unbiased; 0 with one task). Its gradient is an
    unbiased estimate of ``-E[grad log P(D | theta) V(theta')]`` (Stadie et al. 2018, the E-MAML
    term; ProMP's formulation I). Needs ``valid.rewards`` and ``valid.advantage_std``.
    path leaves ``[N, ...]``; train / valid leaves ``[N, T, E, ...]``.
    """
    _require_rewards(valid, "emaml_score_term")
    if not isinstance(path, (list, tuple)) or not isinstance(train, (list, tuple)) or len(path) != len(train) or not train:
        raise ValueError("emaml_score_term: path and train must be sequences of equal, non-zero length (the params "
                         f"before each inner step and that step's batch), got {type(path).__name__} / "
                         f"{type(train).__name__}")
    score = 0.0
    for stacked, batch in zip(path, train):
        dist = _as_dist(policy, policy.apply_stacked(stacked, batch.obs))
        log_prob = _log_prob(policy, dist, batch.actions)
        score = score + (log_prob * batch.mask.to(log_prob.dtype)).sum(dim=(1, 2))
    post = vmap(masked_episode_mean)(valid.rewards, valid.mask) / valid.advantage_std
    num_tasks = post.shape[0]
    baseline = (post.sum() - post) / (num_tasks - 1) if num_tasks > 1 else torch.zeros_like(post)
    return -((magic_box(score) - 1.0) * (post - baseline).detach()).mean()


def estimator_surrogate(
    params: Params | MetaParams, train: TrainData, valid: RLBatch, old_log_prob: torch.Tensor | None,
    policy: Functional, inner_opt: GradientTransformation, *, steps: int = 1, first_order: bool = False,
    estimator: str = "maml",
) -> tuple[torch.Tensor, Params]:
    """:func:`meta.maml_surrogate` with the meta-gradient of ``estimator`` -> ``(loss, adapted)``.

    The value and the adapted params are those of ``maml_surrogate`` for every estimator (the
    inner step is the same; E-MAML's extra term is 0 in value), so line searches and KL checks
    are unchanged; the gradient is the estimator's: ``maml`` = ``maml_surrogate``'s exactly (it
    is called); ``dice`` / ``lvc`` replace the inner loss by :func:`dice_inner_loss` /
    :func:`lvc_inner_loss` (the Hessian of the inner objective, formulation II); ``e-maml`` adds
    :func:`emaml_score_term` (formulation I). With ``first_order=True`` the inner gradient is a
    constant, so ``dice`` and ``lvc`` reduce to first-order MAML and ``e-maml`` to first-order
    MAML plus the score term. Leaves ``[N, T, E, ...]``; adapted leaves ``[N, *param_shape]``.
    """
    from .maml_rl import maml_surrogate  # the default path, unchanged

    estimator = check_estimator(estimator)
    if estimator == "maml":
        return maml_surrogate(params, train, valid, old_log_prob, policy, inner_opt, steps=steps, first_order=first_order)
    _check_surrogate_inputs(valid, old_log_prob, policy, "estimator_surrogate")
    if estimator == "e-maml":
        _require_rewards(valid, "estimator_surrogate")
    policy_params, inner_state = _split_meta(params)
    path = _adapt_stacked(policy_params, train, policy, inner_opt, steps=steps, first_order=first_order,
                          inner_state=inner_state, task_losses=_stacked_inner_losses(estimator))
    adapted = path[-1]
    loss = _adapted_surrogate(adapted, valid, old_log_prob, policy)
    if estimator == "e-maml":
        loss = loss + emaml_score_term(path[:-1], _per_step_batches(train, steps), valid, policy)
    return loss, adapted


def _inner_task_losses(estimator: str) -> Callable[[Functional, Params, RLBatch], torch.Tensor] | None:
    """The stacked inner losses for ``_adapt_stacked`` (``None``: the default REINFORCE ones)."""
    return None if check_estimator(estimator) in ("maml", "e-maml") else _stacked_inner_losses(estimator)


# ----------------------------------------------------------------------------- ProMP-style meta-step


@dataclass(frozen=True)
class ProMPConfig:
    """Settings of :func:`maml_promp_step` (ProMP, Rothfuss et al. 2019, section 6).

    epochs: gradient steps of the meta-optimizer on each meta-batch (ProMP: several, reusing the
    same episodes); clip_eps: the PPO clip range of the outer objective; target_kl: the target of
    the inner step's KL ``KL(pi_theta_old || pi_theta)`` on the pre-update episodes;
    init_kl_coef: the starting coefficient ``eta`` of that penalty, which adapts after each
    meta-step: halved when the KL is below ``target_kl / 1.5``, doubled when above
    ``1.5 * target_kl``.
    """

    epochs: int = 5
    clip_eps: float = 0.3
    target_kl: float = 0.01
    init_kl_coef: float = 0.01

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        for name in ("clip_eps", "target_kl", "init_kl_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class ProMPState(NamedTuple):
    """The meta-step's state: the meta-optimizer's state and the KL coefficient ``eta`` (0-d)."""

    opt_state: Any
    kl_coef: torch.Tensor


class ProMPStats(NamedTuple):
    """Python floats describing one ProMP meta-step (read after the step)."""

    meta_loss: float  # clipped surrogate + KL penalty before the first epoch
    loss_after: float  # clipped surrogate (no penalty) after the last epoch
    kl: float  # mean KL(old || new) of the adapted policies after the step
    step_fraction: float  # always 1.0 (no line search); kept for the trainer's metrics
    grad_norm: float  # of the first epoch's gradient
    inner_kl: float  # mean KL(old || new) of the pre-adaptation policies after the step
    kl_coef: float  # the coefficient used in this step (the state holds the adapted next one)


def promp_init(params: Params, meta_opt: GradientTransformation, config: ProMPConfig = ProMPConfig()) -> ProMPState:
    """The starting :class:`ProMPState`: ``meta_opt.init(params)`` and ``config.init_kl_coef``."""
    if not isinstance(config, ProMPConfig):
        raise TypeError(f"config must be a ProMPConfig, got {type(config).__name__}")
    leaf = next(iter(params.values()))
    return ProMPState(meta_opt.init(params), torch.tensor(float(config.init_kl_coef), dtype=leaf.dtype, device=leaf.device))


def maml_promp_step(
    params: Params,
    state: ProMPState,
    train: TrainData,
    valid: RLBatch,
    policy: Functional,
    inner_opt: GradientTransformation,
    meta_opt: GradientTransformation,
    *,
    steps: int = 1,
    first_order: bool = False,
    estimator: str = "lvc",
    config: ProMPConfig = ProMPConfig(),
) -> tuple[Params, ProMPState, ProMPStats]:
    """A ProMP-style meta-step: ``config.epochs`` steps of ``meta_opt`` on the same meta-batch.

    Each epoch minimises ``L(theta) = mean_n L^CLIP_n(theta'_n(theta)) + eta mean_k KL_k(theta)``:
    ``L^CLIP`` the PPO clipped surrogate (``rl.ppo_clip_loss``, clip ``config.clip_eps``) of the
    adapted policy of each task on its post-update episodes, with the ratio to the adapted policy
    at the start of the step; ``KL_k`` the mean ``KL(pi_old || pi)`` of the policy adapted ``k``
    times on inner batch ``k`` (``k = 0``: the pre-update policy on the pre-update episodes);
    the inner step and the meta-gradient are those of ``estimator`` (ProMP uses ``lvc``;
    ``e-maml`` adds its score term). Then ``eta`` adapts (see :class:`ProMPConfig`). The
    episodes are reused as they are in later epochs (the inner step is not re-weighted).
    Leaves ``[N, T, E, ...]``. Returns ``(new_params, new_state, stats)``.
    """
    _check_policy(policy, "maml_promp_step")
    estimator = check_estimator(estimator)
    if isinstance(params, MetaParams):
        raise ValueError("maml_promp_step needs plain policy params, not MetaParams (a learned inner-optimizer "
                         "state is supported by maml_trpo_step)")
    if not isinstance(config, ProMPConfig):
        raise TypeError(f"config must be a ProMPConfig, got {type(config).__name__}")
    if not isinstance(state, ProMPState):
        raise TypeError(f"state must be a ProMPState (meta.promp_init), got {type(state).__name__}")
    _check_rl_batch(valid, "valid", policy, task_axis=True)
    batches = _per_step_batches(train, steps)
    if estimator == "e-maml":
        _require_rewards(valid, "maml_promp_step")
    task_losses = _inner_task_losses(estimator)
    adapt = partial(_adapt_stacked, train=train, policy=policy, inner_opt=inner_opt, steps=steps,
                    first_order=first_order, task_losses=task_losses)
    with torch.no_grad():
        old_path = adapt(params)
        old_valid = _as_dist(policy, policy.apply_stacked(old_path[-1], valid.obs))
        old_valid_lp = _log_prob(policy, old_valid, valid.actions)
        old_inner = [_as_dist(policy, policy.apply_stacked(p, b.obs)) for p, b in zip(old_path[:-1], batches)]
    coef = state.kl_coef.detach()

    def parts(p: Params) -> tuple[torch.Tensor, torch.Tensor, list[Params]]:
        path = adapt(p)
        dist = _as_dist(policy, policy.apply_stacked(path[-1], valid.obs))
        log_prob = _log_prob(policy, dist, valid.actions)
        clip = vmap(partial(ppo_clip_loss, clip_eps=config.clip_eps))(log_prob, old_valid_lp, valid.advantages, valid.mask)
        inner_kl = sum(_mean_kl(policy, o, _as_dist(policy, policy.apply_stacked(q, b.obs)), b.mask)
                       for o, q, b in zip(old_inner, path[:-1], batches)) / len(batches)
        return clip.mean(), inner_kl, path

    def objective(p: Params) -> tuple[torch.Tensor, torch.Tensor]:
        clip, inner_kl, path = parts(p)
        loss = clip + coef * inner_kl
        if estimator == "e-maml":
            loss = loss + emaml_score_term(path[:-1], batches, valid, policy)
        return loss, clip

    step_fn = grad_and_value(objective, has_aux=True)
    opt_state = state.opt_state
    first_loss, first_norm = None, None
    for _ in range(config.epochs):
        grads, (loss, _) = step_fn(params)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"ProMP meta-loss is not finite ({float(loss)}); stopping before the update")
        if first_loss is None:
            first_loss, first_norm = float(loss), float(ravel(grads)[0].norm())
        updates, opt_state = meta_opt.update(grads, opt_state, params)
        params = tree_map(lambda q, u: (q + u).detach(), params, updates)
    with torch.no_grad():
        clip_after, inner_kl, path = parts(params)
        outer_kl = _mean_kl(policy, old_valid, _as_dist(policy, policy.apply_stacked(path[-1], valid.obs)), valid.mask)
    inner_kl_value = float(inner_kl)
    if inner_kl_value < config.target_kl / 1.5:
        new_coef = coef / 2
    elif inner_kl_value > config.target_kl * 1.5:
        new_coef = coef * 2
    else:
        new_coef = coef
    stats = ProMPStats(first_loss, float(clip_after), float(outer_kl), 1.0, first_norm, inner_kl_value, float(coef))
    if not all(math.isfinite(v) for v in stats):
        raise FloatingPointError(f"ProMP meta-step produced non-finite statistics {stats}")
    return tree_map(lambda q: q.detach().clone(), params), ProMPState(opt_state, new_coef), stats
