"""Atari task distributions from the Arcade Learning Environment: the *flavours* (mode x
difficulty) of one game, or several games, as tasks of a meta-batch.

A task is an :class:`AtariTask` ``(game, mode, difficulty)``. The valid modes and difficulties
are read from the ROM (``ale_py.ALEInterface.getAvailableModes`` / ``getAvailableDifficulties``),
never listed by hand: e.g. Freeway has modes 0-7 x difficulties 0-1, Breakout modes
0, 4, ..., 44 x 0-1 (Machado et al. 2018, "Revisiting the ALE", section 4.1, introduced the
flavours; Farebrother et al. 2018 used them as held-out tasks).

:class:`AtariTaskFamily` builds the sub-envs: ``make_env()`` gives an :class:`AtariTaskEnv` whose
``task`` attribute selects the flavour (or game) of its *next* reset (a mode change takes effect
only at reset, in the ROM as here), so a vector env can hold one task per sub-env, set with
``envs.set_attr("task", [...])`` before its reset.

Preprocessing, the usual Atari protocol (Mnih et al. 2015 / Machado et al. 2018):

* the ALE env is built with ``frameskip=1``; gymnasium's ``AtariPreprocessing`` repeats each
  action for 4 frames (max-pooling the last two), converts to 84x84 grayscale, starts each
  episode with up to ``noop_max = 30`` no-ops, and keeps episodes whole across life losses
  (``terminal_on_life_loss=False``); rewards are *not* clipped here (a loss may clip them);
* ``FrameStackObservation(4)``: observations are ``uint8 [4, 84, 84]``;
* **sticky actions**: with probability ``repeat_action_probability = 0.25`` (the ALE v5 default,
  Machado et al.'s recommendation) the emulator repeats the previous action on each frame;
  ``0.0`` makes the emulator deterministic given the no-op count;
* an episode is truncated after 108,000 emulator frames (30 minutes of play, the v5 default).

Several games in one family need a common action space: with ``full_action_space=True`` every
game has the 18 joystick actions; without it each game has its ROM's minimal set, and a family
whose games' minimal sets differ is refused with the sizes of each.

Stepping a batch of tasks: ``ale_py.AtariVectorEnv`` (the native, threaded vector env) has no
``mode`` or ``difficulty`` argument, so a meta-batch of flavours runs either as one vector env per
flavour or as these single envs stepped together (``gym.vector.SyncVectorEnv``); the measured
comparison is in ``docs/results/atari-maml.md``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import gymnasium as gym
import numpy as np

from .. import checks

__all__ = [
    "AtariTask",
    "ATARI_OBS_SHAPE",
    "FULL_ACTION_SPACE_SIZE",
    "atari_game_ids",
    "rom_flavours",
    "game_flavours",
    "AtariTaskEnv",
    "AtariTaskFamily",
]

ATARI_OBS_SHAPE = (4, 84, 84)
"""Observation shape of every :class:`AtariTaskEnv`: 4 stacked 84x84 grayscale frames (uint8)."""

FULL_ACTION_SPACE_SIZE = 18
"""Number of actions with ``full_action_space=True`` (every joystick direction x fire)."""


class AtariTask(NamedTuple):
    """One Atari task: a game (an ALE ROM id such as ``"breakout"``) in one mode and difficulty."""

    game: str
    mode: int
    difficulty: int


def atari_game_ids() -> tuple[str, ...]:
    """The ROM ids ale-py ships (``"breakout"``, ``"space_invaders"``, ...), sorted."""
    import ale_py.roms

    return tuple(sorted(ale_py.roms.get_all_rom_ids()))


@functools.lru_cache(maxsize=None)
def _rom_info(game: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(modes, difficulties, minimal action set) read from the ROM of ``game`` (a checked id)."""
    import ale_py
    import ale_py.roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    return (tuple(int(m) for m in ale.getAvailableModes()), tuple(int(d) for d in ale.getAvailableDifficulties()),
            tuple(int(a.value) for a in ale.getMinimalActionSet()))


def _check_game(game: object, name: str = "game") -> str:
    checks.instance(game, name, str)
    return checks.one_of(game, name, atari_game_ids())


