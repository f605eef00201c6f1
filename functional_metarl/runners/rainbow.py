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

Gradients are clipped to global norm ``max_grad_norm`` by composing the optimizer,
``optim.chain(optim.clip_by_global_norm(max_grad_norm), optim.adam(lr, eps=adam_eps))``.

Speed (issue 27): the gradient step is one pure function (:func:`make_update`), run eagerly
(the reference) or, with ``compile=True``, under ``torch.compile``; the hot loop evaluates the
net without ``functional_call``, skips the per-call checks of data it made itself, and reads no
loss back until a summary is due. Stacked uint8 frames (Atari) go into a
:class:`~functional_metarl.runners.replay.FrameStackReplay` (each frame stored once) unless
``dedup_frames=False``. With every Rainbow part off, the config expresses DQN as CleanRL's
``dqn.py`` runs it (``train_every``, ``target_update``, ``huber_delta=None``; see
``docs/results/agents.md``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from .. import checks
from ..nn import rainbow_cnn, rainbow_mlp
from ..optim import GradientTransformation, adam, apply_updates, chain, clip_by_global_norm, grad_and_value
from ..rl import categorical_q_values, rainbow_loss
from ..tree import Params, tree_map
from .base import RunConfig, Runner, restore_like
from .replay import FrameStackReplay, NStepAggregator, PrioritizedReplay, UniformReplay

__all__ = ["RainbowConfig", "RainbowTrainer", "episode_seed", "make_vector_env", "make_update"]


@dataclass
class RainbowConfig(RunConfig):
    """Rainbow settings. Defaults are tuned for CartPole-v1 on a CPU; the Atari example sets
    the paper's / Data-efficient Rainbow's values.

    ``iterations`` counts vector-env steps (each is ``num_envs`` env steps); every other step
    count (``learning_starts``, ``train_every``, ``target_update``, ``eps_decay_steps``,
    ``log_every``, ``eval_every``) counts env steps summed over the envs. ``checkpoint_every``
    counts iterations. Refused: settings under which learning never starts
    (``learning_starts >= iterations * num_envs``, ``batch_size > buffer_size`` or a batch
    larger than the run's env steps).
    """

    iterations: int = 30_000  # vector-env steps
    checkpoint_every: int = 10_000  # iterations
    env_id: str = "CartPole-v1"
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    num_envs: int = 1
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
    train_every: int = 1  # env steps per gradient update (CleanRL's train_frequency)
    target_update: int = 500  # env steps between hard target copies (CleanRL's target_network_frequency, tau 1)
    huber_delta: float | None = 1.0  # scalar Q-head's TD loss: Huber threshold; None: 0.5 td^2
    max_grad_norm: float | None = 10.0
    alpha: float = 0.5
    beta0: float = 0.4
    priority_eps: float = 1e-6
    # exploration when noisy is off
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_decay_steps: int = 10_000
    # bookkeeping
    log_every: int = 1_000  # env steps between summary rows (return_mean100, loss, epsilon, beta, updates)
    eval_every: int = 0  # env steps between greedy evaluations (0: none during training)
    eval_episodes: int = 10
    # speed
    compile: bool = False  # run the update step (loss, grads, optimizer) under torch.compile
    dedup_frames: bool = True  # uint8 [K, H, W] observations (stacked frames): store each frame once (FrameStackReplay)
    frame_padding: str = "reset"  # how the env pads a reset stack (FrameStackObservation's padding_type): reset / zero

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("log_every", "eval_every", "eval_episodes", "compile")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden = tuple(self.hidden)
        checks.instance(self.env_id, "env_id", str)
        self.env_kwargs = dict(checks.instance(self.env_kwargs, "env_kwargs", dict))
        for name in ("num_envs", "n_step", "num_atoms", "head_hidden", "batch_size", "buffer_size", "learning_starts",
                     "train_every", "target_update", "eps_decay_steps", "log_every", "eval_episodes"):
            checks.positive_int(getattr(self, name), name)
        checks.non_negative_int(self.eval_every, "eval_every")
        for i, h in enumerate(self.hidden):
            checks.positive_int(h, f"hidden[{i}]")
        for name in ("double", "prioritized", "dueling", "distributional", "noisy", "compile", "dedup_frames"):
            checks.flag(getattr(self, name), name)
        if self.distributional and self.num_atoms < 2:
            raise ValueError(f"distributional needs num_atoms >= 2, got {self.num_atoms}")
        checks.number(self.v_min, "v_min")
        checks.number(self.v_max, "v_max")
        if not self.v_min < self.v_max:
            raise ValueError(f"need finite v_min < v_max, got {self.v_min} and {self.v_max}")
        for name in ("gamma", "beta0", "eps_start", "eps_end", "alpha"):
            checks.probability(getattr(self, name), name)
        for name in ("lr", "adam_eps", "sigma0", "priority_eps"):
            checks.positive_number(getattr(self, name), name)
        if self.max_grad_norm is not None:
            checks.positive_number(self.max_grad_norm, "max_grad_norm")
        if self.huber_delta is not None:
            checks.positive_number(self.huber_delta, "huber_delta")
        checks.one_of(self.network, "network", ("mlp", "nature_cnn", "data_efficient_cnn"))
        checks.one_of(self.frame_padding, "frame_padding", ("reset", "zero"))
        if self.n_step > self.buffer_size:
            raise ValueError(f"n_step ({self.n_step}) must not exceed buffer_size ({self.buffer_size})")
        # Settings under which no gradient step would ever run: refused instead of finishing with 0 updates.
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        env_steps = self.iterations * self.num_envs
        if self.learning_starts >= env_steps:
            raise ValueError(f"learning_starts ({self.learning_starts}) must be below iterations * num_envs "
                             f"({env_steps} env steps): no update would ever run")
        if self.batch_size > env_steps:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed iterations * num_envs ({env_steps} env "
                             "steps): the replay would never hold one batch")


# ---------------------------------------------------------------------- the update step
def make_update(grad_fn: Callable, opt: GradientTransformation) -> Callable:
    """The whole gradient step as one pure function (what ``compile=True`` hands to ``torch.compile``):

    ``step(params, target_params, opt_state, batch, weights [B], noise_online, noise_target)
    -> (params, opt_state, loss [], priorities [B])``

    ``grad_fn`` is ``grad_and_value(loss, has_aux=True)`` of a loss with
    :func:`~functional_metarl.rl.rainbow_loss`'s signature (returning ``(loss, priorities)``);
    ``opt`` the optimizer. Nothing is written in place and nothing is read back to the host, so
    the runner's hot loop never waits on it; the priorities go to the replay afterwards.
    """

    def step(params: Params, target_params: Params, opt_state: Any, batch: Any, weights: torch.Tensor,
             noise_online: dict | None, noise_target: dict | None) -> tuple[Params, Any, torch.Tensor, torch.Tensor]:
        grads, (loss, priorities) = grad_fn(params, target_params, batch, weights, noise_online, noise_target)
        updates, opt_state = opt.update(grads, opt_state, params)
        return apply_updates(params, updates, foreach=True), opt_state, loss, priorities

    return step


# ---------------------------------------------------------------------- runner
def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of the ``episode``-th episode (0-based, counted over all envs) of a run
    with ``seed``: distinct for every pair, so runs with nearby seeds do not share episodes."""
    return int(np.random.SeedSequence([seed % 2**63, episode]).generate_state(1)[0])


def make_vector_env(config: RainbowConfig, seed_offset: int = 0) -> "gymnasium.vector.SyncVectorEnv":
    """A sync gymnasium vector env with same-step auto-reset (final obs in ``info``)."""
    import gymnasium as gym

    return gym.make_vec(
        config.env_id,
        num_envs=config.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **config.env_kwargs,
    )


class RainbowTrainer(Runner):
    """Trains Rainbow on ``config.env_id`` (a discrete-action gymnasium env). One iteration is
    one vector-env step (``num_envs`` env steps) plus the gradient updates, target copy,
    summary and evaluation that fall due on it.

    Args:
        config: settings.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and TensorBoard events go
            (``None``: nothing written).
        env_fn: ``config -> gymnasium.vector.VectorEnv`` (default :func:`make_vector_env`); it
            must use same-step auto-reset so that ``info["final_obs"]`` holds final observations.

    Metrics of an iteration (its ``history`` row; none when nothing happened): ``step`` (env
    steps so far) with ``return`` / ``length`` (mean over the envs whose episode ended at this
    step; one env: that episode's) and ``episodes_ended``; every ``log_every`` env steps and at
    the last iteration also
    ``episodes``, ``return_mean100`` (once an episode ended), ``loss`` (mean of the last 100
    updates, once one ran), ``epsilon``, ``beta``, ``updates``; every ``eval_every`` env steps
    ``eval_return``.

    Resuming (``load_checkpoint``) is exact: it restores params, target params, the optimizer
    state, the generator, the replay buffer with its priorities, the pending n-step steps, the
    counters and logs, and rebuilds every env's current episode from its reset seed and the
    actions taken since (see the module docstring). ``env_fn``'s vector env must accept
    ``reset(seed=[...], options={"reset_mask": mask})`` (gymnasium >= 1.0 vector envs do).
    """

    config_class = RainbowConfig
    log_prefix = "rainbow"
    progress_metric = "return_mean100"

    def __init__(self, config: RainbowConfig, output_dir: str | Path | None = None, env_fn: Callable | None = None):
        super().__init__(config, output_dir)
        cfg = config
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
        # Adam on torch._foreach_* ops (bit-equal to the per-leaf reference); the clipping stays
        # per leaf (its foreach form rounds differently, and it is one norm per update)
        self.opt: GradientTransformation = adam(cfg.lr, eps=cfg.adam_eps, foreach=True)
        if cfg.max_grad_norm is not None:
            self.opt = chain(clip_by_global_norm(cfg.max_grad_norm), self.opt)
        self.opt_state: Any = self.opt.init(self.params)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        obs_dtype = getattr(self.envs.single_observation_space, "dtype", None)
        self.frame_replay = cfg.dedup_frames and len(self.obs_shape) == 3 and obs_dtype == np.uint8
        if self.frame_replay:  # stacked frames: each frame stored once (same batches as a buffer of stacks)
            self.buffer: UniformReplay | FrameStackReplay = FrameStackReplay(
                cfg.buffer_size, self.obs_shape, cfg.num_envs, cfg.prioritized, cfg.alpha, cfg.priority_eps,
                cfg.frame_padding, cfg.n_step, self.device, self.num_actions)
        elif cfg.prioritized:
            self.buffer = PrioritizedReplay(cfg.buffer_size, cfg.alpha, cfg.priority_eps, self.device, self.num_actions)
        else:
            self.buffer = UniformReplay(cfg.buffer_size, self.device, self.num_actions)
        self.nstep = NStepAggregator(cfg.n_step, cfg.gamma, cfg.num_envs)
        self.step = 0  # env steps, summed over the envs
        self.updates = 0
        self.episodes = 0  # finished episodes
        self.recent_returns: deque[float] = deque(maxlen=100)
        # the last 100 losses as 0-d tensors: read (and checked finite) only when a summary is due,
        # so the hot loop never waits on a loss value
        self.losses: deque[torch.Tensor] = deque(maxlen=100)
        self._obs_np: np.ndarray | None = None  # the envs' current observations, as the env gave them
        self._obs_tensor: torch.Tensor | None = None  # ... as a tensor on the device, made when first needed
        self._cpu_acting = self.device.type == "cpu" and self.generator.device.type == "cpu"
        self._ep_return = np.zeros(cfg.num_envs)
        self._ep_length = np.zeros(cfg.num_envs, dtype=np.int64)
        # The env stream: env i's current episode began with a reset seeded _episode_seeds[i]
        # and has taken the actions _episode_actions[i] since; _episodes_started counts the
        # seeded resets of all envs (it numbers the next episode for episode_seed).
        self._episodes_started = 0
        self._episode_seeds: list[int] = [0] * cfg.num_envs
        self._episode_actions: list[list[int]] = [[] for _ in range(cfg.num_envs)]
        self._since_update = 0  # env steps since the last gradient update (train_every)
        self._ones = torch.ones(cfg.batch_size, device=self.device)  # uniform replay's importance weights
        loss = partial(rainbow_loss, net=self.net, atoms=self.atoms, gamma=cfg.gamma, double=cfg.double,
                       huber_delta=cfg.huber_delta, checked=False)
        # optim.grad_and_value: torch.autograd.grad eagerly (about half torch.func's dispatch cost
        # on these small nets), torch.func under torch.compile.
        step = make_update(grad_and_value(loss, has_aux=True), self.opt)
        self._update_step = torch.compile(step) if cfg.compile else step

    # ------------------------------------------------------------------ acting
    def epsilon(self) -> float:
        """ε for ε-greedy: 0 when noisy nets explore, else a linear decay."""
        cfg = self.config
        if cfg.noisy:
            return 0.0
        frac = min(1.0, self.step / cfg.eps_decay_steps)
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    def beta(self) -> float:
        """The importance-sampling exponent now: linear from ``beta0`` to 1 over the run's env steps."""
        cfg = self.config
        return min(1.0, cfg.beta0 + (1.0 - cfg.beta0) * self.step / (cfg.iterations * cfg.num_envs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, params: Params | None = None, noise: dict | None = None, epsilon: float = 0.0) -> torch.Tensor:
        """Greedy actions ``[N]`` for ``obs [N, *obs_shape]``, ε-greedy when ``epsilon > 0``."""
        out = self.net.apply_unchecked(self.params if params is None else params, obs, noise)  # = q_values, unchecked
        q = out if self.atoms is None else categorical_q_values(out, self.atoms)
        greedy = torch.argmax(q, dim=-1)
        if epsilon <= 0.0:
            return greedy
        n = obs.shape[0]
        explore = torch.rand(n, generator=self.generator, device=self.generator.device).to(self.device) < epsilon
        random = torch.randint(self.num_actions, (n,), generator=self.generator, device=self.generator.device).to(self.device)
        return torch.where(explore, random, greedy)

    @property
    def _obs(self) -> torch.Tensor | None:
        """The envs' current observations ``[num_envs, *obs_shape]`` on the device (None before
        the first reset); converted from the env's array when first asked for after a step."""
        if self._obs_tensor is None and self._obs_np is not None:
            self._obs_tensor = torch.as_tensor(self._obs_np, device=self.device)
        return self._obs_tensor

    def _set_obs(self, obs: np.ndarray | None) -> None:
        self._obs_np, self._obs_tensor = obs, None

    def _explore_actions(self, noise: dict | None, epsilon: float) -> np.ndarray:
        """The actions ``[num_envs]`` (numpy int64) of :meth:`act` at the current observations
        with ``params=None``: the same draws from the generator, the same actions; but on a CPU
        the network is not evaluated when every env explores (early in an ε-greedy run, most
        steps) and the observations are not made a tensor then."""
        if epsilon <= 0.0 or not self._cpu_acting:
            return self.act(self._obs, noise=noise, epsilon=epsilon).cpu().numpy()
        n = self.config.num_envs
        explore = torch.rand(n, generator=self.generator) < epsilon
        random = torch.randint(self.num_actions, (n,), generator=self.generator)
        if bool(explore.all()):
            return random.numpy()
        with torch.no_grad():
            out = self.net.apply_unchecked(self.params, self._obs, noise)
            greedy = torch.argmax(out if self.atoms is None else categorical_q_values(out, self.atoms), dim=-1)
        return torch.where(explore, random, greedy).numpy()

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
        self._set_obs(obs)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self.nstep.reset()
        if self.frame_replay:
            self.buffer.begin(obs)

    def env_step(self) -> list[tuple[float, int]]:
        """One vector-env step: act, store n-step transitions; returns ``(return, length)`` of each episode that ended."""
        cfg = self.config
        if self._obs_np is None:
            self._reset_envs()
        noise = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        actions = self._explore_actions(noise, self.epsilon())
        obs, reward, terminated, truncated, info = self.envs.step(actions)
        if not np.isfinite(reward).all():
            raise FloatingPointError(f"the environment returned non-finite rewards {reward}")
        ended = np.logical_or(terminated, truncated)
        any_ended = bool(ended.any())
        next_obs = obs
        if any_ended:
            next_obs = np.array(obs, copy=True)
            for e in np.flatnonzero(ended):
                next_obs[e] = info["final_obs"][e]
        # The env step was checked above (rewards finite, actions ours, observations the env's), so
        # the n-step push and the replay write skip their per-call validation (same values stored).
        if self.frame_replay:
            # the stacks go in as frame ids: the current stacks' (each env's newest frame), and the
            # next stacks' (written now; the final observation where an episode ended)
            obs_ids = self.buffer.heads.clone()
            next_ids = self.buffer.extend(next_obs)
            out = self.nstep.push(obs_ids, torch.from_numpy(actions), torch.as_tensor(reward, dtype=torch.float32), next_ids,
                                  torch.as_tensor(terminated, dtype=torch.bool),
                                  torch.as_tensor(truncated, dtype=torch.bool), check=False)
            if out is not None:
                self.buffer.add(**out, check=False)
        elif cfg.n_step == 1 and len(self.buffer) > 0 and self.buffer.device.type == "cpu":
            # one-step transitions straight from the env's arrays (what the n-step push returns for n = 1)
            self.buffer.add(self._obs_np, actions, reward.astype(np.float32), next_obs, terminated.astype(np.float32),
                            None, check=False)
            out = None
        else:
            out = self.nstep.push(
                self._obs.cpu(), torch.from_numpy(actions), torch.as_tensor(reward, dtype=torch.float32),
                torch.as_tensor(next_obs), torch.as_tensor(terminated, dtype=torch.bool),
                torch.as_tensor(truncated, dtype=torch.bool), check=False,
            )
            if out is not None:
                self.buffer.add(**out, check=False)
        for e, a in enumerate(actions.tolist()):
            self._episode_actions[e].append(a)
        if any_ended:
            # The vector env auto-reset these envs without a seed; reset them again, seeded, so
            # that every episode is a function of its seed and its actions (exact resume).
            obs, _ = self.envs.reset(seed=self._new_episode_seeds(ended), options={"reset_mask": ended})
            if self.frame_replay:
                self.buffer.begin(obs, ended)
        self._set_obs(obs)
        self._ep_return += reward
        self._ep_length += 1
        self.step += cfg.num_envs
        finished = []
        if any_ended:
            for e in np.flatnonzero(ended):
                finished.append((float(self._ep_return[e]), int(self._ep_length[e])))
                self.recent_returns.append(float(self._ep_return[e]))
                self._ep_return[e] = 0.0
                self._ep_length[e] = 0
            self.episodes += len(finished)
        return finished

    # ------------------------------------------------------------------ learning
    def update(self) -> torch.Tensor:
        """One gradient step on a replayed batch; returns the loss (a 0-d tensor, not read here:
        its finiteness is checked when a summary is due)."""
        cfg = self.config
        if cfg.prioritized:
            batch, slots, weights = self.buffer.sample(cfg.batch_size, self.generator, beta=self.beta())
        else:  # buffer.sample without its argument checks (the config checked them): the same draw
            slots = torch.randint(len(self.buffer), (cfg.batch_size,), generator=self.generator, device=self.generator.device)
            batch = self.buffer.gather(slots, check=False)
            weights = self._ones
        noise_online = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        noise_target = self.net.sample_noise(self.generator, self.device) if cfg.noisy else None
        self.params, self.opt_state, loss, priorities = self._update_step(
            self.params, self.target_params, self.opt_state, batch, weights, noise_online, noise_target)
        if cfg.prioritized:
            self.buffer.update_priorities(slots, priorities)
        self.updates += 1
        return loss

    def run_iteration(self) -> dict[str, float]:
        """One vector-env step, then the updates, target copy, summary and evaluation due on it."""
        cfg = self.config
        before = self.step
        finished = self.env_step()
        self._since_update += cfg.num_envs
        if self.step >= cfg.learning_starts and len(self.buffer) >= cfg.batch_size:
            while self._since_update >= cfg.train_every:
                self.losses.append(self.update())
                self._since_update -= cfg.train_every
        else:
            self._since_update = 0
        # A schedule fires when the step count crosses a multiple of its period, so a resumed
        # run keeps the same schedule.
        step = self.step
        if step // cfg.target_update > before // cfg.target_update:
            self.target_params = tree_map(torch.clone, self.params)
        out: dict[str, float] = {}
        if finished:
            out.update(step=step, episodes_ended=len(finished),
                       **{"return": float(np.mean([f[0] for f in finished])),
                          "length": float(np.mean([f[1] for f in finished]))})
        if step // cfg.log_every > before // cfg.log_every or self.iteration + 1 == cfg.iterations:  # and at the end
            out.update(step=step, **self.summary())
        if cfg.eval_every and step // cfg.eval_every > before // cfg.eval_every:
            out.update(step=step, eval_return=self.evaluate(cfg.eval_episodes, seed=cfg.seed + 20_000 + step)["return"])
        return {k: float(v) for k, v in out.items()} if out else out

    def summary(self) -> dict[str, float]:
        """Finished episodes, mean return of the last 100 (once one ended), mean of the last 100
        losses (once an update ran), ε, β and the update count."""
        out = {"episodes": float(self.episodes)}
        if self.recent_returns:
            out["return_mean100"] = float(np.mean(self.recent_returns))
        if self.losses:
            losses = torch.stack([torch.as_tensor(x).detach().cpu().double() for x in self.losses])
            if not torch.isfinite(losses).all():
                raise FloatingPointError(f"non-finite Rainbow loss among the last {len(losses)} updates "
                                         f"(at step {self.step}): {losses.tolist()}")
            out["loss"] = float(losses.mean())
        out.update(epsilon=self.epsilon(), beta=self.beta(), updates=float(self.updates))
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, num_episodes: int = 10, seed: int | None = None, noisy: bool = False) -> dict[str, float]:
        """Greedy episodes on a fresh one-env copy of the training env (built by the same
        ``env_fn``, with its own seed).

        Args:
            num_episodes: how many episodes.
            seed: seeds the evaluation's generator (default ``config.seed + 10_000``).
            noisy: ``False`` acts with the mean network (noise off); ``True`` samples fresh noise per step.

        Returns:
            ``{"return": mean return, "return_std": its standard deviation over episodes}``.
        """
        checks.positive_int(num_episodes, "num_episodes")
        checks.flag(noisy, "noisy")
        if seed is not None:
            checks.int_in_range(seed, "seed")
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
        return {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}

    # ------------------------------------------------------------------ state
    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run, env stream included (see docs/resume.md)."""
        return {
            "step": self.step,
            "updates": self.updates,
            "episodes": self.episodes,
            "params": self.params,
            "target_params": self.target_params,
            "opt_state": self.opt_state,
            "generator": self.generator.get_state(),
            "recent_returns": list(self.recent_returns),
            "losses": [float(x) for x in self.losses],
            "since_update": self._since_update,
            "buffer": self.buffer.state_dict(),
            "nstep": self.nstep.state_dict(),
            "envs": self._env_stream_state(),
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Exact resume: params, targets, optimizer state, replay and priorities, n-step buffers,
        the env stream, generator and counters."""
        self.params = restore_like(state["params"], self.params, "params")
        self.target_params = restore_like(state["target_params"], self.target_params, "target_params")
        self.opt_state = restore_like(state["opt_state"], self.opt_state, "opt_state")
        self.generator.set_state(state["generator"])
        self.step, self.updates, self.episodes = int(state["step"]), int(state["updates"]), int(state["episodes"])
        self.recent_returns = deque(state["recent_returns"], maxlen=self.recent_returns.maxlen)
        self.losses = deque((torch.tensor(float(x)) for x in state["losses"]), maxlen=self.losses.maxlen)
        self._since_update = int(state["since_update"])
        self.buffer.load_state_dict(state["buffer"])
        self.nstep.load_state_dict(state["nstep"])
        self._restore_envs(state["envs"])

    def _env_stream_state(self) -> dict[str, Any] | None:
        """What rebuilds the envs' current episodes: seeds, actions since, the current
        observations (to check the rebuild) and the running episode returns and lengths."""
        if self._obs_np is None:
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
        self._set_obs(None)
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
        self._set_obs(np.asarray(obs))
        self._episodes_started = int(saved["episodes_started"])
        self._episode_seeds, self._episode_actions = seeds, actions
        self._ep_return = saved["episode_return"].numpy().copy()
        self._ep_length = saved["episode_length"].numpy().copy()

    def close(self) -> None:
        """Close the envs and the TensorBoard writer."""
        self.envs.close()
        super().close()
