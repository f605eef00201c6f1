"""Tests for functional_metarl.tree, functional_metarl.nn and functional_metarl.optim.

Every numeric check compares against an independent reference: torch flatten / hand-written
forward passes / explicit closed forms / torch.optim.Adam.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import optree
import pytest
import torch
from torch.func import grad, vmap

from functional_metarl import nn as fnn
from functional_metarl import optim
from functional_metarl.tree import (
    check_params,
    ravel,
    tree_add,
    tree_axpy,
    tree_detach,
    tree_dot,
    tree_norm,
    tree_scale,
    tree_size,
    tree_sub,
    tree_zeros_like,
)

DT = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 0, dtype=DT) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


class _Pair(NamedTuple):
    left: torch.Tensor
    right: torch.Tensor


def _nested_tree(seed: int = 0):
    g = _gen(seed)
    return {
        "zeta": torch.randn(3, 4, generator=g, dtype=DT),
        "alpha": [torch.randn(5, generator=g, dtype=DT), torch.randn((), generator=g, dtype=DT)],
        "mid": _Pair(torch.randn(2, 1, 3, generator=g, dtype=DT), torch.randn(1, generator=g, dtype=DT)),
    }


def _leaves_in_order(tree):
    # Independent flattening in the order the tree would be traversed by sorted dict keys
    # (the order is irrelevant for the comparisons below which only use permutation-invariant
    # quantities or explicit per-leaf checks).
    out = []
    if isinstance(tree, dict):
        for k in sorted(tree):
            out += _leaves_in_order(tree[k])
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            out += _leaves_in_order(v)
    else:
        out.append(tree)
    return out


# ----------------------------------------------------------------------------------------------
# tree
# ----------------------------------------------------------------------------------------------


def test_ravel_unravel_round_trip_structure_shapes_values():
    tree = _nested_tree(0)
    flat, unravel = ravel(tree)
    leaves = _leaves_in_order(tree)
    assert flat.ndim == 1
    assert flat.shape[0] == sum(x.numel() for x in leaves) == 12 + 5 + 1 + 6 + 1
    # flat holds exactly the multiset of all leaf values
    ref_sorted = torch.sort(torch.cat([x.reshape(-1) for x in leaves])).values
    torch.testing.assert_close(torch.sort(flat).values, ref_sorted, rtol=0, atol=0)

    back = unravel(flat)
    assert isinstance(back, dict)
    assert list(back.keys()) == list(tree.keys())  # original key order preserved
    assert isinstance(back["alpha"], list) and len(back["alpha"]) == 2
    assert isinstance(back["mid"], _Pair)
    for a, b in [
        (back["zeta"], tree["zeta"]),
        (back["alpha"][0], tree["alpha"][0]),
        (back["alpha"][1], tree["alpha"][1]),
        (back["mid"].left, tree["mid"].left),
        (back["mid"].right, tree["mid"].right),
    ]:
        assert a.shape == b.shape
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # unravel of a *different* vector puts its entries exactly where ravel took them from
    other = torch.arange(flat.numel(), dtype=DT)
    rebuilt = unravel(other)
    flat2, _ = ravel(rebuilt)
    torch.testing.assert_close(flat2, other, rtol=0, atol=0)


def test_ravel_position_mapping_matches_leaves():
    # ravel of a tree whose leaves are filled with their leaf index: every segment of the flat
    # vector holds a constant, and segment sizes equal the leaf sizes.
    tree = {"b": torch.zeros(2, 3), "a": torch.zeros(4), "c": torch.zeros(())}
    tagged = {k: torch.full_like(v, float(i)) for i, (k, v) in enumerate(tree.items())}
    flat, unravel = ravel(tagged)
    back = unravel(flat)
    for k in tree:
        assert torch.all(back[k] == tagged[k])
    counts = {float(i): int((flat == float(i)).sum()) for i in range(3)}
    assert counts == {0.0: 6, 1.0: 4, 2.0: 1}


def test_unravel_is_differentiable():
    tree = _nested_tree(1)
    coefs = _nested_tree(2)
    flat, unravel = ravel(tree)
    coef_flat, _ = ravel(coefs)

    def f(v):
        t = unravel(v)
        c = coefs
        return (
            (t["zeta"] * c["zeta"]).sum()
            + (t["alpha"][0] * c["alpha"][0]).sum()
            + (t["alpha"][1] * c["alpha"][1]).sum()
            + (t["mid"].left * c["mid"].left).sum()
            + (t["mid"].right * c["mid"].right).sum()
        )

    g = grad(f)(flat)
    torch.testing.assert_close(g, coef_flat)
    # also with classic autograd
    v = flat.clone().requires_grad_(True)
    out = unravel(v)
    (out["zeta"] ** 2).sum().backward()
    zero = {
        "zeta": 2 * tree["zeta"],
        "alpha": [torch.zeros_like(tree["alpha"][0]), torch.zeros_like(tree["alpha"][1])],
        "mid": _Pair(torch.zeros_like(tree["mid"].left), torch.zeros_like(tree["mid"].right)),
    }
    expected, _ = ravel(zero)
    torch.testing.assert_close(v.grad, expected)


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(26), torch.zeros(25, 1), torch.zeros(())])
def test_unravel_wrong_length_raises(bad):
    _, unravel = ravel(_nested_tree(0))
    with pytest.raises(ValueError, match="25"):
        unravel(bad.to(DT))


def test_tree_dot_and_norm_match_flatten():
    a = _nested_tree(3)
    b = _nested_tree(4)
    fa = torch.cat([x.reshape(-1) for x in _leaves_in_order(a)])
    fb = torch.cat([x.reshape(-1) for x in _leaves_in_order(b)])
    torch.testing.assert_close(tree_dot(a, b), torch.dot(fa, fb))
    torch.testing.assert_close(tree_norm(a), torch.linalg.vector_norm(fa))
    assert tree_dot(a, b).ndim == 0 and tree_norm(a).ndim == 0
    # dict key insertion order must not matter: leaves are matched by key
    b_reordered = {k: b[k] for k in reversed(list(b))}
    torch.testing.assert_close(tree_dot(a, b_reordered), torch.dot(fa, fb))


def test_tree_arithmetic_helpers():
    a = {"w": _randn(3, 2, seed=5), "b": _randn(2, seed=6)}
    b = {"w": _randn(3, 2, seed=7), "b": _randn(2, seed=8)}
    for k in a:
        torch.testing.assert_close(tree_add(a, b)[k], a[k] + b[k])
        torch.testing.assert_close(tree_sub(a, b)[k], a[k] - b[k])
        torch.testing.assert_close(tree_scale(a, 2.5)[k], 2.5 * a[k])
        torch.testing.assert_close(tree_axpy(-0.3, a, b)[k], -0.3 * a[k] + b[k])
        assert torch.all(tree_zeros_like(a)[k] == 0)
    assert tree_size(a) == 8
    x = {"w": _randn(2, seed=9).requires_grad_(True)}
    assert not tree_detach(x)["w"].requires_grad


def test_check_params_messages():
    expected = {"w": torch.Size([3, 2]), "b": torch.Size([3])}
    ok = {"w": torch.zeros(3, 2), "b": torch.zeros(3)}
    check_params(ok, expected, "Net")
    # a stack of per-task params is rejected outside vmap (it goes through vmap instead)
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        check_params({"w": torch.zeros(4, 3, 2), "b": torch.zeros(4, 3)}, expected, "Net")
    with pytest.raises(ValueError, match="'b'|b"):
        check_params({"w": torch.zeros(3, 2)}, expected, "Net")
    with pytest.raises(ValueError, match="w"):
        check_params({"w": torch.zeros(2, 3), "b": torch.zeros(3)}, expected, "Net")
    with pytest.raises(TypeError):
        check_params([torch.zeros(3)], expected, "Net")


# ----------------------------------------------------------------------------------------------
# nn
# ----------------------------------------------------------------------------------------------

_ACT = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": torch.nn.functional.elu,
    "gelu": torch.nn.functional.gelu,
    "silu": torch.nn.functional.silu,
}


def _hand_mlp(params, prefix, n_layers, act, x):
    h = x
    for i in range(n_layers):
        W = params[f"{prefix}{2 * i}.weight"]
        b = params[f"{prefix}{2 * i}.bias"]
        h = h @ W.T + b
        if i < n_layers - 1:
            h = act(h)
    return h


def _randomise(params, seed):
    # Non-zero biases so the hand-written forward is really exercised.
    g = _gen(seed)
    return {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}


@pytest.mark.parametrize("activation", sorted(_ACT))
def test_mlp_apply_matches_hand_forward(activation):
    net = fnn.mlp(3, 2, hidden=(5, 4), activation=activation)
    params = _randomise(net.init(0), 1)
    assert set(params) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    x = _randn(7, 3, seed=2)
    out = net.apply(params, x)
    ref = _hand_mlp(params, "", 3, _ACT[activation], x)
    torch.testing.assert_close(out, ref)
    # extra leading batch axes and an unbatched input
    x3 = _randn(2, 6, 3, seed=3)
    torch.testing.assert_close(net.apply(params, x3), _hand_mlp(params, "", 3, _ACT[activation], x3))
    torch.testing.assert_close(net.apply(params, x[0]), ref[0])


def test_mlp_no_hidden_is_linear():
    net = fnn.mlp(4, 3, hidden=())
    params = _randomise(net.init(0), 4)
    assert set(params) == {"0.weight", "0.bias"}
    x = _randn(5, 4, seed=5)
    torch.testing.assert_close(net.apply(params, x), x @ params["0.weight"].T + params["0.bias"])
    assert net.num_params() == 4 * 3 + 3


def test_gaussian_policy_apply_matches_hand_forward():
    pol = fnn.gaussian_policy(3, 2, hidden=(4, 5), init_std=0.5)
    params0 = pol.init(0)
    assert set(params0) == {"log_std", "mean.0.weight", "mean.0.bias", "mean.2.weight", "mean.2.bias",
                            "mean.4.weight", "mean.4.bias"}
    torch.testing.assert_close(params0["log_std"], torch.full((2,), math.log(0.5)))
    params = _randomise(params0, 6)
    obs = _randn(9, 3, seed=7)
    mean, log_std = pol.apply(params, obs)
    ref_mean = _hand_mlp(params, "mean.", 3, torch.tanh, obs)
    torch.testing.assert_close(mean, ref_mean)
    assert log_std.shape == (9, 2)
    torch.testing.assert_close(log_std, params["log_std"].expand(9, 2))
    assert pol.num_params() == sum(v.numel() for v in params.values())


def test_gaussian_policy_mean_bound_squashes_into_the_box():
    """``mean_bound=b``: the mean is ``b * tanh(out / b)`` of the unbounded policy's mean, so it
    stays within ``[-b, b]`` (large weights push it to the edge) and is the identity near 0."""
    free, bounded = fnn.gaussian_policy(3, 2, hidden=(4,)), fnn.gaussian_policy(3, 2, hidden=(4,), mean_bound=0.1)
    params = {k: 20 * v for k, v in _randomise(free.init(0), 31).items()}
    obs = _randn(50, 3, seed=32)
    free_mean, free_log_std = free.apply(params, obs)
    mean, log_std = bounded.apply(params, obs)
    torch.testing.assert_close(mean, 0.1 * torch.tanh(free_mean / 0.1))
    torch.testing.assert_close(log_std, free_log_std)
    assert free_mean.abs().max() > 0.5 and mean.abs().max() <= 0.1
    small = {k: 1e-6 * v if k.startswith("mean.") else v for k, v in params.items()}
    torch.testing.assert_close(bounded.apply(small, obs)[0], free.apply(small, obs)[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("activation", sorted(_ACT))
def test_pure_fast_path_equals_functional_call_bit_for_bit(activation):
    """The built-in templates' pure apply and functional_call on the template module give the
    same bits, plainly, under vmap over stacked params and under grad."""
    from torch.func import functional_call, grad, vmap

    def as_tuple(out):
        return out if isinstance(out, tuple) else (out,)

    for net in (fnn.mlp(3, 2, hidden=(5, 4), activation=activation),
                fnn.gaussian_policy(3, 2, hidden=(4, 5), activation=activation),
                fnn.gaussian_policy(3, 2, hidden=(4, 5), activation=activation, mean_bound=0.3)):
        assert net._pure_apply is not None
        params = _randomise(net.init(0), 11)
        x = _randn(2, 7, 3, seed=12)

        def slow(p, xx):
            return functional_call(net.module, p, (xx,))

        assert all(torch.equal(a, b) for a, b in zip(as_tuple(net.apply(params, x)), as_tuple(slow(params, x))))
        stacked = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
        pairs = zip(as_tuple(vmap(net.apply)(stacked, x)), as_tuple(vmap(slow)(stacked, x)))
        assert all(torch.equal(a, b) for a, b in pairs)

        def loss(apply):
            return lambda p: sum(o.sin().sum() for o in as_tuple(apply(p, x)))

        g_fast, g_ref = grad(loss(net.apply))(params), grad(loss(slow))(params)
        assert all(torch.equal(g_fast[k], g_ref[k]) for k in params)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_apply_stacked_equals_vmap_of_apply(activation):
    """The batched-matmul forward over per-task params equals vmap(apply), in value and in
    gradient, for inputs with and without extra batch axes; a template without a stacked forward
    falls back to vmap; params whose leading axis is not x's N are refused by name."""
    from torch.func import grad, vmap

    def as_tuple(out):
        return out if isinstance(out, tuple) else (out,)

    for net in (fnn.mlp(3, 2, hidden=(5, 4), activation=activation),
                fnn.gaussian_policy(3, 2, hidden=(4, 5), activation=activation),
                fnn.gaussian_policy(3, 2, hidden=(4, 5), activation=activation, mean_bound=0.3),
                fnn.categorical_policy(3, 4, hidden=(6,))):
        base = _randomise(net.init(0), 21)
        stacked = {k: torch.stack([v, 2 * v, -v]) for k, v in base.items()}
        for shape in ((3, 3), (3, 7, 3), (3, 2, 5, 3)):
            x = _randn(*shape, seed=22)
            for a, b in zip(as_tuple(net.apply_stacked(stacked, x)), as_tuple(vmap(net.apply)(stacked, x))):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

        x = _randn(3, 7, 3, seed=23)

        def loss(apply):
            return lambda p: sum(o.sin().sum() for o in as_tuple(apply(p, x)))

        g_fast, g_ref = grad(loss(net.apply_stacked))(stacked), grad(loss(vmap(net.apply)))(stacked)
        for k in stacked:
            torch.testing.assert_close(g_fast[k], g_ref[k], rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match=r"leaves \[2, \*shape\]"):
            net.apply_stacked(stacked, _randn(2, 7, 3, seed=24))
        with pytest.raises(ValueError, match=r"\[N, \.\.\., 3\]"):
            net.apply_stacked(stacked, _randn(3, 7, 4, seed=24))
        with pytest.raises(ValueError, match="missing"):
            net.apply_stacked({k: v for k, v in list(stacked.items())[1:]}, x)


