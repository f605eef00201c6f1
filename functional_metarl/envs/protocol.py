"""The one contract of a pure task family, as ``typing.Protocol`` s.

A meta-RL task is an environment's parameters (gymnax's ``EnvParams``): a family holds only
constants, and every method is a pure function of explicit inputs -- the tasks, the state and an
explicit *noise* value for the step's randomness (what gymnax's PRNG key is; a torch generator is
used only to draw that noise, never inside ``reset`` / ``step``).

Contract of :class:`TaskFamily` (navigation, bandits, tabular MDPs, Four Rooms)::

    tasks = env.sample_tasks(num_tasks, generator)              # leaves [N, ...]
    noise = env.sample_noise(num_steps, batch_shape, generator)  # leaves [T, *B, ...]
    state, obs = env.reset(tasks, noise_0)                      # tasks leaves [*B, ...]
    state, obs, reward, done = env.step(state, action, tasks, noise_t)

* The batch shape ``B`` of ``reset`` / ``step`` is the batch shape of ``tasks``: ``E`` episodes
  (or trials) of each of ``N`` tasks are the tasks repeated, ``repeat_tasks(tasks, E)`` (leaves
  ``[N, E, ...]``). Nothing broadcasts.
* ``noise_t`` is step ``t`` of ``sample_noise`` (``tree_map(lambda n: n[t], noise)``); ``reset``
  takes step 0's. A family without randomness returns :class:`NoNoise` (an empty NamedTuple);
  every leaf of a noise value has the leading time axis, so slicing is generic.
* ``obs``: ``[*B, *obs_shape]``; ``reward``: ``[*B]`` float; ``done``: ``[*B]`` bool, this step
  ended the entry's episode. An episode's later steps are padding for :func:`envs.rollout`.
* ``action``: ``[*B, action_size]`` float when ``discrete_actions`` is False, else ``[*B]``
  integer in ``[0, action_size)``.

Attributes: ``obs_shape`` (one observation's shape, e.g. ``(2,)``; ``()`` for Four Rooms, whose
observation is a cell index), ``discrete_actions``, ``action_size`` (action dimension, or number
of actions), ``episode_length`` (the steps of one episode, the rollout horizon).

Supervised families (sine regression) have no state or step: they follow the narrower
:class:`SupervisedTaskFamily` -- ``sample_tasks`` plus ``sample_batch(tasks, k, generator)``
(``k`` labelled points per task) and ``in_dim`` / ``out_dim``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from .. import checks
from ..tree import tree_map

__all__ = ["TaskFamily", "SupervisedTaskFamily", "NoNoise", "repeat_tasks", "noise_at"]


class NoNoise(NamedTuple):
    """The noise of a family whose steps draw nothing (a pytree with no leaves)."""


@runtime_checkable
class TaskFamily(Protocol):
    """A pure RL task family: see the module docstring for shapes."""

    obs_shape: tuple[int, ...]
    discrete_actions: bool
    action_size: int
    episode_length: int

    def sample_tasks(self, num_tasks: int, generator: torch.Generator | None = None) -> Any:
        """``num_tasks`` tasks, leaves ``[num_tasks, ...]``."""
        ...

    def sample_noise(self, num_steps: int, batch_shape: tuple[int, ...],
                     generator: torch.Generator | None = None) -> Any:
        """The randomness of ``num_steps`` steps of a ``batch_shape`` batch: leaves ``[T, *B, ...]``."""
        ...

    def reset(self, tasks: Any, noise: Any) -> tuple[Any, torch.Tensor]:
        """``(state, obs [*B, *obs_shape])`` at the start of an episode of every entry of ``tasks``."""
        ...

    def step(self, state: Any, action: torch.Tensor, tasks: Any, noise: Any
             ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(state, obs, reward [*B], done [*B])`` after one step of every entry."""
        ...


@runtime_checkable
class SupervisedTaskFamily(Protocol):
    """A supervised task family (sine regression): tasks and labelled samples of them."""

    in_dim: int
    out_dim: int

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> Any:
        """``num_tasks`` tasks, leaves ``[num_tasks, ...]``."""
        ...

    def sample_batch(self, tasks: Any, k: int, generator: torch.Generator) -> Any:
        """``k`` labelled points of every task: leaves ``[N, k, ...]``."""
        ...


def repeat_tasks(tasks: Any, num_episodes: int) -> Any:
    """The same task ``num_episodes`` times: leaves ``[N, ...] -> [N, E, ...]`` (a view, no copy).

    ``tasks`` is a batch with one leading task axis, as ``sample_tasks`` returns it; the result
    is the batch of ``E`` episodes (or trials) of every task that ``reset`` / ``step`` take.
    """
    checks.positive_int(num_episodes, "num_episodes")
    return tree_map(lambda x: x.unsqueeze(1).expand(x.shape[0], num_episodes, *x.shape[1:]), tasks)


def noise_at(noise: Any, t: int) -> Any:
    """Step ``t`` of a noise value: every leaf ``[T, ...] -> [...]``."""
    return tree_map(lambda x: x[t], noise)
