"""The MAML-RL trainer: the only stateful piece of the MAML path.

It owns the device, the random generator, the parameters, the logs and the checkpoints, and
calls pure functions for everything else: sample tasks -> roll out the meta-params -> adapt ->
roll out the adapted params -> meta-step (TRPO or Adam).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.func import grad_and_value
from tqdm.auto import tqdm

from ..envs import Episodes, Navigation2D, rollout, sample_noise
from ..meta import (
    ESTIMATORS,
    MetaParams,
    ProMPConfig,
    ProMPState,
    RLBatch,
    TRPOConfig,
    adapt_tasks,
    check_estimator,
    maml_gradient_step,
    maml_promp_step,
    maml_trpo_step,
    make_rl_batches,
    scale_by_final_reward,
)
from ..meta.maml_rl import (
    FINAL_REWARD_WINDOW,
    _adapt_tasks_vjp,
    _estimator_pieces,
    _surrogate_grad_through,
    default_score_fn,
)
from ..nn import gaussian_policy
from ..nn.core import _check_mean_bound
from ..optim import AdamState, MetaSgdState, adam, meta_sgd, sgd
from ..tree import Params, tree_map
from .checkpoint import atomic_save, atomic_write_json, read_checkpoint, resolve_device
from .scalars import ScalarLogger

__all__ = ["MAMLConfig", "MAMLTrainer", "resolve_device", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class MAMLConfig:
    """MAML-TRPO settings; defaults are the MAML paper's 2D-navigation settings."""

    meta_iterations: int = 500
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
    meta_optimizer: str = "trpo"  # or "adam", or "promp" (meta.maml_promp_step, Adam inside)
    meta_lr: float = 1e-3  # Adam and ProMP meta-steps only
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    estimator: str = "maml"  # meta-gradient estimator: one of meta.ESTIMATORS (maml, e-maml, dice, lvc)
    promp: ProMPConfig = field(default_factory=ProMPConfig)  # meta_optimizer="promp" only
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10
    compile: bool = False  # torch.compile the meta-gradient and the line-search surrogate (eager is the reference)

    def __post_init__(self):
        if isinstance(self.trpo, dict):
            self.trpo = TRPOConfig(**self.trpo)
        if isinstance(self.promp, dict):
            self.promp = ProMPConfig(**self.promp)
        if not isinstance(self.trpo, TRPOConfig) or not isinstance(self.promp, ProMPConfig):
            raise TypeError(f"trpo / promp must be a TRPOConfig / ProMPConfig, got {type(self.trpo).__name__} / "
                            f"{type(self.promp).__name__}")
        try:
            check_estimator(self.estimator)
        except (TypeError, ValueError) as error:
            raise type(error)(f"estimator: {error} (choices: {', '.join(ESTIMATORS)})") from None
        self.hidden = tuple(self.hidden)
        for name in ("meta_iterations", "meta_batch_size", "episodes_per_task", "horizon", "inner_steps", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        optional = ("proportional_inner_step",) if self.proportional_inner_step is not None else ()
        for name in ("inner_lr", "meta_lr", "action_scale", *optional):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        _check_mean_bound(self.mean_bound)  # fail when the config is built, not with the trainer
        if self.proportional_inner_step is not None and self.horizon < FINAL_REWARD_WINDOW:
            raise ValueError(f"proportional_inner_step needs horizon >= {FINAL_REWARD_WINDOW} (it reads the last "
                             f"{FINAL_REWARD_WINDOW} steps), got {self.horizon}")
        for name in ("learn_inner_lr", "normalize_inner_advantages", "first_order", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if self.meta_optimizer not in ("trpo", "adam", "promp"):
            raise ValueError(f"meta_optimizer must be 'trpo', 'adam' or 'promp', got {self.meta_optimizer!r}")
        if self.learn_inner_lr and (self.meta_optimizer != "trpo" or self.trpo.curvature != "exact"):
            raise ValueError(
                "learn_inner_lr needs meta_optimizer='trpo' with curvature='exact' (the step sizes enter the "
                f"trust region through the exact curvature), got {self.meta_optimizer!r} / {self.trpo.curvature!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (stored in checkpoints and metrics.json)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


def _moved(tree: Params | None, device: torch.device | str) -> Params | None:
    """A params dict detached and moved to ``device`` (``None`` stays ``None``)."""
    return None if tree is None else {k: v.detach().to(device) for k, v in tree.items()}


def _gradient_through_kept_adaptation(adapted: Params, pullback: Any, policy: Any, params: Params, train: RLBatch,
                                      valid: RLBatch, old_log_prob: None) -> Any:
    """A ``grad_fn`` for ``maml_trpo_step`` / ``maml_gradient_step`` from a kept adaptation of
    ``params`` on ``train`` (``meta.maml_rl._adapt_tasks_vjp``); ``params`` and ``train`` are the
    ones that adaptation used, so only ``valid`` is read."""
    return _surrogate_grad_through(adapted, pullback, valid, policy)


def _num_tasks(tasks: Any) -> int:
    """The leading (task) axis of a batch of tasks: a NamedTuple of tensors ``[N, ...]`` (any
    pure task family, e.g. ``NavTask(goal [N, 2])``)."""
    leaves = [x for x in tasks if isinstance(x, torch.Tensor)] if isinstance(tasks, tuple) else []
    if not leaves or leaves[0].ndim == 0:
        raise TypeError(f"tasks must be a NamedTuple of tensors with a leading task axis, got {type(tasks).__name__}")
    return leaves[0].shape[0]


def _episode_return(rewards: torch.Tensor) -> float:
    """Mean over tasks and episodes of the summed reward. rewards ``[N, T, E]``."""
    return float(rewards.sum(dim=1).mean())


class MAMLTrainer:
    """Trains a Gaussian MLP policy with MAML on a pure continuous-action task family (default
    Navigation2D; any env with ``obs_dim``, ``act_dim``, ``horizon``, ``sample_tasks``, ``reset``
    and ``step`` whose tasks are a NamedTuple of tensors with a leading task axis).

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing is written).
        env: a pure task family with ``sample_tasks`` / ``reset`` / ``step``.
    """

    def __init__(self, config: MAMLConfig, output_dir: str | Path | None = None, env: Any = None):
        self.config = config
        self.env = env if env is not None else Navigation2D(horizon=config.horizon, action_scale=config.action_scale)
        if self.env.horizon != config.horizon:
            raise ValueError(f"env.horizon ({self.env.horizon}) differs from config.horizon ({config.horizon})")
        self.device = resolve_device(config.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.policy = gaussian_policy(self.env.obs_dim, self.env.act_dim, config.hidden, config.activation,
                                      mean_bound=config.mean_bound)
        self.inner_opt = meta_sgd(config.inner_lr) if config.learn_inner_lr else sgd(config.inner_lr)
        self.meta_opt = adam(config.meta_lr)
        self.params: Params = self.policy.init(config.seed, device=self.device)
        # Meta-SGD's per-parameter step sizes (None with a fixed inner_lr): meta-learned with params.
        self.learned_lrs: Params | None = self.inner_opt.init(self.params).lr if config.learn_inner_lr else None
        self.meta_opt_state = self.meta_opt.init(self.params) if config.meta_optimizer in ("adam", "promp") else None
        # ProMP's adaptive KL coefficient (a Python float; None for the other meta-steps).
        self.promp_kl_coef: float | None = config.promp.init_kl_coef if config.meta_optimizer == "promp" else None
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        # The paper evaluates "the model with the best average return during training": the
        # meta-params whose post-adaptation return was highest, kept beside the latest ones.
        self.best_params: Params = tree_map(torch.clone, self.params)
        self.best_learned_lrs: Params | None = None if self.learned_lrs is None else tree_map(torch.clone, self.learned_lrs)
        self.best_post_return = -math.inf
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)
        self._grad_fn, self._score_fn = self._make_step_fns()

    # ----------------------------------------------------------------- pure pieces, bound
    def _make_step_fns(self) -> tuple[Any, Any]:
        """``(meta-gradient, line-search scoring or None for the default)`` of the configured
        estimator, both compiled with ``config.compile``: the meta-gradient and the line search's
        evaluations are where the iteration's time is (``benchmarks/maml_nav_iteration.py
        --roofline``). The rollouts stay eager: compiled per step, their call overhead cost more
        than the fusion saved."""
        cfg = self.config
        surrogate, _ = _estimator_pieces(cfg.estimator, self.policy, self.inner_opt, cfg.inner_steps, cfg.first_order)
        grad_fn = grad_and_value(surrogate, has_aux=True)
        if not cfg.compile:
            return grad_fn, None
        score = default_score_fn(self.policy, self.inner_opt, cfg.inner_steps)
        return torch.compile(grad_fn, dynamic=False), torch.compile(score, dynamic=False)

    def _keeps_adaptation(self) -> bool:
        """Whether ``train_iteration`` keeps the adaptation's vjp for the meta-gradient: with the
        default surrogate, one inner step, fixed inner step sizes and no compiled gradient."""
        cfg = self.config
        return (cfg.estimator == "maml" and cfg.inner_steps == 1 and not cfg.learn_inner_lr and not cfg.compile
                and cfg.meta_optimizer in ("trpo", "adam"))

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

    def sample(self, params: Params, tasks: Any, per_task: bool = False, generator: torch.Generator | None = None,
               episodes_per_task: int | None = None) -> Episodes:
        """Episodes ``[N, T, E, ...]`` of ``params`` (shared, or per task) on ``tasks``, with noise
        from ``generator`` (default: the trainer's)."""
        cfg = self.config
        num_episodes = cfg.episodes_per_task if episodes_per_task is None else episodes_per_task
        noise = sample_noise(cfg.horizon, _num_tasks(tasks), num_episodes, self.env.act_dim,
                             self.generator if generator is None else generator)
        episodes = rollout(params, tasks, noise, self.env, self.policy, params_per_task=per_task)
        if not torch.isfinite(episodes.rewards).all():
            raise FloatingPointError("the environment returned non-finite rewards")
        return episodes

    # ----------------------------------------------------------------- training
    def train_iteration(self) -> dict[str, float]:
        """One meta-iteration; returns its metrics (also appended to ``history``)."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.env.sample_tasks(cfg.meta_batch_size, self.generator)
        # Inner step k learns from episodes of the policy adapted k times (fresh episodes per
        # step, as pytorch-maml-rl samples them); the meta-step then replays those steps.
        train_episodes = self.sample(self.params, tasks)
        train_batches = [self.inner_batch(train_episodes)]
        grad_fn = self._grad_fn
        if self._keeps_adaptation():
            # Keep the adaptation's vjp: the meta-gradient then differentiates through it instead
            # of adapting again (the same gradient; one inner forward and backward pass fewer).
            adapted, pullback = _adapt_tasks_vjp(self.params, train_batches[0], self.policy, self.inner_opt,
                                                 first_order=cfg.first_order)
            grad_fn = partial(_gradient_through_kept_adaptation, adapted, pullback, self.policy)
        else:
            adapted = self.adapt_batch(self.params, train_batches[0])
        for _ in range(cfg.inner_steps - 1):
            train_batches.append(self.inner_batch(self.sample(adapted, tasks, per_task=True)))
            adapted = self.adapt_batch(adapted, train_batches[-1], per_task=True)
        train = train_batches[0] if cfg.inner_steps == 1 else tuple(train_batches)
        valid_episodes = self.sample(adapted, tasks, per_task=True)
        valid = make_rl_batches(valid_episodes, cfg.gamma, cfg.gae_lambda)
        if cfg.meta_optimizer == "trpo":
            meta = MetaParams(self.params, MetaSgdState(self.learned_lrs)) if cfg.learn_inner_lr else self.params
            new_meta, stats = maml_trpo_step(
                meta, train, valid, self.policy, self.inner_opt, steps=cfg.inner_steps, first_order=cfg.first_order,
                config=cfg.trpo, grad_fn=grad_fn, estimator=cfg.estimator, score_fn=self._score_fn,
            )
            new_params, new_learned_lrs = (new_meta.params, new_meta.inner_state.lr) if cfg.learn_inner_lr else (new_meta, None)
        elif cfg.meta_optimizer == "promp":
            leaf = next(iter(self.params.values()))
            state = ProMPState(self.meta_opt_state, torch.tensor(self.promp_kl_coef, dtype=leaf.dtype, device=leaf.device))
            new_params, state, stats = maml_promp_step(
                self.params, state, train, valid, self.policy, self.inner_opt, self.meta_opt,
                steps=cfg.inner_steps, first_order=cfg.first_order, estimator=cfg.estimator, config=cfg.promp,
            )
            self.meta_opt_state, self.promp_kl_coef = state.opt_state, float(state.kl_coef)
            new_learned_lrs = None
        else:
            new_params, self.meta_opt_state, stats = maml_gradient_step(
                self.params, self.meta_opt_state, train, valid, self.policy, self.inner_opt, self.meta_opt,
                steps=cfg.inner_steps, first_order=cfg.first_order, grad_fn=grad_fn, estimator=cfg.estimator,
                score_fn=self._score_fn,
            )
            new_learned_lrs = None
        post_return = _episode_return(valid_episodes.rewards)
        if post_return > self.best_post_return:  # measured with the params before this step
            self.best_post_return, self.best_params, self.best_learned_lrs = post_return, self.params, self.learned_lrs
        self.params, self.learned_lrs = new_params, new_learned_lrs
        self.iteration += 1
        metrics = {
            "iteration": self.iteration,
            "pre_return": _episode_return(train_episodes.rewards),
            "post_return": post_return,
            "meta_loss": stats.meta_loss,
            "kl": stats.kl,
            "step_fraction": stats.step_fraction,
            "grad_norm": stats.grad_norm,
            "seconds": time.perf_counter() - start,
        }
        if cfg.meta_optimizer == "promp":
            metrics["inner_kl"], metrics["kl_coef"] = stats.inner_kl, stats.kl_coef
        self.history.append(metrics)
        return metrics

    def train(self, progress: bool = True) -> list[dict[str, float]]:
        """Run until ``config.meta_iterations``, checkpointing every ``checkpoint_every``."""
        cfg = self.config
        bar = tqdm(total=cfg.meta_iterations, initial=self.iteration, disable=not progress, desc="meta-iterations")
        try:
            while self.iteration < cfg.meta_iterations:
                metrics = self.train_iteration()
                self._log(metrics)
                bar.update(1)
                bar.set_postfix(pre=f"{metrics['pre_return']:.1f}", post=f"{metrics['post_return']:.1f}")
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.meta_iterations:
                    self.save_checkpoint()
        finally:
            bar.close()
            self._logger.flush()
        return self.history

    def _log(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "iteration":
                self._logger.scalar(f"train/{key}", value, metrics["iteration"])

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, num_tasks: int = 40, max_steps: int = 3, seed: int | None = None, **kwargs) -> dict[str, float]:
        """Mean episode return on held-out tasks after 0..max_steps inner steps; see
        ``evaluate_with_episodes`` for the protocol and the keyword arguments."""
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
    ) -> tuple[dict[str, float], tuple[Any, list[Episodes]]]:
        """Held-out evaluation in the MAML paper's protocol (section 5.3 and appendix A.2).

        Each of ``max_steps`` steps adapts on ``episodes_per_task`` fresh episodes of the current
        adapted policy (the paper: "up to 4 gradient updates, each with 40 samples"). Step ``k``
        uses step size ``inner_lrs[min(k, len - 1)]``. The paper used "alpha = 0.1 for the first
        step, and alpha = 0.05 for all future steps" (``inner_lrs=(0.1, 0.05)``); for policies
        meta-trained here, halving still overshoots from the second step on, and a tenth did best
        on separate tuning task sets (README), so the default is ``(inner_lr, inner_lr / 10)``.
        ``params`` defaults to the latest meta-params (pass ``trainer.best_params`` for the
        paper's choice of model). With ``learn_inner_lr``, step ``k`` uses the learned
        per-parameter step sizes times ``inner_lrs[k] / inner_lr``; pass the ``learned_lrs`` that
        belong to ``params`` (``trainer.best_learned_lrs`` with ``trainer.best_params``). Tasks come
        from their own generator (``seed`` defaults to ``config.seed + 10_000``), so they do not
        overlap the training stream.

        Returns ``({"0": r0, ..., str(max_steps): r}, (tasks, [Episodes per step]))``.
        """
        cfg = self.config
        if num_tasks <= 0 or max_steps < 0 or episodes_per_task <= 0:
            raise ValueError(
                f"need num_tasks > 0, max_steps >= 0 and episodes_per_task > 0, "
                f"got {num_tasks}, {max_steps} and {episodes_per_task}"
            )
        inner_lrs = (cfg.inner_lr, cfg.inner_lr / 10) if inner_lrs is None else tuple(inner_lrs)
        if not inner_lrs or not all(isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr) for lr in inner_lrs):
            raise ValueError(f"inner_lrs must be a non-empty sequence of positive finite step sizes, got {inner_lrs!r}")
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
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 10_000 if seed is None else seed)
        tasks = self.env.sample_tasks(num_tasks, gen)
        adapted = tree_map(lambda p: p.expand(num_tasks, *p.shape).clone(), meta_params)
        returns: dict[str, float] = {}
        episodes_per_step = []
        for step in range(max_steps + 1):
            episodes = self.sample(adapted, tasks, per_task=True, generator=gen, episodes_per_task=episodes_per_task)
            returns[str(step)] = _episode_return(episodes.rewards)
            episodes_per_step.append(episodes)
            if step < max_steps:
                batch = self.inner_batch(episodes)
                adapted = self.adapt_batch(adapted, batch, per_task=True, lr=inner_lrs[min(step, len(inner_lrs) - 1)],
                                           learned_lrs=learned_lrs)
        return returns, (tasks, episodes_per_step)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run (written by ``save_checkpoint``)."""
        opt = self.meta_opt_state
        return {
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "params": _moved(self.params, "cpu"),
            "best_params": _moved(self.best_params, "cpu"),
            "best_post_return": self.best_post_return,
            "learned_lrs": _moved(self.learned_lrs, "cpu"),
            "best_learned_lrs": _moved(self.best_learned_lrs, "cpu"),
            "meta_opt_state": None if opt is None else {"count": opt.count, "mu": opt.mu, "nu": opt.nu},
            "generator_state": self.generator.get_state(),
            "history": self.history,
            **({} if self.promp_kl_coef is None else {"promp_kl_coef": self.promp_kl_coef}),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``state_dict()`` atomically to ``output_dir/checkpoint.pt``; None without an output dir."""
        if self.output_dir is None:
            return None
        path = atomic_save(self.state_dict(), self.output_dir / CHECKPOINT_NAME)
        self.write_metrics()
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> MAMLTrainer:
        """A trainer with the config of the run that wrote ``path`` (``device`` replaces the
        run's), restored from it; settings that checkpoint predates take their defaults."""
        # Read once: the run's config comes from the checkpoint, so there is nothing to compare.
        state = read_checkpoint(path, {}, ())
        trainer = cls(MAMLConfig(**{**MAMLConfig().to_dict(), **state["config"], "device": device}))
        trainer._restore(state)
        return trainer

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore params, optimizer state, RNG state, iteration and history from ``path``."""
        # The run length may be extended on resume; everything else must match.
        self._restore(read_checkpoint(path, self.config.to_dict(),
                                      ("meta_iterations", "device", "checkpoint_every", "compile"),
                                      defaults=MAMLConfig().to_dict()))

    def _restore(self, state: dict[str, Any]) -> None:
        """Take over a checkpoint's state, written with this trainer's settings."""
        self.policy.check(state["params"])
        self.params = _moved(state["params"], self.device)
        # Checkpoints written before best-params tracking existed start it afresh.
        best = state.get("best_params", state["params"])
        self.policy.check(best)
        self.best_params = _moved(best, self.device)
        self.best_post_return = float(state.get("best_post_return", -math.inf))
        if self.config.learn_inner_lr:  # the settings match, so the checkpoint has them
            for name in ("learned_lrs", "best_learned_lrs"):
                self.policy.check(state[name])
            self.learned_lrs = _moved(state["learned_lrs"], self.device)
            self.best_learned_lrs = _moved(state["best_learned_lrs"], self.device)
        opt = state["meta_opt_state"]
        if opt is not None:
            self.meta_opt_state = AdamState(
                opt["count"].to(self.device),
                _moved(opt["mu"], self.device),
                _moved(opt["nu"], self.device),
            )
        if self.config.meta_optimizer == "promp":
            self.promp_kl_coef = float(state.get("promp_kl_coef", self.config.promp.init_kl_coef))
        self.generator.set_state(state["generator_state"])
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])

    def write_metrics(self, evaluation: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> None:
        """Write ``metrics.json``: config, per-iteration history, ``eval`` (kept from the file when
        ``evaluation`` is None) and any ``extra`` top-level entries."""
        if self.output_dir is None:
            return
        path = self.output_dir / "metrics.json"
        payload: dict[str, Any] = {"config": self.config.to_dict(), "iterations": self.history}
        if evaluation is None and path.is_file():
            payload["eval"] = json.loads(path.read_text()).get("eval")
        elif evaluation is not None:
            payload["eval"] = evaluation
        payload.update(extra or {})
        atomic_write_json(payload, path)
