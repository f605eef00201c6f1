"""Replay buffers: uniform, proportional prioritised (sum tree), and n-step aggregation.

These are runner-layer objects: they own storage and mutate it. Everything they hand out is a
:class:`Transition` of tensors; randomness comes only from the ``torch.Generator`` passed to
``sample``. Every ``add`` validates the whole batch first and only then writes, so a bad batch
raises and leaves the buffer exactly as it was.

A stored transition is ``(obs, action, reward, next_obs, done, n_steps)``: ``reward`` is the
(possibly n-step) discounted return ``sum_{k<n_steps} gamma^k r_{t+k}``, ``next_obs`` the
observation to bootstrap from and ``done`` whether the episode *terminated* within those steps
(no bootstrap). The bootstrap discount is therefore ``gamma ** n_steps * (1 - done)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .. import checks

__all__ = [
    "FrameStackReplay",
    "Transition",
    "UniformReplay",
    "PrioritizedReplay",
    "SumTree",
    "NStepAggregator",
    "importance_weights",
]


class Transition(NamedTuple):
    """A batch of transitions; leading axis ``[B]`` on every field.

    obs ``[B, *obs_shape]``, action ``[B, *action_shape]``, reward ``[B]`` (float),
    next_obs ``[B, *obs_shape]``, done ``[B]`` (float 0/1: terminated, do not bootstrap),
    n_steps ``[B]`` (int64, rewards summed into ``reward``; 1 for one-step transitions).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    n_steps: torch.Tensor


# What the buffers accept per field: a tensor, or anything ``torch.as_tensor`` takes (a numpy
# array from a gymnasium vector env).
ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: object, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor or array, got {type(x).__name__}") from exc


