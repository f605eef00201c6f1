"""The MAML-RL trainer: one meta-iteration loop for every task family.

One meta-iteration: sample tasks -> roll out the meta-params -> adapt (an inner step per task,
on fresh episodes of the policy adapted so far) -> roll out the adapted params -> the
configured :class:`~functional_metarl.meta.MetaStep` (TRPO, Adam or ProMP, with the configured
estimator). Where the episodes come from is a :class:`~functional_metarl.runners.MAMLSampler`:
a pure family (2D navigation, the default), bandits and tabular MDPs under the split-trial
protocol, or a simulator family through a vector env. Everything but the loop, the device, the
generator and the files is a pure function of ``meta``; the loop, checkpoints, metrics and
resume come from :class:`~functional_metarl.runners.base.Runner`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch

from .. import checks
from ..envs import Episodes, Navigation2D
from ..meta import (
    ESTIMATORS,
    TaskShard,
    FINAL_REWARD_WINDOW,
    MetaGradient,
    MetaParams,
    MetaStep,
    ProMPConfig,
    RLBatch,
    TRPOConfig,
    adapt_tasks,
    adapt_tasks_vjp,
    estimator_named,
    gradient,
    make_rl_batches,
    promp,
    scale_by_final_reward,
    surrogate_gradient_through,
    trpo,
)
from ..nn import categorical_policy, gaussian_policy
from ..optim import MetaSgdState, adam, meta_sgd, sgd
from ..tree import Params, tree_map
from .base import RunConfig, Runner, restore_like
from .maml_samplers import EpisodeInfo, MAMLSampler, PureFamilySampler

__all__ = ["MAMLConfig", "MAMLTrainer", "Evaluation", "make_meta_step"]


@dataclass
class MAMLConfig(RunConfig):
    """MAML-RL settings; defaults are the MAML paper's 2D-navigation settings (one iteration is a
    meta-iteration). ``horizon`` and ``action_scale`` build the default navigation sampler; with
    another sampler, ``horizon`` must equal its episode length and ``action_scale`` is unused."""

    iterations: int = 500
    checkpoint_every: int = 10
    meta_batch_size: int = 20  # tasks per meta-iteration
    episodes_per_task: int = 20  # trajectories per task, before and after adaptation
    horizon: int = 100
    action_scale: float = 1.0  # Navigation2D's action_scale (0.1 = the paper code's normalized actions)
    inner_lr: float = 0.1
    inner_steps: int = 1
    learn_inner_lr: bool = False  # Meta-SGD: per-parameter inner step sizes, meta-learned from inner_lr
    normalize_inner_advantages: bool = True  # False: the inner steps learn from the raw baseline residuals
    # A reference error d0: every inner step (training and evaluation) of task n is scaled by
    # d_n / d0, d_n = |mean reward of its episodes' last 10 steps| (meta.scale_by_final_reward),
    # for cost-like rewards such as 2D navigation's -distance. None: fixed-length steps (MAML).
    proportional_inner_step: float | None = None
    gamma: float = 0.99
    gae_lambda: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    mean_bound: float | None = None  # squash the policy mean into [-mean_bound, mean_bound]; None: unbounded
    activation: str = "tanh"
    first_order: bool = False
    meta_optimizer: str = "trpo"  # or "adam", or "promp" (meta.promp, Adam inside)
    meta_lr: float = 1e-3  # Adam and ProMP meta-steps only
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    estimator: str = "maml"  # meta-gradient estimator: a key of meta.ESTIMATORS (maml, e-maml, dice, lvc)
    promp: ProMPConfig = field(default_factory=ProMPConfig)  # meta_optimizer="promp" only
    compile: bool = False  # torch.compile the meta-gradient and the line-search scoring (eager is the reference)
    dtype: str = "float32"  # of the params and the default sampler's data; "float64" for exactness checks

    RESUMABLE: ClassVar[tuple[str, ...]] = ("iterations", "device", "checkpoint_every", "compile")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.trpo, dict):
            self.trpo = TRPOConfig(**self.trpo)
        if isinstance(self.promp, dict):
            self.promp = ProMPConfig(**self.promp)
        checks.instance(self.trpo, "trpo", TRPOConfig)
        checks.instance(self.promp, "promp", ProMPConfig)
        checks.one_of(self.estimator, "estimator", tuple(ESTIMATORS))
        checks.one_of(self.meta_optimizer, "meta_optimizer", ("trpo", "adam", "promp"))
        self.hidden = tuple(self.hidden)
        for k, width in enumerate(self.hidden):
            checks.positive_int(width, f"hidden[{k}]")
        for name in ("meta_batch_size", "episodes_per_task", "horizon", "inner_steps"):
            checks.positive_int(getattr(self, name), name)
        for name in ("inner_lr", "meta_lr", "action_scale"):
            checks.positive_number(getattr(self, name), name)
        for name in ("gamma", "gae_lambda"):
            checks.probability(getattr(self, name), name)
        for name in ("learn_inner_lr", "normalize_inner_advantages", "first_order", "compile"):
            checks.flag(getattr(self, name), name)
        checks.one_of(self.dtype, "dtype", ("float32", "float64"))
        checks.instance(self.activation, "activation", str)
        if self.mean_bound is not None:
            checks.positive_number(self.mean_bound, "mean_bound")
        if self.proportional_inner_step is not None:
            checks.positive_number(self.proportional_inner_step, "proportional_inner_step")
            if self.horizon < FINAL_REWARD_WINDOW:
                raise ValueError(f"proportional_inner_step needs horizon >= {FINAL_REWARD_WINDOW} (it reads the last "
                                 f"{FINAL_REWARD_WINDOW} steps), got {self.horizon}")
        if self.learn_inner_lr and (self.meta_optimizer != "trpo" or self.trpo.curvature != "exact"):
            raise ValueError(
                "learn_inner_lr needs meta_optimizer='trpo' with curvature='exact' (the step sizes enter the "
                f"trust region through the exact curvature), got {self.meta_optimizer!r} / {self.trpo.curvature!r}"
            )


def make_meta_step(config: MAMLConfig, policy: Any, inner_opt: Any, shard: TaskShard | None = None) -> MetaStep:
    """The :class:`~functional_metarl.meta.MetaStep` that ``config`` names (meta-optimizer,
    estimator, inner steps, first order, compile); ``shard``: this process's part of a
    data-parallel meta-batch (``runners.DataParallel.task_shard``)."""
    estimator = estimator_named(config.estimator)
    common = {"steps": config.inner_steps, "first_order": config.first_order, "shard": shard}
    if config.meta_optimizer == "trpo":
        return trpo(policy, inner_opt, estimator=estimator, config=config.trpo, compile=config.compile, **common)
    if config.meta_optimizer == "adam":
        return gradient(policy, inner_opt, adam(config.meta_lr), estimator=estimator, compile=config.compile, **common)
    return promp(policy, inner_opt, adam(config.meta_lr), estimator=estimator, config=config.promp, **common)


class Evaluation(NamedTuple):
    """What :meth:`MAMLTrainer.evaluate_with_episodes` saw: the tasks, and per step (0 = before
    adapting) the episodes ``[N, T, E, ...]`` and their info (e.g. ``"success"`` ``[N, E]``)."""

    tasks: Any
    episodes: list[Episodes]
    info: list[EpisodeInfo]


def _episode_return(rewards: torch.Tensor) -> float:
    """Mean over tasks and episodes of the summed reward. rewards ``[N, T, E]``."""
    return float(rewards.sum(dim=1).mean())


class MAMLTrainer(Runner):
    """Meta-trains an MLP policy with MAML on the episodes of ``sampler``: a Gaussian policy for
    continuous actions, a categorical one for discrete actions.

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing is written).
        sampler: a :class:`~functional_metarl.runners.MAMLSampler` (default:
            ``PureFamilySampler(Navigation2D(config.horizon, config.action_scale))``); the trainer
            closes it in :meth:`close`. Resume needs a sampler of the same family.
        meta_step: a :class:`~functional_metarl.meta.MetaStep` to run instead of the one the
            config names (``make_meta_step``); its ``stats`` go into the metrics as they are.
            Resume needs the same step again.

    Launched by ``torchrun`` with several processes, the trainer splits each meta-batch over
    them (``runners.DataParallel``): each process samples and adapts its own tasks, the
    meta-step all-reduces what it decides on, the params stay identical everywhere, and rank 0
    alone writes files and shows progress. ``meta_batch_size`` must split evenly.

    Attributes beside the base's: ``params`` (the latest meta-params), ``best_params`` (the
    meta-params whose post-adaptation return was the highest during training: the MAML paper
    evaluates "the model with the best average return during training"), ``learned_lrs`` /
    ``best_learned_lrs`` (Meta-SGD's step sizes, else None), ``meta_state`` (the meta-step's).
    """

    config_class = MAMLConfig
    log_prefix = "train"
    progress_metric = "post_return"

    def __init__(self, config: MAMLConfig, output_dir: Any = None, sampler: MAMLSampler | None = None,
                 meta_step: MetaStep | None = None):
        super().__init__(config, output_dir)
        self.shard = self.join_data_parallel(config.meta_batch_size)
        dtype = getattr(torch, config.dtype)
        if sampler is None:
            sampler = PureFamilySampler(Navigation2D(horizon=config.horizon, action_scale=config.action_scale), dtype)
        self.sampler = checks.instance(sampler, "sampler", MAMLSampler)
        if sampler.dtype != dtype:
            raise ValueError(f"dtype: the sampler's data are {sampler.dtype} but config.dtype is {config.dtype!r}")
        if sampler.horizon != config.horizon:
            raise ValueError(f"sampler: its episodes last {sampler.horizon} steps but config.horizon is {config.horizon}")
        if sampler.fixed_inner_steps is not None and config.inner_steps != sampler.fixed_inner_steps:
            raise ValueError(f"inner_steps: {sampler!r} takes exactly {sampler.fixed_inner_steps} inner step(s), "
                             f"got {config.inner_steps}")
        if sampler.discrete_actions:
            if config.mean_bound is not None:
                raise ValueError("mean_bound: a categorical policy (discrete actions) has no mean to bound")
            self.policy = categorical_policy(sampler.obs_dim, sampler.action_size, config.hidden, config.activation)
        else:
            self.policy = gaussian_policy(sampler.obs_dim, sampler.action_size, config.hidden, config.activation,
                                          mean_bound=config.mean_bound)
        self.inner_opt = meta_sgd(config.inner_lr) if config.learn_inner_lr else sgd(config.inner_lr)
        if meta_step is not None:
            checks.instance(meta_step, "meta_step", MetaStep)
        self.custom_meta_step = meta_step is not None
        self.meta_step = meta_step if meta_step is not None else make_meta_step(config, self.policy, self.inner_opt,
                                                                                self.shard)
        self.params: Params = self.parallel.broadcast(self.policy.init(config.seed, device=self.device, dtype=dtype))
        self.learned_lrs: Params | None = self.inner_opt.init(self.params).lr if config.learn_inner_lr else None
        self.meta_state = self.meta_step.init(self.meta_params())
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.best_params: Params = tree_map(torch.clone, self.params)
        self.best_learned_lrs: Params | None = None if self.learned_lrs is None else tree_map(torch.clone, self.learned_lrs)
        self.best_post_return = -math.inf

    def meta_params(self) -> Params | MetaParams:
        """What the meta-step updates: the params, with Meta-SGD's step sizes when they are learned."""
        return MetaParams(self.params, MetaSgdState(self.learned_lrs)) if self.config.learn_inner_lr else self.params

    # ----------------------------------------------------------------- pure pieces, bound
    def _keeps_adaptation(self) -> bool:
        """Whether an iteration keeps the adaptation's vjp for the meta-gradient: with the default
        estimator, one inner step, fixed inner step sizes, no compiled gradient and a meta-step
        that accepts a precomputed gradient."""
        cfg = self.config
        return (not self.custom_meta_step and cfg.estimator == "maml" and cfg.inner_steps == 1
                and not cfg.learn_inner_lr and not cfg.compile and cfg.meta_optimizer in ("trpo", "adam"))

    def adapt_batch(self, params: Params, batch: RLBatch, per_task: bool = False, lr: float | None = None,
                    learned_lrs: Params | None = None) -> Params:
        """One inner SGD step of ``lr`` (default ``config.inner_lr``) per task on ``batch``;
        leaves ``[N, ...]``. Each further step needs fresh episodes of the adapted policy.

        With ``learn_inner_lr`` the step sizes are the learned per-parameter ones (``learned_lrs``,
        default the trainer's current ones), scaled by ``lr / config.inner_lr`` when ``lr`` is given.
        """
        cfg = self.config
        with torch.no_grad():
            if cfg.learn_inner_lr:
                lrs = self.learned_lrs if learned_lrs is None else learned_lrs
                scale = 1.0 if lr is None else lr / cfg.inner_lr
                state = MetaSgdState(tree_map(lambda a: a * scale, lrs))
                return adapt_tasks(params, batch, self.policy, self.inner_opt, first_order=True,
                                   params_per_task=per_task, inner_state=state)
            inner_opt = self.inner_opt if lr is None else sgd(lr)
            return adapt_tasks(params, batch, self.policy, inner_opt, first_order=True, params_per_task=per_task)

    def inner_batch(self, episodes: Episodes) -> RLBatch:
        """The RLBatch an inner step learns from: advantages normalized per task unless
        ``config.normalize_inner_advantages`` is False, then scaled per task by the episodes'
        final error with ``config.proportional_inner_step``. episodes leaves ``[N, T, E, ...]``."""
        cfg = self.config
        batch = make_rl_batches(episodes, cfg.gamma, cfg.gae_lambda, normalize=cfg.normalize_inner_advantages)
        if cfg.proportional_inner_step is not None:
            batch = scale_by_final_reward(batch, cfg.proportional_inner_step)
        return batch

    def sample(self, params: Params, tasks: Any, per_task: bool = False, step: int = 0,
               generator: torch.Generator | None = None, episodes_per_task: int | None = None,
               sampler: MAMLSampler | None = None, shard: TaskShard | None = None) -> tuple[Episodes, EpisodeInfo]:
        """Episodes ``[N, T, E, ...]`` of ``params`` (shared, or per task), adapted ``step`` times,
        on ``tasks``, and their extra info, from ``sampler`` (default the trainer's) with
        ``generator`` (default the trainer's); ``shard``: only this process's part of ``tasks``."""
        sampler = self.sampler if sampler is None else sampler
        return sampler.sample(params, tasks, self.policy, per_task=per_task, step=step, shard=shard,
                              episodes_per_task=self.config.episodes_per_task if episodes_per_task is None
                              else episodes_per_task, generator=self.generator if generator is None else generator)

    # ----------------------------------------------------------------- training
    def run_iteration(self) -> dict[str, float]:
        """One meta-iteration; returns its metrics."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.sampler.sample_tasks(cfg.meta_batch_size, self.generator)
        # Inner step k learns from episodes of the policy adapted k times (fresh episodes per
        # step, as pytorch-maml-rl samples them); the meta-step then replays those steps.
        train_episodes, train_info = self.sample(self.params, tasks, shard=self.shard)
        train_batches = [self.inner_batch(train_episodes)]
        meta_grad: MetaGradient | None = None
        if self._keeps_adaptation():
            # Keep the adaptation's vjp: the meta-gradient then differentiates through it instead
            # of adapting again (the same gradient; one inner forward and backward pass fewer).
            adapted, pullback = adapt_tasks_vjp(self.params, train_batches[0], self.policy, self.inner_opt,
                                                first_order=cfg.first_order)
        else:
            adapted = self.adapt_batch(self.params, train_batches[0])
        for step in range(1, cfg.inner_steps):
            train_batches.append(self.inner_batch(self.sample(adapted, tasks, per_task=True, step=step,
                                                              shard=self.shard)[0]))
            adapted = self.adapt_batch(adapted, train_batches[-1], per_task=True)
        train = train_batches[0] if cfg.inner_steps == 1 else tuple(train_batches)
        valid_episodes, valid_info = self.sample(adapted, tasks, per_task=True, step=cfg.inner_steps, shard=self.shard)
        sampled = time.perf_counter()
        valid = make_rl_batches(valid_episodes, cfg.gamma, cfg.gae_lambda)
        if self._keeps_adaptation():
            meta_grad = surrogate_gradient_through(adapted, pullback, valid, self.policy)
        new_meta, self.meta_state, stats = self.meta_step.update(self.meta_params(), self.meta_state, train, valid,
                                                                 meta_grad)
        # The episodes' numbers of the whole meta-batch (this process's tasks' alone when split).
        num_tasks = valid_episodes.rewards.shape[0]
        means = {"pre_return": train_episodes.rewards.sum(dim=1).mean(),
                 "post_return": valid_episodes.rewards.sum(dim=1).mean(),
                 **{f"{when}_{key}": value.float().mean()
                    for when, info in (("pre", train_info), ("post", valid_info)) for key, value in info.items()},
                 "pre_total": train_episodes.rewards.sum(dim=(1, 2)).mean(),
                 "post_total": valid_episodes.rewards.sum(dim=(1, 2)).mean()}
        episodes = {k: float(self.parallel.task_mean(v, num_tasks)) for k, v in means.items()}
        episodes["trial_return"] = episodes["pre_total"] + episodes["post_total"]
        episodes["env_steps"] = float(self.parallel.sum(train_episodes.mask.sum() + valid_episodes.mask.sum()))
        if episodes["post_return"] > self.best_post_return:  # measured with the params before this step
            self.best_post_return, self.best_params = episodes["post_return"], self.params
            self.best_learned_lrs = self.learned_lrs
        if cfg.learn_inner_lr:
            self.params, self.learned_lrs = new_meta.params, new_meta.inner_state.lr
        else:
            self.params = new_meta
        return {**episodes, **stats, "sampling_seconds": sampled - start, "seconds": time.perf_counter() - start}

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, num_tasks: int = 40, max_steps: int = 3, seed: int | None = None, **kwargs: Any) -> dict[str, float]:
        """Mean episode return on held-out tasks after 0..max_steps inner steps, keyed ``"0"``,
        ``"1"``, ...; see :meth:`evaluate_with_episodes` for the protocol and the keyword arguments."""
        returns, _ = self.evaluate_with_episodes(num_tasks, max_steps, seed, **kwargs)
        return returns

    def evaluate_with_episodes(
        self,
        num_tasks: int = 40,
        max_steps: int = 3,
        seed: int | None = None,
        episodes_per_task: int = 40,
        inner_lrs: Sequence[float] | None = None,
        params: Params | None = None,
        learned_lrs: Params | None = None,
        split: str = "train",
        deterministic: bool = False,
    ) -> tuple[dict[str, float], Evaluation]:
        """Held-out evaluation in the MAML paper's protocol (section 5.3 and appendix A.2).

        Each of ``max_steps`` steps adapts on ``episodes_per_task`` fresh episodes of the current
        adapted policy (the paper: "up to 4 gradient updates, each with 40 samples"). Step ``k``
        uses step size ``inner_lrs[min(k, len - 1)]``. The paper used "alpha = 0.1 for the first
        step, and alpha = 0.05 for all future steps" (``inner_lrs=(0.1, 0.05)``); for policies
        meta-trained here, halving still overshoots from the second step on, and a tenth did best
        on separate tuning task sets (docs/results/maml-nav.md), so the default is ``(inner_lr, inner_lr / 10)``.
        ``params`` defaults to the latest meta-params (pass ``trainer.best_params`` for the
        paper's choice of model). With ``learn_inner_lr``, step ``k`` uses the learned
        per-parameter step sizes times ``inner_lrs[k] / inner_lr``; pass the ``learned_lrs`` that
        belong to ``params`` (``trainer.best_learned_lrs`` with ``trainer.best_params``). Tasks come
        from their own generator (``seed`` defaults to ``config.seed + 10_000``) and sampler
        (``sampler.for_evaluation(seed, deterministic)``), so they do not overlap the training
        stream. ``split``: the family's task split (Meta-World: ``"test"`` for the held-out
        classes); ``deterministic``: act with the policy's mean where the sampler can.

        Returns ``(returns, evaluation)``: ``returns`` maps ``"k"`` to the mean episode return
        after ``k`` steps (and ``"success_k"`` to the success rate when the sampler reports
        success); ``evaluation`` holds the tasks and every step's episodes and info.
        """
        cfg = self.config
        checks.positive_int(num_tasks, "num_tasks")
        checks.non_negative_int(max_steps, "max_steps")
        checks.positive_int(episodes_per_task, "episodes_per_task")
        if seed is not None:
            checks.int_in_range(seed, "seed")
        inner_lrs = (cfg.inner_lr, cfg.inner_lr / 10) if inner_lrs is None else tuple(inner_lrs)
        if not inner_lrs:
            raise ValueError("inner_lrs must be a non-empty sequence of positive finite step sizes, got ()")
        for k, lr in enumerate(inner_lrs):
            checks.positive_number(lr, f"inner_lrs[{k}]")
        meta_params = self.params if params is None else params
        self.policy.check(meta_params)
        if cfg.learn_inner_lr:
            if params is None:
                learned_lrs = self.learned_lrs if learned_lrs is None else learned_lrs
            elif learned_lrs is None:
                raise ValueError("with learn_inner_lr, pass the learned_lrs that belong to params "
                                 "(e.g. params=trainer.best_params, learned_lrs=trainer.best_learned_lrs)")
            self.policy.check(learned_lrs)
        elif learned_lrs is not None:
            raise ValueError("learned_lrs given, but this trainer has learn_inner_lr=False")
        fixed = self.sampler.fixed_inner_steps
        if fixed is not None and max_steps > fixed:
            raise ValueError(f"max_steps: {self.sampler!r} allows {fixed} inner step(s), got {max_steps}")
        seed = cfg.seed + 10_000 if seed is None else seed
        gen = torch.Generator(device=self.device).manual_seed(seed)
        sampler = self.sampler.for_evaluation(seed, deterministic=checks.flag(deterministic, "deterministic"))
        try:
            tasks = sampler.sample_tasks(num_tasks, gen, split)
            adapted = tree_map(lambda p: p.expand(num_tasks, *p.shape).clone(), meta_params)
            returns: dict[str, float] = {}
            evaluation = Evaluation(tasks, [], [])
            for step in range(max_steps + 1):
                episodes, info = self.sample(adapted, tasks, per_task=True, step=step, generator=gen,
                                             episodes_per_task=episodes_per_task, sampler=sampler)
                returns[str(step)] = _episode_return(episodes.rewards)
                returns.update({f"{key}_{step}": float(value.float().mean()) for key, value in info.items()})
                evaluation.episodes.append(episodes)
                evaluation.info.append(info)
                if step < max_steps:
                    batch = self.inner_batch(episodes)
                    adapted = self.adapt_batch(adapted, batch, per_task=True,
                                               lr=inner_lrs[min(step, len(inner_lrs) - 1)], learned_lrs=learned_lrs)
        finally:
            if sampler is not self.sampler:
                sampler.close()
        return returns, evaluation

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Params, best params, Meta-SGD step sizes, the meta-step's state and the generator."""
        return {
            "params": self.params,
            "best_params": self.best_params,
            "best_post_return": self.best_post_return,
            "learned_lrs": self.learned_lrs,
            "best_learned_lrs": self.best_learned_lrs,
            "meta_state": self.meta_state,
            "generator": self.generator.get_state(),
            "sampler": repr(self.sampler),
            "sampler_state": self.sampler.state_dict(),
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`runner_state`'s values (written with this trainer's settings)."""
        live = self.runner_state()
        for name in ("params", "best_params", "learned_lrs", "best_learned_lrs", "meta_state"):
            setattr(self, name, restore_like(state[name], live[name], name))
        if state["sampler"] != repr(self.sampler):
            raise ValueError(f"sampler: the checkpoint was written with {state['sampler']}, not {self.sampler!r}")
        self.best_post_return = float(state["best_post_return"])
        self.generator.set_state(state["generator"])
        self.sampler.load_state_dict(state["sampler_state"])

    def close(self) -> None:
        """Close the sampler's envs and the TensorBoard writer."""
        self.sampler.close()
        super().close()
