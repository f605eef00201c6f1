"""DDPG / TD3: pure targets and losses against hand computations, replay validation, a short
learning run on Pendulum-v1, checkpoints, and the HalfCheetah example (skipped without MuJoCo)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from functional_metarl import nn as fnn
from functional_metarl import rl
from functional_metarl.rl import TransitionBatch
from functional_metarl.runners import DDPGConfig, DDPGTrainer, TensorReplay

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- references
def ref_actor(p, obs, low, high):
    h = F.relu(F.linear(obs, p["net.0.weight"], p["net.0.bias"]))
    return low + (torch.tanh(F.linear(h, p["net.2.weight"], p["net.2.bias"])) + 1) / 2 * (high - low)


def ref_critic(p, obs, action):
    h = F.relu(F.linear(torch.cat([obs, action], -1), p["hidden.0.weight"], p["hidden.0.bias"]))
    return F.linear(h, p["out.weight"], p["out.bias"]).squeeze(-1)


def small_batch(b=4, obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TransitionBatch(
        obs=torch.randn(b, obs_dim, generator=g),
        action=torch.rand(b, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(b, generator=g),
        next_obs=torch.randn(b, obs_dim, generator=g),
        terminated=torch.tensor([0.0, 1.0, 0.0, 0.0])[:b],
    )


LOW, HIGH = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0])


def nets():
    actor = fnn.deterministic_actor(3, 2, LOW.tolist(), HIGH.tolist(), hidden=(5,), final_init=None)
    critic = fnn.q_critic(3, 2, hidden=(6,), final_init=None)
    return actor, critic


# ----------------------------------------------------------------------------- pure targets
def test_unbatched_targets_by_hand():
    r, d = torch.tensor([1.0, 2.0]), 0.9 * (1 - torch.tensor([0.0, 1.0]))
    q1, q2 = torch.tensor([3.0, 5.0]), torch.tensor([4.0, 1.0])
    assert torch.allclose(torch.vmap(rl.td_target)(r, d, q1), torch.tensor([1 + 0.9 * 3, 2.0]))
    assert torch.allclose(torch.vmap(rl.clipped_double_q_target)(r, d, q1, q2), torch.tensor([1 + 0.9 * 3, 2.0]))
    assert torch.allclose(rl.clipped_double_q_target(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(2.0), torch.tensor(-4.0)),
                          torch.tensor(0.5 - 2.0))
    # smoothing: noise clipped to +-0.5, then the action clipped to [low, high]
    a = torch.tensor([0.9, -1.0])
    out = rl.smoothed_target_action(a, torch.tensor([0.3, -3.0]), 0.5, LOW, HIGH)
    assert torch.allclose(out, torch.tensor([1.0, -1.5]))
    out = rl.smoothed_target_action(a, torch.tensor([-3.0, 0.1]), 0.5, LOW, HIGH)
    assert torch.allclose(out, torch.tensor([0.4, -0.9]))


def test_network_shapes_and_bounds():
    actor, critic = nets()
    pa, pc = actor.init(0), critic.init(1)
    obs = torch.randn(7, 3) * 100
    act = actor.apply(pa, obs)
    assert act.shape == (7, 2) and (act >= LOW).all() and (act <= HIGH).all()
    assert torch.allclose(act, ref_actor(pa, obs, LOW, HIGH), atol=1e-6)
    assert critic.apply(pc, torch.cat([obs, act], -1)).shape == (7,)
    lill = fnn.q_critic(3, 2, hidden=(8, 6), action_layer=1)
    assert lill.param_shapes["hidden.1.weight"] == (6, 8 + 2)
    assert lill.apply(lill.init(0), torch.randn(5, 5)).shape == (5,)


def test_ddpg_targets_match_reference():
    actor, critic = nets()
    pa, pc = actor.init(0), critic.init(1)
    batch = small_batch()
    y = rl.ddpg_targets(pa, pc, batch, actor, critic, gamma=0.9)
    q_next = ref_critic(pc, batch.next_obs, ref_actor(pa, batch.next_obs, LOW, HIGH))
    expected = batch.reward + 0.9 * (1 - batch.terminated) * q_next
    assert torch.allclose(y, expected, atol=1e-6)
    assert y[1] == batch.reward[1]  # terminal: no bootstrap


def test_td3_targets_match_reference():
    actor, critic = nets()
    pa = actor.init(0)
    p1, p2 = critic.init(1), critic.init(2)
    twin = {k: torch.stack([p1[k], p2[k]]) for k in p1}
    batch = small_batch()
    noise = torch.tensor([[0.1, -0.2], [2.0, -2.0], [0.0, 0.0], [-0.7, 0.45]])
    clip = torch.tensor([0.5, 1.0])
    y = rl.td3_targets(pa, twin, batch, noise, actor, critic, gamma=0.99, noise_clip=clip, action_low=LOW, action_high=HIGH)
    a = ref_actor(pa, batch.next_obs, LOW, HIGH)
    a = torch.max(torch.min(a + torch.max(torch.min(noise, clip), -clip), HIGH), LOW)
    q = torch.minimum(ref_critic(p1, batch.next_obs, a), ref_critic(p2, batch.next_obs, a))
    assert torch.allclose(y, batch.reward + 0.99 * (1 - batch.terminated) * q, atol=1e-6)
    with pytest.raises(ValueError, match="stacked on a leading axis of 2"):
        rl.td3_targets(pa, {k: v[:1] for k, v in twin.items()}, batch, noise, actor, critic, gamma=0.99, noise_clip=clip,
                       action_low=LOW, action_high=HIGH)
    with pytest.raises(ValueError, match="smoothing_noise expected shape"):
        rl.td3_targets(pa, twin, batch, noise[:2], actor, critic, gamma=0.99, noise_clip=clip, action_low=LOW,
                       action_high=HIGH)


def test_losses_and_actor_gradient():
    actor, critic = nets()
    pa, pc = actor.init(0), critic.init(1)
    batch = small_batch()
    y = torch.tensor([0.5, -1.0, 2.0, 0.0])
    loss = rl.critic_loss(pc, batch, y, critic)
    assert torch.allclose(loss, ((ref_critic(pc, batch.obs, batch.action) - y) ** 2).mean())
    twin = {k: torch.stack([v, v * 2]) for k, v in pc.items()}
    pc2 = {k: v * 2 for k, v in pc.items()}
    assert torch.allclose(rl.twin_critic_loss(twin, batch, y, critic), loss + rl.critic_loss(pc2, batch, y, critic))
    # deterministic policy gradient: torch.func.grad equals autograd through the reference nets
    g = torch.func.grad(lambda p: rl.dpg_actor_loss(p, pc, batch.obs, actor, critic))(pa)
    leaf = {k: v.clone().requires_grad_(True) for k, v in pa.items()}
    ref = -ref_critic(pc, batch.obs, ref_actor(leaf, batch.obs, LOW, HIGH)).mean()
    ref_g = torch.autograd.grad(ref, list(leaf.values()))
    for k, rg in zip(leaf, ref_g):
        assert torch.allclose(g[k], rg, atol=1e-6)
    # the critic loss treats its targets as constants: the gradient equals autograd of the
    # reference MSE with y fixed, even when y is computed from the same critic params ...
    leaf = {k: v.clone().requires_grad_(True) for k, v in pc.items()}
    ref = ((ref_critic(leaf, batch.obs, batch.action) - y) ** 2).mean()
    ref_g = dict(zip(leaf, torch.autograd.grad(ref, list(leaf.values()))))

    def loss_with_targets_from(p):  # y built from p itself: its gradient path must be cut
        y_p = y + 0.5 * ref_critic(p, batch.next_obs, batch.action) - 0.5 * ref_critic(p, batch.next_obs, batch.action).detach()
        return rl.critic_loss(p, batch, y_p, critic)

    for gc in (torch.func.grad(lambda p: rl.critic_loss(p, batch, y, critic))(pc), torch.func.grad(loss_with_targets_from)(pc)):
        assert set(gc) == set(pc)
        for k in pc:
            torch.testing.assert_close(gc[k], ref_g[k], atol=1e-6, rtol=1e-5)
    # ... and no gradient reaches the targets themselves
    assert torch.equal(torch.func.grad(lambda t: rl.critic_loss(pc, batch, t, critic))(y), torch.zeros_like(y))


def test_polyak_update_formula():
    target = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(3.0)}
    online = {"w": torch.tensor([5.0, -2.0]), "b": torch.tensor(0.0)}
    out = rl.polyak_update(target, online, 0.25)
    assert torch.allclose(out["w"], 0.25 * online["w"] + 0.75 * target["w"])
    assert torch.allclose(out["b"], torch.tensor(2.25))
    assert torch.equal(target["w"], torch.tensor([1.0, 2.0]))  # inputs untouched
    assert torch.equal(rl.polyak_update(target, online, 0.0)["w"], target["w"])
    assert torch.equal(rl.polyak_update(target, online, 1.0)["w"], online["w"])
    with pytest.raises(ValueError, match="tau"):
        rl.polyak_update(target, online, 1.5)
    with pytest.raises(ValueError, match="keys differ"):
        rl.polyak_update(target, {"w": online["w"]}, 0.1)


def test_schedule_and_ou():
    assert [rl.is_policy_update_step(i, 2) for i in range(1, 6)] == [False, True, False, True, False]
    assert all(rl.is_policy_update_step(i, 1) for i in range(1, 4))
    with pytest.raises(ValueError):
        rl.is_policy_update_step(1, 0)
    x = rl.ou_noise_step(torch.tensor([1.0]), torch.tensor([2.0]), theta=0.15, sigma=0.2, dt=1.0)
    assert torch.allclose(x, torch.tensor([1.0 - 0.15 + 0.4]))


# ----------------------------------------------------------------------------- replay
def make_replay(capacity=8):
    return TensorReplay(capacity, 3, 2, LOW, HIGH)


def add_args(b=2, **override):
    args = dict(obs=torch.zeros(b, 3), action=torch.zeros(b, 2), reward=torch.ones(b), next_obs=torch.ones(b, 3),
                terminated=torch.zeros(b))
    args.update(override)
    return args


def test_replay_ring_and_sample():
    buf = make_replay(4)
    for i in range(3):
        buf.add(**add_args(2, reward=torch.tensor([2.0 * i, 2.0 * i + 1])))
    assert len(buf) == 4 and buf.position == 2
    assert sorted(buf.storage.reward.tolist()) == [2.0, 3.0, 4.0, 5.0]  # oldest two overwritten
    batch = buf.sample(4, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (4, 3) and set(batch.reward.tolist()) <= {2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize(
    "override, error, match",
    [
        (dict(action=torch.zeros(2, 2, dtype=torch.int64)), TypeError, "action must be a floating-point"),
        (dict(action=torch.tensor([[0.0, 0.0], [1.5, 0.0]])), ValueError, "outside the action space"),
        (dict(action=torch.zeros(2, 3)), ValueError, r"action expected shape \[2, 2\]"),
        (dict(reward=torch.tensor([1.0, float("nan")])), ValueError, "reward contains non-finite"),
        (dict(reward=torch.tensor([1.0, float("inf")])), ValueError, "reward contains non-finite"),
        (dict(terminated=torch.tensor([0.0, 0.5])), ValueError, "terminated must hold only 0 or 1"),
    ],
)
def test_replay_rejects_bad_input_and_stores_nothing(override, error, match):
    buf = make_replay()
    buf.add(**add_args(1))
    before = [s.clone() for s in buf.storage]
    with pytest.raises(error, match=match):
        buf.add(**add_args(2, **override))
    assert len(buf) == 1 and buf.position == 1
    assert all(torch.equal(a, b) for a, b in zip(before, buf.storage))


def test_replay_sample_before_a_batch():
    buf = make_replay()
    buf.add(**add_args(2))
    with pytest.raises(ValueError, match="holds only 2 transitions"):
        buf.sample(3, torch.Generator())


# ----------------------------------------------------------------------------- runner
class NaNReward(gym.Wrapper):
    def __init__(self, env, at_step):
        super().__init__(env)
        self.count, self.at_step = 0, at_step

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.count += 1
        return obs, (float("nan") if self.count == self.at_step else r), term, trunc, info


def test_runner_non_finite_reward_raises_and_stores_nothing():
    cfg = DDPGConfig(algo="td3", iterations=50, start_steps=10, batch_size=4, hidden=(8,), device="cpu")
    trainer = DDPGTrainer(cfg, env=NaNReward(gym.make("Pendulum-v1"), at_step=5))
    for _ in range(4):
        trainer.env_step()
    with pytest.raises(FloatingPointError, match="non-finite reward"):
        trainer.env_step()
    assert len(trainer.replay) == 4 and trainer.steps == 4


def test_config_validation():
    with pytest.raises(ValueError, match="algo"):
        DDPGConfig(algo="sac")
    with pytest.raises(ValueError, match="tau"):
        DDPGConfig(tau=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        DDPGConfig(batch_size=0)
    with pytest.raises(TypeError, match="Box action space"):
        DDPGTrainer(DDPGConfig(device="cpu", iterations=10, start_steps=0, batch_size=4), env=gym.make("CartPole-v1"))


def test_td3_delayed_updates_and_checkpoint_roundtrip(tmp_path):
    cfg = DDPGConfig(algo="td3", iterations=220, start_steps=40, batch_size=8, hidden=(16,), device="cpu",
                     checkpoint_every=110, policy_delay=2)
    trainer = DDPGTrainer(cfg, output_dir=tmp_path)
    actor_before = {k: v.clone() for k, v in trainer.actor_params.items()}
    for _ in range(41):
        trainer.train_iteration()  # first update at step 41: a critic update only (delay 2)
    assert trainer.critic_updates == 1
    assert all(torch.equal(actor_before[k], v) for k, v in trainer.actor_params.items())
    trainer.train_iteration()
    assert trainer.critic_updates == 2
    assert not all(torch.equal(actor_before[k], v) for k, v in trainer.actor_params.items())
    trainer.train(progress=False)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "metrics.json").is_file()
    assert any(p.name.startswith("events") for p in (tmp_path / "tensorboard").iterdir())
    resumed = DDPGTrainer(DDPGConfig.from_dict({**cfg.to_dict(), "iterations": 240}), output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed.steps == 220 and resumed.critic_updates == trainer.critic_updates
    for mine, theirs in [(trainer.critic_params, resumed.critic_params), (trainer.target_actor_params, resumed.target_actor_params)]:
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert torch.equal(trainer.replay.storage.obs[:220], resumed.replay.storage.obs[:220])
    assert torch.equal(trainer.generator.get_state(), resumed.generator.get_state())
    resumed.train(progress=False)
    assert resumed.steps == 240
    with pytest.raises(ValueError, match="different settings"):
        DDPGTrainer(DDPGConfig.from_dict({**cfg.to_dict(), "gamma": 0.5}), output_dir=tmp_path).load_checkpoint(tmp_path / "checkpoint.pt")


def test_ddpg_learns_on_pendulum():
    """A short DDPG run beats its first episodes on Pendulum-v1 (deterministic evaluation on fixed seeds).

    Small nets and a fast target (tau 0.05) so 3,000 steps suffice; with these settings seeds 0-6
    all cleared both margins below (eval gains +400..+1180, last-vs-first +640..+960).
    """
    cfg = DDPGConfig(algo="ddpg", iterations=LEARN_STEPS, start_steps=400, batch_size=64, hidden=(64, 64), gamma=0.98,
                     tau=0.05, device="cpu", seed=0)
    trainer = DDPGTrainer(cfg)
    before = trainer.evaluate(episodes=4, seed=123)["return"]
    trainer.train(progress=False)
    after = trainer.evaluate(episodes=4, seed=123)["return"]
    first = np.mean([e["return"] for e in trainer.history[:2]])
    last = np.mean([e["return"] for e in trainer.history[-2:]])
    assert after > before + 300, (before, after)
    assert last > first + 200, (first, last)


LEARN_STEPS = 3000


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason='MuJoCo not installed (pip install "gymnasium[mujoco]")')
def test_halfcheetah_example_runs(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("td3_halfcheetah", ROOT / "examples" / "td3_halfcheetah.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its tyro-parsed dataclass looks its module up there
    spec.loader.exec_module(module)
    summary = module.main(["--iterations", "150", "--start-steps", "100", "--output", str(tmp_path), "--device", "cpu",
                           "--eval-episodes", "0", "--no-progress"])
    assert summary["steps"] == 150 and summary["env"] == "HalfCheetah-v5"
    assert math.isfinite(summary["updates_per_s"]) and summary["updates_per_s"] > 0  # 50 TD3 updates ran
    assert (tmp_path / "checkpoint.pt").is_file()
