"""Meta-World ML1 / ML10 (metaworld 3.x) as a task family for the vector sampler, and the
benchmark's success protocol.

Tasks and envs are metaworld's own: a benchmark object (``metaworld.ML1(env_name, seed)`` /
``metaworld.ML10(seed)``) gives the train and test splits as lists of ``metaworld.Task``
(50 goals per env class: ML1 = one class, train and test goals differ; ML10 = 10 train classes,
5 held-out test classes), and each sub-env is a metaworld gymnasium env (``SawyerXYZEnv``)
put on its task with ``set_task``, exactly what metaworld's ``make_ml_envs_train`` /
``make_ml_envs_test`` do inside each of their sub-envs.

Why not ``gym.make_vec("Meta-World/ML1-train", ...)`` or ``make_ml_envs_*`` themselves: their
sub-envs each own a fixed slice of the task list and move to the next task on
``sample_tasks``, so "these N tasks, E episodes of each, side by side" cannot be asked of them;
and (metaworld 3.1.1) the registered ``ML1-train`` id hands back the test split with
terminate-on-success (its registration lambda binds ``split`` late). Here the sampler sets one
task per sub-env (``envs.set_attr("task", [...])``) and the split is chosen explicitly.

A sub-env (:class:`MetaWorldTaskEnv`) keeps one metaworld env per env class it has been given
a task of (built on first use), so ML10's classes can share a sub-env; the family's
``sample_tasks`` assigns classes to meta-batch slots round robin, so with a fixed meta-batch
size a sub-env always sees the same class and builds one model.

Success protocol (Meta-World paper, section 5; ``metaworld.evaluation``): an episode counts as
solved if ``info["success"]`` is reached at any of its steps; per held-out task, the policy first
adapts on its own rollouts, then runs evaluation episodes; the success rate of an env class is
the mean over its evaluation episodes (and tasks), the overall rate the mean over classes.
:func:`episode_success` and :func:`success_rates` compute these from the sampler's step
records.

Metaworld's envs raise when stepped past ``max_path_length`` (500) without a reset; the sub-env
truncates at ``horizon <= 500`` so the sampler's one-episode-per-sub-env never gets there.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from .. import checks

__all__ = [
    "METAWORLD_BENCHMARKS",
    "MetaWorldTaskEnv",
    "MetaWorldFamily",
    "episode_success",
    "success_rates",
]

METAWORLD_BENCHMARKS = ("ML1", "ML10")
OBS_DIM = 39
ACT_DIM = 4
MAX_PATH_LENGTH = 500


def _import_metaworld():
    try:
        import metaworld
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "Meta-World needs the metaworld package: pip install -e '.[metaworld]' (metaworld 3.x; it pins mujoco 3.3.0)"
        ) from err
    return metaworld


def _check_horizon(horizon: object) -> int:
    return checks.int_in_range(horizon, "horizon", 1, MAX_PATH_LENGTH)  # metaworld's max_path_length


class MetaWorldTaskEnv(gym.Env):
    """One sub-env for a set of Meta-World env classes; ``task`` (a ``metaworld.Task``) picks the
    class and the goal. Observations ``[39]`` float64, actions ``[4]`` in ``[-1, 1]``.

    Episodes truncate after ``horizon`` steps. ``step``'s info is metaworld's (``success``,
    ``near_object``, ...). The inner env of each class is built when a task of it first comes.
    """

    metadata = {"render_modes": []}

    def __init__(self, classes: dict[str, type], horizon: int = MAX_PATH_LENGTH):
        if not isinstance(classes, dict) or not classes:
            raise ValueError(f"classes expected a non-empty dict env_name -> metaworld env class, got {classes!r}")
        self.classes = dict(classes)
        self.horizon = _check_horizon(horizon)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self._envs: dict[str, Any] = {}
        self._task = None
        self._env = None
        self._steps = 0

    @property
    def task(self) -> Any:
        return self._task

    @task.setter
    def task(self, task: Any) -> None:
        env_name = getattr(task, "env_name", None)
        if not (isinstance(env_name, str) and isinstance(getattr(task, "data", None), bytes)):
            raise TypeError(f"task expected a metaworld.Task (env_name, data), got {type(task).__name__}")
        if env_name not in self.classes:
            raise ValueError(f"task of env {env_name!r}, but this sub-env expected one of {sorted(self.classes)}")
        if env_name not in self._envs:
            self._envs[env_name] = self.classes[env_name]()
        self._env = self._envs[env_name]
        self._env.set_task(task)
        self._task = task

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the current task's env (metaworld ignores ``seed``: a frozen task resets the same way)."""
        super().reset(seed=seed)
        if self._env is None:
            raise RuntimeError("MetaWorldTaskEnv: set .task before reset")
        self._steps = 0
        obs, info = self._env.reset()  # metaworld ignores seeds: a frozen task resets the same way
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One step of the current task; truncated at ``horizon`` steps (metaworld raises past 500)."""
        if self._env is None:
            raise RuntimeError("MetaWorldTaskEnv: set .task before stepping")
        obs, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float32))
        self._steps += 1
        truncated = bool(truncated) or self._steps >= self.horizon
        return obs, float(reward), bool(terminated), truncated, info

    def close(self) -> None:
        """Close every env class this wrapper has built."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._env = None


