"""Meta-steps as values, the optax way: each factory returns a :class:`MetaStep`, a pair of pure
functions ``init(meta_params) -> state`` and ``update(meta_params, state, train, valid) ->
(meta_params, state, stats)``.

* :func:`trpo`: the MAML-RL meta-step of Finn et al. (2017), a TRPO step on the surrogate of the
  adapted policies (conjugate gradient on the KL's curvature, then a backtracking line search);
* :func:`gradient`: a step of any first-order optimizer (``optim.adam``, or a chain with
  ``optim.clip_by_global_norm``) on the meta-gradient;
* :func:`promp`: ProMP's meta-step (Rothfuss et al. 2019): several optimizer epochs on a clipped
  surrogate with an adaptive KL penalty on the inner step, its coefficient in the state.

Each takes the meta-gradient estimator as a value (``meta.estimators``). ``stats`` is a dict of
Python floats for logging (``meta_loss``, ``loss_after``, ``kl``, ``step_fraction``,
``grad_norm``; ProMP adds ``inner_kl`` and ``kl_coef``). Batches have leaves ``[N, T, E, ...]``.
A writer of a new meta-step returns a ``MetaStep`` too, and the MAML trainer runs it as it runs
these (``docs/tutorials/custom-meta-step.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import torch
from torch.func import grad_and_value, vmap

from .. import checks
from ..distributions import DistParams
from ..nn import Functional
from ..optim import GradientTransformation
from ..rl import backtracking_line_search, gauss_newton_operator, ppo_clip_loss, trpo_step_direction
from ..tree import Params, ravel, tree_map
from .adaptation import adaptation_path, check_policy, split_meta_params
from .batch import RLBatch, TrainData, check_rl_batch, check_train_data, per_step_batches
from .estimators import LVC, MAML, Estimator, check_post_rewards
from .supervised import MetaParams
from .surrogates import MetaGradient, adapted_distributions, mean_kl, surrogate_gradient_fn, score_fn

__all__ = [
    "MetaStep",
    "TaskShard",
    "MetaStepStats",
    "TRPOConfig",
    "TRPOState",
    "trpo",
    "gradient",
    "ProMPConfig",
    "ProMPState",
    "promp",
]

MetaStepStats = dict[str, float]


class TaskShard(NamedTuple):
    """This process's part of a meta-batch split over data-parallel processes: tasks ``start``,
    ``start + step``, ... of ``total`` (interleaved, so that the first tasks of a batch, TRPO's
    curvature sample, spread over the processes), and ``mean(x, n)``, which turns ``x``, a mean
    over ``n`` of this process's tasks, into the mean over every process's tasks (``n`` may be 0:
    ``x`` then counts for nothing). Every process must call ``mean`` the same number of times in
    the same order (it is a collective); ``runners.DataParallel`` provides one over
    ``torch.distributed``.

    A meta-step given a shard reduces every task mean it decides on (the meta-gradient, the
    losses and KLs of the line search, each curvature product of conjugate gradient), so every
    process takes the identical step; one process with the whole batch is ``shard=None``.
    """

    start: int
    step: int
    total: int
    mean: Callable[[torch.Tensor, int], torch.Tensor]

    @property
    def tasks(self) -> slice:
        """This process's tasks as a slice of the whole batch's task axis."""
        return slice(self.start, self.total, self.step)

    @property
    def size(self) -> int:
        """How many tasks this process holds."""
        return len(range(self.start, self.total, self.step))


def _local_mean(x: torch.Tensor, n: int) -> torch.Tensor:
    return x


class MetaStep(NamedTuple):
    """A meta-step as a value: ``init(meta_params) -> state``; ``update(meta_params, state, train,
    valid, meta_grad=None) -> (meta_params, state, stats)``.

    ``train``: the inner batches (one ``RLBatch`` or one per inner step), ``valid``: the
    post-update batch, leaves ``[N, T, E, ...]``. ``meta_grad``: optionally the
    ``meta.MetaGradient`` at ``meta_params`` already computed by the caller (e.g.
    ``meta.surrogate_gradient_through`` a kept adaptation); a step that cannot use one refuses it.
    ``stats``: Python floats for logging.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, MetaStepStats]]


