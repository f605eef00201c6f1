"""The RL² trainer: a thin stateful shell around ``meta.rl2`` (Duan et al. 2016).

It owns the device, the ``torch.Generator``, the params and Adam state, the logs and the
checkpoints; every iteration it samples a batch of tasks, draws the step's noise and calls the
pure ``meta.rl2_train_step``. Same habits as ``MAMLTrainer``: tqdm progress, TensorBoard
scalars, atomic checkpoints, bit-identical resume, ``device="auto"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.func import grad_and_value
from tqdm.auto import tqdm

from ..envs.bandits import BernoulliBandits
from ..envs.baselines import BANDIT_BASELINES, MDP_BASELINES, bandit_baseline, mdp_baseline, tune_gittins_gamma, tune_ucb_c
from ..envs.tabular_mdp import TabularMDP
from ..meta.rl2 import PPOConfig, _check_ppo_config, rl2_ppo_grad, rl2_ppo_loss, rl2_rollout, rl2_train_step, sample_rl2_noise
from ..nn.recurrent import gru_actor_critic
from ..optim import AdamState, adam
from ..tree import Params
from .checkpoint import atomic_save, atomic_write_json, read_checkpoint, resolve_device
from .scalars import ScalarLogger

__all__ = ["RL2_CHECKPOINT", "RL2Config", "RL2Trainer", "make_rl2_env", "mean_and_stderr"]

RL2_CHECKPOINT = "checkpoint.pt"


@dataclass
class RL2Config:
    """RL² + PPO settings. ``env`` is ``"bandit"`` (``num_arms`` k, ``num_pulls`` n) or ``"mdp"``
    (``num_episodes`` n of the 10-state, 5-action, horizon-10 MDPs).

    ``entropy_coef_final`` with ``entropy_decay_iterations``: the entropy coefficient falls
    linearly from ``entropy_coef`` to ``entropy_coef_final`` over that many iterations and stays
    there (see :meth:`entropy_coef_at`); the schedule counts iterations, so a resume with a
    different ``iterations`` keeps it."""

    env: str = "bandit"
    num_arms: int = 5
    num_pulls: int = 10
    num_episodes: int = 10
    iterations: int = 500
    trials_per_iteration: int = 256  # tasks (one trial each) per iteration
    hidden: int = 256
    lr: float = 1e-3
    epochs: int = 4
    num_minibatches: int = 4
    clip_eps: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    entropy_coef_final: float | None = None  # the schedule of the class docstring; None: constant entropy_coef
    entropy_decay_iterations: int | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.3
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 25
    compile: bool = False

    def __post_init__(self):
        if self.env not in ("bandit", "mdp"):
            raise ValueError(f"env must be 'bandit' or 'mdp', got {self.env!r}")
        for name in ("num_arms", "num_pulls", "num_episodes", "iterations", "trials_per_iteration", "hidden",
                     "epochs", "num_minibatches", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be a bool, got {self.compile!r}")
        if (self.entropy_coef_final is None) != (self.entropy_decay_iterations is None):
            raise ValueError("entropy_coef_final and entropy_decay_iterations go together (both None: a constant "
                             f"entropy_coef), got {self.entropy_coef_final!r} and {self.entropy_decay_iterations!r}")
        if self.entropy_coef_final is not None:
            final, decay = self.entropy_coef_final, self.entropy_decay_iterations
            if isinstance(final, bool) or not (isinstance(final, (int, float)) and final >= 0 and math.isfinite(final)):
                raise ValueError(f"entropy_coef_final must be a finite number >= 0, got {final!r}")
            if isinstance(decay, bool) or not isinstance(decay, int) or decay <= 0:
                raise ValueError(f"entropy_decay_iterations must be a positive int, got {decay!r}")
        make_rl2_env(self)  # k >= 2, n >= 1 checked by the env
        if self.trials_per_iteration % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide trials_per_iteration "
                             f"({self.trials_per_iteration})")
        _check_ppo_config(self.ppo(), self.trials_per_iteration)

    def entropy_coef_at(self, iteration: int) -> float:
        """The entropy coefficient of the update that follows ``iteration`` completed iterations."""
        if self.entropy_coef_final is None:
            return float(self.entropy_coef)
        done = min(iteration / self.entropy_decay_iterations, 1.0)
        return float(self.entropy_coef + (self.entropy_coef_final - self.entropy_coef) * done)

    def ppo(self, iteration: int = 0) -> PPOConfig:
        """The PPO part as a ``meta.PPOConfig``, with the entropy coefficient of ``iteration``."""
        return PPOConfig(self.epochs, self.num_minibatches, float(self.clip_eps), float(self.value_coef),
                         self.entropy_coef_at(iteration), float(self.gamma), float(self.gae_lambda), float(self.max_grad_norm),
                         reward_scale=float(self.reward_scale))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what checkpoints record)."""
        return dataclasses.asdict(self)


def make_rl2_env(config: RL2Config) -> BernoulliBandits | TabularMDP:
    """The task family a config names."""
    if config.env == "bandit":
        return BernoulliBandits(config.num_arms, config.num_pulls)
    return TabularMDP(config.num_episodes)