def test_categorical_policy_apply_matches_hand_forward():
    pol = fnn.categorical_policy(4, 3, hidden=(6,))
    params = _randomise(pol.init(0), 8)
    obs = _randn(5, 4, seed=9)
    logits = pol.apply(params, obs)
    torch.testing.assert_close(logits, _hand_mlp(params, "", 2, torch.tanh, obs))


@pytest.mark.parametrize(
    "make",
    [
        lambda: fnn.mlp(3, 2, hidden=(8, 8)),
        lambda: fnn.gaussian_policy(3, 2, hidden=(8,)),
        lambda: fnn.categorical_policy(3, 4, hidden=(8,)),
    ],
)
def test_init_deterministic_seeded_and_leaves_global_rng(make):
    net = make()
    state_before = torch.get_rng_state()
    p1 = net.init(123)
    p2 = net.init(123)
    p3 = net.init(124)
    state_after = torch.get_rng_state()
    assert torch.equal(state_before, state_after)
    assert list(p1) == list(p2) == list(p3)
    for k in p1:
        assert torch.equal(p1[k], p2[k])
        assert not p1[k].requires_grad
    # different seed -> different weights (biases are zero-initialised and log_std constant)
    weight_keys = [k for k in p1 if k.endswith("weight")]
    assert weight_keys
    for k in weight_keys:
        assert not torch.equal(p1[k], p3[k])
    # independent of the global RNG state
    torch.manual_seed(999)
    p4 = net.init(123)
    for k in p1:
        assert torch.equal(p1[k], p4[k])
    # the returned params are fresh tensors, not the template's
    p1[weight_keys[0]].add_(1.0)
    assert not torch.equal(p1[weight_keys[0]], net.init(123)[weight_keys[0]])


