"""MAML (meta/maml.py) and MAML-RL (meta/batch.py, adaptation.py, surrogates.py, meta_steps.py)
against explicit autograd references.

The references below use plain ``torch.autograd.grad`` on leaf tensors (``create_graph=True`` for
the inner step), hand-written network forwards and ``torch.distributions``; nothing in them
calls ``torch.func`` or the library's losses.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.func import grad, grad_and_value

from functional_metarl import meta
from functional_metarl.envs import Navigation2D, rollout, sample_noise
from functional_metarl.meta import (
    MetaParams,
    TRPOConfig,
    adapt,
    adapt_tasks,
    maml_loss,
    maml_surrogate,
    make_rl_batch,
    make_rl_batches,
    meta_gradient,
    scale_by_final_reward,
)
from functional_metarl.meta import meta_steps as meta_steps_module
from functional_metarl.nn import gaussian_policy, mlp
from functional_metarl.optim import MetaSgdState, adam, meta_sgd, sgd
from functional_metarl.rl import gaussian_log_prob

DT = torch.float64


def _leaves(params):
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def _assert_trees_close(a, b, rtol=1e-9, atol=1e-11):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


# =========================================================================== supervised MAML
NET = mlp(3, 2, (6,), "tanh")


def net_forward(p, x):
    """The mlp(3, 2, (6,), 'tanh') forward, written out."""
    return torch.tanh(x @ p["0.weight"].T + p["0.bias"]) @ p["2.weight"].T + p["2.bias"]


def mse(p, batch):
    x, y = batch
    return ((NET.apply(p, x) - y) ** 2).mean()


def ref_mse(p, x, y):
    return ((net_forward(p, x) - y) ** 2).mean()


@pytest.fixture(scope="module")
def regression():
    g = torch.Generator().manual_seed(0)
    params = NET.init(0, dtype=DT)
    params = {k: v + 0.2 * torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}
    n, k = 4, 5
    w = torch.randn(n, 3, 2, generator=g, dtype=DT)  # one random linear target per task
    xt = torch.randn(n, k, 3, generator=g, dtype=DT)
    xv = torch.randn(n, k, 3, generator=g, dtype=DT)
    yt = torch.sin(xt @ w) + 0.1 * torch.randn(n, k, 2, generator=g, dtype=DT)
    yv = torch.sin(xv @ w)
    return params, (xt, yt), (xv, yv)


def ref_maml(params, train, valid, steps, lr=None, first_order=False, lrs=None):
    """Explicit per-task loop: returns (loss, grads wrt params[, grads wrt per-entry lrs])."""
    leaves = _leaves(params)
    lr_leaves = None if lrs is None else _leaves(lrs)
    (xt, yt), (xv, yv) = train, valid
    n = xt.shape[0]
    total = 0.0
    for i in range(n):
        p = dict(leaves)
        for _ in range(steps):
            inner = ref_mse(p, xt[i], yt[i])
            gs = torch.autograd.grad(inner, list(p.values()), create_graph=not first_order)
            if lr_leaves is None:
                p = {k: v - lr * gk for (k, v), gk in zip(p.items(), gs)}
            else:
                p = {k: v - lr_leaves[k] * gk for (k, v), gk in zip(p.items(), gs)}
        total = total + ref_mse(p, xv[i], yv[i])
    total = total / n
    wrt = list(leaves.values()) + ([] if lr_leaves is None else list(lr_leaves.values()))
    gs = torch.autograd.grad(total, wrt)
    g_params = dict(zip(leaves, gs[: len(leaves)]))
    if lr_leaves is None:
        return total.detach(), g_params
    return total.detach(), g_params, dict(zip(lr_leaves, gs[len(leaves):]))


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_maml_loss_and_meta_gradient_match_autograd_loop(regression, steps):
    params, train, valid = regression
    opt = sgd(0.3)
    g, value = grad_and_value(maml_loss)(params, train, valid, mse, mse, opt, steps=steps)
    ref_value, ref_g = ref_maml(params, train, valid, steps, lr=0.3)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-14)
    _assert_trees_close(g, ref_g)
    # meta_gradient is the same thing
    _assert_trees_close(meta_gradient(params, train, valid, mse, mse, opt, steps=steps), ref_g)


@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_matches_central_finite_differences(regression, steps):
    params, train, valid = regression
    opt = sgd(0.3)
    f = lambda p: maml_loss(p, train, valid, mse, mse, opt, steps=steps)  # noqa: E731
    ref_f = lambda p: ref_maml(p, train, valid, steps, lr=0.3)[0]  # noqa: E731
    g = grad(f)(params)
    gen = torch.Generator().manual_seed(steps)
    eps = 1e-5
    for _ in range(4):
        d = {k: torch.randn(v.shape, generator=gen, dtype=DT) for k, v in params.items()}
        plus = {k: params[k] + eps * d[k] for k in params}
        minus = {k: params[k] - eps * d[k] for k in params}
        fd = (ref_f(plus) - ref_f(minus)) / (2 * eps)
        directional = sum((g[k] * d[k]).sum() for k in params)
        torch.testing.assert_close(directional, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_matches_detached_inner_gradient(regression, steps):
    params, train, valid = regression
    opt = sgd(0.3)
    g = grad(maml_loss)(params, train, valid, mse, mse, opt, steps=steps, first_order=True)
    _, ref_fo = ref_maml(params, train, valid, steps, lr=0.3, first_order=True)
    _, ref_so = ref_maml(params, train, valid, steps, lr=0.3, first_order=False)
    _assert_trees_close(g, ref_fo)
    # and it really differs from the second-order gradient
    assert max(float((ref_fo[k] - ref_so[k]).abs().max()) for k in g) > 1e-4


@pytest.mark.parametrize("steps", [1, 2])
def test_meta_sgd_gradient_wrt_learning_rates(regression, steps):
    params, train, valid = regression
    opt = meta_sgd(0.1)
    state = opt.init(params)
    assert all(torch.equal(v, torch.full_like(params[k], 0.1)) for k, v in state.lr.items())
    gen = torch.Generator().manual_seed(7)
    lrs = {k: 0.05 + 0.1 * torch.rand(v.shape, generator=gen, dtype=DT) for k, v in params.items()}
    state = type(state)(lr=lrs)

    def f(p, s):
        return maml_loss(p, train, valid, mse, mse, opt, steps=steps, opt_state=s)

    g_p, g_s = grad(f, argnums=(0, 1))(params, state)
    _, ref_gp, ref_glr = ref_maml(params, train, valid, steps, lrs=lrs)
    _assert_trees_close(g_p, ref_gp)
    _assert_trees_close(g_s.lr, ref_glr)
    # adapt with explicit opt_state uses those rates: one step is p - lr * grad
    i = 0
    adapted = adapt(params, (train[0][i], train[1][i]), mse, opt, steps=1, opt_state=state)
    leaves = _leaves(params)
    gs = torch.autograd.grad(ref_mse(leaves, train[0][i], train[1][i]), list(leaves.values()))
    _assert_trees_close(adapted, {k: params[k] - lrs[k] * gk for k, gk in zip(leaves, gs)})


def test_vmap_over_tasks_equals_python_loop(regression):
    params, train, valid = regression
    opt = sgd(0.2)
    n = train[0].shape[0]

    def loop_loss(p):
        losses = []
        for i in range(n):
            adapted = adapt(p, (train[0][i], train[1][i]), mse, opt, steps=2)
            losses.append(mse(adapted, (valid[0][i], valid[1][i])))
        return torch.stack(losses).mean()

    g_vmap, v_vmap = grad_and_value(maml_loss)(params, train, valid, mse, mse, opt, steps=2)
    g_loop, v_loop = grad_and_value(loop_loss)(params)
    torch.testing.assert_close(v_vmap, v_loop, rtol=1e-12, atol=1e-14)
    _assert_trees_close(g_vmap, g_loop, rtol=1e-10, atol=1e-12)


def test_adapt_inner_step_decreases_inner_loss_and_leaves_input_untouched(regression):
    params, train, _ = regression
    before = {k: v.clone() for k, v in params.items()}
    batch = (train[0][0], train[1][0])
    adapted = adapt(params, batch, mse, sgd(0.05), steps=3)
    assert mse(adapted, batch) < mse(params, batch)
    for k in params:
        assert torch.equal(params[k], before[k])


@pytest.mark.parametrize("steps", [0, -1, True, False, 1.0])
def test_bad_inner_steps_rejected(regression, steps):
    params, train, valid = regression
    with pytest.raises(ValueError, match="steps"):
        adapt(params, (train[0][0], train[1][0]), mse, sgd(0.1), steps=steps)
    with pytest.raises(ValueError, match="steps"):
        maml_loss(params, train, valid, mse, mse, sgd(0.1), steps=steps)


# =========================================================================== MAML-RL
POLICY = gaussian_policy(2, 2, (6,), "tanh")
HORIZON, N_TASKS, N_EPS = 8, 3, 4
INNER_LR = 0.1


def trpo_step(params, train, valid, inner_opt, meta_grad=None, **kw):
    """One TRPO meta-step from a fresh state: ``(new params, stats)``."""
    step = meta.trpo(POLICY, inner_opt, **kw)
    new_params, state, stats = step.update(params, step.init(params), train, valid, meta_grad)
    assert isinstance(state, meta.TRPOState) and isinstance(stats, dict)
    return new_params, stats


def policy_forward(p, obs):
    h = torch.tanh(obs @ p["mean.0.weight"].T + p["mean.0.bias"])
    mean = h @ p["mean.2.weight"].T + p["mean.2.bias"]
    return mean, p["log_std"].expand_as(mean)


def ref_log_prob(p, obs, actions):
    mean, log_std = policy_forward(p, obs)
    return Normal(mean, log_std.exp()).log_prob(actions).sum(-1)


def ref_masked_mean(x, mask):
    """Mean over each episode's valid steps, then over episodes. x, mask [T, E]."""
    return ((x * mask).sum(0) / mask.sum(0).clamp_min(1.0)).mean()


