"""DDPG / TD3 runner: the stateful shell around the pure math in ``rl.actor_critic``.

It owns the gymnasium env, a replay buffer, the device, the ``torch.Generator`` that draws
every random number (warm-up actions, exploration noise, replay indices, TD3 smoothing noise),
the TensorBoard / ``metrics.json`` logs and atomic checkpoints with resume. Each update is:
targets (pure) -> critic gradient (``torch.func.grad``) -> Adam (out of place) -> every
``policy_delay``-th time: actor gradient, Adam, Polyak-averaged targets (pure).

``algo="ddpg"``: one critic, ``policy_delay = 1``, no target smoothing (Lillicrap et al. 2015).
``algo="td3"``: twin critics stacked on a leading axis, clipped double-Q target, smoothing
noise ``clip(N(0, policy_noise), -noise_clip, noise_clip)``, delayed actor/target updates
(Fujimoto et al. 2018).

Deviations and choices, stated:

- Defaults are the TD3 paper's settings (Fujimoto et al. 2018, sec. 6.1 / Table 3): 400-300
  ReLU nets, Adam 1e-3 for both nets, batch 100, tau 0.005, Gaussian exploration N(0, 0.1),
  10,000 warm-up steps of uniform random actions, action concatenated at the critic input. That
  table also defines the "our DDPG" baseline. ``DDPGConfig.lillicrap()`` gives the original DDPG
  settings (Adam 1e-4 / 1e-3, critic L2 1e-2, tau 1e-3, batch 64, OU noise theta 0.15 sigma 0.2,
  action into the critic's second layer, last-layer init U[-3e-3, 3e-3]); its batch
  normalisation is not implemented (it needs running statistics, i.e. state, in the nets).
- Noise scales (exploration sigma, TD3 policy_noise and noise_clip, OU sigma) are given for
  actions in [-1, 1], as in both papers, and multiplied by the action half-range ``(high-low)/2``
  for other ranges (the TD3 authors' code does the same with ``max_action``).
- The target bootstraps through time-limit truncations (only gymnasium's ``terminated`` stops
  it); see ``rl.actor_critic``.
- ``critic_l2`` is applied as ``0.5 * l2 * ||theta||^2`` over all critic params (biases
  included); the paper says only "L2 weight decay of 1e-2" for Q.
- Lillicrap et al.'s OU noise has no stated time step; ``ou_noise_step`` uses ``dt = 1``
  (OpenAI Baselines uses ``dt = 1e-2``, which gives much smaller noise).
- Every episode resets the env with ``seed + episode_index``, so runs and resumes are repeatable.
- One iteration of the runner is one env step (``iterations`` is the number of env steps).
- The replay is this module's :class:`TensorReplay` rather than ``runners.replay.UniformReplay``:
  that one checks discrete actions and carries n-step fields DDPG/TD3 do not use, while this one
  checks that continuous actions are floats inside the action box.
- Resume is exact (with ``save_replay=True``): a checkpoint holds, besides params, targets,
  optimizer states, the generator, the replay and the counters, the current episode as its reset
  seed (``seed + episode_index``) and the actions taken since, plus the OU noise state, the
  running return / length and the last losses. ``load_checkpoint`` resets the env with that
  seed, replays the actions and checks that it arrives at the saved observation (an env that is
  not a function of its seed and actions raises ``RuntimeError`` instead of drifting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.func import grad_and_value

from .. import checks
from ..nn.actor_critic_nets import deterministic_actor, q_critic
from ..optim import adam, apply_updates
from ..rl.actor_critic import (
    TransitionBatch,
    critic_loss,
    ddpg_targets,
    dpg_actor_loss,
    is_policy_update_step,
    ou_noise_step,
    polyak_update,
    td3_targets,
    twin_critic_loss,
)
from ..tree import Params, tree_dot, tree_map
from .base import RunConfig, Runner, restore_like

__all__ = ["DDPGConfig", "DDPGTrainer", "TensorReplay"]


# ============================================================================ replay
class TensorReplay:
    """Minimal uniform replay: a tensor ring buffer on one device (scoped to this runner).

    ``add(obs, action, reward, next_obs, terminated)`` takes a batch (``[B, obs_dim]``,
    ``[B, act_dim]``, ``[B]``, ``[B, obs_dim]``, ``[B]``) and validates all of it before writing
    anything: float dtypes, shapes, finite values, actions inside ``[action_low, action_high]``.
    ``sample(batch_size, generator)`` draws indices uniformly with replacement.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        checks.positive_int(capacity, "capacity")
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.device, self.dtype = torch.device(device), dtype
        self.action_low = torch.as_tensor(action_low, dtype=dtype, device=self.device)
        self.action_high = torch.as_tensor(action_high, dtype=dtype, device=self.device)
        z = lambda *s: torch.zeros(capacity, *s, dtype=dtype, device=self.device)  # noqa: E731
        self.storage = TransitionBatch(z(obs_dim), z(act_dim), z(), z(obs_dim), z())
        self.position = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def _check(self, name: str, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"replay.add: {name} must be a Tensor, got {type(value).__name__}")
        if not value.is_floating_point() and not (name == "terminated" and value.dtype == torch.bool):
            raise TypeError(f"replay.add: {name} must be a floating-point tensor, got {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(f"replay.add: {name} expected shape {list(shape)}, got {list(value.shape)}")
        if not torch.isfinite(value.float()).all():
            raise ValueError(f"replay.add: {name} contains non-finite values (nan or inf)")
        return value.to(device=self.device, dtype=self.dtype)

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor) -> None:
        """Append a batch of ``B`` transitions (leaves ``[B, ...]``), overwriting the oldest when full."""
        if not isinstance(reward, torch.Tensor) or reward.ndim != 1:
            raise ValueError(f"replay.add: reward expected a tensor of shape [B], got "
                             f"{tuple(reward.shape) if isinstance(reward, torch.Tensor) else type(reward).__name__}")
        b = reward.shape[0]
        if b == 0 or b > self.capacity:
            raise ValueError(f"replay.add: batch size must be in [1, {self.capacity}], got {b}")
        new = TransitionBatch(
            self._check("obs", obs, (b, self.obs_dim)),
            self._check("action", action, (b, self.act_dim)),
            self._check("reward", reward, (b,)),
            self._check("next_obs", next_obs, (b, self.obs_dim)),
            self._check("terminated", terminated, (b,)),
        )
        if ((new.action < self.action_low) | (new.action > self.action_high)).any():
            raise ValueError(
                f"replay.add: action outside the action space [{self.action_low.tolist()}, {self.action_high.tolist()}]; "
                f"got min {new.action.min(0).values.tolist()}, max {new.action.max(0).values.tolist()}"
            )
        if ((new.terminated != 0) & (new.terminated != 1)).any():
            raise ValueError("replay.add: terminated must hold only 0 or 1")
        # Validation is done; only now write (the buffer's storage is runner-owned state).
        idx = (self.position + torch.arange(b, device=self.device)) % self.capacity
        for store, value in zip(self.storage, new):
            store[idx] = value
        self.position = (self.position + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> TransitionBatch:
        """``batch_size`` transitions drawn uniformly with replacement; leaves ``[batch_size, ...]``."""
        checks.positive_int(batch_size, "batch_size")
        if self.size < batch_size:
            raise ValueError(f"replay.sample: asked for a batch of {batch_size} but the buffer holds only {self.size} transitions")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return TransitionBatch(*(store[idx] for store in self.storage))

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (the filled part only), the write position and the size."""
        return {"storage": [s[: self.size].cpu() for s in self.storage], "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` wrote (refuses more transitions than the capacity)."""
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"saved replay holds {size} transitions, more than capacity {self.capacity}")
        for store, saved in zip(self.storage, state["storage"]):
            if saved.shape[1:] != store.shape[1:]:
                raise ValueError(f"saved replay has item shape {tuple(saved.shape[1:])}, expected {tuple(store.shape[1:])}")
            store[:size] = saved.to(self.device, self.dtype)
        self.position, self.size = int(state["position"]), size


