"""Simulator task families, the task-aware vector sampler, Meta-World's success protocol and the
MAML runner on top of them. MuJoCo tests skip without ``mujoco``, Meta-World tests without
``metaworld`` (CI installs both: ``pip install -e '.[mujoco,metaworld]'``)."""

from __future__ import annotations

import dataclasses

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from functional_metarl.envs import (
    METAWORLD_BENCHMARKS,
    MUJOCO_TASK_FAMILIES,
    AntDir,
    AntDirEnv,
    HalfCheetahDir,
    HalfCheetahDirEnv,
    HalfCheetahVel,
    HalfCheetahVelEnv,
    MetaWorldFamily,
    MetaWorldTaskEnv,
    episode_success,
    make_mujoco_family,
    success_rates,
)
from functional_metarl.nn import categorical_policy, gaussian_policy
from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer, SimulatorSampler, TaskVectorSampler

try:
    import mujoco  # noqa: F401

    HAVE_MUJOCO = True
except ImportError:  # pragma: no cover
    HAVE_MUJOCO = False
try:
    import metaworld  # noqa: F401

    HAVE_METAWORLD = True
except ImportError:  # pragma: no cover
    HAVE_METAWORLD = False

needs_mujoco = pytest.mark.skipif(not HAVE_MUJOCO, reason="mujoco is not installed (pip install -e '.[mujoco]')")
needs_metaworld = pytest.mark.skipif(
    not HAVE_METAWORLD, reason="metaworld is not installed (pip install -e '.[metaworld]'; it pins mujoco 3.3.0)"
)
DT = 0.05  # control step of HalfCheetah-v5 and Ant-v5 (frame_skip 5 x 0.01 s)


# ---------------------------------------------------------------------- rewards on hand-made states
def _hand_made_state(env: gym.Env, rng: np.random.Generator):
    u = env.unwrapped
    qpos = u.init_qpos + rng.uniform(-0.3, 0.3, size=u.model.nq)
    qvel = rng.normal(0.0, 1.5, size=u.model.nv)
    return qpos, qvel


@needs_mujoco
@pytest.mark.parametrize("goal", [0.0, 0.7, 2.0])
def test_cheetah_vel_reward_is_its_definition(goal):
    env = HalfCheetahVel(horizon=10).make_env(goal)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        qpos, qvel = _hand_made_state(env, rng)
        env.unwrapped.set_state(qpos, qvel)
        action = rng.uniform(-1, 1, size=6).astype(np.float32)
        x_before = float(env.unwrapped.data.qpos[0])
        _, reward, terminated, _, _ = env.step(action)
        velocity = (float(env.unwrapped.data.qpos[0]) - x_before) / DT
        expected = -abs(velocity - goal) - 0.5 * 0.1 * float(np.sum(action.astype(np.float64) ** 2))
        assert reward == pytest.approx(expected, rel=1e-6, abs=1e-6)
        assert not terminated  # the cheetah never terminates


@needs_mujoco
def test_cheetah_dir_reward_is_its_definition_and_tasks_differ_only_in_the_sign():
    envs = {d: HalfCheetahDir(horizon=10).make_env(d) for d in (-1.0, 1.0)}
    rng = np.random.default_rng(2)
    state = None
    for d, env in envs.items():
        env.reset(seed=0)
        if state is None:
            state = _hand_made_state(env, rng)
            action = rng.uniform(-1, 1, size=6).astype(np.float32)
        env.unwrapped.set_state(*state)
    out = {}
    for d, env in envs.items():
        x_before = float(env.unwrapped.data.qpos[0])
        obs, reward, *_ = env.step(action)
        velocity = (float(env.unwrapped.data.qpos[0]) - x_before) / DT
        ctrl = 0.05 * float(np.sum(action.astype(np.float64) ** 2))
        assert reward == pytest.approx(d * velocity - ctrl, rel=1e-6, abs=1e-6)
        out[d] = (obs, reward, ctrl, velocity)
    np.testing.assert_array_equal(out[1.0][0], out[-1.0][0])  # same dynamics, same observation
    assert abs(out[1.0][3]) > 0.1  # the state moves, so the sign matters
    assert out[1.0][1] + out[-1.0][1] == pytest.approx(-2 * out[1.0][2], abs=1e-6)