class UniformReplay:
    """A circular buffer sampled uniformly with replacement.

    Args:
        capacity: the most transitions kept; the oldest are overwritten.
        device: where storage lives (default CPU).
        num_actions: if given, actions must be integer tensors ``[B]`` with values in
            ``[0, num_actions)`` (discrete control); otherwise any floating or integer action.

    ``add(obs, action, reward, next_obs, done, n_steps=None)`` stores a batch ``[B, ...]``;
    storage shapes and dtypes are fixed by the first batch. ``sample(batch_size, generator)``
    returns a :class:`Transition`.
    """

    def __init__(self, capacity: int, device: torch.device | str | None = None, num_actions: int | None = None):
        self.capacity = checks.positive_int(capacity, "capacity")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.num_actions = None if num_actions is None else checks.positive_int(num_actions, "num_actions")
        self._storage: dict[str, torch.Tensor] | None = None
        self._numpy_views: dict[str, np.ndarray] | None = None  # of a CPU storage, for add(check=False)
        self._slot_range: torch.Tensor | None = None  # arange(capacity), sliced for the slots written
        self.size = 0
        self.cursor = 0  # next slot to write

    def __len__(self) -> int:
        return self.size

    # ------------------------------------------------------------------ validation
    def _validate(self, obs, action, reward, next_obs, done, n_steps) -> dict[str, torch.Tensor]:
        obs = _as_tensor(obs, "obs")
        next_obs = _as_tensor(next_obs, "next_obs")
        action = _as_tensor(action, "action")
        reward = _as_tensor(reward, "reward")
        done = _as_tensor(done, "done")
        if obs.ndim == 0:
            raise ValueError(f"obs must have a leading batch axis [B, ...], got shape {tuple(obs.shape)}")
        batch = obs.shape[0]
        if next_obs.shape != obs.shape:
            raise ValueError(f"next_obs expected shape {tuple(obs.shape)} (as obs), got {tuple(next_obs.shape)}")
        if reward.shape != (batch,):
            raise ValueError(f"reward expected shape ({batch},), got {tuple(reward.shape)}")
        if done.shape != (batch,):
            raise ValueError(f"done expected shape ({batch},), got {tuple(done.shape)}")
        if action.ndim == 0 or action.shape[0] != batch:
            raise ValueError(f"action expected a leading batch axis of size {batch}, got shape {tuple(action.shape)}")
        checks.floating_tensor(reward, "reward")
        checks.finite_tensor(reward, "reward")
        if obs.is_floating_point():
            checks.finite_tensor(obs, "obs")
            checks.finite_tensor(next_obs, "next_obs")
        if done.is_complex():
            raise TypeError(f"done must be bool or 0/1 numbers, got {done.dtype}")
        checks.binary_mask(done, "done")  # 0/1 (or bool)
        if self.num_actions is not None:
            checks.integer_tensor(action, "action", shape=(batch,))  # an index: a float would be truncated
            checks.index_tensor(action, "action", self.num_actions)
        elif action.is_floating_point():
            checks.finite_tensor(action, "action")
        if n_steps is None:
            n_steps = torch.ones(batch, dtype=torch.int64)
        else:
            n_steps = checks.integer_tensor(_as_tensor(n_steps, "n_steps"), "n_steps", shape=(batch,))
            if (n_steps < 1).any():
                raise ValueError("n_steps must be >= 1")
        fields = {
            "obs": obs,
            "action": action.long() if self.num_actions is not None else action,
            "reward": reward,
            "next_obs": next_obs,
            "done": done.to(reward.dtype),
            "n_steps": n_steps.long(),
        }
        if self._storage is not None:
            for key, value in fields.items():
                stored = self._storage[key]
                if value.shape[1:] != stored.shape[1:]:
                    raise ValueError(f"{key} expected per-item shape {tuple(stored.shape[1:])}, got {tuple(value.shape[1:])}")
                if key in ("obs", "next_obs", "action") and value.dtype != stored.dtype:
                    # Silent casts would e.g. truncate float actions to ints; refuse instead.
                    if not (value.is_floating_point() and stored.is_floating_point()):
                        raise TypeError(f"{key} expected dtype {stored.dtype} (as first stored), got {value.dtype}")
        return fields

    def _allocate(self, fields: dict[str, torch.Tensor]) -> None:
        self._numpy_views = None
        self._storage = {
            k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype, device=self.device) for k, v in fields.items()
        }

    # ------------------------------------------------------------------ public API
    def add(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike,
            done: ArrayLike, n_steps: ArrayLike | None = None, check: bool = True) -> torch.Tensor:
        """Store a batch of ``B`` transitions; returns the slots written ``[B]`` (int64).

        Raises ``ValueError`` / ``TypeError`` before writing anything if any field is bad.
        ``check=False`` skips that validation (every field must then already be a tensor of
        the stored kind, e.g. what :meth:`NStepAggregator.push` returns): for a runner's hot
        loop, whose inputs come from a checked env step; it stores the same values.
        """
        if not check and self._storage is not None and self.device.type == "cpu" and isinstance(obs, np.ndarray):
            return self._add_numpy(obs, action, reward, next_obs, done, n_steps)
        if check:
            fields = self._validate(obs, action, reward, next_obs, done, n_steps)
        else:
            fields = {"obs": obs, "action": action.long() if self.num_actions is not None else action,
                      "reward": reward, "next_obs": next_obs, "done": done.to(reward.dtype),
                      "n_steps": torch.ones(obs.shape[0], dtype=torch.int64) if n_steps is None else n_steps.long()}
        batch = fields["obs"].shape[0]
        if batch > self.capacity:
            raise ValueError(f"cannot add {batch} transitions at once to a buffer of capacity {self.capacity}")
        if self._storage is None:
            self._allocate(fields)
        assert self._storage is not None
        if self.cursor + batch <= self.capacity:  # one contiguous run of slots: a slice copy, no index tensor
            slots = torch.arange(self.cursor, self.cursor + batch)
            for key, value in fields.items():
                self._storage[key][self.cursor : self.cursor + batch].copy_(value)
        else:
            slots = (self.cursor + torch.arange(batch)) % self.capacity
            slots_dev = slots.to(self.device)
            for key, value in fields.items():
                store = self._storage[key]
                store[slots_dev] = value.to(device=self.device, dtype=store.dtype)
        self.cursor = (self.cursor + batch) % self.capacity
        self.size = min(self.size + batch, self.capacity)
        return slots

    def _add_numpy(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
                   done: np.ndarray, n_steps: np.ndarray | None) -> torch.Tensor:
        """``add(check=False)`` of numpy arrays into CPU storage: written through numpy views of
        the storage tensors (numpy's assignment casts like ``Tensor.copy_``: the same values),
        which costs a fraction of a tensor copy per field for a one-env step."""
        assert self._storage is not None
        if self._numpy_views is None:
            self._numpy_views = {k: v.numpy() for k, v in self._storage.items()}
        views = self._numpy_views
        batch = obs.shape[0]
        start = self.cursor
        values = (("obs", obs), ("action", action), ("reward", reward), ("next_obs", next_obs), ("done", done),
                  ("n_steps", 1 if n_steps is None else n_steps))
        if start + batch <= self.capacity:
            for key, value in values:
                views[key][start : start + batch] = value
            if self._slot_range is None:
                self._slot_range = torch.arange(self.capacity)
            slots = self._slot_range[start : start + batch]  # a view: no new tensor per step
        else:
            slots = (start + torch.arange(batch)) % self.capacity
            index = slots.numpy()
            for key, value in values:
                views[key][index] = value
        self.cursor = (start + batch) % self.capacity
        self.size = min(self.size + batch, self.capacity)
        return slots

    def _check_sample(self, batch_size: int, generator: torch.Generator) -> None:
        checks.positive_int(batch_size, "batch_size")
        checks.instance(generator, "generator", torch.Generator)
        if self.size < batch_size:
            raise ValueError(f"cannot sample a batch of {batch_size}: the buffer holds only {self.size} transitions")

    def gather(self, slots: torch.Tensor, check: bool = True) -> Transition:
        """The transitions at ``slots [B]`` (int64, each in ``[0, len(self))``; ``check=False``
        trusts that, for slots the buffer drew itself)."""
        if check:
            checks.index_tensor(checks.tensor(slots, "slots", ndim=1), "slots", self.size)
        assert self._storage is not None
        slots = slots.to(self.device)
        return Transition(**{k: v[slots] for k, v in self._storage.items()})

    def sample(self, batch_size: int, generator: torch.Generator) -> Transition:
        """``batch_size`` transitions drawn uniformly with replacement."""
        self._check_sample(batch_size, generator)
        slots = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        return self.gather(slots, check=False)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Capacity, size, cursor and the stored transitions (CPU tensors)."""
        return {
            "capacity": self.capacity,
            "size": self.size,
            "cursor": self.cursor,
            "storage": None if self._storage is None else {k: v[: self.size].cpu() for k, v in self._storage.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` wrote (the capacity must match)."""
        if state["capacity"] != self.capacity:
            raise ValueError(f"buffer capacity {self.capacity} differs from the saved {state['capacity']}")
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        if state["storage"] is None:
            self._storage = self._numpy_views = None
            return
        self._allocate({k: v for k, v in state["storage"].items()})
        assert self._storage is not None
        for k, v in state["storage"].items():
            self._storage[k][: self.size] = v.to(self.device)