def test_init_is_xavier_uniform_with_zero_bias_and_dtype():
    net = fnn.mlp(6, 4, hidden=(10,))
    params = net.init(0, dtype=torch.float64)
    for k, v in params.items():
        assert v.dtype == torch.float64
        if k.endswith("bias"):
            assert torch.all(v == 0)
        else:
            fan_out, fan_in = v.shape
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert v.abs().max() <= bound
            assert v.abs().max() > 0.5 * bound  # really spread over the range
    p32 = net.init(0)
    for k in params:
        assert p32[k].dtype == torch.float32
        torch.testing.assert_close(params[k], p32[k].to(torch.float64), rtol=0, atol=0)


def test_init_rejects_non_int_seed():
    net = fnn.mlp(2, 2, hidden=(3,))
    for bad in (1.0, "1", True):
        with pytest.raises(TypeError):
            net.init(bad)


def test_apply_under_vmap_over_stacked_params():
    pol = fnn.gaussian_policy(3, 2, hidden=(5,))
    ps = [_randomise(pol.init(s), 10 + s) for s in range(4)]
    stacked = {k: torch.stack([p[k] for p in ps]) for k in ps[0]}
    obs = _randn(4, 6, 3, seed=11)
    means, log_stds = vmap(pol.apply)(stacked, obs)
    assert means.shape == (4, 6, 2) and log_stds.shape == (4, 6, 2)
    for i, p in enumerate(ps):
        torch.testing.assert_close(means[i], _hand_mlp(p, "mean.", 2, torch.tanh, obs[i]))
        torch.testing.assert_close(log_stds[i], p["log_std"].expand(6, 2))
    # shared observations: in_dims=(0, None)
    shared = _randn(6, 3, seed=12)
    means2, _ = vmap(pol.apply, in_dims=(0, None))(stacked, shared)
    for i, p in enumerate(ps):
        torch.testing.assert_close(means2[i], _hand_mlp(p, "mean.", 2, torch.tanh, shared))