# ============================================================================ config
@dataclass
class DDPGConfig(RunConfig):
    """DDPG / TD3 settings. Defaults: Fujimoto et al. 2018 (see the module docstring).

    ``iterations`` and ``checkpoint_every`` count env steps (one iteration is one env step).
    Refused: settings under which the critic would never be updated (``batch_size >
    buffer_size``, ``batch_size > iterations``, ``learning_starts >= iterations``).
    """

    iterations: int = 1_000_000  # env steps
    checkpoint_every: int = 10_000  # env steps
    algo: str = "td3"  # "ddpg" or "td3"
    env_id: str = "Pendulum-v1"
    start_steps: int = 10_000  # uniform random actions before this many env steps
    learning_starts: int | None = None  # first update after this many steps (None: start_steps)
    batch_size: int = 100
    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    critic_l2: float = 0.0  # L2 weight decay on the critic (Lillicrap: 1e-2)
    hidden: tuple[int, ...] = (400, 300)
    critic_action_layer: int = 0  # 0: action at the critic input; 1: at its second layer (Lillicrap)
    final_init: float | None = 3e-3
    exploration: str = "gaussian"  # or "ou"
    exploration_sigma: float = 0.1  # x action half-range
    ou_theta: float = 0.15
    policy_noise: float = 0.2  # TD3 smoothing std, x action half-range
    noise_clip: float = 0.5  # x action half-range
    policy_delay: int = 2  # TD3; DDPG always uses 1
    updates_per_step: int = 1
    save_replay: bool = True  # include the replay buffer in checkpoints (exact resume)

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("save_replay",)

    @property
    def first_update(self) -> int:
        """The env steps before the first update: ``learning_starts``, or ``start_steps`` when it is
        unset (kept unset, so that a changed ``start_steps`` moves it too)."""
        return self.start_steps if self.learning_starts is None else self.learning_starts

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden = tuple(self.hidden)
        checks.one_of(self.algo, "algo", ("ddpg", "td3"))
        checks.one_of(self.exploration, "exploration", ("gaussian", "ou"))
        checks.instance(self.env_id, "env_id", str)
        for name in ("batch_size", "buffer_size", "policy_delay", "updates_per_step"):
            checks.positive_int(getattr(self, name), name)
        checks.non_negative_int(self.start_steps, "start_steps")
        if self.learning_starts is not None:
            checks.non_negative_int(self.learning_starts, "learning_starts")
        for i, h in enumerate(self.hidden):
            checks.positive_int(h, f"hidden[{i}]")
        checks.int_in_range(self.critic_action_layer, "critic_action_layer", 0, len(self.hidden))
        if self.final_init is not None:
            checks.positive_number(self.final_init, "final_init")
        checks.flag(self.save_replay, "save_replay")
        # Settings under which the critic would never be updated: refuse them instead of
        # finishing a run with critic_updates == 0.
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        if self.batch_size > self.iterations:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed iterations ({self.iterations} env steps): "
                             "the replay would never hold one batch")
        if self.first_update >= self.iterations:
            raise ValueError(f"learning_starts ({self.first_update}) must be below iterations ({self.iterations} "
                             "env steps): no update would ever run")
        for name in ("actor_lr", "critic_lr"):
            checks.positive_number(getattr(self, name), name)
        for name in ("gamma", "tau"):
            checks.probability(getattr(self, name), name)
        for name in ("critic_l2", "exploration_sigma", "policy_noise", "noise_clip", "ou_theta"):
            checks.non_negative_number(getattr(self, name), name)

    @classmethod
    def lillicrap(cls, **overrides: Any) -> "DDPGConfig":
        """The original DDPG settings (Lillicrap et al. 2015, sec. 7), batch norm excepted."""
        base = dict(algo="ddpg", actor_lr=1e-4, critic_lr=1e-3, critic_l2=1e-2, tau=1e-3, batch_size=64,
                    exploration="ou", exploration_sigma=0.2, ou_theta=0.15, critic_action_layer=1,
                    start_steps=0, learning_starts=64, policy_delay=1)
        base.update(overrides)
        return cls(**base)