@dataclass(frozen=True)
class TRPOConfig:
    """TRPO meta-step settings. max-KL 0.01, 10 CG iterations, damping 1e-5 and 15 line-search
    steps x 0.8 are pytorch-maml-rl's defaults.

    curvature: ``"exact"`` (default) = Hessian of the mean KL in the meta-params *through* the
    adaptation, computed exactly as a Gauss-Newton/Fisher product (what pytorch-maml-rl's
    double-backward HVP computes, at a fraction of its cost); ``"adapted"`` = Fisher of the adapted
    policies in their own params, ignoring the inner step's Jacobian. ``"adapted"`` makes each
    product cheaper but misjudges the KL along the step, so the line search backtracks further
    and learning is slower per meta-iteration.
    fisher_subsample: use every k-th episode of each task for the curvature products only (as
    TRPO implementations commonly do); with ``"exact"`` this applies to the inner-loop episodes
    too, so the adaptation inside each product is the one on that subsample.
    fisher_tasks: use only the first k tasks of the meta-batch for the curvature (tasks are drawn
    i.i.d., so this is a random subset); ``None`` = all.
    The meta-gradient and the line search always use every task and every episode.
    ``TRPOConfig(fisher_subsample=1, fisher_tasks=None)`` reproduces pytorch-maml-rl's step; the
    default curvature sample (every 4th episode of 10 tasks: 12.5% of the episodes) is what makes
    a meta-iteration fast, since a product costs in proportion to its sample
    (``docs/results/iteration.md`` has the measurements behind this default).
    """

    max_kl: float = 1e-2
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_max_steps: int = 15
    ls_backtrack_ratio: float = 0.8
    curvature: str = "exact"
    fisher_subsample: int = 4
    fisher_tasks: int | None = 10

    def __post_init__(self):
        checks.positive_number(self.max_kl, "max_kl")
        checks.positive_int(self.cg_iters, "cg_iters")
        checks.non_negative_number(self.cg_damping, "cg_damping")
        checks.positive_int(self.ls_max_steps, "ls_max_steps")
        checks.number(self.ls_backtrack_ratio, "ls_backtrack_ratio", 0.0, 1.0, low_open=True, high_open=True)
        checks.one_of(self.curvature, "curvature", ("exact", "adapted"))
        checks.positive_int(self.fisher_subsample, "fisher_subsample")
        if self.fisher_tasks is not None:
            checks.positive_int(self.fisher_tasks, "fisher_tasks")


class TRPOState(NamedTuple):
    """The TRPO meta-step keeps no state between steps."""


def _check_step_inputs(train: TrainData, valid: RLBatch, policy: Functional, steps: int,
                       estimator: Estimator) -> None:
    check_train_data(train, steps, policy.distribution)
    check_rl_batch(valid, "valid", policy.distribution, task_axis=True)
    if estimator.needs_post_rewards:
        check_post_rewards(valid, estimator.name)


def _check_factory(policy: Functional, inner_opt: GradientTransformation, estimator: Estimator, steps: int,
                   first_order: bool) -> None:
    check_policy(policy)
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    checks.instance(estimator, "estimator", Estimator)
    checks.positive_int(steps, "steps")
    checks.flag(first_order, "first_order")


def _gradient_score_mean(
    policy: Functional, inner_opt: GradientTransformation, estimator: Estimator, steps: int, first_order: bool,
    compile: bool, shard: TaskShard | None,
) -> tuple[Callable[..., MetaGradient], Callable[..., tuple[torch.Tensor, torch.Tensor]],
           Callable[[torch.Tensor, int], torch.Tensor]]:
    """What the TRPO and gradient meta-steps build the same way: the meta-gradient, the scoring
    of candidate params, and the cross-process task mean (the identity in one process)."""
    _check_factory(policy, inner_opt, estimator, steps, first_order)
    gradient_at = surrogate_gradient_fn(policy, inner_opt, steps=steps, first_order=first_order, estimator=estimator,
                                        compile=compile)
    return gradient_at, score_fn(policy, inner_opt, steps=steps, compile=compile), _shard_mean(shard)