def ref_adapt(p, batch_i, lr, create_graph):
    obs, actions, adv, mask = batch_i[:4]  # RLBatch also carries rewards, advantage_std
    inner = -ref_masked_mean(ref_log_prob(p, obs, actions) * adv, mask)
    gs = torch.autograd.grad(inner, list(p.values()), create_graph=create_graph)
    return {k: v - lr * gk for (k, v), gk in zip(p.items(), gs)}


def task(batch, i):
    return type(batch)(*(x[i] for x in batch))


def ref_maml_surrogate(params, train, valid, first_order=False, lr=INNER_LR):
    leaves = _leaves(params)
    total = 0.0
    for i in range(train.obs.shape[0]):
        adapted = ref_adapt(dict(leaves), task(train, i), lr, create_graph=not first_order)
        v = task(valid, i)
        logp = ref_log_prob(adapted, v.obs, v.actions)
        ratio = torch.exp(logp - logp.detach())
        total = total - ref_masked_mean(ratio * v.advantages, v.mask)
    total = total / train.obs.shape[0]
    gs = torch.autograd.grad(total, list(leaves.values()))
    return total.detach(), dict(zip(leaves, gs))


def make_problem(seed=0, dtype=DT, hidden_noise=0.3):
    """Tiny meta-batch: train episodes of the meta-params, valid episodes of the adapted ones."""
    env = Navigation2D(horizon=HORIZON)
    gen = torch.Generator().manual_seed(seed)
    params = POLICY.init(seed, dtype=dtype)
    params = {k: v + hidden_noise * torch.randn(v.shape, generator=gen, dtype=dtype) for k, v in params.items()}
    params["log_std"] = torch.full((2,), math.log(0.3), dtype=dtype)
    tasks = env.sample_tasks(N_TASKS, gen, dtype=dtype)
    train_eps = rollout(params, tasks, sample_noise(HORIZON, N_TASKS, N_EPS, 2, gen, dtype=dtype), env, POLICY)
    train = make_rl_batches(train_eps)
    inner = sgd(INNER_LR)
    per_task = []
    for i in range(N_TASKS):
        per_task.append(ref_adapt(_leaves(params), task(train, i), INNER_LR, create_graph=False))
    adapted = {k: torch.stack([p[k].detach() for p in per_task]) for k in params}
    valid_eps = rollout(
        adapted, tasks, sample_noise(HORIZON, N_TASKS, N_EPS, 2, gen, dtype=dtype), env, POLICY, params_per_task=True
    )
    valid = make_rl_batches(valid_eps)
    return params, train, valid, inner, train_eps


