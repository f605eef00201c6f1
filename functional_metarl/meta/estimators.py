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

An estimator is a value, :class:`Estimator`: its inner objective (whose Hessian is its
curvature estimate) and an optional extra outer term. The meta-steps take one
(``meta.trpo(policy, inner_opt, estimator=meta.LVC)``); :data:`ESTIMATORS` maps the names that
configs use to the values.

Shapes: per task time-major ``[T, E]``; meta-batches ``[N, T, E, ...]`` (see ``meta.batch``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.func import vmap

from .. import checks
from ..nn import Functional
from ..rl import masked_episode_mean, policy_gradient_loss
from ..tree import Params
from .adaptation import InnerObjective, check_policy
from .batch import RLBatch, check_rl_batch

__all__ = [
    "Estimator",
    "OuterTerm",
    "MAML",
    "E_MAML",
    "DICE",
    "LVC",
    "ESTIMATORS",
    "estimator_named",
    "magic_box",
    "dice_objective",
    "lvc_inner_loss",
    "dice_inner_loss",
    "inner_loss",
    "emaml_score_term",
    "check_post_rewards",
]

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


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """DiCE's MagicBox ``box(x) = exp(x - stop_grad(x))``: 1 in value, ``d box(x) = box(x) dx``
    to every order (Foerster et al. 2018, section 3). Elementwise, any shape."""
    return torch.exp(x - x.detach())


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


def check_post_rewards(valid: RLBatch, estimator: str) -> None:
    """``valid`` holds the post-update rewards and their scale, which ``estimator``'s outer term
    (E-MAML's) reads; a batch built from the first four fields of ``RLBatch`` lacks them."""
    if valid.rewards is None or valid.advantage_std is None:
        raise ValueError(f"valid: estimator {estimator!r} needs the post-update rewards, but valid.rewards / "
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
    check_post_rewards(valid, "e-maml")
    if not isinstance(path, (list, tuple)) or not isinstance(train, (list, tuple)) or len(path) != len(train) or not train:
        raise ValueError("emaml_score_term: path and train must be sequences of equal, non-zero length (the params "
                         f"before each inner step and that step's batch), got {type(path).__name__} / "
                         f"{type(train).__name__}")
    score = 0.0
    for stacked, batch in zip(path, train):
        dist = policy.distribution.params(policy.apply_stacked(stacked, batch.obs))
        log_prob = policy.distribution.log_prob(dist, batch.actions)
        score = score + (log_prob * batch.mask.to(log_prob.dtype)).sum(dim=(1, 2))
    post = vmap(masked_episode_mean)(valid.rewards, valid.mask) / valid.advantage_std
    num_tasks = post.shape[0]
    baseline = (post.sum() - post) / (num_tasks - 1) if num_tasks > 1 else torch.zeros_like(post)
    return -((magic_box(score) - 1.0) * (post - baseline).detach()).mean()


#: ``(path, train batches, valid, policy) -> 0-d``: a term added to the outer surrogate; ``path``
#: holds the stacked params before each inner step (leaves ``[N, ...]``).
OuterTerm = Callable[[list[Params], tuple[RLBatch, ...], RLBatch, Functional], torch.Tensor]


class Estimator(NamedTuple):
    """A meta-policy-gradient estimator as a value.

    ``inner_objective(log_prob, advantages, mask) -> 0-d`` (``[T, E]`` each, one task): the inner
    loss, whose gradient is the inner step (the REINFORCE gradient for every estimator here) and
    whose Hessian is the estimator's curvature estimate. ``outer_term``: ``None``, or a term added
    to the outer surrogate (E-MAML's score term), 0 in value. ``needs_post_rewards``: the term
    reads ``valid.rewards`` and ``valid.advantage_std`` (``meta.make_rl_batches`` fills them).
    """

    name: str
    inner_objective: InnerObjective
    outer_term: OuterTerm | None = None
    needs_post_rewards: bool = False


MAML = Estimator("maml", policy_gradient_loss)
"""The MAML surrogate's own estimator: REINFORCE inner loss, curvature ``sum_t grad^2 log pi_t A_t``."""
E_MAML = Estimator("e-maml", policy_gradient_loss, emaml_score_term, needs_post_rewards=True)
"""MAML plus the score term of the pre-update episodes (formulation I)."""
DICE = Estimator("dice", dice_inner_loss)
"""DiCE's inner objective: an unbiased inner Hessian (formulation II)."""
LVC = Estimator("lvc", lvc_inner_loss)
"""ProMP's low-variance curvature objective (formulation II, without the cross-time products)."""

#: The estimators by the names configs and command lines use.
ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (MAML, E_MAML, DICE, LVC)}


def estimator_named(name: object) -> Estimator:
    """The :class:`Estimator` called ``name`` (one of :data:`ESTIMATORS`' keys)."""
    if not isinstance(name, str):
        raise TypeError(f"estimator must be a str, one of {tuple(ESTIMATORS)}, got {type(name).__name__}")
    return ESTIMATORS[checks.one_of(name, "estimator", tuple(ESTIMATORS))]


def inner_loss(params: Params, batch: RLBatch, policy: Functional, *, estimator: Estimator = MAML) -> torch.Tensor:
    """The inner objective of one task (unbatched, leaves ``[T, E, ...]``) under ``estimator`` -> 0-d.

    Its gradient is the inner step (the same for every estimator: REINFORCE with the batch's
    advantages); its Hessian is the estimator's curvature estimate of the inner objective.
    """
    check_policy(policy)
    checks.instance(estimator, "estimator", Estimator)
    check_rl_batch(batch, "batch", policy.distribution, task_axis=False)
    dist = policy.distribution.params(policy.apply(params, batch.obs))
    return estimator.inner_objective(policy.distribution.log_prob(dist, batch.actions), batch.advantages, batch.mask)
