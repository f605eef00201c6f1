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
- Our choices (measured, see the example's docstring): epsilon 0.1, temperature 1 (intra-option
  step 0.25 on the logits, so options stay stochastic for longer and specialise), termination
  step size 2.5, margin ``xi = 0``. With ``V = max Q`` the advantage ``Q_w - V`` is never positive
  and ``beta`` only rises (about 0.7-0.8 everywhere after 2000 episodes: options last one or two
  steps); with the epsilon-greedy ``V`` the greedy option's ``beta`` falls, each option comes to
  own a room or two (``beta`` near 0 there) and terminations happen where an option enters a
  region another option owns, i.e. around the doorways. The ALE margin ``xi = 0.01`` lowers
  ``beta`` everywhere here (gaps between option values are often below 0.01) and removed the
  doorway contrast in our runs; it remains a setting. The paper's termination step 0.25 moves
  ``beta`` too little in 2000 episodes (``dbeta = beta (1 - beta) * advantage``, advantages of a few
  hundredths) for a visible map.
- ``Q_U(s, w, a)`` is the one-step target (see ``rl.option_critic``), not a separate table.
- Ties in ``argmax_w Q`` are broken uniformly at random (all-zero Q at the start).
- Termination statistics: the trainer counts, per run, phase (before / after the goal move),
  cell and option, how often each option *arrives* in a cell without the episode ending.
  :meth:`OptionCriticTrainer.arrival_termination_map` weights the final ``beta_w(s)`` by these
  counts: the termination probability of the option that is actually running when the agent
  reaches ``s``. Per-option maps averaged over runs mean little (option labels are arbitrary per
  run), so the example plots one run's options and this pooled map.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.func import grad, vmap
from tqdm.auto import tqdm

from ..envs.four_rooms import FourRooms, FourRoomsNoise, FourRoomsState, FourRoomsTask
from ..optim import apply_updates, sgd
from ..rl.option_critic import (
    init_linear_option_params,
    linear_option_heads,
    option_critic_losses,
)
from ..tree import Params
from .checkpoint import atomic_save, atomic_write_json, read_checkpoint, resolve_device
from .scalars import ScalarLogger

__all__ = ["OPTION_CRITIC_CHECKPOINT", "OptionCriticConfig", "OptionCriticTrainer"]

OPTION_CRITIC_CHECKPOINT = "checkpoint.pt"


