"""Tests for the supervised meta-learners (functional_metarl.meta.supervised).

References are independent of the library: an explicit per-task ``torch.autograd`` loop on a
hand-written MLP forward (``F.linear``), central finite differences in float64, and Reptile's
update written out from its formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from functional_metarl import meta, optim
from functional_metarl import nn as fnn
from functional_metarl.envs import RegressionBatch, SineRegression
from functional_metarl.meta import MetaParams

DT = torch.float64
LR = 0.05


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _setup(activation: str = "relu", tasks: int = 3, k: int = 5, hidden=(8, 8), seed: int = 0):
    net = fnn.mlp(1, 1, hidden, activation)
    params = net.init(seed, dtype=DT)
    _, support, query = SineRegression().sample(tasks, k, k + 2, _gen(seed + 1), dtype=DT)
    return net, params, support, query


def _forward(p, x, activation="relu"):
    act = torch.relu if activation == "relu" else torch.tanh
    h = act(F.linear(x, p["0.weight"], p["0.bias"]))
    h = act(F.linear(h, p["2.weight"], p["2.bias"]))
    return F.linear(h, p["4.weight"], p["4.bias"])


def _mse(p, x, y, activation="relu"):
    return ((_forward(p, x, activation) - y) ** 2).mean()


def _reference(params, support, query, steps, first_order=False, head=None, lrs=None, activation="relu"):
    """Meta-gradient by an explicit task loop with torch.autograd (create_graph for 2nd order)."""
    theta = {k: v.clone().requires_grad_() for k, v in params.items()}
    alpha = {k: v.clone().requires_grad_() for k, v in lrs.items()} if lrs is not None else None
    adapted_keys = list(head) if head is not None else list(theta)
    total = 0.0
    tasks = support.x.shape[0]
    for t in range(tasks):
        fast = dict(theta)
        for _ in range(steps):
            loss = _mse(fast, support.x[t], support.y[t], activation)
            gs = torch.autograd.grad(loss, [fast[k] for k in adapted_keys], create_graph=not first_order)
            for k, g in zip(adapted_keys, gs):
                step = alpha[k] if alpha is not None else LR
                fast[k] = fast[k] - step * g
        total = total + _mse(fast, query.x[t], query.y[t], activation)
    total = total / tasks
    leaves = list(theta.values()) + (list(alpha.values()) if alpha is not None else [])
    grads = torch.autograd.grad(total, leaves)
    g_theta = dict(zip(theta, grads[: len(theta)]))
    g_alpha = dict(zip(alpha, grads[len(theta):])) if alpha is not None else None
    return g_theta, g_alpha, total.detach()


def _assert_tree_close(a, b, rtol=1e-9, atol=1e-11):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")


# ----------------------------------------------------------------------------- vs autograd loop


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_matches_autograd_loop(steps, first_order):
    net, params, support, query = _setup()
    learner = meta.maml(meta.mse_loss(net.apply), optim.sgd(LR), steps, first_order=first_order)
    grads, loss = learner.meta_gradient(learner.init(params), support, query)
    ref, _, ref_loss = _reference(params, support, query, steps, first_order)
    _assert_tree_close(grads.params, ref)
    torch.testing.assert_close(loss, ref_loss)
    assert grads.inner_state == ()


def test_fomaml_is_maml_first_order_and_differs_from_second_order():
    net, params, support, query = _setup()
    loss_fn = meta.mse_loss(net.apply)
    mp = MetaParams(params)
    g_fo, _ = meta.fomaml(loss_fn, optim.sgd(LR), 2).meta_gradient(mp, support, query)
    g_fo2, _ = meta.maml(loss_fn, optim.sgd(LR), 2, first_order=True).meta_gradient(mp, support, query)
    g_so, _ = meta.maml(loss_fn, optim.sgd(LR), 2).meta_gradient(mp, support, query)
    _assert_tree_close(g_fo.params, g_fo2.params, rtol=0, atol=0)
    assert max((g_fo.params[k] - g_so.params[k]).abs().max() for k in params) > 1e-6


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_sgd_matches_autograd_loop_and_step_sizes_get_gradients(first_order):
    net, params, support, query = _setup()
    learner = meta.meta_sgd(meta.mse_loss(net.apply), init_lr=LR, steps=2, first_order=first_order)
    mp = learner.init(params)
    assert isinstance(mp.inner_state, optim.MetaSgdState)
    # Distinct step sizes per entry, so that the test sees them used elementwise.
    lrs = {k: LR * (1 + 0.5 * torch.rand(v.shape, generator=_gen(7), dtype=DT)) for k, v in params.items()}
    mp = MetaParams(params, optim.MetaSgdState(lrs))
    grads, _ = learner.meta_gradient(mp, support, query)
    ref_theta, ref_alpha, _ = _reference(params, support, query, 2, first_order, lrs=lrs)
    _assert_tree_close(grads.params, ref_theta)
    _assert_tree_close(grads.inner_state.lr, ref_alpha)
    for k, g in grads.inner_state.lr.items():
        assert g.abs().sum() > 0, f"step size {k} got no gradient"


@pytest.mark.parametrize("first_order", [False, True])
def test_anil_matches_autograd_loop_and_leaves_body_unadapted(first_order):
    net, params, support, query = _setup()
    head = meta.last_layer(params)
    assert head == ("4.weight", "4.bias")
    learner = meta.anil(meta.mse_loss(net.apply), optim.sgd(LR), head, steps=2, first_order=first_order)
    mp = learner.init(params)
    grads, _ = learner.meta_gradient(mp, support, query)
    ref, _, _ = _reference(params, support, query, 2, first_order, head=head)
    _assert_tree_close(grads.params, ref)
    # The body still learns (through the outer loss), but is not adapted in the inner loop.
    assert grads.params["0.weight"].abs().sum() > 0
    adapted = learner.adapt(mp, support)
    tasks = support.x.shape[0]
    for k in params:
        if k in head:
            assert not torch.allclose(adapted[k], params[k].expand(tasks, *params[k].shape))
        else:
            assert torch.equal(adapted[k], params[k].expand(tasks, *params[k].shape)), k


def test_reptile_update_equals_its_formula():
    net, params, support, query = _setup()
    steps, epsilon = 3, 0.3
    learner = meta.reptile(meta.mse_loss(net.apply), optim.sgd(LR), steps)
    outer = optim.sgd(epsilon)
    mp = learner.init(params)
    new_mp, _, _ = meta.meta_update(learner, outer, mp, outer.init(mp), support, query)
    # theta + epsilon * (mean_t phi_t - theta), phi_t by plain SGD on task t's support set.
    phis = []
    for t in range(support.x.shape[0]):
        fast = {k: v.clone().requires_grad_() for k, v in params.items()}
        for _ in range(steps):
            gs = torch.autograd.grad(_mse(fast, support.x[t], support.y[t]), list(fast.values()))
            fast = {k: (v - LR * g).detach().requires_grad_() for (k, v), g in zip(fast.items(), gs)}
        phis.append({k: v.detach() for k, v in fast.items()})
    expected = {k: params[k] + epsilon * (torch.stack([p[k] for p in phis]).mean(0) - params[k]) for k in params}
    _assert_tree_close(new_mp.params, expected)


def test_inner_adam_gradients_match_finite_differences():
    # "Any inner optimizer from optim": MAML differentiates exactly through Adam's inner steps.
    net, params, support, query = _setup("tanh", tasks=2, k=4)
    learner = meta.maml(meta.mse_loss(net.apply), optim.adam(0.01), steps=2)
    _check_finite_differences(learner, params, support, query)


# ----------------------------------------------------------------------------- finite differences


def _check_finite_differences(learner, params, support, query, eps=1e-6, directions=3):
    mp = learner.init(params)
    grads, _ = learner.meta_gradient(mp, support, query)
    g = torch.func.grad(lambda m: learner.meta_loss(m, support, query))(mp)
    for a, b in zip(torch.utils._pytree.tree_leaves(grads), torch.utils._pytree.tree_leaves(g)):
        torch.testing.assert_close(a, b)
    gen = _gen(11)
    for _ in range(directions):
        v = torch.utils._pytree.tree_map(lambda x: torch.randn(x.shape, generator=gen, dtype=DT), mp)
        plus = torch.utils._pytree.tree_map(lambda x, d: x + eps * d, mp, v)
        minus = torch.utils._pytree.tree_map(lambda x, d: x - eps * d, mp, v)
        fd = (learner.meta_loss(plus, support, query) - learner.meta_loss(minus, support, query)) / (2 * eps)
        analytic = sum(
            (a * d).sum()
            for a, d in zip(torch.utils._pytree.tree_leaves(grads), torch.utils._pytree.tree_leaves(v))
        )
        torch.testing.assert_close(analytic, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["maml", "meta_sgd", "anil"])
def test_second_order_gradients_match_finite_differences(name):
    net, params, support, query = _setup("tanh", tasks=2, k=4)
    loss_fn = meta.mse_loss(net.apply)
    learner = {
        "maml": lambda: meta.maml(loss_fn, optim.sgd(LR), steps=3),
        "meta_sgd": lambda: meta.meta_sgd(loss_fn, LR, steps=2),
        "anil": lambda: meta.anil(loss_fn, optim.sgd(LR), meta.last_layer(params), steps=2),
    }[name]()
    _check_finite_differences(learner, params, support, query)


# ----------------------------------------------------------------------------- evaluation helpers


def test_adapt_and_adaptation_losses():
    net, params, support, query = _setup()
    loss_fn = meta.mse_loss(net.apply)
    learner = meta.maml(loss_fn, optim.sgd(LR), steps=1)
    mp = learner.init(params)
    curve = meta.adaptation_losses(learner, loss_fn, mp, support, query, steps=range(4))
    assert curve.shape == (4, 3)
    # Row s holds each task's query loss after s steps, computed independently.
    for s in range(4):
        per_task = []
        for t in range(support.x.shape[0]):
            fast = dict(params)
            for _ in range(s):
                fast_r = {k: v.clone().requires_grad_() for k, v in fast.items()}
                gs = torch.autograd.grad(_mse(fast_r, support.x[t], support.y[t]), list(fast_r.values()))
                fast = {k: (v - LR * g).detach() for (k, v), g in zip(fast.items(), gs)}
            per_task.append(_mse(fast, query.x[t], query.y[t]))
        torch.testing.assert_close(curve[s], torch.stack(per_task))
    adapted0 = learner.adapt(mp, support, 0)
    assert adapted0["0.weight"].shape == (3, *params["0.weight"].shape)


def test_meta_update_with_adam_reduces_the_meta_loss():
    net, params, support, query = _setup(tasks=4)
    learner = meta.maml(meta.mse_loss(net.apply), optim.sgd(LR), steps=1)
    outer = optim.adam(1e-2)
    mp = learner.init(params)
    state = outer.init(mp)
    first = None
    for _ in range(30):
        mp, state, loss = meta.meta_update(learner, outer, mp, state, support, query)
        first = loss if first is None else first
    assert loss < first
    assert isinstance(mp, MetaParams)


# ----------------------------------------------------------------------------- compile


@pytest.mark.parametrize("case", ["maml", "meta_sgd_chunked"])
def test_compiled_equals_eager(case):
    torch._dynamo.reset()
    net, params, support, query = _setup(tasks=4, k=3, hidden=(4, 4))
    params = {k: v.float() for k, v in params.items()}
    support = RegressionBatch(*(x.float() for x in support))
    query = RegressionBatch(*(x.float() for x in query))
    loss_fn = meta.mse_loss(net.apply)
    if case == "maml":
        eager, compiled = (meta.maml(loss_fn, optim.sgd(LR), steps=2, compile=c) for c in (False, True))
    else:  # Meta-SGD's learned step sizes through the compiled, chunked path (2 chunks of 2)
        eager, compiled = (meta.meta_sgd(loss_fn, LR, steps=2, compile=c, chunk_size=2) for c in (False, True))
    mp = eager.init(params)
    g_e, l_e = eager.meta_gradient(mp, support, query)
    g_c, l_c = compiled.meta_gradient(mp, support, query)
    torch.testing.assert_close(l_c, l_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.utils._pytree.tree_leaves(g_c), torch.utils._pytree.tree_leaves(g_e)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def _bad(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


STEPS_ERROR = {0: r"steps must be an int in \[1, inf\), got 0", -1: r"steps must be an int in \[1, inf\), got -1",
               1.5: r"steps must be an int, got 1.5", True: r"steps must be an int, got True"}


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_inner_steps_below_one_raise(steps):
    net, params, support, query = _setup()
    loss_fn = meta.mse_loss(net.apply)
    for factory in (
        lambda: meta.maml(loss_fn, optim.sgd(LR), steps),
        lambda: meta.meta_sgd(loss_fn, LR, steps),
        lambda: meta.anil(loss_fn, optim.sgd(LR), meta.last_layer(params), steps),
        lambda: meta.reptile(loss_fn, optim.sgd(LR), steps),
    ):
        _bad(ValueError, STEPS_ERROR[steps], factory)
    learner = meta.maml(loss_fn, optim.sgd(LR), 1)
    if steps != 0:  # adapt takes 0 steps (the initial params), not fewer
        _bad(ValueError, STEPS_ERROR[steps].replace("1, inf", "0, inf"), learner.adapt, learner.init(params), support, steps)


def test_k_zero_and_mismatched_batches_raise():
    net, params, support, query = _setup(tasks=3, k=4)
    learner = meta.maml(meta.mse_loss(net.apply), optim.sgd(LR), 1)
    mp = learner.init(params)
    mg = learner.meta_gradient
    empty = RegressionBatch(support.x[:, :0], support.y[:, :0])
    _bad(ValueError, "K must be >= 1", mg, mp, empty, query)
    _bad(ValueError, "K must be >= 1", mg, mp, support, RegressionBatch(query.x[:, :0], query.y[:, :0]))
    _bad(ValueError, "support has 3 tasks but query has 2", mg, mp, support, RegressionBatch(query.x[:2], query.y[:2]))
    _bad(ValueError, "disagree", mg, mp, support, RegressionBatch(query.x.expand(3, 6, 2), query.y))
    _bad(ValueError, "disagree", mg, mp, support, RegressionBatch(query.x.float(), query.y))
    _bad(ValueError, "share", mg, mp, RegressionBatch(support.x, support.y[:, :2]), query)
    _bad(ValueError, "same structure", mg, mp, support, (query.x, query.y, query.y))
    _bad(ValueError, r"\[tasks, K, ", mg, mp, RegressionBatch(support.x[0, :, 0], support.y[0, :, 0]),
         RegressionBatch(query.x[0, :, 0], query.y[0, :, 0]))
    _bad(TypeError, "Tensor", mg, mp, RegressionBatch(support.x, "y"), RegressionBatch(query.x, "y"))


def test_bad_meta_params_and_config_raise():
    net, params, support, query = _setup()
    loss_fn = meta.mse_loss(net.apply)
    learner = meta.maml(loss_fn, optim.sgd(LR), 1)
    _bad(TypeError, "MetaParams", learner.meta_gradient, params, support, query)
    _bad(TypeError, "non-empty dict", learner.init, [1, 2])
    _bad(TypeError, "floating point", learner.init, {"w": torch.ones(2, dtype=torch.long)})
    _bad(ValueError, "head names", meta.anil(loss_fn, optim.sgd(LR), ["nope"]).init, params)
    _bad(TypeError, "sequence of param names", meta.anil, loss_fn, optim.sgd(LR), "4.weight")
    _bad(ValueError, "at least one", meta.anil, loss_fn, optim.sgd(LR), [])
    _bad(TypeError, "GradientTransformation", meta.maml, loss_fn, "sgd")
    _bad(TypeError, "callable", meta.maml, "mse", optim.sgd(LR))
    ms = meta.meta_sgd(loss_fn, LR)
    wrong = MetaParams(params, optim.MetaSgdState({"0.weight": params["0.weight"]}))
    _bad(ValueError, "inner_state.lr must have the keys", ms.meta_gradient, wrong, support, query)


def test_non_finite_meta_loss_raises():
    net, params, support, query = _setup()
    learner = meta.maml(meta.mse_loss(net.apply), optim.sgd(1e30), 2)
    _bad(ValueError, "not finite", learner.meta_gradient, learner.init(params), support, query)


# ----------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("name", ["maml", "meta_sgd", "reptile"])
def test_chunked_equals_all_at_once(name):
    net, params, support, query = _setup(tasks=5)
    loss_fn = meta.mse_loss(net.apply)
    make = {
        "maml": lambda c: meta.maml(loss_fn, optim.sgd(LR), 2, chunk_size=c),
        "meta_sgd": lambda c: meta.meta_sgd(loss_fn, LR, 2, chunk_size=c),
        "reptile": lambda c: meta.reptile(loss_fn, optim.sgd(LR), 2, chunk_size=c),
    }[name]
    mp = make(None).init(params)
    g_all, l_all = make(None).meta_gradient(mp, support, query)
    for chunk in (1, 2, 5, 9):
        g, l = make(chunk).meta_gradient(mp, support, query)
        torch.testing.assert_close(l, l_all)
        for a, b in zip(torch.utils._pytree.tree_leaves(g), torch.utils._pytree.tree_leaves(g_all)):
            torch.testing.assert_close(a, b)
    _bad(ValueError, "chunk_size", make, 0)
