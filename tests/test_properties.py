"""Property tests (hypothesis) of the pure functions against their definitions.

Each property draws sizes, coefficients and a seed; the tensors come from a seeded
``torch.Generator`` (float64), so a failing example is reproduced by its printed arguments.
``max_examples`` stays small and there is no deadline: the whole file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from functional_metarl import optim
from functional_metarl.rl import (
    baseline_features,
    categorical_projection,
    conjugate_gradient,
    discounted_returns,
    fit_linear_baseline,
    gae,
)
from functional_metarl.tree import ravel, tree_size

FAST = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)
unit = st.floats(0.0, 1.0, allow_nan=False)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _episodes(seed: int, T: int, B: int, prefix: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards, values ``[T, B]`` and a 0/1 mask: any pattern, or 1s then 0s per column (``prefix``)."""
    g = _gen(seed)
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    if prefix:
        lengths = torch.randint(0, T + 1, (B,), generator=g)
        mask = (torch.arange(T).unsqueeze(1) < lengths).to(torch.float64)
    else:
        mask = torch.randint(0, 2, (T, B), generator=g).to(torch.float64)
    return rewards, values, mask


# ---------------------------------------------------------------------------- returns and GAE
@FAST
@given(seed=seeds, T=st.integers(1, 25), B=st.integers(1, 4), gamma=unit, prefix=st.booleans())
def test_discounted_returns_follow_their_recursion(seed, T, B, gamma, prefix):
    rewards, _, mask = _episodes(seed, T, B, prefix)
    expected = torch.zeros(T + 1, B, dtype=torch.float64)
    for t in reversed(range(T)):  # G_t = mask_t (r_t + gamma G_{t+1}), G_T = 0
        expected[t] = mask[t] * (rewards[t] + gamma * expected[t + 1])
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma), expected[:T], rtol=1e-10, atol=1e-10)


@FAST
@given(seed=seeds, T=st.integers(1, 25), B=st.integers(1, 4), gamma=unit, lam=unit, prefix=st.booleans())
def test_gae_follows_its_recursion(seed, T, B, gamma, lam, prefix):
    rewards, values, mask = _episodes(seed, T, B, prefix)
    v = torch.cat([values * mask, torch.zeros(1, B, dtype=torch.float64)])  # V_T = 0
    expected = torch.zeros(T + 1, B, dtype=torch.float64)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * v[t + 1] - v[t]
        expected[t] = mask[t] * (delta + gamma * lam * expected[t + 1])
    torch.testing.assert_close(gae(rewards, values, mask, gamma, lam), expected[:T], rtol=1e-10, atol=1e-10)


@FAST
@given(seed=seeds, T=st.integers(1, 25), B=st.integers(1, 4), gamma=unit)
def test_gae_at_lambda_one_is_return_minus_value(seed, T, B, gamma):
    """With lambda = 1 the deltas telescope: A_t = G_t - V_t on every valid step of an episode."""
    rewards, values, mask = _episodes(seed, T, B, prefix=True)
    advantages = gae(rewards, values, mask, gamma, 1.0)
    expected = (discounted_returns(rewards, mask, gamma) - values) * mask
    torch.testing.assert_close(advantages, expected, rtol=1e-9, atol=1e-9)


@FAST
@given(seed=seeds, T=st.integers(1, 25), B=st.integers(1, 4), gamma=unit)
def test_gae_at_lambda_zero_is_the_one_step_td_error(seed, T, B, gamma):
    rewards, values, mask = _episodes(seed, T, B, prefix=True)
    v = values * mask
    next_v = torch.cat([v[1:], torch.zeros(1, B, dtype=torch.float64)])
    torch.testing.assert_close(gae(rewards, values, mask, gamma, 0.0), mask * (rewards + gamma * next_v - v),
                               rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- the linear baseline
@FAST
@given(seed=seeds, T=st.integers(3, 30), B=st.integers(1, 5), d=st.integers(1, 3), prefix=st.booleans())
def test_linear_baseline_solves_the_regularised_normal_equations(seed, T, B, d, prefix):
    """The weights solve ``(X^T X + reg I) w = X^T G`` for one rung ``reg`` of the ridge ladder
    (``reg_coeff * 10^k``), X the masked features: the normal equations of the ridge fit."""
    g = _gen(seed)
    obs = torch.randn(T, B, d, generator=g, dtype=torch.float64)
    returns, _, mask = _episodes(seed + 1, T, B, prefix)
    weights = fit_linear_baseline(obs, returns, mask)
    x = baseline_features(obs, mask).reshape(-1, 2 * d + 4)
    y = (returns * mask).reshape(-1)
    xtx, xty = x.T @ x, x.T @ y
    eye = torch.eye(xtx.shape[0], dtype=torch.float64)
    residuals = [((xtx + 1e-5 * 10.0**k * eye) @ weights - xty).abs().max() for k in range(5)]
    scale = max(float(xty.abs().max()), float(xtx.abs().max()), 1.0)
    assert min(residuals) <= 1e-6 * scale, (residuals, scale)


# ---------------------------------------------------------------------------- conjugate gradient
@FAST
@given(seed=seeds, n=st.integers(1, 8), shift=st.floats(0.1, 10.0))
def test_conjugate_gradient_matches_a_direct_solve_on_spd_matrices(seed, n, shift):
    """n iterations of CG solve an n x n SPD system exactly (up to rounding)."""
    g = _gen(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = m @ m.T + shift * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=n, residual_tol=0.0)
    expected = torch.linalg.solve(a, b)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-8 * float(expected.abs().max() + 1))


