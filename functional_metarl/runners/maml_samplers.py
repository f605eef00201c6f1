"""Where the MAML trainer's episodes come from: one sampler interface, three implementations.

:class:`~functional_metarl.runners.MAMLTrainer` runs one meta-iteration loop for every task
family; a :class:`MAMLSampler` is all that differs between them:

* :class:`PureFamilySampler`: a pure continuous-action ``envs.TaskFamily`` (2D navigation),
  rolled out by ``envs.rollout`` with explicit noise from the trainer's generator;
* :class:`SplitTrialSampler`: bandits and tabular MDPs under the split-trial protocol of
  ``meta.maml_discrete`` (the first ``num_pre`` episodes of a trial before the inner step, the
  rest after), with a categorical policy;
* :class:`SimulatorSampler`: a simulator family (MuJoCo, Meta-World) stepped through a
  :class:`~functional_metarl.runners.TaskVectorSampler`.

A sampler is stateful only where its family is (the simulators' sub-envs and generators); what
it holds goes into the trainer's checkpoint through ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from .. import checks
from ..envs import Episodes, rollout, sample_noise
from ..envs.metaworld_tasks import episode_success
from ..envs.protocol import TaskFamily
from ..meta.maml_discrete import categorical_episodes, split_trial_noise
from ..meta import TaskShard
from ..meta.rl2 import RL2Noise, sample_rl2_noise
from ..nn import Functional
from ..tree import Params, tree_map
from .gym_sampler import TaskVectorSampler

__all__ = ["MAMLSampler", "StatelessSampler", "PureFamilySampler", "SplitTrialSampler", "SplitTrialTasks", "SimulatorSampler"]

#: Per-episode extras a sampler may return beside the episodes, e.g. ``{"success": [N, E] bool}``.
EpisodeInfo = dict[str, torch.Tensor]


@runtime_checkable
class MAMLSampler(Protocol):
    """The episodes of a MAML meta-iteration.

    Attributes: ``obs_dim``; ``action_size`` (action dimension, or number of actions);
    ``discrete_actions`` (a categorical policy when True, else a Gaussian one); ``horizon`` (the
    steps of one episode); ``fixed_inner_steps`` (``None``, or the one number of inner steps
    the scheme allows); ``dtype`` (of the observations, hence of the policy's params).
    """

    obs_dim: int
    action_size: int
    discrete_actions: bool
    horizon: int
    fixed_inner_steps: int | None
    dtype: torch.dtype

    def sample_tasks(self, num_tasks: int, generator: torch.Generator, split: str = "train") -> Any:
        """``num_tasks`` tasks (``split``: ``"train"``, or ``"test"`` where the family has one)."""
        ...

    def sample(self, params: Params, tasks: Any, policy: Functional, *, per_task: bool, step: int,
               episodes_per_task: int, generator: torch.Generator,
               shard: TaskShard | None = None) -> tuple[Episodes, EpisodeInfo]:
        """Episodes ``[N, T, E, ...]`` of ``params`` (shared, or per task with ``per_task``),
        adapted ``step`` times, on ``tasks``, and their info. ``shard``: ``tasks`` is the whole
        meta-batch of a data-parallel run and only this process's tasks (``shard.tasks``) are rolled out
        (per-task params are theirs), with the draws one process would make for them."""
        ...

    def for_evaluation(self, seed: int, deterministic: bool = False) -> MAMLSampler:
        """A sampler of the same family for held-out evaluation whose draws do not touch this
        one's state (itself, when it keeps none); ``deterministic``: act with the policy's mean."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What decides its future draws (nothing for a sampler driven by the trainer's generator)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...

    def close(self) -> None:
        """Release its envs."""
        ...


def _describe(env: Any) -> str:
    """A family's class and constant settings, e.g. ``Navigation2D(action_scale=1.0, horizon=100)``:
    what a checkpoint records to refuse a resume on another family."""
    settings = {k: v for k, v in sorted(vars(env).items())
                if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))}
    return f"{type(env).__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"