def test_apply_under_grad_matches_autograd():
    net = fnn.mlp(3, 1, hidden=(4,), activation="tanh")
    params = _randomise(net.init(0), 13)
    x = _randn(8, 3, seed=14)
    y = _randn(8, 1, seed=15)

    def loss(p):
        return ((net.apply(p, x) - y) ** 2).mean()

    g = grad(loss)(params)
    # explicit autograd through the hand-written forward
    leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    ref_loss = ((_hand_mlp(leaf, "", 2, torch.tanh, x) - y) ** 2).mean()
    ref_grads = torch.autograd.grad(ref_loss, list(leaf.values()))
    for (k, _), rg in zip(leaf.items(), ref_grads):
        torch.testing.assert_close(g[k], rg)


def test_apply_param_validation_names_key():
    pol = fnn.gaussian_policy(3, 2, hidden=(4,))
    params = pol.init(0)
    obs = torch.zeros(5, 3)
    missing = {k: v for k, v in params.items() if k != "mean.0.bias"}
    with pytest.raises(ValueError, match=r"mean\.0\.bias"):
        pol.apply(missing, obs)
    extra = {**params, "bogus.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"bogus\.weight"):
        pol.apply(extra, obs)
    wrong = {**params, "mean.2.weight": torch.zeros(2, 5)}
    with pytest.raises(ValueError, match=r"mean\.2\.weight"):
        pol.apply(wrong, obs)
    wrong_rank = {**params, "log_std": torch.zeros(())}
    with pytest.raises(ValueError, match=r"log_std"):
        pol.apply(wrong_rank, obs)
    with pytest.raises(TypeError):
        pol.apply({**params, "log_std": [0.0, 0.0]}, obs)
    with pytest.raises(TypeError):
        pol.apply(list(params.values()), obs)


def test_apply_input_validation():
    net = fnn.mlp(3, 2, hidden=(4,))
    params = net.init(0)
    with pytest.raises(ValueError, match=r"3"):
        net.apply(params, torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"3"):
        net.apply(params, torch.zeros(()))
    with pytest.raises(TypeError):
        net.apply(params, [[0.0, 0.0, 0.0]])
    import numpy as np

    with pytest.raises(TypeError):
        net.apply(params, np.zeros((2, 3)))


@pytest.mark.parametrize(
    "ctor, exc",
    [
        (lambda: fnn.mlp(0, 2), ValueError),
        (lambda: fnn.mlp(3, -1), ValueError),
        (lambda: fnn.mlp(3, 2, hidden=(4, 0)), ValueError),
        (lambda: fnn.mlp(3, 2, activation="sigmoidish"), ValueError),
        (lambda: fnn.mlp(3.0, 2), TypeError),
        (lambda: fnn.mlp(True, 2), TypeError),
        (lambda: fnn.mlp(3, 2, hidden=(4.5,)), TypeError),
        (lambda: fnn.gaussian_policy(0, 2), ValueError),
        (lambda: fnn.gaussian_policy(3, 0), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, init_std=0.0), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, init_std=-1.0), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, init_std=float("nan")), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, init_std=float("inf")), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, activation="nope"), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, mean_bound=0.0), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, mean_bound=float("inf")), ValueError),
        (lambda: fnn.gaussian_policy(3, 2, mean_bound=True), ValueError),
        (lambda: fnn.categorical_policy(3, 0), ValueError),
        (lambda: fnn.categorical_policy(-2, 3), ValueError),
        (lambda: fnn.categorical_policy(3, 3, activation="nope"), ValueError),
    ],
)
def test_bad_constructor_args(ctor, exc):
    with pytest.raises(exc):
        ctor()