def test_make_rl_batches_shapes_and_per_task_loop():
    _, train, _, _, episodes = make_problem(seed=1)
    assert train.obs.shape == (N_TASKS, HORIZON, N_EPS, 2)
    assert train.actions.shape == (N_TASKS, HORIZON, N_EPS, 2)
    assert train.advantages.shape == (N_TASKS, HORIZON, N_EPS)
    assert torch.equal(train.mask, episodes.mask) and torch.equal(train.obs, episodes.obs)
    for i in range(N_TASKS):
        single = make_rl_batch(episodes.obs[i], episodes.actions[i], episodes.rewards[i], episodes.mask[i])
        for a, b in zip(single, task(train, i)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        # normalised over the valid steps of each task
        m = episodes.mask[i].bool()
        adv = train.advantages[i][m]
        assert abs(float(adv.mean())) < 1e-8
        assert abs(float(adv.std(unbiased=False)) - 1) < 1e-6


def test_scale_by_final_reward_scales_each_task_by_its_final_error():
    """s_n = -(mean reward of task n over the last `window` steps) / reference, counted over every
    episode (a finished episode's padded zeros are zero error); only the advantages and their
    scale change."""
    _, train, _, _, _ = make_problem(seed=3)
    rewards = -torch.rand(train.rewards.shape, dtype=DT, generator=torch.Generator().manual_seed(0))
    rewards[0, -2:, 0] = 0.0  # this episode finished before the last two steps
    batch = train._replace(rewards=rewards)
    scaled = scale_by_final_reward(batch, 0.25, window=2)
    for n in range(N_TASKS):
        last = [float(rewards[n, t, e]) for t in (HORIZON - 2, HORIZON - 1) for e in range(N_EPS)]
        factor = -sum(last) / len(last) / 0.25
        torch.testing.assert_close(scaled.advantages[n], batch.advantages[n] * factor, rtol=1e-12, atol=0)
        torch.testing.assert_close(scaled.advantage_std[n], batch.advantage_std[n] / factor, rtol=1e-12, atol=0)
    for name in ("obs", "actions", "mask", "rewards"):
        assert torch.equal(getattr(scaled, name), getattr(batch, name)), name
    # a task whose episodes all ended at the goal takes no step and keeps its advantage_std
    done = scale_by_final_reward(batch._replace(rewards=torch.zeros_like(rewards)), 0.25, window=2)
    assert torch.equal(done.advantages, torch.zeros_like(rewards))
    assert torch.equal(done.advantage_std, batch.advantage_std)


def test_proportional_step_is_the_fixed_step_times_the_task_factor():
    """The REINFORCE step is linear in the advantages, so the scaled batch moves task n's params
    exactly s_n times as far as the plain batch, in the same direction."""
    params, train, _, _, _ = make_problem(seed=4)
    reference, window = 0.3, 3
    plain = adapt_tasks(params, train, POLICY, sgd(INNER_LR))
    proportional = adapt_tasks(params, scale_by_final_reward(train, reference, window), POLICY, sgd(INNER_LR))
    factor = -train.rewards[:, -window:].mean(dim=(1, 2)) / reference  # [N]
    assert float(factor.min()) > 0 and float(factor.max() - factor.min()) > 0.01  # tasks really differ
    for name, p in params.items():
        step = factor.view(-1, *([1] * p.ndim)) * (plain[name] - p)
        torch.testing.assert_close(proportional[name] - p, step, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_make_rl_batches_rejects_non_finite_rewards(bad):
    _, _, _, _, episodes = make_problem(seed=2)
    rewards = episodes.rewards.clone()
    rewards[1, 3, 2] = bad
    with pytest.raises(ValueError, match=r"episodes.rewards must be finite, got non-finite entries"):
        make_rl_batches(episodes._replace(rewards=rewards))


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_surrogate_meta_gradient_matches_autograd_loop(first_order):
    params, train, valid, inner, _ = make_problem(seed=3)
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=inner, steps=1, first_order=first_order)
    g, (value, adapted) = grad_and_value(surrogate, has_aux=True)(params, train, valid, None)
    ref_value, ref_g = ref_maml_surrogate(params, train, valid, first_order=first_order)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-14)
    _assert_trees_close(g, ref_g)
    # with ratio 1 the value is minus the mean masked advantage
    expected = -torch.stack([ref_masked_mean(valid.advantages[i], valid.mask[i]) for i in range(N_TASKS)]).mean()
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
    # the adapted params are the reference inner step, one stack entry per task
    for i in range(N_TASKS):
        ref_ad = ref_adapt(_leaves(params), task(train, i), INNER_LR, create_graph=False)
        _assert_trees_close({k: v[i] for k, v in adapted.items()}, {k: v.detach() for k, v in ref_ad.items()})
    if not first_order:
        _, ref_fo = ref_maml_surrogate(params, train, valid, first_order=True)
        assert max(float((ref_fo[k] - ref_g[k]).abs().max()) for k in g) > 1e-6