# ============================================================================ trainer
def _stack(trees: list[Params]) -> Params:
    return {k: torch.stack([t[k] for t in trees]) for k in trees[0]}


class DDPGTrainer(Runner):
    """Trains DDPG or TD3 on a gymnasium env with a ``Box`` action space. One iteration is one
    env step plus the updates due on it.

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing is written).
        env: a gymnasium env (default ``gymnasium.make(config.env_id)``); the trainer owns it.

    Metrics (a ``history`` row per env step that ends an episode): ``episode`` (its number, from
    1), ``step``, ``return``, ``length`` and the last ``critic_loss`` / ``actor_loss`` once
    updates run.
    """

    config_class = DDPGConfig
    log_prefix = "train"
    progress_metric = "return"

    def __init__(self, config: DDPGConfig, output_dir: str | Path | None = None, env: Any = None):
        import gymnasium as gym

        super().__init__(config, output_dir)
        cfg = config
        self.env = env if env is not None else gym.make(cfg.env_id)
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"DDPG/TD3 need a 1-D Box action space, got {space}")
        if len(self.env.observation_space.shape) != 1:
            raise TypeError(f"expected a flat observation space, got shape {self.env.observation_space.shape}")
        self.obs_dim = int(self.env.observation_space.shape[0])
        self.act_dim = int(space.shape[0])
        self.action_low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        self.half_range = (self.action_high - self.action_low) / 2

        self.actor = deterministic_actor(self.obs_dim, self.act_dim, space.low.tolist(), space.high.tolist(),
                                         cfg.hidden, "relu", cfg.final_init)
        self.critic = q_critic(self.obs_dim, self.act_dim, cfg.hidden, "relu", cfg.critic_action_layer, cfg.final_init)
        self.twin = cfg.algo == "td3"
        self.policy_delay = cfg.policy_delay if self.twin else 1
        self.actor_params: Params = self.actor.init(cfg.seed, device=self.device)
        if self.twin:
            self.critic_params = _stack([self.critic.init(cfg.seed + 1, self.device), self.critic.init(cfg.seed + 2, self.device)])
        else:
            self.critic_params = self.critic.init(cfg.seed + 1, device=self.device)
        self.target_actor_params = tree_map(torch.clone, self.actor_params)
        self.target_critic_params = tree_map(torch.clone, self.critic_params)
        self.actor_opt, self.critic_opt = adam(cfg.actor_lr), adam(cfg.critic_lr)
        self.actor_opt_state = self.actor_opt.init(self.actor_params)
        self.critic_opt_state = self.critic_opt.init(self.critic_params)
        self.replay = TensorReplay(min(cfg.buffer_size, cfg.iterations), self.obs_dim, self.act_dim,
                                   self.action_low, self.action_high, self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)

        self.steps = 0
        self.critic_updates = 0
        self.episodes_done = 0
        self.last_losses: dict[str, float] = {}
        self._obs: torch.Tensor | None = None  # current observation; None -> reset first
        self._episode_actions: list[torch.Tensor] = []  # actions since the current episode's reset
        self._ou = torch.zeros(self.act_dim, device=self.device)
        self._ep_return, self._ep_length = 0.0, 0
        self._critic_grad = grad_and_value(self._critic_objective)
        self._actor_grad = grad_and_value(self._actor_objective)

    # ----------------------------------------------------------------- pure pieces, bound
    def _critic_objective(self, params: Params, batch: TransitionBatch, targets: torch.Tensor) -> torch.Tensor:
        loss = (twin_critic_loss if self.twin else critic_loss)(params, batch, targets, self.critic)
        if self.config.critic_l2 > 0:
            loss = loss + 0.5 * self.config.critic_l2 * tree_dot(params, params)
        return loss

    def _actor_objective(self, params: Params, critic_params: Params, obs: torch.Tensor) -> torch.Tensor:
        q1 = {k: v[0] for k, v in critic_params.items()} if self.twin else critic_params
        return dpg_actor_loss(params, q1, obs, self.actor, self.critic)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy's action for ``obs: [obs_dim]`` (no exploration noise)."""
        with torch.no_grad():
            return self.actor.apply(self.actor_params, obs)

    def update(self) -> dict[str, float]:
        """One critic update (and, on schedule, one actor update plus Polyak-averaged targets)."""
        cfg = self.config
        batch = self.replay.sample(cfg.batch_size, self.generator)
        if self.twin:
            eps = torch.randn(batch.action.shape, generator=self.generator, device=self.device)
            targets = td3_targets(self.target_actor_params, self.target_critic_params, batch,
                                  eps * cfg.policy_noise * self.half_range, self.actor, self.critic, gamma=cfg.gamma,
                                  noise_clip=cfg.noise_clip * self.half_range, action_low=self.action_low,
                                  action_high=self.action_high)
        else:
            targets = ddpg_targets(self.target_actor_params, self.target_critic_params, batch, self.actor, self.critic,
                                   gamma=cfg.gamma)
        grads, closs = self._critic_grad(self.critic_params, batch, targets)
        updates, self.critic_opt_state = self.critic_opt.update(grads, self.critic_opt_state, self.critic_params)
        self.critic_params = apply_updates(self.critic_params, updates)
        self.critic_updates += 1
        out = {"critic_loss": closs.detach()}
        if is_policy_update_step(self.critic_updates, self.policy_delay):
            grads, aloss = self._actor_grad(self.actor_params, self.critic_params, batch.obs)
            updates, self.actor_opt_state = self.actor_opt.update(grads, self.actor_opt_state, self.actor_params)
            self.actor_params = apply_updates(self.actor_params, updates)
            self.target_actor_params = polyak_update(self.target_actor_params, self.actor_params, cfg.tau)
            self.target_critic_params = polyak_update(self.target_critic_params, self.critic_params, cfg.tau)
            out["actor_loss"] = aloss.detach()
        return out

    # ----------------------------------------------------------------- acting
    def _to_obs(self, obs) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)

    def _episode_seed(self) -> int:
        return self.config.seed + self.episodes_done

    def _reset(self) -> None:
        obs, _ = self.env.reset(seed=self._episode_seed())
        self._obs = self._to_obs(obs)
        self._episode_actions = []
        self._ou = torch.zeros(self.act_dim, device=self.device)
        self._ep_return, self._ep_length = 0.0, 0

    def _explore(self, obs: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.steps < cfg.start_steps:
            u = torch.rand(self.act_dim, generator=self.generator, device=self.device)
            return self.action_low + u * (self.action_high - self.action_low)
        eps = torch.randn(self.act_dim, generator=self.generator, device=self.device)
        if cfg.exploration == "ou":
            self._ou = ou_noise_step(self._ou, eps, cfg.ou_theta, cfg.exploration_sigma)
            noise = self._ou
        else:
            noise = cfg.exploration_sigma * eps
        # Clipping to the action space is part of acting in a bounded space, not of the learner.
        return torch.clamp(self.act(obs) + noise * self.half_range, self.action_low, self.action_high)

    def env_step(self) -> dict[str, float] | None:
        """One env step (+ updates when due). Returns the episode's record when it ends."""
        cfg = self.config
        if self._obs is None:
            self._reset()
        action = self._explore(self._obs)
        next_obs, reward, terminated, truncated, _ = self.env.step(action.cpu().numpy())
        self._episode_actions.append(action.detach().cpu().clone())
        reward_t = torch.tensor([float(reward)], dtype=torch.float32)
        if not torch.isfinite(reward_t).all():
            raise FloatingPointError(f"the environment returned a non-finite reward {reward!r} at step {self.steps}")
        next_obs_t = self._to_obs(next_obs)
        self.replay.add(self._obs[None], action[None], reward_t, next_obs_t[None],
                        torch.tensor([float(terminated)]))
        self.steps += 1
        self._ep_return += float(reward)
        self._ep_length += 1
        self._obs = next_obs_t
        if self.steps > cfg.first_update and len(self.replay) >= cfg.batch_size:
            for _ in range(cfg.updates_per_step):
                self.last_losses = self.update()
        if terminated or truncated:
            self.episodes_done += 1
            record = {"episode": self.episodes_done, "step": self.steps, "return": self._ep_return, "length": self._ep_length}
            record.update({k: float(v) for k, v in self.last_losses.items()})
            self._obs = None
            return record
        return None

    # ----------------------------------------------------------------- training
    def run_iteration(self) -> dict[str, float]:
        """One env step (and the updates due); the finished episode's record when it ends, else ``{}``."""
        record = self.env_step()
        return {} if record is None else {k: float(v) for k, v in record.items()}

    def mean_return(self, last: int = 10) -> float:
        """Mean return of the last ``last`` finished training episodes (nan if none)."""
        returns = [row["return"] for row in self.history if "return" in row][-last:]
        return sum(returns) / len(returns) if returns else float("nan")

    def evaluate(self, episodes: int = 10, seed: int = 10_000) -> dict[str, float]:
        """The deterministic policy (no exploration noise) on ``episodes`` episodes of a fresh env
        copy (of ``env.spec``; without a spec, the training env itself, whose episode is then restarted).

        Args:
            episodes: how many episodes; episode ``i`` resets with ``seed + i``.
            seed: the first reset seed.

        Returns:
            ``{"return": mean return over the episodes}``.
        """
        import gymnasium as gym

        checks.positive_int(episodes, "episodes")
        checks.int_in_range(seed, "seed")
        env = gym.make(self.env.spec.id) if self.env.spec is not None else self.env
        total = 0.0
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(self.act(self._to_obs(obs)).cpu().numpy())
                total += float(reward)
                done = terminated or truncated
        if env is not self.env:
            env.close()
        else:
            self._obs = None
        return {"return": total / episodes}

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run (see docs/resume.md)."""
        return {
            "steps": self.steps,
            "critic_updates": self.critic_updates,
            "episodes_done": self.episodes_done,
            "actor_params": self.actor_params,
            "critic_params": self.critic_params,
            "target_actor_params": self.target_actor_params,
            "target_critic_params": self.target_critic_params,
            "actor_opt_state": self.actor_opt_state,
            "critic_opt_state": self.critic_opt_state,
            "generator": self.generator.get_state(),
            "replay": self.replay.state_dict() if self.config.save_replay else None,
            "last_losses": {k: float(v) for k, v in self.last_losses.items()},
            "episode": None if self._obs is None else {
                "seed": self._episode_seed(),
                "actions": torch.stack(self._episode_actions) if self._episode_actions else torch.zeros(0, self.act_dim),
                "obs": self._obs,
                "ou": self._ou,
                "return": self._ep_return,
                "length": self._ep_length,
            },
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore params, targets, optimizer states, generator, replay, counters and the current episode."""
        for name in ("actor_params", "critic_params", "target_actor_params", "target_critic_params",
                     "actor_opt_state", "critic_opt_state"):
            setattr(self, name, restore_like(state[name], getattr(self, name), name))
        self.generator.set_state(state["generator"])
        if state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
        self.steps = int(state["steps"])
        self.critic_updates = int(state["critic_updates"])
        self.episodes_done = int(state["episodes_done"])
        self.last_losses = {k: torch.tensor(v) for k, v in state["last_losses"].items()}
        self._restore_episode(state["episode"])

    def _restore_episode(self, saved: dict[str, Any] | None) -> None:
        """Rebuild the current episode: reset with its seed, replay its actions, check the obs."""
        self._obs = None
        if saved is None:
            return
        if int(saved["seed"]) != self._episode_seed():
            raise ValueError(f"checkpoint's episode seed {saved['seed']} does not follow from its {self.episodes_done} episodes")
        self._reset()
        for action in saved["actions"]:
            obs, *_ = self.env.step(action.numpy())
            self._obs = self._to_obs(obs)
        if not torch.equal(self._obs.cpu(), saved["obs"]):
            raise RuntimeError(
                "replaying the saved actions from the episode's reset seed did not reproduce the saved observation: "
                "the env is not a function of its seed and actions, so this run cannot be resumed exactly"
            )
        self._episode_actions = list(saved["actions"])
        self._ou = saved["ou"].to(self.device)
        self._ep_return, self._ep_length = float(saved["return"]), int(saved["length"])

    def close(self) -> None:
        """Close the env and the TensorBoard writer."""
        self.env.close()
        super().close()
