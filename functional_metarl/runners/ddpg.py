"""DDPG / TD3 runner: the stateful shell around the pure math in ``rl.actor_critic``.

It owns the gymnasium env, a replay buffer, the device, the ``torch.Generator`` that draws
every random number (warm-up actions, exploration noise, replay indices, TD3 smoothing noise),
the TensorBoard / ``metrics.json`` logs and atomic checkpoints with resume. Each update is:
targets (pure) -> critic gradient -> Adam (out of place) -> every ``policy_delay``-th time:
actor gradient, Adam, Polyak-averaged targets (pure). The gradients are ``torch.func``'s under
``torch.compile`` and ``torch.autograd.grad``'s eagerly (the same backward, bit-equal, without
functorch's per-call wrapping).

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
- Every episode resets its env with ``seed + episode_index`` (episodes numbered in the order
  they start, over all envs), so runs and resumes are repeatable.
- One iteration of the runner is one step of all ``num_envs`` envs (``num_envs`` env steps;
  with the default ``num_envs=1``, ``iterations`` is the number of env steps). ``num_envs > 1``
  steps a gymnasium sync vector env (auto-reset off: the trainer resets, seeded, the envs whose
  episode ended, at the start of the next iteration) and acts for all envs with one forward pass.
- Updates per iteration: ``updates_per_step`` per env step (default 1: one update per env step,
  so ``num_envs`` per iteration), or exactly ``updates_per_iteration`` when that is set
  (CleanRL's scripts with ``num_envs > 1`` make one update per iteration).
- ``policy_delay``: the actor and the targets are updated after every ``policy_delay``-th critic
  update. Unset (``None``) it is 2 for TD3 and 1 for DDPG (the papers); set, it applies to both
  (CleanRL's DDPG updates its actor every 2nd step: ``algo="ddpg", policy_delay=2``).

Speed (issue 27), stated:

- The whole update — gather the batch from the tensor replay at the drawn indices, targets,
  critic loss and gradient, Adam, and on schedule the actor gradient, Adam and Polyak targets —
  is one pure function of ``(state, storage, indices, smoothing noise, actor_step)``
  (:func:`make_update`). The runner draws the indices and the noise from its generator in the
  order the earlier per-leaf code drew them, so ``compile=False`` (the default, the reference)
  gives bit for bit the numbers of the code before this work (a test holds it to recorded params).
- ``compile=True`` runs that function under ``torch.compile`` (two graphs: with and without the
  actor step). The first calls compile (tens of seconds on a CPU); results match eager to float
  rounding (a test: 1e-4 relative after a few updates), not bit for bit.
- Adam, the parameter add and the Polyak mix use ``torch._foreach_*`` ops (one call per op over
  all leaves, bit-equal to the per-leaf ops); the nets run a pure forward instead of
  ``functional_call``.
- No host sync in the hot loop: losses stay tensors (``last_losses``) and become floats only in
  an episode-end record (the logging interval); replay inputs are validated on the host before
  they are copied to the device.
- The replay is this module's :class:`TensorReplay` rather than ``runners.replay.UniformReplay``:
  that one checks discrete actions and carries n-step fields DDPG/TD3 do not use, while this one
  checks that continuous actions are floats inside the action box.
- Resume is exact (with ``save_replay=True``): a checkpoint holds, besides params, targets,
  optimizer states, the generator, the replay and the counters, every env's current episode as
  its reset seed and the actions taken since, plus the OU noise state, the running return /
  length and the last losses. ``load_checkpoint`` resets the envs with those seeds, replays the
  actions and checks that they arrive at the saved observations (an env that is not a function
  of its seed and actions raises ``RuntimeError`` instead of drifting).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import numpy as np
import torch

from .. import checks
from ..nn import Functional
from ..nn.actor_critic_nets import deterministic_actor, q_critic
from ..optim import AdamState, GradientTransformation, adam, apply_updates, grad_and_value
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

__all__ = ["DDPGConfig", "DDPGTrainer", "DDPGState", "TensorReplay", "make_update"]


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
        self._host_bounds: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def _check(self, name: str, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
        """``value`` checked where it lies (the runner passes host tensors: no device sync) and
        converted to the buffer's dtype, still on its own device."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"replay.add: {name} must be a Tensor, got {type(value).__name__}")
        if not value.is_floating_point() and not (name == "terminated" and value.dtype == torch.bool):
            raise TypeError(f"replay.add: {name} must be a floating-point tensor, got {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(f"replay.add: {name} expected shape {list(shape)}, got {list(value.shape)}")
        if not torch.isfinite(value.float()).all():
            raise ValueError(f"replay.add: {name} contains non-finite values (nan or inf)")
        return value.to(dtype=self.dtype)

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
        low, high = self._bounds(new.action.device)
        if ((new.action < low) | (new.action > high)).any():
            raise ValueError(
                f"replay.add: action outside the action space [{self.action_low.tolist()}, {self.action_high.tolist()}]; "
                f"got min {new.action.min(0).values.tolist()}, max {new.action.max(0).values.tolist()}"
            )
        if ((new.terminated != 0) & (new.terminated != 1)).any():
            raise ValueError("replay.add: terminated must hold only 0 or 1")
        # Validation is done; only now write (the buffer's storage is runner-owned state).
        if self.position + b <= self.capacity:  # one contiguous slice: no index tensor
            for store, value in zip(self.storage, new):
                store[self.position: self.position + b] = value
        else:
            idx = (self.position + torch.arange(b, device=self.device)) % self.capacity
            for store, value in zip(self.storage, new):
                store[idx] = value.to(self.device)
        self.position = (self.position + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def _bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device == self.device:
            return self.action_low, self.action_high
        if device not in self._host_bounds:
            self._host_bounds[device] = (self.action_low.to(device), self.action_high.to(device))
        return self._host_bounds[device]

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

    ``iterations`` and ``checkpoint_every`` count iterations: one iteration steps all
    ``num_envs`` envs (with ``num_envs=1``, one env step). ``start_steps``, ``learning_starts``
    and ``buffer_size`` count env steps (transitions).
    Refused: settings under which the critic would never be updated (``batch_size >
    buffer_size``, ``batch_size > iterations * num_envs``, ``learning_starts >= iterations *
    num_envs``).

    CleanRL's ``ddpg_continuous_action.py`` / ``td3_continuous_action.py`` settings, as a config:
    ``DDPGConfig(algo="ddpg" or "td3", hidden=(256, 256), batch_size=256, start_steps=L,
    learning_starts=L, policy_delay=2, tau=0.005, exploration_sigma=0.1, actor_lr=3e-4,
    critic_lr=3e-4, gamma=0.99, buffer_size=1_000_000, final_init=None, num_envs=1)``
    (CleanRL: ``L = 25_000``; TD3 adds ``policy_noise=0.2, noise_clip=0.5``, our defaults).
    """

    iterations: int = 1_000_000  # iterations (x num_envs env steps)
    checkpoint_every: int = 10_000  # iterations
    algo: str = "td3"  # "ddpg" or "td3"
    env_id: str = "Pendulum-v1"
    start_steps: int = 10_000  # uniform random actions before this many env steps
    learning_starts: int | None = None  # first update after this many env steps (None: start_steps)
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
    policy_delay: int | None = None  # actor/target update every this many critic updates (None: TD3 2, DDPG 1)
    updates_per_step: int = 1  # updates per env step
    updates_per_iteration: int | None = None  # exact updates per iteration (None: updates_per_step * num_envs)
    num_envs: int = 1  # envs stepped per iteration (> 1: a gymnasium sync vector env)
    compile: bool = False  # run the update under torch.compile (eager is the reference)
    save_replay: bool = True  # include the replay buffer in checkpoints (exact resume)

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("save_replay", "compile")

    @property
    def first_update(self) -> int:
        """The env steps before the first update: ``learning_starts``, or ``start_steps`` when it is
        unset (kept unset, so that a changed ``start_steps`` moves it too)."""
        return self.start_steps if self.learning_starts is None else self.learning_starts

    @property
    def actor_delay(self) -> int:
        """Critic updates per actor / target update: ``policy_delay``, or 2 (TD3) / 1 (DDPG) when unset."""
        if self.policy_delay is not None:
            return self.policy_delay
        return 2 if self.algo == "td3" else 1

    @property
    def updates_each_iteration(self) -> int:
        """Gradient updates per iteration once learning has started."""
        if self.updates_per_iteration is not None:
            return self.updates_per_iteration
        return self.updates_per_step * self.num_envs

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden = tuple(self.hidden)
        checks.one_of(self.algo, "algo", ("ddpg", "td3"))
        checks.one_of(self.exploration, "exploration", ("gaussian", "ou"))
        checks.instance(self.env_id, "env_id", str)
        for name in ("batch_size", "buffer_size", "updates_per_step", "num_envs"):
            checks.positive_int(getattr(self, name), name)
        for name in ("policy_delay", "updates_per_iteration"):
            if getattr(self, name) is not None:
                checks.positive_int(getattr(self, name), name)
        if self.updates_per_iteration is not None and self.updates_per_step != 1:
            raise ValueError(f"set updates_per_step ({self.updates_per_step}) or updates_per_iteration "
                             f"({self.updates_per_iteration}), not both: updates_per_iteration replaces "
                             "updates_per_step * num_envs")
        checks.non_negative_int(self.start_steps, "start_steps")
        if self.learning_starts is not None:
            checks.non_negative_int(self.learning_starts, "learning_starts")
        for i, h in enumerate(self.hidden):
            checks.positive_int(h, f"hidden[{i}]")
        checks.int_in_range(self.critic_action_layer, "critic_action_layer", 0, len(self.hidden))
        if self.final_init is not None:
            checks.positive_number(self.final_init, "final_init")
        checks.flag(self.save_replay, "save_replay")
        checks.flag(self.compile, "compile")
        # Settings under which the critic would never be updated: refuse them instead of
        # finishing a run with critic_updates == 0.
        env_steps = self.iterations * self.num_envs
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        if self.batch_size > env_steps:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed iterations * num_envs ({env_steps} "
                             "env steps): the replay would never hold one batch")
        if self.first_update >= env_steps:
            raise ValueError(f"learning_starts ({self.first_update}) must be below iterations * num_envs ({env_steps} "
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


# ============================================================================ the update, pure
class DDPGState(NamedTuple):
    """What one update reads and returns: online and target params, both optimizer states."""

    actor: Params
    critic: Params
    target_actor: Params
    target_critic: Params
    actor_opt: AdamState
    critic_opt: AdamState


def make_update(
    actor: Functional, critic: Functional, actor_opt: GradientTransformation, critic_opt: GradientTransformation, *,
    twin: bool, gamma: float, tau: float, critic_l2: float = 0.0, policy_noise: float | torch.Tensor = 0.2,
    noise_clip: float | torch.Tensor = 0.5, action_low: torch.Tensor | None = None,
    action_high: torch.Tensor | None = None,
) -> Callable[..., tuple[DDPGState, torch.Tensor, torch.Tensor | None]]:
    """The whole DDPG / TD3 update as one pure function (it runs eagerly or under ``torch.compile``):

    ``update(state, storage, indices, eps, actor_step) -> (state, critic_loss, actor_loss or None)``

    - ``state``: a :class:`DDPGState`; ``storage``: the replay's :class:`TransitionBatch` of
      ``[capacity, ...]`` tensors; ``indices: [B]`` the drawn slots (the batch is gathered here);
    - ``eps: [B, act_dim]``: standard normals for TD3's target smoothing (scaled here by
      ``policy_noise``, which may be a ``[act_dim]`` tensor), ignored for DDPG (pass ``None``);
    - ``actor_step``: a Python bool: also take the actor step and move the Polyak targets.

    Targets (``ddpg_targets`` / ``td3_targets``), critic loss (+ ``0.5 * critic_l2 *
    ||theta||^2``) and its gradient, ``critic_opt``, then on ``actor_step`` the DPG actor
    gradient through the updated critic (the first twin for TD3), ``actor_opt`` and
    ``polyak_update`` of both targets. Nothing is written in place; the losses are detached
    0-d tensors (no host sync).
    """

    def critic_objective(params: Params, batch: TransitionBatch, targets: torch.Tensor) -> torch.Tensor:
        loss = (twin_critic_loss if twin else critic_loss)(params, batch, targets, critic)
        if critic_l2 > 0:
            loss = loss + 0.5 * critic_l2 * tree_dot(params, params)
        return loss

    def actor_objective(params: Params, critic_params: Params, obs: torch.Tensor) -> torch.Tensor:
        q1 = {k: v[0] for k, v in critic_params.items()} if twin else critic_params
        return dpg_actor_loss(params, q1, obs, actor, critic)

    # optim.grad_and_value: torch.autograd.grad eagerly (the recorded-params test holds it
    # bit-equal to torch.func, at less dispatch cost), torch.func under torch.compile.
    critic_grad = grad_and_value(critic_objective)
    actor_grad = grad_and_value(actor_objective)

    def update(state: DDPGState, storage: TransitionBatch, indices: torch.Tensor, eps: torch.Tensor | None,
               actor_step: bool) -> tuple[DDPGState, torch.Tensor, torch.Tensor | None]:
        batch = TransitionBatch(*(store[indices] for store in storage))
        if twin:
            targets = td3_targets(state.target_actor, state.target_critic, batch, eps * policy_noise, actor, critic,
                                  gamma=gamma, noise_clip=noise_clip, action_low=action_low, action_high=action_high)
        else:
            targets = ddpg_targets(state.target_actor, state.target_critic, batch, actor, critic, gamma=gamma)
        grads, closs = critic_grad(state.critic, batch, targets)
        updates, critic_opt_state = critic_opt.update(grads, state.critic_opt, state.critic)
        critic_params = apply_updates(state.critic, updates, foreach=True)
        if not actor_step:
            return state._replace(critic=critic_params, critic_opt=critic_opt_state), closs.detach(), None
        grads, aloss = actor_grad(state.actor, critic_params, batch.obs)
        updates, actor_opt_state = actor_opt.update(grads, state.actor_opt, state.actor)
        actor_params = apply_updates(state.actor, updates, foreach=True)
        new = DDPGState(
            actor=actor_params, critic=critic_params,
            target_actor=polyak_update(state.target_actor, actor_params, tau, foreach=True),
            target_critic=polyak_update(state.target_critic, critic_params, tau, foreach=True),
            actor_opt=actor_opt_state, critic_opt=critic_opt_state,
        )
        return new, closs.detach(), aloss.detach()

    return update


def _own_code(fn: Callable) -> Callable:
    """``fn`` with a copy of its code object (same closure, globals and defaults)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


# ============================================================================ envs
class _OneEnv:
    """One gymnasium env behind the batched interface of a vector env with auto-reset off
    (``reset(seed=[...], options={"reset_mask": ...})``, ``step(actions [1, act_dim])``), so that
    ``num_envs=1`` and ``num_envs > 1`` share one code path; the env sees the calls it always saw."""

    num_envs = 1

    def __init__(self, env: Any):
        self.env = env
        self.single_action_space = env.action_space
        self.single_observation_space = env.observation_space
        self.spec = getattr(env, "spec", None)
        self._obs: np.ndarray | None = None

    def reset(self, seed: list[int | None], options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed[0])
        self._obs = np.asarray(obs)[None]
        return self._obs, info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions[0])
        self._obs = np.asarray(obs)[None]
        return self._obs, np.array([reward], dtype=np.float64), np.array([terminated]), np.array([truncated]), info

    def close(self) -> None:
        self.env.close()


