"""Batched episode collection for any pure task family (:class:`envs.TaskFamily`).

``rollout`` steps a whole ``[tasks, episodes]`` batch together for ``horizon`` steps; actions
come from explicit ``noise`` (standard normal for a Gaussian policy, standard Gumbel for a
categorical one) and the env's randomness from its own explicit noise (``env.sample_noise``),
so the same noise gives the same episodes.

Axis convention (the one place it is converted): pure envs and the ``rl`` math are written for
one task with time-major ``[T, E]`` axes (``E`` = episodes, the batch); ``rollout`` returns
task-major :class:`Episodes` ``[N, T, E, ...]``, and everything per task is ``vmap``-ed over that
leading task axis (``meta.make_rl_batches`` does it for the returns, baselines and GAE).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import optree
import torch

from .. import checks
from ..distributions import GAUSSIAN, Distribution
from ..nn import Functional
from ..tree import Params
from .protocol import NoNoise, TaskFamily, noise_at, repeat_tasks

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
        checks.positive_int(value, name)
    checks.instance(distribution, "distribution", Distribution)
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    device = generator.device if generator is not None and device is None else device
    shape = (horizon, num_tasks, num_episodes, act_dim)
    if not distribution.discrete:
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    uniform = torch.rand(*shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny  # keeps both logs finite when a uniform draw is exactly 0
    return -torch.log(-torch.log(uniform.clamp_min(tiny)).clamp_min(tiny))


def rollout(
    params: Params,
    tasks: Any,
    noise: torch.Tensor,
    env: TaskFamily,
    policy: Functional,
    *,
    env_noise: Any = NoNoise(),
    params_per_task: bool = False,
) -> Episodes:
    """Run ``policy`` on every task of ``tasks`` for ``T`` steps, ``E`` episodes each (no grad).

    Args:
        params: shared params, or (``params_per_task=True``) a stack with a leading task axis.
        tasks: a batch of ``N`` tasks of ``env`` (e.g. ``env.sample_tasks(N, generator)``).
        noise: action noise ``[T, N, E, action_size]`` from :func:`sample_noise` with the
            policy's distribution. Gaussian: action = mean + exp(log_std) * noise. Categorical
            (``action_size`` = the number of actions): action = argmax(logits + noise).
        env: any :class:`envs.TaskFamily`; its actions must be what the policy emits.
        policy: a policy template (``nn.gaussian_policy`` or ``nn.categorical_policy``).
        env_noise: the env's noise, ``env.sample_noise(T, (N, E), generator)`` (leaves
            ``[T, N, E, ...]``); the default :class:`envs.NoNoise` fits deterministic families.

    Returns:
        :class:`Episodes` with task-major leaves ``[N, T, E, ...]``. A step after the end of
        its episode is padding: mask 0 and reward 0.
    """
    if not isinstance(policy, Functional) or policy.distribution is None:
        got = type(policy).__name__ if not isinstance(policy, Functional) else "a network with distribution=None"
        raise TypeError(f"policy must be a policy template (nn.gaussian_policy or nn.categorical_policy), got {got}")
    checks.instance(env, "env", TaskFamily)
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a Tensor [T, N, E, act_dim], got {type(noise).__name__}")
    if noise.ndim != 4:
        raise ValueError(f"noise expected shape [T, N, E, act_dim], got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise TypeError(f"noise must be floating point, got {noise.dtype}")
    if 0 in noise.shape:
        raise ValueError(f"noise has an empty axis: shape {tuple(noise.shape)} (T, N, E, act_dim must be >= 1)")
    horizon, num_tasks, num_episodes, act_dim = noise.shape
    if policy.distribution.discrete != env.discrete_actions:
        needs = "discrete actions (num_actions)" if policy.distribution.discrete else "continuous actions (act_dim)"
        raise TypeError(f"a policy with the {policy.distribution.name} distribution needs an env with {needs}; "
                        f"env {type(env).__name__} has {'discrete' if env.discrete_actions else 'continuous'} actions")
    if act_dim != env.action_size:
        raise ValueError(f"noise expected {env.action_size} in its last axis (the env's action_size: "
                         f"{'num_actions' if env.discrete_actions else 'act_dim'}), got {act_dim}")
    checks.flag(params_per_task, "params_per_task")
    for leaf in optree.tree_leaves(tasks):
        if leaf.ndim == 0 or leaf.shape[0] != num_tasks:
            raise ValueError(f"noise has {num_tasks} tasks but tasks has a leaf of shape {tuple(leaf.shape)}")
    for leaf in optree.tree_leaves(env_noise):
        if tuple(leaf.shape[:3]) != (horizon, num_tasks, num_episodes):
            raise ValueError(f"env_noise leaves expected shape [{horizon}, {num_tasks}, {num_episodes}, ...] "
                             f"[T, N, E, ...], got {tuple(leaf.shape)}")
    if params_per_task:
        leading = {p.shape[0] for p in params.values()} if isinstance(params, dict) else set()
        if leading != {num_tasks}:
            raise ValueError(f"params_per_task=True expects every params leaf to lead with the {num_tasks} tasks, "
                             f"got leading sizes {sorted(leading)}")
    forward = policy.apply_stacked if params_per_task else policy.apply
    batch = repeat_tasks(tasks, num_episodes)
    has_noise = bool(optree.tree_leaves(env_noise))  # a noise-free family's NoNoise is passed as it is
    with torch.no_grad():
        state, obs = env.reset(batch, noise_at(env_noise, 0) if has_noise else env_noise)
        all_obs, all_actions, all_rewards, all_done = [], [], [], []
        for t in range(horizon):
            action = policy.distribution.sample(policy.distribution.params(forward(params, obs)), noise[t])
            all_obs.append(obs)
            all_actions.append(action)
            state, obs, reward, done = env.step(state, action, batch, noise_at(env_noise, t) if has_noise else env_noise)
            all_rewards.append(reward)
            all_done.append(done)
        # The mask (step t happened = no step before it ended the episode) and the padding's
        # zero rewards in a few ops at the end: a rollout step is dispatch-bound, so every op
        # taken out of the loop counts.
        ended = torch.cumsum(torch.stack(all_done, dim=1), dim=1) > 0  # [N, T, E]: ended at or before t
        happened = torch.cat([torch.ones_like(ended[:, :1]), torch.logical_not(ended[:, :-1])], dim=1)
        rewards = torch.stack(all_rewards, dim=1)
        rewards = torch.where(happened, rewards, torch.zeros((), dtype=rewards.dtype))
    return Episodes(
        obs=torch.stack(all_obs, dim=1),
        actions=torch.stack(all_actions, dim=1),
        rewards=rewards,
        mask=happened.to(noise.dtype),
    )
