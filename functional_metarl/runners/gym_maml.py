"""MAML-TRPO on simulator task families (MuJoCo locomotion, Meta-World) through the vector sampler.

The same meta-iteration as :class:`~functional_metarl.runners.MAMLTrainer` (sample tasks ->
roll out the meta-params -> one inner REINFORCE step per task -> roll out the adapted params
-> TRPO meta-step), built from the same pure pieces (``meta.make_rl_batches``,
``meta.adapt_tasks``, ``meta.trpo``); only the data comes from a
:class:`~functional_metarl.runners.gym_sampler.TaskVectorSampler` instead of ``envs.rollout``.
It is a separate runner rather than an option of ``MAMLTrainer`` because the state it owns
differs: simulator sub-envs, numpy task lists instead of tensor tasks, the sampler's
generators in the checkpoint, success counts for Meta-World.

A family is any object with ``name``, ``obs_dim``, ``act_dim``, ``horizon``, ``make_env()`` and
``sample_tasks(n, rng[, split])`` (``envs.HalfCheetahVel``, ``envs.AntDir``,
``envs.MetaWorldFamily``, ...).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checks
from ..envs import Episodes
from ..envs.metaworld_tasks import episode_success, success_rates
from ..meta import TRPOConfig, adapt_tasks, make_rl_batches, trpo
from ..nn import gaussian_policy
from ..optim import sgd
from ..tree import Params, tree_map
from .base import RunConfig, Runner, restore_like
from .checkpoint import load_checkpoint_file
from .gym_sampler import TaskVectorSampler

__all__ = ["GymMAMLConfig", "GymMAMLTrainer"]


@dataclass
class GymMAMLConfig(RunConfig):
    """MAML-TRPO settings for simulator families. Defaults: short CPU runs (meta-batch 10 x 10
    episodes); the MAML paper's locomotion runs use meta-batch 40 x 20 episodes, 500
    meta-iterations (appendix A.2)."""

    iterations: int = 50  # meta-iterations
    checkpoint_every: int = 5
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.trpo, dict):
            self.trpo = TRPOConfig(**self.trpo)
        checks.instance(self.trpo, "trpo", TRPOConfig)
        self.hidden = tuple(self.hidden)
        for k, width in enumerate(self.hidden):
            checks.positive_int(width, f"hidden[{k}]")
        for name in ("meta_batch_size", "episodes_per_task"):
            checks.positive_int(getattr(self, name), name)
        for name in ("inner_lr", "action_scale"):
            checks.positive_number(getattr(self, name), name)
        for name in ("gamma", "gae_lambda"):
            checks.probability(getattr(self, name), name)
        checks.flag(self.first_order, "first_order")
        checks.one_of(self.vectorization, "vectorization", ("sync", "async"))


def _mean_return(rewards: torch.Tensor) -> float:
    """Mean over tasks and episodes of the summed reward. rewards ``[N, T, E]``."""
    return float(rewards.sum(dim=1).mean())


class GymMAMLTrainer(Runner):
    """Meta-trains a Gaussian MLP policy with MAML-TRPO on ``family`` (one inner SGD step; one
    iteration is a meta-iteration).

    Args:
        family: the task family (see the module docstring).
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go (None: nowhere).
        success_key: an ``info`` entry to count as success (Meta-World: ``"success"``), or None.
    """

    config_class = GymMAMLConfig
    log_prefix = "train"
    progress_metric = "post_return"

    def __init__(self, family: Any, config: GymMAMLConfig, output_dir: str | Path | None = None,
                 success_key: str | None = None):
        for attr in ("name", "obs_dim", "act_dim", "horizon", "make_env", "sample_tasks"):
            if not hasattr(family, attr):
                raise TypeError(f"family must have {attr!r} (a task family such as envs.HalfCheetahVel), "
                                f"got {type(family).__name__}")
        super().__init__(config, output_dir)
        self.family, self.success_key = family, success_key
        self.policy = gaussian_policy(family.obs_dim, family.act_dim, config.hidden, config.activation)
        self.inner_opt = sgd(config.inner_lr)
        self.meta_step = trpo(self.policy, self.inner_opt, config=config.trpo, first_order=config.first_order)
        self.params: Params = self.policy.init(config.seed, device=self.device)
        self.best_params: Params = tree_map(torch.clone, self.params)
        self.best_post_return = -math.inf
        self.task_rng = np.random.default_rng(config.seed)
        self.sampler = TaskVectorSampler(family.make_env, config.meta_batch_size, config.episodes_per_task,
                                         family.horizon, vectorization=config.vectorization, seed=config.seed,
                                         action_scale=config.action_scale)
        self.sampler.check_policy(self.policy, self.params)

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
    def run_iteration(self) -> dict[str, float]:
        """One meta-iteration; returns its metrics."""
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
        new_params, _, stats = self.meta_step.update(self.params, self.meta_step.init(self.params), train, valid)
        post_return = _mean_return(valid_eps.rewards)
        if post_return > self.best_post_return:  # measured with the params before this step
            self.best_post_return, self.best_params = post_return, self.params
        self.params = new_params
        metrics = {
            "pre_return": _mean_return(train_eps.rewards),
            "post_return": post_return,
            "meta_loss": stats["meta_loss"],
            "kl": stats["kl"],
            "step_fraction": stats["step_fraction"],
            "grad_norm": stats["grad_norm"],
            "env_steps": float(train_eps.mask.sum() + valid_eps.mask.sum()),
            "sampling_seconds": sampling_seconds,
            "seconds": time.perf_counter() - start,
        }
        if pre_solved is not None:
            metrics["pre_success"] = float(pre_solved.float().mean())
            metrics["post_success"] = float(post_solved.float().mean())
        return metrics

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
            checks.positive_int(value, name)
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

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Params (latest and best), the task and sampler generators (TRPO keeps no optimizer state)."""
        return {
            "family": repr(self.family),
            "params": self.params,
            "best_params": self.best_params,
            "best_post_return": self.best_post_return,
            "task_rng": self.task_rng.bit_generator.state,
            "sampler": self.sampler.state_dict(),
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`runner_state`'s values; the family must be the one the run used."""
        if state["family"] != repr(self.family):
            raise ValueError(f"the checkpoint was written for {state['family']}, not {self.family!r}")
        self.params = restore_like(state["params"], self.params, "params")
        self.best_params = restore_like(state["best_params"], self.best_params, "best_params")
        self.best_post_return = float(state["best_post_return"])
        self.task_rng.bit_generator.state = state["task_rng"]
        self.sampler.load_state_dict(state["sampler"])

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", output_dir: str | Path | None = None, *,
                        family: Any = None, success_key: str | None = None) -> "GymMAMLTrainer":
        """A trainer rebuilt from ``path`` on ``family`` (required: simulator families are objects,
        not settings), with the checkpoint's settings on ``device``."""
        if family is None:
            raise TypeError("family: GymMAMLTrainer.from_checkpoint needs the task family the run used")
        state = load_checkpoint_file(path)
        trainer = cls(family, GymMAMLConfig.from_dict({**state["config"], "device": device}), output_dir, success_key)
        trainer.load_state_dict(state)
        return trainer

    def close(self) -> None:
        """Close the sampler's sub-envs and the TensorBoard writer."""
        self.sampler.close()
        super().close()
