"""Every pure task family follows the one contract (envs.TaskFamily / envs.SupervisedTaskFamily),
and the rollouts take any family that does."""

from __future__ import annotations

import optree
import pytest
import torch

from functional_metarl import envs, nn
from functional_metarl.distributions import CATEGORICAL
from functional_metarl.meta import rl2
from functional_metarl.meta.maml_discrete import categorical_episodes
from functional_metarl.tree import tree_map

RL_FAMILIES = {
    "navigation": lambda: envs.Navigation2D(horizon=7),
    "bandits": lambda: envs.BernoulliBandits(3, 5),
    "tabular_mdp": lambda: envs.TabularMDP(2, num_states=4, num_actions=3, horizon=3),
    "four_rooms": lambda: envs.FourRooms(horizon=9, one_hot_obs=True),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(RL_FAMILIES))
def test_family_conforms(name):
    env = RL_FAMILIES[name]()
    assert isinstance(env, envs.TaskFamily)
    assert isinstance(env.obs_shape, tuple) and isinstance(env.discrete_actions, bool)
    assert isinstance(env.action_size, int) and env.action_size >= 1
    assert isinstance(env.episode_length, int) and env.episode_length >= 1
    N, E, T = 3, 2, 4
    tasks = env.sample_tasks(N, gen(1))
    assert all(leaf.shape[0] == N for leaf in optree.tree_leaves(tasks))
    noise = env.sample_noise(T, (N, E), gen(2))
    for leaf in optree.tree_leaves(noise):
        assert leaf.shape[:3] == (T, N, E)
    batch = envs.repeat_tasks(tasks, E)
    state, obs = env.reset(batch, envs.noise_at(noise, 0))
    assert obs.shape == (N, E, *env.obs_shape)
    for t in range(T):
        if env.discrete_actions:
            action = torch.randint(env.action_size, (N, E), generator=gen(10 + t))
        else:
            action = torch.randn(N, E, env.action_size, generator=gen(10 + t))
        state, obs, reward, done = env.step(state, action, batch, envs.noise_at(noise, t))
        assert obs.shape == (N, E, *env.obs_shape)
        assert reward.shape == (N, E) and reward.is_floating_point()
        assert done.shape == (N, E) and done.dtype == torch.bool
    # same noise, same steps: the family is pure
    again = env.reset(batch, envs.noise_at(noise, 0))[1]
    assert torch.equal(again, env.reset(batch, envs.noise_at(noise, 0))[1])


def test_sine_conforms_to_the_supervised_contract():
    family = envs.SineRegression()
    assert isinstance(family, envs.SupervisedTaskFamily)
    assert not isinstance(family, envs.TaskFamily)  # no reset / step: no episodes in regression
    tasks = family.sample_tasks(3, gen())
    batch = family.sample_batch(tasks, 5, gen(1))
    assert batch.x.shape == batch.y.shape == (3, 5, 1)


def _policy(env):
    obs_dim = env.obs_shape[0]
    if env.discrete_actions:
        return nn.categorical_policy(obs_dim, env.action_size, hidden=(8,))
    return nn.gaussian_policy(obs_dim, env.action_size, hidden=(8,))


@pytest.mark.parametrize("name", sorted(RL_FAMILIES))
def test_rollout_runs_on_every_family(name):
    env = RL_FAMILIES[name]()
    policy = _policy(env)
    params = policy.init(0)
    N, E, T = 3, 2, env.episode_length
    tasks = env.sample_tasks(N, gen(1))
    noise = envs.sample_noise(T, N, E, env.action_size, gen(2), distribution=policy.distribution)
    env_noise = env.sample_noise(T, (N, E), gen(3))
    ep = envs.rollout(params, tasks, noise, env, policy, env_noise=env_noise)
    assert ep.obs.shape == (N, T, E, *env.obs_shape)
    assert ep.rewards.shape == ep.mask.shape == (N, T, E)
    assert torch.all(ep.mask[:, 0] == 1) and torch.all(ep.mask[:, 1:] <= ep.mask[:, :-1])  # 1 until the end
    assert torch.all(ep.rewards[ep.mask == 0] == 0)  # padding pays nothing
    again = envs.rollout(params, tasks, noise, env, policy, env_noise=env_noise)
    for x, y in zip(ep, again):
        assert torch.equal(x, y)


def test_rollout_refuses_a_policy_of_the_wrong_kind_and_missing_noise():
    env = envs.BernoulliBandits(3, 5)
    policy = nn.gaussian_policy(1, 3, hidden=(4,))
    tasks = env.sample_tasks(2, gen())
    with pytest.raises(TypeError, match="distribution"):
        envs.rollout(policy.init(0), tasks, envs.sample_noise(1, 2, 2, 3, gen()), env, policy)
    cat = nn.categorical_policy(1, 3, hidden=(4,))
    noise = envs.sample_noise(1, 2, 2, 3, gen(), distribution=CATEGORICAL)
    with pytest.raises(TypeError, match="noise"):  # a family with random steps needs its env_noise
        envs.rollout(cat.init(0), tasks, noise, env, cat)
    with pytest.raises(ValueError, match="env_noise"):
        envs.rollout(cat.init(0), tasks, noise, env, cat, env_noise=env.sample_noise(2, (2, 2), gen()))
    with pytest.raises(TypeError, match="env"):
        envs.rollout(cat.init(0), tasks, noise, object(), cat)


@pytest.mark.parametrize("name", ["bandits", "tabular_mdp", "four_rooms"])
def test_rl2_rollout_runs_on_every_discrete_family(name):
    env = RL_FAMILIES[name]()
    policy = nn.gru_actor_critic(env.obs_shape[0], env.action_size, hidden=8)
    params = policy.init(0)
    tasks = env.sample_tasks(4, gen(1))
    noise = rl2.sample_rl2_noise(env, 4, 0, gen(2))
    T = getattr(env, "trial_length", env.episode_length)
    trial = rl2.rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, policy)
    assert trial.actions.shape == trial.rewards.shape == (T, 4)


def test_rl2_rollout_refuses_continuous_actions():
    env = envs.Navigation2D(horizon=3)
    policy = nn.gru_actor_critic(2, 2, hidden=4)
    with pytest.raises(TypeError, match="discrete"):
        rl2.rl2_rollout(policy.init(0), env.sample_tasks(2), envs.NoNoise(), torch.rand(3, 2, 2), env, policy)


def test_categorical_episodes_runs_on_a_family_without_trials():
    env = RL_FAMILIES["four_rooms"]()
    policy = _policy(env)
    N, E, H = 2, 3, env.episode_length
    tasks = env.sample_tasks(N, gen(1))
    env_noise = env.sample_noise(H, (N, E), gen(2))
    ep = categorical_episodes(policy.init(0), tasks, env_noise, torch.rand(H, N, E, 4, generator=gen(3)), env, policy)
    assert ep.rewards.shape == (N, H, E)
    # the same episodes as one step at a time through the protocol
    batch = envs.repeat_tasks(tasks, E)
    state, _ = env.reset(batch, envs.noise_at(env_noise, 0))
    for h in range(H):
        state, _, reward, _ = env.step(state, ep.actions[:, h], batch, tree_map(lambda x: x[h], env_noise))
        assert torch.equal(reward, ep.rewards[:, h])