class SumTree:
    """A binary sum tree over ``capacity`` non-negative priorities, stored in one tensor.

    Leaves sit at ``[capacity_pow2, 2 * capacity_pow2)`` of a float64 array; node ``i`` holds
    the sum of its children ``2i`` and ``2i + 1``; the root (index 1) is the total. ``update``
    and ``find`` work on a whole batch of indices / prefix sums at once (one tensor operation
    per tree level), so sampling a batch costs ``O(log capacity)`` tensor ops, not a Python
    loop per item.
    """

    def __init__(self, capacity: int, device: torch.device | str | None = None):
        self.capacity = checks.positive_int(capacity, "capacity")
        self.depth = max(1, math.ceil(math.log2(capacity)))
        self.leaf_base = 1 << self.depth
        self.tree = torch.zeros(2 * self.leaf_base, dtype=torch.float64, device=device)

    @property
    def total(self) -> torch.Tensor:
        """Sum of all priorities (0-d float64)."""
        return self.tree[1]

    def get(self, index: torch.Tensor) -> torch.Tensor:
        """The priorities stored at leaf ``index`` (any shape of int64 indices)."""
        return self.tree[self.leaf_base + index.to(self.tree.device)]

    def update(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """Set leaf ``index[b]`` to ``value[b]``; with duplicate indices the last one wins."""
        checks.index_tensor(checks.tensor(index, "index", ndim=1), "index", self.capacity)
        checks.floating_tensor(value, "value", shape=tuple(index.shape))
        index = index.to(self.tree.device).long()
        value = value.to(self.tree.device, torch.float64)
        if not (torch.isfinite(value).all() and (value >= 0).all()):
            raise ValueError("priorities must be finite and non-negative")
        if self.tree.device.type == "cpu":
            self._update_numpy(index.numpy(), value.numpy())
            return
        # Resolve duplicates deterministically: keep the last occurrence of each index.
        unique, inverse = torch.unique(index, return_inverse=True)
        position = torch.arange(index.shape[0], device=index.device)
        last = torch.full_like(unique, -1).scatter_reduce(0, inverse, position, reduce="amax")
        node = unique + self.leaf_base
        self.tree[node] = value[last]
        for _ in range(self.depth):
            # Siblings share a parent; duplicate parents all write the same sum, so no unique().
            node = node // 2
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def _update_numpy(self, index: np.ndarray, value: np.ndarray) -> None:
        """``update``'s arithmetic on a numpy view of a CPU tree: the same float64 sums, written
        in the same places, at a fraction of the per-op cost of tensor ops (a tree of 2^16
        leaves takes 16 levels of small ops per update)."""
        tree = self.tree.numpy()
        unique, inverse = np.unique(index, return_inverse=True)
        last = np.full(unique.shape, -1, dtype=np.int64)
        np.maximum.at(last, inverse.reshape(-1), np.arange(index.shape[0]))  # the last occurrence wins
        node = unique + self.leaf_base
        tree[node] = value[last]
        for _ in range(self.depth):
            node = node // 2
            tree[node] = tree[2 * node] + tree[2 * node + 1]

    def find(self, prefix: torch.Tensor) -> torch.Tensor:
        """Leaf indices ``[B]`` whose cumulative-priority interval holds ``prefix [B]``.

        A leaf ``i`` covers ``[sum_{j<i} p_j, sum_{j<=i} p_j)``, so zero-priority leaves are
        never returned for a prefix in ``[0, total)``.
        """
        if self.tree.device.type == "cpu":  # the same walk on numpy views (see _update_numpy)
            tree = self.tree.numpy()
            u = prefix.to(torch.float64).numpy()
            node = np.ones(u.shape, dtype=np.int64)
            for _ in range(self.depth):
                left = tree[2 * node]
                go_right = u >= left
                u = np.where(go_right, u - left, u)
                node = 2 * node + go_right
            return torch.from_numpy(node - self.leaf_base).clamp(max=self.capacity - 1)
        u = prefix.to(self.tree.device, torch.float64)
        node = torch.ones_like(u, dtype=torch.int64)
        for _ in range(self.depth):
            left = self.tree[2 * node]
            go_right = u >= left
            u = torch.where(go_right, u - left, u)
            node = 2 * node + go_right.long()
        return (node - self.leaf_base).clamp(max=self.capacity - 1)

    def sample(self, batch_size: int, generator: torch.Generator, size: int) -> torch.Tensor:
        """Stratified proportional sampling: one draw in each of ``batch_size`` equal slices of
        the total priority (Schaul et al. 2016, Appendix B.2.1). Returns leaf indices ``[B]``."""
        total = self.total
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64, device=generator.device).to(total.device)
        segment = total / batch_size
        prefix = (torch.arange(batch_size, device=total.device, dtype=torch.float64) + u) * segment
        # Guard the right end against rounding (prefix must stay below the total).
        prefix = torch.minimum(prefix, total * (1 - 1e-12))
        return self.find(prefix).clamp(max=size - 1)