# ---------------------------------------------------------------------------- C51 projection
@FAST
@given(seed=seeds, kp=st.integers(1, 12), k=st.integers(2, 21), v_min=st.floats(-20.0, 0.0),
       width=st.floats(0.5, 40.0), spread=st.floats(0.1, 3.0))
def test_categorical_projection_preserves_mass_and_respects_the_support(seed, kp, k, v_min, width, spread):
    g = _gen(seed)
    z_q = torch.linspace(v_min, v_min + width, k, dtype=torch.float64)
    # source atoms inside and beyond the support
    z_p = v_min + width * (0.5 + spread * (torch.rand(kp, generator=g, dtype=torch.float64) - 0.5))
    probs = torch.softmax(torch.randn(kp, generator=g, dtype=torch.float64), 0)
    out = categorical_projection(z_p, probs, z_q)
    assert out.shape == (k,)
    assert bool((out >= 0).all())
    torch.testing.assert_close(out.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-12)
    # the mean is that of the source atoms clipped to the support (the projection interpolates linearly)
    clipped = z_p.clamp(z_q[0], z_q[-1])
    torch.testing.assert_close(out @ z_q, probs @ clipped, rtol=1e-9, atol=1e-9)
    # mass lands only on the two atoms around each (clipped) source atom
    dz = z_q[1] - z_q[0]
    near = ((clipped.unsqueeze(0) - z_q.unsqueeze(1)).abs() < dz * (1 + 1e-9)).any(dim=1)
    assert bool((out[~near] == 0).all())


# ---------------------------------------------------------------------------- pytrees
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@FAST
@given(seed=seeds, leaf_shapes=st.dictionaries(st.text("abcxyz_.", min_size=1, max_size=6), shapes, min_size=1,
                                               max_size=5))
def test_ravel_unravel_round_trip(seed, leaf_shapes):
    g = _gen(seed)
    tree = {name: torch.randn(shape, generator=g, dtype=torch.float64) for name, shape in leaf_shapes.items()}
    flat, unravel = ravel(tree)
    assert flat.ndim == 1 and flat.shape[0] == tree_size(tree)
    back = unravel(flat)
    assert back.keys() == tree.keys()
    for name in tree:
        assert back[name].shape == tree[name].shape and torch.equal(back[name], tree[name])
    other = torch.randn(flat.shape[0], generator=g, dtype=torch.float64)
    assert torch.equal(ravel(unravel(other))[0], other)


# ---------------------------------------------------------------------------- optimizers vs torch.optim
def _quadratic_problem(seed: int, sizes: list[int]) -> tuple[dict[str, torch.Tensor], Callable[[dict[str, torch.Tensor]], torch.Tensor]]:
    g = _gen(seed)
    params = {f"p{i}": torch.randn(n, generator=g, dtype=torch.float64) for i, n in enumerate(sizes)}
    targets = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}
    scales = {k: torch.rand(v.shape, generator=g, dtype=torch.float64) + 0.1 for k, v in params.items()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum((scales[k] * (p[k] - targets[k]) ** 2).sum() for k in p)

    return params, loss


def _compare_with_torch(ours, theirs_cls, theirs_kwargs, seed, sizes, steps):
    params, loss = _quadratic_problem(seed, sizes)
    state = ours.init(params)
    p = dict(params)
    for _ in range(steps):
        grads = torch.func.grad(loss)(p)
        updates, state = ours.update(grads, state, p)
        p = optim.apply_updates(p, updates)
    leaves = [v.clone().requires_grad_(True) for v in params.values()]
    opt = theirs_cls(leaves, **theirs_kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss(dict(zip(params, leaves))).backward()
        opt.step()
    for (name, mine), theirs in zip(p.items(), leaves):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-9, atol=1e-11, msg=name)


@FAST
@given(seed=seeds, sizes=st.lists(st.integers(1, 5), min_size=1, max_size=3), lr=st.floats(1e-3, 0.4),
       steps=st.integers(1, 8))
def test_sgd_matches_torch_optim(seed, sizes, lr, steps):
    _compare_with_torch(optim.sgd(lr), torch.optim.SGD, {"lr": lr}, seed, sizes, steps)


@FAST
@given(seed=seeds, sizes=st.lists(st.integers(1, 5), min_size=1, max_size=3), lr=st.floats(1e-4, 0.3),
       b1=st.floats(0.0, 0.99), b2=st.floats(0.5, 0.9999), eps=st.floats(1e-10, 1e-3), steps=st.integers(1, 8))
def test_adam_matches_torch_optim(seed, sizes, lr, b1, b2, eps, steps):
    _compare_with_torch(optim.adam(lr, b1, b2, eps), torch.optim.Adam, {"lr": lr, "betas": (b1, b2), "eps": eps},
                        seed, sizes, steps)