class StatelessSampler:
    """What a sampler driven only by the trainer's generator shares: no state to save, nothing to
    release, and itself as its evaluation sampler (evaluation passes its own generator)."""

    def for_evaluation(self, seed: int, deterministic: bool = False) -> StatelessSampler:
        """Itself; ``deterministic`` is refused (these samplers always sample their actions)."""
        if deterministic:
            raise ValueError(f"deterministic: {type(self).__name__} always samples actions")
        return self

    def state_dict(self) -> dict[str, Any]:
        """Nothing: its draws come from the trainer's generator."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""

    def close(self) -> None:
        """Nothing to release."""


class PureFamilySampler(StatelessSampler):
    """A pure continuous-action task family (``envs.TaskFamily``, e.g. ``envs.Navigation2D``),
    rolled out by ``envs.rollout``; tasks and action noise come from the trainer's generator.
    ``dtype``: the tasks' floating leaves are cast to it and the noise drawn in it (``float64``
    for exactness checks; the draws then differ from ``float32``'s)."""

    fixed_inner_steps = None

    def __init__(self, env: TaskFamily, dtype: torch.dtype = torch.float32):
        checks.instance(env, "env", TaskFamily)
        checks.one_of(dtype, "dtype", (torch.float32, torch.float64))
        self.dtype = dtype
        if env.discrete_actions or len(env.obs_shape) != 1:
            raise ValueError(f"env: PureFamilySampler needs continuous actions and vector observations, got "
                             f"{type(env).__name__} (discrete_actions={env.discrete_actions}, obs_shape={env.obs_shape})")
        self.env = env
        self.obs_dim, self.action_size, self.discrete_actions = env.obs_shape[0], env.action_size, False
        self.horizon = env.episode_length

    def __repr__(self) -> str:
        return f"PureFamilySampler({_describe(self.env)})"

    def sample_tasks(self, num_tasks: int, generator: torch.Generator, split: str = "train") -> Any:
        """``num_tasks`` tasks of the family from ``generator`` (the family has one split)."""
        checks.one_of(split, "split", ("train",))
        tasks = self.env.sample_tasks(num_tasks, generator)
        if self.dtype == torch.float32:
            return tasks
        return tree_map(lambda x: x.to(self.dtype) if x.is_floating_point() else x, tasks)

    def sample(self, params: Params, tasks: Any, policy: Functional, *, per_task: bool, step: int,
               episodes_per_task: int, generator: torch.Generator,
               shard: TaskShard | None = None) -> tuple[Episodes, EpisodeInfo]:
        """Episodes of ``envs.rollout`` with action noise from ``generator``; no extra info."""
        num_tasks = next(x for x in tasks if isinstance(x, torch.Tensor)).shape[0]
        noise = sample_noise(self.horizon, num_tasks, episodes_per_task, self.action_size, generator, dtype=self.dtype)
        if shard is not None:  # the whole batch's noise is drawn, as one process draws it
            tasks = tree_map(lambda x: x[shard.tasks], tasks)
            noise = noise[:, shard.tasks]
        episodes = rollout(params, tasks, noise, self.env, policy, params_per_task=per_task)
        if not torch.isfinite(episodes.rewards).all():
            raise FloatingPointError("the environment returned non-finite rewards")
        return episodes, {}



class SplitTrialTasks(NamedTuple):
    """A batch of trials: the tasks ``[N, ...]`` and each trial's noise (``meta.RL2Noise``), of
    which the episodes before the inner step use the first ``num_pre`` and the rest the others."""

    tasks: Any
    noise: RL2Noise


