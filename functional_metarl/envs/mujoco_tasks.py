"""MuJoCo locomotion task families of the MAML paper (Finn et al. 2017, section 5.3), as task
wrappers over gymnasium's ``HalfCheetah-v5`` and ``Ant-v5``.

Each family builds sub-envs (``make_env()``) whose ``task`` attribute selects the task, so a
vector env can hold one task per sub-env (``envs.set_attr("task", [...])``); the dynamics are
gymnasium's, only the reward (and the task) is the family's:

* :class:`HalfCheetahVel`: task = goal velocity ``v`` uniform in ``[0, 2]``;
  ``r = -|x_velocity - v| - 0.05 * ||a||^2`` (rllab's / pytorch-maml-rl's reward: control cost
  ``0.5 * 0.1 * sum(a^2)``).
* :class:`HalfCheetahDir`: task = direction ``d`` in ``{-1, +1}`` (forward / backward);
  ``r = d * x_velocity - 0.05 * ||a||^2``.
* :class:`AntDir`: task = a unit direction ``u`` in the plane; ``r = u . (x_velocity, y_velocity)
  - 0.005 * ||a||^2 - 0.0005 * ||clip(cfrc_ext, -1, 1)||^2 + 0.05`` (pytorch-maml-rl's AntDir:
  control cost ``0.5e-2``, contact cost ``0.5e-3``, survive bonus ``0.05``; the action box of
  ``Ant-v5`` is ``[-1, 1]``, so its action scaling is 1). ``directions="forward_backward"``
  (default) samples ``u = (+-1, 0)`` as pytorch-maml-rl's AntDir and the paper's ant
  forward/backward task do; ``directions="plane"`` samples the angle uniformly in ``[0, 2 pi)``.
  The episode terminates when the torso leaves ``z in [0.2, 1.0]`` (gymnasium's ``Ant-v5``
  default, the same rule as pytorch-maml-rl's).

``x_velocity`` (and ``y_velocity``) are gymnasium's: the torso's displacement over one control
step divided by ``dt`` (0.05 s for both robots). Observations are gymnasium's (HalfCheetah: 17
numbers; Ant: 27, built with ``include_cfrc_ext_in_observation=False``). The reward uses the
action as it reaches the env; the vector sampler clips actions into the action box first, as
pytorch-maml-rl's action wrapper does.

Horizon: 200 steps by default, the MAML paper's (appendix A.2); pytorch-maml-rl's configs use
100 (``max_episode_steps: 100``), which halves the sampling cost. Returns over 100 steps are
about half of those over 200, so only horizon-200 returns compare to the paper's numbers.

Nothing here imports ``mujoco`` until an env is built; ``make_env`` raises an ImportError that
names the ``mujoco`` extra when it is missing.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from .. import checks

__all__ = [
    "HalfCheetahVelEnv",
    "HalfCheetahDirEnv",
    "AntDirEnv",
    "HalfCheetahVel",
    "HalfCheetahDir",
    "AntDir",
    "MUJOCO_TASK_FAMILIES",
    "make_mujoco_family",
]

CHEETAH_CTRL_COST = 0.05  # 0.5 * 1e-1
ANT_CTRL_COST = 0.005  # 0.5 * 1e-2
ANT_CONTACT_COST = 0.0005  # 0.5 * 1e-3
ANT_SURVIVE = 0.05


def _check_horizon(horizon: object) -> int:
    return checks.positive_int(horizon, "horizon")


def _make_gym(env_id: str, horizon: int, **kwargs: Any) -> gym.Env:
    try:
        import mujoco  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"{env_id} needs the mujoco package: pip install -e '.[mujoco]'"
        ) from err
    return gym.make(env_id, max_episode_steps=horizon, **kwargs)


class _TaskWrapper(gym.Wrapper):
    """A gymnasium wrapper with a settable ``task`` (checked by ``_check``); ``step`` refuses to
    run before a task is set."""

    def __init__(self, env: gym.Env, task: Any = None):
        super().__init__(env)
        self._task = None
        if task is not None:
            self.task = task

    @property
    def task(self) -> Any:
        return self._task

    @task.setter
    def task(self, value: Any) -> None:
        self._task = self._check(value)

    def _check(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _require_task(self) -> Any:
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__}: set .task before stepping")
        return self._task


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class HalfCheetahVelEnv(_TaskWrapper):
    """HalfCheetah with a goal velocity: ``task`` = goal velocity in ``[low, high]`` (m/s).

    ``step`` returns ``r = -|x_velocity - task| - 0.05 * sum(action^2)``; ``info`` gains
    ``reward_forward`` / ``reward_ctrl`` / ``task`` for that reward.
    """

    def __init__(self, env: gym.Env, task: float | None = None, low: float = 0.0, high: float = 2.0):
        self.low, self.high = float(low), float(high)
        super().__init__(env, task)

    def _check(self, value: Any) -> float:
        v = _check_number(value, "HalfCheetahVel task (goal velocity)")
        if not self.low <= v <= self.high:
            raise ValueError(f"HalfCheetahVel task (goal velocity) expected in [{self.low}, {self.high}], got {v}")
        return v

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One simulator step; the reward is this task's (see the class docstring), the rest is gymnasium's."""
        goal = self._require_task()
        obs, _, terminated, truncated, info = self.env.step(action)
        forward = -abs(float(info["x_velocity"]) - goal)
        ctrl = CHEETAH_CTRL_COST * float(np.sum(np.square(action)))
        info = {**info, "reward_forward": forward, "reward_ctrl": -ctrl, "task": goal}
        return obs, forward - ctrl, terminated, truncated, info


