"""Four Rooms (Sutton, Precup & Singh 1999) as pure tensor functions.

A 13 x 13 grid whose border and inner walls leave 104 free cells in four rooms joined by four
doorways. Actions are up / down / left / right (0..3). A move "fails" with probability 1/3: the
agent then moves in one of the *other* three directions, chosen uniformly. A move into a wall
leaves the agent where it is. Reward is 1 on entering the goal cell and 0 otherwise; entering the
goal ends the episode. Finished episodes stay frozen (later steps: reward 0, done stays True), so
a batch of episodes steps together with masks, never ``break``.

States and observations are free-cell indices in ``[0, 104)``, numbered row-major over the map
below (the numbering of Bacon et al.'s released code, whose default goal, cell 62, is the east
doorway between the two right-hand rooms). The family follows :class:`envs.TaskFamily`;
randomness comes in as uniforms, one :class:`FourRoomsNoise` per step: ``reset`` reads its
``start [*B]`` (the start cell), ``step`` its ``move [*B, 2]`` (``move[..., 0] < 1/3``: the move
fails; ``move[..., 1]`` picks which other direction). A caller that draws the two at different
times leaves the field a method does not read as ``None``.

Shapes: ``tasks.goal: [*B]`` (int64 cell index); ``state.cell, state.done: [*B]``; ``obs: [*B]``,
the cell index (``obs_shape = ()``, for tabular agents), or with ``one_hot_obs=True`` its one-hot
``[*B, 104]`` float32 (``obs_shape = (104,)``, for network policies and :func:`envs.rollout`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import checks

__all__ = ["FOUR_ROOMS_LAYOUT", "FourRooms", "FourRoomsNoise", "FourRoomsState", "FourRoomsTask"]

FOUR_ROOMS_LAYOUT = (
    "wwwwwwwwwwwww",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "w     w     w",
    "ww wwww     w",
    "w     www www",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "wwwwwwwwwwwww",
)

# (row, col) offsets of up, down, left, right
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


class FourRoomsTask(NamedTuple):
    """The goal cell of each task (an index into the free cells)."""

    goal: torch.Tensor  # [*B] int64 free-cell index


class FourRoomsNoise(NamedTuple):
    """The uniforms of one step: ``start`` for ``reset``, ``move`` for ``step`` (see the module docstring)."""

    start: torch.Tensor | None = None  # [*B] uniform in [0, 1)
    move: torch.Tensor | None = None  # [*B, 2] uniform in [0, 1)


class FourRoomsState(NamedTuple):
    """The agent's cell and whether its episode has ended."""

    cell: torch.Tensor  # [*B] int64 free-cell index
    done: torch.Tensor  # [*B] bool


