"""2D navigation task family (Finn et al. 2017, section 5.3) as pure tensor functions.

A point starts at the origin; each task is a goal drawn uniformly from ``[-0.5, 0.5]^2``. The
observation is the position, an action moves it by ``clip(action_scale * action, -0.1, 0.1)``
per coordinate, the reward is ``-||position - goal||_2`` after the move, and an episode is done once the point
lies within 0.01 of the goal (or after ``horizon`` steps). Finished episodes stay frozen: their
later steps are padding (mask 0, reward 0), so a whole batch of tasks x episodes steps together.

``action_scale`` is 1 by default (actions are velocities, as in pytorch-maml-rl). The paper's own
code wraps the environment in rllab's ``normalize``, so the policy acts in ``[-1, 1]`` and the
wrapper scales that box onto ``[-0.1, 0.1]``: that is ``action_scale = 0.1``. Same task family,
but a Gaussian policy's noise is then measured in units of the velocity box, which changes how
far one inner step and one TRPO step move it.

The family follows :class:`envs.TaskFamily`; it draws no noise (:class:`envs.NoNoise`).

Shapes: ``tasks.goal: [*B, 2]``; ``state.position: [*B, 2]``; ``state.done: [*B]``. ``B`` is any
batch shape; ``E`` episodes of each of ``N`` tasks are ``repeat_tasks(tasks, E)`` (``[N, E]``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import checks
from .protocol import NoNoise

__all__ = ["NavTask", "NavState", "Navigation2D"]


class NavTask(NamedTuple):
    """A batch of 2D-navigation tasks: one goal position each."""

    goal: torch.Tensor  # [*B, 2]


class NavState(NamedTuple):
    """Positions of every episode of every task, and which episodes have reached their goal."""

    position: torch.Tensor  # [*B, 2]
    done: torch.Tensor  # [*B], bool


class Navigation2D:
    """The task family; holds only constants, every method is pure.

    Args:
        horizon: steps per episode (``episode_length``).
        max_action: the per-coordinate bound of one move.
        goal_low: the lower corner of the box the goals are drawn from.
        goal_high: its upper corner.
        success_radius: an episode ends within this distance of its goal.
        action_scale: actions are multiplied by this before the clip (see the module docstring).
    """

    obs_dim = 2
    act_dim = 2
    obs_shape = (2,)
    discrete_actions = False
    action_size = 2

    def __init__(
        self,
        horizon: int = 100,
        max_action: float = 0.1,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        success_radius: float = 0.01,
        action_scale: float = 1.0,
    ):
        self.horizon = checks.positive_int(horizon, "horizon")
        self.max_action = checks.positive_number(max_action, "max_action")
        self.goal_low = checks.number(goal_low, "goal_low")
        self.goal_high = checks.number(goal_high, "goal_high", low=self.goal_low, low_open=True)
        self.success_radius = checks.non_negative_number(success_radius, "success_radius")
        self.action_scale = checks.positive_number(action_scale, "action_scale")

    @property
    def episode_length(self) -> int:
        """Steps of one episode: ``horizon``."""
        return self.horizon

    def sample_tasks(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> NavTask:
        """``num_tasks`` goals uniform in ``[goal_low, goal_high]^2`` -> ``NavTask(goal [n, 2])``."""
        checks.positive_int(num_tasks, "num_tasks")
        device = generator.device if generator is not None and device is None else device
        u = torch.rand(num_tasks, 2, generator=generator, device=device, dtype=dtype)
        return NavTask(goal=self.goal_low + (self.goal_high - self.goal_low) * u)

    def sample_noise(self, num_steps: int, batch_shape: tuple[int, ...],
                     generator: torch.Generator | None = None, **_: object) -> NoNoise:
        """The family is deterministic: :class:`NoNoise`, nothing is drawn."""
        checks.positive_int(num_steps, "num_steps")
        return NoNoise()

    def reset(self, tasks: NavTask, noise: NoNoise = NoNoise()) -> tuple[NavState, torch.Tensor]:
        """Every entry at the origin. ``tasks.goal: [*B, 2]``. Returns ``(state, obs [*B, 2])``."""
        goal = checks.floating_tensor(tasks.goal, "tasks.goal")
        if goal.shape[-1:] != (2,):
            raise ValueError(f"tasks.goal expected shape [*B, 2], got {tuple(goal.shape)}")
        position = torch.zeros(goal.shape, device=goal.device, dtype=goal.dtype)
        done = torch.zeros(goal.shape[:-1], device=goal.device, dtype=torch.bool)
        return NavState(position, done), position

    def step(
        self, state: NavState, action: torch.Tensor, tasks: NavTask, noise: NoNoise = NoNoise()
    ) -> tuple[NavState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every entry. ``action: [*B, 2]``, ``tasks.goal: [*B, 2]`` (no broadcasting).

        Returns ``(state, obs [*B, 2], reward [*B], done [*B])``. Entries already done before
        this step do not move and get reward 0; ``done`` is sticky.
        """
        checks.same_shape(action, "action", state.position, "state.position")
        checks.same_shape(tasks.goal, "tasks.goal", state.position, "state.position")
        # Few ops on purpose: a rollout step is dispatch-bound (20 x 20 episodes of 2 numbers).
        scaled = action if self.action_scale == 1.0 else action * self.action_scale
        move = torch.clamp(scaled, -self.max_action, self.max_action)
        position = torch.where(state.done.unsqueeze(-1), state.position, state.position + move)
        distance = torch.linalg.vector_norm(position - tasks.goal, dim=-1)
        reward = torch.where(state.done, 0.0, -distance)
        done = torch.logical_or(state.done, distance < self.success_radius)
        return NavState(position, done), position, reward, done
