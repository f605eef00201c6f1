"""Exact resume, per runner: a run interrupted after a checkpoint and resumed from it must end
bit for bit where an uninterrupted run with the same config ends (CPU), and loading must restore
every field the checkpoint holds.

Each test (1) runs the config straight through; (2) runs it again with an env that raises part
way ("a crash") after a checkpoint was written; (3) loads that checkpoint into a fresh trainer
and checks, field by field, that the trainer's ``state_dict()`` equals the file's contents;
(4) finishes the run and checks the final ``state_dict()`` (params, targets, optimizer states,
replay and priorities, generator, env stream, counters, logs) equals the straight run's, field by
field. The MAML trainer's resume is tested the same way in tests/test_trainer.py.
What each checkpoint holds is listed in docs/resume.md.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from functional_metarl.runners import (
    CHECKPOINT_FILE,
    DDPGConfig,
    DDPGTrainer,
    DeepOptionCriticConfig,
    DeepOptionCriticTrainer,
    OptionCriticConfig,
    OptionCriticTrainer,
    RainbowConfig,
    RainbowTrainer,
)
from functional_metarl.runners.rainbow import make_vector_env

torch.set_num_threads(1)


# ------------------------------------------------------------------ helpers
def state_differences(a, b, path: str = "state") -> list[str]:
    """Every place where two nested checkpoint states differ: tensors by dtype, shape and exact
    values; dicts by keys; lists / tuples by length and items; other values by ``==`` (nan equals
    nan). An empty list means equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return [] if same else [path]
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            return [f"{path}: keys {sorted(a) if isinstance(a, dict) else a} != {sorted(b) if isinstance(b, dict) else b}"]
        return [d for k in a for d in state_differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [f"{path}: {type(a).__name__} of {len(a) if hasattr(a, '__len__') else '?'} != "
                    f"{type(b).__name__} of {len(b) if hasattr(b, '__len__') else '?'}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in state_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if (type(a) is type(b) and a == b) else [f"{path}: {a!r} != {b!r}"]


def test_state_differences_finds_every_kind_of_difference():
    base = {"t": torch.tensor([1.0, 2.0]), "l": [1, {"x": 0.5}], "n": None, "f": float("nan")}
    assert state_differences(base, {**base}) == []
    assert state_differences(base, {**base, "t": torch.tensor([1.0, 2.5])}) == ["state['t']"]
    assert state_differences(base, {**base, "t": torch.tensor([1.0, 2.0], dtype=torch.float64)}) == ["state['t']"]
    assert state_differences(base, {**base, "l": [1, {"x": 0.25}]}) == ["state['l'][1]['x']: 0.5 != 0.25"]
    assert len(state_differences(base, {**base, "l": [1]})) == 1
    assert len(state_differences(base, {k: v for k, v in base.items() if k != "n"})) == 1
    assert state_differences({"i": 1}, {"i": 1.0}) == ["state['i']: 1 != 1.0"]  # int vs float is a difference


def assert_same_state(a, b) -> None:
    diffs = state_differences(a, b)
    assert not diffs, "states differ at:\n" + "\n".join(diffs[:20])


class Crash(Exception):
    """Raised by the crashing envs below: stands for a run killed between checkpoints."""


class CrashingEnv(gym.Wrapper):
    """A single env that raises on its ``after``-th step (counted from construction)."""

    def __init__(self, env, after: int):
        super().__init__(env)
        self.left = after

    def step(self, action):
        self.left -= 1
        if self.left < 0:
            raise Crash()
        return self.env.step(action)


class CrashingVectorEnv(gym.vector.VectorWrapper):
    """A vector env that raises on its ``after``-th step."""

    def __init__(self, env, after: int):
        super().__init__(env)
        self.left = after

    def step(self, actions):
        self.left -= 1
        if self.left < 0:
            raise Crash()
        return self.env.step(actions)


def checkpoint_contents(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ Rainbow
RAINBOW_CASES = {
    # name: (config overrides, vector steps before the crash); checkpoints every 33 iterations (env steps) (the full case: episodes end at 59, 70, 80)
    "full": (dict(), 90),
    "ablated": (dict(double=False, prioritized=False, dueling=False, distributional=False, noisy=False, n_step=1), 90),
    "three_envs_train_every_2": (dict(num_envs=3, train_every=2, iterations=33, checkpoint_every=15), 31),
}


@pytest.mark.parametrize("case", sorted(RAINBOW_CASES))
def test_rainbow_resume_is_exact(case, tmp_path):
    overrides, crash_after = RAINBOW_CASES[case]
    kw = dict(iterations=100, learning_starts=48, batch_size=16, hidden=(16,), head_hidden=16, target_update=20,
              device="cpu", seed=3, log_every=40, checkpoint_every=33)
    cfg = RainbowConfig(**{**kw, **overrides})
    straight = RainbowTrainer(cfg)
    straight.train(progress=False)

    crashing = RainbowTrainer(cfg, output_dir=tmp_path, env_fn=lambda c: CrashingVectorEnv(make_vector_env(c), crash_after))
    with pytest.raises(Crash):
        crashing.train(progress=False)
    saved = checkpoint_contents(tmp_path / CHECKPOINT_FILE)
    assert 0 < saved["iteration"] < cfg.iterations and saved["state"]["envs"] is not None
    assert any(len(a) > 0 for a in saved["state"]["envs"]["actions"]), "the checkpoint should fall inside an episode"
    assert saved["state"]["episodes"] > 0, "the checkpoint should come after some finished episodes"

    resumed = RainbowTrainer(cfg, output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert_same_state(resumed.state_dict(), saved)  # everything the checkpoint holds is restored
    resumed.train(progress=False)
    assert_same_state(resumed.state_dict(), straight.state_dict())
    for t in (straight, crashing, resumed):
        t.close()


class _UnseededResets(gym.vector.VectorWrapper):
    """A vector env whose resets ignore the seed: not a function of seed and actions."""

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=None, options=options)


def test_rainbow_resume_refuses_an_env_that_does_not_replay(tmp_path):
    cfg = RainbowConfig(iterations=30, learning_starts=16, batch_size=8, hidden=(8,), head_hidden=8,
                        device="cpu", checkpoint_every=30, log_every=30)
    first = RainbowTrainer(cfg, output_dir=tmp_path)
    first.train(progress=False)
    other = RainbowTrainer(cfg, env_fn=lambda c: _UnseededResets(make_vector_env(c)))
    with pytest.raises(RuntimeError, match="cannot be resumed exactly"):
        other.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    for t in (first, other):
        t.close()


# ------------------------------------------------------------------ DDPG / TD3
DDPG_CASES = {
    "td3": DDPGConfig(algo="td3", iterations=240, start_steps=40, batch_size=8, hidden=(16,), device="cpu",
                      checkpoint_every=110, policy_delay=2),
    # Lillicrap's DDPG: OU exploration noise (state carried across steps), critic L2, no warm-up
    "ddpg_ou": DDPGConfig.lillicrap(iterations=240, learning_starts=16, batch_size=8, hidden=(16, 16), device="cpu",
                                    checkpoint_every=110),
}


@pytest.mark.parametrize("case", sorted(DDPG_CASES))
def test_ddpg_resume_is_exact_mid_episode(case, tmp_path):
    cfg = DDPG_CASES[case]
    straight = DDPGTrainer(cfg)
    straight.train(progress=False)

    crashing = DDPGTrainer(cfg, output_dir=tmp_path, env=CrashingEnv(gym.make(cfg.env_id), after=231))
    with pytest.raises(Crash):
        crashing.train(progress=False)
    saved = checkpoint_contents(tmp_path / CHECKPOINT_FILE)
    # Pendulum episodes last 200 steps: step 220 is 20 steps into the second episode
    assert saved["state"]["steps"] == 220 and saved["state"]["episode"]["actions"].shape == (20, 1)
    if cfg.exploration == "ou":
        assert saved["state"]["episode"]["ou"].abs().sum() > 0

    resumed = DDPGTrainer(cfg, output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert_same_state(resumed.state_dict(), saved)
    resumed.train(progress=False)
    # the episode records hold no wall-clock measurements any more: the whole state is compared
    assert_same_state(resumed.state_dict(), straight.state_dict())


class _ShiftedReset(gym.Wrapper):
    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=None if seed is None else seed + 1, options=options)


def test_ddpg_resume_refuses_an_env_that_does_not_replay(tmp_path):
    cfg = DDPGConfig(iterations=30, start_steps=10, batch_size=4, hidden=(8,), device="cpu", checkpoint_every=30)
    DDPGTrainer(cfg, output_dir=tmp_path).train(progress=False)
    with pytest.raises(RuntimeError, match="cannot be resumed exactly"):
        DDPGTrainer(cfg, env=_ShiftedReset(gym.make(cfg.env_id))).load_checkpoint(tmp_path / CHECKPOINT_FILE)


# ------------------------------------------------------------------ deep Option-Critic
def test_deep_option_critic_resume_is_exact(tmp_path):
    cfg = DeepOptionCriticConfig(num_envs=2, iterations=6, learning_starts=20, batch_size=16, epsilon_decay_steps=500,
                                 target_update_every=50, checkpoint_every=2, seed=4, hidden=(16,), tensorboard=False)
    straight = DeepOptionCriticTrainer(cfg)
    straight.train(progress=False)

    # env 0 crashes on its 100th step, after the first checkpoint (written at a round boundary)
    crashing = DeepOptionCriticTrainer(cfg, output_dir=tmp_path,
                                       env_fn=lambda i: CrashingEnv(gym.make(cfg.env_id), 100) if i == 0 else gym.make(cfg.env_id))
    with pytest.raises(Crash):
        crashing.train(progress=False)
    saved = checkpoint_contents(tmp_path / CHECKPOINT_FILE)
    assert 0 < saved["state"]["steps"] < crashing.steps and saved["state"]["rounds"] >= 2

    resumed = DeepOptionCriticTrainer(cfg, output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert_same_state(resumed.state_dict(), saved)
    resumed.train(progress=False)
    assert_same_state(resumed.state_dict(), straight.state_dict())
    for t in (straight, crashing, resumed):
        t.close()


# ------------------------------------------------------------------ tabular Option-Critic
def test_tabular_option_critic_resume_is_exact(tmp_path):
    # the Four Rooms env is pure tensors: its state is saved as is, mid-episode
    cfg = OptionCriticConfig(num_runs=3, iterations=6, switch_goal_at=3, max_steps=60, seed=2,
                             checkpoint_every=10_000, epsilon=0.2)
    straight = OptionCriticTrainer(cfg)
    straight.train(progress=False)

    interrupted = OptionCriticTrainer(cfg, output_dir=tmp_path)
    for _ in range(150):  # stop part way, mid-episode (before the goal moves for some runs)
        interrupted.step()
    assert not interrupted.done() and (interrupted._ep_len > 0).any()
    interrupted.save_checkpoint()
    saved = checkpoint_contents(tmp_path / CHECKPOINT_FILE)
    assert_same_state(saved, interrupted.state_dict())

    resumed = OptionCriticTrainer(cfg, output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert_same_state(resumed.state_dict(), saved)
    resumed.train(progress=False)
    assert_same_state(resumed.state_dict(), straight.state_dict())
    assert (straight.goals[:, 1] != cfg.initial_goal).all()  # the goal move happened (part of what is compared)
