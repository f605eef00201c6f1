"""Rainbow (Hessel et al. 2018) over a gymnasium vector env: the thin stateful runner.

The six parts, each switchable in :class:`RainbowConfig` for ablations:

- ``double``: the bootstrap action is chosen by the online net, evaluated by the target net;
- ``prioritized``: proportional prioritised replay by the KL loss, ``alpha = 0.5``, ``beta``
  annealed linearly from ``beta0`` to 1 over training, new transitions at max priority;
- ``dueling``: value and advantage streams combined per atom;
- ``n_step``: n-step returns that stop at episode ends (``n_step=1`` turns it off);
- ``distributional``: C51 on ``num_atoms`` fixed atoms in ``[v_min, v_max]`` (off: a scalar
  Q-head with the Huber TD loss, prioritised by ``|td|``);
- ``noisy``: factorised noisy linear layers; with noise on, actions are greedy (no ε-greedy,
  as in the paper); with it off, ε-greedy with a linear decay.

Noise is sampled from the runner's ``torch.Generator`` and passed to the pure functions: fresh
noise for every acting step, and per update independent noise for the online net and the
target net. The loss itself is :func:`functional_metarl.rl.rainbow_loss`, a pure function of
params and data.

Episodes and exact resume: every episode of every env starts from a *seeded* reset (the
``k``-th episode started, counted over all envs in order, gets :func:`episode_seed` ``(seed, k)``),
and the runner records the actions taken since. A checkpoint holds those seeds and actions, so a
resumed run rebuilds each env's current episode by resetting it with its seed and replaying its
actions (at most one episode per env), checks that the replayed observations equal the saved
ones, and continues exactly as an unbroken run would. This needs envs whose episode is a
function of the reset seed and the actions (true of gymnasium's classic-control, Box2D, MuJoCo
and ALE envs); an env that is not raises a ``RuntimeError`` on resume instead of drifting.
See ``docs/resume.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.func import grad_and_value
from tqdm.auto import tqdm

from ..nn import rainbow_cnn, rainbow_mlp
from ..optim import AdamState, adam, apply_updates
from ..rl import q_values, rainbow_loss
from ..tree import Params, tree_map, tree_norm, tree_scale
from .checkpoint import atomic_save, atomic_write_json, read_checkpoint, resolve_device
from .scalars import ScalarLogger
from .replay import NStepAggregator, PrioritizedReplay, UniformReplay

__all__ = ["RainbowConfig", "RainbowTrainer", "RAINBOW_CHECKPOINT", "episode_seed"]

RAINBOW_CHECKPOINT = "rainbow_checkpoint.pt"


@dataclass
class RainbowConfig:
    """Rainbow settings. Defaults are tuned for CartPole-v1 on a CPU; the Atari example sets
    the paper's / Data-efficient Rainbow's values."""

    env_id: str = "CartPole-v1"
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    num_envs: int = 1
    total_steps: int = 30_000  # env steps, summed over the vector env
    # the six components
    double: bool = True
    prioritized: bool = True
    dueling: bool = True
    n_step: int = 3
    distributional: bool = True
    noisy: bool = True
    # distributional
    num_atoms: int = 51
    v_min: float = 0.0
    v_max: float = 200.0
    # network
    network: str = "mlp"  # "mlp", "nature_cnn" or "data_efficient_cnn"
    hidden: tuple[int, ...] = (128,)
    head_hidden: int = 128
    sigma0: float = 0.5
    # learning
    gamma: float = 0.99
    lr: float = 1e-3
    adam_eps: float = 1.5e-4
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_every: int = 1  # env steps per gradient update
    target_update: int = 500  # env steps between hard target copies
    max_grad_norm: float | None = 10.0
    alpha: float = 0.5
    beta0: float = 0.4
    priority_eps: float = 1e-6
    # exploration when noisy is off
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_decay_steps: int = 10_000
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    eval_every: int = 0  # env steps between greedy evaluations (0: none during training)
    eval_episodes: int = 10

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        self.env_kwargs = dict(self.env_kwargs)
        for name in ("num_envs", "total_steps", "n_step", "num_atoms", "head_hidden", "batch_size", "buffer_size",
                     "learning_starts", "train_every", "target_update", "eps_decay_steps", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an int >= 0, got {self.eval_every!r}")
        if isinstance(self.eval_episodes, bool) or not isinstance(self.eval_episodes, int) or self.eval_episodes <= 0:
            raise ValueError(f"eval_episodes must be a positive int, got {self.eval_episodes!r}")
        for name in ("double", "prioritized", "dueling", "distributional", "noisy"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.distributional and self.num_atoms < 2:
            raise ValueError(f"distributional needs num_atoms >= 2, got {self.num_atoms}")
        if not (math.isfinite(self.v_min) and math.isfinite(self.v_max) and self.v_min < self.v_max):
            raise ValueError(f"need finite v_min < v_max, got {self.v_min} and {self.v_max}")
        if self.n_step > self.buffer_size:
            raise ValueError(f"n_step ({self.n_step}) must not exceed buffer_size ({self.buffer_size})")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        for name in ("gamma", "beta0", "eps_start", "eps_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("lr", "adam_eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {self.max_grad_norm!r}")
        if self.network not in ("mlp", "nature_cnn", "data_efficient_cnn"):
            raise ValueError(f"network must be 'mlp', 'nature_cnn' or 'data_efficient_cnn', got {self.network!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (stored in checkpoints and metrics.json)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


# ---------------------------------------------------------------------- runner
def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of the ``episode``-th episode (0-based, counted over all envs) of a run
    with ``seed``: distinct for every pair, so runs with nearby seeds do not share episodes."""
    return int(np.random.SeedSequence([seed % 2**63, episode]).generate_state(1)[0])