class SplitTrialSampler(StatelessSampler):
    """Bandits and tabular MDPs under the split-trial protocol (``meta.maml_discrete``): a trial
    of ``n`` episodes per task; the first ``num_pre`` (default ``n // 2``) are played by the
    meta-params, the rest by the params adapted on them. One inner step; the episodes per task
    are the trial's, whatever the trainer's ``episodes_per_task``.

    Args:
        env: ``envs.BernoulliBandits`` or ``envs.TabularMDP`` (``runners.make_rl2_env``).
        num_pre: episodes before the inner step, in ``[1, n - 1]``; 0 means ``n // 2``.
    """

    fixed_inner_steps = 1
    discrete_actions = True
    dtype = torch.float32

    def __init__(self, env: Any, num_pre: int = 0):
        checks.instance(env, "env", TaskFamily)
        if not hasattr(env, "trial_length"):
            raise TypeError(f"env must be a family with trials (BernoulliBandits, TabularMDP), got {type(env).__name__}")
        self.env = env
        self.num_episodes = env.trial_length // env.episode_length
        if self.num_episodes < 2:
            raise ValueError(f"env: MAML needs trials of >= 2 episodes (some before, some after the inner step), "
                             f"got {self.num_episodes}")
        checks.int_in_range(num_pre, "num_pre", 0, self.num_episodes - 1)
        self.num_pre = num_pre or self.num_episodes // 2
        self.obs_dim, self.action_size = env.obs_shape[0], env.action_size
        self.horizon = env.episode_length

    def __repr__(self) -> str:
        return f"SplitTrialSampler({_describe(self.env)}, num_pre={self.num_pre})"

    def sample_tasks(self, num_tasks: int, generator: torch.Generator, split: str = "train") -> SplitTrialTasks:
        """``num_tasks`` tasks and the noise of one trial each, from ``generator``."""
        checks.one_of(split, "split", ("train",))
        tasks = self.env.sample_tasks(num_tasks, generator)
        return SplitTrialTasks(tasks, sample_rl2_noise(self.env, num_tasks, 0, generator))

    def sample(self, params: Params, tasks: SplitTrialTasks, policy: Functional, *, per_task: bool, step: int,
               episodes_per_task: int, generator: torch.Generator,
               shard: TaskShard | None = None) -> tuple[Episodes, EpisodeInfo]:
        """The trial's first ``num_pre`` episodes (``step`` 0) or the rest (``step`` 1)."""
        # The meta-params play the trial's first episodes; the adapted params the rest.
        checks.int_in_range(step, "step", 0, 1)
        if shard is not None:  # tasks lead their leaves; the trial noise's task axis is its second
            mine = shard.tasks
            tasks = SplitTrialTasks(tree_map(lambda x: x[mine], tasks.tasks),
                                    tasks.noise._replace(env=tree_map(lambda x: x[:, mine], tasks.noise.env),
                                                         gumbel_u=tasks.noise.gumbel_u[:, mine]))
        first, count = (self.num_pre, self.num_episodes - self.num_pre) if step == 1 else (0, self.num_pre)
        env_noise, gumbel_u = split_trial_noise(self.env, tasks.noise.env, tasks.noise.gumbel_u, first, count)
        return categorical_episodes(params, tasks.tasks, env_noise, gumbel_u, self.env, policy,
                                    params_per_task=per_task), {}



