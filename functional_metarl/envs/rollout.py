"""Batched episode collection for pure task families.

``rollout`` steps a whole ``[tasks, episodes]`` batch together for ``horizon`` steps; actions
come from explicit ``noise`` (standard normal for a Gaussian policy, standard Gumbel for a
categorical one), so the same noise gives the same episodes.

Axis convention (the one place it is converted): pure envs and the ``rl`` math are written for
one task with time-major ``[T, E]`` axes (``E`` = episodes, the batch); ``rollout`` returns
task-major :class:`Episodes` ``[N, T, E, ...]``, and everything per task is ``vmap``-ed over that
leading task axis (``meta.make_rl_batches`` does it for the returns, baselines and GAE).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..distributions import GAUSSIAN, Distribution
from ..nn import Functional
from ..nn.core import _check_positive_int
from ..tree import Params

__all__ = ["Episodes", "rollout", "sample_noise"]


class Episodes(NamedTuple):
    """A batch of padded episodes, task-major, time-major inside each task.

    obs ``[N, T, E, obs_dim]``; actions ``[N, T, E, act_dim]`` (Gaussian policy) or integer
    ``[N, T, E]`` (categorical policy); rewards ``[N, T, E]``; mask ``[N, T, E]`` (1 where the
    step happened). ``N`` = tasks, ``T`` = horizon, ``E`` = episodes per task.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor


def sample_noise(
    horizon: int, num_tasks: int, num_episodes: int, act_dim: int, generator: torch.Generator | None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32, *, distribution: Distribution = GAUSSIAN,
) -> torch.Tensor:
    """Action noise ``[T, N, E, act_dim]`` from ``generator``.

    ``distribution``: the policy's ``distributions.Distribution``. ``GAUSSIAN``: standard normal
    (action = mean + std * noise); ``CATEGORICAL``: standard Gumbel, with ``act_dim`` = the number
    of actions (action = argmax(logits + noise), an exact sample of softmax(logits)).
    """
    for value, name in ((horizon, "horizon"), (num_tasks, "num_tasks"), (num_episodes, "num_episodes"),
                        (act_dim, "act_dim")):
        _check_positive_int(value, name)
    if not isinstance(distribution, Distribution):
        raise TypeError(f"distribution must be a distributions.Distribution (GAUSSIAN, CATEGORICAL), got {distribution!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    device = generator.device if generator is not None and device is None else device
    shape = (horizon, num_tasks, num_episodes, act_dim)
    if not distribution.discrete:
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    uniform = torch.rand(*shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny  # keeps both logs finite when a uniform draw is exactly 0
    return -torch.log(-torch.log(uniform.clamp_min(tiny)).clamp_min(tiny))


def _env_action_size(env: Any, policy: Functional) -> int:
    """The last axis the noise must have: ``env.act_dim`` (Gaussian) or ``env.num_actions``."""
    attr = "num_actions" if policy.distribution.discrete else "act_dim"
    if not hasattr(env, attr):
        raise TypeError(f"env {type(env).__name__} has no {attr!r}; a {policy.distribution.name} policy needs an env "
                        f"with {'continuous actions (act_dim)' if attr == 'act_dim' else 'discrete actions (num_actions)'}")
    return getattr(env, attr)


def rollout(
    params: Params,
    tasks: Any,
    noise: torch.Tensor,
    env: Any,
    policy: Functional,
    *,
    params_per_task: bool = False,
) -> Episodes:
    """Run ``policy`` on every task of ``tasks`` for ``T`` steps, ``E`` episodes each (no grad).

    Args:
        params: shared params, or (``params_per_task=True``) a stack with a leading task axis.
        tasks: a batch of ``N`` tasks of ``env`` (e.g. ``env.sample_tasks(N, generator)``).
        noise: ``[T, N, E, act_dim]`` from :func:`sample_noise` with the policy's distribution.
            Gaussian: action = mean + exp(log_std) * noise. Categorical (``act_dim`` =
            ``env.num_actions``): action = argmax(logits + noise).
        env: a pure task family with ``reset(tasks, E)`` and ``step(state, action, tasks)``.
        policy: a policy template (``nn.gaussian_policy`` or ``nn.categorical_policy``).

    Returns:
        :class:`Episodes` with task-major leaves ``[N, T, E, ...]``.
    """
    if not isinstance(policy, Functional) or policy.distribution is None:
        got = type(policy).__name__ if not isinstance(policy, Functional) else "a network with distribution=None"
        raise TypeError(f"policy must be a policy template (nn.gaussian_policy or nn.categorical_policy), got {got}")
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a Tensor [T, N, E, act_dim], got {type(noise).__name__}")
    if noise.ndim != 4:
        raise ValueError(f"noise expected shape [T, N, E, act_dim], got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise TypeError(f"noise must be floating point, got {noise.dtype}")
    if 0 in noise.shape:
        raise ValueError(f"noise has an empty axis: shape {tuple(noise.shape)} (T, N, E, act_dim must be >= 1)")
    horizon, num_tasks, num_episodes, act_dim = noise.shape
    expected = _env_action_size(env, policy)
    if act_dim != expected:
        raise ValueError(f"noise expected {expected} in its last axis (the env's "
                         f"{'num_actions' if policy.distribution.discrete else 'act_dim'}), got {act_dim}")
    if not isinstance(params_per_task, bool):
        raise TypeError(f"params_per_task must be a bool, got {type(params_per_task).__name__}")
    forward = policy.apply_stacked if params_per_task else policy.apply
    with torch.no_grad():
        state, obs = env.reset(tasks, num_episodes)
        if obs.shape[0] != num_tasks:
            raise ValueError(f"noise has {num_tasks} tasks but tasks batch has {obs.shape[0]}")
        if params_per_task:
            leading = {p.shape[0] for p in params.values()} if isinstance(params, dict) else set()
            if leading != {num_tasks}:
                raise ValueError(f"params_per_task=True expects every params leaf to lead with the {num_tasks} tasks, "
                                 f"got leading sizes {sorted(leading)}")
        all_obs, all_actions, all_rewards, all_done_before = [], [], [], []
        for t in range(horizon):
            action = policy.distribution.sample(policy.distribution.params(forward(params, obs)), noise[t])
            all_done_before.append(state.done)
            all_obs.append(obs)
            all_actions.append(action)
            state, obs, reward, _ = env.step(state, action, tasks)
            all_rewards.append(reward)
        # The mask (step t happened = the episode was not done before it) in one op at the end:
        # a rollout step is dispatch-bound, so every op taken out of the loop counts.
        mask = torch.logical_not(torch.stack(all_done_before, dim=1)).to(noise.dtype)
    return Episodes(
        obs=torch.stack(all_obs, dim=1),
        actions=torch.stack(all_actions, dim=1),
        rewards=torch.stack(all_rewards, dim=1),
        mask=mask,
    )