def _finite_gradient(meta_grad: MetaGradient) -> MetaGradient:
    if not torch.isfinite(meta_grad.loss):
        raise FloatingPointError(f"meta-loss is not finite ({float(meta_grad.loss)}); stopping before the update")
    return meta_grad


def _mean_kl_curvature(fisher: Callable[[DistParams, DistParams], DistParams],
                       mask: torch.Tensor) -> Callable[[DistParams, DistParams], DistParams]:
    """The Hessian of ``mean_kl(old, new)`` in ``new`` at ``new = old`` times a tangent, from the
    distribution's closed-form Fisher and the weights of the masked means (mask ``[N, T, E]``)."""
    def curvature(old: DistParams, tangent: DistParams) -> DistParams:
        m = mask.to(old[0].dtype)
        num_tasks, num_episodes = m.shape[0], m.shape[-1]
        weight = (m / m.sum(dim=1, keepdim=True).clamp_min(1.0) / (num_tasks * num_episodes)).unsqueeze(-1)
        return tuple(f * weight for f in fisher(old, tangent))

    return curvature


def _shard_mean(shard: TaskShard | None) -> Callable[[torch.Tensor, int], torch.Tensor]:
    if shard is None:
        return _local_mean
    return checks.instance(shard, "shard", TaskShard).mean