@dataclass
class OptionCriticConfig:
    """Tabular Option-Critic on Four Rooms (Bacon et al. 2017, section 5.1): ``num_runs``
    independent learners stepped side by side, each for ``num_episodes`` episodes."""

    num_options: int = 4
    num_runs: int = 10  # independent learners stepped side by side
    num_episodes: int = 2000  # per run
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
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 20_000  # env steps

    def __post_init__(self):
        for name in ("num_options", "num_runs", "num_episodes", "max_steps", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.switch_goal_at is not None and not 0 < self.switch_goal_at < self.num_episodes:
            raise ValueError(f"switch_goal_at must be None or in (0, num_episodes), got {self.switch_goal_at}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"gamma and epsilon must lie in [0, 1], got {self.gamma}, {self.epsilon}")
        for name in ("critic_lr", "intra_lr", "termination_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.termination_value not in ("epsilon_greedy", "greedy"):
            raise ValueError(f"termination_value must be 'epsilon_greedy' or 'greedy', got {self.termination_value!r}")
        if not math.isfinite(self.xi):
            raise ValueError(f"xi must be finite, got {self.xi}")
        if not 0 <= self.initial_goal < 104:
            raise ValueError(f"initial_goal must be a cell index in [0, 104), got {self.initial_goal}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (stored in checkpoints and metrics.json)."""
        return dataclasses.asdict(self)


class OptionCriticTrainer:
    """Runs :class:`OptionCriticConfig`'s learners on the pure Four Rooms env: linear (tabular)
    option-critic updates every step, goal moves as in the paper, exact resume from a checkpoint."""

    def __init__(self, config: OptionCriticConfig, output_dir: str | Path | None = None):
        self.config = cfg = config
        self.device = resolve_device(cfg.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
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
        self.episode_steps = torch.zeros(R, cfg.num_episodes, dtype=torch.int64)  # steps-to-goal record
        self.goals = torch.full((R, 2), cfg.initial_goal, dtype=torch.int64)  # goal before / after the move
        self._logged_upto = 0
        self._logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)
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
        active = (self.episode_count < cfg.num_episodes).to(self.device)
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
        phase = (self.episode_count >= (cfg.switch_goal_at or cfg.num_episodes + 1)).long().to(self.device)
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
        """Whether every run has finished its ``num_episodes`` episodes."""
        return bool((self.episode_count >= self.config.num_episodes).all())

    def train(self, progress: bool = True) -> torch.Tensor:
        """Run every learner for ``num_episodes`` episodes. Returns steps-to-goal ``[R, num_episodes]``."""
        cfg = self.config
        bar = tqdm(total=cfg.num_episodes, initial=int(self.episode_count.min()), disable=not progress, desc="episodes (slowest run)")
        try:
            while not self.done():
                before = int(self.episode_count.min())
                self.step()
                after = int(self.episode_count.min())
                if after > before:
                    bar.update(after - before)
                    self._log_completed()
                    bar.set_postfix(steps=f"{self.episode_steps[:, max(after - 10, 0):after].float().mean():.1f}")
                if self.steps % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            self.save_checkpoint()
        finally:
            bar.close()
            self._logger.flush()
        return self.episode_steps

    def _log_completed(self) -> None:
        upto = int(self.episode_count.min())
        for e in range(self._logged_upto, upto):
            self._logger.scalar("train/steps_to_goal", self.episode_steps[:, e].float().mean().item(), e + 1)
        self._logged_upto = upto

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

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run (what ``save_checkpoint`` writes)."""
        cpu = lambda t: t.detach().cpu()
        return {
            "config": self.config.to_dict(), "steps": self.steps,
            "params": {k: cpu(v) for k, v in self.params.items()},
            "generator_state": self.generator.get_state(),
            "goal": cpu(self.task.goal), "goals": self.goals,
            "episode_count": self.episode_count, "episode_steps": self.episode_steps,
            "cell": None if self._state is None else cpu(self._state.cell),
            "env_done": None if self._state is None else cpu(self._state.done),
            "option": cpu(self._option), "ep_len": cpu(self._ep_len), "logged_upto": self._logged_upto,
            "arrivals": cpu(self.arrivals),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``state_dict()`` atomically to the output directory and refresh metrics.json; None without one."""
        if self.output_dir is None:
            return None
        path = atomic_save(self.state_dict(), self.output_dir / OPTION_CRITIC_CHECKPOINT)
        self.write_metrics()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Exact resume: params, generator, env states, options, counters and records."""
        st = read_checkpoint(path, self.config.to_dict(), may_differ=("device", "checkpoint_every"))
        dev = lambda t: t.to(self.device)
        self.params = {k: dev(v) for k, v in st["params"].items()}
        self.generator.set_state(st["generator_state"])
        self.task = FourRoomsTask(dev(st["goal"]))
        self.goals, self.episode_count, self.episode_steps = st["goals"], st["episode_count"], st["episode_steps"]
        self._state = None if st["cell"] is None else FourRoomsState(dev(st["cell"]), dev(st["env_done"]))
        self._option, self._ep_len = dev(st["option"]), dev(st["ep_len"])
        self.steps, self._logged_upto = int(st["steps"]), int(st["logged_upto"])
        self.arrivals = dev(st["arrivals"])

    def write_metrics(self) -> None:
        """Write the settings and the mean steps-to-goal per episode so far to metrics.json."""
        if self.output_dir is None:
            return
        done = int(self.episode_count.min())
        mean = self.episode_steps[:, :done].float().mean(0).tolist()
        payload = {"config": self.config.to_dict(), "steps": self.steps, "episodes_done_all_runs": done,
                   "mean_steps_to_goal": mean, "goals": self.goals.tolist(),
                   "doorway_termination": {"before_goal_move": self.doorway_termination_stats(0),
                                           "after_goal_move": self.doorway_termination_stats(1)}}
        atomic_write_json(payload, self.output_dir / "metrics.json")
