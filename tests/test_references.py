"""References for the stateful and RL paths of ``meta``, and direct tests of public names that
had none.

Every reference here is independent of the library's code paths: ``torch.optim.Adam`` for the
forward values of inner Adam, hand-written differentiable loops with ``torch.autograd.grad``
(``create_graph=True`` for second order) for meta-gradients, per-task / per-episode Python loops
for the vmapped RL adaptation, closed forms and exact error messages for the small pieces.
Float64 throughout, so agreement is to ~1e-10 and any dropped state or wrong order shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.func import grad

import functional_metarl as fm
from functional_metarl import meta, optim
from functional_metarl import nn as fnn
from functional_metarl import rl
from functional_metarl.envs.sine import RegressionBatch
from functional_metarl.meta import MetaParams, RLBatch
from functional_metarl.optim import MetaSgdState
from functional_metarl.runners import atomic_save, atomic_write_json, read_checkpoint, resolve_device

torch.set_num_threads(1)
DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-11)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_trees_close(got: dict, want: dict, **tol) -> None:
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], **(tol or TOL), msg=lambda m, k=k: f"{k}: {m}")


# ============================================================================ supervised set-up
NET = fnn.mlp(1, 1, hidden=(6,), activation="tanh")


def _params(seed: int = 0) -> dict:
    return NET.init(seed, dtype=DT)


def _mse(params, batch):
    return ((NET.apply(params, batch.x) - batch.y) ** 2).mean()


def _task_batch(seed: int, tasks: int | None = None, k: int = 5) -> RegressionBatch:
    g = _gen(seed)
    lead = (k,) if tasks is None else (tasks, k)
    x = torch.rand(*lead, 1, generator=g, dtype=DT) * 4 - 2
    y = torch.sin(2 * x + float(seed)) + 0.1 * torch.randn(*lead, 1, generator=g, dtype=DT)
    return RegressionBatch(x, y)


def torch_optim_adam_steps(params, batches, loss_fn, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Forward reference: ``torch.optim.Adam`` on leaf copies, one step per batch."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(list(leaves.values()), lr=lr, betas=(b1, b2), eps=eps, foreach=False)
    for batch in batches:
        opt.zero_grad()
        loss_fn(leaves, batch).backward()
        opt.step()
    return {k: v.detach() for k, v in leaves.items()}


def hand_adam_steps(params, batches, loss_fn, lr, first_order=False, b1=0.9, b2=0.999, eps=1e-8):
    """Differentiable reference: Adam written out, moments and step count carried across steps;
    ``first_order`` treats each inner gradient as a constant."""
    p = dict(params)
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for t, batch in enumerate(batches, start=1):
        grads = torch.autograd.grad(loss_fn(p, batch), list(p.values()), create_graph=not first_order)
        for k, g in zip(list(p), grads):
            g = g.detach() if first_order else g
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            m_hat, v_hat = m[k] / (1 - b1**t), v2[k] / (1 - b2**t)
            p[k] = p[k] - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return p


def hand_sgd_steps(params, batches, loss_fn, lrs, first_order=False):
    """Differentiable reference: ``p <- p - alpha * g`` with ``lrs`` a float or a per-param dict (Meta-SGD)."""
    p = dict(params)
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(p, batch), list(p.values()), create_graph=not first_order)
        for k, g in zip(list(p), grads):
            alpha = lrs[k] if isinstance(lrs, dict) else lrs
            p[k] = p[k] - alpha * (g.detach() if first_order else g)
    return p


def _leaf_copy(tree: dict) -> dict:
    return {k: v.detach().clone().requires_grad_(True) for k, v in tree.items()}


# ============================================================================ adapt / adapt_sequence with Adam
def test_adapt_with_adam_matches_torch_optim_adam_over_steps():
    params, batch = _params(0), _task_batch(1)
    lr = 0.05
    for steps in (1, 3):
        want = torch_optim_adam_steps(params, [batch] * steps, _mse, lr)
        for first_order in (False, True):
            got = meta.adapt(params, batch, _mse, optim.adam(lr), steps=steps, first_order=first_order)
            _assert_trees_close(got, want)
    # and the hand-written loop is the same optimizer (it is the second-order reference below)
    _assert_trees_close({k: v.detach() for k, v in hand_adam_steps(_leaf_copy(params), [batch] * 3, _mse, lr).items()},
                        torch_optim_adam_steps(params, [batch] * 3, _mse, lr))


def test_adapt_sequence_with_adam_threads_the_state_across_different_batches():
    params = _params(2)
    batches = [_task_batch(s) for s in (3, 4, 5)]
    lr = 0.03
    got = meta.adapt_sequence(params, batches, _mse, optim.adam(lr))
    _assert_trees_close(got, torch_optim_adam_steps(params, batches, _mse, lr))
    # a given starting state continues the optimizer: 2 steps, then 1 more from the 2-step state
    opt = optim.adam(lr)
    state = opt.init(params)
    p = params
    for b in batches[:2]:
        updates, state = opt.update(grad(_mse)(p, b), state, p)
        p = optim.apply_updates(p, updates)
    _assert_trees_close(meta.adapt_sequence(p, batches[2:], _mse, opt, opt_state=state), got)
    with pytest.raises(ValueError, match="batches must be a non-empty sequence"):
        meta.adapt_sequence(params, [], _mse, opt)


@pytest.mark.parametrize("first_order", [False, True])
def test_adapt_sequence_adam_meta_gradient_matches_hand_written_loop(first_order):
    params = _params(6)
    batches = [_task_batch(s) for s in (7, 8, 9)]
    valid = _task_batch(10)
    lr = 0.04

    def outer(p):
        return _mse(meta.adapt_sequence(p, batches, _mse, optim.adam(lr), first_order=first_order), valid)

    got = grad(outer)(params)
    leaves = _leaf_copy(params)
    ref = _mse(hand_adam_steps(leaves, batches, _mse, lr, first_order=first_order), valid)
    want = dict(zip(leaves, torch.autograd.grad(ref, list(leaves.values()))))
    _assert_trees_close(got, want)
    torch.testing.assert_close(outer(params), ref.detach(), **TOL)


# ============================================================================ maml_loss / learners with Adam, Meta-SGD
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_loss_with_inner_adam_matches_per_task_reference(first_order):
    tasks, steps, lr = 3, 3, 0.05
    params = _params(11)
    support, query = _task_batch(12, tasks), _task_batch(13, tasks)

    def loss(p):
        return meta.maml_loss(p, support, query, _mse, _mse, optim.adam(lr), steps=steps, first_order=first_order)

    leaves = _leaf_copy(params)
    per_task = []
    for t in range(tasks):
        s_t, q_t = RegressionBatch(support.x[t], support.y[t]), RegressionBatch(query.x[t], query.y[t])
        adapted = hand_adam_steps(leaves, [s_t] * steps, _mse, lr, first_order=first_order)
        # the forward values are torch.optim.Adam's
        _assert_trees_close({k: v.detach() for k, v in adapted.items()}, torch_optim_adam_steps(params, [s_t] * steps, _mse, lr))
        per_task.append(_mse(adapted, q_t))
    ref = torch.stack(per_task).mean()
    want = dict(zip(leaves, torch.autograd.grad(ref, list(leaves.values()))))
    torch.testing.assert_close(loss(params), ref.detach(), **TOL)
    _assert_trees_close(grad(loss)(params), want)
    # the supervised learner built on the same core agrees
    learner = (meta.fomaml(_mse, optim.adam(lr), steps) if first_order else meta.maml(_mse, optim.adam(lr), steps))
    grads, value = learner.meta_gradient(learner.init(params), support, query)
    torch.testing.assert_close(value, ref.detach(), **TOL)
    _assert_trees_close(grads.params, want)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_sgd_step_sizes_and_params_match_hand_written_loop(first_order):
    tasks, steps = 2, 2
    params = _params(14)
    g = _gen(15)
    lrs = {k: 0.02 + 0.08 * torch.rand(v.shape, generator=g, dtype=DT) for k, v in params.items()}  # not all equal
    support, query = _task_batch(16, tasks), _task_batch(17, tasks)
    learner = meta.meta_sgd(_mse, init_lr=0.05, steps=steps, first_order=first_order)
    assert all(torch.all(v == 0.05) for v in learner.init(params).inner_state.lr.values())
    grads, value = learner.meta_gradient(MetaParams(params, MetaSgdState(lrs)), support, query)

    p_leaves, lr_leaves = _leaf_copy(params), _leaf_copy(lrs)
    ref = torch.stack([
        _mse(hand_sgd_steps(p_leaves, [RegressionBatch(support.x[t], support.y[t])] * steps, _mse, lr_leaves,
                            first_order=first_order), RegressionBatch(query.x[t], query.y[t]))
        for t in range(tasks)
    ]).mean()
    want = torch.autograd.grad(ref, list(p_leaves.values()) + list(lr_leaves.values()))
    torch.testing.assert_close(value, ref.detach(), **TOL)
    _assert_trees_close(grads.params, dict(zip(p_leaves, want[: len(p_leaves)])))
    _assert_trees_close(grads.inner_state.lr, dict(zip(lr_leaves, want[len(p_leaves):])))
    # meta.adapt with a given Meta-SGD state is the same inner loop, differentiable in the state
    s0 = RegressionBatch(support.x[0], support.y[0])
    adapted = meta.adapt(params, s0, _mse, optim.meta_sgd(0.05), steps=steps, opt_state=MetaSgdState(lrs))
    _assert_trees_close(adapted, {k: v.detach() for k, v in hand_sgd_steps(_leaf_copy(params), [s0] * steps, _mse, lrs).items()})


# ============================================================================ check_task_batches
def test_check_task_batches_returns_sizes_and_names_what_is_wrong():
    s, q = _task_batch(0, tasks=3, k=5), _task_batch(1, tasks=3, k=7)
    assert meta.check_task_batches(s, q) == (3, 5, 7)
    labels = RegressionBatch(torch.zeros(3, 5, 2), torch.zeros(3, 5, dtype=torch.int64))  # integer leaves may be [tasks, K]
    assert meta.check_task_batches(labels, labels) == (3, 5, 5)
    with pytest.raises(ValueError, match="is the leading task axis missing"):
        meta.check_task_batches(_task_batch(0), _task_batch(1))  # [K, 1]: no task axis
    with pytest.raises(ValueError, match="support has 3 tasks but query has 2"):
        meta.check_task_batches(s, _task_batch(1, tasks=2))
    with pytest.raises(ValueError, match="same structure"):
        meta.check_task_batches(s, (q.x,))
    with pytest.raises(TypeError, match="support leaf 0 must be a Tensor, got float"):
        meta.check_task_batches(RegressionBatch(1.0, s.y), RegressionBatch(1.0, q.y))
    with pytest.raises(ValueError, match="disagree"):
        meta.check_task_batches(s, RegressionBatch(torch.zeros(3, 7, 2, dtype=DT), q.y))
    with pytest.raises(ValueError, match="K must be >= 1"):
        meta.check_task_batches(s, RegressionBatch(q.x[:, :0], q.y[:, :0]))


# ============================================================================ RL adaptation vs per-task loops
OBS, ACT, T, E = 3, 2, 4, 3
GAUSS = fnn.gaussian_policy(OBS, ACT, hidden=(5,), init_std=0.7)
CATEG = fnn.categorical_policy(OBS, 4, hidden=(5,))


def _rl_batch(seed: int, policy, tasks: int | None = None) -> RLBatch:
    g = _gen(seed)
    lead = (T, E) if tasks is None else (tasks, T, E)
    obs = torch.randn(*lead, OBS, generator=g, dtype=DT)
    if policy is CATEG:
        actions = torch.randint(4, lead, generator=g)
    else:
        actions = torch.randn(*lead, ACT, generator=g, dtype=DT)
    advantages = torch.randn(*lead, generator=g, dtype=DT)
    lengths = torch.randint(1, T + 1, lead[:-2] + (E,), generator=g)  # episodes of different lengths
    mask = (torch.arange(T)[:, None] < lengths[..., None, :]).to(DT)
    return RLBatch(obs, actions, advantages * mask, mask)


def ref_reinforce(params, batch, policy):
    """``-(1/E) sum_e (1/L_e) sum_{t < L_e} log pi(a_te | s_te) A_te``, log-probs from the closed forms."""
    out = policy.apply(params, batch.obs)
    if policy is CATEG:
        logits = out
        log_prob = logits.gather(-1, batch.actions[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)
    else:
        mean, log_std = out
        z = (batch.actions - mean) / torch.exp(log_std)
        log_prob = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    total = 0.0
    for e in range(batch.mask.shape[1]):
        length = int(batch.mask[:, e].sum())
        total = total + sum(log_prob[t, e] * batch.advantages[t, e].detach() for t in range(length)) / length
    return -total / batch.mask.shape[1]


@pytest.mark.parametrize("policy", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_reinforce_loss_matches_per_episode_loop_and_its_gradient(policy):
    params = policy.init(0, dtype=DT)
    batch = _rl_batch(1, policy)
    torch.testing.assert_close(meta.reinforce_loss(params, batch, policy), ref_reinforce(params, batch, policy), **TOL)
    leaves = _leaf_copy(params)
    want = dict(zip(leaves, torch.autograd.grad(ref_reinforce(leaves, batch, policy), list(leaves.values()))))
    _assert_trees_close(grad(meta.reinforce_loss)(params, batch, policy), want)
    # advantages are constants: no gradient reaches them
    g_adv = grad(lambda a: meta.reinforce_loss(params, batch._replace(advantages=a), policy))(batch.advantages)
    assert torch.equal(g_adv, torch.zeros_like(g_adv))


def _ref_loss(policy):
    return lambda p, b: ref_reinforce(p, b, policy)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_adapt_rl_and_adapted_distribution_match_hand_written_loop(opt_name, first_order):
    params = GAUSS.init(2, dtype=DT)
    train = (_rl_batch(3, GAUSS), _rl_batch(4, GAUSS))  # one batch per inner step
    obs = torch.randn(T, E, OBS, generator=_gen(5), dtype=DT)
    lr = 0.1
    inner = optim.sgd(lr) if opt_name == "sgd" else optim.adam(lr)
    hand = (lambda p: hand_sgd_steps(p, train, _ref_loss(GAUSS), lr, first_order)) if opt_name == "sgd" else \
        (lambda p: hand_adam_steps(p, train, _ref_loss(GAUSS), lr, first_order))

    leaves = _leaf_copy(params)
    ref_adapted = hand(leaves)
    got = meta.adapt_rl(params, train, GAUSS, inner, steps=2, first_order=first_order)
    _assert_trees_close(got, {k: v.detach() for k, v in ref_adapted.items()})
    mean, log_std = meta.adapted_distribution(params, train, obs, GAUSS, inner, steps=2, first_order=first_order)
    ref_mean, ref_log_std = GAUSS.apply(ref_adapted, obs)
    torch.testing.assert_close(mean, ref_mean.detach(), **TOL)
    torch.testing.assert_close(log_std, ref_log_std.detach(), **TOL)

    # meta-gradient of a function of the adapted distribution (second order unless first_order)
    def outer(p):
        m, s = meta.adapted_distribution(p, train, obs, GAUSS, inner, steps=2, first_order=first_order)
        return (m**2).sum() + s.sum()

    want = dict(zip(leaves, torch.autograd.grad((ref_mean**2).sum() + ref_log_std.sum(), list(leaves.values()))))
    _assert_trees_close(grad(outer)(params), want)
    with pytest.raises(ValueError, match=r"train: got 2 per-step inner batches for 3 inner steps"):
        meta.adapt_rl(params, train, GAUSS, inner, steps=3)
    with pytest.raises(ValueError, match="policy template"):  # a plain network has no distribution
        meta.adapt_rl(params, train, fnn.mlp(OBS, ACT), inner, steps=2)


@pytest.mark.parametrize("first_order", [False, True])
def test_adapt_tasks_matches_per_task_loop(first_order):
    tasks, lr = 3, 0.2
    params = GAUSS.init(6, dtype=DT)
    train = (_rl_batch(7, GAUSS, tasks), _rl_batch(8, GAUSS, tasks))
    task = lambda b, i: RLBatch(*(None if x is None else x[i] for x in b))  # noqa: E731

    def per_task_reference(p_of_task, lrs):
        return [hand_sgd_steps(p_of_task(i), [task(b, i) for b in train], _ref_loss(GAUSS), lrs, first_order)
                for i in range(tasks)]

    # shared params, plain SGD; adapted leaves [N, *shape]
    leaves = _leaf_copy(params)
    ref = per_task_reference(lambda i: leaves, lr)
    got = meta.adapt_tasks(params, train, GAUSS, optim.sgd(lr), steps=2, first_order=first_order)
    for i in range(tasks):
        _assert_trees_close({k: v[i] for k, v in got.items()}, {k: v.detach() for k, v in ref[i].items()})
    # ... and the gradient through it, of a function mixing the tasks
    weights = torch.arange(1.0, tasks + 1, dtype=DT)

    def outer(p):
        adapted = meta.adapt_tasks(p, train, GAUSS, optim.sgd(lr), steps=2, first_order=first_order)
        return sum((weights[:, None] * adapted[k].reshape(tasks, -1) ** 2).sum() for k in adapted)

    ref_value = sum(weights[i] * (ref[i][k] ** 2).sum() for i in range(tasks) for k in ref[i])
    want = dict(zip(leaves, torch.autograd.grad(ref_value, list(leaves.values()))))
    _assert_trees_close(grad(outer)(params), want)

    # one parameter set per task, and a shared learned Meta-SGD state (differentiable)
    stacked = {k: v + 0.1 * torch.randn((tasks, *v.shape), generator=_gen(9), dtype=DT) for k, v in params.items()}
    lrs = {k: 0.05 + 0.1 * torch.rand(v.shape, generator=_gen(10), dtype=DT) for k, v in params.items()}
    s_leaves, lr_leaves = _leaf_copy(stacked), _leaf_copy(lrs)
    ref = per_task_reference(lambda i: {k: v[i] for k, v in s_leaves.items()}, lr_leaves)

    def adapted_of(sp, state_lr):
        return meta.adapt_tasks(sp, train, GAUSS, optim.meta_sgd(0.1), steps=2, first_order=first_order,
                                params_per_task=True, inner_state=MetaSgdState(state_lr))

    got = adapted_of(stacked, lrs)
    for i in range(tasks):
        _assert_trees_close({k: v[i] for k, v in got.items()}, {k: v.detach() for k, v in ref[i].items()})
    ref_value = sum((ref[i][k] ** 2).sum() for i in range(tasks) for k in ref[i])
    want = torch.autograd.grad(ref_value, list(s_leaves.values()) + list(lr_leaves.values()))
    g_stacked, g_lr = grad(lambda sp, lr_: sum((v**2).sum() for v in adapted_of(sp, lr_).values()), argnums=(0, 1))(stacked, lrs)
    _assert_trees_close(g_stacked, dict(zip(s_leaves, want[: len(s_leaves)])))
    _assert_trees_close(g_lr, dict(zip(lr_leaves, want[len(s_leaves):])))
    with pytest.raises(ValueError, match=r"train\[0\].mask expected shape \[N, T, E\]"):
        meta.adapt_tasks(params, (task(train[0], 0), task(train[1], 0)), GAUSS, optim.sgd(lr), steps=2)


# ============================================================================ rl: Rainbow loss and Q-values
def _projection_loop(support, probs, atoms):
    """Categorical projection (Bellemare et al. 2017, Algorithm 1) written as a loop over atoms."""
    v_min, v_max, k = float(atoms[0]), float(atoms[-1]), len(atoms)
    dz = (v_max - v_min) / (k - 1)
    out = [0.0] * k
    for z, p in zip(support.tolist(), probs.tolist()):
        b = (min(max(z, v_min), v_max) - v_min) / dz
        lo, hi = math.floor(b), math.ceil(b)
        if lo == hi:
            out[lo] += p
        else:
            out[lo] += p * (hi - b)
            out[hi] += p * (b - lo)
    return torch.tensor(out, dtype=DT)


def _rainbow_setup(num_atoms, noisy=True):
    from functional_metarl.runners.replay import Transition

    net = fnn.rainbow_mlp(3, 2, num_atoms=num_atoms, hidden=(8,), head_hidden=8, dueling=True, noisy=noisy)
    params = net.init(0, dtype=DT)
    target = {k: v + 0.05 * torch.randn(v.shape, generator=_gen(1), dtype=DT) for k, v in params.items()}
    g = _gen(2)
    b = 5
    batch = Transition(obs=torch.randn(b, 3, generator=g, dtype=DT), action=torch.randint(2, (b,), generator=g),
                       reward=torch.randn(b, generator=g, dtype=DT), next_obs=torch.randn(b, 3, generator=g, dtype=DT),
                       done=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0], dtype=DT), n_steps=torch.tensor([1, 3, 2, 3, 1]))
    weights = torch.rand(b, generator=g, dtype=DT)
    noise = [{k: v.to(DT) for k, v in net.sample_noise(_gen(s)).items()} if noisy else None for s in (3, 4)]
    return net, params, target, batch, weights, noise


@pytest.mark.parametrize("double", [True, False])
def test_rainbow_loss_distributional_matches_per_transition_loop(double):
    net, params, target, batch, weights, (n_on, n_tg) = _rainbow_setup(num_atoms=7)
    atoms = torch.linspace(-2.0, 3.0, 7, dtype=DT)
    gamma = 0.9
    loss, priorities = rl.rainbow_loss(params, target, batch, weights, n_on, n_tg, net=net, atoms=atoms, gamma=gamma, double=double)
    per = []
    for i in range(5):
        online_tm1 = net.apply(params, batch.obs[i : i + 1], n_on)[0]  # [A, K] logits
        target_t = net.apply(target, batch.next_obs[i : i + 1], n_tg)[0]
        selector = net.apply(params, batch.next_obs[i : i + 1], n_on)[0] if double else target_t
        a_star = int(torch.argmax((torch.softmax(selector, -1) * atoms).sum(-1)))
        discount = gamma ** int(batch.n_steps[i]) * (1 - float(batch.done[i]))
        m = _projection_loop(batch.reward[i] + discount * atoms, torch.softmax(target_t[a_star], -1), atoms)
        log_q = torch.log_softmax(online_tm1[int(batch.action[i])], -1)
        per.append(sum(float(m[j]) * (math.log(float(m[j])) - float(log_q[j])) for j in range(7) if m[j] > 0))
    per = torch.tensor(per, dtype=DT)
    torch.testing.assert_close(priorities, per.clamp(min=0), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(loss, (weights * per).mean(), rtol=1e-9, atol=1e-10)
    # the target net gets no gradient; the online net does
    g_target = grad(lambda tp: rl.rainbow_loss(params, tp, batch, weights, n_on, n_tg, net=net, atoms=atoms, gamma=gamma,
                                               double=double)[0])(target)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in g_target.values())
    g_online = grad(lambda p: rl.rainbow_loss(p, target, batch, weights, n_on, n_tg, net=net, atoms=atoms, gamma=gamma,
                                              double=double)[0])(params)
    assert any(v.abs().sum() > 0 for v in g_online.values())


def test_rainbow_loss_scalar_q_is_huber_on_the_n_step_double_q_error():
    net, params, target, batch, weights, _ = _rainbow_setup(num_atoms=1, noisy=False)
    gamma = 0.8
    loss, priorities = rl.rainbow_loss(params, target, batch, weights, None, None, net=net, atoms=None, gamma=gamma, double=True)
    q_tm1, q_sel, q_t = net.apply(params, batch.obs), net.apply(params, batch.next_obs), net.apply(target, batch.next_obs)
    huber = lambda x: 0.5 * x**2 if abs(x) <= 1 else abs(x) - 0.5  # noqa: E731
    per, td = [], []
    for i in range(5):
        discount = gamma ** int(batch.n_steps[i]) * (1 - float(batch.done[i]))
        y = float(batch.reward[i]) + discount * float(q_t[i, int(torch.argmax(q_sel[i]))])
        td.append(y - float(q_tm1[i, int(batch.action[i])]))
        per.append(huber(td[-1]))
    torch.testing.assert_close(priorities, torch.tensor(td, dtype=DT).abs(), **TOL)
    torch.testing.assert_close(loss, (weights * torch.tensor(per, dtype=DT)).mean(), **TOL)


def test_q_values_is_the_mean_over_atoms_or_the_raw_head():
    net = fnn.rainbow_mlp(3, 2, num_atoms=5, hidden=(8,), head_hidden=8)
    params = net.init(0, dtype=DT)
    obs = torch.randn(4, 3, generator=_gen(0), dtype=DT)
    noise = {k: v.to(DT) for k, v in net.sample_noise(_gen(1)).items()}
    atoms = torch.tensor([-1.0, 0.0, 0.5, 2.0, 4.0], dtype=DT)
    logits = net.apply(params, obs, noise)
    want = torch.tensor([[sum(math.exp(float(logits[b, a, j])) * float(atoms[j]) for j in range(5))
                          / sum(math.exp(float(logits[b, a, j])) for j in range(5)) for a in range(2)] for b in range(4)], dtype=DT)
    torch.testing.assert_close(rl.q_values(params, obs, net, atoms=atoms, noise=noise), want, **TOL)
    scalar = fnn.rainbow_mlp(3, 2, num_atoms=1, hidden=(8,), head_hidden=8, noisy=False)
    sp = scalar.init(0, dtype=DT)
    assert torch.equal(rl.q_values(sp, obs, scalar), scalar.apply(sp, obs))


# ============================================================================ rl: actor-critic pieces
def test_squared_td_error_value_and_constant_target():
    q, y = torch.tensor(1.5, dtype=DT), torch.tensor(-0.25, dtype=DT)
    assert float(rl.squared_td_error(q, y)) == pytest.approx(1.75**2)
    g_q, g_y = grad(rl.squared_td_error, argnums=(0, 1))(q, y)
    assert float(g_q) == pytest.approx(2 * 1.75) and float(g_y) == 0.0  # the target is held fixed


def test_check_transition_accepts_a_good_batch_and_names_each_bad_field():
    good = rl.TransitionBatch(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, 3), torch.zeros(4))
    rl.check_transition(good)  # no error
    with pytest.raises(TypeError, match="expected a TransitionBatch, got tuple"):
        rl.check_transition(tuple(good))
    with pytest.raises(TypeError, match="action must be a Tensor, got list"):
        rl.check_transition(good._replace(action=[0.0]))
    with pytest.raises(TypeError, match="reward must be a floating-point tensor, got torch.int64"):
        rl.check_transition(good._replace(reward=torch.zeros(4, dtype=torch.int64)))
    with pytest.raises(ValueError, match=r"reward expected shape \[B\], got \(4, 1\)"):
        rl.check_transition(good._replace(reward=torch.zeros(4, 1)))
    with pytest.raises(ValueError, match=r"terminated expected shape \[B\] with B=4, got \(3,\)"):
        rl.check_transition(good._replace(terminated=torch.zeros(3)))
    with pytest.raises(ValueError, match="obs and next_obs differ in shape"):
        rl.check_transition(good._replace(next_obs=torch.zeros(4, 5)))
    with pytest.raises(ValueError, match="my batch: obs expected shape"):
        rl.check_transition(good._replace(obs=torch.zeros(4)), where="my batch")


# ============================================================================ rl: option-critic pieces
def test_option_value_upon_arrival_closed_form():
    q, beta = torch.tensor([1.0, 3.0, -2.0], dtype=DT), torch.tensor([0.25, 0.5, 0.9], dtype=DT)
    for w, want in ((0, 0.75 * 1.0 + 0.25 * 3.0), (1, 3.0), (2, 0.1 * -2.0 + 0.9 * 3.0)):
        assert float(rl.option_value_upon_arrival(q, beta, torch.tensor(w))) == pytest.approx(want)
    # d U / d beta_w = max Q - Q_w, d U / d Q = (1 - beta_w) e_w + beta_w e_argmax
    g_q, g_beta = grad(rl.option_value_upon_arrival, argnums=(0, 1))(q, beta, torch.tensor(0))
    assert torch.allclose(g_beta, torch.tensor([2.0, 0.0, 0.0], dtype=DT))
    assert torch.allclose(g_q, torch.tensor([0.75, 0.25, 0.0], dtype=DT))


def test_intra_option_pg_loss_value_gradients_and_shape_check():
    lp, h, adv = torch.tensor(-1.2, dtype=DT), torch.tensor(0.8, dtype=DT), torch.tensor(0.5, dtype=DT)
    assert float(rl.intra_option_pg_loss(lp, h, adv, 0.1)) == pytest.approx(1.2 * 0.5 - 0.1 * 0.8)
    g_lp, g_h, g_adv = grad(rl.intra_option_pg_loss, argnums=(0, 1, 2))(lp, h, adv, 0.1)
    assert (float(g_lp), float(g_h), float(g_adv)) == pytest.approx((-0.5, -0.1, 0.0))  # advantage held fixed
    with pytest.raises(ValueError, match="log_prob and entropy expected scalars"):
        rl.intra_option_pg_loss(torch.zeros(2), h, adv)


def test_intra_option_policy_loss_is_softmax_policy_gradient():
    logits = torch.tensor([0.3, -0.4, 1.1], dtype=DT)
    a, adv, c = torch.tensor(2), torch.tensor(-0.7, dtype=DT), 0.05
    z = sum(math.exp(x) for x in logits.tolist())
    pi = [math.exp(x) / z for x in logits.tolist()]
    entropy = -sum(p * math.log(p) for p in pi)
    assert float(rl.intra_option_policy_loss(logits, a, adv, c)) == pytest.approx(-math.log(pi[2]) * -0.7 - c * entropy)
    # gradient: -adv (e_a - pi) - c dH/dlogits, dH/dlogits_j = -pi_j (log pi_j + H)
    g = grad(rl.intra_option_policy_loss)(logits, a, adv, c)
    want = [0.7 * ((j == 2) - pi[j]) + c * pi[j] * (math.log(pi[j]) + entropy) for j in range(3)]
    assert g.tolist() == pytest.approx(want)
    with pytest.raises(ValueError, match=r"logits_tm1 expected shape \[A\]"):
        rl.intra_option_policy_loss(logits[None], a, adv)


# ============================================================================ nn: noisy-net noise
def test_noise_transform_and_factorised_noise_elementwise():
    eps_in = torch.tensor([-4.0, 0.0, 0.25, 9.0], dtype=DT)
    eps_out = torch.tensor([1.0, -0.01, 2.25], dtype=DT)
    f = lambda x: math.copysign(math.sqrt(abs(x)), x) if x != 0 else 0.0  # noqa: E731
    assert fnn.noise_transform(eps_in).tolist() == pytest.approx([f(x) for x in eps_in.tolist()])
    w, b = fnn.factorised_noise(eps_in, eps_out)
    assert w.shape == (3, 4) and b.shape == (3,)
    for i, eo in enumerate(eps_out.tolist()):
        assert float(b[i]) == pytest.approx(f(eo))
        for j, ei in enumerate(eps_in.tolist()):
            assert float(w[i, j]) == pytest.approx(f(eo) * f(ei))


# ============================================================================ runners: files and devices
def test_atomic_save_writes_replaces_and_survives_a_failed_write(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    assert atomic_save({"a": torch.arange(3)}, path) == path  # creates the folder
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    atomic_save({"a": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    with pytest.raises(Exception):
        atomic_save({"a": lambda: 0}, path)  # cannot be pickled: the write fails part way
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]  # no temporary file left


def test_atomic_write_json_writes_and_survives_a_failed_write(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json({"x": [1, 2.5], "y": None}, path)
    assert json.loads(path.read_text()) == {"x": [1, 2.5], "y": None}
    with pytest.raises(TypeError):
        atomic_write_json({"x": object()}, path)
    assert json.loads(path.read_text()) == {"x": [1, 2.5], "y": None}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_read_checkpoint_checks_settings(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"config": {"lr": 0.1, "steps": 10}, "w": torch.zeros(2)}, path)
    state = read_checkpoint(path, {"lr": 0.1, "steps": 10}, may_differ=())
    assert torch.equal(state["w"], torch.zeros(2))
    read_checkpoint(path, {"lr": 0.1, "steps": 99}, may_differ=("steps",))  # a free setting may differ
    with pytest.raises(ValueError, match=r"different settings for \['lr'\]"):
        read_checkpoint(path, {"lr": 0.2, "steps": 10}, may_differ=("steps",))
    # a setting the file does not record takes its default; other values of it are refused
    read_checkpoint(path, {"lr": 0.1, "steps": 10, "new": True}, may_differ=(), defaults={"new": True})
    with pytest.raises(ValueError, match=r"different settings for \['new'\]"):
        read_checkpoint(path, {"lr": 0.1, "steps": 10, "new": False}, may_differ=(), defaults={"new": True})
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt", {}, may_differ=())


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu-ish")
    with pytest.raises(TypeError, match="device must be"):
        resolve_device(0)


# ============================================================================ named types and constants
def test_activations_table_drives_the_pure_mlp():
    x = torch.randn(4, 2, generator=_gen(0), dtype=DT)
    for name, module in fnn.ACTIVATIONS.items():
        net = fnn.mlp(2, 3, hidden=(5,), activation=name)
        p = net.init(0, dtype=DT)
        h = module()(x @ p["0.weight"].T + p["0.bias"])  # the table's module is the reference
        torch.testing.assert_close(net.apply(p, x), h @ p["2.weight"].T + p["2.bias"], **TOL)
    with pytest.raises(ValueError, match="activation"):
        fnn.mlp(2, 3, activation="not-an-activation")


def test_policy_distributions_and_policy_distribution():
    assert (GAUSS.distribution.name, CATEG.distribution.name) == ("gaussian", "categorical")
    assert GAUSS.distribution is fm.distributions.GAUSSIAN and CATEG.distribution is fm.distributions.CATEGORICAL
    assert fnn.mlp(2, 2).distribution is None
    obs = torch.randn(T, E, OBS, generator=_gen(1), dtype=DT)
    gp, cp = GAUSS.init(0, dtype=DT), CATEG.init(0, dtype=DT)
    mean, log_std = meta.policy_distribution(gp, obs, GAUSS)
    torch.testing.assert_close((mean, log_std), tuple(GAUSS.apply(gp, obs)), **TOL)
    (logits,) = meta.policy_distribution(cp, obs, CATEG)
    torch.testing.assert_close(logits, CATEG.apply(cp, obs), **TOL)
    stacked = {k: torch.stack([v, 2 * v]) for k, v in gp.items()}
    per_task = meta.policy_distribution(stacked, torch.stack([obs, obs]), GAUSS, params_per_task=True)
    for i in range(2):
        want = GAUSS.apply({k: v[i] for k, v in stacked.items()}, obs)
        torch.testing.assert_close(tuple(d[i] for d in per_task), tuple(want), **TOL)


def test_optimizer_states_adam_and_sgd():
    params = {"w": torch.tensor([1.0, -2.0], dtype=DT)}
    g = {"w": torch.tensor([0.5, 3.0], dtype=DT)}
    opt = optim.adam(0.1, b1=0.8, b2=0.9)
    state = opt.init(params)
    assert isinstance(state, optim.AdamState) and float(state.count) == 0 and torch.equal(state.mu["w"], torch.zeros(2, dtype=DT))
    _, state = opt.update(g, state, params)
    assert float(state.count) == 1
    torch.testing.assert_close(state.mu["w"], 0.2 * g["w"], **TOL)
    torch.testing.assert_close(state.nu["w"], 0.1 * g["w"] ** 2, **TOL)
    sgd = optim.sgd(0.1)
    assert sgd.init(params) == optim.SgdState()
    updates, s2 = sgd.update(g, sgd.init(params), params)
    assert s2 == optim.SgdState() and torch.equal(updates["w"], -0.1 * g["w"])


def test_result_types_of_option_critic_and_q_networks():
    from functional_metarl.envs import FourRooms, FourRoomsTask

    task = FourRooms().task(torch.tensor([62, 3]))
    assert isinstance(task, FourRoomsTask) and task.goal.tolist() == [62, 3]
    q_tm1, q_t, beta = torch.tensor([0.2, 0.9], dtype=DT), torch.tensor([0.5, 1.5], dtype=DT), torch.tensor([0.3, 0.6], dtype=DT)
    w, r, d = torch.tensor(0), torch.tensor(1.0, dtype=DT), torch.tensor(0.9, dtype=DT)
    losses = rl.option_critic_losses(q_tm1, torch.zeros(2, 3, dtype=DT), q_t, beta, w, torch.tensor(1), r, d)
    assert isinstance(losses, rl.OptionCriticLosses)
    g = 1.0 + 0.9 * (0.7 * 0.5 + 0.3 * 1.5)
    assert float(losses.target) == pytest.approx(g) and float(losses.advantage) == pytest.approx(g - 0.2)
    actor = rl.option_actor_losses(torch.tensor(-0.5, dtype=DT), torch.tensor(0.1, dtype=DT), q_tm1, q_t, beta, w, r, d,
                                   torch.tensor(0.0, dtype=DT))
    assert isinstance(actor, rl.OptionActorLosses) and float(actor.advantage) == pytest.approx(g - 0.2)
    heads = fnn.option_critic_net(3, 2, num_actions=4, hidden=(8,))
    assert isinstance(heads.apply(heads.init(0), torch.zeros(5, 3)), fnn.OptionHeads)
    qnet = fnn.rainbow_mlp(3, 2, num_atoms=5, hidden=(8,), head_hidden=8)
    assert isinstance(qnet, fnn.QNetwork)
    assert qnet.apply(qnet.init(0), torch.zeros(4, 3), qnet.sample_noise(_gen(0))).shape == (4, 2, 5)  # [B, A, K]


def test_learner_and_trpo_stats_types():
    learner = meta.maml(_mse, optim.sgd(0.1), steps=2)
    assert isinstance(learner, meta.MetaLearner) and (learner.name, learner.steps, learner.first_order) == ("maml", 2, False)
    assert (meta.fomaml(_mse, optim.sgd(0.1)).name, meta.fomaml(_mse, optim.sgd(0.1)).first_order) == ("fomaml", True)
    params = GAUSS.init(0, dtype=DT)
    train, valid = _rl_batch(20, GAUSS, tasks=2), _rl_batch(21, GAUSS, tasks=2)
    config = meta.TRPOConfig(max_kl=1e-3, fisher_subsample=2, fisher_tasks=2)
    step = meta.trpo(GAUSS, optim.sgd(0.1), config=config)
    assert isinstance(step, meta.MetaStep)
    state = step.init(params)
    assert isinstance(state, meta.TRPOState)
    _, state, stats = step.update(params, state, train, valid)
    assert isinstance(state, meta.TRPOState)
    assert isinstance(stats, dict) and set(stats) == {"meta_loss", "loss_after", "kl", "step_fraction", "grad_norm"}
    assert all(isinstance(v, float) for v in stats.values())
    assert 0.0 <= stats["step_fraction"] <= 1.0 and stats["kl"] <= config.max_kl * (1 + 1e-9)


def test_episode_seed_is_distinct_and_is_what_rainbow_resets_with():
    import gymnasium as gym

    from functional_metarl.runners import RainbowConfig, RainbowTrainer
    from functional_metarl.runners.rainbow import episode_seed

    seeds = {episode_seed(s, k) for s in (0, 1, 2) for k in range(200)}
    assert len(seeds) == 600 and episode_seed(1, 5) == episode_seed(1, 5)
    trainer = RainbowTrainer(RainbowConfig(num_envs=2, device="cpu", hidden=(8,), head_hidden=8, seed=7))
    trainer._reset_envs()
    for i in range(2):
        want, _ = gym.make("CartPole-v1").reset(seed=episode_seed(7, i))
        assert torch.equal(trainer._obs[i], torch.as_tensor(want))
    trainer.close()