def _make_envs(config: DDPGConfig, env: Any) -> Any:
    import gymnasium as gym

    if env is None:
        if config.num_envs == 1:
            return _OneEnv(gym.make(config.env_id))
        return gym.make_vec(config.env_id, num_envs=config.num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})
    if isinstance(env, gym.vector.VectorEnv):
        if env.num_envs != config.num_envs:
            raise ValueError(f"env is a vector env of {env.num_envs} envs but num_envs={config.num_envs}")
        mode = env.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.DISABLED:
            raise ValueError(f"env: a vector env must have autoreset_mode=AutoresetMode.DISABLED (the trainer resets "
                             f"ended envs itself, seeded), got {mode}")
        return env
    if config.num_envs != 1:
        raise ValueError(f"env: num_envs={config.num_envs} needs a gymnasium vector env of that many envs "
                         f"(autoreset_mode DISABLED), got a single env {type(env).__name__}")
    return _OneEnv(env)


# ============================================================================ trainer
def _stack(trees: list[Params]) -> Params:
    return {k: torch.stack([t[k] for t in trees]) for k in trees[0]}


class DDPGTrainer(Runner):
    """Trains DDPG or TD3 on a gymnasium env with a ``Box`` action space. One iteration steps
    all ``num_envs`` envs and makes the updates due on it.

    Args:
        config: the settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing is written).
        env: a gymnasium env (``num_envs=1``) or a gymnasium vector env of ``num_envs`` envs with
            ``autoreset_mode=AutoresetMode.DISABLED``; default ``gymnasium.make(config.env_id)``
            (a sync vector env for ``num_envs > 1``). The trainer owns it.

    Metrics (a ``history`` row per iteration in which an episode ended): ``episode`` (finished
    episodes so far), ``step`` (env steps), ``return`` and ``length`` (with several envs: the
    mean over the episodes that ended, and ``episodes_ended``), and the last ``critic_loss`` /
    ``actor_loss`` once updates run (turned into floats there, the only host sync of the loop).
    """

    config_class = DDPGConfig
    log_prefix = "train"
    progress_metric = "return"

    def __init__(self, config: DDPGConfig, output_dir: str | Path | None = None, env: Any = None):
        import gymnasium as gym

        super().__init__(config, output_dir)
        cfg = config
        self.envs = _make_envs(cfg, env)
        space = self.envs.single_action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"DDPG/TD3 need a 1-D Box action space, got {space}")
        if len(self.envs.single_observation_space.shape) != 1:
            raise TypeError(f"expected a flat observation space, got shape {self.envs.single_observation_space.shape}")
        self.num_envs = cfg.num_envs
        self.obs_dim = int(self.envs.single_observation_space.shape[0])
        self.act_dim = int(space.shape[0])
        self.action_low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        self.half_range = (self.action_high - self.action_low) / 2

        self.actor = deterministic_actor(self.obs_dim, self.act_dim, space.low.tolist(), space.high.tolist(),
                                         cfg.hidden, "relu", cfg.final_init)
        self.critic = q_critic(self.obs_dim, self.act_dim, cfg.hidden, "relu", cfg.critic_action_layer, cfg.final_init)
        self.twin = cfg.algo == "td3"
        self.policy_delay = cfg.actor_delay
        actor_params: Params = self.actor.init(cfg.seed, device=self.device)
        if self.twin:
            critic_params = _stack([self.critic.init(cfg.seed + 1, self.device), self.critic.init(cfg.seed + 2, self.device)])
        else:
            critic_params = self.critic.init(cfg.seed + 1, device=self.device)
        # foreach Adam: bit-equal to the per-leaf reference (optim's docstring), one dispatch per op.
        self.actor_opt, self.critic_opt = adam(cfg.actor_lr, foreach=True), adam(cfg.critic_lr, foreach=True)
        self.state = DDPGState(
            actor=actor_params, critic=critic_params,
            target_actor=tree_map(torch.clone, actor_params), target_critic=tree_map(torch.clone, critic_params),
            actor_opt=self.actor_opt.init(actor_params), critic_opt=self.critic_opt.init(critic_params),
        )
        self.replay = TensorReplay(min(cfg.buffer_size, cfg.iterations * cfg.num_envs), self.obs_dim, self.act_dim,
                                   self.action_low, self.action_high, self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.update_fn = make_update(
            self.actor, self.critic, self.actor_opt, self.critic_opt, twin=self.twin, gamma=cfg.gamma, tau=cfg.tau,
            critic_l2=cfg.critic_l2, policy_noise=cfg.policy_noise * self.half_range,
            noise_clip=cfg.noise_clip * self.half_range, action_low=self.action_low, action_high=self.action_high)
        # A copy of the function's code object per trainer: dynamo caches compiled graphs per code
        # object and guards on the closure (nets, settings), so trainers built one after another
        # in a process (benchmarks, repeats) would otherwise recompile into one cache and, past its
        # recompile limit, fall back to eager without a word.
        self._update = torch.compile(_own_code(self.update_fn)) if cfg.compile else self.update_fn

        self.steps = 0  # env steps, summed over the envs
        self.critic_updates = 0
        self.episodes_done = 0
        self.last_losses: dict[str, torch.Tensor] = {}
        n = cfg.num_envs
        self._obs: torch.Tensor | None = None  # [N, obs_dim] current observations; None -> reset all first
        self._obs_host: torch.Tensor | None = None  # the same on the host
        self._needs_reset = np.ones(n, dtype=bool)  # envs whose episode ended (reset, seeded, at the next step)
        self._episodes_started = 0  # seeded resets so far: numbers the next episode (seed + number)
        self._episode_seeds = [0] * n
        self._episode_actions: list[list[torch.Tensor]] = [[] for _ in range(n)]  # actions since each reset
        self._ou = torch.zeros(n, self.act_dim, device=self.device)
        self._ep_return = np.zeros(n)
        self._ep_length = np.zeros(n, dtype=np.int64)

    # ----------------------------------------------------------------- params (views of the state)
    actor_params = property(lambda self: self.state.actor, lambda self, v: self._set(actor=v),
                            doc="The online actor's params.")
    critic_params = property(lambda self: self.state.critic, lambda self, v: self._set(critic=v),
                             doc="The online critic's params (TD3: the twins stacked on a leading axis of 2).")
    target_actor_params = property(lambda self: self.state.target_actor, lambda self, v: self._set(target_actor=v),
                                   doc="The target actor's params.")
    target_critic_params = property(lambda self: self.state.target_critic,
                                    lambda self, v: self._set(target_critic=v), doc="The target critic's params.")
    actor_opt_state = property(lambda self: self.state.actor_opt, lambda self, v: self._set(actor_opt=v),
                               doc="The actor's Adam state.")
    critic_opt_state = property(lambda self: self.state.critic_opt, lambda self, v: self._set(critic_opt=v),
                                doc="The critic's Adam state.")

    def _set(self, **fields: Any) -> None:
        self.state = self.state._replace(**fields)

    @property
    def env(self) -> Any:
        """The env: the gymnasium env itself with ``num_envs=1``, else the vector env."""
        return self.envs.env if isinstance(self.envs, _OneEnv) else self.envs

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy's action for ``obs: [obs_dim]`` or ``[N, obs_dim]`` (no exploration noise)."""
        with torch.no_grad():
            return self.actor.apply(self.state.actor, obs)

    def update(self) -> dict[str, torch.Tensor]:
        """One critic update (and, on schedule, one actor update plus Polyak-averaged targets);
        returns the losses as 0-d tensors (``actor_loss`` only when the actor was updated)."""
        cfg = self.config
        # The draws in the order the reference code made them: indices, then TD3's smoothing normals.
        idx = torch.randint(0, self.replay.size, (cfg.batch_size,), generator=self.generator, device=self.device)
        eps = (torch.randn((cfg.batch_size, self.act_dim), generator=self.generator, device=self.device)
               if self.twin else None)
        self.critic_updates += 1
        actor_step = is_policy_update_step(self.critic_updates, self.policy_delay)
        self.state, closs, aloss = self._update(self.state, self.replay.storage, idx, eps, actor_step)
        return {"critic_loss": closs} if aloss is None else {"critic_loss": closs, "actor_loss": aloss}

    # ----------------------------------------------------------------- acting
    def _to_obs(self, obs) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)

    def _set_obs(self, obs: Any) -> None:
        """The current observations ``[N, obs_dim]``, kept on the host (for the replay) and on the device (to act)."""
        if not isinstance(obs, torch.Tensor):
            obs = torch.tensor(np.asarray(obs), dtype=torch.float32)  # a copy: an env may reuse its array
        self._obs_host = obs
        self._obs = self._obs_host.to(self.device)

    def _reset_ended(self) -> None:
        """Reset, seeded, every env whose episode ended (all of them at the start)."""
        mask = self._needs_reset
        seeds: list[int | None] = [None] * self.num_envs
        for e in np.flatnonzero(mask):
            seeds[e] = self._episode_seeds[e] = self.config.seed + self._episodes_started
            self._episodes_started += 1
            self._episode_actions[e] = []
            self._ep_return[e], self._ep_length[e] = 0.0, 0
        obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": mask.copy()})
        self._ou[torch.as_tensor(mask, device=self.device)] = 0.0
        self._set_obs(obs)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``[N, act_dim]``: uniform before ``start_steps``, then the policy plus noise."""
        cfg = self.config
        shape = (self.num_envs, self.act_dim)
        if self.steps < cfg.start_steps:
            u = torch.rand(shape, generator=self.generator, device=self.device)
            return self.action_low + u * (self.action_high - self.action_low)
        eps = torch.randn(shape, generator=self.generator, device=self.device)
        if cfg.exploration == "ou":
            self._ou = ou_noise_step(self._ou, eps, cfg.ou_theta, cfg.exploration_sigma)
            noise = self._ou
        else:
            noise = cfg.exploration_sigma * eps
        # One env: act on the [obs_dim] vector, as the reference did (a [1, obs_dim] matrix may take
        # another BLAS path and round differently).
        mu = self.act(obs[0])[None] if self.num_envs == 1 else self.act(obs)
        # Clipping to the action space is part of acting in a bounded space, not of the learner.
        return torch.clamp(mu + noise * self.half_range, self.action_low, self.action_high)

    def env_step(self) -> dict[str, float] | None:
        """One step of every env (+ the updates due). Returns the record of the episodes that ended, if any."""
        cfg = self.config
        if self._obs is None or self._needs_reset.any():
            self._reset_ended()
        action = self._explore(self._obs)
        action_host = action.cpu()
        next_obs, reward, terminated, truncated, _ = self.envs.step(action_host.numpy())
        reward = np.asarray(reward, dtype=np.float64)
        if not np.isfinite(reward).all():
            raise FloatingPointError(f"the environment returned a non-finite reward {reward.tolist()} at step {self.steps}")
        for e in range(self.num_envs):
            self._episode_actions[e].append(action_host[e].clone())
        next_obs_host = torch.tensor(np.asarray(next_obs), dtype=torch.float32)  # a copy: an env may reuse its array
        self.replay.add(self._obs_host, action_host, torch.as_tensor(reward, dtype=torch.float32), next_obs_host,
                        torch.as_tensor(np.asarray(terminated), dtype=torch.float32))
        self._set_obs(next_obs_host)
        self.steps += self.num_envs
        self._ep_return += reward
        self._ep_length += 1
        if self.steps > cfg.first_update and len(self.replay) >= cfg.batch_size:
            for _ in range(cfg.updates_each_iteration):
                self.last_losses = self.update()
        ended = np.logical_or(terminated, truncated)
        if not ended.any():
            return None
        idx = np.flatnonzero(ended)
        self.episodes_done += len(idx)
        self._needs_reset = ended.copy()
        record = {"episode": self.episodes_done, "step": self.steps,
                  "return": float(self._ep_return[idx].mean()), "length": float(self._ep_length[idx].mean())}
        if self.num_envs > 1:
            record["episodes_ended"] = len(idx)
        record.update({k: float(v) for k, v in self.last_losses.items()})  # the logging interval's only sync
        return record

    # ----------------------------------------------------------------- training
    def run_iteration(self) -> dict[str, float]:
        """One step of every env (and the updates due); the record of the episodes that ended, else ``{}``."""
        record = self.env_step()
        return {} if record is None else {k: float(v) for k, v in record.items()}

    def mean_return(self, last: int = 10) -> float:
        """Mean return of the last ``last`` history rows with a return (one env: the last ``last``
        finished training episodes; several envs: each row is the mean of the episodes that ended
        together); nan if none."""
        returns = [row["return"] for row in self.history if "return" in row][-last:]
        return sum(returns) / len(returns) if returns else float("nan")

    def evaluate(self, episodes: int = 10, seed: int = 10_000) -> dict[str, float]:
        """The deterministic policy (no exploration noise) on ``episodes`` episodes of a fresh env
        copy (of the env's spec; without a spec, the training env itself, whose episode is then
        restarted with the same seed).

        Args:
            episodes: how many episodes; episode ``i`` resets with ``seed + i``.
            seed: the first reset seed.

        Returns:
            ``{"return": mean return over the episodes}``.
        """
        import gymnasium as gym

        checks.positive_int(episodes, "episodes")
        checks.int_in_range(seed, "seed")
        spec = self.envs.spec
        own = isinstance(self.envs, _OneEnv) and spec is None
        if own:
            env = self.envs.env
        else:
            env = gym.make(spec.id) if spec is not None else gym.make(self.config.env_id)
        total = 0.0
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(self.act(self._to_obs(obs)).cpu().numpy())
                total += float(reward)
                done = terminated or truncated
        if not own:
            env.close()
        elif self._obs is not None and not self._needs_reset[0]:
            self._restart_episodes()
        return {"return": total / episodes}

    def _restart_episodes(self) -> None:
        """Start the current episodes over with their own seeds (the env was used elsewhere)."""
        self._episodes_started -= int((~self._needs_reset).sum())
        self._obs = None
        self._needs_reset[:] = True

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run (see docs/resume.md). ``episode``: with one
        env its current episode (``None`` between episodes), with several a list of them."""
        episodes = [self._episode_state(e) for e in range(self.num_envs)]
        return {
            "steps": self.steps,
            "critic_updates": self.critic_updates,
            "episodes_done": self.episodes_done,
            "episodes_started": self._episodes_started,
            "actor_params": self.actor_params,
            "critic_params": self.critic_params,
            "target_actor_params": self.target_actor_params,
            "target_critic_params": self.target_critic_params,
            "actor_opt_state": self.actor_opt_state,
            "critic_opt_state": self.critic_opt_state,
            "generator": self.generator.get_state(),
            "replay": self.replay.state_dict() if self.config.save_replay else None,
            "last_losses": {k: float(v) for k, v in self.last_losses.items()},
            "episode": episodes[0] if self.num_envs == 1 else episodes,
        }

    def _episode_state(self, e: int) -> dict[str, Any] | None:
        if self._obs is None or self._needs_reset[e]:
            return None
        actions = self._episode_actions[e]
        return {
            "seed": self._episode_seeds[e],
            "actions": torch.stack(actions) if actions else torch.zeros(0, self.act_dim),
            "obs": self._obs[e],
            "ou": self._ou[e],
            "return": float(self._ep_return[e]),
            "length": int(self._ep_length[e]),
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore params, targets, optimizer states, generator, replay, counters and the current episodes."""
        if "episodes_started" not in state and self.config.algo == "ddpg" and self.config.policy_delay not in (None, 1):
            raise ValueError(
                f"this checkpoint was written before policy_delay applied to DDPG: its run updated the actor on every "
                f"critic update, but its config says policy_delay={self.config.policy_delay}; resume it with "
                "policy_delay=1")
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
        saved = state["episode"]
        episodes = [saved] if self.num_envs == 1 else list(saved)
        if len(episodes) != self.num_envs:
            raise ValueError(f"checkpoint holds {len(episodes)} envs, this run has num_envs={self.num_envs}")
        # Checkpoints from before num_envs held no count of seeded resets: with one env it is the
        # finished episodes, plus the one under way.
        started = state.get("episodes_started", self.episodes_done + (saved is not None))
        self._restore_episodes(episodes, int(started))

    def _restore_episodes(self, saved: list[dict[str, Any] | None], episodes_started: int) -> None:
        """Bring every env to its saved place in its episode: reset it with its episode's seed and
        replay the actions since. Envs are stepped together, so each env's replay is aligned to end
        at the last step; before its own reset an env takes its first action (that part is wiped
        by the reset); an env between episodes is reset at the next step."""
        n = self.num_envs
        self._obs = None
        self._needs_reset = np.ones(n, dtype=bool)
        self._episodes_started = episodes_started
        live = [e for e in range(n) if saved[e] is not None]
        if not live:
            return
        for e in live:
            if int(saved[e]["seed"]) < self.config.seed or int(saved[e]["seed"]) >= self.config.seed + episodes_started:
                raise ValueError(f"checkpoint's episode seed {saved[e]['seed']} does not follow from its "
                                 f"{episodes_started} seeded resets")
        actions = {e: saved[e]["actions"] for e in live}
        total = max(len(a) for a in actions.values())
        start = {e: total - len(actions[e]) for e in live}
        filler = torch.zeros(self.act_dim).numpy()
        # Every env is reset first (a vector env steps only after a full reset): the envs whose
        # replay starts now with their seeds, the others unseeded (reset again at their start).
        seeds: list[int | None] = [int(saved[e]["seed"]) if e in live and start[e] == 0 else None for e in range(n)]
        obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": np.ones(n, dtype=bool)})
        obs = np.array(obs, copy=True)
        for t in range(total):
            step_actions = np.stack([
                actions[e][t - start[e]].numpy() if e in live and t >= start[e]
                else (actions[e][0].numpy() if e in live else filler) for e in range(n)])
            obs, *_ = self.envs.step(step_actions.astype(np.float32))
            obs = np.array(obs, copy=True)
            begins = np.array([e in live and start[e] == t + 1 for e in range(n)])
            if begins.any():
                obs, _ = self.envs.reset(seed=[int(saved[e]["seed"]) if begins[e] else None for e in range(n)],
                                         options={"reset_mask": begins})
                obs = np.array(obs, copy=True)
        self._set_obs(obs)
        for e in live:
            if not torch.equal(self._obs_host[e], saved[e]["obs"].cpu()):
                raise RuntimeError(
                    "replaying the saved actions from the episode's reset seed did not reproduce the saved observation: "
                    "the env is not a function of its seed and actions, so this run cannot be resumed exactly"
                )
        for e in live:
            self._needs_reset[e] = False
            self._episode_seeds[e] = int(saved[e]["seed"])
            self._episode_actions[e] = list(saved[e]["actions"])
            self._ou[e] = saved[e]["ou"].to(self.device)
            self._ep_return[e], self._ep_length[e] = float(saved[e]["return"]), int(saved[e]["length"])

    def close(self) -> None:
        """Close the envs and the TensorBoard writer."""
        self.envs.close()
        super().close()