def ref_maml_surrogate_per_step(params, train_steps, valid):
    """Reference for several inner steps, step k on its own batch: an explicit autograd loop."""
    leaves = _leaves(params)
    total = 0.0
    for i in range(valid.obs.shape[0]):
        adapted = dict(leaves)
        for batch in train_steps:
            adapted = ref_adapt(adapted, task(batch, i), INNER_LR, create_graph=True)
        v = task(valid, i)
        logp = ref_log_prob(adapted, v.obs, v.actions)
        total = total - ref_masked_mean(torch.exp(logp - logp.detach()) * v.advantages, v.mask)
    total = total / valid.obs.shape[0]
    return total.detach(), dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))


def test_maml_surrogate_with_one_inner_batch_per_step_matches_autograd_loop():
    """Two inner steps, each on its own episodes (how the trainer meta-trains several steps):
    the exact meta-gradient equals the nested autograd loop, and differs from reusing the first
    batch for both steps."""
    params, train, valid, inner, _ = make_problem(seed=3)
    _, train2, _, _, _ = make_problem(seed=13)  # other episodes of the same shapes
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=inner, steps=2)
    g, (value, _) = grad_and_value(surrogate, has_aux=True)(params, (train, train2), valid, None)
    ref_value, ref_g = ref_maml_surrogate_per_step(params, (train, train2), valid)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-14)
    _assert_trees_close(g, ref_g)
    g_reused, _ = grad_and_value(surrogate, has_aux=True)(params, train, valid, None)
    _, ref_reused = ref_maml_surrogate_per_step(params, (train, train), valid)
    _assert_trees_close(g_reused, ref_reused)
    assert max(float((g[k] - g_reused[k]).abs().max()) for k in g) > 1e-6
    with pytest.raises(ValueError, match="one per step"):
        surrogate(params, (train, train2, train), valid, None)
    with pytest.raises(TypeError, match="tuple of RLBatches"):
        surrogate(params, (train, tuple(train2)), valid, None)