def _local_fisher_tasks(fisher_tasks: int | None, shard: TaskShard | None, num_tasks: int) -> int | None:
    """How many of this process's first tasks belong to the whole meta-batch's first
    ``fisher_tasks`` (``None``: all of them)."""
    if shard is None or fisher_tasks is None:
        return fisher_tasks
    # this process holds tasks start, start + step, ...: those below fisher_tasks come first
    return max(0, min(-(-(fisher_tasks - shard.start) // shard.step), num_tasks))


def _subsample(batch: TrainData, every: int, tasks: int | None) -> TrainData:
    """Every ``every``-th episode of the first ``tasks`` tasks (leaves ``[N, T, E, ...]``)."""
    if not isinstance(batch, RLBatch):
        return tuple(_subsample(b, every, tasks) for b in batch)
    per_step = (None if x is None else x[:tasks, :, ::every] for x in batch[:5])
    return RLBatch(*per_step, None if batch.advantage_std is None else batch.advantage_std[:tasks])


def trpo(
    policy: Functional, inner_opt: GradientTransformation, *, estimator: Estimator = MAML,
    config: TRPOConfig = TRPOConfig(), steps: int = 1, first_order: bool = False, compile: bool = False,
    shard: TaskShard | None = None,
) -> MetaStep:
    """The TRPO meta-step of MAML-RL (Finn et al. 2017): maximise the surrogate of the adapted
    policies subject to their mean KL ``<= config.max_kl``.

    The meta-params may be ``MetaParams(policy_params, inner_state)``: the trust region then
    covers the learned inner-optimizer state too (its effect on the adapted policies enters the
    KL through the exact curvature). With a DiCE / LVC estimator the exact curvature also
    differentiates through that estimator's inner objective (same values, its Jacobian).

    Args:
        policy: the policy template.
        inner_opt: the inner optimizer.
        estimator: the meta-gradient estimator (``meta.MAML``, ``meta.E_MAML``, ``meta.DICE``,
            ``meta.LVC``).
        config: trust region, conjugate gradient, line search and curvature sample.
        steps: inner steps.
        first_order: treat the inner gradients as constants (first-order MAML).
        compile: ``torch.compile`` the meta-gradient and the line search's scoring.
        shard: this process's part of a data-parallel meta-batch (``None``: one process). The
            curvature sample is the first ``config.fisher_tasks`` tasks of the whole meta-batch,
            wherever they sit.
    """
    checks.instance(config, "config", TRPOConfig)
    gradient_at, score, mean = _gradient_score_mean(policy, inner_opt, estimator, steps, first_order, compile, shard)
    dist = policy.distribution

    def init(meta_params: Any) -> TRPOState:
        return TRPOState()

    def update(meta_params: Any, state: TRPOState, train: TrainData, valid: RLBatch,
               meta_grad: MetaGradient | None = None) -> tuple[Any, TRPOState, MetaStepStats]:
        _check_step_inputs(train, valid, policy, steps, estimator)
        if config.curvature == "adapted" and isinstance(meta_params, MetaParams):
            raise ValueError("curvature='adapted' needs plain policy params; with a learned inner-optimizer state "
                             "(MetaParams) use curvature='exact'")
        # One pass gives the meta-gradient, the loss and the adapted params at the current point.
        grads, old_loss, adapted0, old_dist = _finite_gradient(
            gradient_at(meta_params, train, valid) if meta_grad is None else meta_grad)
        old_log_prob = dist.log_prob(old_dist, valid.actions)
        flat_params, unravel = ravel(meta_params)
        num_tasks = valid.mask.shape[0]
        flat_grad, old_loss = mean(ravel(grads)[0], num_tasks), mean(old_loss.detach(), num_tasks)
        fisher_tasks = _local_fisher_tasks(config.fisher_tasks, shard, num_tasks)

        sub_valid = _subsample(valid, config.fisher_subsample, fisher_tasks)
        if config.curvature == "exact":
            sub_train = _subsample(train, config.fisher_subsample, fisher_tasks)

            def outputs_fn(flat: torch.Tensor) -> DistParams:
                policy_params, inner_state = split_meta_params(unravel(flat))
                adapted = adaptation_path(policy_params, sub_train, policy, inner_opt, steps=steps,
                                          first_order=first_order, inner_state=inner_state,
                                          inner_objective=estimator.inner_objective)[-1]
                return dist.params(policy.apply_stacked(adapted, sub_valid.obs))
        else:
            sub_adapted = tree_map(lambda a: a[:fisher_tasks], adapted0)

            def outputs_fn(flat: torch.Tensor) -> DistParams:
                shift = unravel(flat - flat_params)  # adapted(theta) ~ adapted(theta0) + (theta - theta0)
                moved = tree_map(lambda a, s: a + s, sub_adapted, shift)
                return dist.params(policy.apply_stacked(moved, sub_valid.obs))

        num_fisher = sub_valid.mask.shape[0]
        if num_fisher == 0:  # none of the curvature sample's tasks is this process's
            local_curvature = torch.zeros_like
        else:
            closed_form = None if dist.fisher is None else _mean_kl_curvature(dist.fisher, sub_valid.mask)
            local_curvature = gauss_newton_operator(
                outputs_fn, lambda old, new: mean_kl(policy, old, new, sub_valid.mask), flat_params,
                output_curvature=closed_form,
            )

        def curvature(v: torch.Tensor) -> torch.Tensor:
            return mean(local_curvature(v), num_fisher)

        full_step = trpo_step_direction(curvature, flat_grad.detach(), config.max_kl, config.cg_iters, config.cg_damping)

        def loss_and_kl(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss, kl = score(unravel(flat), train, valid, old_log_prob, old_dist)
            return mean(loss, num_tasks), mean(kl, num_tasks)

        result = backtracking_line_search(
            loss_and_kl, flat_params.detach(), full_step, float(old_loss), config.max_kl,
            config.ls_max_steps, config.ls_backtrack_ratio,
        )
        new_params = tree_map(lambda p: p.detach().clone(), unravel(result.params))
        stats = {"meta_loss": float(old_loss), "loss_after": result.loss, "kl": result.kl,
                 "step_fraction": result.step_fraction, "grad_norm": float(flat_grad.norm())}
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"TRPO meta-step produced non-finite statistics {stats}")
        return new_params, state, stats

    return MetaStep(init, update)


def gradient(
    policy: Functional, inner_opt: GradientTransformation, meta_opt: GradientTransformation, *,
    estimator: Estimator = MAML, steps: int = 1, first_order: bool = False, compile: bool = False,
    shard: TaskShard | None = None,
) -> MetaStep:
    """A step of a first-order optimizer ``meta_opt`` (e.g. ``optim.adam``, or
    ``optim.chain(optim.clip_by_global_norm(c), optim.adam(lr))``) on the estimator's
    meta-gradient. The state is ``meta_opt``'s; ``stats["kl"]`` is the mean KL of the adapted
    policies before and after the step, for monitoring. ``shard``: as :func:`trpo`'s."""
    checks.instance(meta_opt, "meta_opt", GradientTransformation)
    gradient_at, score, mean = _gradient_score_mean(policy, inner_opt, estimator, steps, first_order, compile, shard)

    def update(meta_params: Any, state: Any, train: TrainData, valid: RLBatch,
               meta_grad: MetaGradient | None = None) -> tuple[Any, Any, MetaStepStats]:
        _check_step_inputs(train, valid, policy, steps, estimator)
        grads, loss, _, old_dist = _finite_gradient(
            gradient_at(meta_params, train, valid) if meta_grad is None else meta_grad)
        num_tasks = valid.mask.shape[0]
        grads, loss = tree_map(lambda g: mean(g, num_tasks), grads), mean(loss.detach(), num_tasks)
        updates, state = meta_opt.update(grads, state, meta_params)
        new_params = tree_map(lambda p, u: (p + u).detach(), meta_params, updates)
        with torch.no_grad():
            old_log_prob = policy.distribution.log_prob(old_dist, valid.actions)
            loss_after, kl = score(new_params, train, valid, old_log_prob, old_dist)
            loss_after, kl = mean(loss_after, num_tasks), mean(kl, num_tasks)
        flat_grad, _ = ravel(grads)
        stats = {"meta_loss": float(loss), "loss_after": float(loss_after), "kl": float(kl), "step_fraction": 1.0,
                 "grad_norm": float(flat_grad.norm())}
        return new_params, state, stats

    return MetaStep(meta_opt.init, update)


@dataclass(frozen=True)
class ProMPConfig:
    """Settings of :func:`promp` (ProMP, Rothfuss et al. 2019, section 6).

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
        checks.positive_int(self.epochs, "epochs")
        for name in ("clip_eps", "target_kl", "init_kl_coef"):
            checks.positive_number(getattr(self, name), name)


class ProMPState(NamedTuple):
    """The meta-step's state: the meta-optimizer's state and the KL coefficient ``eta`` (0-d)."""

    opt_state: Any
    kl_coef: torch.Tensor


def promp(
    policy: Functional, inner_opt: GradientTransformation, meta_opt: GradientTransformation, *,
    estimator: Estimator = LVC, config: ProMPConfig = ProMPConfig(), steps: int = 1, first_order: bool = False,
    shard: TaskShard | None = None,
) -> MetaStep:
    """ProMP's meta-step: ``config.epochs`` steps of ``meta_opt`` on the same meta-batch.

    Each epoch minimises ``L(theta) = mean_n L^CLIP_n(theta'_n(theta)) + eta mean_k KL_k(theta)``:
    ``L^CLIP`` the PPO clipped surrogate (``rl.ppo_clip_loss``, clip ``config.clip_eps``) of the
    adapted policy of each task on its post-update episodes, with the ratio to the adapted policy
    at the start of the step; ``KL_k`` the mean ``KL(pi_old || pi)`` of the policy adapted ``k``
    times on inner batch ``k`` (``k = 0``: the pre-update policy on the pre-update episodes);
    the inner step and the meta-gradient are those of ``estimator`` (ProMP uses :data:`LVC`;
    ``E_MAML`` adds its score term). Then ``eta`` adapts (see :class:`ProMPConfig`); it lives in
    the state as a 0-d tensor. The episodes are reused as they are in later epochs. The
    meta-params must be plain policy params. ``shard``: as :func:`trpo`'s.
    """
    _check_factory(policy, inner_opt, estimator, steps, first_order)
    checks.instance(meta_opt, "meta_opt", GradientTransformation)
    checks.instance(config, "config", ProMPConfig)
    mean = _shard_mean(shard)
    dist = policy.distribution
    adapt = partial(adaptation_path, policy=policy, inner_opt=inner_opt, steps=steps, first_order=first_order,
                    inner_objective=estimator.inner_objective)

    def init(params: Params) -> ProMPState:
        leaf = next(iter(params.values()))
        return ProMPState(meta_opt.init(params), torch.tensor(float(config.init_kl_coef), dtype=leaf.dtype,
                                                              device=leaf.device))

    def update(params: Params, state: ProMPState, train: TrainData, valid: RLBatch,
               meta_grad: MetaGradient | None = None) -> tuple[Params, ProMPState, MetaStepStats]:
        if meta_grad is not None:
            raise ValueError("meta_grad: the ProMP meta-step computes its own gradients (several epochs); pass None")
        if isinstance(params, MetaParams):
            raise ValueError("params: the ProMP meta-step needs plain policy params, not MetaParams (a learned "
                             "inner-optimizer state is supported by meta.trpo)")
        checks.instance(state, "state", ProMPState)
        _check_step_inputs(train, valid, policy, steps, estimator)
        batches = per_step_batches(train, steps)
        with torch.no_grad():
            old_path = adapt(params, train)
            old_valid = dist.params(policy.apply_stacked(old_path[-1], valid.obs))
            old_valid_lp = dist.log_prob(old_valid, valid.actions)
            old_inner = [dist.params(policy.apply_stacked(p, b.obs)) for p, b in zip(old_path[:-1], batches)]
        coef = state.kl_coef.detach()

        def parts(p: Params) -> tuple[torch.Tensor, torch.Tensor, list[Params]]:
            path = adapt(p, train)
            log_prob = dist.log_prob(dist.params(policy.apply_stacked(path[-1], valid.obs)), valid.actions)
            clip = vmap(partial(ppo_clip_loss, clip_eps=config.clip_eps))(log_prob, old_valid_lp, valid.advantages,
                                                                           valid.mask)
            inner_kl = sum(mean_kl(policy, o, dist.params(policy.apply_stacked(q, b.obs)), b.mask)
                           for o, q, b in zip(old_inner, path[:-1], batches)) / len(batches)
            return clip.mean(), inner_kl, path

        def objective(p: Params) -> tuple[torch.Tensor, torch.Tensor]:
            clip, inner_kl, path = parts(p)
            loss = clip + coef * inner_kl
            if estimator.outer_term is not None:
                loss = loss + estimator.outer_term(path[:-1], batches, valid, policy)
            return loss, clip

        step_fn = grad_and_value(objective, has_aux=True)
        opt_state = state.opt_state
        first_loss, first_norm = None, None
        num_tasks = valid.mask.shape[0]
        for _ in range(config.epochs):
            grads, (loss, _) = step_fn(params)
            grads, loss = tree_map(lambda g: mean(g, num_tasks), grads), mean(loss.detach(), num_tasks)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"ProMP meta-loss is not finite ({float(loss)}); stopping before the update")
            if first_loss is None:
                first_loss, first_norm = float(loss), float(ravel(grads)[0].norm())
            updates, opt_state = meta_opt.update(grads, opt_state, params)
            params = tree_map(lambda q, u: (q + u).detach(), params, updates)
        with torch.no_grad():
            clip_after, inner_kl, path = parts(params)
            outer_kl = mean_kl(policy, old_valid, adapted_distributions(path[-1], valid, policy), valid.mask)
            clip_after, inner_kl, outer_kl = (mean(x, num_tasks) for x in (clip_after, inner_kl, outer_kl))
        inner_kl_value = float(inner_kl)
        if inner_kl_value < config.target_kl / 1.5:
            new_coef = coef / 2
        elif inner_kl_value > config.target_kl * 1.5:
            new_coef = coef * 2
        else:
            new_coef = coef
        stats = {"meta_loss": first_loss, "loss_after": float(clip_after), "kl": float(outer_kl),
                 "step_fraction": 1.0, "grad_norm": first_norm, "inner_kl": inner_kl_value, "kl_coef": float(coef)}
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"ProMP meta-step produced non-finite statistics {stats}")
        return tree_map(lambda q: q.detach().clone(), params), ProMPState(opt_state, new_coef), stats

    return MetaStep(init, update)
