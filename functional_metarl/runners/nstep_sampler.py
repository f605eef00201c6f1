"""An n-step task sampler for image observations and discrete actions (MAML-A2C on Atari).

Why not :class:`~functional_metarl.runners.TaskVectorSampler`: that one samples whole episodes of
a continuous-action Gaussian policy on 1-D Box observations (it refuses any other space). A2C on
Atari needs three things it lacks: image observations (``uint8 [4, 84, 84]``), a categorical
policy, and n-step segments whose envs carry on across calls (an Atari episode is thousands of
steps; A2C updates every few). This is the smallest sampler with them, built the same way: one
``gym.vector.SyncVectorEnv`` over ``N * E`` sub-envs, sub-env ``i`` running task ``i // E`` (set
through its ``task`` attribute, which takes effect at the reset :meth:`set_tasks` does).

The vector env autoresets ``SAME_STEP``: at an episode's last step the next observation is the
new episode's first, and ``dones`` marks the step, which is what the n-step advantages of
``meta.nstep_advantages`` read. Actions are Gumbel-max samples of the net's logits from the
sampler's torch generator (same seed, same calls -> same actions).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from .. import checks
from ..meta import A2CBatch
from ..nn import ActorCriticCNN
from ..tree import Params

__all__ = ["NStepTaskSampler", "TaskPoolSampler"]


class NStepTaskSampler:
    """``num_tasks * envs_per_task`` sub-envs from ``make_env`` stepped together, ``num_steps``
    steps per :meth:`sample`.

    Args:
        make_env: ``() -> gym.Env`` with a settable ``task`` attribute, ``Discrete`` actions and
            Box observations (e.g. ``envs.AtariTaskFamily(...).make_env``).
        num_tasks: ``N``; envs_per_task: ``E``; num_steps: ``T``, the n-step length.
        seed: seeds the action noise and the reset seeds.

    Attributes: ``episode_returns``, a list per task of the raw returns of the episodes that
    ended since :meth:`set_tasks`; ``steps_taken``, env steps over all calls.
    """

    def __init__(self, make_env: Callable[[], gym.Env], num_tasks: int, envs_per_task: int, num_steps: int, *,
                 seed: int = 0):
        checks.function(make_env, "make_env", "() -> gym.Env")
        self.num_tasks = checks.positive_int(num_tasks, "num_tasks")
        self.envs_per_task = checks.positive_int(envs_per_task, "envs_per_task")
        self.num_steps = checks.positive_int(num_steps, "num_steps")
        checks.int_in_range(seed, "seed", low=0)
        self.num_envs = num_tasks * envs_per_task
        self.envs = gym.vector.SyncVectorEnv([make_env] * self.num_envs,
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        if not isinstance(act_space, gym.spaces.Discrete) or not isinstance(obs_space, gym.spaces.Box):
            self.close()
            raise TypeError(f"the env must have Box observations and Discrete actions, got {obs_space} and {act_space}")
        self.obs_shape, self.num_actions = tuple(obs_space.shape), int(act_space.n)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.tasks: list[Any] | None = None
        self._obs: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self.episode_returns: list[list[float]] = [[] for _ in range(num_tasks)]
        self.steps_taken = 0

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Give sub-env ``i`` task ``tasks[i // E]`` and reset every sub-env (new episodes)."""
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or len(tasks) != self.num_tasks:
            raise ValueError(f"tasks expected a sequence of {self.num_tasks} tasks (num_tasks), got {tasks!r}")
        self.tasks = list(tasks)
        self.envs.set_attr("task", [self.tasks[i // self.envs_per_task] for i in range(self.num_envs)])
        seeds = [int(s) for s in self.rng.integers(0, 2**31 - 1, size=self.num_envs)]
        self._obs, _ = self.envs.reset(seed=seeds)
        self._returns[:] = 0.0
        self.episode_returns = [[] for _ in range(self.num_tasks)]

    def sample(self, params: Params, net: ActorCriticCNN, *, params_per_task: bool = False) -> A2CBatch:
        """``T`` steps of every sub-env from where the last call left off: an :class:`meta.A2CBatch`
        with leaves ``[N, T, E, ...]`` on the params' device (obs ``uint8``).

        ``params``: shared, or (``params_per_task``) leaves ``[N, *shape]`` (e.g. adapted ones).
        """
        if self._obs is None:
            raise RuntimeError("NStepTaskSampler.sample before set_tasks: give the tasks first")
        checks.instance(net, "net", ActorCriticCNN)
        checks.flag(params_per_task, "params_per_task")
        if net.obs_shape != self.obs_shape or net.num_actions != self.num_actions:
            raise ValueError(f"the net expects obs {net.obs_shape} and {net.num_actions} actions; the env has obs "
                             f"{self.obs_shape} and {self.num_actions} actions")
        n, e, t_max = self.num_tasks, self.envs_per_task, self.num_steps
        device = next(iter(params.values())).device
        obs_buf = np.zeros((t_max, self.num_envs, *self.obs_shape), dtype=np.uint8)
        act_buf = np.zeros((t_max, self.num_envs), dtype=np.int64)
        rew_buf = np.zeros((t_max, self.num_envs), dtype=np.float32)
        done_buf = np.zeros((t_max, self.num_envs), dtype=np.float32)
        with torch.no_grad():
            for t in range(t_max):
                obs_buf[t] = self._obs
                obs = torch.from_numpy(obs_buf[t]).view(n, e, *self.obs_shape).to(device)
                logits = (net.apply_stacked(params, obs) if params_per_task else net.apply(params, obs))[0]
                u = torch.rand(logits.shape, generator=self.generator, dtype=torch.float64).to(logits)
                gumbel = -torch.log(-torch.log(u.clamp(torch.finfo(u.dtype).tiny, 1.0 - 1e-7)))
                action = net.distribution.sample(net.distribution.params(logits), gumbel)
                act_buf[t] = action.reshape(-1).cpu().numpy()
                self._obs, reward, terminated, truncated, _ = self.envs.step(act_buf[t])
                done = np.asarray(terminated) | np.asarray(truncated)
                rew_buf[t], done_buf[t] = reward, done
                self._returns += reward
                for i in np.flatnonzero(done):
                    self.episode_returns[i // e].append(float(self._returns[i]))
                    self._returns[i] = 0.0
        self.steps_taken += t_max * self.num_envs

        def task_major(buf: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(buf).view(t_max, n, e, *buf.shape[2:])
            return x.transpose(0, 1).contiguous().to(device)

        boot = torch.from_numpy(np.asarray(self._obs)).view(n, e, *self.obs_shape).to(device)
        return A2CBatch(obs=task_major(obs_buf), actions=task_major(act_buf), rewards=task_major(rew_buf),
                        dones=task_major(done_buf), bootstrap_obs=boot)

    def state_dict(self) -> dict[str, Any]:
        """The generators' states (for checkpoints). The emulators' mid-episode states are not in
        it: a resumed run continues from the next :meth:`set_tasks`, which starts new episodes
        with reset seeds from the restored generator."""
        return {"generator": self.generator.get_state(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generators' states written by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        """Close the vector env."""
        envs = getattr(self, "envs", None)
        if envs is not None:
            envs.close()
            self.envs = None

    def __enter__(self) -> NStepTaskSampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TaskPoolSampler:
    """One group of ``envs_per_task`` envs per task of ``tasks``, whose episodes carry on across
    calls: :meth:`sample` steps the groups of the drawn tasks together, ``num_steps`` steps.

    Where :class:`NStepTaskSampler` resets its envs into each new meta-batch's tasks (a flavour
    takes effect only at reset), this keeps every task's envs running, so over many calls the
    batches come from the whole course of the episodes rather than their first steps. A group
    is built on its task's first draw (about 2 MiB per Atari env) and reset with seeds from the
    sampler's generator; :meth:`restart` resets every group at its next draw (a runner does so at
    its checkpoints, which then describe the run exactly).

    Args:
        make_env: ``() -> gym.Env`` with a settable ``task``, ``Discrete`` actions and Box observations.
        tasks: the tasks; :meth:`sample` takes indices into them.
        envs_per_task: ``E``; num_steps: ``T``; seed: seeds the action noise and the reset seeds.
    """

    def __init__(self, make_env: Callable[[], gym.Env], tasks: Sequence[Any], envs_per_task: int, num_steps: int, *,
                 seed: int = 0):
        checks.function(make_env, "make_env", "() -> gym.Env")
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
            raise checks.ArgumentTypeError(f"tasks must be a non-empty sequence of tasks, got {tasks!r}")
        self.tasks = list(tasks)
        self.envs_per_task = checks.positive_int(envs_per_task, "envs_per_task")
        self.num_steps = checks.positive_int(num_steps, "num_steps")
        checks.int_in_range(seed, "seed", low=0)
        self._make_env = make_env
        self.groups: list[gym.vector.SyncVectorEnv | None] = [None] * len(self.tasks)
        self._obs: list[np.ndarray | None] = [None] * len(self.tasks)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.steps_taken = 0

    def restart(self) -> None:
        """Start new episodes in every group at its next draw."""
        self._obs = [None] * len(self.tasks)

    def _group(self, i: int) -> gym.vector.SyncVectorEnv:
        group = self.groups[i]
        if group is None:
            group = gym.vector.SyncVectorEnv([self._make_env] * self.envs_per_task,
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            space = group.single_action_space
            if not isinstance(space, gym.spaces.Discrete):
                group.close()
                raise TypeError(f"the env must have Discrete actions, got {space}")
            group.set_attr("task", [self.tasks[i]] * self.envs_per_task)
            self.groups[i] = group
        if self._obs[i] is None:
            seeds = [int(s) for s in self.rng.integers(0, 2**31 - 1, size=self.envs_per_task)]
            self._obs[i], _ = group.reset(seed=seeds)
        return group

    def sample(self, params: Params, net: ActorCriticCNN, task_ids: Sequence[int], *,
               params_per_task: bool = False) -> A2CBatch:
        """``T`` steps of the groups of ``tasks[task_ids]`` (distinct indices): an
        :class:`meta.A2CBatch` with leaves ``[N, T, E, ...]``, ``N = len(task_ids)``, on the
        params' device; ``params`` shared or (``params_per_task``) leaves ``[N, *shape]``."""
        checks.instance(net, "net", ActorCriticCNN)
        checks.flag(params_per_task, "params_per_task")
        ids = [checks.int_in_range(i, f"task_ids[{k}]", 0, len(self.tasks) - 1) for k, i in enumerate(task_ids)]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"task_ids must be distinct indices into the {len(self.tasks)} tasks, got {ids}")
        groups = [self._group(i) for i in ids]
        obs_shape = tuple(groups[0].single_observation_space.shape)
        if net.obs_shape != obs_shape or net.num_actions != int(groups[0].single_action_space.n):
            raise ValueError(f"the net expects obs {net.obs_shape} and {net.num_actions} actions; the env has obs "
                             f"{obs_shape} and {int(groups[0].single_action_space.n)} actions")
        n, e, t_max = len(ids), self.envs_per_task, self.num_steps
        device = next(iter(params.values())).device
        obs_buf = np.zeros((n, t_max, e, *obs_shape), dtype=np.uint8)
        act_buf = np.zeros((n, t_max, e), dtype=np.int64)
        rew_buf = np.zeros((n, t_max, e), dtype=np.float32)
        done_buf = np.zeros((n, t_max, e), dtype=np.float32)
        with torch.no_grad():
            for t in range(t_max):
                for j, i in enumerate(ids):
                    obs_buf[j, t] = self._obs[i]
                obs = torch.from_numpy(obs_buf[:, t]).to(device)
                logits = (net.apply_stacked(params, obs) if params_per_task else net.apply(params, obs))[0]
                u = torch.rand(logits.shape, generator=self.generator, dtype=torch.float64).to(logits)
                gumbel = -torch.log(-torch.log(u.clamp(torch.finfo(u.dtype).tiny, 1.0 - 1e-7)))
                act_buf[:, t] = net.distribution.sample(net.distribution.params(logits), gumbel).cpu().numpy()
                for j, (i, group) in enumerate(zip(ids, groups)):
                    self._obs[i], reward, terminated, truncated, _ = group.step(act_buf[j, t])
                    rew_buf[j, t] = reward
                    done_buf[j, t] = np.asarray(terminated) | np.asarray(truncated)
        self.steps_taken += t_max * n * e
        boot = torch.from_numpy(np.stack([self._obs[i] for i in ids])).to(device)
        return A2CBatch(obs=torch.from_numpy(obs_buf).to(device), actions=torch.from_numpy(act_buf).to(device),
                        rewards=torch.from_numpy(rew_buf).to(device), dones=torch.from_numpy(done_buf).to(device),
                        bootstrap_obs=boot)

    def state_dict(self) -> dict[str, Any]:
        """The generators' states (the emulators' states are not in it: see :meth:`restart`)."""
        return {"generator": self.generator.get_state(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s generator states; every group restarts at its next draw."""
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self.restart()

    def close(self) -> None:
        """Close every group's envs."""
        for group in self.groups:
            if group is not None:
                group.close()
        self.groups = [None] * len(self.tasks)

    def __enter__(self) -> TaskPoolSampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
