"""Random tabular MDPs (Duan et al. 2016, RL², section 3.2) as pure tensor functions.

A task is an MDP with ``S = 10`` states and ``A = 5`` actions: mean rewards
``R[s, a] ~ N(1, 1)`` and transition rows ``P[s, a, :] ~ Dirichlet(1, ..., 1)`` (flat). A step
in state ``s`` with action ``a`` pays ``R[s, a] + eps`` with ``eps ~ N(0, 1)`` and moves to
``s' ~ P[s, a, :]``. An episode is ``H = 10`` steps from state 0; a *trial* is ``n`` episodes of
the same MDP, so ``n * H`` steps. After the ``H``-th step of an episode ``done`` is True and the
next observation is state 0 again (the start of the next episode).

The family follows :class:`envs.TaskFamily`. Randomness enters as pre-drawn noise (:class:`MDPNoise`): a uniform per step, turned into the
next state by inverting the row's CDF, and a standard normal per step for the reward noise.

Shapes: ``tasks.reward_mean: [*B, S, A]``, ``tasks.transitions: [*B, S, A, S]``;
``state.s, state.t: [*B]`` int64; ``obs: [*B, S]`` (one-hot state).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import checks
from .bandits import check_int_actions, check_probabilities

__all__ = ["MDPTask", "MDPState", "MDPNoise", "TabularMDP"]


class MDPTask(NamedTuple):
    """A batch of MDPs: mean rewards and transition probabilities."""

    reward_mean: torch.Tensor  # [*B, S, A]
    transitions: torch.Tensor  # [*B, S, A, S], rows sum to 1


class MDPState(NamedTuple):
    """Where each trial stands: current state, steps taken, whether the trial is over."""

    s: torch.Tensor  # [*B] int64 current state
    t: torch.Tensor  # [*B] int64 steps taken in this trial
    trial_done: torch.Tensor  # [*B] bool


class MDPNoise(NamedTuple):
    """Per-step noise; leaves carry a leading time axis ``[T, *B]`` when drawn for a trial."""

    transition: torch.Tensor  # uniform in [0, 1)
    reward: torch.Tensor  # standard normal


class TabularMDP:
    """The task family; holds only constants, every method is pure.

    Args:
        num_episodes: ``n >= 1`` episodes per trial.
        num_states: number of states, 10 in the paper.
        num_actions: number of actions, 5 in the paper.
        horizon: steps per episode, 10 in the paper.
        reward_std: std of the per-step reward noise (1).
    """

    def __init__(self, num_episodes: int = 10, num_states: int = 10, num_actions: int = 5, horizon: int = 10,
                 reward_std: float = 1.0):
        self.num_episodes = checks.positive_int(num_episodes, "num_episodes")
        self.num_states = checks.positive_int(num_states, "num_states")
        self.num_actions = checks.int_in_range(num_actions, "num_actions", low=2)
        self.horizon = checks.positive_int(horizon, "horizon")
        self.reward_std = checks.non_negative_number(reward_std, "reward_std")

    discrete_actions = True

    @property
    def obs_dim(self) -> int:
        return self.num_states

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """A one-hot state: ``(S,)``."""
        return (self.num_states,)

    @property
    def action_size(self) -> int:
        """The number of actions."""
        return self.num_actions

    @property
    def episode_length(self) -> int:
        return self.horizon

    @property
    def trial_length(self) -> int:
        """Steps in one trial: ``n * H``."""
        return self.num_episodes * self.horizon

    def sample_tasks(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> MDPTask:
        """``num_tasks`` MDPs: ``R ~ N(1, 1)``; ``P[s, a]`` flat Dirichlet (normalised Exp(1) draws)."""
        checks.positive_int(num_tasks, "num_tasks")
        device = generator.device if generator is not None and device is None else device
        S, A = self.num_states, self.num_actions
        reward_mean = 1.0 + torch.randn(num_tasks, S, A, generator=generator, device=device, dtype=dtype)
        u = torch.rand(num_tasks, S, A, S, generator=generator, device=device, dtype=dtype)
        e = -torch.log1p(-u)  # Exp(1); Dirichlet(1,..,1) = Exp draws / their sum
        return MDPTask(reward_mean, e / e.sum(dim=-1, keepdim=True))

    def task(self, reward_mean: torch.Tensor, transitions: torch.Tensor) -> MDPTask:
        """A task from given tables, checked: ``transitions`` entries in [0, 1], rows summing to 1."""
        S, A = self.num_states, self.num_actions
        checks.floating_tensor(reward_mean, "reward_mean")
        checks.finite_tensor(reward_mean, "reward_mean")
        if reward_mean.shape[-2:] != (S, A):
            raise ValueError(f"reward_mean expected shape [..., {S}, {A}], got {tuple(reward_mean.shape)}")
        check_probabilities(transitions, "transitions")
        if transitions.shape != (*reward_mean.shape, S):
            raise ValueError(f"transitions expected shape {(*reward_mean.shape, S)}, got {tuple(transitions.shape)}")
        if not torch.allclose(transitions.sum(-1), torch.ones((), dtype=transitions.dtype, device=transitions.device), atol=1e-5):
            raise ValueError("transitions rows (last axis) must sum to 1")
        return MDPTask(reward_mean, transitions)

    def sample_noise(
        self, num_steps: int, batch_shape: tuple[int, ...], generator: torch.Generator | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    ) -> MDPNoise:
        """Noise for ``num_steps`` steps (a trial: ``trial_length = n * H``): leaves ``[T, *batch_shape]``."""
        checks.positive_int(num_steps, "num_steps")
        device = generator.device if generator is not None and device is None else device
        shape = (num_steps, *batch_shape)
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return MDPNoise(u, z)

    def _check_tasks(self, tasks: MDPTask) -> tuple[int, ...]:
        S, A = self.num_states, self.num_actions
        r, p = tasks.reward_mean, tasks.transitions
        if r.ndim < 2 or r.shape[-2:] != (S, A) or p.shape != (*r.shape, S):
            raise ValueError(
                f"tasks expected reward_mean [*B, {S}, {A}] and transitions [*B, {S}, {A}, {S}], "
                f"got {tuple(r.shape)} and {tuple(p.shape)}"
            )
        return tuple(r.shape[:-2])

    def observe(self, s: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One-hot observation of states ``[*B]`` -> ``[*B, S]``."""
        return F.one_hot(s, self.num_states).to(dtype)

    def reset(self, tasks: MDPTask, noise: MDPNoise | None = None) -> tuple[MDPState, torch.Tensor]:
        """Start a trial (state 0) for every entry (``noise`` is not used). Returns ``(state, obs [*B, S])``."""
        shape = self._check_tasks(tasks)
        device = tasks.reward_mean.device
        s = torch.zeros(shape, dtype=torch.int64, device=device)
        state = MDPState(s, torch.zeros_like(s), torch.zeros(shape, dtype=torch.bool, device=device))
        return state, self.observe(s, tasks.reward_mean.dtype)

    def step(
        self, state: MDPState, action: torch.Tensor, tasks: MDPTask, noise: MDPNoise
    ) -> tuple[MDPState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every entry. ``action [*B]`` int in ``[0, A)``; ``noise`` leaves ``[*B]``.

        Returns ``(state, obs [*B, S], reward [*B], done [*B] bool)``. ``done`` marks the end of
        an episode; the state then returns to 0 and ``obs`` is the next episode's first one.
        After the trial's last step everything stays put and rewards are 0.
        """
        shape = self._check_tasks(tasks)
        if tuple(state.s.shape) != shape:
            raise ValueError(f"state.s expected shape {shape} to match the tasks, got {tuple(state.s.shape)}")
        check_int_actions(action, self.num_actions, shape)
        checks.instance(noise, "noise", MDPNoise)
        checks.tensor(noise.transition, "noise.transition", shape=shape)
        checks.tensor(noise.reward, "noise.reward", shape=shape)
        S = self.num_states
        r_sa = torch.gather(tasks.reward_mean, -2, state.s[..., None, None].expand(*shape, 1, self.num_actions))
        mean = torch.gather(r_sa.squeeze(-2), -1, action.unsqueeze(-1)).squeeze(-1)  # [*B]
        row_s = torch.gather(tasks.transitions, -3, state.s[..., None, None, None].expand(*shape, 1, self.num_actions, S))
        row = torch.gather(row_s.squeeze(-3), -2, action[..., None, None].expand(*shape, 1, S)).squeeze(-2)  # [*B, S]
        cdf = torch.cumsum(row, dim=-1)
        next_s = torch.clamp((cdf <= noise.transition.unsqueeze(-1)).sum(-1), max=S - 1)
        active = ~state.trial_done
        reward = torch.where(active, mean + self.reward_std * noise.reward, torch.zeros_like(mean))
        t = torch.where(active, state.t + 1, state.t)
        done = active & (t % self.horizon == 0)
        s = torch.where(done, torch.zeros_like(next_s), torch.where(active, next_s, state.s))
        trial_done = state.trial_done | (t >= self.trial_length)
        return MDPState(s, t, trial_done), self.observe(s, tasks.reward_mean.dtype), reward, done