def test_maml_trpo_step_with_one_inner_batch_per_step():
    params, train, valid, inner, _ = make_problem(seed=5)
    _, train2, _, _, _ = make_problem(seed=15)
    config = TRPOConfig(max_kl=1e-3, fisher_subsample=2, fisher_tasks=2)
    new_params, stats = trpo_step(params, (train, train2), valid, inner, steps=2, config=config)
    assert stats["step_fraction"] > 0 and stats["kl"] <= config.max_kl and stats["loss_after"] < stats["meta_loss"]
    # the reported loss and KL are those of the new params, recomputed from scratch
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=inner, steps=2)
    _, (_, adapted_old) = grad_and_value(surrogate, has_aux=True)(params, (train, train2), valid, None)
    old_dist = POLICY.apply_stacked({k: v.detach() for k, v in adapted_old.items()}, valid.obs)
    old_log_prob = gaussian_log_prob(old_dist[0], old_dist[1], valid.actions)
    loss_after, adapted_new = surrogate(new_params, (train, train2), valid, old_log_prob)
    assert abs(float(loss_after) - stats["loss_after"]) < 1e-10


def test_maml_surrogate_with_learned_step_sizes_matches_autograd_loop():
    """Meta-SGD for MAML-RL: with MetaParams(params, MetaSgdState(lr)) the surrogate adapts with
    per-parameter step sizes, and its gradient in both the params and the step sizes equals an
    explicit autograd loop."""
    params, train, valid, _, _ = make_problem(seed=7)
    gen = torch.Generator().manual_seed(70)
    lrs = {k: 0.05 + 0.1 * torch.rand(v.shape, generator=gen, dtype=DT) for k, v in params.items()}
    meta_params = MetaParams(params, MetaSgdState(lrs))
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=meta_sgd(0.1), steps=1)
    g, (value, _) = grad_and_value(surrogate, has_aux=True)(meta_params, train, valid, None)
    assert isinstance(g, MetaParams) and isinstance(g.inner_state, MetaSgdState)

    leaves, lr_leaves = _leaves(params), _leaves(lrs)
    total = 0.0
    for i in range(N_TASKS):
        obs, actions, adv, mask = task(train, i)[:4]
        inner = -ref_masked_mean(ref_log_prob(leaves, obs, actions) * adv, mask)
        gs = torch.autograd.grad(inner, list(leaves.values()), create_graph=True)
        adapted = {k: v - lr_leaves[k] * gk for (k, v), gk in zip(leaves.items(), gs)}
        v = task(valid, i)
        logp = ref_log_prob(adapted, v.obs, v.actions)
        total = total - ref_masked_mean(torch.exp(logp - logp.detach()) * v.advantages, v.mask)
    total = total / N_TASKS
    ref = torch.autograd.grad(total, list(leaves.values()) + list(lr_leaves.values()))
    torch.testing.assert_close(value, total.detach(), rtol=1e-12, atol=1e-14)
    _assert_trees_close(g.params, dict(zip(leaves, ref[: len(leaves)])))
    _assert_trees_close(g.inner_state.lr, dict(zip(lr_leaves, ref[len(leaves):])))


