"""Sine-wave regression task family (Finn et al. 2017, section 5.1) as pure tensor functions.

A task is a sine wave ``y = amplitude * sin(x - phase)`` with the amplitude uniform in
``[0.1, 5.0]`` and the phase uniform in ``[0, pi]``; inputs are uniform in ``[-5, 5]``. A
K-shot problem gives the learner K ``(x, y)`` pairs of a task (the support set) and scores it on
other points of the same task (the query set).

The family follows :class:`envs.SupervisedTaskFamily` (``sample_tasks`` and ``sample_batch``):
a supervised task has no state, no actions and no steps, so it has none of ``TaskFamily``'s
``reset`` / ``step``; its samples are labelled points instead of episodes.

Everything is generated in code from an explicit ``torch.Generator`` on the generator's device,
so the same seed gives the same tasks and points (on one device).

Shapes: ``tasks.amplitude``, ``tasks.phase``: ``[n]``; ``batch.x``, ``batch.y``: ``[n, K, 1]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .. import checks

__all__ = ["SineTasks", "RegressionBatch", "SineRegression"]


class SineTasks(NamedTuple):
    """A batch of sine regression tasks ``y = amplitude * sin(x - phase)``."""

    amplitude: torch.Tensor  # [n]
    phase: torch.Tensor  # [n]


class RegressionBatch(NamedTuple):
    """Supervised samples of one or many tasks; leaves share their leading axes.

    ``x: [*task_dims, K, in_dim]``, ``y: [*task_dims, K, out_dim]``.
    """

    x: torch.Tensor
    y: torch.Tensor


def _check_range(bounds: tuple[float, float], name: str) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of floats, got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must satisfy low < high (finite), got {bounds!r}")
    return low, high


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "randomness is explicit here: generator must be a torch.Generator "
            f"(e.g. torch.Generator().manual_seed(0)), got {type(generator).__name__}"
        )
    return generator


class SineRegression:
    """The task family; holds only its ranges, every method is pure given its generator.

    Args:
        amplitude: range of the amplitude (uniform).
        phase: range of the phase in radians (uniform).
        x_range: range of the inputs (uniform).
    """

    in_dim = 1
    out_dim = 1

    def __init__(
        self,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ):
        self.amplitude = _check_range(amplitude, "amplitude")
        self.phase = _check_range(phase, "phase")
        self.x_range = _check_range(x_range, "x_range")

    def sample_tasks(
        self, num_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> SineTasks:
        """``num_tasks`` sine waves -> ``SineTasks(amplitude [n], phase [n])`` on the generator's device."""
        checks.positive_int(num_tasks, "num_tasks")
        generator = _check_generator(generator)
        u = torch.rand(2, num_tasks, generator=generator, device=generator.device, dtype=dtype)
        (a_lo, a_hi), (p_lo, p_hi) = self.amplitude, self.phase
        return SineTasks(amplitude=a_lo + (a_hi - a_lo) * u[0], phase=p_lo + (p_hi - p_lo) * u[1])

    @staticmethod
    def function(tasks: SineTasks, x: torch.Tensor) -> torch.Tensor:
        """The tasks' targets at ``x: [n, K, 1]`` -> ``y: [n, K, 1]`` (noise-free)."""
        checks.floating_tensor(x, "x")
        if x.ndim != 3 or x.shape[-1] != 1 or x.shape[0] != tasks.amplitude.shape[0]:
            raise ValueError(
                f"x expected shape [{tasks.amplitude.shape[0]}, K, 1] (tasks x points x 1), got {tuple(x.shape)}"
            )
        amplitude = tasks.amplitude[:, None, None]
        phase = tasks.phase[:, None, None]
        return amplitude * torch.sin(x - phase)

    def sample_inputs(self, tasks: SineTasks, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` inputs per task, uniform in ``x_range`` -> ``x: [n, k, 1]``."""
        checks.positive_int(k, "k")
        generator = _check_generator(generator)
        amplitude = tasks.amplitude
        if amplitude.device != generator.device:
            raise ValueError(f"tasks live on {amplitude.device} but the generator on {generator.device}")
        u = torch.rand(amplitude.shape[0], k, 1, generator=generator, device=generator.device, dtype=amplitude.dtype)
        low, high = self.x_range
        return low + (high - low) * u

    def sample_batch(self, tasks: SineTasks, k: int, generator: torch.Generator) -> RegressionBatch:
        """``k`` fresh ``(x, y)`` pairs per task -> ``RegressionBatch(x [n, k, 1], y [n, k, 1])``."""
        x = self.sample_inputs(tasks, k, generator)
        return RegressionBatch(x, self.function(tasks, x))

    def grid(self, tasks: SineTasks, num_points: int = 100) -> RegressionBatch:
        """Evenly spaced inputs over ``x_range`` for every task (for plots and dense evaluation)."""
        checks.positive_int(num_points, "num_points")
        amplitude = tasks.amplitude
        x = torch.linspace(*self.x_range, num_points, device=amplitude.device, dtype=amplitude.dtype)
        x = x.reshape(1, num_points, 1).expand(amplitude.shape[0], num_points, 1)
        return RegressionBatch(x, self.function(tasks, x))

    def sample(
        self,
        num_tasks: int,
        k_support: int,
        k_query: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[SineTasks, RegressionBatch, RegressionBatch]:
        """A meta-batch: ``(tasks, support [n, k_support, 1] pairs, query [n, k_query, 1] pairs)``.

        Support and query points of a task are drawn independently from the same wave.
        """
        checks.positive_int(k_support, "k_support")
        checks.positive_int(k_query, "k_query")
        tasks = self.sample_tasks(num_tasks, generator, dtype)
        support = self.sample_batch(tasks, k_support, generator)
        query = self.sample_batch(tasks, k_query, generator)
        return tasks, support, query
