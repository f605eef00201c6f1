"""Tabular Option-Critic on Four Rooms (Bacon, Harb & Precup 2017, section 5.1).

A thin stateful shell around ``rl.option_critic`` and ``envs.FourRooms``: it owns the
``torch.Generator``, ``num_runs`` independent learners stepped side by side (params carry a
leading run axis; losses are ``vmap``-ed over runs, so the runs never share a gradient), the
per-run episode bookkeeping (goal move, resets), TensorBoard / ``metrics.json`` logs and atomic
checkpoints with exact resume.

Each step, for every run: sample ``a ~ pi_w(s)``; step the env; one SGD step on the critic,
intra-option policy and termination losses at ``(s, w, a, r, s')``; then, with the updated
params, the option terminates at ``s'`` with probability ``beta_w(s')`` and, if it does, a new
one is chosen epsilon-greedily over ``Q(s', .)`` (call-and-return).

Settings, stated:

- From the paper: 4 options, gamma 0.99, learning rates critic 0.5 and intra-option 0.25,
  epsilon-greedy policy over options, tabular (one-hot) features, Boltzmann intra-option
  policies, sigmoid terminations; goal in the east doorway, start uniform over the other cells;
  after 1000 episodes the goal moves to a random cell of the lower-right room. The termination
  advantage uses ``V_Omega(s') = sum_w pi_Omega(w | s') Q(s', w)``, the paper's definition, which for
  epsilon-greedy over options is ``(1 - eps) max Q + eps mean Q`` (``termination_value =
  "epsilon_greedy"``).
- From the authors' released tabular code (not in the paper text): zero init, at most 1000
  steps per episode, no entropy bonus. Their code uses ``V = max Q`` in the termination
  advantage (``termination_value="greedy"``), a softmax temperature of 0.01 and termination step
  size 0.25. Their code updates ``theta`` by ``lr * delta * (e_a - pi)`` with logits
  ``theta / T``; we parameterise the logits directly, which is the same update with step size
  ``lr / T`` (``intra_lr / temperature`` on the logits).
- Our choices: epsilon 0.1, temperature 1 (intra-option step 0.25 on the logits, so options
  stay stochastic for longer and specialise), termination step size 2.5, margin ``xi = 0``. With
  ``V = max Q`` the advantage ``Q_w - V`` is never positive, so ``beta`` can only rise; with the
  epsilon-greedy ``V`` the greedy option's ``beta`` can fall. Why these values, from measured
  runs: ``docs/results/agents.md``.
- ``Q_U(s, w, a)`` is the one-step target (see ``rl.option_critic``), not a separate table.
- Ties in ``argmax_w Q`` are broken uniformly at random (all-zero Q at the start).
- One iteration of the runner is one episode of every learner: it steps all of them side by
  side until the slowest has finished one more episode (learners that are ahead keep going).
  ``iterations`` is the number of episodes per learner, and must match on resume (the records
  are sized by it and it decides which learners are still active).
- Termination statistics: the trainer counts, per run, phase (before / after the goal move),
  cell and option, how often each option *arrives* in a cell without the episode ending.
  :meth:`OptionCriticTrainer.arrival_termination_map` weights the final ``beta_w(s)`` by these
  counts: the termination probability of the option that is actually running when the agent
  reaches ``s``. Per-option maps averaged over runs mean little (option labels are arbitrary per
  run), so the example plots one run's options and this pooled map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.func import grad, vmap

from .. import checks

from ..envs.four_rooms import FourRooms, FourRoomsNoise, FourRoomsState, FourRoomsTask
from ..optim import apply_updates, sgd
from ..rl.option_critic import (
    init_linear_option_params,
    linear_option_heads,
    option_critic_losses,
)
from ..tree import Params
from .base import RunConfig, Runner, restore_like

__all__ = ["OptionCriticConfig", "OptionCriticTrainer"]


@dataclass
class OptionCriticConfig(RunConfig):
    """Tabular Option-Critic on Four Rooms (Bacon et al. 2017, section 5.1): ``num_runs``
    independent learners stepped side by side, each for ``iterations`` episodes.

    ``checkpoint_every`` counts iterations (episodes of the slowest learner)."""

    iterations: int = 2000  # episodes per learner
    device: str = "cpu"
    checkpoint_every: int = 100  # episodes
    num_options: int = 4
    num_runs: int = 10  # independent learners stepped side by side
    switch_goal_at: int | None = 1000  # episode after which the goal moves (None: never)
    max_steps: int = 1000  # per episode
    gamma: float = 0.99
    critic_lr: float = 0.5
    intra_lr: float = 0.25
    termination_lr: float = 2.5
    temperature: float = 1.0
    epsilon: float = 0.1
    xi: float = 0.0
    termination_value: str = "epsilon_greedy"  # V in the termination advantage: "epsilon_greedy" or "greedy" (max Q)
    entropy_coef: float = 0.0
    initial_goal: int = 62  # the east doorway

    RESUMABLE: ClassVar[tuple[str, ...]] = ("device", "checkpoint_every")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_options", "num_runs", "max_steps"):
            checks.positive_int(getattr(self, name), name)
        if self.switch_goal_at is not None:
            checks.int_in_range(self.switch_goal_at, "switch_goal_at", 1, self.iterations - 1)
        for name in ("gamma", "epsilon"):
            checks.probability(getattr(self, name), name)
        for name in ("critic_lr", "intra_lr", "termination_lr", "temperature"):
            checks.positive_number(getattr(self, name), name)
        checks.one_of(self.termination_value, "termination_value", ("epsilon_greedy", "greedy"))
        checks.number(self.xi, "xi")
        checks.non_negative_number(self.entropy_coef, "entropy_coef")
        checks.int_in_range(self.initial_goal, "initial_goal", 0, 103)


class OptionCriticTrainer(Runner):
    """Runs :class:`OptionCriticConfig`'s learners on the pure Four Rooms env: linear (tabular)
    option-critic updates every step, goal moves as in the paper, exact resume from a checkpoint.

    One iteration is one episode of every learner (see the module docstring); its metric is
    ``steps_to_goal``, that episode's length averaged over the learners.
    """

    config_class = OptionCriticConfig
    log_prefix = "train"
    progress_metric = "steps_to_goal"

    def __init__(self, config: OptionCriticConfig, output_dir: str | Path | None = None):
        super().__init__(config, output_dir)
        cfg = config
        self.env = FourRooms(device=self.device)
        S, O, A, R = self.env.num_states, cfg.num_options, self.env.num_actions, cfg.num_runs
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        one = init_linear_option_params(S, O, A, device=self.device)
        self.params: Params = {k: v.expand(R, *v.shape).clone() for k, v in one.items()}
        lrs = {"q_weight": cfg.critic_lr, "policy_weight": cfg.intra_lr / cfg.temperature,
               "termination_weight": cfg.termination_lr}
        self._opts = {k: sgd(lr) for k, lr in lrs.items()}
        self.lower_right = self.env.room_cells("lower_right")
        self.task = FourRoomsTask(torch.full((R,), cfg.initial_goal, dtype=torch.int64, device=self.device))
        self.steps = 0
        self.episode_count = torch.zeros(R, dtype=torch.int64)  # finished episodes per run
        self.episode_steps = torch.zeros(R, cfg.iterations, dtype=torch.int64)  # steps-to-goal record
        self.goals = torch.full((R, 2), cfg.initial_goal, dtype=torch.int64)  # goal before / after the move
        self._state: FourRoomsState | None = None
        self._option = torch.zeros(R, dtype=torch.int64, device=self.device)
        self._ep_len = torch.zeros(R, dtype=torch.int64, device=self.device)
        # arrivals[r, phase, s, w]: option w arrived in cell s (episode going on); phase 1 after the goal moved
        self.arrivals = torch.zeros(R, 2, S, O, dtype=torch.int64, device=self.device)
        self._grad = grad(self._objective)
        self._heads = vmap(linear_option_heads)

    @property
    def value_epsilon(self) -> float:
        """Epsilon of the policy over options used for ``V`` in the termination advantage."""
        return self.config.epsilon if self.config.termination_value == "epsilon_greedy" else 0.0

    # ----------------------------------------------------------------- pure pieces, bound
    def _phi(self, cell: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(cell, self.env.num_states).to(torch.float32)

    def _objective(self, params: Params, s_tm1, option, action, reward, s_t, terminal, active) -> torch.Tensor:
        cfg = self.config
        q_tm1, logits_tm1, _ = self._heads(params, self._phi(s_tm1))
        q_t, _, beta_t = self._heads(params, self._phi(s_t))
        discount = cfg.gamma * (1.0 - terminal.to(torch.float32))
        losses = vmap(option_critic_losses, in_dims=(0, 0, 0, 0, 0, 0, 0, 0, None, None, None))(
            q_tm1, logits_tm1, q_t, beta_t, option, action, reward, discount, cfg.xi, cfg.entropy_coef,
            self.value_epsilon)
        per_run = losses.critic + losses.policy + losses.termination  # disjoint params: one sum is fine
        return (per_run * active.to(torch.float32)).sum()

    def _choose_options(self, q: torch.Tensor) -> torch.Tensor:
        """Epsilon-greedy over options with random tie-breaking. q: [R, O] -> [R]."""
        R, O = q.shape
        u = torch.rand(R, 2, generator=self.generator, device=self.device)
        ties = torch.rand(R, O, generator=self.generator, device=self.device)
        greedy = torch.where(q == q.max(dim=1, keepdim=True).values, ties, -1.0).argmax(dim=1)
        rand = torch.clamp((u[:, 1] * O).long(), max=O - 1)
        return torch.where(u[:, 0] < self.config.epsilon, rand, greedy)

    def _reset_runs(self, mask: torch.Tensor) -> None:
        u = torch.rand(self.config.num_runs, generator=self.generator, device=self.device)
        state, _ = self.env.reset(self.task, FourRoomsNoise(start=u))
        if self._state is None:
            self._state = state
        else:
            self._state = FourRoomsState(torch.where(mask, state.cell, self._state.cell),
                                         torch.where(mask, state.done, self._state.done))
        with torch.no_grad():
            q, _, _ = self._heads(self.params, self._phi(self._state.cell))
        self._option = torch.where(mask, self._choose_options(q), self._option)
        self._ep_len = torch.where(mask, torch.zeros_like(self._ep_len), self._ep_len)

    # ----------------------------------------------------------------- one step of every run
    def step(self) -> None:
        """One env step of every learner that is still running: act, learn, reset finished episodes."""
        cfg, R = self.config, self.config.num_runs
        if self._state is None:
            self._reset_runs(torch.ones(R, dtype=torch.bool, device=self.device))
        active = (self.episode_count < cfg.iterations).to(self.device)
        s, option = self._state.cell, self._option
        with torch.no_grad():
            _, logits, _ = self._heads(self.params, self._phi(s))
            probs = torch.softmax(logits[torch.arange(R), option], dim=-1)  # [R, A]
        u_a = torch.rand(R, 1, generator=self.generator, device=self.device)
        action = torch.clamp((probs.cumsum(-1) < u_a).sum(-1), max=self.env.num_actions - 1)
        noise = torch.rand(R, 2, generator=self.generator, device=self.device)
        state, s_next, reward, done = self.env.step(self._state, action, self.task, FourRoomsNoise(move=noise))
        grads = self._grad(self.params, s, option, action, reward, s_next, done, active)
        new = {}
        for k, opt in self._opts.items():
            upd, _ = opt.update({k: grads[k]}, opt.init({k: self.params[k]}))
            new.update(apply_updates({k: self.params[k]}, upd))
        self.params = new
        # call-and-return: the option may terminate on arrival in s'
        with torch.no_grad():
            q_next, _, beta_next = self._heads(self.params, self._phi(s_next))
        terminate = torch.rand(R, generator=self.generator, device=self.device) < beta_next[torch.arange(R), option]
        phase = (self.episode_count >= (cfg.switch_goal_at or cfg.iterations + 1)).long().to(self.device)
        arrived = (active & ~done).long()
        flat = ((torch.arange(R, device=self.device) * 2 + phase) * self.env.num_states + s_next) * cfg.num_options + option
        self.arrivals = self.arrivals.flatten().index_add(0, flat, arrived).view_as(self.arrivals)
        self._option = torch.where(terminate, self._choose_options(q_next), option)
        self._state = state
        self._ep_len = self._ep_len + active.long()
        self.steps += 1
        finished = (done | (self._ep_len >= cfg.max_steps)) & active
        if bool(finished.any()):
            self._finish(finished)

    def _finish(self, finished: torch.Tensor) -> None:
        cfg = self.config
        fin = finished.cpu()
        idx = fin.nonzero().squeeze(1)
        self.episode_steps[idx, self.episode_count[idx]] = self._ep_len.cpu()[idx]
        self.episode_count = self.episode_count + fin.long()
        if cfg.switch_goal_at is not None:
            move = fin & (self.episode_count == cfg.switch_goal_at)
            if bool(move.any()):
                pick = torch.randint(0, len(self.lower_right), (cfg.num_runs,), generator=self.generator, device=self.device)
                new_goal = self.lower_right[pick]
                self.task = FourRoomsTask(torch.where(move.to(self.device), new_goal, self.task.goal))
                self.goals[move, 1] = self.task.goal.cpu()[move]
        self._reset_runs(finished)

    # ----------------------------------------------------------------- training
    def done(self) -> bool:
        """Whether every run has finished its ``iterations`` episodes."""
        return bool((self.episode_count >= self.config.iterations).all())

    def run_iteration(self) -> dict[str, float]:
        """Step every learner until all of them have finished episode ``iteration + 1``; returns
        ``{"steps_to_goal"}``: that episode's length averaged over the learners."""
        episode = self.iteration
        while int(self.episode_count.min()) <= episode:
            self.step()
        return {"steps_to_goal": float(self.episode_steps[:, episode].float().mean())}

    def termination_map(self, run: int | None = None) -> torch.Tensor:
        """``beta_w(s)`` per option on the grid, ``[O, 13, 13]`` (walls NaN): of one ``run``, or the
        mean over runs (``run=None``; option labels differ between runs, so this mostly blurs)."""
        beta = torch.sigmoid(self.params["termination_weight"].detach())  # [R, S, O]
        if run is None:
            beta = beta.mean(0)
        else:
            if not 0 <= run < self.config.num_runs:
                raise ValueError(f"run must be in [0, {self.config.num_runs}), got {run}")
            beta = beta[run]
        return self.env.to_grid(beta.T.cpu())

    def _check_phase(self, phase: int) -> None:
        if phase not in (0, 1):
            raise ValueError(f"phase must be 0 (before the goal moves) or 1 (after), got {phase!r}")

    def arrival_termination_probs(self, phase: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per run and cell, the final ``beta_w(s)`` averaged over the options that arrived in ``s``
        during ``phase``, weighted by how often each did. Returns ``(probs [R, S], arrivals [R, S])``;
        ``probs`` is NaN where nothing arrived."""
        self._check_phase(phase)
        n = self.arrivals[:, phase].float().cpu()  # [R, S, O]
        beta = torch.sigmoid(self.params["termination_weight"].detach()).cpu()
        total = n.sum(-1)
        probs = (n * beta).sum(-1) / total
        return torch.where(total > 0, probs, float("nan")), total

    def arrival_termination_map(self, phase: int = 0) -> torch.Tensor:
        """Termination probability of the option running on arrival, pooled over runs: ``[13, 13]``
        (walls and never-reached cells NaN)."""
        self._check_phase(phase)
        n = self.arrivals[:, phase].float().cpu()
        beta = torch.sigmoid(self.params["termination_weight"].detach()).cpu()
        total = n.sum((0, 2))
        pooled = (n * beta).sum((0, 2)) / total
        return self.env.to_grid(torch.where(total > 0, pooled, float("nan")))

    def doorway_termination_stats(self, phase: int = 0) -> dict[str, float]:
        """Arrival termination probability (see :meth:`arrival_termination_probs`) averaged over
        cells next to a doorway (grid distance <= 1: the doorway and its two neighbours) and over
        room interiors (distance >= 3), leaving out cells within distance 1 of the run's goal in
        that phase; averaged over runs. Returns ``{"doorway", "interior", "ratio"}``."""
        probs, _ = self.arrival_termination_probs(phase)
        coords = self.env.coords.cpu()
        dist = lambda cells: (coords[:, None, :] - coords[cells][None, :, :]).abs().sum(-1).min(1).values
        door = dist(self.env.doorway_cells().cpu())
        near_all, far_all = [], []
        for r in range(self.config.num_runs):
            ok = dist(self.goals[r, phase : phase + 1]) >= 2
            near, far = probs[r][(door <= 1) & ok], probs[r][(door >= 3) & ok]
            near_all.append(near[~near.isnan()].mean())
            far_all.append(far[~far.isnan()].mean())
        d, i = torch.stack(near_all).nanmean().item(), torch.stack(far_all).nanmean().item()
        return {"doorway": d, "interior": i, "ratio": d / i if i > 0 else float("nan")}

    def evaluate(self) -> dict[str, float]:
        """The paper's two readings of a run: mean steps to goal over the last 100 episodes done
        by every learner, and the arrival termination probability near doorways vs in room
        interiors (:meth:`doorway_termination_stats`) before and after the goal moves.

        Returns:
            ``{"steps_to_goal_last100", "doorway_<phase>", "interior_<phase>", "ratio_<phase>"}``
            with ``<phase>`` ``before_goal_move`` and ``after_goal_move``.
        """
        done = int(self.episode_count.min())
        out = {"steps_to_goal_last100": float(self.episode_steps[:, max(done - 100, 0):done].float().mean())}
        for phase, name in ((0, "before_goal_move"), (1, "after_goal_move")):
            out.update({f"{k}_{name}": float(v) for k, v in self.doorway_termination_stats(phase).items()})
        return out

    # ----------------------------------------------------------------- state
    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run: params, generator, env states, options, counters, records."""
        return {
            "steps": self.steps,
            "params": self.params,
            "generator": self.generator.get_state(),
            "goal": self.task.goal, "goals": self.goals,
            "episode_count": self.episode_count, "episode_steps": self.episode_steps,
            "env_state": self._state,
            "option": self._option, "ep_len": self._ep_len,
            "arrivals": self.arrivals,
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Exact resume: params, generator, env states, options, counters and records."""
        self.params = restore_like(state["params"], self.params, "params")
        self.generator.set_state(state["generator"])
        self.task = FourRoomsTask(state["goal"].to(self.device))
        self.goals = restore_like(state["goals"], self.goals, "goals")
        self.episode_count = restore_like(state["episode_count"], self.episode_count, "episode_count")
        self.episode_steps = restore_like(state["episode_steps"], self.episode_steps, "episode_steps")
        saved_env = state["env_state"]
        self._state = None if saved_env is None else FourRoomsState(*(t.to(self.device) for t in saved_env))
        self._option = restore_like(state["option"], self._option, "option")
        self._ep_len = restore_like(state["ep_len"], self._ep_len, "ep_len")
        self.steps = int(state["steps"])
        self.arrivals = restore_like(state["arrivals"], self.arrivals, "arrivals")