class MetaWorldFamily:
    """Meta-World ``ML1`` (one env class, e.g. ``reach-v3``) or ``ML10`` as a task family.

    ``train_tasks`` / ``test_tasks``: metaworld's splits (lists of ``metaworld.Task``);
    ``make_env() -> MetaWorldTaskEnv`` over the classes of both splits;
    ``sample_tasks(n, rng, split)`` draws ``n`` tasks of a split, classes round robin over the
    meta-batch slots (slot ``i`` gets class ``i % num_classes``), goals at random without
    replacement within a class while they last.

    Args:
        benchmark: ``"ML1"`` or ``"ML10"``.
        env_name: ML1's env (any metaworld v3 name, e.g. ``"reach-v3"``); must be None for ML10.
        seed: metaworld's task-generation seed (goals are a function of it).
        horizon: steps per episode, at most 500 (metaworld's ``max_path_length``).
    """

    obs_dim = OBS_DIM
    act_dim = ACT_DIM

    def __init__(self, benchmark: str = "ML1", env_name: str | None = "reach-v3", seed: int = 0,
                 horizon: int = MAX_PATH_LENGTH):
        if benchmark not in METAWORLD_BENCHMARKS:
            raise ValueError(f"unknown Meta-World benchmark {benchmark!r}; expected one of {list(METAWORLD_BENCHMARKS)}")
        checks.int_in_range(seed, "seed")
        self.horizon = _check_horizon(horizon)
        metaworld = _import_metaworld()
        if benchmark == "ML1":
            names = sorted(metaworld.ML1.ENV_NAMES)
            if env_name not in names:
                raise ValueError(f"unknown Meta-World env_name {env_name!r} for ML1; expected one of {names}")
            bench = metaworld.ML1(env_name, seed=seed)
        else:
            if env_name is not None:
                raise ValueError(f"env_name must be None for {benchmark} (it fixes its own envs), got {env_name!r}")
            bench = metaworld.ML10(seed=seed)
        self.benchmark, self.env_name, self.seed = benchmark, env_name, seed
        self.name = f"{benchmark}-{env_name}" if benchmark == "ML1" else benchmark
        self.train_classes = dict(bench.train_classes)
        self.test_classes = dict(bench.test_classes)
        self.train_tasks = list(bench.train_tasks)
        self.test_tasks = list(bench.test_tasks)

    def classes(self, split: str) -> list[str]:
        """Env names of ``split`` (``"train"`` or ``"test"``), in metaworld's order."""
        return list(self._split(split)[0])

    def _split(self, split: str) -> tuple[dict[str, type], list]:
        if split == "train":
            return self.train_classes, self.train_tasks
        if split == "test":
            return self.test_classes, self.test_tasks
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def make_env(self) -> MetaWorldTaskEnv:
        """A new sub-env that can be set to any task of this benchmark (train or test classes)."""
        return MetaWorldTaskEnv({**self.train_classes, **self.test_classes}, self.horizon)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator, split: str = "train") -> list:
        """``num_tasks`` tasks of ``split``; slot ``i`` is of class ``classes(split)[i % C]``."""
        checks.positive_int(num_tasks, "num_tasks")
        checks.instance(rng, "rng", np.random.Generator)
        classes, tasks = self._split(split)
        names = list(classes)
        by_class = {n: [t for t in tasks if t.env_name == n] for n in names}
        per_class = [sum(1 for i in range(num_tasks) if i % len(names) == c) for c in range(len(names))]
        picks = {}
        for c, n in enumerate(names):
            pool = by_class[n]
            # without replacement while the class has goals left, then with
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(math.ceil(per_class[c] / len(pool)) or 1)])
            picks[n] = [pool[j] for j in order[: per_class[c]]]
        return [picks[names[i % len(names)]].pop(0) for i in range(num_tasks)]

    def __repr__(self) -> str:
        return f"MetaWorldFamily({self.benchmark!r}, env_name={self.env_name!r}, seed={self.seed}, horizon={self.horizon})"


def episode_success(success: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Whether each episode reached ``info["success"]`` at any of its steps.

    success, mask ``[N, T, E]`` (mask 1 where the step happened) -> ``[N, E]`` bool.
    """
    if not isinstance(success, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise TypeError(f"success and mask must be tensors, got {type(success).__name__} and {type(mask).__name__}")
    if success.ndim != 3 or success.shape != mask.shape:
        raise ValueError(f"success and mask expected the same shape [N, T, E], got {tuple(success.shape)} and {tuple(mask.shape)}")
    return ((success != 0) & (mask != 0)).any(dim=1)


def success_rates(solved: torch.Tensor, env_names: Sequence[str]) -> dict[str, Any]:
    """Per-task, per-class and overall success rates of solved episodes.

    solved ``[N, E]`` bool (:func:`episode_success`); env_names: the class of each task (length N).
    Returns ``{"per_task": [N floats], "per_class": {name: rate}, "overall": mean over classes}``.
    """
    if not isinstance(solved, torch.Tensor) or solved.ndim != 2:
        raise ValueError(f"solved expected a [N, E] tensor, got {getattr(solved, 'shape', type(solved).__name__)}")
    if len(env_names) != solved.shape[0]:
        raise ValueError(f"env_names expected one name per task ({solved.shape[0]}), got {len(env_names)}")
    per_task = solved.to(torch.float64).mean(dim=1)
    per_class: dict[str, float] = {}
    for name in dict.fromkeys(env_names):
        idx = [i for i, n in enumerate(env_names) if n == name]
        per_class[name] = float(per_task[idx].mean())
    return {"per_task": [float(x) for x in per_task], "per_class": per_class,
            "overall": float(np.mean(list(per_class.values())))}
