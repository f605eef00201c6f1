"""Deep Option-Critic (Bacon, Harb & Precup 2017, section 5.2-5.3) over gymnasium envs.

The thin stateful shell around ``rl.option_critic`` and ``nn.option_critic_net``: it owns the
envs, the replay buffer, the device, the ``torch.Generator`` that draws every random number
(option choices, actions, terminations, replay indices), TensorBoard / ``metrics.json`` logs and
atomic checkpoints with exact resume. Discrete action spaces get softmax intra-option policies,
``Box`` action spaces diagonal Gaussian ones (state-dependent mean, learned log-std per option).

Every env step, for the ``num_envs`` envs stepped together:

1. act: the running option ``w`` picks ``a ~ pi_w(. | s)``; the env steps (Gaussian actions are
   clipped to the action box for the env, the unclipped sample is what the policy gradient sees);
2. actor, online on these transitions (as the paper's algorithm): one Adam step on the
   intra-option policy loss ``-log pi_w(a|s) (g - Q(s, w)) - c H(pi_w(.|s))`` with the one-step
   target ``g = r + gamma [(1 - beta_w(s')) Q(s', w) + beta_w(s') max Q(s', .)]`` and ``Q(s, w)`` as
   the baseline, and on the termination loss ``beta_w(s') (Q(s', w) - V(s') + xi)`` at ``s'`` (not
   at terminal ``s'``), ``V`` the value of the epsilon-greedy policy over options
   (``termination_value="epsilon_greedy"``: ``(1 - eps) max Q + eps mean Q``) or ``max Q``
   (``"greedy"``). Both use the online critic, held fixed;
3. critic: the transitions go to a replay buffer; one Adam step of intra-option Q-learning on a
   sampled batch, the target ``r + gamma [(1 - beta_w(s')) Q_target(s', w) + beta_w(s') max Q_target(s', .)]``
   from a **target network** (copied from the online one every ``target_update_every`` env steps)
   and the online ``beta``; no bootstrap past a true termination (a time-limit truncation
   bootstraps);
4. call-and-return: with the updated params the option terminates at ``s'`` with probability
   ``beta_w(s')``; a new one is then chosen epsilon-greedily over ``Q(s', .)`` (epsilon decays
   linearly from ``epsilon_start`` to ``epsilon_end``).

Settings and choices, stated:

- From the paper's deep (ALE) setup, as we read it: a DQN-style critic (experience replay and a
  target network), the intra-option policies and terminations updated from the current
  transitions, epsilon-greedy over options, termination margin ``xi = 0.01``, an entropy bonus
  on the intra-option policies, ``Q_Omega`` as the baseline.
- Ours: three separate MLP bodies for ``Q``, ``beta`` and the policies (the paper shares a conv
  torso; for low-dimensional states separate bodies keep the three losses from pulling on each
  other), Adam per head (the paper uses RMSProp), one critic update per env step, a hard
  target copy, squared TD loss, ``V`` from the epsilon-greedy policy over options (the paper's
  ``V_Omega``; the authors' tabular code uses ``max Q``).
- Episodes run in **rounds**: all envs reset together (seeded ``seed + round * num_envs + i``);
  an env whose episode ends waits until every env's has. One iteration of the runner is one
  round (``iterations`` counts rounds, ``num_envs`` episodes each). Checkpoints are written only
  between rounds, so no env state is ever needed and a resumed run continues exactly as an
  unbroken one (same params, replay, generator, counters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.func import grad_and_value, vmap

from .. import checks
from ..nn.option_critic_nets import OptionHeads, option_critic_net
from ..optim import AdamState, adam, apply_updates
from ..distributions import (
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)
from ..rl.option_critic import (
    intra_option_critic_loss,
    intra_option_q_target,
    option_actor_losses,
)
from ..tree import Params
from .base import RunConfig, Runner, restore_like
from .replay import UniformReplay

__all__ = ["DeepOptionCriticConfig", "DeepOptionCriticTrainer"]

_GROUPS = ("critic", "termination", "policy")


@dataclass
class DeepOptionCriticConfig(RunConfig):
    """Deep Option-Critic settings; the defaults learn CartPole-v1 (see docs/results/agents.md).

    ``iterations`` and ``checkpoint_every`` count rounds (``num_envs`` episodes each, see the
    module docstring); every other step count counts env steps summed over the envs. Refused:
    settings under which the critic never learns (``batch_size`` or ``learning_starts`` above
    ``replay_size``: the replay never holds that many transitions).
    """

    iterations: int = 250  # rounds of num_envs episodes
    device: str = "cpu"
    checkpoint_every: int = 25  # rounds
    env_id: str = "CartPole-v1"
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    num_envs: int = 8
    num_options: int = 2
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0  # Gaussian policies only
    gamma: float = 0.99
    critic_lr: float = 1e-3
    policy_lr: float = 3e-4
    termination_lr: float = 3e-4
    entropy_coef: float = 0.01
    xi: float = 0.01
    termination_value: str = "epsilon_greedy"  # or "greedy" (V = max Q)
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 20_000
    replay_size: int = 100_000
    batch_size: int = 64
    learning_starts: int = 1_000  # env steps before the critic starts learning
    target_update_every: int = 1_000  # env steps
    reward_scale: float = 1.0  # rewards are multiplied by this before learning (logs show raw rewards)
    tensorboard: bool = True

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("tensorboard",)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.instance(self.env_id, "env_id", str)
        checks.instance(self.env_kwargs, "env_kwargs", dict)
        for name in ("num_envs", "num_options", "epsilon_decay_steps", "replay_size", "batch_size",
                     "target_update_every"):
            checks.positive_int(getattr(self, name), name)
        checks.non_negative_int(self.learning_starts, "learning_starts")
        self.hidden = tuple(checks.instance(self.hidden, "hidden", (tuple, list)))
        if not self.hidden:
            raise ValueError("hidden must be a non-empty sequence of positive ints, got ()")
        for i, h in enumerate(self.hidden):
            checks.positive_int(h, f"hidden[{i}]")
        checks.instance(self.activation, "activation", str)
        for name in ("gamma", "epsilon_start", "epsilon_end"):
            checks.probability(getattr(self, name), name)
        for name in ("critic_lr", "policy_lr", "termination_lr", "reward_scale"):
            checks.positive_number(getattr(self, name), name)
        checks.non_negative_number(self.entropy_coef, "entropy_coef")
        for name in ("xi", "init_log_std"):
            checks.number(getattr(self, name), name)
        checks.one_of(self.termination_value, "termination_value", ("epsilon_greedy", "greedy"))
        checks.flag(self.tensorboard, "tensorboard")
        # Settings under which the critic would never be updated: the replay never holds that many.
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed replay_size ({self.replay_size})")
        if self.learning_starts > self.replay_size:
            raise ValueError(f"learning_starts ({self.learning_starts}) must not exceed replay_size "
                             f"({self.replay_size}): the replay never holds more, so no update would ever run")


def _critic_loss(q_tm1, option, r_t, discount_t, q_t, beta_t) -> torch.Tensor:
    """Unbatched intra-option Q-learning loss, target from ``q_t`` (target net) and ``beta_t``."""
    return intra_option_critic_loss(q_tm1, option, intra_option_q_target(r_t, discount_t, q_t, beta_t, option))


def _group(key: str) -> str:
    """Which head a param belongs to: the Gaussian ``log_std`` goes with the policy."""
    head = key.split(".", 1)[0]
    return "policy" if head == "log_std" else head


class DeepOptionCriticTrainer(Runner):
    """Trains deep Option-Critic on ``num_envs`` gymnasium envs. One iteration is one round
    (every env runs one episode; see the module docstring).

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and ``tensorboard/`` go (None: nowhere).
        env_fn: ``env_fn(index) -> gymnasium.Env`` (default ``gymnasium.make(config.env_id,
            **config.env_kwargs)``); the trainer owns and closes the envs. Index ``num_envs`` is
            the evaluation env.

    Metrics of an iteration (round): ``step`` (env steps so far), ``return``, ``length``,
    ``option_duration`` (and ``success`` when the env reports it): means over the round's
    episodes in the order they ended; ``epsilon`` at the round's end; ``policy_loss`` and
    ``termination_loss`` (means over the round's env steps) and ``critic_loss`` (mean over its
    critic updates, once they run).
    """

    config_class = DeepOptionCriticConfig
    log_prefix = "train"
    progress_metric = "return"

    def __init__(self, config: DeepOptionCriticConfig, output_dir: str | Path | None = None,
                 env_fn: Callable[[int], Any] | None = None):
        import gymnasium as gym

        super().__init__(config, output_dir)
        cfg = config
        if not cfg.tensorboard:
            self.logger.log_dir = None  # no TensorBoard events
        self.env_fn = env_fn if env_fn is not None else (lambda i: gym.make(cfg.env_id, **cfg.env_kwargs))
        self.envs = [self.env_fn(i) for i in range(cfg.num_envs)]
        obs_space, act_space = self.envs[0].observation_space, self.envs[0].action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise TypeError(f"observations must be a flat Box, got {obs_space}")
        self.obs_dim = int(obs_space.shape[0])
        if isinstance(act_space, gym.spaces.Discrete):
            self.continuous = False
            self.num_actions = int(act_space.n)
            self.net = option_critic_net(self.obs_dim, cfg.num_options, num_actions=self.num_actions,
                                         hidden=cfg.hidden, activation=cfg.activation)
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            self.continuous = True
            self.act_dim = int(act_space.shape[0])
            if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
                raise ValueError(f"a Box action space needs finite bounds, got {act_space}")
            self.action_low = torch.as_tensor(act_space.low, dtype=torch.float32, device=self.device)
            self.action_high = torch.as_tensor(act_space.high, dtype=torch.float32, device=self.device)
            self.net = option_critic_net(self.obs_dim, cfg.num_options, act_dim=self.act_dim, hidden=cfg.hidden,
                                         activation=cfg.activation, init_log_std=cfg.init_log_std)
        else:
            raise TypeError(f"action space must be Discrete or a flat Box, got {act_space}")
        for e in self.envs[1:]:
            if e.observation_space.shape != obs_space.shape or e.action_space != act_space:
                raise ValueError("all envs from env_fn must share observation and action spaces")

        self.params: Params = self.net.init(cfg.seed, device=self.device)
        self.target_params: Params = dict(self.params)
        lrs = {"critic": cfg.critic_lr, "termination": cfg.termination_lr, "policy": cfg.policy_lr}
        self._opts = {g: adam(lrs[g]) for g in _GROUPS}
        self.opt_states: dict[str, AdamState] = {g: self._opts[g].init(self._subset(self.params, g)) for g in _GROUPS}
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.replay = UniformReplay(cfg.replay_size, device=self.device, num_actions=cfg.num_options)

        self.steps = 0  # env steps
        self.rounds = 0  # rounds started
        self.updates = 0  # critic updates
        self.episodes: list[dict[str, float]] = []  # one record per finished episode (step, return, length, ...)
        self._last_target_update = 0
        self._in_round = False
        self._reports_success = False  # whether the env puts "success" in info (Meta-World)
        self._loss_sums = {"critic": 0.0, "policy": 0.0, "termination": 0.0, "n_actor": 0, "n_critic": 0}
        self._actor_grad = grad_and_value(self._actor_objective, has_aux=True)
        self._critic_grad = grad_and_value(self._critic_objective)

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _subset(params: Params, group: str) -> Params:
        return {k: v for k, v in params.items() if _group(k) == group}

    def epsilon(self) -> float:
        """The ε of ε-greedy over options now: linear from ``epsilon_start`` to ``epsilon_end``."""
        cfg = self.config
        frac = min(self.steps / cfg.epsilon_decay_steps, 1.0)
        return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)

    def value_epsilon(self) -> float:
        """Epsilon of the policy over options used for ``V`` in the termination advantage."""
        return self.epsilon() if self.config.termination_value == "epsilon_greedy" else 0.0

    def _log_prob_entropy(self, heads: OptionHeads, option: torch.Tensor, action: torch.Tensor):
        """log pi_w(a | s) and H(pi_w(. | s)) of the running options: ``[N]`` each."""
        idx = torch.arange(option.shape[0], device=option.device)
        if self.continuous:
            mean, log_std = heads.policy[idx, option], heads.log_std[idx, option]
            return gaussian_log_prob(mean, log_std, action), gaussian_entropy(log_std)
        logits = heads.policy[idx, option]
        return categorical_log_prob(logits, action), categorical_entropy(logits)

    def _choose_options(self, q: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
        """Epsilon-greedy over options. q: ``[N, O]`` -> ``[N]``."""
        n, o = q.shape
        u = torch.rand(n, generator=generator, device=self.device)
        rand = torch.randint(0, o, (n,), generator=generator, device=self.device)
        return torch.where(u < epsilon, rand, q.argmax(-1))

    def _sample_actions(self, heads: OptionHeads, option: torch.Tensor, generator: torch.Generator,
                        deterministic: bool = False) -> torch.Tensor:
        """``[N]`` int64 (discrete) or ``[N, act_dim]`` (Gaussian, unclipped)."""
        idx = torch.arange(option.shape[0], device=self.device)
        if self.continuous:
            mean = heads.policy[idx, option]
            if deterministic:
                return mean
            noise = torch.randn(mean.shape, generator=generator, device=self.device)
            return mean + heads.log_std[idx, option].exp() * noise
        logits = heads.policy[idx, option]
        if deterministic:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)

    def _env_action(self, action: torch.Tensor) -> np.ndarray:
        if self.continuous:
            return torch.clamp(action, self.action_low, self.action_high).cpu().numpy()
        return action.cpu().numpy()

    def _to_obs(self, obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------- pure objectives, bound
    def _actor_objective(self, actor: Params, critic: Params, obs, option, action, reward, next_obs, terminal, mask,
                         value_epsilon: float):
        """Mean over live transitions of the intra-option policy and termination losses."""
        cfg = self.config
        params = {**critic, **actor}
        both = self.net.apply(params, torch.cat([obs, next_obs]))  # one pass for s and s'
        n = obs.shape[0]
        h_tm1, h_t = (OptionHeads(*(None if x is None else x[sl] for x in both)) for sl in (slice(None, n), slice(n, None)))
        log_prob, entropy = self._log_prob_entropy(h_tm1, option, action)
        discount = cfg.gamma * (1.0 - terminal)
        losses = vmap(option_actor_losses, in_dims=(0,) * 9 + (None,) * 3)(
            log_prob, entropy, h_tm1.q.detach(), h_t.q.detach(), h_t.beta, option, reward, discount, terminal,
            cfg.xi, cfg.entropy_coef, value_epsilon)
        live = mask.sum().clamp(min=1.0)
        policy, termination = (losses.policy * mask).sum() / live, (losses.termination * mask).sum() / live
        return policy + termination, (policy.detach(), termination.detach())

    def _critic_objective(self, critic: Params, rest: Params, target: Params, obs, option, reward, next_obs, terminal):
        """Mean intra-option Q-learning loss on a replay batch; bootstrap from the target net."""
        cfg = self.config
        n = obs.shape[0]
        both = self.net.apply({**rest, **critic}, torch.cat([obs, next_obs]))
        q_tm1, beta_t = both.q[:n], both.beta[n:].detach()
        with torch.no_grad():
            q_t = self.net.apply(target, next_obs).q
        discount = cfg.gamma * (1.0 - terminal)
        return vmap(_critic_loss)(q_tm1, option, reward, discount, q_t, beta_t).mean()

    def _adam_step(self, group: str, grads: Params) -> None:
        sub = self._subset(self.params, group)
        updates, self.opt_states[group] = self._opts[group].update(grads, self.opt_states[group], sub)
        self.params = {**self.params, **apply_updates(sub, updates)}

    # ----------------------------------------------------------------- rounds and steps
    def _start_round(self) -> None:
        cfg = self.config
        obs = []
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=cfg.seed + self.rounds * cfg.num_envs + i)
            obs.append(np.asarray(o, dtype=np.float32))
        self._obs = self._to_obs(np.stack(obs))
        n = cfg.num_envs
        self._live = torch.ones(n, dtype=torch.bool)
        self._ep_return = np.zeros(n)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self._ep_success = np.zeros(n)
        self._ep_switches = np.ones(n)  # option choices this episode (the first one included)
        with torch.no_grad():
            self._heads = self.net.apply(self.params, self._obs)
        self._option = self._choose_options(self._heads.q, self.epsilon(), self.generator)
        self.rounds += 1
        self._in_round = True

    def env_step(self) -> list[dict[str, float]]:
        """One step of every live env, the actor and critic updates, option terminations.
        Returns the records of episodes that ended."""
        cfg = self.config
        if not self._in_round:
            self._start_round()
        live = self._live.clone()
        idx = live.nonzero().squeeze(1).tolist()
        obs, option = self._obs, self._option
        action = self._sample_actions(self._heads, option, self.generator)  # heads at obs, current params
        env_action = self._env_action(action)
        next_obs_np = self._obs.cpu().numpy().copy()
        reward = np.zeros(cfg.num_envs, dtype=np.float32)
        terminated = np.zeros(cfg.num_envs, dtype=bool)
        ended = np.zeros(cfg.num_envs, dtype=bool)
        for i in idx:
            o, r, term, trunc, info = self.envs[i].step(env_action[i])
            next_obs_np[i] = np.asarray(o, dtype=np.float32)
            reward[i], terminated[i], ended[i] = float(r), bool(term), bool(term or trunc)
            if "success" in info:
                self._reports_success = True
                self._ep_success[i] = max(self._ep_success[i], float(info["success"]))
        self.steps += len(idx)
        self._ep_return += reward
        self._ep_len += live.numpy()
        next_obs = self._to_obs(next_obs_np)
        r = torch.as_tensor(reward * cfg.reward_scale, device=self.device)
        term = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        mask = live.to(self.device, torch.float32)
        # store the live transitions for the critic
        sel = live.to(self.device)
        self.replay.add(obs[sel], option[sel], r[sel], next_obs[sel], term[sel])
        # actor: online, on these transitions
        critic_p = self._subset(self.params, "critic")
        actor_p = {k: v for k, v in self.params.items() if _group(k) != "critic"}
        grads, (_, (pl, tl)) = self._actor_grad(actor_p, critic_p, obs, option, action, r, next_obs, term, mask,
                                                self.value_epsilon())
        for g in ("termination", "policy"):
            self._adam_step(g, self._subset(grads, g))
        self._loss_sums["policy"] += float(pl)
        self._loss_sums["termination"] += float(tl)
        self._loss_sums["n_actor"] += 1
        # critic: a replay batch, target network
        if len(self.replay) >= max(cfg.learning_starts, cfg.batch_size):
            b = self.replay.sample(cfg.batch_size, self.generator)
            rest = {k: v for k, v in self.params.items() if _group(k) != "critic"}
            cg, closs = self._critic_grad(self._subset(self.params, "critic"), rest, self.target_params,
                                          b.obs, b.action, b.reward, b.next_obs, b.done)
            self._adam_step("critic", cg)
            self.updates += 1
            self._loss_sums["critic"] += float(closs)
            self._loss_sums["n_critic"] += 1
        if self.steps - self._last_target_update >= cfg.target_update_every:
            self.target_params = dict(self.params)
            self._last_target_update = self.steps
        # call-and-return: terminate at s' with the updated beta, then pick a new option
        with torch.no_grad():
            h_next = self.net.apply(self.params, next_obs)
        n = cfg.num_envs
        beta = h_next.beta[torch.arange(n, device=self.device), option]
        stop = torch.rand(n, generator=self.generator, device=self.device) < beta
        new = self._choose_options(h_next.q, self.epsilon(), self.generator)
        self._option = torch.where(stop, new, option)
        self._ep_switches += stop.cpu().numpy() & live.numpy() & ~ended  # an option ending with its episode is not a switch
        self._obs, self._heads = next_obs, h_next  # params do not change before the next action
        records = []
        for i in idx:
            if ended[i]:
                rec = {"step": self.steps, "return": float(self._ep_return[i]), "length": int(self._ep_len[i]),
                       "option_duration": float(self._ep_len[i] / self._ep_switches[i])}
                if self._reports_success:
                    rec["success"] = float(self._ep_success[i])
                records.append(rec)
                self._live[i] = False
        self.episodes.extend(records)
        if not bool(self._live.any()):
            self._in_round = False
        return records

    # ----------------------------------------------------------------- training
    def run_iteration(self) -> dict[str, float]:
        """One round: every env runs one episode (with the updates of every step); returns the
        round's metrics (see the class docstring)."""
        self._loss_sums = {"critic": 0.0, "policy": 0.0, "termination": 0.0, "n_actor": 0, "n_critic": 0}
        records = self.env_step()
        while self._in_round:
            records += self.env_step()
        out = {"step": float(self.steps)}
        for key in ("return", "length", "option_duration", "success"):
            values = [r[key] for r in records if key in r]
            if values:
                out[key] = float(np.mean(values))
        out["epsilon"] = self.epsilon()
        s = self._loss_sums
        if s["n_actor"]:
            out["policy_loss"] = s["policy"] / s["n_actor"]
            out["termination_loss"] = s["termination"] / s["n_actor"]
        if s["n_critic"]:
            out["critic_loss"] = s["critic"] / s["n_critic"]
        return out

    def mean_return(self, last: int = 20) -> float:
        """Mean return of the last ``last`` finished episodes (nan if none)."""
        recent = self.episodes[-last:]
        return float(np.mean([e["return"] for e in recent])) if recent else float("nan")

    def mean_success(self, last: int = 20) -> float:
        """Success rate of the last ``last`` finished episodes that report success (nan if none)."""
        recent = [e["success"] for e in self.episodes[-last:] if "success" in e]
        return float(np.mean(recent)) if recent else float("nan")

    def evaluate(self, episodes: int = 10, seed: int = 10_000, deterministic: bool = True,
                 epsilon: float = 0.0) -> dict[str, float]:
        """Run ``episodes`` episodes on a separate env (``env_fn(num_envs)``) with epsilon-greedy
        options (default greedy) and mean / argmax actions (``deterministic``); its own generator,
        so training is unaffected.

        Args:
            episodes: how many episodes; episode ``i`` resets with ``seed + i``.
            seed: seeds the evaluation's generator and resets.
            deterministic: mean (Gaussian) / argmax (softmax) actions instead of samples.
            epsilon: of the epsilon-greedy choice over options.

        Returns:
            ``{"return", "option_duration"}`` (means over episodes) and ``"success"`` when the env reports it.
        """
        checks.positive_int(episodes, "episodes")
        checks.int_in_range(seed, "seed")
        checks.flag(deterministic, "deterministic")
        checks.probability(epsilon, "epsilon")
        env = self.env_fn(self.config.num_envs)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        returns, successes, durations = [], [], []
        try:
            for e in range(episodes):
                o, _ = env.reset(seed=seed + e)
                obs = self._to_obs(np.asarray(o, dtype=np.float32))[None]
                with torch.no_grad():
                    option = self._choose_options(self.net.apply(self.params, obs).q, epsilon, gen)
                total, steps, switches, success, done = 0.0, 0, 1, None, False
                while not done:
                    with torch.no_grad():
                        heads = self.net.apply(self.params, obs)
                    action = self._sample_actions(heads, option, gen, deterministic)
                    o, r, term, trunc, info = env.step(self._env_action(action)[0])
                    total, steps, done = total + float(r), steps + 1, bool(term or trunc)
                    if "success" in info:
                        success = max(success or 0.0, float(info["success"]))
                    obs = self._to_obs(np.asarray(o, dtype=np.float32))[None]
                    with torch.no_grad():
                        h = self.net.apply(self.params, obs)
                    if bool(torch.rand(1, generator=gen, device=self.device) < h.beta[0, option]):
                        option = self._choose_options(h.q, epsilon, gen)
                        switches += 1
                returns.append(total)
                durations.append(steps / switches)
                if success is not None:
                    successes.append(success)
        finally:
            env.close()
        out = {"return": float(np.mean(returns)), "option_duration": float(np.mean(durations))}
        if successes:
            out["success"] = float(np.mean(successes))
        return out

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run; only between rounds (raises mid-round)."""
        if self._in_round:
            raise RuntimeError("checkpoints are taken between rounds only (call env_step until the round ends)")
        return {
            "steps": self.steps, "rounds": self.rounds, "updates": self.updates,
            "last_target_update": self._last_target_update,
            "params": self.params, "target_params": self.target_params, "opt_states": self.opt_states,
            "generator": self.generator.get_state(), "replay": self.replay.state_dict(),
            "episodes": [dict(e) for e in self.episodes],
            "reports_success": self._reports_success,
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Exact resume: params, target, Adam states, generator, replay, counters and records."""
        self.params = restore_like(state["params"], self.params, "params")
        self.target_params = restore_like(state["target_params"], self.target_params, "target_params")
        self.opt_states = restore_like(state["opt_states"], self.opt_states, "opt_states")
        self.generator.set_state(state["generator"])
        self.replay.load_state_dict(state["replay"])
        self.steps, self.rounds, self.updates = int(state["steps"]), int(state["rounds"]), int(state["updates"])
        self._last_target_update = int(state["last_target_update"])
        self.episodes = [dict(e) for e in state["episodes"]]
        self._reports_success = bool(state["reports_success"])
        self._in_round = False

    def close(self) -> None:
        """Close the envs and the TensorBoard writer."""
        for env in self.envs:
            env.close()
        super().close()