class SimulatorSampler:
    """A simulator family stepped through a :class:`TaskVectorSampler` per batch shape.

    Args:
        family: an object with ``name``, ``obs_dim``, ``act_dim``, ``horizon``, ``make_env()`` and
            ``sample_tasks(n, rng[, split])`` (``envs.HalfCheetahVel``, ``envs.AntDir``,
            ``envs.MetaWorldFamily``, ...).
        seed: seeds the task generator and the vector samplers' action noise and resets.
        vectorization: ``"sync"`` or ``"async"`` (see ``TaskVectorSampler``).
        action_scale: the simulator gets ``clip(action_scale * action)``.
        success_key: an ``info`` entry counted as success (Meta-World: ``"success"``), or None;
            the episodes' info then has ``"success"`` ``[N, E]`` (bool).
        deterministic: act with the policy's mean (evaluation samplers).

    Tasks are numpy-seeded lists drawn by the family; the trainer's torch generator is not used.
    """

    fixed_inner_steps = None
    discrete_actions = False
    dtype = torch.float32

    def __init__(self, family: Any, *, seed: int = 0, vectorization: str = "sync", action_scale: float = 1.0,
                 success_key: str | None = None, deterministic: bool = False):
        for attr in ("name", "obs_dim", "act_dim", "horizon", "make_env", "sample_tasks"):
            if not hasattr(family, attr):
                raise TypeError(f"family must have {attr!r} (a task family such as envs.HalfCheetahVel), "
                                f"got {type(family).__name__}")
        self.family = family
        self.seed = checks.int_in_range(seed, "seed")
        self.vectorization = checks.one_of(vectorization, "vectorization", ("sync", "async"))
        self.action_scale = checks.positive_number(action_scale, "action_scale")
        if success_key is not None:
            checks.instance(success_key, "success_key", str)
        self.success_key, self.deterministic = success_key, checks.flag(deterministic, "deterministic")
        self.obs_dim, self.action_size, self.horizon = family.obs_dim, family.act_dim, family.horizon
        self.task_rng = np.random.default_rng(seed)
        self._vector: TaskVectorSampler | None = None
        self._pending_state: dict[str, Any] | None = None  # a loaded vector state, for the next vector sampler

    def __repr__(self) -> str:
        return f"SimulatorSampler({self.family!r})"

    def sample_tasks(self, num_tasks: int, generator: torch.Generator | None = None, split: str = "train") -> list:
        """``num_tasks`` tasks of ``split`` from the sampler's own numpy generator (``generator`` is unused)."""
        if hasattr(self.family, "classes"):
            return self.family.sample_tasks(num_tasks, self.task_rng, split)
        checks.one_of(split, "split", ("train",))
        return self.family.sample_tasks(num_tasks, self.task_rng)

    def vector_sampler(self, num_tasks: int, episodes_per_task: int) -> TaskVectorSampler:
        """The vector sampler for this batch shape: built at the first call (seeded with ``seed``),
        kept while the shape stays."""
        vector = self._vector
        if vector is None or (vector.num_tasks, vector.episodes_per_task) != (num_tasks, episodes_per_task):
            if vector is not None:
                vector.close()
            vector = TaskVectorSampler(self.family.make_env, num_tasks, episodes_per_task, self.horizon,
                                       vectorization=self.vectorization, seed=self.seed, action_scale=self.action_scale)
            if self._pending_state is not None:
                vector.load_state_dict(self._pending_state)
                self._pending_state = None
            self._vector = vector
        return vector

    def sample(self, params: Params, tasks: list, policy: Functional, *, per_task: bool, step: int,
               episodes_per_task: int, generator: torch.Generator | None = None,
               shard: TaskShard | None = None) -> tuple[Episodes, EpisodeInfo]:
        """One episode per sub-env of the vector sampler for this batch shape; ``"success"`` ``[N, E]`` in the info with a success key."""
        if shard is not None:  # each process steps its own tasks' sub-envs with its own noise
            tasks = tasks[shard.tasks]
        vector = self.vector_sampler(len(tasks), episodes_per_task)
        keys = (self.success_key,) if self.success_key else ()
        episodes, info = vector.sample_with_info(params, tasks, policy, params_per_task=per_task,
                                                 deterministic=self.deterministic, info_keys=keys)
        extra = {"success": episode_success(info[self.success_key], episodes.mask)} if self.success_key else {}
        return episodes, extra

    def for_evaluation(self, seed: int, deterministic: bool = False) -> SimulatorSampler:
        """A new sampler of the same family and settings, seeded with ``seed``."""
        return SimulatorSampler(self.family, seed=seed, vectorization=self.vectorization,
                                action_scale=self.action_scale, success_key=self.success_key, deterministic=deterministic)

    def state_dict(self) -> dict[str, Any]:
        """The task generator's and the vector sampler's states."""
        return {"task_rng": self.task_rng.bit_generator.state,
                "vector": None if self._vector is None else self._vector.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a vector sampler built later takes its part)."""
        self.task_rng.bit_generator.state = state["task_rng"]
        if self._vector is not None and state["vector"] is not None:
            self._vector.load_state_dict(state["vector"])
        else:  # no vector sampler yet: the next one built takes the state
            self._pending_state = state["vector"]

    def close(self) -> None:
        """Close the vector sampler's sub-envs."""
        if self._vector is not None:
            self._vector.close()
            self._vector = None