class HalfCheetahDirEnv(_TaskWrapper):
    """HalfCheetah running forward (``task = +1``) or backward (``task = -1``).

    ``step`` returns ``r = task * x_velocity - 0.05 * sum(action^2)``.
    """

    def _check(self, value: Any) -> float:
        d = _check_number(value, "HalfCheetahDir task (direction)")
        if d not in (-1.0, 1.0):
            raise ValueError(f"HalfCheetahDir task (direction) expected -1 or +1, got {value!r}")
        return d

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One simulator step; the reward is this task's (see the class docstring), the rest is gymnasium's."""
        direction = self._require_task()
        obs, _, terminated, truncated, info = self.env.step(action)
        forward = direction * float(info["x_velocity"])
        ctrl = CHEETAH_CTRL_COST * float(np.sum(np.square(action)))
        info = {**info, "reward_forward": forward, "reward_ctrl": -ctrl, "task": direction}
        return obs, forward - ctrl, terminated, truncated, info


class AntDirEnv(_TaskWrapper):
    """Ant moving along a unit direction ``task = (ux, uy)`` in the plane.

    ``step`` returns ``r = ux * x_velocity + uy * y_velocity - 0.005 * sum(action^2)
    - 0.0005 * sum(clip(cfrc_ext, -1, 1)^2) + 0.05`` (cfrc_ext: MuJoCo's external contact
    forces of every body after the step). Termination is Ant-v5's (torso z outside [0.2, 1]).
    """

    def _check(self, value: Any) -> tuple[float, float]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 2:
            raise ValueError(f"AntDir task expected a 2D unit direction (ux, uy), got {value!r}")
        u = (_check_number(value[0], "AntDir task[0]"), _check_number(value[1], "AntDir task[1]"))
        norm = math.hypot(*u)
        if abs(norm - 1.0) > 1e-6:
            raise ValueError(f"AntDir task expected a unit direction (norm 1), got {value!r} with norm {norm}")
        return u

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One simulator step; the reward is this task's (see the class docstring), the rest is gymnasium's."""
        ux, uy = self._require_task()
        obs, _, terminated, truncated, info = self.env.step(action)
        forward = ux * float(info["x_velocity"]) + uy * float(info["y_velocity"])
        ctrl = ANT_CTRL_COST * float(np.sum(np.square(action)))
        cfrc = np.clip(self.env.unwrapped.data.cfrc_ext, -1.0, 1.0)
        contact = ANT_CONTACT_COST * float(np.sum(np.square(cfrc)))
        reward = forward - ctrl - contact + ANT_SURVIVE
        info = {**info, "reward_forward": forward, "reward_ctrl": -ctrl, "reward_contact": -contact,
                "reward_survive": ANT_SURVIVE, "task": (ux, uy)}
        return obs, reward, terminated, truncated, info