def importance_weights(probs: torch.Tensor, size: int, beta: float | torch.Tensor) -> torch.Tensor:
    """Importance-sampling weights ``w_i = (N P(i))^-beta / max_j w_j`` over the batch.

    probs ``[B]`` sampling probabilities, ``size`` = N, the number of stored transitions.
    Normalising by the batch maximum (rather than the maximum over the whole buffer) keeps
    ``w <= 1`` and only rescales the step (Schaul et al. 2016 normalise "by 1 / max_i w_i").
    """
    checks.positive_int(size, "size")
    checks.floating_tensor(probs, "probs", ndim=1)
    if not isinstance(beta, torch.Tensor):
        checks.probability(beta, "beta")
    w = (size * probs) ** (-beta)
    return w / w.max()


class PrioritizedReplay(UniformReplay):
    """Proportional prioritised replay (Schaul et al. 2016), as Rainbow uses it.

    ``P(i) = p_i^alpha / sum_k p_k^alpha``. New transitions enter with the largest priority
    seen so far (initially 1), so each is replayed at least about once. ``sample`` returns the
    batch, the slots (hand them back to ``update_priorities``) and importance weights
    normalised by the batch max (``<= 1``). Rainbow prioritises by the KL loss with
    ``alpha = 0.5``, ``beta`` annealed linearly from 0.4 to 1 (the runner anneals it).

    Args:
        capacity: as :class:`UniformReplay`.
        device: as :class:`UniformReplay`.
        num_actions: as :class:`UniformReplay`.
        alpha: priority exponent (0 = uniform).
        eps: added to every priority so none is exactly 0.
    """

    def __init__(
        self,
        capacity: int,
        alpha: float = 0.5,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        num_actions: int | None = None,
    ):
        super().__init__(capacity, device=device, num_actions=num_actions)
        self.alpha = checks.non_negative_number(alpha, "alpha")
        self.eps = checks.non_negative_number(eps, "eps")
        self.tree = SumTree(self.capacity, device=self.device)
        self.max_priority = 1.0  # raw priority (before ** alpha)

    def add(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike,
            done: ArrayLike, n_steps: ArrayLike | None = None, check: bool = True) -> torch.Tensor:
        """Store a batch like :meth:`UniformReplay.add`, each new slot at the highest priority seen so far."""
        slots = super().add(obs, action, reward, next_obs, done, n_steps, check)
        self.tree.update(slots, torch.full(slots.shape, self.max_priority**self.alpha, dtype=torch.float64))
        return slots

    def sample(
        self, batch_size: int, generator: torch.Generator, beta: float = 1.0
    ) -> tuple[Transition, torch.Tensor, torch.Tensor]:
        """Returns ``(batch, slots [B] int64, weights [B] float32)``."""
        self._check_sample(batch_size, generator)
        checks.probability(beta, "beta")
        slots = self.tree.sample(batch_size, generator, self.size)
        probs = self.tree.get(slots) / self.tree.total
        weights = importance_weights(probs, self.size, beta).to(torch.float32)
        return self.gather(slots, check=False), slots, weights.to(self.device)

    def update_priorities(self, slots: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set raw priorities ``[B]`` (e.g. the KL loss) for ``slots [B]``; stores ``(p + eps)^alpha``."""
        checks.floating_tensor(priorities, "priorities")
        checks.same_shape(priorities, "priorities", slots, "slots")
        checks.index_tensor(slots, "slots", self.size)
        priorities = priorities.detach().to(torch.float64)
        if not (torch.isfinite(priorities).all() and (priorities >= 0).all()):
            raise ValueError("priorities must be finite and non-negative")
        p = priorities + self.eps
        self.tree.update(slots, p**self.alpha)
        self.max_priority = max(self.max_priority, float(p.max()))

    def state_dict(self) -> dict:
        """The uniform buffer's state plus the sum tree and the running maximum priority."""
        out = super().state_dict()
        out.update(tree=self.tree.tree.cpu(), max_priority=self.max_priority)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` wrote, sum tree included."""
        super().load_state_dict(state)
        self.tree.tree = state["tree"].to(self.tree.tree.device, torch.float64).clone()
        self.max_priority = float(state["max_priority"])


class NStepAggregator:
    """Turns per-step transitions of ``num_envs`` parallel envs into n-step transitions.

    Each env keeps its last (up to) ``n`` steps. A step's n-step transition is emitted once
    ``n`` steps follow it, or earlier when its episode ends (terminated *or* truncated): then
    every pending step of that env is emitted with a shortened window, so no return ever
    crosses an episode boundary. The result matches :func:`functional_metarl.rl.n_step_returns`
    on the whole trajectory.

    ``push`` returns a dict ready for ``buffer.add(**out)`` (or ``None`` when nothing is ready).
    """

    def __init__(self, n: int, gamma: float, num_envs: int):
        self.n = checks.positive_int(n, "n")
        self.num_envs = checks.positive_int(num_envs, "num_envs")
        checks.probability(gamma, "gamma")
        self.gamma = float(gamma)
        self._pending: list[list[tuple]] = [[] for _ in range(num_envs)]
        self._ones = torch.ones(num_envs, dtype=torch.int64)  # n_steps of 1-step transitions

    def reset(self) -> None:
        """Drop every pending step (e.g. after the envs were reset from outside)."""
        self._pending = [[] for _ in range(self.num_envs)]

    # ------------------------------------------------------------------ checkpoints
    _FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def state_dict(self) -> dict:
        """The pending (not yet emitted) steps of every env, as CPU tensors: restoring them lets
        an interrupted run emit exactly the n-step transitions an unbroken one would."""
        pending = [
            [{k: torch.as_tensor(v).detach().cpu().clone() for k, v in zip(self._FIELDS, step)} for step in env]
            for env in self._pending
        ]
        return {"n": self.n, "gamma": self.gamma, "num_envs": self.num_envs, "pending": pending}

    def load_state_dict(self, state: dict) -> None:
        """Restore the pending steps written by ``state_dict`` (n, gamma and num_envs must match)."""
        for key in ("n", "gamma", "num_envs"):
            if state[key] != getattr(self, key):
                raise ValueError(f"n-step {key} {getattr(self, key)} differs from the saved {state[key]}")
        self._pending = [[tuple(step[k] for k in self._FIELDS) for step in env] for env in state["pending"]]

    def _emit(self, steps: Sequence[tuple]) -> tuple:
        obs, action = steps[0][0], steps[0][1]
        ret = 0.0
        for k, step in enumerate(steps):
            ret += (self.gamma**k) * float(step[2])
        last = steps[-1]
        return obs, action, ret, last[3], bool(last[4]), len(steps)

    def push(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike,
             terminated: ArrayLike, truncated: ArrayLike, check: bool = True) -> dict | None:
        """One vector-env step: every argument has leading axis ``[num_envs]``.

        ``next_obs`` must be the true next observation (the final one at an episode end, not
        the auto-reset one). ``check=False`` skips the validation (every argument must then be
        a tensor: float32 ``reward``, bool ``terminated`` / ``truncated``): for a runner's hot
        loop; it returns the same transitions.
        """
        if not check:
            if self.n == 1:
                # Every env's step is its own 1-step transition, emitted at once in env order:
                # what the general path below returns, without the per-env Python.
                return {"obs": obs, "action": action, "reward": reward.to(torch.float32), "next_obs": next_obs,
                        "done": terminated.to(torch.float32), "n_steps": self._ones}
            return self._push(obs, action, reward, next_obs, terminated, truncated)
        obs, next_obs, action, reward = (_as_tensor(x, n) for x, n in ((obs, "obs"), (next_obs, "next_obs"), (action, "action"), (reward, "reward")))
        terminated = checks.binary_mask(_as_tensor(terminated, "terminated"), "terminated").bool()
        truncated = checks.binary_mask(_as_tensor(truncated, "truncated"), "truncated").bool()
        for name, x in (("obs", obs), ("next_obs", next_obs), ("action", action), ("reward", reward), ("terminated", terminated), ("truncated", truncated)):
            if x.ndim == 0 or x.shape[0] != self.num_envs:
                raise ValueError(f"{name} expected a leading axis of {self.num_envs} envs, got shape {tuple(x.shape)}")
        checks.finite_tensor(reward, "reward")
        return self._push(obs, action, reward, next_obs, terminated, truncated)

    def _push(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
              terminated: torch.Tensor, truncated: torch.Tensor) -> dict | None:
        out: list[tuple] = []
        for e in range(self.num_envs):
            self._pending[e].append((obs[e], action[e], reward[e], next_obs[e], terminated[e]))
        for e in range(self.num_envs):
            pending = self._pending[e]
            if bool(terminated[e]) or bool(truncated[e]):
                while pending:
                    out.append(self._emit(pending))
                    pending.pop(0)
            elif len(pending) == self.n:
                out.append(self._emit(pending))
                pending.pop(0)
        if not out:
            return None
        return {
            "obs": torch.stack([o[0] for o in out]),
            "action": torch.stack([o[1] for o in out]),
            "reward": torch.tensor([o[2] for o in out], dtype=torch.float32),
            "next_obs": torch.stack([o[3] for o in out]),
            "done": torch.tensor([o[4] for o in out], dtype=torch.float32),
            "n_steps": torch.tensor([o[5] for o in out], dtype=torch.int64),
        }


class FrameStackReplay:
    """Replay for frame-stacked observations ``[K, H, W]`` (Atari's 4 x 84 x 84 uint8) that
    stores every frame once, instead of an ``obs`` and a ``next_obs`` stack per transition.

    Consecutive stacks of one episode share ``K - 1`` frames, and a transition's ``next_obs``
    is a later stack of the same episode, so a naive buffer holds each frame up to ``2K`` times
    (56 KB per transition at 4 x 84 x 84). Here each env step writes only its newest frame,
    with a link to the frame before it in the same episode; a transition holds the *ids* of
    its ``obs`` and ``next_obs`` newest frames, and the stacks are rebuilt at sampling by
    following the links ``K - 1`` times. About one frame per transition (plus one per episode,
    the final observation) and 56 bytes of bookkeeping: see :meth:`bytes_per_transition`.

    Episode starts: a stack never reaches into the previous episode. Where the links stop
    (the episode's first frame), the stack is padded as gymnasium's ``FrameStackObservation``
    pads its reset observation: ``padding="reset"`` (its default) repeats the first frame,
    ``padding="zero"`` puts zero frames. Every observation handed in is checked against that
    (a reset stack must be its padded last frame, a later stack the previous one shifted by one
    frame), so a sampled stack always equals the one the env returned.

    Use, per vector-env step (what ``RainbowTrainer`` does for uint8 ``[K, H, W]`` observations):
    ``ids = begin(obs, mask)`` for the stacks of fresh episodes; ``ids = extend(obs, mask)``
    for the next stacks of continuing episodes (at an episode end: its final observation);
    transitions go in with ``add(obs_id, action, reward, next_obs_id, done, n_steps)`` (ids
    ``[B]`` int64 where a :class:`UniformReplay` takes stacks, e.g. from an
    :class:`NStepAggregator` fed with ids); ``sample`` returns :class:`Transition` s of stacks
    exactly as a :class:`UniformReplay` (or, with ``prioritized``, a :class:`PrioritizedReplay`)
    holding the stacks would, from the same generator.

    Args:
        capacity: transitions kept (the oldest are overwritten).
        stack_shape: ``(K, H, W)``.
        num_envs: parallel envs (each has its own chain of frames).
        prioritized: proportional prioritised replay (``alpha``, ``eps`` as :class:`PrioritizedReplay`).
        padding: ``"reset"`` or ``"zero"``, as above.
        n_step: the longest n-step window of the transitions to come (sizes the frames kept for
            steps not yet stored).
        device: where frames and transitions live.
        num_actions: as :class:`UniformReplay`.
        dtype: the frames' dtype (default uint8).
    """

    def __init__(self, capacity: int, stack_shape: Sequence[int], num_envs: int = 1, prioritized: bool = False,
                 alpha: float = 0.5, eps: float = 1e-6, padding: str = "reset", n_step: int = 1,
                 device: torch.device | str | None = None, num_actions: int | None = None,
                 dtype: torch.dtype = torch.uint8):
        self.capacity = checks.positive_int(capacity, "capacity")
        self.num_envs = checks.positive_int(num_envs, "num_envs")
        self.n_step = checks.positive_int(n_step, "n_step")
        checks.flag(prioritized, "prioritized")
        self.padding = checks.one_of(padding, "padding", ("reset", "zero"))
        stack_shape = tuple(stack_shape)
        if len(stack_shape) != 3:
            raise ValueError(f"stack_shape must be (K, H, W), got {stack_shape!r}")
        for i, s in enumerate(stack_shape):
            checks.positive_int(s, f"stack_shape[{i}]")
        self.stack_shape = stack_shape
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.prioritized = prioritized
        self.transitions: UniformReplay = (
            PrioritizedReplay(capacity, alpha, eps, self.device, num_actions) if prioritized
            else UniformReplay(capacity, self.device, num_actions)
        )
        # Frames: serial s (the s-th frame written, from 0) lives in slot s % num_frames while
        # s >= written - num_frames. Room for the stored transitions' frames (the final frame of
        # each episode in the window included: grown on demand) and a headroom for what the envs
        # still read: their current stacks and their steps not yet stored (at most n_step per
        # env), each env step writing at most two frames (a final one and a reset one).
        self._headroom = 2 * num_envs * (stack_shape[0] + self.n_step + 1)
        self.num_frames = capacity + self._headroom
        self.frames = torch.zeros((self.num_frames, *stack_shape[1:]), dtype=dtype, device=self.device)
        self.prev = torch.full((self.num_frames,), -1, dtype=torch.int64, device=self.device)  # serial before, -1: first
        self.written = 0
        self.heads = torch.full((num_envs,), -1, dtype=torch.int64)  # each env's newest frame serial (-1: none)
        # The oldest serial each stored transition needs (its obs stack's first frame), and a
        # lower bound of their minimum over the buffer (recomputed only when a write reaches it).
        self._needs = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self._need_floor = 0

    def __len__(self) -> int:
        return len(self.transitions)

    @property
    def size(self) -> int:
        return self.transitions.size

    # ------------------------------------------------------------------ frames
    def _slot(self, serial: torch.Tensor) -> torch.Tensor:
        return serial % self.num_frames

    def stacks(self, ids: torch.Tensor) -> torch.Tensor:
        """The stacks ``[B, K, H, W]`` whose newest frames are ``ids [B]`` (serials)."""
        K = self.stack_shape[0]
        ids = ids.to(self.device)
        out = torch.empty((ids.shape[0], *self.stack_shape), dtype=self.dtype, device=self.device)
        cur = ids
        out[:, K - 1] = self.frames[self._slot(cur)]
        padded = torch.zeros(ids.shape, dtype=torch.bool, device=self.device)
        for j in range(K - 2, -1, -1):
            before = self.prev[self._slot(cur)]
            padded = padded | (before < 0)
            cur = torch.where(before < 0, cur, before)  # at the episode's first frame: stay on it
            out[:, j] = self.frames[self._slot(cur)]
            if self.padding == "zero":
                out[:, j][padded] = 0
        return out

    def _first_needed(self, ids: torch.Tensor) -> torch.Tensor:
        """The oldest serial the stacks of ``ids`` read (their first frame), ``[B]``."""
        cur = ids.to(self.device)
        for _ in range(self.stack_shape[0] - 1):
            before = self.prev[self._slot(cur)]
            cur = torch.where(before < 0, cur, before)
        return cur

    def _make_room(self, count: int) -> None:
        """Before writing ``count`` frames: grow the frame ring if they would overwrite a frame
        that a stored transition or an env's recent steps still read."""
        # what the envs still read is within the last `_headroom` frames; the stored
        # transitions' oldest frame: the floor (a lower bound), recomputed when reached
        floor = self._need_floor
        if self.written + count - self.num_frames < floor:
            return
        if self.size:
            floor = int(self._needs[: self.size].min())
            self._need_floor = floor
        else:
            floor = self.written
        if self.written + count - self.num_frames < floor:
            return
        self._grow(self.written + count - floor + self._headroom)

    def _grow(self, minimum: int) -> None:
        new = max(minimum, self.num_frames + self.num_frames // 8)
        live = torch.arange(max(0, self.written - self.num_frames), self.written, device=self.device)
        frames = torch.zeros((new, *self.stack_shape[1:]), dtype=self.dtype, device=self.device)
        prev = torch.full((new,), -1, dtype=torch.int64, device=self.device)
        frames[live % new] = self.frames[live % self.num_frames]
        prev[live % new] = self.prev[live % self.num_frames]
        self.frames, self.prev, self.num_frames = frames, prev, new

    def _write(self, frames: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        count = frames.shape[0]
        self._make_room(count)
        serials = torch.arange(self.written, self.written + count, device=self.device)
        slots = self._slot(serials)
        self.frames[slots] = frames.to(self.device, self.dtype)
        self.prev[slots] = before.to(self.device)
        self.written += count
        return serials.cpu()

    def _envs(self, mask: ArrayLike | None) -> torch.Tensor:
        if mask is None:
            return torch.arange(self.num_envs)
        mask = checks.binary_mask(_as_tensor(mask, "mask"), "mask").bool().cpu()
        if mask.shape != (self.num_envs,):
            raise ValueError(f"mask expected shape ({self.num_envs},), got {tuple(mask.shape)}")
        return torch.nonzero(mask).flatten()

    def _check_stacks(self, obs: ArrayLike, envs: torch.Tensor) -> torch.Tensor:
        obs = _as_tensor(obs, "obs")
        if tuple(obs.shape) != (self.num_envs, *self.stack_shape):
            raise ValueError(f"obs expected shape ({self.num_envs}, {', '.join(map(str, self.stack_shape))}), "
                             f"got {tuple(obs.shape)}")
        if obs.dtype != self.dtype:
            raise TypeError(f"obs expected dtype {self.dtype}, got {obs.dtype}")
        return obs[envs.to(obs.device)]

    def begin(self, obs: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Record the first stacks of new episodes: ``obs [num_envs, K, H, W]``, used where
        ``mask [num_envs]`` (default: every env). Returns the ids ``[num_envs]`` (int64; -1
        outside the mask). Raises ``ValueError`` if a stack is not its last frame padded as ``padding``."""
        envs = self._envs(mask)
        stacks = self._check_stacks(obs, envs)
        last = stacks[:, -1:]
        pad = last.expand_as(stacks[:, :-1]) if self.padding == "reset" else torch.zeros_like(stacks[:, :-1])
        if not torch.equal(stacks[:, :-1], pad):
            raise ValueError(f"a first observation of an episode is not its frame padded with padding={self.padding!r} "
                             "(gymnasium's FrameStackObservation padding_type): cannot rebuild it from its frames")
        ids = torch.full((self.num_envs,), -1, dtype=torch.int64)
        if envs.numel():
            ids[envs] = self._write(stacks[:, -1], torch.full((envs.numel(),), -1, dtype=torch.int64))
            self.heads[envs] = ids[envs]
        return ids

    def extend(self, obs: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Record the next stacks of continuing episodes (``obs [num_envs, K, H, W]``, used where
        ``mask``; at an episode's end its final observation). Each must be that env's previous
        stack shifted by one frame (``ValueError`` otherwise). Returns ids as :meth:`begin`."""
        envs = self._envs(mask)
        stacks = self._check_stacks(obs, envs)
        heads = self.heads[envs]
        if (heads < 0).any():
            raise ValueError(f"extend: envs {envs[heads < 0].tolist()} have no episode begun (call begin first)")
        ids = torch.full((self.num_envs,), -1, dtype=torch.int64)
        if envs.numel():
            previous = self.stacks(heads)
            if not torch.equal(stacks[:, :-1].to(self.device), previous[:, 1:]):
                raise ValueError("an observation is not the env's previous stack shifted by one frame: not a frame "
                                 "stack, cannot be stored frame by frame")
            ids[envs] = self._write(stacks[:, -1], heads)
            self.heads[envs] = ids[envs]
        return ids

    # ------------------------------------------------------------------ transitions
    def add(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike, done: ArrayLike,
            n_steps: ArrayLike | None = None, check: bool = True) -> torch.Tensor:
        """Store transitions whose ``obs`` / ``next_obs`` are frame ids ``[B]`` (from
        :meth:`begin` / :meth:`extend`); the rest as :meth:`UniformReplay.add`. Returns the slots."""
        obs_ids, next_ids = _as_tensor(obs, "obs"), _as_tensor(next_obs, "next_obs")
        if check:
            for name, ids in (("obs", obs_ids), ("next_obs", next_ids)):
                checks.integer_tensor(ids, name, ndim=1)
                if ids.numel() and (int(ids.min()) < max(0, self.written - self.num_frames) or int(ids.max()) >= self.written):
                    raise ValueError(f"{name} must hold ids of stored frames (from begin / extend)")
        slots = self.transitions.add(obs_ids, action, reward, next_ids, done, n_steps, check)
        need = self._first_needed(obs_ids)
        self._needs[slots.to(self.device)] = need
        self._need_floor = min(self._need_floor, int(need.min()))
        return slots

    def _stacked(self, batch: Transition) -> Transition:
        return batch._replace(obs=self.stacks(batch.obs), next_obs=self.stacks(batch.next_obs))

    def gather(self, slots: torch.Tensor, check: bool = True) -> Transition:
        """The transitions at ``slots [B]``, with their stacks rebuilt."""
        return self._stacked(self.transitions.gather(slots, check))

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 1.0
               ) -> Transition | tuple[Transition, torch.Tensor, torch.Tensor]:
        """As the transition buffer's ``sample`` (uniform: a :class:`Transition`; prioritized:
        ``(batch, slots, weights)``), with the stacks rebuilt: the same draws, the same batch."""
        if self.prioritized:
            batch, slots, weights = self.transitions.sample(batch_size, generator, beta=beta)
            return self._stacked(batch), slots, weights
        return self._stacked(self.transitions.sample(batch_size, generator))

    def update_priorities(self, slots: torch.Tensor, priorities: torch.Tensor) -> None:
        """As :meth:`PrioritizedReplay.update_priorities` (prioritized only)."""
        if not self.prioritized:
            raise TypeError("update_priorities needs prioritized=True")
        self.transitions.update_priorities(slots, priorities)

    # ------------------------------------------------------------------ memory
    def nbytes(self) -> int:
        """Bytes held: the frame ring, its links, the transitions' fields (ids included), their
        frame floors and, when prioritized, the sum tree."""
        total = self.frames.nbytes + self.prev.nbytes + self._needs.nbytes
        if self.transitions._storage is not None:
            total += sum(v.nbytes for v in self.transitions._storage.values())
        if self.prioritized:
            total += self.transitions.tree.tree.nbytes
        return total

    def bytes_per_transition(self) -> float:
        """:meth:`nbytes` over the capacity (once a transition is stored, so the fields are allocated)."""
        return self.nbytes() / self.capacity

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The transitions, the live frames with their links, the counters and each env's head."""
        start = max(0, self.written - self.num_frames)
        live = torch.arange(start, self.written, device=self.device)
        return {
            "transitions": self.transitions.state_dict(),
            "num_frames": self.num_frames,
            "written": self.written,
            "frames": self.frames[self._slot(live)].cpu(),
            "prev": self.prev[self._slot(live)].cpu(),
            "heads": self.heads.clone(),
            "needs": self._needs[: self.size].cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` wrote."""
        self.transitions.load_state_dict(state["transitions"])
        self.num_frames, self.written = int(state["num_frames"]), int(state["written"])
        self.frames = torch.zeros((self.num_frames, *self.stack_shape[1:]), dtype=self.dtype, device=self.device)
        self.prev = torch.full((self.num_frames,), -1, dtype=torch.int64, device=self.device)
        live = torch.arange(max(0, self.written - self.num_frames), self.written, device=self.device)
        self.frames[self._slot(live)] = state["frames"].to(self.device, self.dtype)
        self.prev[self._slot(live)] = state["prev"].to(self.device)
        self.heads = state["heads"].clone()
        self._needs.zero_()
        self._needs[: self.size] = state["needs"].to(self.device)
        self._need_floor = int(state["needs"].min()) if self.size else 0