def test_maml_trpo_step_with_learned_step_sizes():
    params, train, valid, _, _ = make_problem(seed=8)
    meta_params = MetaParams(params, meta_sgd(0.1).init(params))
    config = TRPOConfig(max_kl=1e-3)
    new, stats = trpo_step(meta_params, train, valid, meta_sgd(0.1), config=config)
    assert isinstance(new, MetaParams) and stats["step_fraction"] > 0
    assert stats["kl"] <= config.max_kl and stats["loss_after"] < stats["meta_loss"]
    moved = max(float((new.inner_state.lr[k] - 0.1).abs().max()) for k in params)
    assert moved > 0  # the step sizes are learned too
    with pytest.raises(ValueError, match="curvature='exact'"):
        trpo_step(meta_params, train, valid, meta_sgd(0.1), config=TRPOConfig(curvature="adapted"))


def test_maml_surrogate_with_explicit_old_log_prob():
    params, train, valid, inner, _ = make_problem(seed=4)
    gen = torch.Generator().manual_seed(0)
    old = -1.0 + 0.1 * torch.randn(valid.advantages.shape, generator=gen, dtype=DT)
    value, _ = maml_surrogate(params, train, valid, old, POLICY, inner)
    total = 0.0
    for i in range(N_TASKS):
        ad = ref_adapt(_leaves(params), task(train, i), INNER_LR, create_graph=False)
        v = task(valid, i)
        logp = ref_log_prob(ad, v.obs, v.actions).detach()
        total = total - ref_masked_mean(torch.exp(logp - old[i]) * v.advantages, v.mask)
    torch.testing.assert_close(value, total / N_TASKS, rtol=1e-10, atol=1e-12)


def ref_adapted_dists(params, train, valid):
    out = []
    for i in range(N_TASKS):
        ad = ref_adapt(_leaves(params), task(train, i), INNER_LR, create_graph=False)
        mean, log_std = policy_forward({k: v.detach() for k, v in ad.items()}, valid.obs[i])
        out.append((mean.detach(), log_std.detach()))
    return out


def ref_mean_kl(old_dists, new_dists, mask):
    kls = []
    for i, ((m0, s0), (m1, s1)) in enumerate(zip(old_dists, new_dists)):
        kl = kl_divergence(Normal(m0, s0.exp()), Normal(m1, s1.exp())).sum(-1)
        kls.append(ref_masked_mean(kl, mask[i]))
    return torch.stack(kls).mean()