@needs_mujoco
@pytest.mark.parametrize("direction", [(1.0, 0.0), (-1.0, 0.0), (math.cos(2.0), math.sin(2.0))])
def test_ant_dir_reward_is_its_definition(direction):
    env = AntDir(horizon=10).make_env(direction)
    env.reset(seed=0)
    rng = np.random.default_rng(3)
    qpos, qvel = _hand_made_state(env, rng)
    qpos[2] = 0.6  # torso height inside the healthy range
    qpos[3:7] = [1.0, 0.0, 0.0, 0.0]
    env.unwrapped.set_state(qpos, qvel)
    action = rng.uniform(-1, 1, size=8).astype(np.float32)
    xy_before = env.unwrapped.data.body("torso").xpos[:2].copy()
    _, reward, terminated, _, _ = env.step(action)
    data = env.unwrapped.data
    velocity = (data.body("torso").xpos[:2] - xy_before) / DT
    contact = 0.5 * 1e-3 * float(np.sum(np.clip(data.cfrc_ext, -1, 1) ** 2))
    expected = (direction[0] * velocity[0] + direction[1] * velocity[1]
                - 0.5 * 1e-2 * float(np.sum(action.astype(np.float64) ** 2)) - contact + 0.05)
    assert reward == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert not terminated
    # torso outside z in [0.2, 1.0]: the episode terminates (Ant-v5's rule, pytorch-maml-rl's as well)
    qpos[2] = 1.5
    env.unwrapped.set_state(qpos, np.zeros_like(qvel))
    assert env.step(np.zeros(8, dtype=np.float32))[2]


@needs_mujoco
def test_tasks_differ_only_in_reward():
    """Same seed, same actions, two goal velocities: observations, terminations and
    x-velocities agree bit for bit; rewards differ by exactly the task term."""
    family = HalfCheetahVel(horizon=20)
    a, b = family.make_env(0.3), family.make_env(1.7)
    a.reset(seed=5)
    b.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, size=6).astype(np.float32)
        oa, ra, ta, ua, ia = a.step(action)
        ob, rb, tb, ub, ib = b.step(action)
        np.testing.assert_array_equal(oa, ob)
        assert (ta, ua) == (tb, ub) and ia["x_velocity"] == ib["x_velocity"]
        v = ia["x_velocity"]
        assert ra - rb == pytest.approx(-abs(v - 0.3) + abs(v - 1.7), abs=1e-9)


@needs_mujoco
def test_family_registry_builds_each_wrapper_over_its_gymnasium_env():
    """make_mujoco_family / MUJOCO_TASK_FAMILIES: each name gives its family, whose make_env
    wraps the right gymnasium env with the family's horizon as its time limit."""
    expected = {"HalfCheetahVel": (HalfCheetahVelEnv, "HalfCheetah-v5", 1.0),
                "HalfCheetahDir": (HalfCheetahDirEnv, "HalfCheetah-v5", -1.0),
                "AntDir": (AntDirEnv, "Ant-v5", (0.0, 1.0))}
    assert set(MUJOCO_TASK_FAMILIES) == set(expected)
    for name, (wrapper, env_id, task) in expected.items():
        family = make_mujoco_family(name, horizon=7)
        assert isinstance(family, MUJOCO_TASK_FAMILIES[name]) and family.horizon == 7
        env = family.make_env(task)
        assert isinstance(env, wrapper) and env.unwrapped.spec.id == env_id
        assert env.observation_space.shape == (family.obs_dim,) and env.action_space.shape == (family.act_dim,)
        env.reset(seed=0)
        steps = 0
        while True:
            steps += 1
            if any(env.step(np.zeros(family.act_dim, dtype=np.float32))[2:4]):
                break
        assert steps == 7  # truncated at the family's horizon (nothing terminates standing still)
        env.close()


@needs_mujoco
def test_sampled_tasks_lie_in_their_ranges_and_repeat_with_the_seed():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    vel = HalfCheetahVel().sample_tasks(200, rng())
    assert all(0.0 <= v <= 2.0 for v in vel) and vel == HalfCheetahVel().sample_tasks(200, rng())
    assert min(vel) < 0.2 and max(vel) > 1.8
    assert set(HalfCheetahDir().sample_tasks(50, rng())) == {-1.0, 1.0}
    assert set(AntDir().sample_tasks(50, rng())) == {(1.0, 0.0), (-1.0, 0.0)}
    plane = AntDir(directions="plane").sample_tasks(50, rng())
    assert all(abs(math.hypot(*u) - 1) < 1e-12 for u in plane) and len(set(plane)) == 50


