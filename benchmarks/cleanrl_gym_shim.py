"""HalfCheetah-v4 for the old-``gym`` CleanRL script, run by ``benchmarks/agents_vs_cleanrl.py``
inside the CleanRL environment (``benchmarks/cleanrl_env.sh``); never imported by the library.

Why: cleanrl 1.2.0's ``td3_continuous_action.py`` is still written for gym 0.23 (``env.seed``,
4-tuple ``step``, a list of per-env ``infos`` with ``"terminal_observation"``), and gym 0.23 has
no MuJoCo env that runs without ``mujoco_py`` (its ``-v3`` envs) or with the ``mujoco``
bindings (``-v4`` came with gym 0.24, whose vector envs return a dict of infos that the script
cannot read). So the benchmark passes ``--env-id cleanrl_gym_shim:HalfCheetah-v4``: gym 0.23's
``make`` imports this module, which registers ``HalfCheetah-v4`` in gym's registry as a thin
gym-0.23 env over gymnasium 0.29's ``HalfCheetah-v4`` (the same MuJoCo model file and dynamics
as gymnasium 1.x's ``HalfCheetah-v5``, the env our side runs). The adapter only translates the
API (one Python call per step), so the script's own code and costs are untouched.
"""

from __future__ import annotations

import gym
import gymnasium
import numpy as np


class GymnasiumToGym023(gym.Env):
    """A gymnasium env behind the gym 0.23 API: ``seed()``, ``reset() -> obs`` and
    ``step() -> (obs, reward, done, info)`` with ``info["TimeLimit.truncated"]`` on time-outs."""

    metadata = {"render_modes": []}

    def __init__(self, env_id: str = "HalfCheetah-v4"):
        self._env = gymnasium.make(env_id)
        space = self._env.observation_space
        self.observation_space = gym.spaces.Box(space.low, space.high, space.shape, np.float32)
        space = self._env.action_space
        self.action_space = gym.spaces.Box(space.low, space.high, space.shape, np.float32)
        self._seed: int | None = None

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed]

    def reset(self, **kwargs):
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None  # later episodes continue the seeded generator
        return obs.astype(np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(action)
        info = dict(info)
        if truncated and not terminated:
            info["TimeLimit.truncated"] = True
        return obs.astype(np.float32), float(reward), bool(terminated or truncated), info

    def close(self) -> None:
        self._env.close()


if "HalfCheetah-v4" not in gym.envs.registry.env_specs:
    gym.envs.registration.register(id="HalfCheetah-v4", entry_point=GymnasiumToGym023,
                                   kwargs={"env_id": "HalfCheetah-v4"})
