"""A task-aware vector sampler: meta-batch x episodes gymnasium sub-envs stepped together.

It lives in ``runners`` because it owns state: the sub-envs (MuJoCo / Meta-World simulators),
their vector env (sync, or async worker processes) and the random generators. Everything it
hands back is the pure layers' data: :class:`~functional_metarl.envs.Episodes`, task-major
``[N, T, E, ...]``, the same format ``envs.rollout`` gives for the pure task families, so
``meta.make_rl_batches`` / ``adapt_tasks`` / ``maml_trpo_step`` run on it unchanged.

One :meth:`TaskVectorSampler.sample` = one episode of at most ``horizon`` steps in each of the
``N * E`` sub-envs; sub-env ``i`` runs task ``i // E`` (set through ``envs.set_attr("task",
...)`` before the reset). Each step, the observations of all sub-envs go to the policy's
device as one ``[N, E, obs_dim]`` tensor and the policy runs once for all tasks
(``apply_stacked`` for per-task params, ``apply`` for shared ones); the Gaussian action
``mean + exp(log_std) * noise`` is recorded as sampled and clipped into the action box only
on its way to the simulator.

Episode ends, the gymnasium 1.x way: a sub-env's episode ends at ``terminated or truncated``
(truncation = the env's time limit); its later steps are padding (mask 0, zeros in obs,
actions and rewards). The vector env may autoreset ``NEXT_STEP`` (gymnasium's default: the
step after the end resets that sub-env and ignores its action) or ``SAME_STEP`` (the end step
already returns the reset observation); either way the steps after the end belong to no
episode of this sample and are masked. ``DISABLED`` is refused, since a finished sub-env
could then not be stepped along with the others. Once every sub-env has ended, sampling
stops early.

Seeds: the sampler's ``seed`` fixes a torch generator (action noise) and a numpy generator
(the per-sub-env reset seeds of each call), so the same seed and the same sequence of calls
give the same episodes; ``noise=`` / ``reset_seeds=`` give them explicitly instead.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from ..distributions import GAUSSIAN
from ..envs import Episodes, sample_noise
from ..nn import Functional
from .. import checks
from ..tree import Params

__all__ = ["TaskVectorSampler"]

_MODES = {"sync", "async"}


class TaskVectorSampler:
    """``num_tasks * episodes_per_task`` sub-envs from ``make_env``, stepped as one vector env.

    Args:
        make_env: ``() -> gym.Env`` with a settable ``task`` attribute (e.g. a task family's
            ``make_env``); called once per sub-env (in the worker process with ``"async"``).
        num_tasks: ``N``, tasks per call (the meta-batch).
        episodes_per_task: ``E``, episodes per task per call.
        horizon: ``T``, the most steps an episode may take (the env's own time limit may end
            it sooner).
        vectorization: ``"sync"`` (``gym.vector.SyncVectorEnv``) or ``"async"``
            (``AsyncVectorEnv``, one process per sub-env; pays off only for slow envs and
            enough cores).
        autoreset_mode: ``"next_step"`` (gymnasium's default) or ``"same_step"``.
        seed: seeds the action noise and the reset seeds.
        action_scale: the simulator gets ``clip(action_scale * action, low, high)``; the episodes
            keep the policy's own action. ``0.1`` is pytorch-maml-rl's ``normalization_scale: 10``
            (the policy acts in ``[-10, 10]`` mapped onto a ``[-1, 1]`` box): a unit-std initial
            policy then explores with std 0.1 in the env's units instead of saturating the box.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        *,
        vectorization: str = "sync",
        autoreset_mode: str | gym.vector.AutoresetMode = "next_step",
        seed: int = 0,
        action_scale: float = 1.0,
    ):
        checks.function(make_env, "make_env", "() -> gym.Env")
        self.num_tasks = checks.positive_int(num_tasks, "num_tasks")
        self.episodes_per_task = checks.positive_int(episodes_per_task, "episodes_per_task")
        self.horizon = checks.positive_int(horizon, "horizon")
        checks.one_of(vectorization, "vectorization", _MODES)
        modes = {"next_step": gym.vector.AutoresetMode.NEXT_STEP, "same_step": gym.vector.AutoresetMode.SAME_STEP}
        mode = autoreset_mode if isinstance(autoreset_mode, gym.vector.AutoresetMode) else modes.get(autoreset_mode)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {autoreset_mode!r}")
        checks.int_in_range(seed, "seed")
        self.action_scale = checks.positive_number(action_scale, "action_scale")
        self.vectorization, self.autoreset_mode, self.seed = vectorization, mode, seed
        self.num_envs = self.num_tasks * self.episodes_per_task
        cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
        self.envs = cls([make_env] * self.num_envs, autoreset_mode=mode)
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        for what, space in (("observation", obs_space), ("action", act_space)):
            if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
                self.close()
                raise TypeError(f"the env's {what} space must be a 1-D Box, got {space}")
        self.obs_dim, self.act_dim = obs_space.shape[0], act_space.shape[0]
        self._low = np.asarray(act_space.low, dtype=np.float64)
        self._high = np.asarray(act_space.high, dtype=np.float64)
        try:
            self.envs.get_attr("task")
        except AttributeError as err:
            self.close()
            raise TypeError("make_env must build envs with a settable 'task' attribute (a task wrapper)") from err
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.steps_taken = 0  # env steps with mask 1 over all calls (the throughput benchmark counts these)

    # ------------------------------------------------------------------ checks
    def check_policy(self, policy: Functional, params: Params, params_per_task: bool = False) -> None:
        """Raise if the policy's input / output sizes do not fit the env's spaces."""
        if not isinstance(policy, Functional):
            raise TypeError(f"policy must be a Functional (e.g. nn.gaussian_policy), got {type(policy).__name__}")
        if policy.distribution is not GAUSSIAN:
            name = None if policy.distribution is None else policy.distribution.name
            raise TypeError(f"the simulators' actions are continuous boxes: policy expected distribution GAUSSIAN "
                            f"(nn.gaussian_policy), got {name!r}")
        if policy.in_dim != self.obs_dim:
            raise ValueError(
                f"the env's observations have {self.obs_dim} numbers but the policy expected in_dim {policy.in_dim}; "
                f"build it as gaussian_policy({self.obs_dim}, {self.act_dim}, ...)"
            )
        log_std = params.get("log_std") if isinstance(params, dict) else None
        if isinstance(log_std, torch.Tensor):
            act_dim = log_std.shape[-1]
            if act_dim != self.act_dim:
                raise ValueError(
                    f"the env's actions have {self.act_dim} numbers but the policy outputs {act_dim}; "
                    f"build it as gaussian_policy({self.obs_dim}, {self.act_dim}, ...)"
                )

    def _check_tasks(self, tasks: Sequence[Any]) -> list:
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise TypeError(f"tasks must be a sequence of {self.num_tasks} tasks, got {type(tasks).__name__}")
        if len(tasks) != self.num_tasks:
            raise ValueError(f"tasks expected {self.num_tasks} tasks (num_tasks), got {len(tasks)}")
        return list(tasks)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        params: Params,
        tasks: Sequence[Any],
        policy: Functional,
        *,
        params_per_task: bool = False,
        noise: torch.Tensor | None = None,
        reset_seeds: Sequence[int] | None = None,
        deterministic: bool = False,
    ) -> Episodes:
        """One episode per sub-env; ``Episodes`` leaves ``[N, T, E, ...]`` on the params' device.
        See :meth:`sample_with_info`."""
        return self.sample_with_info(params, tasks, policy, params_per_task=params_per_task, noise=noise,
                                     reset_seeds=reset_seeds, deterministic=deterministic)[0]

    def sample_with_info(
        self,
        params: Params,
        tasks: Sequence[Any],
        policy: Functional,
        *,
        params_per_task: bool = False,
        noise: torch.Tensor | None = None,
        reset_seeds: Sequence[int] | None = None,
        deterministic: bool = False,
        info_keys: Sequence[str] = (),
    ) -> tuple[Episodes, dict[str, torch.Tensor]]:
        """Roll out ``policy`` on ``tasks`` (length N), E episodes each.

        Args:
            params: shared params, or (``params_per_task=True``) leaves ``[N, *shape]``.
            tasks: one task per meta-batch slot, each valid for the env's ``task`` setter.
            noise: ``[T, N, E, act_dim]`` standard-normal action noise (default: drawn from the
                sampler's generator; zeros with ``deterministic=True``: the policy's mean).
            reset_seeds: ``N * E`` ints, sub-env ``i``'s reset seed (default: drawn from the
                sampler's numpy generator).
            info_keys: ``info`` entries to record per step (e.g. ``"success"``).

        Returns:
            ``(episodes, info)`` with info ``{key: [N, T, E] float tensor}``, 0 on padding.
        """
        tasks = self._check_tasks(tasks)
        checks.flag(params_per_task, "params_per_task")
        checks.flag(deterministic, "deterministic")
        self.check_policy(policy, {k: v[0] for k, v in params.items()} if params_per_task and isinstance(params, dict) else params)
        device = next(iter(params.values())).device
        n, e, t_max, a = self.num_tasks, self.episodes_per_task, self.horizon, self.act_dim
        if noise is None:
            noise = (torch.zeros(t_max, n, e, a) if deterministic
                     else sample_noise(t_max, n, e, a, self.generator, device="cpu"))
        checks.floating_tensor(noise, "noise", shape=(t_max, n, e, a))  # [T, N, E, act_dim]
        noise = noise.to(device=device, dtype=torch.float32)
        if reset_seeds is None:
            reset_seeds = [int(s) for s in self.rng.integers(0, 2**31 - 1, size=self.num_envs)]
        if len(reset_seeds) != self.num_envs:
            raise ValueError(f"reset_seeds expected {self.num_envs} seeds (N * E), got {len(reset_seeds)}")
        forward = policy.apply_stacked if params_per_task else policy.apply

        self.envs.set_attr("task", [tasks[i // e] for i in range(self.num_envs)])
        obs_np, _ = self.envs.reset(seed=[int(s) for s in reset_seeds])
        alive = np.ones(self.num_envs, dtype=bool)
        # Step records in numpy, time-major over the flat sub-env axis; padding is zeroed and the
        # task axis split off once at the end (cheaper per step than tensor writes).
        obs_buf = np.zeros((t_max, self.num_envs, self.obs_dim), dtype=np.float32)
        act_buf = np.zeros((t_max, self.num_envs, a), dtype=np.float32)
        rew_buf = np.zeros((t_max, self.num_envs), dtype=np.float32)
        mask_buf = np.zeros((t_max, self.num_envs), dtype=bool)
        info_bufs = {k: np.zeros((t_max, self.num_envs), dtype=np.float32) for k in info_keys}
        with torch.no_grad():
            for t in range(t_max):
                obs_buf[t] = obs_np
                mask_buf[t] = alive
                obs = torch.from_numpy(obs_buf[t]).view(n, e, self.obs_dim)
                mean, log_std = forward(params, obs.to(device))
                action = (mean + torch.exp(log_std) * noise[t]).cpu().reshape(self.num_envs, a).numpy()
                act_buf[t] = action
                env_action = np.clip(self.action_scale * action.astype(np.float64), self._low, self._high)
                obs_np, reward, terminated, truncated, info = self.envs.step(env_action.astype(np.float32))
                rew_buf[t] = reward
                for k in info_keys:
                    info_bufs[k][t] = self._info_values(info, k)
                self.steps_taken += int(alive.sum())
                alive = alive & ~(np.asarray(terminated) | np.asarray(truncated))
                if not alive.any():
                    break

        def task_major(buf: np.ndarray) -> torch.Tensor:
            m = mask_buf.reshape(mask_buf.shape + (1,) * (buf.ndim - 2))
            out = torch.from_numpy(np.where(m, buf, 0).astype(np.float32))
            return out.view(t_max, n, e, *buf.shape[2:]).transpose(0, 1).contiguous().to(device)

        episodes = Episodes(obs=task_major(obs_buf), actions=task_major(act_buf), rewards=task_major(rew_buf),
                            mask=task_major(mask_buf.astype(np.float32)))
        if not torch.isfinite(episodes.rewards).all() or not torch.isfinite(episodes.obs).all():
            raise FloatingPointError("the simulator returned non-finite observations or rewards")
        return episodes, {k: task_major(v) for k, v in info_bufs.items()}

    def _info_values(self, info: dict, key: str) -> np.ndarray:
        # SAME_STEP puts the ending step's info under "final_info" for the sub-envs that ended.
        final = info.get("final_info")
        if key not in info and not (isinstance(final, dict) and key in final):
            raise KeyError(f"the env's step info has no {key!r}; it has {sorted(info)}")
        values = (np.asarray(info[key], dtype=np.float64).copy() if key in info
                  else np.zeros(self.num_envs, dtype=np.float64))
        if isinstance(final, dict) and key in final:
            ended = np.asarray(final.get(f"_{key}", np.zeros(self.num_envs, dtype=bool)))
            values[ended] = np.asarray(final[key], dtype=np.float64)[ended]
        return values

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The generators' states (for checkpoints)."""
        return {"generator": self.generator.get_state(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generators' states written by ``state_dict``."""
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        """Close the vector env (and its worker processes)."""
        envs = getattr(self, "envs", None)
        if envs is not None:
            envs.close()
            self.envs = None

    def __enter__(self) -> TaskVectorSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