# ----------------------------------------------------------------------------------------------
# optim
# ----------------------------------------------------------------------------------------------


def _params(seed=0):
    g = _gen(seed)
    return {"w": torch.randn(3, 2, generator=g, dtype=DT), "b": torch.randn(2, generator=g, dtype=DT)}


def test_sgd_update_and_apply_updates():
    params = _params(0)
    grads = _params(1)
    opt = optim.sgd(0.05)
    state = opt.init(params)
    updates, new_state = opt.update(grads, state, params)
    assert new_state == state
    for k in params:
        torch.testing.assert_close(updates[k], -0.05 * grads[k])
    new_params = optim.apply_updates(params, updates)
    for k in params:
        torch.testing.assert_close(new_params[k], params[k] - 0.05 * grads[k])
    # integer lr is accepted and coerced
    upd_int, _ = optim.sgd(2).update(grads, state)
    torch.testing.assert_close(upd_int["w"], -2.0 * grads["w"])


def test_adam_matches_torch_optim_adam():
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    params = _params(2)
    grad_seq = [_params(100 + i) for i in range(6)]
    opt = optim.adam(lr=lr, b1=b1, b2=b2, eps=eps)
    state = opt.init(params)
    assert state.count.dtype == DT and float(state.count) == 0

    ref = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    ref_opt = torch.optim.Adam(list(ref.values()), lr=lr, betas=(b1, b2), eps=eps, foreach=False)

    p = params
    for gs in grad_seq:
        updates, state = opt.update(gs, state, p)
        p = optim.apply_updates(p, updates)
        for k, prm in ref.items():
            prm.grad = gs[k].clone()
        ref_opt.step()
        for k in p:
            torch.testing.assert_close(p[k], ref[k].detach(), rtol=1e-12, atol=1e-12)
    assert float(state.count) == len(grad_seq)