def rom_flavours(game: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(modes, difficulties)``: the valid modes and difficulties of ``game``, read from its ROM."""
    modes, difficulties, _ = _rom_info(_check_game(game))
    return modes, difficulties


def _check_task(task: object, name: str = "task") -> AtariTask:
    """``task`` as an :class:`AtariTask` if its game exists and its mode and difficulty are the ROM's."""
    if isinstance(task, tuple) and not isinstance(task, AtariTask) and len(task) == 3:
        task = AtariTask(*task)
    checks.instance(task, name, AtariTask)
    game = _check_game(task.game, f"{name}.game")
    modes, difficulties = rom_flavours(game)
    checks.one_of(task.mode, f"{name}.mode (the modes of {game!r})", modes)
    checks.one_of(task.difficulty, f"{name}.difficulty (the difficulties of {game!r})", difficulties)
    return task


def game_flavours(game: str, modes: Sequence[int] | None = None,
                  difficulties: Sequence[int] | None = None) -> list[AtariTask]:
    """Every flavour ``mode x difficulty`` of ``game`` (mode-major), as :class:`AtariTask` values.

    ``modes`` / ``difficulties``: a subset (e.g. training flavours; the rest held out); each must
    be one the ROM offers, and a wrong one raises with the ROM's list. ``None``: all of them.
    """
    rom_modes, rom_difficulties = rom_flavours(game)
    modes = rom_modes if modes is None else tuple(modes)
    difficulties = rom_difficulties if difficulties is None else tuple(difficulties)
    for i, m in enumerate(modes):
        checks.one_of(m, f"modes[{i}] (the modes of {game!r})", rom_modes)
    for i, d in enumerate(difficulties):
        checks.one_of(d, f"difficulties[{i}] (the difficulties of {game!r})", rom_difficulties)
    return [AtariTask(game, m, d) for m in modes for d in difficulties]


def _preprocessed(game: str, task: AtariTask, full_action_space: bool, repeat_action_probability: float,
                  noop_max: int, max_episode_frames: int) -> gym.Env:
    """One game's ALE env (``frameskip=1``) under ``AtariPreprocessing`` and ``FrameStackObservation(4)``."""
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    base = ale_py.AtariEnv(game=game, mode=task.mode, difficulty=task.difficulty, obs_type="rgb", frameskip=1,
                           repeat_action_probability=repeat_action_probability, full_action_space=full_action_space,
                           max_num_frames_per_episode=max_episode_frames)
    env = AtariPreprocessing(base, noop_max=noop_max, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                             grayscale_obs=True, scale_obs=False)
    return FrameStackObservation(env, ATARI_OBS_SHAPE[0])


class AtariTaskEnv(gym.Env):
    """A preprocessed Atari env whose ``task`` (an :class:`AtariTask`) is settable: the new game,
    mode and difficulty take effect at the next ``reset`` (until then the current episode goes on).

    Observations ``uint8 [4, 84, 84]``, actions ``Discrete(num_actions)``. One ALE instance per
    game is built on first use and kept; a flavour change sets the ROM's mode and difficulty
    (``ALEInterface.setMode`` / ``setDifficulty``) before the reset. ``reset``'s ``info`` carries
    the ``task`` of the episode it starts.

    Args:
        family: the :class:`AtariTaskFamily` whose tasks (and settings) this env accepts.
        task: the first task (default: the family's first).
    """

    metadata = {"render_modes": []}

    def __init__(self, family: AtariTaskFamily, task: AtariTask | None = None):
        checks.instance(family, "family", AtariTaskFamily)
        self.family = family
        self.observation_space = gym.spaces.Box(0, 255, ATARI_OBS_SHAPE, dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(family.num_actions)
        self._games: dict[str, gym.Env] = {}
        self._active: gym.Env | None = None
        self._task = family.check_task(family.tasks[0] if task is None else task)

    @property
    def task(self) -> AtariTask:
        """The task of the next reset (and of the current episode unless it was set since)."""
        return self._task

    @task.setter
    def task(self, value: AtariTask) -> None:
        self._task = self.family.check_task(value)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode of ``self.task``: ``(obs uint8 [4, 84, 84], info)``."""
        super().reset(seed=seed)
        task = self._task
        env = self._games.get(task.game)
        if env is None:
            f = self.family
            env = _preprocessed(task.game, task, f.full_action_space, f.repeat_action_probability, f.noop_max,
                                f.max_episode_frames)
            self._games[task.game] = env
        base = env.unwrapped
        # ale_py's AtariEnv reloads the ROM with these on a seeded reset; the ALE calls set them now.
        base._game_mode, base._game_difficulty = task.mode, task.difficulty
        base.ale.setMode(task.mode)
        base.ale.setDifficulty(task.difficulty)
        self._active = env
        obs, info = env.reset(seed=seed, options=options)
        return np.asarray(obs), {**info, "task": task}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One agent step (4 emulator frames): ``(obs, reward, terminated, truncated, info)``."""
        if self._active is None:
            raise RuntimeError("AtariTaskEnv.step before reset: call reset() first")
        obs, reward, terminated, truncated, info = self._active.step(action)
        return np.asarray(obs), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Close every game's ALE env."""
        for env in self._games.values():
            env.close()
        self._games.clear()
        self._active = None


class AtariTaskFamily:
    """A task distribution over Atari flavours and/or games, with one preprocessing setting.

    Args:
        tasks: the tasks to draw from (e.g. ``game_flavours("freeway", modes=[0, 1, 2])`` or one
            ``AtariTask(game, default mode, 0)`` per game); each is checked against its ROM.
        full_action_space: all 18 actions for every game; required when the tasks' games have
            different minimal action sets (the error names each game's set size).
        repeat_action_probability: sticky actions (0.25: ALE v5's default).
        noop_max: the most no-ops at the start of an episode (30).
        max_episode_frames: emulator frames before truncation (108,000).

    Attributes: ``tasks``, ``games`` (in order of first appearance), ``num_actions``.
    """

    def __init__(self, tasks: Sequence[AtariTask], *, full_action_space: bool = False,
                 repeat_action_probability: float = 0.25, noop_max: int = 30, max_episode_frames: int = 108_000):
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
            raise checks.ArgumentTypeError(f"tasks must be a non-empty sequence of AtariTask, got {tasks!r}")
        self.tasks = tuple(_check_task(t, f"tasks[{i}]") for i, t in enumerate(tasks))
        self.full_action_space = checks.flag(full_action_space, "full_action_space")
        self.repeat_action_probability = checks.probability(repeat_action_probability, "repeat_action_probability")
        self.noop_max = checks.non_negative_int(noop_max, "noop_max")
        self.max_episode_frames = checks.positive_int(max_episode_frames, "max_episode_frames")
        self.games = tuple(dict.fromkeys(t.game for t in self.tasks))
        if full_action_space:
            self.num_actions = FULL_ACTION_SPACE_SIZE
        else:
            sets = {g: _rom_info(g)[2] for g in self.games}
            if len(set(sets.values())) > 1:
                sizes = ", ".join(f"{g}: {len(s)}" for g, s in sets.items())
                raise ValueError(f"the games' minimal action sets differ ({sizes} actions); build the family with "
                                 f"full_action_space=True ({FULL_ACTION_SPACE_SIZE} actions for every game)")
            self.num_actions = len(next(iter(sets.values())))

    def check_task(self, task: object, name: str = "task") -> AtariTask:
        """``task`` if it is a valid :class:`AtariTask` whose game is one of the family's games."""
        task = _check_task(task, name)
        checks.one_of(task.game, f"{name}.game (the family's games)", self.games)
        return task

    def make_env(self, task: AtariTask | None = None) -> AtariTaskEnv:
        """A sub-env with a settable ``task`` (default: the family's first task)."""
        return AtariTaskEnv(self, task)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> list[AtariTask]:
        """``num_tasks`` tasks drawn uniformly with replacement from ``tasks``."""
        checks.positive_int(num_tasks, "num_tasks")
        checks.instance(rng, "rng", np.random.Generator)
        return [self.tasks[int(i)] for i in rng.integers(0, len(self.tasks), size=num_tasks)]

    def __repr__(self) -> str:
        return (f"AtariTaskFamily({len(self.tasks)} tasks of {list(self.games)}, num_actions={self.num_actions}, "
                f"sticky={self.repeat_action_probability})")
