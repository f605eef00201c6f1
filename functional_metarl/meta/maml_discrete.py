"""MAML with a categorical policy on the RL² task families (bandits, tabular MDPs).

The comparison with RL² is on the same trial budget: a trial of ``n`` episodes of a task is
split into ``n_pre`` episodes of the meta-learned policy, one inner policy-gradient step
(``meta.adapt_tasks``) on them, and ``n - n_pre`` episodes of the adapted policy; the trial's
total reward is the sum over both parts. Meta-training uses the same split (``train`` = the
first ``n_pre`` episodes, ``valid`` = the rest) through the MAML-RL path (``meta.maml_trpo_step``
with ``nn.categorical_policy``).

Episodes of one task are independent copies of the task stepping side by side (batch
``[N tasks, E episodes]``); their noise is cut from the env's trial noise, so MAML and RL² can
be scored on the very same draws: the env noise of trial step ``e * H + h`` is step ``h`` of
episode ``e``.

Shapes: env noise leaves ``[H, N, E]``, Gumbel uniforms ``[H, N, E, A]``; ``envs.Episodes``
task-major ``[N, H, E, ...]`` (categorical actions int64 ``[N, H, E]``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..distributions import CATEGORICAL
from .. import checks
from ..envs.bandits import BernoulliBandits
from ..envs.protocol import TaskFamily, noise_at, repeat_tasks
from ..envs.rollout import Episodes
from ..envs.tabular_mdp import TabularMDP
from ..nn.core import Functional
from ..optim import GradientTransformation
from ..tree import Params, tree_map
from .adaptation import adapt_tasks
from .batch import RLBatch, make_rl_batches
from .rl2 import gumbel_sample

__all__ = ["episode_env", "split_trial_noise", "categorical_episodes", "split_trial_rollouts", "maml_trial_returns"]


def episode_env(env: TaskFamily) -> TaskFamily:
    """The same family with trials of one episode (a bandit pull; an ``H``-step MDP episode).

    A family without trials (no ``trial_length``) is returned as it is.
    """
    if isinstance(env, BernoulliBandits):
        return BernoulliBandits(env.num_arms, 1)
    if isinstance(env, TabularMDP):
        return TabularMDP(1, env.num_states, env.num_actions, env.horizon, env.reward_std)
    checks.instance(env, "env", TaskFamily)
    if not env.discrete_actions or hasattr(env, "trial_length"):
        raise TypeError(f"env must be a discrete-action TaskFamily (BernoulliBandits, TabularMDP, ...), "
                        f"got {type(env).__name__}")
    return env


def split_trial_noise(env: BernoulliBandits | TabularMDP, env_noise: Any, gumbel_u: torch.Tensor,
                      first: int, count: int) -> tuple[Any, torch.Tensor]:
    """Episodes ``first .. first + count - 1`` of a trial's noise, laid out for
    :func:`categorical_episodes`: env leaves ``[n H, B] -> [H, B, count]``, Gumbel
    ``[n H, B, A] -> [H, B, count, A]``."""
    H = env.episode_length
    n = env.trial_length // H
    checks.non_negative_int(first, "first")
    checks.positive_int(count, "count")
    if first + count > n:
        raise ValueError(f"episodes first={first}, count={count} must lie within the trial's {n} episodes")

    def cut(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != env.trial_length:
            raise ValueError(f"trial noise expected a leading axis of {env.trial_length} steps, got {tuple(x.shape)}")
        y = x.reshape(n, H, *x.shape[1:])[first:first + count]  # [count, H, B, ...]
        return y.movedim(0, 2)  # [H, B, count, ...]

    return tree_map(cut, env_noise), cut(gumbel_u)


def categorical_episodes(
    params: Params, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, env: BernoulliBandits | TabularMDP,
    policy: Functional, *, params_per_task: bool = False,
) -> Episodes:
    """``E`` independent episodes of each of the ``N`` tasks with a categorical policy.

    Args:
        env: the family (its episode length ``H`` is used; trials are ignored).
        policy: ``nn.categorical_policy(env.obs_dim, env.num_actions)``.
        params: shared, or (``params_per_task``) leaves ``[N, *shape]``.
        tasks: leaves ``[N, ...]``.
        env_noise: leaves ``[H, N, E]``; gumbel_u: ``[H, N, E, A]`` (see :func:`split_trial_noise`).

    Returns ``envs.Episodes`` with obs ``[N, H, E, obs_dim]``, actions int64 ``[N, H, E]``,
    rewards ``[N, H, E]`` and mask ones. Runs without gradients.
    """
    if getattr(policy, "distribution", None) is not CATEGORICAL:
        name = getattr(getattr(policy, "distribution", None), "name", None)
        raise ValueError(f"policy must be a categorical policy (nn.categorical_policy), got distribution={name!r}")
    checks.flag(params_per_task, "params_per_task")
    one = episode_env(env)
    checks.floating_tensor(gumbel_u, "gumbel_u", ndim=4)
    H, N, E, A = gumbel_u.shape
    if A != env.action_size or H != env.episode_length:
        raise ValueError(f"gumbel_u expected shape [{env.episode_length}, N, E, {env.action_size}], got {tuple(gumbel_u.shape)}")
    batch = repeat_tasks(tasks, E)
    forward = policy.apply_stacked if params_per_task else policy.apply
    obs_l, act_l, rew_l = [], [], []
    with torch.no_grad():
        state, obs = one.reset(batch, noise_at(env_noise, 0))
        for h in range(H):
            logits = forward(params, obs)
            action = gumbel_sample(logits, gumbel_u[h])
            obs_l.append(obs)
            act_l.append(action)
            state, obs, reward, _ = one.step(state, action, batch, noise_at(env_noise, h))
            rew_l.append(reward)
    rewards = torch.stack(rew_l, dim=1)
    return Episodes(torch.stack(obs_l, dim=1), torch.stack(act_l, dim=1), rewards, torch.ones_like(rewards))


def split_trial_rollouts(
    params: Params, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, env: BernoulliBandits | TabularMDP,
    policy: Functional, inner_opt: GradientTransformation, *, num_pre: int, gamma: float = 0.99,
    gae_lambda: float = 1.0,
) -> tuple[Episodes, Episodes, RLBatch]:
    """One trial of MAML under the split protocol (module docstring), without gradients.

    ``num_pre`` episodes of ``params`` on the trial's first noise, one first-order inner step per
    task on them, then the remaining episodes of the adapted params. ``env_noise`` / ``gumbel_u``:
    the trial's noise (leaves ``[n H, B]`` / ``[n H, B, A]``). Returns ``(pre, post, train)``:
    the episodes before and after the step (``[B, H, E, ...]``) and the inner step's RLBatch.
    """
    n = env.trial_length // env.episode_length
    checks.int_in_range(num_pre, "num_pre", 1, n - 1)  # episodes before the inner step
    checks.probability(gamma, "gamma")
    checks.probability(gae_lambda, "gae_lambda")
    pre_noise, pre_u = split_trial_noise(env, env_noise, gumbel_u, 0, num_pre)
    post_noise, post_u = split_trial_noise(env, env_noise, gumbel_u, num_pre, n - num_pre)
    pre = categorical_episodes(params, tasks, pre_noise, pre_u, env, policy)
    train = make_rl_batches(pre, gamma, gae_lambda)
    with torch.no_grad():
        adapted = adapt_tasks(params, train, policy, inner_opt, steps=1, first_order=True)
    post = categorical_episodes(adapted, tasks, post_noise, post_u, env, policy, params_per_task=True)
    return pre, post, train


def maml_trial_returns(
    params: Params, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, env: BernoulliBandits | TabularMDP,
    policy: Functional, inner_opt: GradientTransformation, *, num_pre: int, gamma: float = 0.99,
    gae_lambda: float = 1.0,
) -> torch.Tensor:
    """Total reward per trial of MAML under the split protocol (module docstring): ``[B]``.

    ``env_noise`` / ``gumbel_u``: the trial's noise (leaves ``[n H, B]`` / ``[n H, B, A]``), the
    same the RL² evaluation uses; ``num_pre`` episodes before the inner step, the rest after
    (:func:`split_trial_rollouts`).
    """
    pre, post, _ = split_trial_rollouts(params, tasks, env_noise, gumbel_u, env, policy, inner_opt, num_pre=num_pre,
                                        gamma=gamma, gae_lambda=gae_lambda)
    return pre.rewards.sum(dim=(1, 2)) + post.rewards.sum(dim=(1, 2))