def test_adam_first_step_is_sign_times_lr():
    # After one step the bias-corrected update is -lr * g / (|g| + eps) (closed form).
    params = _params(3)
    grads = _params(4)
    opt = optim.adam(lr=0.1, eps=1e-8)
    updates, _ = opt.update(grads, opt.init(params), params)
    for k in params:
        torch.testing.assert_close(updates[k], -0.1 * grads[k] / (grads[k].abs() + 1e-8))


def test_meta_sgd_per_parameter_lr_and_grad_to_lr():
    params = _params(5)
    grads = _params(6)
    opt = optim.meta_sgd(0.1)
    state = opt.init(params)
    assert isinstance(state, optim.MetaSgdState)
    for k in params:
        torch.testing.assert_close(state.lr[k], torch.full_like(params[k], 0.1))
    # per-parameter lr
    lr = _params(7)
    lr = {k: v.abs() + 0.01 for k, v in lr.items()}
    custom = optim.MetaSgdState(lr=lr)
    updates, st = opt.update(grads, custom, params)
    assert st is custom
    for k in params:
        torch.testing.assert_close(updates[k], -lr[k] * grads[k])

    # gradient of an outer loss w.r.t. the learning rates
    target = _params(8)

    def outer(s: optim.MetaSgdState):
        upd, _ = opt.update(grads, s, params)
        new = optim.apply_updates(params, upd)
        return sum(0.5 * ((new[k] - target[k]) ** 2).sum() for k in new)

    g_state = grad(outer)(custom)
    assert isinstance(g_state, optim.MetaSgdState)
    for k in params:
        new_k = params[k] - lr[k] * grads[k]
        torch.testing.assert_close(g_state.lr[k], (new_k - target[k]) * (-grads[k]))


def test_meta_sgd_second_order_through_inner_grad():
    # inner loss L(p) = 0.5 * sum(c * p^2) -> g = c * p; p' = p - a * c * p
    # outer loss O(p') = sum(p') -> dO/da = -c * p  (closed form)
    params = _params(9)
    c = {k: v.abs() + 0.5 for k, v in _params(10).items()}
    opt = optim.meta_sgd(0.3)

    def outer(state):
        inner_g = grad(lambda p: sum(0.5 * (c[k] * p[k] ** 2).sum() for k in p))(params)
        upd, _ = opt.update(inner_g, state, params)
        new = optim.apply_updates(params, upd)
        return sum(v.sum() for v in new.values())

    g_state = grad(outer)(opt.init(params))
    for k in params:
        torch.testing.assert_close(g_state.lr[k], -c[k] * params[k])


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1), lambda: optim.meta_sgd(0.1), lambda: optim.adam(0.1)])
def test_optimizers_are_out_of_place(make):
    opt = make()
    params = _params(11)
    grads = _params(12)
    p_copy = {k: v.clone() for k, v in params.items()}
    g_copy = {k: v.clone() for k, v in grads.items()}
    state = opt.init(params)
    state_copy = [x.clone() for x in torch.utils._pytree.tree_leaves(state)]
    p = params
    s = state
    for _ in range(3):
        upd, s = opt.update(grads, s, p)
        p = optim.apply_updates(p, upd)
    for k in params:
        assert torch.equal(params[k], p_copy[k])
        assert torch.equal(grads[k], g_copy[k])
        assert not torch.equal(p[k], params[k])
    for a, b in zip(torch.utils._pytree.tree_leaves(state), state_copy):
        assert torch.equal(a, b)


