"""MAML on Atari (issue 25): the ALE task distributions (flavours and games), the Nature-CNN
actor-critic, and MAML-A2C as pure functions, each against an explicit reference.

Env tests take a few env steps; network tests use a tiny CNN on 4x12x12 frames (the Nature CNN's
84x84 shape is checked once, without gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from functional_metarl import envs  # noqa: E402
from functional_metarl.envs import (  # noqa: E402
    ATARI_OBS_SHAPE,
    FULL_ACTION_SPACE_SIZE,
    AtariTask,
    AtariTaskEnv,
    AtariTaskFamily,
    atari_game_ids,
    game_flavours,
    rom_flavours,
)


# --------------------------------------------------------------------------- task distributions
def test_flavour_list_is_the_roms_modes_and_difficulties():
    import ale_py
    import ale_py.roms

    for game in ("freeway", "breakout", "space_invaders"):
        ale = ale_py.ALEInterface()
        ale.setLoggerMode(ale_py.LoggerMode.Error)
        ale.loadROM(ale_py.roms.get_rom_path(game))
        modes, difficulties = list(ale.getAvailableModes()), list(ale.getAvailableDifficulties())
        assert rom_flavours(game) == (tuple(modes), tuple(difficulties))
        assert game_flavours(game) == [AtariTask(game, m, d) for m in modes for d in difficulties]
    assert rom_flavours("freeway") == (tuple(range(8)), (0, 1))
    assert rom_flavours("breakout")[0] == tuple(range(0, 48, 4))
    assert game_flavours("freeway", modes=[1], difficulties=[0, 1]) == [AtariTask("freeway", 1, 0),
                                                                     AtariTask("freeway", 1, 1)]
    assert "pong" in atari_game_ids() and "breakout" in atari_game_ids()


def test_preprocessing_gives_uint8_frame_stacks_and_a_flavour_change_changes_the_game():
    family = AtariTaskFamily(game_flavours("freeway", modes=[0, 4], difficulties=[0]), repeat_action_probability=0.0)
    env = family.make_env()
    assert isinstance(env, AtariTaskEnv)
    assert env.observation_space.shape == ATARI_OBS_SHAPE and env.action_space.n == family.num_actions == 3
    runs = {}
    for task in family.tasks:
        env.task = task
        obs, info = env.reset(seed=0)
        assert info["task"] == task
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        frames, reward = [obs], 0.0
        for _ in range(150):  # walk up: mode 4's faster traffic changes frames and the reward structure
            obs, r, terminated, truncated, _ = env.step(1)
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            frames.append(obs)
            reward += r
        runs[task.mode] = (np.stack(frames), reward)
    env.close()
    assert not np.array_equal(runs[0][0][:20], runs[4][0][:20])  # the first frames differ
    # the same flavour again gives the same game (no sticky actions; same seed)
    env = family.make_env(family.tasks[0])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, runs[0][0][0])
    env.close()


def test_several_games_share_the_full_action_space_and_sample_tasks():
    tasks = [AtariTask("breakout", 0, 0), AtariTask("pong", 0, 0)]
    family = AtariTaskFamily(tasks, full_action_space=True)
    assert family.num_actions == FULL_ACTION_SPACE_SIZE == 18 and family.games == ("breakout", "pong")
    env = family.make_env()
    env.reset(seed=1)
    env.task = tasks[1]
    obs, info = env.reset(seed=1)
    assert info["task"].game == "pong" and obs.shape == ATARI_OBS_SHAPE
    env.step(17)
    env.close()
    drawn = family.sample_tasks(6, np.random.default_rng(0))
    assert len(drawn) == 6 and set(drawn) <= set(tasks)


def test_bad_atari_tasks_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"modes of 'breakout'.*\(0, 4, 8"):
        AtariTaskFamily([AtariTask("breakout", 1, 0)])
    with pytest.raises(ValueError, match=r"difficulties of 'breakout'.*\(0, 1\)"):
        AtariTaskFamily([AtariTask("breakout", 0, 3)])
    with pytest.raises(ValueError, match=r"game must be one of .*'breakout'"):
        AtariTaskFamily([AtariTask("breakou", 0, 0)])
    with pytest.raises(ValueError, match=r"modes\[0\] .*must be one of \(0, 1, 2"):
        game_flavours("freeway", modes=[9])
    with pytest.raises(ValueError, match=r"breakout: 4, pong: 6 actions.*full_action_space=True"):
        AtariTaskFamily([AtariTask("breakout", 0, 0), AtariTask("pong", 0, 0)])
    family = AtariTaskFamily(game_flavours("freeway", modes=[0]))
    env = family.make_env()
    with pytest.raises(ValueError, match=r"game \(the family's games\) must be one of \('freeway',\)"):
        env.task = AtariTask("pong", 0, 0)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    with pytest.raises(TypeError, match="tasks must be"):
        AtariTaskFamily([])
    assert envs.AtariTaskFamily is AtariTaskFamily
