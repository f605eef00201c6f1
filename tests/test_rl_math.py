"""Tests for functional_metarl.rl: returns, GAE, linear baseline, distributions, losses, TRPO.

References are independent: plain Python loops, numpy least squares, torch.distributions,
torch.autograd.functional.hessian, closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch.func import grad, vmap

from functional_metarl import nn as fnn
from functional_metarl.rl import (
    LineSearchResult,
    backtracking_line_search,
    baseline_features,
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    conjugate_gradient,
    discounted_returns,
    fit_linear_baseline,
    gae,
    gauss_newton_operator,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    hessian_vector_product,
    linear_baseline_values,
    masked_episode_mean,
    normalize_advantages,
    policy_gradient_loss,
    ppo_clip_loss,
    predict_linear_baseline,
    surrogate_loss,
    trpo_step_direction,
)
from functional_metarl.tree import ravel

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 0, dtype=DT) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _mask_from_lengths(T: int, lengths) -> torch.Tensor:
    mask = torch.zeros(T, len(lengths), dtype=DT)
    for b, L in enumerate(lengths):
        mask[:L, b] = 1.0
    return mask


# ----------------------------------------------------------------------------------------------
# returns / GAE
# ----------------------------------------------------------------------------------------------

# T = 7; episode lengths: full, early end, length 1, length 0, mid
T_RET = 7
LENGTHS = [7, 3, 1, 0, 5]


def _ref_returns_1d(r, L, gamma):
    T = len(r)
    out = [0.0] * T
    for t in range(L):
        s = 0.0
        for k in range(t, L):
            s += gamma ** (k - t) * r[k]
        out[t] = s
    return out


def _ref_gae_1d(r, v, L, gamma, lam):
    T = len(r)
    deltas = []
    for k in range(L):
        v_next = v[k + 1] if k + 1 < L else 0.0
        deltas.append(r[k] + gamma * v_next - v[k])
    out = [0.0] * T
    for t in range(L):
        s = 0.0
        for k in range(t, L):
            s += (gamma * lam) ** (k - t) * deltas[k]
        out[t] = s
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_discounted_returns_batched_matches_double_loop(gamma):
    r = _randn(T_RET, len(LENGTHS), seed=1)
    # garbage rewards on padding must not leak in
    mask = _mask_from_lengths(T_RET, LENGTHS)
    out = discounted_returns(r, mask, gamma)
    assert out.shape == r.shape
    for b, L in enumerate(LENGTHS):
        ref = _ref_returns_1d(r[:, b].tolist(), L, gamma)
        torch.testing.assert_close(out[:, b], torch.tensor(ref, dtype=DT))


def test_discounted_returns_1d_and_bool_mask():
    r = _randn(6, seed=2)
    for L in (6, 4, 0):
        mask = torch.arange(6) < L  # bool mask
        out = discounted_returns(r, mask, 0.9)
        assert out.shape == (6,)
        torch.testing.assert_close(out, torch.tensor(_ref_returns_1d(r.tolist(), L, 0.9), dtype=DT))


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7), (0.0, 0.5)])
def test_gae_batched_matches_double_loop(gamma, lam):
    r = _randn(T_RET, len(LENGTHS), seed=3)
    v = _randn(T_RET, len(LENGTHS), seed=4)  # non-zero values also on padding
    mask = _mask_from_lengths(T_RET, LENGTHS)
    out = gae(r, v, mask, gamma, lam)
    assert out.shape == r.shape
    for b, L in enumerate(LENGTHS):
        ref = _ref_gae_1d(r[:, b].tolist(), v[:, b].tolist(), L, gamma, lam)
        torch.testing.assert_close(out[:, b], torch.tensor(ref, dtype=DT))


def test_gae_1d_matches_double_loop():
    r = _randn(8, seed=5)
    v = _randn(8, seed=6)
    for L in (8, 5, 1):
        mask = (torch.arange(8) < L).to(DT)
        out = gae(r, v, mask, 0.95, 0.9)
        torch.testing.assert_close(out, torch.tensor(_ref_gae_1d(r.tolist(), v.tolist(), L, 0.95, 0.9), dtype=DT))


def test_gae_lambda_one_relations():
    r = _randn(T_RET, len(LENGTHS), seed=7)
    v = _randn(T_RET, len(LENGTHS), seed=8)
    mask = _mask_from_lengths(T_RET, LENGTHS)
    ret = discounted_returns(r, mask, 0.9)
    # zero values: advantages equal the discounted returns
    torch.testing.assert_close(gae(r, torch.zeros_like(r), mask, 0.9, 1.0), ret)
    # any values: lambda = 1 telescopes to G_t - V_t on valid steps
    torch.testing.assert_close(gae(r, v, mask, 0.9, 1.0), (ret - v) * mask)
    # lambda = 0: one-step TD error on valid steps
    vm = v * mask
    v_next = torch.cat([vm[1:], torch.zeros_like(vm[:1])])
    torch.testing.assert_close(gae(r, v, mask, 0.9, 0.0), (r + 0.9 * v_next - v) * mask)


def test_returns_gae_validation():
    r = torch.zeros(5, 3)
    with pytest.raises(ValueError):
        discounted_returns(r, torch.ones(5, 2), 0.9)
    with pytest.raises(ValueError):
        discounted_returns(r, torch.ones(5), 0.9)
    with pytest.raises(ValueError):
        gae(r, torch.zeros(5, 2), torch.ones(5, 3), 0.9, 0.9)
    with pytest.raises(ValueError):
        gae(r, torch.zeros(5, 3), torch.ones(4, 3), 0.9, 0.9)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="gamma"):
            discounted_returns(r, torch.ones(5, 3), bad)
        with pytest.raises(ValueError, match="gamma"):
            gae(r, r, torch.ones(5, 3), bad, 0.9)
        with pytest.raises(ValueError, match="lambda"):
            gae(r, r, torch.ones(5, 3), 0.9, bad)


def test_returns_differentiable_in_rewards():
    # dG_0/dr_k = gamma^k for k < L (closed form)
    r = _randn(6, seed=9)
    mask = (torch.arange(6) < 4).to(DT)
    g = grad(lambda rr: discounted_returns(rr, mask, 0.8)[0])(r)
    torch.testing.assert_close(g, torch.tensor([0.8**k if k < 4 else 0.0 for k in range(6)], dtype=DT))


# ----------------------------------------------------------------------------------------------
# linear baseline
# ----------------------------------------------------------------------------------------------


def _ref_features(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    T, B, d = obs.shape
    out = np.zeros((T, B, 2 * d + 4))
    for t in range(T):
        for b in range(B):
            s = t / 100.0
            f = list(obs[t, b]) + list(obs[t, b] ** 2) + [s, s**2, s**3, 1.0]
            out[t, b] = np.array(f) * mask[t, b]
    return out


def _ref_ridge(obs, returns, mask, reg):
    obs, returns, mask = (np.asarray(x, dtype=np.float64) for x in (obs, returns, mask))
    F = _ref_features(obs, np.ones_like(mask)).reshape(-1, 2 * obs.shape[-1] + 4)
    G = returns.reshape(-1)
    sw = np.sqrt(mask.reshape(-1))
    n = F.shape[1]
    A = np.concatenate([sw[:, None] * F, math.sqrt(reg) * np.eye(n)])
    y = np.concatenate([sw * G, np.zeros(n)])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def _baseline_data(seed, T=20, B=4, d=3):
    g = _gen(seed)
    obs = torch.randn(T, B, d, generator=g, dtype=DT)
    returns = torch.randn(T, B, generator=g, dtype=DT) + obs.sum(-1)
    lengths = [T, T - 5, 12, T - 1][:B]
    mask = _mask_from_lengths(T, lengths)
    return obs, returns, mask


def test_baseline_features_match_reference():
    obs, _, mask = _baseline_data(0, T=6, B=3, d=2)
    feats = baseline_features(obs, mask)
    assert feats.shape == (6, 3, 8)
    torch.testing.assert_close(feats, torch.from_numpy(_ref_features(obs.numpy(), mask.numpy())))
    with pytest.raises(ValueError):
        baseline_features(obs[..., 0], mask)
    with pytest.raises(ValueError):
        baseline_features(obs, mask[:, :2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_linear_baseline_matches_numpy_ridge(seed):
    obs, returns, mask = _baseline_data(seed)
    # precondition: the first rung is acceptable (well-conditioned data)
    F = _ref_features(obs.numpy(), mask.numpy()).reshape(-1, 10)
    assert np.linalg.cond(F.T @ F + 1e-5 * np.eye(10)) < 0.1 / np.finfo(np.float64).eps
    w = fit_linear_baseline(obs, returns, mask, reg_coeff=1e-5)
    ref = _ref_ridge(obs.numpy(), returns.numpy(), mask.numpy(), 1e-5)
    assert w.shape == (10,)
    torch.testing.assert_close(w, torch.from_numpy(ref), rtol=1e-6, atol=1e-7)
    # predictions: features @ w, zero on padding
    pred = predict_linear_baseline(w, obs, mask)
    ref_pred = _ref_features(obs.numpy(), mask.numpy()) @ ref
    torch.testing.assert_close(pred, torch.from_numpy(ref_pred), rtol=1e-6, atol=1e-7)
    assert torch.all(pred[mask == 0] == 0)
    torch.testing.assert_close(linear_baseline_values(obs, returns, mask), pred)


def test_fit_linear_baseline_ignores_padded_steps():
    obs, returns, mask = _baseline_data(3)
    w = fit_linear_baseline(obs, returns, mask)
    pad = mask == 0
    assert pad.any()
    obs2 = obs.clone()
    returns2 = returns.clone()
    obs2[pad] = 1e3 * torch.randn(int(pad.sum()), obs.shape[-1], generator=_gen(4), dtype=DT)
    returns2[pad] = -1e4
    w2 = fit_linear_baseline(obs2, returns2, mask)
    torch.testing.assert_close(w2, w, rtol=1e-10, atol=1e-10)
    # sanity: changing a *valid* step does change the fit
    returns3 = returns.clone()
    returns3[0, 0] += 10.0
    assert not torch.allclose(fit_linear_baseline(obs, returns3, mask), w)


def test_fit_linear_baseline_ladder_picks_first_acceptable_rung():
    obs, returns, mask = _baseline_data(5)
    F = _ref_features(obs.numpy(), mask.numpy()).reshape(-1, 10)
    conds = [np.linalg.cond(F.T @ F + 1e-5 * 10.0**k * np.eye(10)) for k in range(5)]
    assert all(a > b for a, b in zip(conds, conds[1:]))
    # a max_condition between rung 1 and rung 2 -> rung 2 (reg = 1e-3) is chosen
    max_cond = math.sqrt(conds[1] * conds[2])
    w = fit_linear_baseline(obs, returns, mask, reg_coeff=1e-5, max_condition=max_cond)
    ref = _ref_ridge(obs.numpy(), returns.numpy(), mask.numpy(), 1e-3)
    torch.testing.assert_close(w, torch.from_numpy(ref), rtol=1e-6, atol=1e-7)
    assert not torch.allclose(w, torch.from_numpy(_ref_ridge(obs.numpy(), returns.numpy(), mask.numpy(), 1e-5)))
    # nothing acceptable -> the last rung (reg = 1e-5 * 10^4 = 0.1)
    w_last = fit_linear_baseline(obs, returns, mask, reg_coeff=1e-5, max_condition=1.0)
    ref_last = _ref_ridge(obs.numpy(), returns.numpy(), mask.numpy(), 1e-1)
    torch.testing.assert_close(w_last, torch.from_numpy(ref_last), rtol=1e-6, atol=1e-7)


def test_fit_linear_baseline_under_vmap_over_tasks():
    data = [_baseline_data(10 + i) for i in range(3)]
    obs = torch.stack([d[0] for d in data])
    returns = torch.stack([d[1] for d in data])
    mask = torch.stack([d[2] for d in data])
    w = vmap(fit_linear_baseline)(obs, returns, mask)
    assert w.shape == (3, 10)
    for i, (o, r, m) in enumerate(data):
        torch.testing.assert_close(w[i], torch.from_numpy(_ref_ridge(o.numpy(), r.numpy(), m.numpy(), 1e-5)),
                                   rtol=1e-6, atol=1e-7)
    vals = vmap(linear_baseline_values)(obs, returns, mask)
    for i, (o, r, m) in enumerate(data):
        torch.testing.assert_close(vals[i], linear_baseline_values(o, r, m))


@pytest.mark.parametrize("value", [0.0, 1.0, 5.0])
def test_fit_linear_baseline_ill_conditioned_is_finite_float64(value):
    T, B, d = 20, 4, 2
    obs = torch.full((T, B, d), value, dtype=DT)
    returns = _randn(T, B, seed=20)
    mask = _mask_from_lengths(T, [20, 15, 20, 7])
    w = fit_linear_baseline(obs, returns, mask)
    assert torch.isfinite(w).all()
    pred = predict_linear_baseline(w, obs, mask)
    assert torch.isfinite(pred).all()
    if value == 0.0:
        # zero obs columns carry no signal: ridge drives their weights to exactly 0
        assert torch.all(w[: 2 * d] == 0)


def test_fit_linear_baseline_constant_obs_dim_float32_does_not_crash():
    g = _gen(0)
    obs = torch.randn(100, 20, 2, generator=g)
    obs[..., 1] = 1.0
    returns = torch.randn(100, 20, generator=g)
    mask = torch.ones(100, 20)
    w = fit_linear_baseline(obs, returns, mask)
    assert torch.isfinite(w).all()


def test_fit_linear_baseline_validation():
    obs, returns, mask = _baseline_data(0)
    with pytest.raises(ValueError):
        fit_linear_baseline(obs, returns[:, :2], mask)
    with pytest.raises(ValueError):
        fit_linear_baseline(obs, returns, mask, reg_coeff=0.0)
    with pytest.raises(ValueError):
        fit_linear_baseline(obs, returns, mask, reg_coeff=-1.0)


# ----------------------------------------------------------------------------------------------
# distributions
# ----------------------------------------------------------------------------------------------


def test_gaussian_functions_match_torch_distributions():
    mean, log_std = _randn(4, 5, 3, seed=30), 0.5 * _randn(4, 5, 3, seed=31)
    mean_q, log_std_q = _randn(4, 5, 3, seed=32), 0.5 * _randn(4, 5, 3, seed=33)
    x = _randn(4, 5, 3, seed=34)
    p = D.Independent(D.Normal(mean, log_std.exp()), 1)
    q = D.Independent(D.Normal(mean_q, log_std_q.exp()), 1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, x), p.log_prob(x))
    torch.testing.assert_close(gaussian_entropy(log_std), p.entropy())
    torch.testing.assert_close(gaussian_kl(mean, log_std, mean_q, log_std_q), D.kl_divergence(p, q))
    assert gaussian_kl(mean, log_std, mean, log_std).abs().max() < 1e-12
    # pure functions work under vmap
    torch.testing.assert_close(vmap(gaussian_log_prob)(mean, log_std, x), p.log_prob(x))


def test_categorical_functions_match_torch_distributions():
    logits, logits_q = 2 * _randn(6, 4, 5, seed=40), 2 * _randn(6, 4, 5, seed=41)
    action = torch.randint(0, 5, (6, 4), generator=_gen(42))
    p = D.Categorical(logits=logits)
    q = D.Categorical(logits=logits_q)
    torch.testing.assert_close(categorical_log_prob(logits, action), p.log_prob(action))
    # float-valued actions are refused, not truncated to indices (1.7 would silently become 1)
    with pytest.raises(TypeError, match="action must be an integer"):
        categorical_log_prob(logits, action.to(DT))
    torch.testing.assert_close(categorical_entropy(logits), p.entropy())
    torch.testing.assert_close(categorical_kl(logits, logits_q), D.kl_divergence(p, q))
    # invariance to a logit shift
    torch.testing.assert_close(categorical_kl(logits + 3.0, logits_q - 1.0), D.kl_divergence(p, q))
    torch.testing.assert_close(vmap(categorical_entropy)(logits), p.entropy())


_MASKED_LOGITS = [[0.0, float("-inf"), 1.0]]


def test_categorical_entropy_with_masked_action_matches_torch():
    logits = torch.tensor(_MASKED_LOGITS, dtype=DT)
    torch.testing.assert_close(categorical_entropy(logits), D.Categorical(logits=logits).entropy())


def test_categorical_kl_with_masked_action_matches_torch():
    logits = torch.tensor(_MASKED_LOGITS, dtype=DT)
    other = torch.tensor([[0.5, 0.2, -0.3]], dtype=DT)
    ref = D.kl_divergence(D.Categorical(logits=logits), D.Categorical(logits=other))
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(categorical_kl(logits, other), ref)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------


def _ref_masked_episode_mean(x, mask):
    T, B = x.shape
    per_ep = []
    for b in range(B):
        tot, n = 0.0, 0.0
        for t in range(T):
            tot += float(x[t, b]) * float(mask[t, b])
            n += float(mask[t, b])
        per_ep.append(tot / max(n, 1.0))
    return sum(per_ep) / B


LOSS_LENGTHS = [6, 2, 4, 6]


def test_masked_episode_mean_matches_loop():
    x = _randn(6, 4, seed=50)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    torch.testing.assert_close(masked_episode_mean(x, mask), torch.tensor(_ref_masked_episode_mean(x, mask), dtype=DT))
    with pytest.raises(ValueError):
        masked_episode_mean(x, mask[:, :3])


def test_policy_gradient_loss_value_and_gradient():
    lp = _randn(6, 4, seed=51)
    adv = _randn(6, 4, seed=52)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    loss = policy_gradient_loss(lp, adv, mask)
    torch.testing.assert_close(loss, torch.tensor(-_ref_masked_episode_mean(lp * adv, mask), dtype=DT))
    g = grad(policy_gradient_loss)(lp, adv, mask)
    lengths = torch.tensor(LOSS_LENGTHS, dtype=DT)
    torch.testing.assert_close(g, -adv * mask / lengths / 4)
    # advantages are constants
    ga = grad(lambda a: policy_gradient_loss(lp, a, mask))(adv)
    assert torch.all(ga == 0)


def test_surrogate_loss_at_equal_log_probs():
    lp = _randn(6, 4, seed=53)
    adv = _randn(6, 4, seed=54)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    loss = surrogate_loss(lp, lp.clone(), adv, mask)
    torch.testing.assert_close(loss, torch.tensor(-_ref_masked_episode_mean(adv, mask), dtype=DT))
    g_sur = grad(lambda l: surrogate_loss(l, lp, adv, mask))(lp)
    g_pg = grad(lambda l: policy_gradient_loss(l, adv, mask))(lp)
    torch.testing.assert_close(g_sur, g_pg)
    # old_log_prob is a constant
    g_old = grad(lambda o: surrogate_loss(lp, o, adv, mask))(lp)
    assert torch.all(g_old == 0)
    # away from the old policy: value is -mean(ratio * A)
    lp2 = lp + 0.3 * _randn(6, 4, seed=55)
    ratio = torch.exp(lp2 - lp)
    torch.testing.assert_close(surrogate_loss(lp2, lp, adv, mask),
                               torch.tensor(-_ref_masked_episode_mean(ratio * adv, mask), dtype=DT))


def _ref_ppo_objective(lp, old, adv, eps):
    out = torch.zeros_like(lp)
    T, B = lp.shape
    for t in range(T):
        for b in range(B):
            r = math.exp(float(lp[t, b]) - float(old[t, b]))
            a = float(adv[t, b])
            if a >= 0:
                out[t, b] = min(r, 1 + eps) * a
            else:
                out[t, b] = max(r, 1 - eps) * a
    return out


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_ppo_clip_loss_matches_reference(eps):
    old = _randn(6, 4, seed=56)
    lp = old + 0.5 * _randn(6, 4, seed=57)  # ratios well outside [1-eps, 1+eps] in places
    adv = _randn(6, 4, seed=58)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    ratio = torch.exp(lp - old)
    valid = mask.bool()
    # all four clipping branches occur on valid steps
    assert ((ratio > 1 + eps) & (adv > 0) & valid).any()
    assert ((ratio < 1 - eps) & (adv < 0) & valid).any()
    assert ((ratio > 1 + eps) & (adv < 0) & valid).any()
    assert ((ratio < 1 - eps) & (adv > 0) & valid).any()
    obj = _ref_ppo_objective(lp, old, adv, eps)
    loss = ppo_clip_loss(lp, old, adv, mask, clip_eps=eps)
    torch.testing.assert_close(loss, torch.tensor(-_ref_masked_episode_mean(obj, mask), dtype=DT))
    # gradient: zero where the clipped branch is active, -ratio*A/(L_b*B) elsewhere
    g = grad(lambda l: ppo_clip_loss(l, old, adv, mask, clip_eps=eps))(lp)
    clipped = ((adv >= 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    lengths = torch.tensor(LOSS_LENGTHS, dtype=DT)
    expected = torch.where(clipped, torch.zeros_like(lp), -ratio * adv * mask / lengths / 4)
    torch.testing.assert_close(g, expected)
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, old, adv, mask, clip_eps=0.0)


def test_ppo_equals_surrogate_inside_trust_region():
    old = _randn(6, 4, seed=59)
    lp = old + 0.01 * _randn(6, 4, seed=60)
    adv = _randn(6, 4, seed=61)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    torch.testing.assert_close(ppo_clip_loss(lp, old, adv, mask, 0.2), surrogate_loss(lp, old, adv, mask))


def test_normalize_advantages():
    adv = 3.0 + 2.0 * _randn(6, 4, seed=62)
    mask = _mask_from_lengths(6, LOSS_LENGTHS)
    out = normalize_advantages(adv, mask)
    valid = out[mask.bool()]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0, dtype=DT), atol=1e-12, rtol=0)
    torch.testing.assert_close(valid.std(unbiased=False), torch.tensor(1.0, dtype=DT), atol=1e-6, rtol=0)
    assert torch.all(out[~mask.bool()] == 0)
    # independent reference with numpy on the valid entries only
    a = adv[mask.bool()].numpy()
    ref = (a - a.mean()) / np.sqrt(a.var() + 1e-8)
    torch.testing.assert_close(valid, torch.from_numpy(ref))


# ----------------------------------------------------------------------------------------------
# TRPO
# ----------------------------------------------------------------------------------------------


def _spd(n, seed, cond=10.0):
    g = _gen(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    eig = torch.logspace(0, math.log10(cond), n, dtype=DT)
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("n", [5, 11, 20])
def test_conjugate_gradient_solves_spd(n):
    A = _spd(n, seed=n)
    b = _randn(n, seed=100 + n)
    x = conjugate_gradient(lambda v: A @ v, b, iters=n, residual_tol=0.0)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    # with the default tolerance and many extra iterations: no NaN, still solved
    x2 = conjugate_gradient(lambda v: A @ v, b, iters=3 * n)
    assert torch.isfinite(x2).all()
    torch.testing.assert_close(x2, torch.linalg.solve(A, b), rtol=1e-4, atol=1e-5)


def test_conjugate_gradient_edge_cases():
    A = _spd(4, seed=1)
    x0 = conjugate_gradient(lambda v: A @ v, torch.zeros(4, dtype=DT), iters=5)
    assert torch.equal(x0, torch.zeros(4, dtype=DT))
    # one iteration = one steepest-descent step with exact line search (closed form)
    b = _randn(4, seed=2)
    x1 = conjugate_gradient(lambda v: A @ v, b, iters=1)
    torch.testing.assert_close(x1, (b @ b) / (b @ (A @ b)) * b)
    for bad in (0, -3):
        with pytest.raises(ValueError):
            conjugate_gradient(lambda v: A @ v, b, iters=bad)


def _tiny_mlp_flat(seed=0):
    net = fnn.mlp(2, 2, hidden=(3,), activation="tanh")
    params = {k: v.to(DT) + 0.1 * torch.randn(v.shape, generator=_gen(seed + 1), dtype=DT)
              for k, v in net.init(seed).items()}
    flat, unravel = ravel(params)
    return net, flat, unravel


def test_hessian_vector_product_matches_explicit_hessian():
    net, flat, unravel = _tiny_mlp_flat(0)
    x = _randn(5, 2, seed=3)
    y = _randn(5, 2, seed=4)

    def f(w):
        return ((net.apply(unravel(w), x) - y) ** 2).sum() + (w**4).sum() * 0.1

    H = torch.autograd.functional.hessian(f, flat)
    assert H.shape == (flat.numel(), flat.numel())
    for s in range(3):
        v = _randn(flat.numel(), seed=10 + s)
        torch.testing.assert_close(hessian_vector_product(f, flat, v), H @ v, rtol=1e-9, atol=1e-10)


def _tiny_gaussian(seed=0, n_states=6):
    pol = fnn.gaussian_policy(2, 2, hidden=(3,), init_std=0.7)
    params = {k: v.to(DT) + 0.2 * torch.randn(v.shape, generator=_gen(seed + 1), dtype=DT)
              for k, v in pol.init(seed).items()}
    flat, unravel = ravel(params)
    obs = _randn(n_states, 2, seed=seed + 2)

    def outputs_fn(w):
        mean, log_std = pol.apply(unravel(w), obs)
        return mean, log_std

    return flat, outputs_fn, n_states


def _mean_gaussian_kl(old, new):
    return gaussian_kl(old[0], old[1], new[0], new[1]).mean()


def test_gauss_newton_operator_gaussian_matches_kl_hessian():
    flat, outputs_fn, n = _tiny_gaussian(0)
    old = tuple(o.detach() for o in outputs_fn(flat))
    H = torch.autograd.functional.hessian(lambda v: _mean_gaussian_kl(old, outputs_fn(v)), flat)

    def closed_form(old_out, u):
        w = 1.0 / n  # the KL is a mean over states, summed over action dims
        return (u[0] * torch.exp(-2 * old_out[1]) * w, 2 * u[1] * w)

    gn_generic = gauss_newton_operator(outputs_fn, _mean_gaussian_kl, flat)
    gn_closed = gauss_newton_operator(outputs_fn, _mean_gaussian_kl, flat, output_curvature=closed_form)
    for s in range(3):
        v = _randn(flat.numel(), seed=20 + s)
        ref = H @ v
        torch.testing.assert_close(gn_generic(v), ref, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(gn_closed(v), ref, rtol=1e-9, atol=1e-11)
    # the operator is symmetric positive semi-definite (a Fisher matrix)
    M = torch.stack([gn_generic(e) for e in torch.eye(flat.numel(), dtype=DT)], dim=1)
    torch.testing.assert_close(M, M.T, rtol=1e-9, atol=1e-12)
    assert torch.linalg.eigvalsh(M).min() > -1e-10


def test_gauss_newton_operator_under_no_grad_with_an_output_that_ignores_some_params():
    """The operator builds its autograd graph even when called under no_grad, and params that an
    output does not reach get zero rows (the log-std output sees only the log-std entries)."""
    flat, outputs_fn, n = _tiny_gaussian(3)
    old = tuple(o.detach() for o in outputs_fn(flat))

    def std_only(w):  # an output that depends on the log-std entries alone
        return (outputs_fn(w)[1],)

    def div(o, new):
        return (new[0] - o[0]).pow(2).sum()

    with torch.no_grad():
        gn = gauss_newton_operator(std_only, div, flat)
        v = _randn(flat.numel(), seed=40)
        got = gn(v)
    H = torch.autograd.functional.hessian(lambda w: div((old[1],), std_only(w)), flat)
    torch.testing.assert_close(got, H @ v, rtol=1e-9, atol=1e-11)
    assert not got.requires_grad
    assert int((H.abs().sum(dim=0) > 0).sum()) == 2  # only the two log-std entries are touched


def test_gauss_newton_operator_categorical_matches_kl_hessian():
    net, flat, unravel = _tiny_mlp_flat(5)
    obs = _randn(4, 2, seed=6)

    def outputs_fn(w):
        return (net.apply(unravel(w), obs),)

    def div(old, new):
        return categorical_kl(old[0], new[0]).mean()

    old = tuple(o.detach() for o in outputs_fn(flat))
    H = torch.autograd.functional.hessian(lambda v: div(old, outputs_fn(v)), flat)
    gn = gauss_newton_operator(outputs_fn, div, flat)
    v = _randn(flat.numel(), seed=7)
    torch.testing.assert_close(gn(v), H @ v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_trpo_step_direction_satisfies_kl_constraint(damping):
    n = 8
    A = _spd(n, seed=30)
    g = _randn(n, seed=31)
    max_kl = 0.01
    s = trpo_step_direction(lambda v: A @ v, g, max_kl, cg_iters=n, damping=damping)
    Ad = A + damping * torch.eye(n, dtype=DT)
    torch.testing.assert_close(0.5 * s @ (Ad @ s), torch.tensor(max_kl, dtype=DT), rtol=1e-8, atol=0)
    # direction is the natural gradient A^-1 g (positive multiple)
    nat = torch.linalg.solve(Ad, g)
    scale = torch.sqrt(2 * max_kl / (nat @ (Ad @ nat)))
    torch.testing.assert_close(s, scale * nat, rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError):
        trpo_step_direction(lambda v: A @ v, g, 0.0)
    with pytest.raises(ValueError):
        trpo_step_direction(lambda v: A @ v, g, 0.01, damping=-1.0)


@pytest.mark.parametrize("cg_iters", [1, 3])
def test_trpo_step_direction_truncated_cg_scales_by_the_true_curvature(cg_iters):
    """With CG stopped early the step's s^T A s comes from CG's residual, not another product:
    it must still equal the explicit quadratic form, and the step the truncated CG solution."""
    n = 8
    A = _spd(n, seed=32)
    g = _randn(n, seed=33)
    max_kl, damping = 0.01, 1e-3
    calls = []
    s = trpo_step_direction(lambda v: calls.append(1) or A @ v, g, max_kl, cg_iters=cg_iters, damping=damping)
    assert len(calls) == cg_iters  # one curvature product per CG iteration, none more
    Ad = A + damping * torch.eye(n, dtype=DT)
    torch.testing.assert_close(0.5 * s @ (Ad @ s), torch.tensor(max_kl, dtype=DT), rtol=1e-10, atol=0)
    x = conjugate_gradient(lambda v: Ad @ v, g, iters=cg_iters)
    torch.testing.assert_close(s, x * torch.sqrt(2 * max_kl / (x @ (Ad @ x))), rtol=1e-10, atol=1e-12)


def _toy_search(loss_ok_below, kl_of_fraction):
    """x = [1, 0], full_step = [1, 0]: candidate[0] = 1 - fraction, so fraction is recoverable."""
    calls = []

    def loss_and_kl(c):
        f = 1.0 - float(c[0])
        calls.append(f)
        loss = torch.tensor(-1.0 if f < loss_ok_below else 1.0, dtype=DT)
        return loss, torch.tensor(kl_of_fraction(f), dtype=DT)

    return loss_and_kl, calls


def _first_k(ratio, max_steps, loss_ok_below, kl_of_fraction, max_kl):
    for k in range(max_steps):
        f = ratio**k
        if f < loss_ok_below and kl_of_fraction(f) < max_kl:
            return k
    return None


@pytest.mark.parametrize(
    "loss_ok_below, max_kl, ratio",
    [
        (2.0, 1.0, 0.8),  # full step accepted
        (2.0, 0.3, 0.8),  # KL binds: f^2 < 0.3
        (0.45, 1.0, 0.8),  # loss binds
        (0.3, 0.05, 0.8),  # both; KL binds last
        (0.7, 0.2, 0.5),  # other ratio
    ],
)
def test_backtracking_line_search_accepts_first_fraction(loss_ok_below, max_kl, ratio):
    kl_fn = lambda f: f**2  # noqa: E731
    x = torch.tensor([1.0, 0.0], dtype=DT)
    step = torch.tensor([1.0, 0.0], dtype=DT)
    loss_and_kl, calls = _toy_search(loss_ok_below, kl_fn)
    res = backtracking_line_search(loss_and_kl, x, step, old_loss=0.0, max_kl=max_kl, max_steps=15,
                                   backtrack_ratio=ratio)
    k = _first_k(ratio, 15, loss_ok_below, kl_fn, max_kl)
    assert k is not None
    assert isinstance(res, LineSearchResult)
    assert res.accepted is True
    assert res.step_fraction == pytest.approx(ratio**k, rel=1e-12)
    torch.testing.assert_close(res.params, x - ratio**k * step)
    assert res.loss == -1.0
    assert res.kl == pytest.approx(ratio ** (2 * k), rel=1e-9)
    assert len(calls) == k + 1  # stops at the first acceptable fraction
    assert calls == pytest.approx([ratio**j for j in range(k + 1)], rel=1e-9)


def test_backtracking_line_search_rejects_when_nothing_qualifies():
    x = torch.tensor([1.0, 0.0], dtype=DT)
    step = torch.tensor([1.0, 0.0], dtype=DT)
    # loss never improves
    loss_and_kl, calls = _toy_search(-1.0, lambda f: 0.0)
    res = backtracking_line_search(loss_and_kl, x, step, old_loss=0.0, max_kl=0.1, max_steps=7)
    assert res.accepted is False
    assert res.step_fraction == 0.0
    assert res.loss == 0.0
    assert torch.equal(res.params, x)
    assert len(calls) == 7
    # an acceptable fraction exists only at k = 5, beyond max_steps = 5 (k = 0..4)
    kl_fn = lambda f: f  # noqa: E731
    max_kl = 0.8**5 + 1e-3
    assert _first_k(0.8, 5, 2.0, kl_fn, max_kl) is None and _first_k(0.8, 6, 2.0, kl_fn, max_kl) == 5
    loss_and_kl, calls = _toy_search(2.0, kl_fn)
    res = backtracking_line_search(loss_and_kl, x, step, old_loss=0.0, max_kl=max_kl, max_steps=5)
    assert not res.accepted and torch.equal(res.params, x)
    loss_and_kl, _ = _toy_search(2.0, kl_fn)
    res6 = backtracking_line_search(loss_and_kl, x, step, old_loss=0.0, max_kl=max_kl, max_steps=6)
    assert res6.accepted and res6.step_fraction == pytest.approx(0.8**5)
    # loss equal to old_loss is not an improvement (strict)
    res_eq = backtracking_line_search(lambda c: (torch.tensor(0.0), torch.tensor(0.0)), x, step,
                                      old_loss=0.0, max_kl=1.0, max_steps=3)
    assert not res_eq.accepted


@pytest.mark.parametrize("kw", [{"max_steps": 0}, {"max_steps": -1}, {"backtrack_ratio": 0.0},
                                {"backtrack_ratio": 1.0}, {"backtrack_ratio": 1.5}, {"backtrack_ratio": -0.5}])
def test_backtracking_line_search_bad_args(kw):
    x = torch.zeros(2, dtype=DT)
    with pytest.raises(ValueError):
        backtracking_line_search(lambda c: (torch.tensor(0.0), torch.tensor(0.0)), x, x, 1.0, 0.1, **kw)


@pytest.mark.parametrize("horizon", [1, 2, 3, 7, 64, 100])
def test_returns_and_gae_follow_the_recursion_for_any_mask_and_horizon(horizon):
    # The doubling scan against the defining recursion, step by step in Python floats, with
    # masks that have holes (not only padding after an episode's end) and horizons that are
    # and are not powers of two.
    gen = torch.Generator().manual_seed(horizon)
    r = torch.randn(horizon, 3, generator=gen, dtype=torch.float64)
    v = torch.randn(horizon, 3, generator=gen, dtype=torch.float64)
    mask = (torch.rand(horizon, 3, generator=gen) < 0.7).to(torch.float64)
    gamma, lam = 0.97, 0.8
    got_ret, got_adv = discounted_returns(r, mask, gamma), gae(r, v, mask, gamma, lam)
    for b in range(3):
        ret, adv, m = 0.0, 0.0, mask[:, b].tolist()
        vm = [x * y for x, y in zip(v[:, b].tolist(), m)] + [0.0]
        for t in range(horizon - 1, -1, -1):
            ret = m[t] * (float(r[t, b]) + gamma * ret)
            adv = m[t] * (float(r[t, b]) + gamma * vm[t + 1] - vm[t] + gamma * lam * adv)
            assert abs(float(got_ret[t, b]) - ret) < 1e-12 * max(1.0, abs(ret))
            assert abs(float(got_adv[t, b]) - adv) < 1e-12 * max(1.0, abs(adv))
