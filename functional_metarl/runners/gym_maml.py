"""MAML-TRPO on simulator task families (MuJoCo locomotion, Meta-World) through the vector sampler.

The same meta-iteration as :class:`~functional_metarl.runners.MAMLTrainer` (sample tasks ->
roll out the meta-params -> one inner REINFORCE step per task -> roll out the adapted params
-> TRPO meta-step), built from the same pure pieces (``meta.make_rl_batches``,
``meta.adapt_tasks``, ``meta.maml_trpo_step``); only the data comes from a
:class:`~functional_metarl.runners.gym_sampler.TaskVectorSampler` instead of ``envs.rollout``.
It is a separate runner rather than an option of ``MAMLTrainer`` because the state it owns
differs: simulator sub-envs, numpy task lists instead of tensor tasks, the sampler's
generators in the checkpoint, success counts for Meta-World.

A family is any object with ``name``, ``obs_dim``, ``act_dim``, ``horizon``, ``make_env()`` and
``sample_tasks(n, rng[, split])`` (``envs.HalfCheetahVel``, ``envs.AntDir``,
``envs.MetaWorldFamily``, ...).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..envs import Episodes
from ..envs.metaworld_tasks import episode_success, success_rates
from ..meta import TRPOConfig, adapt_tasks, maml_trpo_step, make_rl_batches
from ..nn import gaussian_policy
from ..optim import sgd
from ..tree import Params, tree_map
from .checkpoint import atomic_save, atomic_write_json, read_checkpoint, resolve_device
from .gym_sampler import TaskVectorSampler
from .scalars import ScalarLogger

__all__ = ["GymMAMLConfig", "GymMAMLTrainer", "GYM_MAML_CHECKPOINT"]

GYM_MAML_CHECKPOINT = "checkpoint.pt"


@dataclass
class GymMAMLConfig:
    """MAML-TRPO settings for simulator families. Defaults: short CPU runs (meta-batch 10 x 10
    episodes); the MAML paper's locomotion runs use meta-batch 40 x 20 episodes, 500
    meta-iterations (appendix A.2)."""

    meta_iterations: int = 50
    meta_batch_size: int = 10
    episodes_per_task: int = 10
    inner_lr: float = 0.1
    gamma: float = 0.99
    gae_lambda: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    first_order: bool = False
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    vectorization: str = "sync"
    action_scale: float = 1.0  # the env gets clip(action_scale * action): 0.1 = pytorch-maml-rl's normalization_scale 10
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 5

    def __post_init__(self):
        if isinstance(self.trpo, dict):
            self.trpo = TRPOConfig(**self.trpo)
        self.hidden = tuple(self.hidden)
        for name in ("meta_iterations", "meta_batch_size", "episodes_per_task", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.inner_lr, bool) or not (isinstance(self.inner_lr, (int, float)) and self.inner_lr > 0
                                                    and math.isfinite(self.inner_lr)):
            raise ValueError(f"inner_lr must be a positive finite number, got {self.inner_lr!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if not isinstance(self.first_order, bool):
            raise TypeError(f"first_order must be a bool, got {self.first_order!r}")
        if isinstance(self.action_scale, bool) or not (isinstance(self.action_scale, (int, float))
                                                       and self.action_scale > 0 and math.isfinite(self.action_scale)):
            raise ValueError(f"action_scale must be a positive finite number, got {self.action_scale!r}")
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {self.vectorization!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (stored in checkpoints and metrics.json)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


def _mean_return(rewards: torch.Tensor) -> float:
    """Mean over tasks and episodes of the summed reward. rewards ``[N, T, E]``."""
    return float(rewards.sum(dim=1).mean())


class GymMAMLTrainer:
    """Meta-trains a Gaussian MLP policy with MAML-TRPO on ``family`` (one inner SGD step).

    Args:
        family: the task family (see the module docstring).
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go (None: nowhere).
        success_key: an ``info`` entry to count as success (Meta-World: ``"success"``), or None.
    """

    def __init__(self, family: Any, config: GymMAMLConfig, output_dir: str | Path | None = None,
                 success_key: str | None = None):
        for attr in ("name", "obs_dim", "act_dim", "horizon", "make_env", "sample_tasks"):
            if not hasattr(family, attr):
                raise TypeError(f"family must have {attr!r} (a task family such as envs.HalfCheetahVel), "
                                f"got {type(family).__name__}")
        if not isinstance(config, GymMAMLConfig):
            raise TypeError(f"config must be a GymMAMLConfig, got {type(config).__name__}")
        self.family, self.config, self.success_key = family, config, success_key
        self.device = resolve_device(config.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.policy = gaussian_policy(family.obs_dim, family.act_dim, config.hidden, config.activation)
        self.inner_opt = sgd(config.inner_lr)
        self.params: Params = self.policy.init(config.seed, device=self.device)
        self.best_params: Params = tree_map(torch.clone, self.params)
        self.best_post_return = -math.inf
        self.task_rng = np.random.default_rng(config.seed)
        self.sampler = TaskVectorSampler(family.make_env, config.meta_batch_size, config.episodes_per_task,
                                         family.horizon, vectorization=config.vectorization, seed=config.seed,
                                         action_scale=config.action_scale)
        self.sampler.check_policy(self.policy, self.params)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)

    # ----------------------------------------------------------------- pieces
    def sample_tasks(self, num_tasks: int, rng: np.random.Generator, split: str = "train") -> list:
        """Tasks of the family (``split`` only for families that have splits, e.g. Meta-World)."""
        if hasattr(self.family, "classes"):
            return self.family.sample_tasks(num_tasks, rng, split)
        if split != "train":
            raise ValueError(f"{self.family.name} has a single task distribution; split must be 'train', got {split!r}")
        return self.family.sample_tasks(num_tasks, rng)

    def _sample(self, sampler: TaskVectorSampler, params: Params, tasks: list, per_task: bool,
                deterministic: bool = False):
        keys = (self.success_key,) if self.success_key else ()
        episodes, info = sampler.sample_with_info(params, tasks, self.policy, params_per_task=per_task,
                                                  deterministic=deterministic, info_keys=keys)
        solved = episode_success(info[self.success_key], episodes.mask) if self.success_key else None
        return episodes, solved

    def adapt(self, params: Params, episodes: Episodes, per_task: bool = False) -> Params:
        """One inner SGD step per task on ``episodes`` (normalized GAE advantages); leaves ``[N, ...]``."""
        batch = make_rl_batches(episodes, gamma=self.config.gamma, gae_lambda=self.config.gae_lambda, normalize=True)
        with torch.no_grad():
            return adapt_tasks(params=params, train=batch, policy=self.policy, inner_opt=self.inner_opt,
                               steps=1, first_order=True, params_per_task=per_task)

    # ----------------------------------------------------------------- training
    def train_iteration(self) -> dict[str, float]:
        """One meta-iteration; returns its metrics (also appended to ``history``)."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.sample_tasks(cfg.meta_batch_size, self.task_rng, "train")
        train_eps, pre_solved = self._sample(self.sampler, self.params, tasks, per_task=False)
        sampled = time.perf_counter()
        adapted = self.adapt(self.params, train_eps)
        valid_eps, post_solved = self._sample(self.sampler, adapted, tasks, per_task=True)
        sampling_seconds = time.perf_counter() - sampled + (sampled - start)
        train = make_rl_batches(train_eps, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, normalize=True)
        valid = make_rl_batches(valid_eps, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, normalize=True)
        new_params, stats = maml_trpo_step(params=self.params, train=train, valid=valid, policy=self.policy,
                                           inner_opt=self.inner_opt, first_order=cfg.first_order, config=cfg.trpo)
        post_return = _mean_return(valid_eps.rewards)
        if post_return > self.best_post_return:  # measured with the params before this step
            self.best_post_return, self.best_params = post_return, self.params
        self.params = new_params
        self.iteration += 1
        metrics = {
            "iteration": self.iteration,
            "pre_return": _mean_return(train_eps.rewards),
            "post_return": post_return,
            "meta_loss": stats.meta_loss,
            "kl": stats.kl,
            "step_fraction": stats.step_fraction,
            "grad_norm": stats.grad_norm,
            "env_steps": float(train_eps.mask.sum() + valid_eps.mask.sum()),
            "sampling_seconds": sampling_seconds,
            "seconds": time.perf_counter() - start,
        }
        if pre_solved is not None:
            metrics["pre_success"] = float(pre_solved.float().mean())
            metrics["post_success"] = float(post_solved.float().mean())
        self.history.append(metrics)
        return metrics

    def train(self, progress: bool = True) -> list[dict[str, float]]:
        """Run until ``config.meta_iterations``, checkpointing every ``checkpoint_every``."""
        cfg = self.config
        bar = tqdm(total=cfg.meta_iterations, initial=self.iteration, disable=not progress, desc="meta-iterations")
        try:
            while self.iteration < cfg.meta_iterations:
                metrics = self.train_iteration()
                for key, value in metrics.items():
                    if key != "iteration":
                        self._logger.scalar(f"train/{key}", value, self.iteration)
                bar.update(1)
                bar.set_postfix(pre=f"{metrics['pre_return']:.1f}", post=f"{metrics['post_return']:.1f}")
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.meta_iterations:
                    self.save_checkpoint()
        finally:
            bar.close()
            self._logger.flush()
        return self.history

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, num_tasks: int, adapt_episodes: int, eval_episodes: int, split: str = "train",
                 seed: int | None = None, params: Params | None = None, deterministic_eval: bool = False,
                 tasks: list | None = None) -> dict[str, Any]:
        """Held-out evaluation: per task, ``adapt_episodes`` rollouts of the meta-params, one inner
        step, then ``eval_episodes`` rollouts of the adapted policy (the policy's mean with
        ``deterministic_eval``), the Meta-World protocol (``metaworld.evaluation``). Tasks come
        from their own generator (``seed``, default ``config.seed + 10_000``) unless given.

        Returns ``{"return_before", "return_after", "tasks": n}`` and, with a success key,
        ``"success_before"`` (on the adaptation rollouts) and ``"success_after"``
        (:func:`envs.success_rates` of the evaluation episodes: per task, per class, overall).
        """
        for name, value in (("num_tasks", num_tasks), ("adapt_episodes", adapt_episodes), ("eval_episodes", eval_episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        rng = np.random.default_rng(self.config.seed + 10_000 if seed is None else seed)
        tasks = self.sample_tasks(num_tasks, rng, split) if tasks is None else list(tasks)
        meta_params = self.params if params is None else params
        self.policy.check(meta_params)
        eval_seed = int(rng.integers(0, 2**31 - 1))
        with TaskVectorSampler(self.family.make_env, len(tasks), adapt_episodes, self.family.horizon,
                               vectorization=self.config.vectorization, seed=eval_seed,
                               action_scale=self.config.action_scale) as sampler:
            before, solved_before = self._sample(sampler, meta_params, tasks, per_task=False)
        adapted = self.adapt(meta_params, before)
        with TaskVectorSampler(self.family.make_env, len(tasks), eval_episodes, self.family.horizon,
                               vectorization=self.config.vectorization, seed=eval_seed + 1,
                               action_scale=self.config.action_scale) as sampler:
            after, solved_after = self._sample(sampler, adapted, tasks, per_task=True, deterministic=deterministic_eval)
        out: dict[str, Any] = {"tasks": len(tasks), "split": split, "adapt_episodes": adapt_episodes,
                               "eval_episodes": eval_episodes, "return_before": _mean_return(before.rewards),
                               "return_after": _mean_return(after.rewards)}
        if self.success_key:
            names = [getattr(t, "env_name", self.family.name) for t in tasks]
            out["success_before"] = success_rates(solved_before, names)
            out["success_after"] = success_rates(solved_after, names)
        return out

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run: params (latest and best), the task and sampler
        generators, counters and history (TRPO keeps no optimizer state)."""
        return {
            "config": self.config.to_dict(),
            "family": repr(self.family),
            "iteration": self.iteration,
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "best_params": {k: v.detach().cpu() for k, v in self.best_params.items()},
            "best_post_return": self.best_post_return,
            "task_rng": self.task_rng.bit_generator.state,
            "sampler": self.sampler.state_dict(),
            "history": self.history,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``state_dict()`` atomically to the output directory and refresh metrics.json; None without one."""
        if self.output_dir is None:
            return None
        path = atomic_save(self.state_dict(), self.output_dir / GYM_MAML_CHECKPOINT)
        self.write_metrics()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore params, generators, iteration and history; the settings must match except
        the run length, device and checkpoint cadence."""
        state = read_checkpoint(path, self.config.to_dict(), ("meta_iterations", "device", "checkpoint_every"))
        if state["family"] != repr(self.family):
            raise ValueError(f"checkpoint {path} was written for {state['family']}, not {self.family!r}")
        for key in ("params", "best_params"):
            self.policy.check(state[key])
        self.params = {k: v.to(self.device) for k, v in state["params"].items()}
        self.best_params = {k: v.to(self.device) for k, v in state["best_params"].items()}
        self.best_post_return = float(state["best_post_return"])
        self.task_rng.bit_generator.state = state["task_rng"]
        self.sampler.load_state_dict(state["sampler"])
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])

    def write_metrics(self, extra: dict[str, Any] | None = None) -> None:
        """``metrics.json``: config, family, per-iteration history and any ``extra`` entries
        (entries written before by ``extra`` are kept unless replaced)."""
        if self.output_dir is None:
            return
        path = self.output_dir / "metrics.json"
        payload: dict[str, Any] = {}
        if path.is_file():
            import json

            payload = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("config", "iterations")}
        payload.update({"config": self.config.to_dict(), "family": repr(self.family), "iterations": self.history})
        payload.update(extra or {})
        atomic_write_json(payload, path)

    def close(self) -> None:
        """Close the sampler's sub-envs and the TensorBoard writer."""
        self.sampler.close()
        self._logger.close()
