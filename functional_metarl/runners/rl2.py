"""The RL² trainer: a thin stateful shell around ``meta.rl2`` (Duan et al. 2016).

It owns the task family, the ``torch.Generator``, the params and optimizer state; the runner
base owns the device, logs, checkpoints and the loop. One iteration is one PPO iteration: sample
``trials_per_iteration`` tasks, draw the step's noise and call the pure ``meta.rl2_train_step``
(a trial per task, then ``epochs`` x ``num_minibatches`` optimizer steps). The optimizer is
``optim.chain(optim.clip_by_global_norm(max_grad_norm), optim.adam(lr))``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch.func import grad_and_value

from .. import checks
from ..envs.bandits import BernoulliBandits
from ..envs.baselines import (BANDIT_BASELINES, MDP_BASELINES, MEMORY_GAUGE_WINDOWS, bandit_baseline, mdp_baseline,
                              tune_gittins_gamma, tune_ucb_c, windowed_greedy)
from ..envs.tabular_mdp import TabularMDP
from ..meta.rl2 import PPOConfig, rl2_ppo_grad, rl2_ppo_loss, rl2_rollout, rl2_train_step, sample_rl2_noise
from ..nn.recurrent import CELL_ACTIVATIONS, CELL_INITS, VALUE_NETWORKS, RecurrentFunctional, gru_actor_critic
from ..optim import adam, chain, clip_by_global_norm
from ..tree import Params, tree_map
from .base import RunConfig, Runner, restore_like

__all__ = ["RL2Config", "RL2Trainer", "make_rl2_env", "make_rl2_policy", "mean_and_stderr"]


@dataclass
class RL2Config(RunConfig):
    """RL² + PPO settings. ``env`` is ``"bandit"`` (``num_arms`` k, ``num_pulls`` n) or ``"mdp"``
    (``num_episodes`` n of the 10-state, 5-action, horizon-10 MDPs).

    ``entropy_coef_final`` with ``entropy_decay_iterations``: the entropy coefficient falls
    linearly from ``entropy_coef`` to ``entropy_coef_final`` over that many iterations and stays
    there (see :meth:`entropy_coef_at`); the schedule counts iterations, so a resume with a
    different ``iterations`` keeps it. ``iterations`` counts PPO iterations, ``checkpoint_every``
    too.

    The agent (issue 28; ``nn.gru_actor_critic``'s options): ``value_network`` (``"separate"``,
    the paper's own value GRU, is the default; ``"shared"`` was the default before issue 28),
    ``cell_init`` (``"pytorch"`` or ``"orthogonal"``), ``activation`` (``"tanh"`` or ``"relu"``),
    ``weight_norm``, ``update_gate_bias`` (``None`` or the update gate's initial bias) and
    ``prev_state_input`` (the previous observation beside the previous action / reward / done: a
    departure from the paper's input). ``target_kl``: PPO's KL early stopping
    (``meta.PPOConfig.target_kl``); ``None`` runs every epoch."""

    iterations: int = 500  # PPO iterations
    checkpoint_every: int = 25
    env: str = "bandit"  # "bandit" or "mdp"
    num_arms: int = 5  # bandit arms k
    num_pulls: int = 10  # bandit pulls per trial n
    num_episodes: int = 10  # MDP episodes per trial n
    trials_per_iteration: int = 256  # tasks (one trial each) per iteration
    hidden: int = 256  # GRU hidden units
    lr: float = 1e-3  # Adam learning rate
    epochs: int = 4  # PPO epochs per iteration
    num_minibatches: int = 4  # PPO minibatches per epoch (split over trials)
    clip_eps: float = 0.2  # PPO ratio clip
    value_coef: float = 0.5  # value loss weight
    entropy_coef: float = 0.01  # entropy bonus weight (at iteration 0 when decayed)
    entropy_coef_final: float | None = None  # the schedule of the class docstring; None: constant entropy_coef
    entropy_decay_iterations: int | None = None  # iterations over which entropy_coef decays to entropy_coef_final
    gamma: float = 0.99  # discount over the whole trial
    gae_lambda: float = 0.3  # GAE lambda over the whole trial
    max_grad_norm: float = 0.5  # global gradient-norm clip
    reward_scale: float = 1.0  # rewards x this for advantages and value targets
    compile: bool = False  # torch.compile the train step
    value_network: str = "separate"  # the value GRU: "separate" (the paper's), "shared" or "detached"
    cell_init: str = "pytorch"  # "pytorch" or "orthogonal" (orthogonal hidden-to-hidden, zero biases)
    activation: str = "tanh"  # the GRU candidate's nonlinearity: "tanh" or "relu"
    weight_norm: bool = False  # weight-normalised GRU weights (the paper's)
    update_gate_bias: float | None = None  # initial update-gate bias (> 0: the cell starts remembering); None: the init's
    prev_state_input: bool = False  # the previous observation in the input too (a departure from the paper)
    target_kl: float | None = None  # stop an iteration's PPO epochs past this minibatch KL; None: every epoch

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("compile",)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.one_of(self.env, "env", ("bandit", "mdp"))
        for name in ("num_arms", "num_pulls", "num_episodes", "trials_per_iteration", "hidden", "epochs",
                     "num_minibatches"):
            checks.positive_int(getattr(self, name), name)
        for name in ("lr", "clip_eps", "max_grad_norm", "reward_scale"):
            checks.positive_number(getattr(self, name), name)
        for name in ("value_coef", "entropy_coef"):
            checks.non_negative_number(getattr(self, name), name)
        for name in ("gamma", "gae_lambda"):
            checks.probability(getattr(self, name), name)
        checks.flag(self.compile, "compile")
        checks.one_of(self.value_network, "value_network", VALUE_NETWORKS)
        checks.one_of(self.cell_init, "cell_init", CELL_INITS)
        checks.one_of(self.activation, "activation", CELL_ACTIVATIONS)
        checks.flag(self.weight_norm, "weight_norm")
        checks.flag(self.prev_state_input, "prev_state_input")
        if self.update_gate_bias is not None:
            checks.number(self.update_gate_bias, "update_gate_bias")
        if self.target_kl is not None:
            checks.positive_number(self.target_kl, "target_kl")
        if (self.entropy_coef_final is None) != (self.entropy_decay_iterations is None):
            raise ValueError("entropy_coef_final and entropy_decay_iterations go together (both None: a constant "
                             f"entropy_coef), got {self.entropy_coef_final!r} and {self.entropy_decay_iterations!r}")
        if self.entropy_coef_final is not None:
            checks.non_negative_number(self.entropy_coef_final, "entropy_coef_final")
            checks.positive_int(self.entropy_decay_iterations, "entropy_decay_iterations")
        make_rl2_env(self)  # k >= 2, n >= 1 checked by the env
        if self.trials_per_iteration % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide trials_per_iteration "
                             f"({self.trials_per_iteration})")

    def entropy_coef_at(self, iteration: int) -> float:
        """The entropy coefficient of the update that follows ``iteration`` completed iterations."""
        if self.entropy_coef_final is None:
            return float(self.entropy_coef)
        done = min(iteration / self.entropy_decay_iterations, 1.0)
        return float(self.entropy_coef + (self.entropy_coef_final - self.entropy_coef) * done)

    def ppo(self, iteration: int = 0) -> PPOConfig:
        """The PPO part as a ``meta.PPOConfig``, with the entropy coefficient of ``iteration``."""
        return PPOConfig(epochs=self.epochs, num_minibatches=self.num_minibatches, clip_eps=float(self.clip_eps),
                         value_coef=float(self.value_coef), entropy_coef=self.entropy_coef_at(iteration),
                         gamma=float(self.gamma), gae_lambda=float(self.gae_lambda),
                         reward_scale=float(self.reward_scale),
                         target_kl=None if self.target_kl is None else float(self.target_kl))


def make_rl2_env(config: RL2Config) -> BernoulliBandits | TabularMDP:
    """The task family a config names."""
    if config.env == "bandit":
        return BernoulliBandits(config.num_arms, config.num_pulls)
    return TabularMDP(config.num_episodes)


def make_rl2_policy(config: RL2Config, env: BernoulliBandits | TabularMDP) -> RecurrentFunctional:
    """The GRU actor-critic a config names, for ``env``."""
    return gru_actor_critic(env.obs_dim, env.num_actions, config.hidden, value_network=config.value_network,
                            init=config.cell_init, activation=config.activation, weight_norm=config.weight_norm,
                            update_gate_bias=None if config.update_gate_bias is None else float(config.update_gate_bias),
                            prev_obs_input=config.prev_state_input)


def mean_and_stderr(totals: torch.Tensor) -> dict[str, float]:
    """``{"mean", "stderr", "num_tasks"}`` of per-task totals ``[B]`` (stderr = sample std / sqrt(B))."""
    if totals.ndim != 1 or totals.shape[0] < 2:
        raise ValueError(f"totals expected shape [B] with B >= 2, got {tuple(totals.shape)}")
    totals = totals.double()
    return {"mean": float(totals.mean()), "stderr": float(totals.std() / math.sqrt(totals.shape[0])),
            "num_tasks": int(totals.shape[0])}


class RL2Trainer(Runner):
    """Trains a GRU actor-critic with RL² + PPO on bandits or tabular MDPs. One iteration is
    one PPO iteration (see the module docstring).

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go (``None``: nothing).

    Metrics of an iteration: ``env_steps`` (so far), the step's statistics (``trial_return``: the
    mean total reward per trial of the iteration's rollout; the losses, ``approx_kl`` and the
    pre-clip ``grad_norm`` of its last minibatch), the ``entropy_coef`` it used, and its wall
    time (``seconds``, ``steps_per_second``).
    """

    config_class = RL2Config
    log_prefix = "train"
    progress_metric = "trial_return"

    def __init__(self, config: RL2Config, output_dir: str | Path | None = None):
        super().__init__(config, output_dir)
        # Under torchrun the trials of every iteration are split over the processes (as in the
        # MAML trainer); rank 0 alone writes.
        self.shard = self.join_data_parallel(config.trials_per_iteration)
        self.env = make_rl2_env(config)
        self.policy = make_rl2_policy(config, self.env)
        self.optimizer = chain(clip_by_global_norm(config.max_grad_norm), adam(config.lr))
        self.params: Params = self.parallel.broadcast(self.policy.init(config.seed, device=self.device))
        self.opt_state: Any = self.optimizer.init(self.params)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.env_steps = 0
        # eager: autograd on detached copies (faster on CPU); compiled: the torch.func gradient
        self._grad_fn = (torch.compile(grad_and_value(rl2_ppo_loss, has_aux=True), dynamic=False)
                         if config.compile else rl2_ppo_grad)

    # ----------------------------------------------------------------- training
    def run_iteration(self) -> dict[str, float]:
        """One RL² PPO iteration; returns its metrics (see the class docstring)."""
        cfg = self.config
        start = time.perf_counter()
        tasks = self.env.sample_tasks(cfg.trials_per_iteration, self.generator)
        noise = sample_rl2_noise(self.env, cfg.trials_per_iteration, cfg.epochs, self.generator)
        if self.shard is not None:  # every process draws the whole batch and keeps its trials
            mine = self.shard.tasks
            tasks = tree_map(lambda x: x[mine], tasks)
            noise = noise._replace(env=tree_map(lambda x: x[:, mine], noise.env), gumbel_u=noise.gumbel_u[:, mine])
        ppo = cfg.ppo(self.iteration)
        entropy_coef = ppo.entropy_coef  # the float this update uses, for the metrics
        if cfg.compile and cfg.entropy_coef_final is not None:  # a tensor input, not a new constant to recompile for
            ppo = ppo._replace(entropy_coef=torch.tensor(ppo.entropy_coef, device=self.device))
        self.params, self.opt_state, stats = rl2_train_step(
            self.params, self.opt_state, tasks, noise, self.env, self.policy, self.optimizer,
            config=ppo, grad_fn=self._grad_fn, shard=self.shard,
        )
        values = {k: float(v) for k, v in stats.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"non-finite training statistics at iteration {self.iteration + 1}: {values}")
        self.env_steps += cfg.trials_per_iteration * self.env.trial_length
        seconds = time.perf_counter() - start
        return {"env_steps": float(self.env_steps), **values, "entropy_coef": entropy_coef, "seconds": seconds,
                "steps_per_second": cfg.trials_per_iteration * self.env.trial_length / seconds}

    # ----------------------------------------------------------------- evaluation
    def trial_returns(self, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """Total reward of one trial of the current policy on each task: ``[B]``. ``greedy``:
        act by the argmax of the logits instead of sampling (``gumbel_u`` then only sets shapes).

        ``tasks`` (leading axis ``B``), ``env_noise`` (leaves ``[T, B]``) and ``gumbel_u``
        (``[T, B, A]``) are given so every method can be scored on the same tasks and noise.
        """
        if greedy:  # equal Gumbel noise on every action: the sample is the argmax of the logits
            gumbel_u = torch.full_like(gumbel_u, 0.5)
        trial = rl2_rollout(self.params, tasks, env_noise, gumbel_u, self.env, self.policy)
        return trial.rewards.sum(0)

    def evaluate(self, num_tasks: int = 1000, seed: int | None = None, baselines: bool = True,
                 others: dict[str, Callable[[Any, Any, torch.Tensor], torch.Tensor]] | None = None,
                 ) -> dict[str, float]:
        """Mean total reward per trial, with its standard error, of RL² (sampling its actions:
        ``"rl2"``; acting greedily on its logits: ``"rl2_greedy"``) and (``baselines``) every
        classic baseline on the same ``num_tasks`` held-out tasks with the same env noise.

        The Gittins discount and the exploration constant of ``"ucb1_tuned"`` (``"ucb1"`` keeps
        Auer et al.'s ``sqrt(2)``) are tuned on 500 separate tasks (``envs.tune_gittins_gamma``,
        ``envs.tune_ucb_c``), and so is that of ``"ucb1_beta"`` (UCB1 with the RL² paper's starting
        counts, one pseudo-success and one pseudo-failure per arm). MDPs add ``"psrl_prior0"`` and
        ``"greedy_prior0"`` (the planners with the paper's library's reward prior N(0, 1)). Both
        families add the memory gauge ``"memory_w10"``, ``"memory_w20"``, ``"memory_w30"`` and
        ``"memory_full"`` (``envs.windowed_greedy``: how much a trial rewards remembering W steps).
        Tasks and noise come from their own generator (``seed`` defaults to ``config.seed +
        10_000``), not from the training stream. ``others``: more agents, ``name -> fn(tasks,
        env_noise, gumbel_u) -> totals [B]``, scored on the same tasks and noise (e.g.
        ``meta.maml_trial_returns`` of a MAML trainer's params).

        Returns:
            ``{"<method>/mean", "<method>/stderr", "<method>/num_tasks"}`` for every method, plus
            ``"gittins/gamma"``, ``"ucb1_tuned/c"`` and ``"ucb1_beta/c"`` (the tuned constants) on bandits.
        """
        checks.int_in_range(num_tasks, "num_tasks", low=2)
        checks.flag(baselines, "baselines")
        if seed is not None:
            checks.int_in_range(seed, "seed")
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 10_000 if seed is None else seed)
        tasks = self.env.sample_tasks(num_tasks, gen)
        noise = sample_rl2_noise(self.env, num_tasks, 0, gen)
        totals = {"rl2": self.trial_returns(tasks, noise.env, noise.gumbel_u),
                  "rl2_greedy": self.trial_returns(tasks, noise.env, noise.gumbel_u, greedy=True)}
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
                # the paper's UCB1: one pseudo-success and one pseudo-failure per arm, its constant tuned too
                ucb_beta_c, _ = tune_ucb_c(self.env, tune_tasks, tune_noise, generator=tune, ucb_prior="beta")
                totals["ucb1_beta"] = bandit_baseline(self.env, tasks, "ucb1", noise.env, agent_gen, ucb_c=ucb_beta_c,
                                                      ucb_prior="beta").rewards.sum(0)
            else:
                for method in MDP_BASELINES:
                    totals[method] = mdp_baseline(self.env, tasks, method, noise.env, agent_gen).rewards.sum(0)
                for method in ("psrl", "greedy"):  # the paper's library's reward prior N(0, 1)
                    totals[f"{method}_prior0"] = mdp_baseline(self.env, tasks, method, noise.env, agent_gen,
                                                              reward_prior_mean=0.0).rewards.sum(0)
            for window in MEMORY_GAUGE_WINDOWS:  # the memory gauge, after the others (their draws unchanged)
                name = "memory_full" if window is None else f"memory_w{window}"
                totals[name] = windowed_greedy(self.env, tasks, noise.env, window, agent_gen).rewards.sum(0)
        for name, fn in (others or {}).items():
            totals[name] = fn(tasks, noise.env, noise.gumbel_u)
        out = {f"{method}/{stat}": float(value) for method, v in totals.items()
               for stat, value in mean_and_stderr(v).items()}
        if "gittins/mean" in out:
            out["gittins/gamma"] = float(gittins_gamma)
            out["ucb1_tuned/c"] = float(ucb_c)
            out["ucb1_beta/c"] = float(ucb_beta_c)
        return out

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Everything a bit-identical resume needs: params, optimizer state, generator, env steps."""
        return {"params": self.params, "opt_state": self.opt_state, "generator": self.generator.get_state(),
                "env_steps": self.env_steps}

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`runner_state` returned."""
        self.params = restore_like(state["params"], self.params, "params")
        self.opt_state = restore_like(state["opt_state"], self.opt_state, "opt_state")
        self.generator.set_state(state["generator"])
        self.env_steps = int(state["env_steps"])