class FourRooms:
    """The environment family; holds only constant tables, every method is pure.

    Args:
        fail_prob: the probability that a move goes another way (1/3).
        horizon: the steps of an episode for :func:`envs.rollout` (``episode_length``); an
            episode also ends at the goal.
        device: where the tables live.
        one_hot_obs: observations as one-hot float vectors instead of cell indices.

    Attributes:
        num_states: 104 free cells; ``num_actions``: 4.
        coords: ``[104, 2]`` (row, col) of each free cell.
        transitions: ``[104, 4]`` the cell reached by each action (itself when blocked).
    """

    num_actions = 4
    action_size = 4
    discrete_actions = True

    def __init__(self, fail_prob: float = 1.0 / 3.0, device: torch.device | str | None = None, horizon: int = 1000,
                 one_hot_obs: bool = False):
        self.fail_prob = checks.probability(fail_prob, "fail_prob")
        self.horizon = checks.positive_int(horizon, "horizon")
        self.one_hot_obs = checks.flag(one_hot_obs, "one_hot_obs")
        free = [(r, c) for r, row in enumerate(FOUR_ROOMS_LAYOUT) for c, ch in enumerate(row) if ch == " "]
        index = {rc: i for i, rc in enumerate(free)}
        table = [[index.get((r + dr, c + dc), index[(r, c)]) for dr, dc in _MOVES] for r, c in free]
        self.num_states = len(free)
        self.height, self.width = len(FOUR_ROOMS_LAYOUT), len(FOUR_ROOMS_LAYOUT[0])
        self.coords = torch.tensor(free, dtype=torch.int64, device=device)
        self.transitions = torch.tensor(table, dtype=torch.int64, device=device)
        self.walls = torch.tensor([[ch == "w" for ch in row] for row in FOUR_ROOMS_LAYOUT], device=device)
        self._index = index
        self.obs_shape: tuple[int, ...] = (self.num_states,) if one_hot_obs else ()

    def _observe(self, cell: torch.Tensor) -> torch.Tensor:
        if not self.one_hot_obs:
            return cell
        return torch.nn.functional.one_hot(cell, self.num_states).to(torch.float32)

    @property
    def episode_length(self) -> int:
        """The rollout horizon: ``horizon``."""
        return self.horizon

    # ------------------------------------------------------------------ helpers (host side)
    def cell_index(self, row: int, col: int) -> int:
        """Free-cell index of grid position ``(row, col)``; ValueError on a wall."""
        checks.int_in_range(row, "row")
        checks.int_in_range(col, "col")
        if (row, col) not in self._index:
            raise ValueError(f"({row}, {col}) is a wall or outside the 13x13 grid")
        return self._index[(row, col)]

    def room_cells(self, room: str) -> torch.Tensor:
        """Free-cell indices of one room (``"upper_left"``, ``"upper_right"``, ``"lower_left"``,
        ``"lower_right"``), doorways excluded."""
        bounds = {"upper_left": (1, 5, 1, 5), "upper_right": (1, 6, 7, 11),
                  "lower_left": (7, 11, 1, 5), "lower_right": (8, 11, 7, 11)}
        if room not in bounds:
            raise ValueError(f"room must be one of {sorted(bounds)}, got {room!r}")
        r0, r1, c0, c1 = bounds[room]
        cells = [i for (r, c), i in self._index.items() if r0 <= r <= r1 and c0 <= c <= c1]
        return torch.tensor(sorted(cells), dtype=torch.int64, device=self.coords.device)

    def doorway_cells(self) -> torch.Tensor:
        """Free-cell indices of the four doorways (north, west, south, east): ``[4]``."""
        cells = [self._index[rc] for rc in ((3, 6), (6, 2), (10, 6), (7, 9))]
        return torch.tensor(cells, dtype=torch.int64, device=self.coords.device)

    def to_grid(self, values: torch.Tensor, fill: float = float("nan")) -> torch.Tensor:
        """Scatter per-cell values ``[..., 104]`` onto the map ``[..., 13, 13]`` (walls = ``fill``)."""
        checks.tensor(values, "values")
        if values.ndim == 0 or values.shape[-1] != self.num_states:
            raise ValueError(f"values expected last dim {self.num_states}, got {tuple(values.shape)}")
        grid = torch.full((*values.shape[:-1], self.height * self.width), fill, dtype=values.dtype, device=values.device)
        flat = (self.coords[:, 0] * self.width + self.coords[:, 1]).to(values.device)
        grid = grid.index_copy(-1, flat, values)
        return grid.reshape(*values.shape[:-1], self.height, self.width)

    def task(self, goal: int | torch.Tensor) -> FourRoomsTask:
        """The task whose goal is free cell ``goal`` (an int or an int tensor ``[*B]``); checked to be in range."""
        if isinstance(goal, torch.Tensor):
            checks.index_tensor(goal, "goal", self.num_states)
        else:
            checks.int_in_range(goal, "goal", 0, self.num_states - 1)
        return FourRoomsTask(torch.as_tensor(goal, dtype=torch.int64, device=self.coords.device))

    def sample_tasks(self, num_tasks: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> FourRoomsTask:
        """``num_tasks`` goal cells drawn uniformly -> ``FourRoomsTask(goal [n])``."""
        checks.positive_int(num_tasks, "num_tasks")
        device = (generator.device if generator is not None else self.coords.device) if device is None else device
        return FourRoomsTask(torch.randint(self.num_states, (num_tasks,), generator=generator, device=device))

    def sample_noise(self, num_steps: int, batch_shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> FourRoomsNoise:
        """Uniforms for ``num_steps`` steps: ``start [T, *B]`` then ``move [T, *B, 2]``."""
        checks.positive_int(num_steps, "num_steps")
        device = generator.device if generator is not None and device is None else device
        start = torch.rand(num_steps, *batch_shape, generator=generator, device=device)
        move = torch.rand(num_steps, *batch_shape, 2, generator=generator, device=device)
        return FourRoomsNoise(start, move)

    # ------------------------------------------------------------------ pure env
    def reset(self, tasks: FourRoomsTask, noise: FourRoomsNoise) -> tuple[FourRoomsState, torch.Tensor]:
        """Start uniformly in a cell other than the goal, from ``noise.start [*B]``.

        Returns ``(state, obs [*B])``.
        """
        checks.instance(noise, "noise", FourRoomsNoise)
        u = checks.floating_tensor(noise.start, "noise.start", shape=tuple(tasks.goal.shape))
        k = torch.clamp((u * (self.num_states - 1)).long(), max=self.num_states - 2)  # [0, 103)
        cell = k + (k >= tasks.goal).long()  # skip the goal
        return FourRoomsState(cell, torch.zeros_like(cell, dtype=torch.bool)), self._observe(cell)

    def step(
        self, state: FourRoomsState, action: torch.Tensor, tasks: FourRoomsTask, noise: FourRoomsNoise
    ) -> tuple[FourRoomsState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step. ``action: [*B]`` int in 0..3; ``noise.move: [*B, 2]``.

        Returns ``(state, obs [*B], reward [*B] float, done [*B] bool)``.
        """
        shape = tuple(state.cell.shape)
        checks.instance(noise, "noise", FourRoomsNoise)
        checks.integer_tensor(tasks.goal, "tasks.goal", shape=shape)
        u = checks.floating_tensor(noise.move, "noise.move", shape=(*shape, 2))
        check_actions = action.device.type == "cpu" and not torch.compiler.is_compiling()
        checks.integer_tensor(action, "action", shape=shape)
        if check_actions:
            checks.index_tensor(action, "action", self.num_actions)
        fails = u[..., 0] < self.fail_prob
        other = (action + 1 + torch.clamp((u[..., 1] * 3).long(), max=2)) % 4
        effective = torch.where(fails, other, action)
        moved = self.transitions.to(state.cell.device)[state.cell, effective]
        active = ~state.done
        cell = torch.where(active, moved, state.cell)
        at_goal = active & (cell == tasks.goal)
        reward = at_goal.to(torch.float32)
        done = state.done | at_goal
        return FourRoomsState(cell, done), self._observe(cell), reward, done
