"""MAML-A2C on Atari flavours or games (issue 25): the runner around ``meta.maml_a2c``.

One iteration = one meta-step:

1. draw ``meta_batch_size`` distinct training tasks (flavours of ``game``, or games); every
   training task has its own group of ``envs_per_task`` envs (``runners.TaskPoolSampler``)
   whose episodes carry on across meta-iterations (a flavour takes effect only at reset, so
   resetting shared envs into each meta-batch's tasks would show the inner loop only the first
   steps of every episode);
2. for each inner step, sample an n-step batch (``num_steps`` steps of each drawn task's envs)
   with the current per-task params, and take that A2C step (``meta.adapt_a2c``, SGD
   ``inner_lr``); the episodes carry on from batch to batch;
3. sample the post-update batch with the adapted params;
4. ``meta.maml_a2c`` (Adam ``meta_lr`` after clipping the meta-gradient's norm at 0.5; outer loss
   A2C, or PPO with ``outer="ppo"``): first or second order.

Metrics: the meta-step's stats plus ``reward_pre`` / ``reward_post``, the mean raw reward per env
step of the first inner batch and of the post-update batch, the iteration's wall time
``seconds`` and its emulator ``frames_per_s`` (4 frames per env step, sampling and meta-step
together).

:meth:`MAMLAtariTrainer.evaluate` adapts to held-out tasks (the flavours not trained on, or the
held-out games) from fresh episodes and reports the mean raw reward per env step after
``k = 0, 1, ..., K`` inner steps (each step on a fresh n-step batch of the policy adapted ``k``
times). This is a reward *rate* over short segments, not an episode return: an Atari episode is
thousands of steps, which a CPU evaluation cannot afford per ``k``; the issue's episode-return
targets need a long run and longer evaluation segments (``eval_steps``).

Resume: a checkpoint holds the params, the meta-optimizer's state and the generators, not the
emulators, so every task's episodes restart (with seeded resets) at each ``checkpoint_every``
boundary, in every run: a run resumed from a periodic checkpoint is then bit-identical on the
CPU to one that never stopped. (From a checkpoint written between boundaries, at the end of
``train`` or on a signal, the episodes restart at the resume instead: the numbers then differ
from an uninterrupted run.) Sticky actions and no-ops are seeded through the reset seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import checks
from ..envs import AtariTask, AtariTaskFamily, game_flavours, rom_flavours
from ..meta import A2CBatch, A2CConfig, adapt_a2c, maml_a2c
from ..nn import NATURE_CONV, nature_cnn_actor_critic
from ..optim import adam, chain, clip_by_global_norm, sgd
from ..tree import Params
from .base import RunConfig, Runner, restore_like
from .nstep_sampler import NStepTaskSampler, TaskPoolSampler

__all__ = ["MAMLAtariConfig", "MAMLAtariTrainer"]

_TINY_CONV = ((8, 8, 4), (8, 4, 2))


@dataclass
class MAMLAtariConfig(RunConfig):
    """Settings of :class:`MAMLAtariTrainer` (see the module docstring).

    Args:
        tasks: ``"flavours"`` (modes x difficulties of ``game``) or ``"games"``.
        game: the game whose flavours are the tasks (``tasks="flavours"``).
        held_out_modes: the modes kept for evaluation (every difficulty of them); ``()``: every
            fourth flavour in mode-major order.
        games: training games (``tasks="games"``; each in its ROM's first mode and difficulty,
            18 actions).
        held_out_games: held-out games (``tasks="games"``).
        meta_batch_size: ``N``, tasks per meta-iteration.
        envs_per_task: ``E``, envs stepped per task.
        num_steps: the n-step length ``T`` of a segment.
        inner_steps: A2C adaptation steps (SGD).
        inner_lr: their step size.
        meta_lr: the meta-step's Adam learning rate.
        outer: the outer loss, ``"a2c"`` or ``"ppo"``.
        ppo_epochs: epochs of the PPO outer loss.
        first_order: first-order meta-gradients.
        net: ``"nature"`` (the Nature CNN) or ``"tiny"`` (two 8-channel convolutions, 64 units:
            tests and quick CPU runs).
        repeat_action_probability: sticky actions (0.25).
        eval_tasks: held-out tasks per evaluation.
        eval_steps: the n-step length of the evaluation's segments.
    """

    iterations: int = 200
    checkpoint_every: int = 10
    tasks: str = "flavours"
    game: str = "space_invaders"
    held_out_modes: tuple[int, ...] = ()
    games: tuple[str, ...] = ("breakout", "space_invaders", "freeway", "boxing")
    held_out_games: tuple[str, ...] = ("pong",)
    meta_batch_size: int = 4
    envs_per_task: int = 8
    num_steps: int = 20
    inner_steps: int = 1
    inner_lr: float = 0.1
    meta_lr: float = 1e-4
    outer: str = "a2c"
    ppo_epochs: int = 1
    first_order: bool = False
    net: str = "nature"
    repeat_action_probability: float = 0.25
    eval_tasks: int = 4
    eval_steps: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.one_of(self.tasks, "tasks", ("flavours", "games"))
        checks.instance(self.game, "game", str)
        for name in ("meta_batch_size", "envs_per_task", "num_steps", "inner_steps", "ppo_epochs", "eval_tasks",
                     "eval_steps"):
            checks.positive_int(getattr(self, name), name)
        checks.positive_number(self.inner_lr, "inner_lr")
        checks.positive_number(self.meta_lr, "meta_lr")
        checks.one_of(self.outer, "outer", ("a2c", "ppo"))
        checks.flag(self.first_order, "first_order")
        checks.one_of(self.net, "net", ("nature", "tiny"))
        checks.probability(self.repeat_action_probability, "repeat_action_probability")
        for name in ("held_out_modes", "games", "held_out_games"):
            checks.instance(getattr(self, name), name, tuple)


def split_tasks(config: MAMLAtariConfig) -> tuple[list[AtariTask], list[AtariTask]]:
    """``(training tasks, held-out tasks)`` of a config; invalid games or modes raise with the
    valid choices."""
    if config.tasks == "games":
        def default(game: str) -> AtariTask:
            modes, difficulties = rom_flavours(game)
            return AtariTask(game, modes[0], difficulties[0])
        train = [default(g) for g in config.games]
        held = [default(g) for g in config.held_out_games]
        both = sorted(set(config.games) & set(config.held_out_games))
        if both:
            raise ValueError(f"games held out and trained on: {both}; a held-out game must not be in games")
    else:
        flavours = game_flavours(config.game)
        if config.held_out_modes:
            game_flavours(config.game, modes=config.held_out_modes)  # checks the modes against the ROM
            held = [t for t in flavours if t.mode in config.held_out_modes]
        else:
            held = flavours[3::4]
        train = [t for t in flavours if t not in held]
    if not train or not held:
        raise ValueError(f"the task split needs training and held-out tasks, got {len(train)} and {len(held)}")
    return train, held


class MAMLAtariTrainer(Runner):
    """MAML-A2C on Atari (see the module docstring): ``train()``, ``evaluate()``, resume."""

    config_class = MAMLAtariConfig
    log_prefix = "maml_atari"
    progress_metric = "reward_post"

    def __init__(self, config: MAMLAtariConfig, output_dir: Any = None):
        super().__init__(config, output_dir)
        cfg = config
        self.train_tasks, self.held_out_tasks = split_tasks(cfg)
        full = cfg.tasks == "games"
        common = dict(full_action_space=full, repeat_action_probability=cfg.repeat_action_probability)
        self.family = AtariTaskFamily(self.train_tasks, **common)
        self.held_out_family = AtariTaskFamily(self.held_out_tasks, **common)
        if self.held_out_family.num_actions != self.family.num_actions:
            raise ValueError(f"held-out tasks have {self.held_out_family.num_actions} actions, training tasks "
                             f"{self.family.num_actions}")
        conv, hidden = (NATURE_CONV, 512) if cfg.net == "nature" else (_TINY_CONV, 64)
        self.net = nature_cnn_actor_critic(self.family.num_actions, conv=conv, hidden=hidden)
        self.params: Params = self.net.init(cfg.seed, device=self.device)
        self.a2c = A2CConfig()
        self.inner_opt = sgd(cfg.inner_lr)
        self.meta_step = maml_a2c(self.net, self.inner_opt, chain(clip_by_global_norm(0.5), adam(cfg.meta_lr)),
                                  config=self.a2c, steps=cfg.inner_steps, first_order=cfg.first_order,
                                  outer=cfg.outer, epochs=cfg.ppo_epochs)
        self.opt_state = self.meta_step.init(self.params)
        self.rng = np.random.default_rng(cfg.seed)
        if cfg.meta_batch_size > len(self.train_tasks):
            raise ValueError(f"meta_batch_size {cfg.meta_batch_size} is more than the {len(self.train_tasks)} training "
                             "tasks (a meta-batch draws distinct tasks)")
        self.sampler = TaskPoolSampler(self.family.make_env, self.train_tasks, cfg.envs_per_task, cfg.num_steps,
                                       seed=cfg.seed)

    def _adapt_and_sample(self, sample: Any, params: Params, steps: int) -> tuple[list[A2CBatch], list[Params]]:
        """``steps + 1`` batches, batch ``k`` sampled by ``sample(params, params_per_task)`` with the
        params adapted ``k`` times (no grad)."""
        batches, path = [], [params]
        stacked, per_task = params, False
        for _ in range(steps):
            batch = sample(stacked, per_task)
            batches.append(batch)
            with torch.no_grad():
                stacked = adapt_a2c(stacked, batch, self.net, self.inner_opt, config=self.a2c, first_order=True,
                                    params_per_task=per_task)
            stacked = {k: v.detach() for k, v in stacked.items()}
            per_task = True
            path.append(stacked)
        batches.append(sample(stacked, per_task))
        return batches, path

    def run_iteration(self) -> dict[str, float]:
        """One meta-step on freshly drawn training tasks (see the module docstring)."""
        cfg = self.config
        start = time.perf_counter()
        if self.iteration % cfg.checkpoint_every == 0:
            self.sampler.restart()
        ids = [int(i) for i in self.rng.choice(len(self.train_tasks), cfg.meta_batch_size, replace=False)]
        batches, _ = self._adapt_and_sample(
            lambda p, per_task: self.sampler.sample(p, self.net, ids, params_per_task=per_task), self.params,
            cfg.inner_steps)
        train, valid = tuple(batches[:-1]), batches[-1]
        self.params, self.opt_state, stats = self.meta_step.update(self.params, self.opt_state, train, valid)
        seconds = time.perf_counter() - start
        frames = 4 * cfg.num_steps * cfg.meta_batch_size * cfg.envs_per_task * (cfg.inner_steps + 1)
        return {**stats, "reward_pre": float(batches[0].rewards.mean()), "reward_post": float(valid.rewards.mean()),
                "seconds": seconds, "frames_per_s": frames / seconds}

    def evaluate(self, steps: int = 3, seed: int = 12345, params: Params | None = None) -> dict[str, float]:
        """Mean raw reward per env step on ``eval_tasks`` held-out tasks after ``k = 0..steps``
        inner steps (``reward_k{k}``), from fresh episodes seeded by ``seed`` (the same tasks and
        reset seeds for every ``params``). ``params``: what to adapt (default: the meta-params;
        e.g. ``net.init(s)`` for the randomly initialised baseline)."""
        checks.positive_int(steps, "steps")
        checks.int_in_range(seed, "seed", low=0)
        if params is None:
            params = self.params
        self.net.check(params)
        cfg = self.config
        rng = np.random.default_rng(seed)
        tasks = [self.held_out_tasks[int(i)] for i in rng.integers(0, len(self.held_out_tasks), cfg.eval_tasks)]
        with NStepTaskSampler(self.held_out_family.make_env, cfg.eval_tasks, cfg.envs_per_task, cfg.eval_steps,
                              seed=seed) as sampler:
            sampler.set_tasks(tasks)
            batches, _ = self._adapt_and_sample(
                lambda p, per_task: sampler.sample(p, self.net, params_per_task=per_task), params, steps)
        return {f"reward_k{k}": float(b.rewards.mean()) for k, b in enumerate(batches)}

    def runner_state(self) -> dict[str, Any]:
        """Params, meta-optimizer state, the task generator's and the sampler's generator states."""
        return {"params": self.params, "opt_state": self.opt_state, "rng": self.rng.bit_generator.state,
                "sampler": self.sampler.state_dict()}

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`runner_state`'s values."""
        self.params = restore_like(state["params"], self.params, "params")
        self.opt_state = restore_like(state["opt_state"], self.opt_state, "opt_state")
        self.rng.bit_generator.state = state["rng"]
        self.sampler.load_state_dict(state["sampler"])

    def close(self) -> None:
        """Close the sampler's envs."""
        self.sampler.close()