@pytest.mark.parametrize("factory", [optim.sgd, optim.meta_sgd, optim.adam])
@pytest.mark.parametrize(
    "lr, exc",
    [(0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (True, TypeError), ("0.1", TypeError), (None, TypeError)],
)
def test_bad_lr(factory, lr, exc):
    with pytest.raises(exc):
        factory(lr)


@pytest.mark.parametrize("kw", [{"b1": 1.0}, {"b1": -0.1}, {"b2": 1.0}, {"eps": 0.0}, {"eps": -1e-8}])
def test_adam_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        optim.adam(1e-3, **kw)


# ============================================================================ the templates' tanh
def test_template_tanh_is_tanh_to_its_stated_error():
    """``ACTIVATIONS["tanh"]`` (the sigmoid form on the CPU) against ``torch.tanh`` in float64 on
    a grid that covers saturation: within 2e-7 in float32 and 4e-16 in float64."""
    from functional_metarl.nn.core import _tanh

    grid = torch.linspace(-30, 30, 600_001, dtype=torch.float64)
    exact = torch.tanh(grid)
    assert (fnn.ACTIVATIONS["tanh"]()(grid.float()).double() - exact).abs().max() < 2e-7
    assert (_tanh(grid) - exact).abs().max() < 4e-16
    assert torch.equal(_tanh(torch.tensor([0.0, 40.0, -40.0])), torch.tensor([0.0, 1.0, -1.0]))


def test_template_tanh_derivatives_match_torch_tanh():
    """First and second derivatives (reverse, and forward-over-reverse), and vmap, of the
    templates' tanh equal torch.tanh's (float64, to its 4e-16 value error)."""
    from torch.func import jacfwd, jvp

    from functional_metarl.nn.core import _tanh

    x = _randn(5, 3, seed=3, dtype=torch.float64) * 2
    w = _randn(3, 3, seed=4, dtype=torch.float64)

    def loss(tanh):
        return lambda m: (tanh(x @ m) ** 2).sum()

    tol = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad(loss(_tanh))(w), grad(loss(torch.tanh))(w), **tol)
    torch.testing.assert_close(grad(lambda m: grad(loss(_tanh))(m).sin().sum())(w),
                               grad(lambda m: grad(loss(torch.tanh))(m).sin().sum())(w), **tol)
    torch.testing.assert_close(jacfwd(grad(loss(_tanh)))(w), jacfwd(grad(loss(torch.tanh)))(w), **tol)
    torch.testing.assert_close(jvp(_tanh, (x,), (w[0].expand_as(x),))[1],
                               jvp(torch.tanh, (x,), (w[0].expand_as(x),))[1], **tol)
    torch.testing.assert_close(vmap(_tanh)(x), torch.tanh(x), **tol)
    # torch.autograd, double backward
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_tanh(leaf).sum(), leaf, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), leaf)
    torch.testing.assert_close(gg, -2 * torch.tanh(x) * (1 - torch.tanh(x) ** 2), **tol)


def test_template_tanh_without_autograd_gives_the_same_bits():
    """Under no_grad the templates' tanh skips its autograd.Function: same values, bit for bit,
    and forward-mode derivatives (not switched off by no_grad) are still tanh's."""
    from torch.func import jvp

    from functional_metarl.nn.core import _tanh

    x = _randn(4, 6, seed=5, dtype=torch.float32) * 3
    with torch.no_grad():
        plain = _tanh(x)
        _, tangent = jvp(_tanh, (x.double(),), (torch.ones(4, 6, dtype=torch.float64),))
    assert torch.equal(plain, _tanh(x))
    torch.testing.assert_close(tangent, 1 - torch.tanh(x.double()) ** 2, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- optim: the foreach path
def _tree(seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float32):
    """A nested tree (dict in dict, several leaf shapes) like a params dict with a 0-d leaf."""
    g = _gen(seed)
    return {"w": torch.randn(5, 4, generator=g, dtype=dtype) * scale, "b": torch.randn(4, generator=g, dtype=dtype) * scale,
            "head": {"v": torch.randn(3, 2, 2, generator=g, dtype=dtype) * scale, "s": torch.randn((), generator=g, dtype=dtype)}}


def _run(opt, params, grad_seq, foreach):
    state = opt.init(params)
    p = params
    for gs in grad_seq:
        updates, state = opt.update(gs, state, p)
        p = optim.apply_updates(p, updates, foreach=foreach)
    return p, state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, make", [
    ("sgd", lambda f: optim.sgd(0.05, foreach=f)),
    ("adam", lambda f: optim.adam(3e-3, b1=0.8, b2=0.95, eps=1e-6, foreach=f)),
    ("adam-defaults", lambda f: optim.adam(foreach=f)),
])
def test_foreach_path_is_bit_equal_to_the_tree_map_path(name, make, dtype):
    """sgd, adam (8 steps: bias correction 1 / (1 - b^t) changes every step) and apply_updates
    do the same float ops per element on both paths: params and every state leaf bit-equal."""
    params = _tree(0, dtype=dtype)
    grad_seq = [_tree(100 + i, scale=10.0 ** (i % 3 - 1), dtype=dtype) for i in range(8)]
    p_ref, s_ref = _run(make(False), params, grad_seq, foreach=False)
    p_fe, s_fe = _run(make(True), params, grad_seq, foreach=True)
    for a, b in zip(optree.tree_leaves(p_ref), optree.tree_leaves(p_fe)):
        assert torch.equal(a, b)
    assert type(s_ref) is type(s_fe)  # the same state type: either path's state feeds the other
    for a, b in zip(optree.tree_leaves(s_ref), optree.tree_leaves(s_fe)):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(optree.tree_leaves(params), optree.tree_leaves(_tree(0, dtype=dtype))))