def make_vector_env(config: RainbowConfig, seed_offset: int = 0):
    """A sync gymnasium vector env with same-step auto-reset (final obs in ``info``)."""
    import gymnasium as gym

    return gym.make_vec(
        config.env_id,
        num_envs=config.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **config.env_kwargs,
    )


class RainbowTrainer:
    """Trains Rainbow on ``config.env_id`` (a discrete-action gymnasium env).

    Args:
        config: settings.
        output_dir: where ``rainbow_checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing written).
        env_fn: ``config -> gymnasium.vector.VectorEnv`` (default :func:`make_vector_env`); it
            must use same-step auto-reset so that ``info["final_obs"]`` holds final observations.

    Resuming (``load_checkpoint``) is exact: it restores params, target params, the Adam state,
    the generator, the replay buffer with its priorities, the pending n-step steps, the counters
    and logs, and rebuilds every env's current episode from its reset seed and the actions taken
    since (see the module docstring). ``env_fn``'s vector env must accept
    ``reset(seed=[...], options={"reset_mask": mask})`` (gymnasium >= 1.0 vector envs do).
    """

    def __init__(self, config: RainbowConfig, output_dir: str | Path | None = None, env_fn: Callable | None = None):
        self.config = cfg = config
        self.device = resolve_device(cfg.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._env_fn = env_fn or make_vector_env
        self.envs = self._env_fn(cfg)
        space = self.envs.single_action_space
        if not hasattr(space, "n"):
            raise ValueError(f"Rainbow needs a discrete action space, got {space}")
        self.num_actions = int(space.n)
        self.obs_shape = tuple(self.envs.single_observation_space.shape)
        num_atoms = cfg.num_atoms if cfg.distributional else 1
        if cfg.network == "mlp":
            if len(self.obs_shape) != 1:
                raise ValueError(f"network='mlp' needs flat observations, got shape {self.obs_shape}")
            self.net = rainbow_mlp(self.obs_shape[0], self.num_actions, num_atoms, cfg.hidden, cfg.head_hidden,
                                   cfg.dueling, cfg.noisy, cfg.sigma0)
        else:
            arch = "nature" if cfg.network == "nature_cnn" else "data_efficient"
            self.net = rainbow_cnn(self.obs_shape, self.num_actions, num_atoms, None, cfg.dueling, cfg.noisy, cfg.sigma0, arch)
        self.atoms = (
            torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, device=self.device) if cfg.distributional else None
        )
        self.params: Params = self.net.init(cfg.seed, device=self.device)
        self.target_params: Params = tree_map(torch.clone, self.params)
        self.opt = adam(cfg.lr, eps=cfg.adam_eps)
        self.opt_state: AdamState = self.opt.init(self.params)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        if cfg.prioritized:
            self.buffer: UniformReplay = PrioritizedReplay(cfg.buffer_size, cfg.alpha, cfg.priority_eps, self.device, self.num_actions)
        else:
            self.buffer = UniformReplay(cfg.buffer_size, self.device, self.num_actions)
        self.nstep = NStepAggregator(cfg.n_step, cfg.gamma, cfg.num_envs)
        self.step = 0
        self.updates = 0
        self.history: list[dict[str, float]] = []  # one row per finished episode
        self.evaluations: list[dict[str, float]] = []  # one row per periodic evaluation
        self.losses: deque[float] = deque(maxlen=100)
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)
        self._obs = None
        self._ep_return = np.zeros(cfg.num_envs)
        self._ep_length = np.zeros(cfg.num_envs, dtype=np.int64)
        # The env stream: env i's current episode began with a reset seeded _episode_seeds[i]
        # and has taken the actions _episode_actions[i] since; _episodes_started counts the
        # seeded resets of all envs (it numbers the next episode for episode_seed).
        self._episodes_started = 0
        self._episode_seeds: list[int] = [0] * cfg.num_envs
        self._episode_actions: list[list[int]] = [[] for _ in range(cfg.num_envs)]
        self._since_update = 0  # env steps since the last gradient update (train_every)
        loss = partial(rainbow_loss, net=self.net, atoms=self.atoms, gamma=cfg.gamma, double=cfg.double)
        self._grad_fn = grad_and_value(loss, has_aux=True)

    # ------------------------------------------------------------------ acting
    def epsilon(self) -> float:
        """ε for ε-greedy: 0 when noisy nets explore, else a linear decay."""
        cfg = self.config
        if cfg.noisy:
            return 0.0
        frac = min(1.0, self.step / cfg.eps_decay_steps)
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    def beta(self) -> float:
        """The importance-sampling exponent now: linear from ``beta0`` to 1 over ``total_steps``."""
        cfg = self.config
        return min(1.0, cfg.beta0 + (1.0 - cfg.beta0) * self.step / cfg.total_steps)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, params: Params | None = None, noise: dict | None = None, epsilon: float = 0.0) -> torch.Tensor:
        """Greedy actions ``[N]`` for ``obs [N, *obs_shape]``, ε-greedy when ``epsilon > 0``."""
        q = q_values(self.params if params is None else params, obs, self.net, atoms=self.atoms, noise=noise)
        greedy = torch.argmax(q, dim=-1)
        if epsilon <= 0.0:
            return greedy
        n = obs.shape[0]
        explore = torch.rand(n, generator=self.generator, device=self.generator.device).to(self.device) < epsilon
        random = torch.randint(self.num_actions, (n,), generator=self.generator, device=self.generator.device).to(self.device)
        return torch.where(explore, random, greedy)

    def _new_episode_seeds(self, mask: np.ndarray) -> list[int | None]:
        """Seeds for the envs in ``mask`` (None elsewhere), recorded as their episodes' seeds."""
        seeds: list[int | None] = [None] * self.config.num_envs
        for e in np.flatnonzero(mask):
            seeds[e] = self._episode_seeds[e] = episode_seed(self.config.seed, self._episodes_started)
            self._episode_actions[e] = []
            self._episodes_started += 1
        return seeds

    def _reset_envs(self) -> None:
        obs, _ = self.envs.reset(seed=self._new_episode_seeds(np.ones(self.config.num_envs, dtype=bool)))
        self._obs = torch.as_tensor(obs, device=self.device)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self.nstep.reset()

    def env_step(self) -> list[dict[str, float]]:
        """One vector-env step: act, store n-step transitions; returns finished episodes."""
        cfg = self.config
        if self._obs is None:
            self._reset_envs()
        noise = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        action = self.act(self._obs, noise=noise, epsilon=self.epsilon())
        obs, reward, terminated, truncated, info = self.envs.step(action.cpu().numpy())
        if not np.isfinite(reward).all():
            raise FloatingPointError(f"the environment returned non-finite rewards {reward}")
        ended = np.logical_or(terminated, truncated)
        next_obs = np.array(obs, copy=True)
        if ended.any():
            for e in np.flatnonzero(ended):
                next_obs[e] = info["final_obs"][e]
        out = self.nstep.push(
            self._obs.cpu(), action.cpu(), torch.as_tensor(reward, dtype=torch.float32),
            torch.as_tensor(next_obs), torch.as_tensor(terminated), torch.as_tensor(truncated),
        )
        if out is not None:
            self.buffer.add(**out)
        for e, a in enumerate(action.tolist()):
            self._episode_actions[e].append(int(a))
        if ended.any():
            # The vector env auto-reset these envs without a seed; reset them again, seeded, so
            # that every episode is a function of its seed and its actions (exact resume).
            obs, _ = self.envs.reset(seed=self._new_episode_seeds(ended), options={"reset_mask": ended})
        self._obs = torch.as_tensor(obs, device=self.device)
        self._ep_return += reward
        self._ep_length += 1
        self.step += cfg.num_envs
        finished = []
        for e in np.flatnonzero(ended):
            finished.append({"step": self.step, "return": float(self._ep_return[e]), "length": int(self._ep_length[e])})
            self._ep_return[e] = 0.0
            self._ep_length[e] = 0
        self.history.extend(finished)
        return finished

    # ------------------------------------------------------------------ learning
    def update(self) -> float:
        """One gradient step on a replayed batch; returns the loss."""
        cfg = self.config
        if cfg.prioritized:
            batch, slots, weights = self.buffer.sample(cfg.batch_size, self.generator, beta=self.beta())
        else:
            batch = self.buffer.sample(cfg.batch_size, self.generator)
            weights = torch.ones(cfg.batch_size, device=self.device)
        noise_online = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        noise_target = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        grads, (loss, priorities) = self._grad_fn(self.params, self.target_params, batch, weights, noise_online, noise_target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite Rainbow loss {float(loss)} at step {self.step}")
        if cfg.max_grad_norm is not None:
            norm = tree_norm(grads)
            grads = tree_scale(grads, torch.clamp(cfg.max_grad_norm / (norm + 1e-6), max=1.0))
        updates, self.opt_state = self.opt.update(grads, self.opt_state, self.params)
        self.params = apply_updates(self.params, updates)
        if cfg.prioritized:
            self.buffer.update_priorities(slots, priorities)
        self.updates += 1
        return float(loss)

    def train(self, progress: bool = True) -> list[dict[str, float]]:
        """Run until ``config.total_steps`` env steps; returns the finished-episode history."""
        cfg = self.config
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not progress, desc="env steps")
        # Each schedule fires when the step count crosses a multiple of its period; the next
        # one is recomputed from the step count alone, so a resumed run keeps the same schedule.
        after = lambda period: (self.step // period + 1) * period  # noqa: E731
        next_log, next_ckpt, next_target = after(cfg.log_every), after(cfg.checkpoint_every), after(cfg.target_update)
        next_eval = after(cfg.eval_every) if cfg.eval_every else None
        try:
            while self.step < cfg.total_steps:
                self.env_step()
                self._since_update += cfg.num_envs
                bar.update(cfg.num_envs)
                if self.step >= cfg.learning_starts and len(self.buffer) >= cfg.batch_size:
                    while self._since_update >= cfg.train_every:
                        self.losses.append(self.update())
                        self._since_update -= cfg.train_every
                else:
                    self._since_update = 0
                if self.step >= next_target:
                    self.target_params = tree_map(torch.clone, self.params)
                    next_target = after(cfg.target_update)
                if self.step >= next_log:
                    metrics = self.metrics()
                    self._log(metrics)
                    bar.set_postfix(ret100=f"{metrics['return_mean100']:.1f}", loss=f"{metrics['loss']:.3f}")
                    next_log = after(cfg.log_every)
                if next_eval is not None and self.step >= next_eval:
                    row = {"step": self.step, "eval_return": self.evaluate(cfg.eval_episodes, seed=cfg.seed + 20_000 + self.step)}
                    self.evaluations.append(row)
                    self._log(row)
                    bar.write(f"step {self.step}: greedy eval return {row['eval_return']:.1f}")
                    next_eval = after(cfg.eval_every)
                if self.step >= next_ckpt:
                    self.save_checkpoint()
                    next_ckpt = after(cfg.checkpoint_every)
            self.save_checkpoint()
        finally:
            bar.close()
            self._logger.flush()
        return self.history

    def metrics(self) -> dict[str, float]:
        """A summary for logging: step, episodes, mean return of the last 100, mean recent loss, ε, β, updates."""
        recent = [h["return"] for h in self.history[-100:]]
        return {
            "step": self.step,
            "episodes": len(self.history),
            "return_mean100": float(np.mean(recent)) if recent else float("nan"),
            "loss": float(np.mean(self.losses)) if self.losses else float("nan"),
            "epsilon": self.epsilon(),
            "beta": self.beta(),
            "updates": self.updates,
        }

    def _log(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "step" and math.isfinite(value):
                self._logger.scalar(f"{'eval' if key.startswith('eval') else 'train'}/{key}", value, metrics["step"])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, num_episodes: int = 10, seed: int | None = None, noisy: bool = False) -> float:
        """Mean return of ``num_episodes`` greedy episodes on a fresh one-env copy of the
        training env (built by the same ``env_fn``, with its own seed).

        ``noisy=False`` acts with the mean network (noise off); ``True`` samples fresh noise per step.
        """
        if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes <= 0:
            raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
        env = self._env_fn(dataclasses.replace(self.config, num_envs=1))
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 10_000 if seed is None else seed)
        base = int(torch.randint(2**31 - 1, (1,), generator=gen, device=gen.device))
        returns = []
        try:
            for i in range(num_episodes):
                obs, _ = env.reset(seed=base + i)
                total, done = 0.0, False
                while not done:
                    noise = self.net.sample_noise(gen, self.device) if (noisy and self.config.noisy) else None
                    a = self.act(torch.as_tensor(obs, device=self.device), noise=noise)
                    obs, r, term, trunc, _ = env.step(a.cpu().numpy())
                    total += float(r[0])
                    done = bool(term[0] or trunc[0])
                returns.append(total)
        finally:
            env.close()
        return float(np.mean(returns))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run, env stream included (see docs/resume.md)."""
        cpu = lambda t: {k: v.detach().cpu() for k, v in t.items()}  # noqa: E731
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "updates": self.updates,
            "params": cpu(self.params),
            "target_params": cpu(self.target_params),
            "opt_state": {"count": self.opt_state.count.cpu(), "mu": cpu(self.opt_state.mu), "nu": cpu(self.opt_state.nu)},
            "generator_state": self.generator.get_state(),
            "history": self.history,
            "evaluations": self.evaluations,
            "losses": list(self.losses),
            "since_update": self._since_update,
            "buffer": self.buffer.state_dict(),
            "nstep": self.nstep.state_dict(),
            "envs": self._env_stream_state(),
        }

    def _env_stream_state(self) -> dict[str, Any] | None:
        """What rebuilds the envs' current episodes: seeds, actions since, the current
        observations (to check the rebuild) and the running episode returns and lengths."""
        if self._obs is None:
            return None
        return {
            "episodes_started": self._episodes_started,
            "seeds": list(self._episode_seeds),
            "actions": [torch.tensor(a, dtype=torch.int64) for a in self._episode_actions],
            "obs": self._obs.detach().cpu().clone(),
            "episode_return": torch.as_tensor(self._ep_return.copy()),
            "episode_length": torch.as_tensor(self._ep_length.copy()),
        }

    def _restore_envs(self, saved: dict[str, Any] | None) -> None:
        """Bring every env to its saved place in its episode: reset it with its episode's seed and
        replay the actions since. Envs are stepped together, so each env's replay is aligned to
        end at the last step; before its own reset an env takes action 0 (that part is wiped)."""
        n = self.config.num_envs
        self._obs = None
        if saved is None:
            return
        seeds, actions = [int(s) for s in saved["seeds"]], [a.tolist() for a in saved["actions"]]
        if len(seeds) != n or len(actions) != n:
            raise ValueError(f"checkpoint holds {len(seeds)} envs, this run has num_envs={n}")
        total = max(len(a) for a in actions)
        start = [total - len(a) for a in actions]  # step at which env e's episode begins
        obs, _ = self.envs.reset(seed=seeds)
        for t in range(total):
            step_actions = np.array([actions[e][t - start[e]] if t >= start[e] else 0 for e in range(n)])
            obs, *_ = self.envs.step(step_actions)
            begins = np.array([start[e] == t + 1 for e in range(n)])
            if begins.any():
                obs, _ = self.envs.reset(seed=[seeds[e] if begins[e] else None for e in range(n)],
                                         options={"reset_mask": begins})
        if not np.array_equal(np.asarray(obs), saved["obs"].numpy()):
            raise RuntimeError(
                "replaying the saved actions from the saved reset seeds did not reproduce the saved observations: "
                "the env is not a function of its seed and actions, so this run cannot be resumed exactly"
            )
        self._obs = torch.as_tensor(obs, device=self.device)
        self._episodes_started = int(saved["episodes_started"])
        self._episode_seeds, self._episode_actions = seeds, actions
        self._ep_return = saved["episode_return"].numpy().copy()
        self._ep_length = saved["episode_length"].numpy().copy()

    def save_checkpoint(self) -> Path | None:
        """Write ``state_dict()`` atomically to the output directory and refresh metrics.json; None without one."""
        if self.output_dir is None:
            return None
        path = atomic_save(self.state_dict(), self.output_dir / RAINBOW_CHECKPOINT)
        self.write_metrics()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Exact resume from ``path``: params, targets, Adam state, replay and priorities, n-step buffers, the env stream, generator and counters."""
        free = ("total_steps", "device", "checkpoint_every", "log_every", "eval_every", "eval_episodes")
        state = read_checkpoint(path, self.config.to_dict(), free)
        missing = [k for k in ("losses", "since_update", "nstep", "envs") if k not in state]
        if missing:
            raise ValueError(f"checkpoint {path} lacks {missing}: it was written before exact resume and cannot be resumed")
        self.net.check(state["params"])
        to_dev = lambda t: {k: v.to(self.device) for k, v in t.items()}  # noqa: E731
        self.params, self.target_params = to_dev(state["params"]), to_dev(state["target_params"])
        opt = state["opt_state"]
        self.opt_state = AdamState(opt["count"].to(self.device), to_dev(opt["mu"]), to_dev(opt["nu"]))
        self.generator.set_state(state["generator_state"])
        self.step, self.updates = int(state["step"]), int(state["updates"])
        self.history = list(state["history"])
        self.evaluations = list(state["evaluations"])
        self.losses = deque(state["losses"], maxlen=self.losses.maxlen)
        self._since_update = int(state["since_update"])
        self.buffer.load_state_dict(state["buffer"])
        self.nstep.load_state_dict(state["nstep"])
        self._restore_envs(state["envs"])

    def write_metrics(self, evaluation: dict[str, float] | None = None) -> None:
        """Write the run's settings, counters, history and evaluations to metrics.json."""
        if self.output_dir is None:
            return
        path = self.output_dir / "metrics.json"
        payload: dict[str, Any] = {
            "config": self.config.to_dict(), "summary": self.metrics(), "evaluations": self.evaluations, "episodes": self.history,
        }
        if evaluation is None and path.is_file():
            payload["eval"] = json.loads(path.read_text()).get("eval")
        elif evaluation is not None:
            payload["eval"] = evaluation
        atomic_write_json(payload, path)

    def close(self) -> None:
        """Close the envs and the TensorBoard writer."""
        self.envs.close()