# ---------------------------------------------------------------------- the vector sampler
def _stacked(policy, num, seed=0):
    """Distinct per-task params: leaves [num, ...]."""
    sets = [policy.init(seed + i) for i in range(num)]
    return {k: torch.stack([s[k] for s in sets]) for k in sets[0]}


def _one_by_one(family_make, tasks, params, policy, noise, seeds, horizon, per_task, low, high, scale=1.0):
    """Reference: N * E separate envs (no vector env), each set to its task, reset with its seed
    and stepped by hand until its episode ends. The policy is evaluated on the same [N, E, d]
    batch the sampler forms (a batched and a single-row matmul differ in the last bit, and
    MuJoCo amplifies that chaotically within a few steps, so only the same call compares)."""
    n, e = len(tasks), noise.shape[2]
    act_dim = noise.shape[-1]
    out = {k: torch.zeros(n, horizon, e, *d) for k, d in
           (("obs", (policy.in_dim,)), ("actions", (act_dim,)), ("rewards", ()), ("mask", ()))}
    envs, obs, alive = [], [], []
    for i in range(n * e):
        env = family_make()
        env.set_wrapper_attr("task", tasks[i // e])
        envs.append(env)
        obs.append(env.reset(seed=seeds[i])[0])
        alive.append(True)
    forward = policy.apply_stacked if per_task else policy.apply
    for t in range(horizon):
        x = torch.as_tensor(np.stack(obs).astype(np.float32)).view(n, e, -1)
        mean, log_std = forward(params, x)
        actions = mean + torch.exp(log_std) * noise[t]
        for i, env in enumerate(envs):
            if not alive[i]:
                continue
            a, b = divmod(i, e)
            out["obs"][a, t, b], out["actions"][a, t, b], out["mask"][a, t, b] = x[a, b], actions[a, b], 1.0
            # scaled in float64, handed over in the action space's float32 (as the sampler does)
            env_action = np.clip(scale * actions[a, b].numpy().astype(np.float64), low, high).astype(np.float32)
            obs[i], reward, terminated, truncated, _ = env.step(env_action)
            out["rewards"][a, t, b] = float(reward)
            alive[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return out


@needs_mujoco
@pytest.mark.parametrize("per_task,scale", [(False, 1.0), (True, 0.1)])
def test_vector_sampler_equals_sub_envs_stepped_one_by_one(per_task, scale):
    family = HalfCheetahVel(horizon=12)
    n, e, horizon = 2, 2, 12
    policy = gaussian_policy(17, 6, hidden=(16,))
    params = _stacked(policy, n) if per_task else policy.init(0)
    tasks = [0.4, 1.6]
    noise = torch.randn(horizon, n, e, 6, generator=torch.Generator().manual_seed(0))
    seeds = [11, 12, 13, 14]
    with TaskVectorSampler(family.make_env, n, e, horizon, seed=0, action_scale=scale) as sampler:
        episodes = sampler.sample(params, tasks, policy, params_per_task=per_task, noise=noise, reset_seeds=seeds)
    ref = _one_by_one(family.make_env, tasks, params, policy, noise, seeds, horizon, per_task, -1.0, 1.0, scale)
    for key in ("obs", "actions", "rewards", "mask"):
        torch.testing.assert_close(getattr(episodes, key), ref[key], rtol=0, atol=0)
    assert episodes.mask.sum() == n * e * horizon  # truncated at the horizon, nothing earlier
    assert not torch.equal(episodes.rewards[0], episodes.rewards[1])  # the two tasks differ


class _CountdownEnv(gym.Env):
    """Toy sub-env: obs = [step, task]; terminates after ``task`` steps; reward = 10 * step + task;
    info["success"] = 1 at step 2 only. Reset seeds shift the first observation."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.task = None
        self._t = 0
        self._offset = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._offset = 0, float(self.np_random.uniform())
        return np.array([self._offset, self.task], dtype=np.float64), {}

    def step(self, action):
        self._t += 1
        terminated = self._t >= self.task
        info = {"success": float(self._t == 2)}
        return np.array([self._t + self._offset, self.task]), 10.0 * self._t + self.task, terminated, False, info


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_sampler_masks_episode_ends_the_gymnasium_way(autoreset_mode, vectorization):
    """Sub-envs terminating at different steps (and a TimeLimit truncation): every step after
    an episode's end is padding, under both autoreset modes; info is recorded per step."""
    horizon = 6
    make = lambda: gym.wrappers.TimeLimit(_CountdownEnv(), max_episode_steps=4)  # noqa: E731
    policy = gaussian_policy(2, 1, hidden=(4,))
    params = policy.init(0)
    tasks = [1, 2, 9]  # ends after 1, 2 steps (its success comes on its last step), and by truncation after 4
    with TaskVectorSampler(make, 3, 2, horizon, vectorization=vectorization, autoreset_mode=autoreset_mode,
                           seed=0) as sampler:
        episodes, info = sampler.sample_with_info(params, tasks, policy, info_keys=("success",))
    lengths = episodes.mask.sum(dim=1)
    assert lengths.tolist() == [[1, 1], [2, 2], [4, 4]]
    for i, length in enumerate((1, 2, 4)):
        steps = torch.arange(1, horizon + 1, dtype=torch.float32)
        expected = torch.where(steps <= length, 10 * steps + tasks[i], 0.0)
        torch.testing.assert_close(episodes.rewards[i], expected.unsqueeze(-1).expand(horizon, 2))
        assert torch.all(episodes.obs[i, :length, :, 1] == tasks[i]) and torch.all(episodes.obs[i, length:] == 0)
        assert torch.all(episodes.actions[i, length:] == 0)
    # success only at step 2: counted for the episodes that got there (with SAME_STEP, the info of
    # an episode's last step comes under "final_info")
    assert info["success"].sum(dim=1).tolist() == [[0, 0], [1, 1], [1, 1]]
    assert episode_success(info["success"], episodes.mask).tolist() == [[False, False], [True, True], [True, True]]


def test_sampler_repeats_with_its_seed_and_differs_across_seeds():
    make = lambda: gym.wrappers.TimeLimit(_CountdownEnv(), max_episode_steps=5)  # noqa: E731
    policy = gaussian_policy(2, 1, hidden=(4,))
    params = policy.init(0)

    def run(seed):
        with TaskVectorSampler(make, 2, 2, 5, seed=seed) as sampler:
            return [sampler.sample(params, [5, 5], policy) for _ in range(2)]

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not torch.equal(first[0].actions, first[1].actions)  # successive calls draw fresh noise
    assert not torch.equal(first[0].obs, other[0].obs) and not torch.equal(first[0].actions, other[0].actions)


def test_sampler_state_dict_restores_the_stream():
    make = lambda: gym.wrappers.TimeLimit(_CountdownEnv(), max_episode_steps=5)  # noqa: E731
    policy = gaussian_policy(2, 1, hidden=(4,))
    params = policy.init(0)
    with TaskVectorSampler(make, 1, 2, 5, seed=3) as a, TaskVectorSampler(make, 1, 2, 5, seed=99) as b:
        a.sample(params, [5], policy)
        b.load_state_dict(a.state_dict())
        x, y = a.sample(params, [5], policy), b.sample(params, [5], policy)
    assert torch.equal(x.obs, y.obs) and torch.equal(x.actions, y.actions)


# ---------------------------------------------------------------------- Meta-World
@pytest.fixture(scope="module")
def ml1():
    if not HAVE_METAWORLD:
        pytest.skip("metaworld is not installed (pip install -e '.[metaworld]'; it pins mujoco 3.3.0)")
    return MetaWorldFamily("ML1", "reach-v3", seed=0, horizon=60)


@needs_metaworld
def test_metaworld_splits_and_round_robin_classes(ml1):
    assert len(ml1.train_tasks) == 50 and len(ml1.test_tasks) == 50
    train_goals = {t.data for t in ml1.train_tasks}
    assert not train_goals & {t.data for t in ml1.test_tasks}  # ML1: held-out goals
    tasks = ml1.sample_tasks(10, np.random.default_rng(0), "test")
    assert all(t in ml1.test_tasks for t in tasks) and len({t.data for t in tasks}) == 10
    # ML10-style slots: class i % C (checked on the class order, without building ML10)
    fake = MetaWorldFamily.__new__(MetaWorldFamily)
    fake.train_classes = {"a": object, "b": object, "c": object}
    Task = type(ml1.train_tasks[0])
    fake.train_tasks = [Task(env_name=n, data=bytes([i])) for n in "abc" for i in range(4)]
    picked = fake.sample_tasks(7, np.random.default_rng(0), "train")
    assert [t.env_name for t in picked] == list("abcabca")
    assert len({(t.env_name, t.data) for t in picked}) == 7  # without replacement within a class


@needs_metaworld
def test_metaworld_success_counted_at_any_step_of_a_scripted_episode(ml1):
    """A scripted reach episode: the hand reaches the goal, then leaves it. The episode counts
    as solved (success at some step) although its last step is not a success; and a success
    that only comes after the episode's end (mask 0) is not counted."""
    from metaworld.policies import SawyerReachV3Policy

    env = ml1.make_env()
    env.task = ml1.test_tasks[0]
    obs, _ = env.reset()
    scripted, steps = SawyerReachV3Policy(), 60
    success = torch.zeros(1, steps, 1)
    reached = None
    for t in range(steps):
        if reached is None:
            seen = obs.copy()
            seen[-3:] = env._env._target_pos  # ML hides the goal from the observation; the script needs it
            action = scripted.get_action(seen)
        else:
            action = np.array([0.0, -1.0, 1.0, 0.0])  # move away from the goal
        obs, _, _, truncated, info = env.step(action)
        success[0, t, 0] = float(info["success"])
        if info["success"] and reached is None:
            reached = t
    env.close()
    assert reached is not None and reached < steps - 10, "the scripted policy should reach the goal"
    assert success[0, -1, 0] == 0, "the hand left the goal: the last step is not a success"
    assert truncated  # the sub-env truncates at its horizon
    mask = torch.ones(1, steps, 1)
    assert episode_success(success, mask).item() is True
    mask[0, reached:] = 0  # the episode ended before the success step
    assert episode_success(success, mask).item() is False


def test_success_rates_per_task_per_class_and_overall():
    solved = torch.tensor([[True, False, False, False], [True, True, True, True], [False, False, True, True]])
    out = success_rates(solved, ["a", "a", "b"])
    assert out["per_task"] == [0.25, 1.0, 0.5]
    assert out["per_class"] == {"a": 0.625, "b": 0.5}
    assert out["overall"] == pytest.approx(0.5625)  # mean over classes, not over tasks (0.5833)


@needs_metaworld
def test_metaworld_through_the_sampler_and_the_maml_runner(ml1, tmp_path):
    config = MAMLConfig(iterations=1, meta_batch_size=2, episodes_per_task=2, hidden=(8,), device="cpu", horizon=15,
                        trpo={"fisher_subsample": 1})
    family = MetaWorldFamily("ML1", "reach-v3", seed=0, horizon=15)
    trainer = MAMLTrainer(config, output_dir=tmp_path, sampler=SimulatorSampler(family, success_key="success"))
    trainer.train(progress=False)
    m = trainer.history[0]
    assert m["env_steps"] == 2 * 2 * 2 * 15 and 0 <= m["pre_success"] <= 1
    returns, evaluation = trainer.evaluate_with_episodes(num_tasks=2, max_steps=1, episodes_per_task=3, split="test")
    assert set(returns) == {"0", "1", "success_0", "success_1"} and 0 <= returns["success_1"] <= 1
    solved = evaluation.info[1]["success"]
    assert solved.shape == (2, 3) and solved.dtype == torch.bool
    rates = success_rates(solved, [getattr(t, "env_name", family.name) for t in evaluation.tasks])
    assert set(rates) == {"per_task", "per_class", "overall"} and list(rates["per_class"]) == ["reach-v3"]
    trainer.close()


# ---------------------------------------------------------------------- the runner
@needs_mujoco
def test_runner_resume_continues_exactly(tmp_path):
    """Two meta-iterations in one go == one, checkpoint, a fresh trainer loads it, one more."""
    family = HalfCheetahDir(horizon=8)
    config = MAMLConfig(iterations=2, meta_batch_size=2, episodes_per_task=2, hidden=(8,), device="cpu", horizon=8,
                        checkpoint_every=1, trpo={"fisher_subsample": 1})
    straight = MAMLTrainer(config, sampler=SimulatorSampler(family))
    straight.train(progress=False)
    first = MAMLTrainer(dataclasses.replace(config, iterations=1), output_dir=tmp_path, sampler=SimulatorSampler(family))
    first.train(progress=False)
    resumed = MAMLTrainer(config, output_dir=tmp_path, sampler=SimulatorSampler(family))
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert resumed.iteration == 1
    resumed.train(progress=False)
    for k in straight.params:
        torch.testing.assert_close(resumed.params[k], straight.params[k], rtol=0, atol=0)
    assert [m["post_return"] for m in resumed.history] == [m["post_return"] for m in straight.history]
    assert (tmp_path / "metrics.json").is_file()
    with pytest.raises(ValueError, match="sampler: the checkpoint was written with"):
        MAMLTrainer(config, sampler=SimulatorSampler(HalfCheetahVel(horizon=8))).load_checkpoint(tmp_path / CHECKPOINT_FILE)
    for t in (straight, first, resumed):
        t.close()


# ---------------------------------------------------------------------- bad input
@needs_mujoco
def test_bad_task_family_and_task_values():
    with pytest.raises(ValueError, match="expected one of .*AntDir"):
        make_mujoco_family("HopperVel")
    with pytest.raises(ValueError, match=r"in \[0.0, 2.0\].*2.5"):
        HalfCheetahVel(horizon=5).make_env(2.5)
    env = HalfCheetahVel(horizon=5).make_env()
    with pytest.raises(RuntimeError, match="set .task"):
        env.reset(seed=0) and env.step(np.zeros(6))
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="goal velocity"):
            env.task = bad
    with pytest.raises(TypeError, match="real number"):
        env.task = "fast"
    with pytest.raises(ValueError, match=r"-1 or \+1"):
        HalfCheetahDir(horizon=5).make_env(0.5)
    with pytest.raises(ValueError, match="unit direction"):
        AntDir(horizon=5).make_env((1.0, 1.0))
    with pytest.raises(ValueError, match="2D unit direction"):
        AntDir(horizon=5).make_env((1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="directions must be"):
        AntDir(directions="up")
    with pytest.raises(ValueError, match="horizon"):
        HalfCheetahVel(horizon=0)
    with pytest.raises(ValueError, match="num_tasks"):
        HalfCheetahVel().sample_tasks(0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a Generator"):
        HalfCheetahVel().sample_tasks(3, 0)
    env.close()


@needs_metaworld
def test_bad_metaworld_names_and_tasks(ml1):
    assert METAWORLD_BENCHMARKS == ("ML1", "ML10")
    with pytest.raises(ValueError, match=r"expected one of \['ML1', 'ML10'\]"):
        MetaWorldFamily("ML99")
    with pytest.raises(ValueError, match="unknown Meta-World env_name 'reach-v9'.*reach-v3"):
        MetaWorldFamily("ML1", "reach-v9")
    with pytest.raises(ValueError, match="env_name must be None for ML10"):
        MetaWorldFamily("ML10", "reach-v3")
    with pytest.raises(ValueError, match="horizon must be an int in"):
        MetaWorldFamily("ML1", "reach-v3", horizon=501)
    with pytest.raises(ValueError, match="split must be"):
        ml1.sample_tasks(2, np.random.default_rng(0), "valid")
    env = ml1.make_env()
    with pytest.raises(TypeError, match="metaworld.Task"):
        env.task = 3
    other = MetaWorldFamily("ML1", "push-v3", seed=0)
    with pytest.raises(ValueError, match=r"expected one of \['reach-v3'\]"):
        env.task = other.train_tasks[0]
    with pytest.raises(RuntimeError, match="set .task"):
        MetaWorldTaskEnv(ml1.train_classes).reset()
    with pytest.raises(ValueError, match="same shape"):
        episode_success(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="one name per task"):
        success_rates(torch.zeros(2, 3, dtype=torch.bool), ["a"])


@needs_mujoco
def test_bad_sampler_input():
    family = HalfCheetahVel(horizon=5)
    with pytest.raises(ValueError, match="autoreset_mode"):
        TaskVectorSampler(family.make_env, 1, 1, 5, autoreset_mode="disabled")
    with pytest.raises(ValueError, match="vectorization"):
        TaskVectorSampler(family.make_env, 1, 1, 5, vectorization="threads")
    with pytest.raises(ValueError, match="action_scale"):
        TaskVectorSampler(family.make_env, 1, 1, 5, action_scale=0.0)
    with pytest.raises(ValueError, match="num_tasks"):
        TaskVectorSampler(family.make_env, 0, 1, 5)
    with pytest.raises(TypeError, match="settable 'task'"):
        TaskVectorSampler(lambda: gym.make("Pendulum-v1"), 1, 1, 5)
    with pytest.raises(TypeError, match="1-D Box"):
        TaskVectorSampler(lambda: gym.make("CartPole-v1"), 1, 1, 5)
    with TaskVectorSampler(family.make_env, 2, 1, 5) as sampler:
        wrong_obs = gaussian_policy(5, 6)
        with pytest.raises(ValueError, match="17 numbers but the policy expected in_dim 5"):
            sampler.sample(wrong_obs.init(0), [0.5, 1.0], wrong_obs)
        wrong_act = gaussian_policy(17, 2)
        with pytest.raises(ValueError, match="actions have 6 numbers but the policy outputs 2"):
            sampler.sample(wrong_act.init(0), [0.5, 1.0], wrong_act)
        discrete = categorical_policy(17, 6)
        with pytest.raises(TypeError, match="distribution GAUSSIAN"):
            sampler.sample(discrete.init(0), [0.5, 1.0], discrete)
        policy = gaussian_policy(17, 6, hidden=(4,))
        params = policy.init(0)
        with pytest.raises(ValueError, match="expected 2 tasks"):
            sampler.sample(params, [0.5], policy)
        with pytest.raises(ValueError, match=r"in \[0.0, 2.0\]"):
            sampler.sample(params, [0.5, 3.0], policy)
        with pytest.raises(ValueError, match="noise expected shape"):
            sampler.sample(params, [0.5, 1.0], policy, noise=torch.zeros(5, 2, 1, 3))
        with pytest.raises(ValueError, match="reset_seeds expected 2"):
            sampler.sample(params, [0.5, 1.0], policy, reset_seeds=[1])
    assert isinstance(HalfCheetahVel(horizon=5).make_env(1.0), HalfCheetahVelEnv)


def test_bad_simulator_sampler():
    with pytest.raises(ValueError, match="vectorization"):
        SimulatorSampler(HalfCheetahVel(horizon=8), vectorization="gpu")
    with pytest.raises(ValueError, match="action_scale"):
        SimulatorSampler(HalfCheetahVel(horizon=8), action_scale=float("inf"))
    with pytest.raises(TypeError, match="seed"):
        SimulatorSampler(HalfCheetahVel(horizon=8), seed=1.5)
    with pytest.raises(TypeError, match="deterministic"):
        SimulatorSampler(HalfCheetahVel(horizon=8), deterministic="yes")
    with pytest.raises(TypeError, match="family must have"):
        SimulatorSampler(object())
    with pytest.raises(ValueError, match="horizon"):  # the config's horizon must be the family's
        MAMLTrainer(MAMLConfig(horizon=9, device="cpu"), sampler=SimulatorSampler(HalfCheetahVel(horizon=8)))


@pytest.mark.parametrize("example", ["maml_cheetah", "maml_ant", "maml_metaworld"])
@pytest.mark.parametrize("argv,needle", [(["--meta-batch-size", "0"], "--meta-batch-size"),
                                         (["--horizon", "-5"], "--horizon"),
                                         (["--action-scale", "0"], "--action-scale")])
def test_example_clis_reject_bad_flags_before_building_anything(example, argv, needle, tmp_path, monkeypatch, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{example}.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as `python examples/<name>.py` does: _gym_maml_cli
    spec = importlib.util.spec_from_file_location(f"example_{example}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its tyro-parsed dataclass looks its module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [path.name, *argv, "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as info:
        module.parse_args()
    assert info.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