def test_foreach_clipping_within_tolerance_of_the_tree_map_path():
    """clip_by_global_norm sums per-leaf norms (torch._foreach_norm), a different summation order:
    the scaled grads agree within 1e-6 relative; chained before Adam over several steps where
    the clip is active (norms ~30 and ~0.3 against max_norm 1) and inactive."""
    params = _tree(0)
    grad_seq = [_tree(200 + i, scale=(10.0 if i % 2 == 0 else 0.1)) for i in range(6)]
    clip_ref, clip_fe = optim.clip_by_global_norm(1.0), optim.clip_by_global_norm(1.0, foreach=True)
    for gs in grad_seq:
        a, _ = clip_ref.update(gs, clip_ref.init(params))
        b, _ = clip_fe.update(gs, clip_fe.init(params))
        for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b)):
            torch.testing.assert_close(y, x, rtol=1e-6, atol=0)
    p_ref, _ = _run(optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2)), params, grad_seq, False)
    p_fe, _ = _run(optim.chain(optim.clip_by_global_norm(1.0, foreach=True), optim.adam(1e-2, foreach=True)), params,
                   grad_seq, True)
    for x, y in zip(optree.tree_leaves(p_ref), optree.tree_leaves(p_fe)):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)


def test_foreach_states_interchange_and_structure_is_checked():
    """An AdamState from one path continues on the other with the same numbers; a state whose
    tree differs from the grads' is refused (the foreach ops pair leaves by position)."""
    params = _tree(1)
    grads = [_tree(300 + i) for i in range(4)]
    ref, fe = optim.adam(1e-2), optim.adam(1e-2, foreach=True)
    p, s = _run(ref, params, grads[:2], False)
    for gs in grads[2:]:
        u, s = fe.update(gs, s, p)
        p = optim.apply_updates(p, u, foreach=True)
    p_ref, _ = _run(ref, params, grads, False)
    assert all(torch.equal(a, b) for a, b in zip(optree.tree_leaves(p), optree.tree_leaves(p_ref)))
    bad_state = fe.init({"w": params["w"], "b": params["b"]})
    with pytest.raises(ValueError, match="different tree structures"):
        fe.update(grads[0], bad_state, params)
    with pytest.raises(ValueError, match="keys differ"):
        optim.apply_updates(params, {"w": params["w"]}, foreach=True)
    with pytest.raises(TypeError, match="foreach must be a bool"):
        optim.adam(1e-3, foreach="yes")


def test_grad_and_value_equals_torch_func():
    """optim.grad_and_value (torch.autograd.grad eagerly) gives torch.func.grad_and_value's
    gradients and value bit for bit, with and without aux, and leaves the params untouched."""
    net = fnn.mlp(3, 2, hidden=(5,))
    params = net.init(0)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))

    def loss(p, inputs):
        out = net.apply(p, inputs)
        return (out ** 2).mean(), out.sum(dim=-1)

    for has_aux in (False, True):
        objective = loss if has_aux else (lambda p, inputs: loss(p, inputs)[0])
        grads, out = optim.grad_and_value(objective, has_aux=has_aux)(params, x)
        want_grads, want_out = torch.func.grad_and_value(objective, has_aux=has_aux)(params, x)
        assert grads.keys() == params.keys()
        for name in params:
            assert torch.equal(grads[name], want_grads[name]), name
            assert not params[name].requires_grad
        value, want_value = (out[0], want_out[0]) if has_aux else (out, want_out)
        assert torch.equal(value, want_value) and not value.requires_grad
        if has_aux:
            assert torch.equal(out[1], want_out[1])


def test_grad_and_value_refuses_what_is_not_an_objective():
    with pytest.raises(TypeError, match="objective must be a callable"):
        optim.grad_and_value(3.0)
    with pytest.raises(TypeError, match="has_aux"):
        optim.grad_and_value(lambda p: p["w"].sum(), has_aux=1)