def ref_loss_after(new_params, train, valid, old_dists):
    total = 0.0
    for i, (new, (m0, s0)) in enumerate(zip(ref_adapted_dists(new_params, train, valid), old_dists)):
        old_lp = Normal(m0, s0.exp()).log_prob(valid.actions[i]).sum(-1)
        new_lp = Normal(new[0], new[1].exp()).log_prob(valid.actions[i]).sum(-1)
        total = total - ref_masked_mean(torch.exp(new_lp - old_lp) * valid.advantages[i], valid.mask[i])
    return total / N_TASKS


@pytest.mark.parametrize(
    "curvature,first_order,subsample", [("exact", False, 1), ("adapted", False, 2), ("exact", True, 1)]
)
def test_maml_trpo_step_respects_trust_region_and_improves(curvature, first_order, subsample):
    params, train, valid, inner, _ = make_problem(seed=5)
    config = TRPOConfig(max_kl=1e-2, curvature=curvature, fisher_subsample=subsample)
    new_params, stats = trpo_step(params, train, valid, inner, first_order=first_order, config=config)
    assert all(math.isfinite(v) for v in stats.values())
    ref_value, ref_g = ref_maml_surrogate(params, train, valid, first_order=first_order)
    assert stats["meta_loss"] == pytest.approx(float(ref_value), rel=1e-9, abs=1e-12)
    ref_norm = math.sqrt(sum(float((v**2).sum()) for v in ref_g.values()))
    assert stats["grad_norm"] == pytest.approx(ref_norm, rel=1e-8)
    # On this problem the line search accepts a step.
    assert 0 < stats["step_fraction"] <= 1
    assert stats["loss_after"] < stats["meta_loss"]
    assert 0 <= stats["kl"] <= config.max_kl
    assert any(not torch.equal(new_params[k], params[k]) for k in params)
    assert all(not v.requires_grad for v in new_params.values())
    # The reported KL and loss are those of the adapted policies at the new params.
    old_dists = ref_adapted_dists(params, train, valid)
    new_dists = ref_adapted_dists(new_params, train, valid)
    assert stats["kl"] == pytest.approx(float(ref_mean_kl(old_dists, new_dists, valid.mask)), rel=1e-6, abs=1e-12)
    assert stats["loss_after"] == pytest.approx(float(ref_loss_after(new_params, train, valid, old_dists)), rel=1e-8)


def test_exact_curvature_quadratic_model_predicts_kl():
    """With the exact (through-adaptation) Fisher, the TRPO step is scaled so that the quadratic
    KL model equals max_kl; for a tiny max_kl the true KL of the adapted policies is then
    ~ fraction^2 * max_kl. A wrong curvature (e.g. ignoring the inner step) breaks this."""
    params, train, valid, inner, _ = make_problem(seed=6)
    max_kl = 1e-6
    config = TRPOConfig(max_kl=max_kl, curvature="exact", fisher_subsample=1, cg_damping=1e-10, cg_iters=10)
    new_params, stats = trpo_step(params, train, valid, inner, config=config)
    assert stats["step_fraction"] > 0
    ratio = stats["kl"] / (stats["step_fraction"]**2 * max_kl)
    assert 0.95 < ratio < 1.05, ratio


def test_maml_trpo_step_rejected_keeps_params(monkeypatch):
    params, train, valid, inner, _ = make_problem(seed=7)

    # Replace the search direction by a small *ascent* step: every candidate raises the loss.
    def ascent(curvature, loss_grad, max_kl, cg_iters=10, damping=1e-5):
        return -1e-3 * loss_grad / loss_grad.norm()

    monkeypatch.setattr(meta_steps_module, "trpo_step_direction", ascent)
    config = TRPOConfig(ls_max_steps=4)
    new_params, stats = trpo_step(params, train, valid, inner, config=config)
    assert stats["step_fraction"] == 0.0
    assert stats["loss_after"] == stats["meta_loss"]
    assert stats["kl"] == 0.0
    for k in params:
        assert torch.equal(new_params[k], params[k])