def mean_and_stderr(totals: torch.Tensor) -> dict[str, float]:
    """``{"mean", "stderr", "num_tasks"}`` of per-task totals ``[B]`` (stderr = sample std / sqrt(B))."""
    if totals.ndim != 1 or totals.shape[0] < 2:
        raise ValueError(f"totals expected shape [B] with B >= 2, got {tuple(totals.shape)}")
    totals = totals.double()
    return {"mean": float(totals.mean()), "stderr": float(totals.std() / math.sqrt(totals.shape[0])),
            "num_tasks": int(totals.shape[0])}


def _moved(tree: Params, device: torch.device | str) -> Params:
    return {k: v.detach().to(device) for k, v in tree.items()}


class RL2Trainer:
    """Trains a GRU actor-critic with RL² + PPO on bandits or tabular MDPs.

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go (``None``: nothing).
    """

    def __init__(self, config: RL2Config, output_dir: str | Path | None = None):
        self.config = config
        self.env = make_rl2_env(config)
        self.device = resolve_device(config.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.policy = gru_actor_critic(self.env.obs_dim, self.env.num_actions, config.hidden)
        self.optimizer = adam(config.lr)
        self.params: Params = self.policy.init(config.seed, device=self.device)
        self.opt_state: AdamState = self.optimizer.init(self.params)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.iteration = 0
        self.env_steps = 0
        self.history: list[dict[str, float]] = []
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)
        # eager: autograd on detached copies (faster on CPU); compiled: the torch.func gradient
        self._grad_fn = (torch.compile(grad_and_value(rl2_ppo_loss, has_aux=True), dynamic=False)
                         if config.compile else rl2_ppo_grad)

    # ----------------------------------------------------------------- training
    def train_iteration(self) -> dict[str, float]:
        """One RL² iteration; returns its metrics (also appended to ``history``)."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.env.sample_tasks(cfg.trials_per_iteration, self.generator)
        noise = sample_rl2_noise(self.env, cfg.trials_per_iteration, cfg.epochs, self.generator)
        ppo = cfg.ppo(self.iteration)
        entropy_coef = ppo.entropy_coef  # the float this update uses, for the metrics
        if cfg.compile and cfg.entropy_coef_final is not None:  # a tensor input, not a new constant to recompile for
            ppo = ppo._replace(entropy_coef=torch.tensor(ppo.entropy_coef, device=self.device))
        self.params, self.opt_state, stats = rl2_train_step(
            self.params, self.opt_state, tasks, noise, self.env, self.policy, self.optimizer,
            config=ppo, grad_fn=self._grad_fn,
        )
        values = {k: float(v) for k, v in stats.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"non-finite training statistics at iteration {self.iteration + 1}: {values}")
        self.iteration += 1
        self.env_steps += cfg.trials_per_iteration * self.env.trial_length
        seconds = time.perf_counter() - start
        metrics = {"iteration": self.iteration, "env_steps": self.env_steps, **values,
                   "entropy_coef": entropy_coef, "seconds": seconds,
                   "steps_per_second": cfg.trials_per_iteration * self.env.trial_length / seconds}
        self.history.append(metrics)
        return metrics

    def train(self, progress: bool = True, max_seconds: float | None = None) -> list[dict[str, float]]:
        """Run until ``config.iterations``, checkpointing every ``checkpoint_every`` iterations.

        ``max_seconds``: also stop (after a checkpoint) at the first iteration boundary past this
        much wall time; ``--resume`` continues from there exactly as if it had not stopped.
        """
        cfg = self.config
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be None or positive, got {max_seconds!r}")
        start = time.perf_counter()
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not progress, desc="RL2 iterations")
        try:
            while self.iteration < cfg.iterations:
                metrics = self.train_iteration()
                for key, value in metrics.items():
                    if key != "iteration":
                        self._logger.scalar(f"train/{key}", value, metrics["iteration"])
                bar.update(1)
                bar.set_postfix(trial_return=f"{metrics['trial_return']:.2f}", sps=f"{metrics['steps_per_second']:.0f}")
                out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations or out_of_time:
                    self.save_checkpoint()
                if out_of_time:
                    break
        finally:
            bar.close()
            self._logger.flush()
        return self.history

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """Total reward of one trial of the current policy on each task: ``[B]``. ``greedy``:
        act by the argmax of the logits instead of sampling (``gumbel_u`` then only sets shapes).

        ``tasks`` (leading axis ``B``), ``env_noise`` (leaves ``[T, B]``) and ``gumbel_u``
        (``[T, B, A]``) are given so every method can be scored on the same tasks and noise.
        """
        if greedy:  # equal Gumbel noise on every action: the sample is the argmax of the logits
            gumbel_u = torch.full_like(gumbel_u, 0.5)
        trial = rl2_rollout(self.params, tasks, env_noise, gumbel_u, self.env, self.policy)
        return trial.rewards.sum(0)

    def evaluate_methods(self, num_tasks: int = 1000, seed: int | None = None, baselines: bool = True,
                         others: dict[str, Callable[[Any, Any, torch.Tensor], torch.Tensor]] | None = None,
                         ) -> dict[str, dict[str, float]]:
        """Mean total reward per trial, with its standard error, of RL² (sampling its actions:
        ``"rl2"``; acting greedily on its logits: ``"rl2_greedy"``) and (``baselines``) every
        classic baseline on the same ``num_tasks`` held-out tasks with the same env noise.

        The Gittins discount and the exploration constant of ``"ucb1_tuned"`` (``"ucb1"`` keeps
        Auer et al.'s ``sqrt(2)``) are tuned on 500 separate tasks (``envs.tune_gittins_gamma``,
        ``envs.tune_ucb_c``).
        Tasks and noise come from their own generator (``seed`` defaults to ``config.seed +
        10_000``), not from the training stream. ``others``: more agents, ``name -> fn(tasks,
        env_noise, gumbel_u) -> totals [B]``, scored on the same tasks and noise (e.g.
        ``DiscreteMAMLTrainer.evaluate``). Returns ``{method: {"mean", "stderr", "num_tasks"}}``.
        """
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 2:
            raise ValueError(f"num_tasks must be an int >= 2 (a standard error needs two), got {num_tasks!r}")
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 10_000 if seed is None else seed)
        tasks = self.env.sample_tasks(num_tasks, gen)
        noise = sample_rl2_noise(self.env, num_tasks, 0, gen)
        totals = {"rl2": self.evaluate(tasks, noise.env, noise.gumbel_u),
                  "rl2_greedy": self.evaluate(tasks, noise.env, noise.gumbel_u, greedy=True)}
        if baselines:
            agent_gen = torch.Generator(device=self.device).manual_seed(int(torch.randint(2**62, (), generator=gen)))
            if self.config.env == "bandit":
                # Gittins: the discount tuned on 500 other tasks (their own generator)
                tune = torch.Generator(device=self.device).manual_seed(int(torch.randint(2**62, (), generator=gen)))
                tune_tasks = self.env.sample_tasks(500, tune)
                tune_noise = self.env.sample_noise(self.env.trial_length, (500,), tune)
                gittins_gamma, _ = tune_gittins_gamma(self.env, tune_tasks, tune_noise, generator=tune)
                ucb_c, _ = tune_ucb_c(self.env, tune_tasks, tune_noise, generator=tune)
                for method in BANDIT_BASELINES:
                    totals[method] = bandit_baseline(self.env, tasks, method, noise.env, agent_gen,
                                                     gittins_gamma=gittins_gamma).rewards.sum(0)
                totals["ucb1_tuned"] = bandit_baseline(self.env, tasks, "ucb1", noise.env, agent_gen,
                                                       ucb_c=ucb_c).rewards.sum(0)
            else:
                for method in MDP_BASELINES:
                    totals[method] = mdp_baseline(self.env, tasks, method, noise.env, agent_gen).rewards.sum(0)
        for name, fn in (others or {}).items():
            totals[name] = fn(tasks, noise.env, noise.gumbel_u)
        out = {k: mean_and_stderr(v) for k, v in totals.items()}
        if "gittins" in out:
            out["gittins"]["gamma"] = gittins_gamma
            out["ucb1_tuned"]["c"] = ucb_c
        return out

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-identical resume needs, tensors on CPU."""
        return {
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "params": _moved(self.params, "cpu"),
            "opt_state": {"count": self.opt_state.count.cpu(), "mu": _moved(self.opt_state.mu, "cpu"),
                          "nu": _moved(self.opt_state.nu, "cpu")},
            "generator_state": self.generator.get_state(),
            "history": self.history,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` (atomically) and ``metrics.json``; nothing without ``output_dir``."""
        if self.output_dir is None:
            return None
        path = atomic_save(self.state_dict(), self.output_dir / RL2_CHECKPOINT)
        self.write_metrics()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore params, Adam state, RNG state, iteration and history from ``path``; the run
        length, device, cadence and compile flag may differ, every other setting must match."""
        state = read_checkpoint(path, self.config.to_dict(), ("iterations", "device", "checkpoint_every", "compile"),
                                defaults=RL2Config().to_dict())
        self.policy.check(state["params"])
        self.params = _moved(state["params"], self.device)
        opt = state["opt_state"]
        self.policy.check(opt["mu"])
        self.policy.check(opt["nu"])
        self.opt_state = AdamState(opt["count"].to(self.device), _moved(opt["mu"], self.device),
                                   _moved(opt["nu"], self.device))
        self.generator.set_state(state["generator_state"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.history = list(state["history"])

    def write_metrics(self, extra: dict[str, Any] | None = None) -> None:
        """Write ``metrics.json``: config, per-iteration history, entries kept from the file
        (e.g. a final evaluation) and any ``extra`` top-level entries."""
        if self.output_dir is None:
            return
        path = self.output_dir / "metrics.json"
        payload: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        payload.update({"config": self.config.to_dict(), "iterations": self.history})
        payload.update(extra or {})
        atomic_write_json(payload, path)
