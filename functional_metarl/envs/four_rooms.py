"""Four Rooms (Sutton, Precup & Singh 1999) as pure tensor functions.

A 13 x 13 grid whose border and inner walls leave 104 free cells in four rooms joined by four
doorways. Actions are up / down / left / right (0..3). A move "fails" with probability 1/3: the
agent then moves in one of the *other* three directions, chosen uniformly. A move into a wall
leaves the agent where it is. Reward is 1 on entering the goal cell and 0 otherwise; entering the
goal ends the episode. Finished episodes stay frozen (later steps: reward 0, done stays True), so
a batch of episodes steps together with masks, never ``break``.

States and observations are free-cell indices in ``[0, 104)``, numbered row-major over the map
below (the numbering of Bacon et al.'s released code, whose default goal, cell 62, is the east
doorway between the two right-hand rooms). Randomness comes in as uniform tensors:
``reset`` takes ``u [*B]`` (start cell), ``step`` takes ``u [*B, 2]`` (``u[..., 0] < 1/3``: the
move fails; ``u[..., 1]`` picks which other direction).

Shapes: ``task.goal: [*B]`` (int64 cell index); ``state.cell, state.done: [*B]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["FOUR_ROOMS_LAYOUT", "FourRooms", "FourRoomsState", "FourRoomsTask"]

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


class FourRoomsState(NamedTuple):
    """The agent's cell and whether its episode has ended."""

    cell: torch.Tensor  # [*B] int64 free-cell index
    done: torch.Tensor  # [*B] bool


class FourRooms:
    """The environment family; holds only constant tables, every method is pure.

    Attributes:
        num_states: 104 free cells; ``num_actions``: 4.
        coords: ``[104, 2]`` (row, col) of each free cell.
        transitions: ``[104, 4]`` the cell reached by each action (itself when blocked).
        fail_prob: 1/3.
    """

    num_actions = 4

    def __init__(self, fail_prob: float = 1.0 / 3.0, device: torch.device | str | None = None):
        if not 0.0 <= fail_prob <= 1.0:
            raise ValueError(f"fail_prob must lie in [0, 1], got {fail_prob}")
        self.fail_prob = float(fail_prob)
        free = [(r, c) for r, row in enumerate(FOUR_ROOMS_LAYOUT) for c, ch in enumerate(row) if ch == " "]
        index = {rc: i for i, rc in enumerate(free)}
        table = [[index.get((r + dr, c + dc), index[(r, c)]) for dr, dc in _MOVES] for r, c in free]
        self.num_states = len(free)
        self.height, self.width = len(FOUR_ROOMS_LAYOUT), len(FOUR_ROOMS_LAYOUT[0])
        self.coords = torch.tensor(free, dtype=torch.int64, device=device)
        self.transitions = torch.tensor(table, dtype=torch.int64, device=device)
        self.walls = torch.tensor([[ch == "w" for ch in row] for row in FOUR_ROOMS_LAYOUT], device=device)
        self._index = index

    # ------------------------------------------------------------------ helpers (host side)
    def cell_index(self, row: int, col: int) -> int:
        """Free-cell index of grid position ``(row, col)``; ValueError on a wall."""
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
        if values.shape[-1] != self.num_states:
            raise ValueError(f"values expected last dim {self.num_states}, got {tuple(values.shape)}")
        grid = torch.full((*values.shape[:-1], self.height * self.width), fill, dtype=values.dtype, device=values.device)
        flat = (self.coords[:, 0] * self.width + self.coords[:, 1]).to(values.device)
        grid = grid.index_copy(-1, flat, values)
        return grid.reshape(*values.shape[:-1], self.height, self.width)

    def task(self, goal: int | torch.Tensor) -> FourRoomsTask:
        """The task whose goal is free cell ``goal`` (an int or an int tensor ``[*B]``); checked to be in range."""
        goal = torch.as_tensor(goal, dtype=torch.int64, device=self.coords.device)
        if ((goal < 0) | (goal >= self.num_states)).any():
            raise ValueError(f"goal must be a cell index in [0, {self.num_states}), got {goal.tolist()}")
        return FourRoomsTask(goal)

    # ------------------------------------------------------------------ pure env
    def reset(self, task: FourRoomsTask, u: torch.Tensor) -> tuple[FourRoomsState, torch.Tensor]:
        """Start uniformly in a cell other than the goal. ``u: [*B]`` uniform in [0, 1).

        Returns ``(state, obs [*B])``.
        """
        if u.shape != task.goal.shape:
            raise ValueError(f"u expected shape {tuple(task.goal.shape)} (one uniform per episode), got {tuple(u.shape)}")
        k = torch.clamp((u * (self.num_states - 1)).long(), max=self.num_states - 2)  # [0, 103)
        cell = k + (k >= task.goal).long()  # skip the goal
        return FourRoomsState(cell, torch.zeros_like(cell, dtype=torch.bool)), cell

    def step(
        self, state: FourRoomsState, action: torch.Tensor, task: FourRoomsTask, u: torch.Tensor
    ) -> tuple[FourRoomsState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step. ``action: [*B]`` int in 0..3; ``u: [*B, 2]`` uniform in [0, 1).

        Returns ``(state, obs [*B], reward [*B] float, done [*B] bool)``.
        """
        shape = state.cell.shape
        if action.shape != shape or task.goal.shape != shape or u.shape != (*shape, 2):
            raise ValueError(
                f"step expected action {tuple(shape)}, task.goal {tuple(shape)}, u {(*shape, 2)}; got "
                f"{tuple(action.shape)}, {tuple(task.goal.shape)}, {tuple(u.shape)}"
            )
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise TypeError(f"action must be an integer tensor, got {action.dtype}")
        fails = u[..., 0] < self.fail_prob
        other = (action + 1 + torch.clamp((u[..., 1] * 3).long(), max=2)) % 4
        effective = torch.where(fails, other, action)
        moved = self.transitions.to(state.cell.device)[state.cell, effective]
        active = ~state.done
        cell = torch.where(active, moved, state.cell)
        at_goal = active & (cell == task.goal)
        reward = at_goal.to(torch.float32)
        done = state.done | at_goal
        return FourRoomsState(cell, done), cell, reward, done
