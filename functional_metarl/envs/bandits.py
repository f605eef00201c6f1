"""Bernoulli multi-armed bandits (Duan et al. 2016, RL², section 3.1) as pure tensor functions.

A task is ``k`` arm means drawn uniformly from ``[0, 1]``. A *trial* is ``n`` pulls of the same
bandit; each pull is a one-step episode (so ``done`` is True after every pull) and pays 1 with
the pulled arm's mean probability, else 0. The observation carries no information (a constant
``[1]`` of ones) -- everything an agent learns comes through its previous action and reward.

Randomness enters as pre-drawn uniforms ``u`` (one per pull): ``reward = u < means[action]``.

Shapes: ``tasks.means: [*B, k]``; ``state.t: [*B]`` (pulls taken, int64); ``obs: [*B, 1]``.
``B`` is any batch shape, typically ``[N tasks, M trials]`` (``tasks.means`` then ``[N, M, k]``,
or use :meth:`BernoulliBandits.expand_trials` to give each of ``M`` trials of a task the same
means).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..nn.core import _check_positive_int as _positive_int

__all__ = ["BanditTask", "BanditState", "BernoulliBandits", "check_int_actions", "check_probabilities"]


class BanditTask(NamedTuple):
    """A batch of bandits: the success probability of every arm."""

    means: torch.Tensor  # [*B, k] success probability of every arm, in [0, 1]


class BanditState(NamedTuple):
    """Where each trial stands: pulls taken and whether the trial is over."""

    t: torch.Tensor  # [*B] int64, pulls taken so far in this trial
    trial_done: torch.Tensor  # [*B] bool, the trial's n pulls are over


def check_int_actions(action: torch.Tensor, num_actions: int, shape: tuple[int, ...], name: str = "action") -> None:
    """Raise unless ``action`` is an integer tensor of ``shape`` with values in ``[0, num_actions)``.

    The value check reads the tensor (``.any()``), so it is skipped while ``torch.compile``
    traces; callers that build actions themselves can skip it with ``validate=False``.
    """
    if not isinstance(action, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(action).__name__}")
    if action.dtype.is_floating_point or action.dtype.is_complex or action.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (arm / action index), got {action.dtype}")
    if tuple(action.shape) != tuple(shape):
        raise ValueError(f"{name} expected shape {tuple(shape)}, got {tuple(action.shape)}")
    if not torch.compiler.is_compiling() and bool(((action < 0) | (action >= num_actions)).any()):
        raise ValueError(
            f"{name} must lie in [0, {num_actions}), got values from {int(action.min())} to {int(action.max())}"
        )


def check_probabilities(p: torch.Tensor, name: str) -> None:
    """Raise unless ``p`` is a floating tensor with every entry in ``[0, 1]`` (no NaN)."""
    if not isinstance(p, torch.Tensor) or not p.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point Tensor of probabilities, got "
                        f"{type(p).__name__ if not isinstance(p, torch.Tensor) else p.dtype}")
    if not torch.compiler.is_compiling() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got values from {float(p.min())} to {float(p.max())}")


class BernoulliBandits:
    """The task family: ``k`` Bernoulli arms, trials of ``n`` pulls. Holds only constants.

    Args:
        num_arms: ``k >= 2``.
        num_pulls: ``n >= 1``, the length of a trial.
    """

    obs_dim = 1

    def __init__(self, num_arms: int = 5, num_pulls: int = 10):
        self.num_arms = _positive_int(num_arms, "num_arms (k)", minimum=2)
        self.num_pulls = _positive_int(num_pulls, "num_pulls (n)", minimum=1)

    @property
    def num_actions(self) -> int:
        return self.num_arms

    @property
    def trial_length(self) -> int:
        """Steps in one trial: ``n`` pulls."""
        return self.num_pulls

    @property
    def episode_length(self) -> int:
        """Every pull is its own one-step episode."""
        return 1

    def sample_tasks(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> BanditTask:
        """``num_tasks`` bandits with arm means uniform in [0, 1] -> ``BanditTask(means [n, k])``."""
        _positive_int(num_tasks, "num_tasks")
        device = generator.device if generator is not None and device is None else device
        return BanditTask(torch.rand(num_tasks, self.num_arms, generator=generator, device=device, dtype=dtype))

    def task(self, means: torch.Tensor) -> BanditTask:
        """A task from given arm means ``[*B, k]`` (checked to be probabilities)."""
        check_probabilities(means, "means")
        if means.ndim == 0 or means.shape[-1] != self.num_arms:
            raise ValueError(f"means expected shape [..., {self.num_arms}] (k arms), got {tuple(means.shape)}")
        return BanditTask(means)

    @staticmethod
    def expand_trials(tasks: BanditTask, num_trials: int) -> BanditTask:
        """The same bandit for ``num_trials`` trials: ``means [*N, k] -> [*N, M, k]``."""
        _positive_int(num_trials, "num_trials")
        m = tasks.means
        return BanditTask(m.unsqueeze(-2).expand(*m.shape[:-1], num_trials, m.shape[-1]))

    def sample_noise(
        self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Uniforms for a whole trial: ``[n, *batch_shape]`` (time first)."""
        device = generator.device if generator is not None and device is None else device
        return torch.rand(self.num_pulls, *batch_shape, generator=generator, device=device, dtype=dtype)

    def _check_tasks(self, tasks: BanditTask) -> torch.Tensor:
        means = tasks.means
        if not isinstance(means, torch.Tensor) or means.ndim == 0 or means.shape[-1] != self.num_arms:
            got = tuple(means.shape) if isinstance(means, torch.Tensor) else type(means).__name__
            raise ValueError(f"tasks.means expected shape [*B, {self.num_arms}] (k arms), got {got}")
        return means

    def reset(self, tasks: BanditTask) -> tuple[BanditState, torch.Tensor]:
        """Start a trial for every entry of ``tasks``. Returns ``(state, obs [*B, 1])``."""
        means = self._check_tasks(tasks)
        shape = means.shape[:-1]
        t = torch.zeros(shape, dtype=torch.int64, device=means.device)
        obs = torch.ones(*shape, 1, dtype=means.dtype, device=means.device)
        return BanditState(t, torch.zeros(shape, dtype=torch.bool, device=means.device)), obs

    def step(
        self, state: BanditState, action: torch.Tensor, tasks: BanditTask, u: torch.Tensor, validate: bool = True
    ) -> tuple[BanditState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pull ``action [*B]`` (int in ``[0, k)``) with uniforms ``u [*B]``.

        Returns ``(state, obs [*B, 1], reward [*B] float, done [*B] bool)``; ``done`` (end of
        the one-pull episode) is always True. Pulls after the trial's ``n``-th pay 0 and the
        state stays put (``trial_done`` is sticky). ``validate=False`` skips the action-range check.
        """
        means = self._check_tasks(tasks)
        shape = tuple(state.t.shape)
        if tuple(means.shape[:-1]) != shape:
            raise ValueError(f"tasks.means expected shape {(*shape, self.num_arms)} to match the state, got {tuple(means.shape)}")
        if validate:
            check_int_actions(action, self.num_arms, shape)
        elif action.shape != shape:
            raise ValueError(f"action expected shape {shape}, got {tuple(action.shape)}")
        if u.shape != shape:
            raise ValueError(f"u expected shape {shape} (one uniform per pull), got {tuple(u.shape)}")
        p = torch.gather(means, -1, action.long().unsqueeze(-1)).squeeze(-1)
        active = ~state.trial_done
        reward = ((u < p) & active).to(means.dtype)
        t = torch.where(active, state.t + 1, state.t)
        trial_done = state.trial_done | (t >= self.num_pulls)
        obs = torch.ones(*shape, 1, dtype=means.dtype, device=means.device)
        return BanditState(t, trial_done), obs, reward, torch.ones(shape, dtype=torch.bool, device=means.device)
