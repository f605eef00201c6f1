"""MAML-TRPO with a categorical policy on the RL² families (bandits, tabular MDPs), under the
split-trial protocol of ``meta.maml_discrete``."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..meta.maml_discrete import maml_trial_returns, split_trial_rollouts
from ..meta.maml_rl import TRPOConfig, maml_trpo_step, make_rl_batches
from ..meta.rl2 import sample_rl2_noise
from ..nn.core import categorical_policy
from ..optim import sgd
from ..tree import Params
from .checkpoint import atomic_save, read_checkpoint, resolve_device
from .rl2 import _moved, make_rl2_env
from .scalars import ScalarLogger

__all__ = ["DiscreteMAMLConfig", "DiscreteMAMLTrainer", "MAML_DISCRETE_CHECKPOINT"]


@dataclass
class DiscreteMAMLConfig:
    """MAML-TRPO with a categorical MLP policy on the RL² families. ``num_pre``: episodes of a
    trial before the inner step (0: half the trial, rounded down); the rest come after it."""

    env: str = "bandit"
    num_arms: int = 5
    num_pulls: int = 10
    num_episodes: int = 10
    num_pre: int = 0
    iterations: int = 200
    meta_batch_size: int = 40
    inner_lr: float = 0.5
    hidden: tuple[int, ...] = (32,)
    gamma: float = 0.99
    gae_lambda: float = 1.0
    max_kl: float = 0.01
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 25

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        for name in ("iterations", "meta_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.inner_lr, (int, float)) and self.inner_lr > 0 and math.isfinite(self.inner_lr)):
            raise ValueError(f"inner_lr must be a positive finite number, got {self.inner_lr!r}")
        env = make_rl2_env(self)  # type: ignore[arg-type]  (same fields as RL2Config)
        n = env.trial_length // env.episode_length
        if n < 2:
            raise ValueError(f"MAML needs trials of >= 2 episodes (some before, some after the inner step), got {n}")
        if isinstance(self.num_pre, bool) or not isinstance(self.num_pre, int) or not 0 <= self.num_pre < n:
            raise ValueError(f"num_pre must be an int in [0, {n - 1}] (0: half the trial), got {self.num_pre!r}")
        TRPOConfig(max_kl=self.max_kl)  # checks max_kl

    @property
    def pre_episodes(self) -> int:
        """Episodes before the inner step."""
        n = make_rl2_env(self).trial_length // make_rl2_env(self).episode_length  # type: ignore[arg-type]
        return self.num_pre or n // 2

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what checkpoints record)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


class DiscreteMAMLTrainer:
    """Meta-trains a categorical MLP policy with MAML-TRPO (``meta.maml_trpo_step``) on bandits or
    tabular MDPs under the split-trial protocol of ``meta.maml_discrete``; same habits as
    :class:`RL2Trainer` (tqdm, TensorBoard, atomic checkpoints, bit-identical resume)."""

    def __init__(self, config: DiscreteMAMLConfig, output_dir: str | Path | None = None):
        self.config = config
        self.env = make_rl2_env(config)  # type: ignore[arg-type]
        self.device = resolve_device(config.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.policy = categorical_policy(self.env.obs_dim, self.env.num_actions, config.hidden)
        self.inner_opt = sgd(config.inner_lr)
        self.params: Params = self.policy.init(config.seed, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)

    def train_iteration(self) -> dict[str, float]:
        """One MAML-TRPO meta-iteration; returns its metrics (also appended to ``history``)."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.env.sample_tasks(cfg.meta_batch_size, self.generator)
        noise = sample_rl2_noise(self.env, cfg.meta_batch_size, 0, self.generator)
        pre, post, train = split_trial_rollouts(self.params, tasks, noise.env, noise.gumbel_u, self.env, self.policy,
                                                self.inner_opt, num_pre=cfg.pre_episodes, gamma=cfg.gamma,
                                                gae_lambda=cfg.gae_lambda)
        valid = make_rl_batches(post, cfg.gamma, cfg.gae_lambda)
        self.params, stats = maml_trpo_step(self.params, train, valid, self.policy, self.inner_opt, steps=1,
                                            config=TRPOConfig(max_kl=cfg.max_kl))
        self.iteration += 1
        pre_total, post_total = float(pre.rewards.sum(dim=(1, 2)).mean()), float(post.rewards.sum(dim=(1, 2)).mean())
        metrics = {"iteration": self.iteration, "pre_reward": pre_total, "post_reward": post_total,
                   "trial_return": pre_total + post_total, "meta_loss": stats.meta_loss, "kl": stats.kl,
                   "seconds": time.perf_counter() - start}
        self.history.append(metrics)
        return metrics

    def train(self, progress: bool = True) -> list[dict[str, float]]:
        """Run until ``config.iterations``, checkpointing every ``checkpoint_every``."""
        cfg = self.config
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not progress, desc="MAML iterations")
        try:
            while self.iteration < cfg.iterations:
                metrics = self.train_iteration()
                for key, value in metrics.items():
                    if key != "iteration":
                        self._logger.scalar(f"maml/{key}", value, metrics["iteration"])
                bar.update(1)
                bar.set_postfix(trial_return=f"{metrics['trial_return']:.2f}")
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                    self.save_checkpoint()
        finally:
            bar.close()
            self._logger.flush()
        return self.history

    def evaluate(self, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor) -> torch.Tensor:
        """Total reward per trial ``[B]`` on given tasks and trial noise (``meta.maml_trial_returns``)."""
        return maml_trial_returns(self.params, tasks, env_noise, gumbel_u, self.env, self.policy, self.inner_opt,
                                  num_pre=self.config.pre_episodes, gamma=self.config.gamma,
                                  gae_lambda=self.config.gae_lambda)

    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-identical resume needs, tensors on CPU."""
        return {"config": self.config.to_dict(), "iteration": self.iteration, "params": _moved(self.params, "cpu"),
                "generator_state": self.generator.get_state(), "history": self.history}

    def save_checkpoint(self) -> Path | None:
        """Write ``maml_checkpoint.pt`` atomically (nothing without ``output_dir``)."""
        if self.output_dir is None:
            return None
        return atomic_save(self.state_dict(), self.output_dir / MAML_DISCRETE_CHECKPOINT)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore params, RNG state, iteration and history (run length / device / cadence may differ)."""
        state = read_checkpoint(path, self.config.to_dict(), ("iterations", "device", "checkpoint_every"))
        self.policy.check(state["params"])
        self.params = _moved(state["params"], self.device)
        self.generator.set_state(state["generator_state"])
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])


MAML_DISCRETE_CHECKPOINT = "maml_checkpoint.pt"
