"""Tests for the sine regression task family (functional_metarl.envs.sine)."""

from __future__ import annotations

import math

import pytest
import torch

from functional_metarl.envs import RegressionBatch, SineRegression, SineTasks


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ranges_shapes_and_formula():
    env = SineRegression()
    tasks, support, query = env.sample(500, 10, 7, _gen(0))
    assert tasks.amplitude.shape == tasks.phase.shape == (500,)
    assert isinstance(support, RegressionBatch)
    assert support.x.shape == support.y.shape == (500, 10, 1)
    assert query.x.shape == query.y.shape == (500, 7, 1)
    assert 0.1 <= tasks.amplitude.min() and tasks.amplitude.max() <= 5.0
    assert 0.0 <= tasks.phase.min() and tasks.phase.max() <= math.pi
    for batch in (support, query):
        assert -5.0 <= batch.x.min() and batch.x.max() <= 5.0
    # y = A sin(x - phase), written out independently per task.
    for i in (0, 17, 499):
        a, ph = tasks.amplitude[i].item(), tasks.phase[i].item()
        expected = torch.tensor([a * math.sin(x - ph) for x in support.x[i, :, 0].tolist()])
        torch.testing.assert_close(support.y[i, :, 0], expected, rtol=1e-5, atol=1e-5)
    # The ranges are covered, not just respected.
    assert tasks.amplitude.min() < 0.5 and tasks.amplitude.max() > 4.5
    assert support.x.min() < -4.5 and support.x.max() > 4.5
    # Support and query of a task are different draws of the same wave.
    assert not torch.equal(support.x[:, :7], query.x)


def test_same_seed_same_numbers_and_generator_is_required():
    env = SineRegression()
    a = env.sample(4, 5, 5, _gen(3))
    b = env.sample(4, 5, 5, _gen(3))
    c = env.sample(4, 5, 5, _gen(4))
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert not torch.equal(a[1].x, c[1].x)
    state = torch.random.get_rng_state()
    env.sample(4, 5, 5, _gen(3))
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG must not be touched"
    with pytest.raises(TypeError, match="torch.Generator"):
        env.sample(4, 5, 5, None)  # type: ignore[arg-type]


def test_dtype_device_and_grid():
    env = SineRegression()
    tasks = env.sample_tasks(3, _gen(0), dtype=torch.float64)
    assert tasks.amplitude.dtype == torch.float64 and tasks.amplitude.device == torch.device("cpu")
    batch = env.sample_batch(tasks, 4, _gen(1))
    assert batch.x.dtype == torch.float64
    grid = env.grid(tasks, 50)
    assert grid.x.shape == (3, 50, 1)
    torch.testing.assert_close(grid.x[1, :, 0], torch.linspace(-5, 5, 50, dtype=torch.float64))
    torch.testing.assert_close(grid.y, SineRegression.function(tasks, grid.x))


def test_custom_ranges():
    env = SineRegression(amplitude=(1.0, 2.0), phase=(0.0, 0.5), x_range=(0.0, 1.0))
    tasks, support, _ = env.sample(200, 3, 3, _gen(0))
    assert 1.0 <= tasks.amplitude.min() and tasks.amplitude.max() <= 2.0
    assert tasks.phase.max() <= 0.5 and support.x.min() >= 0.0 and support.x.max() <= 1.0


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(num_tasks=0, k_support=5, k_query=5), ValueError),
        (dict(num_tasks=2, k_support=0, k_query=5), ValueError),
        (dict(num_tasks=2, k_support=-3, k_query=5), ValueError),
        (dict(num_tasks=2, k_support=5, k_query=0), ValueError),
        (dict(num_tasks=2, k_support=2.5, k_query=5), TypeError),
    ],
)
def test_bad_sizes_raise(kwargs, exc):
    with pytest.raises(exc, match="must be"):
        SineRegression().sample(generator=_gen(0), **kwargs)


def test_bad_ranges_and_shapes_raise():
    with pytest.raises(ValueError, match="low < high"):
        SineRegression(amplitude=(5.0, 0.1))
    with pytest.raises(TypeError, match="pair"):
        SineRegression(phase=3.0)  # type: ignore[arg-type]
    tasks = SineTasks(torch.ones(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[2, K, 1\]"):
        SineRegression.function(tasks, torch.zeros(3, 4, 1))