def test_maml_gradient_step_first_adam_step_is_signed_gradient():
    params, train, valid, inner, _ = make_problem(seed=8)
    meta_opt = adam(1e-2)
    step = meta.gradient(POLICY, inner, meta_opt)
    new_params, state, stats = step.update(params, step.init(params), train, valid)
    _, ref_g = ref_maml_surrogate(params, train, valid)
    # First Adam step with bias correction: -lr * g / (|g| + eps).
    for k in params:
        expected = params[k] - 1e-2 * ref_g[k] / (ref_g[k].abs() + 1e-8)
        torch.testing.assert_close(new_params[k], expected, rtol=1e-7, atol=1e-9)
    assert float(state.count) == 1.0
    assert math.isfinite(stats["loss_after"]) and stats["kl"] >= 0


def test_compiled_meta_gradient_matches_eager():
    params, train, valid, inner, _ = make_problem(seed=9, dtype=torch.float32)
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=inner, steps=1, first_order=False)
    eager = grad_and_value(surrogate, has_aux=True)
    compiled = torch.compile(grad_and_value(surrogate, has_aux=True), dynamic=False)
    g_e, (v_e, a_e) = eager(params, train, valid, None)
    g_c, (v_c, a_c) = compiled(params, train, valid, None)
    torch.testing.assert_close(v_c, v_e, rtol=1e-5, atol=1e-5)
    for k in params:
        torch.testing.assert_close(g_c[k], g_e[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a_c[k], a_e[k], rtol=1e-5, atol=1e-5)
    # a compiled meta-gradient (and line-search scoring) also drives a full TRPO step
    new_params, stats = trpo_step(params, train, valid, inner, compile=True)
    assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("first_order", [False, True])
def test_gradient_through_a_kept_adaptation_equals_the_surrogate_gradient(first_order):
    """What MAMLTrainer does by default: adapt once with a vjp kept (for the post-update rollouts),
    then pull the outer gradient back through it. Same loss, adapted params and meta-gradient as
    ``grad_and_value(maml_surrogate)`` adapting again (float64, to rounding)."""
    params, train, valid, inner, _ = make_problem(seed=10)
    adapted, pullback = meta.adapt_tasks_vjp(params, train, POLICY, inner, first_order=first_order)
    kept_grad = meta.surrogate_gradient_through(adapted, pullback, valid, POLICY)
    assert isinstance(kept_grad, meta.MetaGradient)
    grads, loss, kept, dist = kept_grad
    surrogate = functools.partial(maml_surrogate, policy=POLICY, inner_opt=inner, steps=1, first_order=first_order)
    ref_grads, (ref_loss, ref_adapted) = grad_and_value(surrogate, has_aux=True)(params, train, valid, None)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-14)
    # its dist is the adapted policies' distribution on valid.obs, exactly (the meta-step
    # takes it as its old policy instead of another forward pass)
    with torch.no_grad():
        fresh = POLICY.distribution.params(POLICY.apply_stacked(ref_adapted, valid.obs))
    assert all(torch.equal(d, f) and not d.requires_grad for d, f in zip(dist, fresh))
    for k in params:
        torch.testing.assert_close(kept[k], ref_adapted[k], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-10, atol=1e-12)
    # the TRPO step is the same whether the kept gradient hands over that distribution or the old
    # policy is recomputed by another forward pass of its adapted params
    with torch.no_grad():
        recomputed = POLICY.distribution.params(POLICY.apply_stacked(kept, valid.obs))
    step_a, stats_a = trpo_step(params, train, valid, inner, first_order=first_order, meta_grad=kept_grad)
    step_b, stats_b = trpo_step(params, train, valid, inner, first_order=first_order,
                                meta_grad=kept_grad._replace(dist=tuple(d.detach() for d in recomputed)))
    assert stats_a == stats_b and all(torch.equal(step_a[k], step_b[k]) for k in params)
    # and it is the step the meta-step takes when it computes the meta-gradient itself (to rounding)
    step_c, stats_c = trpo_step(params, train, valid, inner, first_order=first_order)
    assert stats_c["step_fraction"] == stats_a["step_fraction"]
    _assert_trees_close(step_c, step_a, rtol=1e-8, atol=1e-10)
    # and against the explicit autograd reference of this file at second order
    if not first_order:
        _, explicit = ref_maml_surrogate(params, train, valid)
        for k in params:
            torch.testing.assert_close(grads[k], explicit[k], rtol=1e-7, atol=1e-9)
