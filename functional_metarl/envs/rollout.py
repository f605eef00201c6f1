"""Batched episode collection for pure task families and Gaussian policies.

``rollout`` steps a whole ``[tasks, episodes]`` batch together for ``horizon`` steps; actions
come from explicit standard-normal ``noise``, so the same noise gives the same episodes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from ..nn import Functional
from ..tree import Params

__all__ = ["Episodes", "rollout", "sample_noise"]


class Episodes(NamedTuple):
    """A batch of padded episodes, time-major inside each task.

    obs ``[N, T, E, obs_dim]``, actions ``[N, T, E, act_dim]``, rewards ``[N, T, E]``,
    mask ``[N, T, E]`` (1 where the step happened). ``N`` = tasks, ``E`` = episodes per task.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor


def sample_noise(
    horizon: int, num_tasks: int, num_episodes: int, act_dim: int, generator: torch.Generator | None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard-normal action noise ``[T, N, E, act_dim]`` from ``generator``."""
    device = generator.device if generator is not None and device is None else device
    return torch.randn(horizon, num_tasks, num_episodes, act_dim, generator=generator, device=device, dtype=dtype)


def rollout(
    env: Any,
    policy: Functional,
    params: Params,
    tasks: Any,
    noise: torch.Tensor,
    params_per_task: bool = False,
) -> Episodes:
    """Run ``policy`` (Gaussian: ``apply -> (mean, log_std)``) on every task for ``T`` steps.

    Args:
        env: a pure task family with ``reset(tasks, E)`` and ``step(state, action, tasks)``.
        params: shared params, or (``params_per_task=True``) a stack with a leading task axis.
        noise: ``[T, N, E, act_dim]``; action = mean + exp(log_std) * noise.
    """
    if noise.ndim != 4:
        raise ValueError(f"noise expected shape [T, N, E, act_dim], got {tuple(noise.shape)}")
    horizon, num_tasks, num_episodes, act_dim = noise.shape
    if act_dim != env.act_dim:
        raise ValueError(f"noise expected act_dim {env.act_dim} in its last axis, got {act_dim}")
    forward = policy.apply_stacked if params_per_task else policy.apply
    with torch.no_grad():
        state, obs = env.reset(tasks, num_episodes)
        if obs.shape[0] != num_tasks:
            raise ValueError(f"noise has {num_tasks} tasks but tasks batch has {obs.shape[0]}")
        all_obs, all_actions, all_rewards, all_masks = [], [], [], []
        for t in range(horizon):
            mean, log_std = forward(params, obs)
            action = mean + torch.exp(log_std) * noise[t]
            all_masks.append(~state.done)
            all_obs.append(obs)
            all_actions.append(action)
            state, obs, reward, _ = env.step(state, action, tasks)
            all_rewards.append(reward)
    return Episodes(
        obs=torch.stack(all_obs, dim=1),
        actions=torch.stack(all_actions, dim=1),
        rewards=torch.stack(all_rewards, dim=1),
        mask=torch.stack(all_masks, dim=1).to(noise.dtype),
    )
