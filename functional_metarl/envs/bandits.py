"""Bernoulli multi-armed bandits (Duan et al. 2016, RL², section 3.1) as pure tensor functions.

A task is ``k`` arm means drawn uniformly from ``[0, 1]``. A *trial* is ``n`` pulls of the same
bandit; each pull is a one-step episode (so ``done`` is True after every pull) and pays 1 with
the pulled arm's mean probability, else 0. The observation carries no information (a constant
``[1]`` of ones) -- everything an agent learns comes through its previous action and reward.

The family follows :class:`envs.TaskFamily`. Randomness enters as pre-drawn uniforms (the
noise, a Tensor with one uniform per pull): ``reward = u < means[action]``.

Shapes: ``tasks.means: [*B, k]``; ``state.t: [*B]`` (pulls taken, int64); ``obs: [*B, 1]``.
``B`` is any batch shape, typically ``[N tasks, M trials]`` (``tasks.means`` then ``[N, M, k]``;
``envs.repeat_tasks(tasks, M)`` gives each of ``M`` trials of a task the same means).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import checks

__all__ = ["BanditTask", "BanditState", "BernoulliBandits", "check_int_actions", "check_probabilities"]


class BanditTask(NamedTuple):
    """A batch of bandits: the success probability of every arm."""

    means: torch.Tensor  # [*B, k] success probability of every arm, in [0, 1]


class BanditState(NamedTuple):
    """Where each trial stands: pulls taken and whether the trial is over."""

    t: torch.Tensor  # [*B] int64, pulls taken so far in this trial
    trial_done: torch.Tensor  # [*B] bool, the trial's n pulls are over


def check_int_actions(action: torch.Tensor, num_actions: int, shape: tuple[int, ...], name: str = "action") -> None:
    """Raise unless ``action`` is an integer tensor of exactly ``shape`` with values in ``[0, num_actions)``.

    The range check reads the values, so it runs only on CPU tensors outside ``torch.compile``:
    on an accelerator it would synchronise every step (an out-of-range index then trips the
    device's own gather bounds check instead).
    """
    checks.integer_tensor(action, name, shape=tuple(shape))
    if action.device.type == "cpu" and not torch.compiler.is_compiling():
        checks.index_tensor(action, name, num_actions)


def check_probabilities(p: torch.Tensor, name: str) -> None:
    """Raise unless ``p`` is a floating tensor with every entry in ``[0, 1]`` (no NaN). Reads ``p``
    on the host: for data entering the package (a task built from given tables)."""
    checks.floating_tensor(p, name)
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got values from {float(p.min())} to {float(p.max())}")


class BernoulliBandits:
    """The task family: ``k`` Bernoulli arms, trials of ``n`` pulls. Holds only constants.

    Args:
        num_arms: ``k >= 2``.
        num_pulls: ``n >= 1``, the length of a trial.
    """

    obs_dim = 1
    obs_shape = (1,)
    discrete_actions = True

    def __init__(self, num_arms: int = 5, num_pulls: int = 10):
        self.num_arms = checks.int_in_range(num_arms, "num_arms", low=2)
        self.num_pulls = checks.positive_int(num_pulls, "num_pulls")

    @property
    def num_actions(self) -> int:
        return self.num_arms

    @property
    def action_size(self) -> int:
        """The number of arms."""
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
        checks.positive_int(num_tasks, "num_tasks")
        device = generator.device if generator is not None and device is None else device
        return BanditTask(torch.rand(num_tasks, self.num_arms, generator=generator, device=device, dtype=dtype))

    def task(self, means: torch.Tensor) -> BanditTask:
        """A task from given arm means ``[*B, k]`` (checked to be probabilities)."""
        check_probabilities(means, "means")
        if means.ndim == 0 or means.shape[-1] != self.num_arms:
            raise ValueError(f"means expected shape [..., {self.num_arms}] (k arms), got {tuple(means.shape)}")
        return BanditTask(means)

    def sample_noise(
        self, num_steps: int, batch_shape: tuple[int, ...], generator: torch.Generator | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Uniforms for ``num_steps`` pulls (a trial: ``trial_length``) of a batch: ``[T, *batch_shape]``."""
        checks.positive_int(num_steps, "num_steps")
        device = generator.device if generator is not None and device is None else device
        return torch.rand(num_steps, *batch_shape, generator=generator, device=device, dtype=dtype)

    def _check_tasks(self, tasks: BanditTask) -> torch.Tensor:
        means = checks.floating_tensor(tasks.means, "tasks.means")
        if means.ndim == 0 or means.shape[-1] != self.num_arms:
            raise ValueError(f"tasks.means expected shape [*B, {self.num_arms}] (k arms), got {tuple(means.shape)}")
        return means

    def reset(self, tasks: BanditTask, noise: torch.Tensor | None = None) -> tuple[BanditState, torch.Tensor]:
        """Start a trial for every entry of ``tasks`` (``noise`` is not used). Returns ``(state, obs [*B, 1])``."""
        means = self._check_tasks(tasks)
        shape = means.shape[:-1]
        t = torch.zeros(shape, dtype=torch.int64, device=means.device)
        obs = torch.ones(*shape, 1, dtype=means.dtype, device=means.device)
        return BanditState(t, torch.zeros(shape, dtype=torch.bool, device=means.device)), obs

    def step(
        self, state: BanditState, action: torch.Tensor, tasks: BanditTask, noise: torch.Tensor
    ) -> tuple[BanditState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pull ``action [*B]`` (int in ``[0, k)``) with uniforms ``noise [*B]``.

        Returns ``(state, obs [*B, 1], reward [*B] float, done [*B] bool)``; ``done`` (end of
        the one-pull episode) is always True. Pulls after the trial's ``n``-th pay 0 and the
        state stays put (``trial_done`` is sticky).
        """
        means = self._check_tasks(tasks)
        shape = tuple(state.t.shape)
        if tuple(means.shape[:-1]) != shape:
            raise ValueError(f"tasks.means expected shape {(*shape, self.num_arms)} to match the state, got {tuple(means.shape)}")
        check_int_actions(action, self.num_arms, shape)
        checks.tensor(noise, "noise", shape=shape)
        p = torch.gather(means, -1, action.long().unsqueeze(-1)).squeeze(-1)
        active = ~state.trial_done
        reward = ((noise < p) & active).to(means.dtype)
        t = torch.where(active, state.t + 1, state.t)
        trial_done = state.trial_done | (t >= self.num_pulls)
        obs = torch.ones(*shape, 1, dtype=means.dtype, device=means.device)
        return BanditState(t, trial_done), obs, reward, torch.ones(shape, dtype=torch.bool, device=means.device)
