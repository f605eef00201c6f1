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

Shapes: ``tasks.goal: [*task_dims, 2]``; ``state.position: [*task_dims, E, 2]``;
``state.done: [*task_dims, E]`` (E = episodes per task). ``task_dims`` may be empty.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["NavTask", "NavState", "Navigation2D"]


class NavTask(NamedTuple):
    """A batch of 2D-navigation tasks: one goal position each."""

    goal: torch.Tensor  # [*task_dims, 2]


class NavState(NamedTuple):
    """Positions of every episode of every task, and which episodes have reached their goal."""

    position: torch.Tensor  # [*task_dims, E, 2]
    done: torch.Tensor  # [*task_dims, E], bool


class Navigation2D:
    """The task family; holds only constants, every method is pure."""

    obs_dim = 2
    act_dim = 2

    def __init__(
        self,
        horizon: int = 100,
        max_action: float = 0.1,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        success_radius: float = 0.01,
        action_scale: float = 1.0,
    ):
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        if not max_action > 0:
            raise ValueError(f"max_action must be positive, got {max_action}")
        if not goal_low < goal_high:
            raise ValueError(f"need goal_low < goal_high, got {goal_low} and {goal_high}")
        if not success_radius >= 0:
            raise ValueError(f"success_radius must be >= 0, got {success_radius}")
        if not (action_scale > 0 and math.isfinite(action_scale)):
            raise ValueError(f"action_scale must be positive and finite, got {action_scale}")
        self.horizon = horizon
        self.max_action = float(max_action)
        self.goal_low = float(goal_low)
        self.goal_high = float(goal_high)
        self.success_radius = float(success_radius)
        self.action_scale = float(action_scale)

    def sample_tasks(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> NavTask:
        """``num_tasks`` goals uniform in ``[goal_low, goal_high]^2`` -> ``NavTask(goal [n, 2])``."""
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks <= 0:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        device = generator.device if generator is not None and device is None else device
        u = torch.rand(num_tasks, 2, generator=generator, device=device, dtype=dtype)
        return NavTask(goal=self.goal_low + (self.goal_high - self.goal_low) * u)

    def reset(self, tasks: NavTask, num_episodes: int) -> tuple[NavState, torch.Tensor]:
        """All episodes at the origin. Returns ``(state, obs [*task_dims, E, 2])``."""
        if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes <= 0:
            raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
        goal = tasks.goal
        if goal.shape[-1:] != (2,):
            raise ValueError(f"tasks.goal expected shape [..., 2], got {tuple(goal.shape)}")
        shape = (*goal.shape[:-1], num_episodes)
        position = torch.zeros(*shape, 2, device=goal.device, dtype=goal.dtype)
        done = torch.zeros(shape, device=goal.device, dtype=torch.bool)
        return NavState(position, done), position

    def step(
        self, state: NavState, action: torch.Tensor, tasks: NavTask
    ) -> tuple[NavState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every episode. ``action: [*task_dims, E, 2]``.

        Returns ``(state, obs [*, E, 2], reward [*, E], done [*, E])``. Episodes already done
        before this step do not move and get reward 0; ``done`` is sticky.
        """
        if action.shape != state.position.shape:
            raise ValueError(
                f"action expected shape {tuple(state.position.shape)} (tasks x episodes x 2), got {tuple(action.shape)}"
            )
        if tasks.goal.shape != (*state.position.shape[:-2], 2):
            raise ValueError(
                f"tasks.goal expected shape {(*state.position.shape[:-2], 2)} to match the state, got {tuple(tasks.goal.shape)}"
            )
        # Few ops on purpose: a rollout step is dispatch-bound (20 x 20 episodes of 2 numbers).
        scaled = action if self.action_scale == 1.0 else action * self.action_scale
        move = torch.clamp(scaled, -self.max_action, self.max_action)
        position = torch.where(state.done.unsqueeze(-1), state.position, state.position + move)
        distance = torch.linalg.vector_norm(position - tasks.goal.unsqueeze(-2), dim=-1)
        reward = torch.where(state.done, 0.0, -distance)
        done = torch.logical_or(state.done, distance < self.success_radius)
        return NavState(position, done), position, reward, done
