"""MAML-TRPO with a categorical policy on the RL² families (bandits, tabular MDPs), under the
split-trial protocol of ``meta.maml_discrete``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import checks
from ..meta import TRPOConfig, make_rl_batches, trpo
from ..meta.maml_discrete import maml_trial_returns, split_trial_rollouts
from ..meta.rl2 import sample_rl2_noise
from ..nn import categorical_policy
from ..optim import sgd
from ..tree import Params
from .base import RunConfig, Runner, restore_like
from .rl2 import make_rl2_env

__all__ = ["DiscreteMAMLConfig", "DiscreteMAMLTrainer"]


@dataclass
class DiscreteMAMLConfig(RunConfig):
    """MAML-TRPO with a categorical MLP policy on the RL² families. ``num_pre``: episodes of a
    trial before the inner step (0: half the trial, rounded down); the rest come after it."""

    env: str = "bandit"
    num_arms: int = 5
    num_pulls: int = 10
    num_episodes: int = 10
    num_pre: int = 0
    iterations: int = 200  # meta-iterations
    checkpoint_every: int = 25
    meta_batch_size: int = 40
    inner_lr: float = 0.5
    hidden: tuple[int, ...] = (32,)
    gamma: float = 0.99
    gae_lambda: float = 1.0
    max_kl: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.one_of(self.env, "env", ("bandit", "mdp"))
        self.hidden = tuple(self.hidden)
        for k, width in enumerate(self.hidden):
            checks.positive_int(width, f"hidden[{k}]")
        checks.positive_int(self.meta_batch_size, "meta_batch_size")
        checks.positive_number(self.inner_lr, "inner_lr")
        for name in ("gamma", "gae_lambda"):
            checks.probability(getattr(self, name), name)
        env = make_rl2_env(self)  # type: ignore[arg-type]  (same fields as RL2Config)
        n = env.trial_length // env.episode_length
        if n < 2:
            raise ValueError(f"MAML needs trials of >= 2 episodes (some before, some after the inner step), got {n}")
        checks.int_in_range(self.num_pre, "num_pre", 0, n - 1)
        checks.positive_number(self.max_kl, "max_kl")

    @property
    def pre_episodes(self) -> int:
        """Episodes before the inner step."""
        n = make_rl2_env(self).trial_length // make_rl2_env(self).episode_length  # type: ignore[arg-type]
        return self.num_pre or n // 2


class DiscreteMAMLTrainer(Runner):
    """Meta-trains a categorical MLP policy with MAML-TRPO (``meta.trpo``) on bandits or tabular
    MDPs under the split-trial protocol of ``meta.maml_discrete`` (one iteration is a
    meta-iteration)."""

    config_class = DiscreteMAMLConfig
    log_prefix = "maml"
    progress_metric = "trial_return"

    def __init__(self, config: DiscreteMAMLConfig, output_dir: str | Path | None = None):
        super().__init__(config, output_dir)
        self.env = make_rl2_env(config)  # type: ignore[arg-type]
        self.policy = categorical_policy(self.env.obs_dim, self.env.num_actions, config.hidden)
        self.inner_opt = sgd(config.inner_lr)
        self.meta_step = trpo(self.policy, self.inner_opt, config=TRPOConfig(max_kl=config.max_kl))
        self.params: Params = self.policy.init(config.seed, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)

    def run_iteration(self) -> dict[str, float]:
        """One MAML-TRPO meta-iteration; returns its metrics."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.env.sample_tasks(cfg.meta_batch_size, self.generator)
        noise = sample_rl2_noise(self.env, cfg.meta_batch_size, 0, self.generator)
        pre, post, train = split_trial_rollouts(self.params, tasks, noise.env, noise.gumbel_u, self.env, self.policy,
                                                self.inner_opt, num_pre=cfg.pre_episodes, gamma=cfg.gamma,
                                                gae_lambda=cfg.gae_lambda)
        valid = make_rl_batches(post, cfg.gamma, cfg.gae_lambda)
        self.params, _, stats = self.meta_step.update(self.params, self.meta_step.init(self.params), train, valid)
        pre_total, post_total = float(pre.rewards.sum(dim=(1, 2)).mean()), float(post.rewards.sum(dim=(1, 2)).mean())
        return {"pre_reward": pre_total, "post_reward": post_total, "trial_return": pre_total + post_total,
                "meta_loss": stats["meta_loss"], "kl": stats["kl"], "seconds": time.perf_counter() - start}

    def evaluate(self, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor) -> torch.Tensor:
        """Total reward per trial ``[B]`` on given tasks and trial noise (``meta.maml_trial_returns``)."""
        return maml_trial_returns(self.params, tasks, env_noise, gumbel_u, self.env, self.policy, self.inner_opt,
                                  num_pre=self.config.pre_episodes, gamma=self.config.gamma,
                                  gae_lambda=self.config.gae_lambda)

    def runner_state(self) -> dict[str, Any]:
        """The params and the generator (TRPO keeps no optimizer state)."""
        return {"params": self.params, "generator": self.generator.get_state()}

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`runner_state`'s values."""
        self.params = restore_like(state["params"], self.params, "params")
        self.generator.set_state(state["generator"])