class _MujocoFamily:
    """A task family over one gymnasium MuJoCo env: constants only; ``make_env`` builds state."""

    name: str = ""
    env_id: str = ""
    obs_dim: int = 0
    act_dim: int = 0

    def __init__(self, horizon: int = 200):
        self.horizon = _check_horizon(horizon)

    def make_env(self, task: Any = None) -> gym.Env:  # pragma: no cover - overridden
        raise NotImplementedError

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> list:  # pragma: no cover
        raise NotImplementedError

    def _check_sample_args(self, num_tasks: int, rng: Any) -> None:
        """A new sub-env of this family, set to ``task`` when given (a gymnasium env with a settable ``task``)."""
        checks.positive_int(num_tasks, "num_tasks")
        checks.instance(rng, "rng", np.random.Generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(horizon={self.horizon})"


class HalfCheetahVel(_MujocoFamily):
    """Goal velocities uniform in ``[0, 2]`` on ``HalfCheetah-v5``.

    ``make_env(task=None) -> HalfCheetahVelEnv``; ``sample_tasks(n, rng) -> list[float]``.
    """

    name = "HalfCheetahVel"
    env_id = "HalfCheetah-v5"
    obs_dim = 17
    act_dim = 6
    low, high = 0.0, 2.0

    def make_env(self, task: float | None = None) -> HalfCheetahVelEnv:
        """A HalfCheetahVel sub-env (horizon ``self.horizon``), set to goal velocity ``task`` when given."""
        return HalfCheetahVelEnv(_make_gym(self.env_id, self.horizon), task, self.low, self.high)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> list[float]:
        """``num_tasks`` goal velocities uniform in ``[low, high]``."""
        self._check_sample_args(num_tasks, rng)
        return [float(v) for v in rng.uniform(self.low, self.high, size=num_tasks)]


class HalfCheetahDir(_MujocoFamily):
    """Forward (+1) or backward (-1), each with probability 1/2, on ``HalfCheetah-v5``."""

    name = "HalfCheetahDir"
    env_id = "HalfCheetah-v5"
    obs_dim = 17
    act_dim = 6

    def make_env(self, task: float | None = None) -> HalfCheetahDirEnv:
        """A HalfCheetahDir sub-env (horizon ``self.horizon``), set to direction ``task`` (+1 / -1) when given."""
        return HalfCheetahDirEnv(_make_gym(self.env_id, self.horizon), task)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> list[float]:
        """``num_tasks`` directions, +1 or -1 with equal probability."""
        self._check_sample_args(num_tasks, rng)
        return [float(d) for d in 2 * rng.integers(0, 2, size=num_tasks) - 1]


class AntDir(_MujocoFamily):
    """Directions for ``Ant-v5`` (27-number observation, no contact forces in it).

    directions: ``"forward_backward"`` -> ``(+-1, 0)`` with probability 1/2 each (pytorch-maml-rl's
    AntDir, the paper's ant forward/backward); ``"plane"`` -> angle uniform in ``[0, 2 pi)``.
    """

    name = "AntDir"
    env_id = "Ant-v5"
    obs_dim = 27
    act_dim = 8

    def __init__(self, horizon: int = 200, directions: str = "forward_backward"):
        super().__init__(horizon)
        if directions not in ("forward_backward", "plane"):
            raise ValueError(f"directions must be 'forward_backward' or 'plane', got {directions!r}")
        self.directions = directions

    def make_env(self, task: tuple[float, float] | None = None) -> AntDirEnv:
        """An AntDir sub-env (horizon ``self.horizon``), set to the unit direction ``task`` when given."""
        return AntDirEnv(_make_gym(self.env_id, self.horizon, include_cfrc_ext_in_observation=False), task)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> list[tuple[float, float]]:
        """``num_tasks`` unit directions: (+1, 0) / (-1, 0), or uniform angles with ``directions='plane'``."""
        self._check_sample_args(num_tasks, rng)
        if self.directions == "forward_backward":
            return [(float(d), 0.0) for d in 2 * rng.integers(0, 2, size=num_tasks) - 1]
        angles = rng.uniform(0.0, 2 * math.pi, size=num_tasks)
        return [(math.cos(a), math.sin(a)) for a in angles]

    def __repr__(self) -> str:
        return f"AntDir(horizon={self.horizon}, directions={self.directions!r})"


MUJOCO_TASK_FAMILIES: dict[str, Callable[..., _MujocoFamily]] = {
    "HalfCheetahVel": HalfCheetahVel,
    "HalfCheetahDir": HalfCheetahDir,
    "AntDir": AntDir,
}


def make_mujoco_family(name: str, horizon: int = 200, **kwargs: Any) -> _MujocoFamily:
    """The family called ``name`` (one of :data:`MUJOCO_TASK_FAMILIES`) with ``horizon``."""
    if name not in MUJOCO_TASK_FAMILIES:
        raise ValueError(f"unknown MuJoCo task family {name!r}; expected one of {sorted(MUJOCO_TASK_FAMILIES)}")
    return MUJOCO_TASK_FAMILIES[name](horizon=horizon, **kwargs)
