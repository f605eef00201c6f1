"""Navigation2D (envs/navigation.py) and batched rollouts (envs/rollout.py).

References are written independently here: the dynamics in numpy float64 and the Gaussian MLP
policy forward by hand.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from functional_metarl.envs import (
    Episodes, Navigation2D, NavState, NavTask, NoNoise, TaskFamily, repeat_tasks, rollout, sample_noise,
)
from functional_metarl.nn import gaussian_policy


def per_episode(tasks, num_episodes):
    """``E`` episodes of each task: ``goal [*B, 2] -> [*B, E, 2]`` (the contract's batch is the tasks')."""
    goal = tasks.goal
    return NavTask(goal.unsqueeze(-2).expand(*goal.shape[:-1], num_episodes, 2))


# --------------------------------------------------------------------------- references
def ref_step(position, done, action, goal, max_action=0.1, radius=0.01):
    """numpy float64 reference of one environment step. position [..., E, 2], goal [..., 2]."""
    position = np.asarray(position, dtype=np.float64)
    done = np.asarray(done, dtype=bool)
    move = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -max_action), max_action)
    new_pos = np.where(done[..., None], position, position + move)
    g = np.asarray(goal, dtype=np.float64)[..., None, :]
    dist = np.sqrt(((new_pos - g) ** 2).sum(-1))
    reward = np.where(done, 0.0, -dist)
    new_done = done | (dist < radius)
    return new_pos, new_done, reward


def hand_policy(params, obs):
    """The gaussian_policy forward, written out: one tanh hidden layer, state-free log-std."""
    h = torch.tanh(obs @ params["mean.0.weight"].T + params["mean.0.bias"])
    mean = h @ params["mean.2.weight"].T + params["mean.2.bias"]
    return mean, params["log_std"].expand_as(mean)


def random_policy_params(seed, hidden=8, dtype=torch.float64, log_std=-1.0):
    policy = gaussian_policy(2, 2, (hidden,), "tanh")
    params = policy.init(seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in params.items()}
    params["log_std"] = torch.full((2,), log_std, dtype=dtype)
    return policy, params


# --------------------------------------------------------------------------- definition
def test_reset_starts_every_episode_at_origin_unbatched_and_batched():
    env = Navigation2D()
    assert isinstance(env, TaskFamily) and env.sample_noise(5, (3,)) == NoNoise()
    state, obs = env.reset(per_episode(NavTask(goal=torch.tensor([0.3, -0.2])), 5), NoNoise())
    assert state.position.shape == (5, 2) and state.done.shape == (5,)
    assert torch.equal(obs, torch.zeros(5, 2))
    assert state.done.dtype == torch.bool and not state.done.any()

    goals = torch.rand(3, 2, dtype=torch.float64) - 0.5
    state, obs = env.reset(per_episode(NavTask(goal=goals), 4), NoNoise())
    assert state.position.shape == (3, 4, 2) and state.done.shape == (3, 4)
    assert obs.dtype == torch.float64
    assert torch.equal(obs, torch.zeros(3, 4, 2, dtype=torch.float64))
    assert not state.done.any()


def test_goals_uniform_in_box():
    env = Navigation2D()
    goals = env.sample_tasks(20000, torch.Generator().manual_seed(0)).goal
    assert goals.shape == (20000, 2) and goals.dtype == torch.float32
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    # Uniform on [-0.5, 0.5]: mean 0 (std of the sample mean ~0.002), variance 1/12.
    assert goals.mean(0).abs().max() < 0.01
    assert torch.allclose(goals.var(0), torch.full((2,), 1 / 12), atol=0.003)
    # Each quarter of each axis holds about a quarter of the goals; coordinates independent.
    for axis in range(2):
        counts = torch.histc(goals[:, axis], bins=4, min=-0.5, max=0.5) / goals.shape[0]
        assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)
    corr = torch.corrcoef(goals.T)[0, 1]
    assert abs(float(corr)) < 0.03
    # The box follows the constructor arguments.
    wide = Navigation2D(goal_low=1.0, goal_high=3.0).sample_tasks(5000, torch.Generator().manual_seed(1)).goal
    assert wide.min() >= 1.0 and wide.max() <= 3.0 and abs(float(wide.mean()) - 2.0) < 0.05


def test_goal_sampling_is_reproducible_from_generator():
    env = Navigation2D()
    a = env.sample_tasks(7, torch.Generator().manual_seed(3), dtype=torch.float64).goal
    b = env.sample_tasks(7, torch.Generator().manual_seed(3), dtype=torch.float64).goal
    c = env.sample_tasks(7, torch.Generator().manual_seed(4), dtype=torch.float64).goal
    assert a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, c)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batched=st.booleans(), scale=st.sampled_from([0.05, 0.3, 3.0]))
def test_step_matches_numpy_reference(seed, batched, scale):
    rng = np.random.default_rng(seed)
    lead = (3,) if batched else ()
    env = Navigation2D()
    goal = rng.uniform(-0.5, 0.5, size=(*lead, 2))
    position = rng.uniform(-0.6, 0.6, size=(*lead, 4, 2))
    done = rng.random(size=(*lead, 4)) < 0.3
    action = rng.normal(0.0, scale, size=(*lead, 4, 2))
    state = NavState(torch.tensor(position), torch.tensor(done))
    new_state, obs, reward, new_done = env.step(state, torch.tensor(action), per_episode(NavTask(torch.tensor(goal)), 4),
                                                NoNoise())
    ref_pos, ref_done, ref_reward = ref_step(position, done, action, goal)
    assert obs.shape == (*lead, 4, 2) and reward.shape == (*lead, 4) and new_done.shape == (*lead, 4)
    np.testing.assert_allclose(obs.numpy(), ref_pos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new_state.position.numpy(), ref_pos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reward.numpy(), ref_reward, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(new_done.numpy(), ref_done)
    np.testing.assert_array_equal(new_state.done.numpy(), ref_done)


def test_actions_clipped_per_coordinate():
    env = Navigation2D()
    goal = per_episode(NavTask(torch.tensor([0.4, 0.4], dtype=torch.float64)), 3)
    state, _ = env.reset(goal, NoNoise())
    action = torch.tensor([[5.0, 0.03], [-0.2, -7.0], [0.1, -0.1]], dtype=torch.float64)
    _, obs, reward, _ = env.step(state, action, goal)
    expected = torch.tensor([[0.1, 0.03], [-0.1, -0.1], [0.1, -0.1]], dtype=torch.float64)
    assert torch.allclose(obs, expected, atol=1e-15)
    # reward = -||pos_after - goal||
    assert torch.allclose(reward, -torch.linalg.norm(expected - goal.goal, dim=-1), atol=1e-15)
    # A custom max_action changes the clip.
    env2 = Navigation2D(max_action=0.25)
    _, obs2, _, _ = env2.step(state, action, goal)
    assert torch.allclose(obs2[0], torch.tensor([0.25, 0.03], dtype=torch.float64))
    # action_scale=0.1 (rllab's normalize): the policy acts in [-1, 1], mapped onto [-0.1, 0.1].
    env3 = Navigation2D(action_scale=0.1)
    _, obs3, _, _ = env3.step(state, action, goal)
    expected3 = torch.tensor([[0.1, 0.003], [-0.02, -0.1], [0.01, -0.01]], dtype=torch.float64)
    assert torch.allclose(obs3, expected3, atol=1e-15)


def test_done_within_radius_is_sticky_and_frozen():
    env = Navigation2D()
    goal = per_episode(NavTask(torch.tensor([0.05, 0.0], dtype=torch.float64)), 3)
    state, _ = env.reset(goal, NoNoise())
    # ep 0 lands exactly on the goal, ep 1 lands 0.009 away (done), ep 2 lands 0.011 away (not).
    a1 = torch.tensor([[0.05, 0.0], [0.041, 0.0], [0.039, 0.0]], dtype=torch.float64)
    state, obs, reward, done = env.step(state, a1, goal)
    assert done.tolist() == [True, True, False]
    assert torch.allclose(reward, torch.tensor([0.0, -0.009, -0.011], dtype=torch.float64), atol=1e-12)
    # The finished episodes do not move and get reward 0; the live one moves on.
    a2 = torch.tensor([[0.1, 0.1], [-0.1, 0.05], [0.011, 0.0]], dtype=torch.float64)
    state2, obs2, reward2, done2 = env.step(state, a2, goal)
    assert torch.equal(obs2[:2], obs[:2])
    assert reward2[0] == 0.0 and reward2[1] == 0.0
    assert torch.allclose(obs2[2], torch.tensor([0.05, 0.0], dtype=torch.float64), atol=1e-12)
    assert done2.tolist() == [True, True, True]
    # Sticky: even an action away from the goal cannot undo it.
    state3, obs3, reward3, done3 = env.step(state2, torch.full((3, 2), -1.0, dtype=torch.float64), goal)
    assert done3.all() and torch.equal(obs3, obs2) and torch.equal(reward3, torch.zeros(3, dtype=torch.float64))


def test_batched_step_equals_per_task_steps():
    env = Navigation2D()
    g = torch.Generator().manual_seed(5)
    goals = repeat_tasks(env.sample_tasks(4, g, dtype=torch.float64), 3)
    state, _ = env.reset(goals, NoNoise())
    actions = 0.08 * torch.randn(6, 4, 3, 2, generator=g, dtype=torch.float64)
    singles = [env.reset(NavTask(goals.goal[i]), NoNoise())[0] for i in range(4)]
    for t in range(6):
        state, obs, reward, done = env.step(state, actions[t], goals, NoNoise())
        for i in range(4):
            singles[i], o, r, d = env.step(singles[i], actions[t, i], NavTask(goals.goal[i]), NoNoise())
            assert torch.equal(o, obs[i]) and torch.equal(r, reward[i]) and torch.equal(d, done[i])


@pytest.mark.parametrize("batched", [False, True])
def test_wrong_action_shape_names_expected_shape(batched):
    env = Navigation2D()
    goal = per_episode(NavTask(torch.zeros(2, 2) if batched else torch.zeros(2)), 3)
    state, _ = env.reset(goal, NoNoise())
    expected = "(2, 3, 2)" if batched else "(3, 2)"
    for bad in (torch.zeros(3), torch.zeros(3, 3), torch.zeros(1, 3, 2) if not batched else torch.zeros(3, 2)):
        with pytest.raises(ValueError, match=re.escape(expected)):
            env.step(state, bad, goal, NoNoise())


def test_step_rejects_goal_batch_not_matching_state():
    env = Navigation2D()
    state, _ = env.reset(per_episode(NavTask(torch.zeros(2)), 3), NoNoise())  # position [3, 2]
    for goal in (torch.rand(4, 2), torch.rand(2), torch.rand(1, 3, 2)):  # the last two would only broadcast
        with pytest.raises(ValueError, match="tasks.goal"):
            env.step(state, torch.zeros(3, 2), NavTask(goal), NoNoise())


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"horizon": 0}, ValueError),
        ({"horizon": -3}, ValueError),
        ({"horizon": True}, TypeError),  # the wrong kind of value: TypeError (checks' convention)
        ({"horizon": 10.0}, TypeError),
        ({"max_action": 0.0}, ValueError),
        ({"max_action": -0.1}, ValueError),
        ({"max_action": float("nan")}, ValueError),
        ({"goal_low": 0.5, "goal_high": 0.5}, ValueError),
        ({"goal_low": 1.0, "goal_high": -1.0}, ValueError),
        ({"success_radius": -0.01}, ValueError),
        ({"action_scale": 0.0}, ValueError),
        ({"action_scale": float("inf")}, ValueError),
    ],
)
def test_bad_constructor_args(kwargs, error):
    with pytest.raises(error, match=list(kwargs)[-1]):
        Navigation2D(**kwargs)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (True, TypeError), (False, TypeError),
                                        (2.0, TypeError)])
def test_bad_num_tasks_and_num_episodes(bad, error):
    env = Navigation2D()
    with pytest.raises(error, match="num_tasks"):
        env.sample_tasks(bad)
    with pytest.raises(error, match="num_steps"):
        env.sample_noise(bad, (2,))
    with pytest.raises(error, match="num_episodes"):
        repeat_tasks(NavTask(torch.zeros(2, 2)), bad)


# --------------------------------------------------------------------------- rollout
def _near_goal_setup(seed=0):
    """Goals close to the origin with a large success radius, so some episodes end early."""
    env = Navigation2D(horizon=12, success_radius=0.12)
    goals = NavTask(torch.tensor([[0.08, 0.05], [-0.1, 0.02], [0.0, -0.09]], dtype=torch.float64))
    policy, params = random_policy_params(seed, log_std=math.log(0.08))
    noise = sample_noise(12, 3, 5, 2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    return env, goals, policy, params, noise


def test_rollout_shapes_and_dtypes():
    env, goals, policy, params, noise = _near_goal_setup()
    ep = rollout(params, goals, noise, env, policy)
    assert isinstance(ep, Episodes)
    assert ep.obs.shape == (3, 12, 5, 2)
    assert ep.actions.shape == (3, 12, 5, 2)
    assert ep.rewards.shape == (3, 12, 5)
    assert ep.mask.shape == (3, 12, 5)
    assert ep.mask.dtype == torch.float64
    assert set(ep.mask.unique().tolist()) <= {0.0, 1.0}


def test_rollout_matches_hand_simulation():
    env, goals, policy, params, noise = _near_goal_setup(seed=2)
    ep = rollout(params, goals, noise, env, policy)
    goal = goals.goal.numpy()
    pos = np.zeros((3, 5, 2))
    done = np.zeros((3, 5), dtype=bool)
    for t in range(12):
        obs_t = torch.tensor(pos)
        mean, log_std = hand_policy(params, obs_t)
        action = (mean + torch.exp(log_std) * noise[t]).numpy()
        np.testing.assert_allclose(ep.obs[:, t].numpy(), pos, atol=1e-12)
        np.testing.assert_allclose(ep.actions[:, t].numpy(), action, atol=1e-12)
        np.testing.assert_array_equal(ep.mask[:, t].numpy(), (~done).astype(np.float64))
        pos, done, reward = ref_step(pos, done, action, goal, radius=0.12)
        np.testing.assert_allclose(ep.rewards[:, t].numpy(), reward, atol=1e-12)
    # The setup really exercises early termination: some episodes finish, some do not.
    assert 0 < done.sum() < done.size


def test_rollout_mask_is_one_until_done_step_inclusive():
    env, goals, policy, params, noise = _near_goal_setup(seed=1)
    ep = rollout(params, goals, noise, env, policy)
    # Recompute the done step from the observations alone: the first step whose *next*
    # position lies within the radius of the goal.
    goal = goals.goal
    finished = 0
    for i in range(3):
        for e in range(5):
            # distance to the goal after each step, from the next observation
            after = torch.cat([ep.obs[i, 1:, e], ep.obs[i, -1:, e]])
            dist_after = torch.linalg.norm(after - goal[i], dim=-1)
            hits = [t for t in range(12) if ep.mask[i, t, e] == 1 and dist_after[t] < 0.12]
            t_done = hits[0] if hits else None
            expected = torch.ones(12, dtype=torch.float64)
            if t_done is not None:
                finished += 1
                expected[t_done + 1 :] = 0.0
                # Frozen after done: later observations equal the final position, rewards 0.
                assert torch.all(ep.rewards[i, t_done + 1 :, e] == 0)
                assert torch.all(ep.obs[i, t_done + 1 :, e] == ep.obs[i, t_done + 1, e])
            assert torch.equal(ep.mask[i, :, e], expected), (i, e)
            # Monotone: never 0 then 1 again.
            assert torch.all(ep.mask[i, 1:, e] <= ep.mask[i, :-1, e])
    assert finished > 0


def test_rollout_same_seed_same_episodes():
    env = Navigation2D(horizon=15)
    policy, params = random_policy_params(4, dtype=torch.float32, log_std=math.log(0.5))
    tasks = env.sample_tasks(3, torch.Generator().manual_seed(9))

    def run(seed):
        noise = sample_noise(15, 3, 4, 2, torch.Generator().manual_seed(seed))
        return rollout({k: v.float() for k, v in params.items()}, tasks, noise, env, policy)

    a, b, c = run(11), run(11), run(12)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.actions, c.actions)


def test_rollout_params_per_task_identical_stack_equals_shared():
    env, goals, policy, params, noise = _near_goal_setup(seed=3)
    shared = rollout(params, goals, noise, env, policy)
    stacked = {k: v.expand(3, *v.shape).clone() for k, v in params.items()}
    per_task = rollout(stacked, goals, noise, env, policy, params_per_task=True)
    for x, y in zip(shared, per_task):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


def test_rollout_params_per_task_uses_each_tasks_params():
    env, goals, policy, _, noise = _near_goal_setup(seed=0)
    per = [random_policy_params(s, log_std=math.log(0.08))[1] for s in (10, 20, 30)]
    stacked = {k: torch.stack([p[k] for p in per]) for k in per[0]}
    batched = rollout(stacked, goals, noise, env, policy, params_per_task=True)
    for i in range(3):
        single = rollout(per[i], NavTask(goals.goal[i : i + 1]), noise[:, i : i + 1], env, policy)
        for x, y in zip(batched, single):
            torch.testing.assert_close(x[i : i + 1], y, rtol=0, atol=1e-12)


def test_rollout_rejects_bad_noise():
    env, goals, policy, params, noise = _near_goal_setup()
    with pytest.raises(ValueError, match="noise"):
        rollout(params, goals, noise[0], env, policy)
    with pytest.raises(ValueError, match="act_dim"):
        rollout(params, goals, torch.zeros(12, 3, 5, 3, dtype=torch.float64), env, policy)
    with pytest.raises(ValueError, match="tasks"):
        rollout(params, goals, noise[:, :2], env, policy)
