"""Out-of-place, differentiable optimizers as ``(init, update)`` pairs (optax's shape).

``updates, state = opt.update(grads, state, params)`` returns the *step to add*;
``apply_updates(params, updates)`` adds it. Nothing is written in place, so a whole inner loop
stays differentiable: this is what lets MAML take exact second-order meta-gradients through it.

**Two implementations, one transform.** ``sgd``, ``adam``, ``clip_by_global_norm`` and
``apply_updates`` take ``foreach`` (default ``False``):

- ``foreach=False`` (the reference, and the default): one ``tree_map`` per formula, one small
  op per leaf. It works under every ``torch.func`` transform (``vmap``, ``grad`` nested to any
  order); the MAML-family inner loops use it.
- ``foreach=True``: the same formulas on the flattened leaves with ``torch._foreach_*`` ops,
  one call per op over all leaves (a 3-layer MLP's 6 leaves: one dispatch instead of six, the
  agents' updates are dispatch-bound). Same state types (an ``AdamState`` from either path
  feeds the other; checkpoints do not change), inputs never written. Numbers: ``sgd``,
  ``adam`` and ``apply_updates`` do the same float ops per element in the same order, so they
  are bit-equal to the reference (a test checks several Adam steps, bias correction
  included); ``clip_by_global_norm`` sums the per-leaf norms from ``torch._foreach_norm``, a
  different reduction order, within 1e-6 relative of the reference scale. It runs eagerly and
  under ``torch.compile`` (Inductor lowers foreach ops); it is meant for runners' updates, not
  for use inside ``vmap`` (foreach ops have no batching rules there and fall back to a slow
  per-sample loop) — keep the default there.

A flag rather than separate functions, so that a runner switches paths by one argument and the
states, ``chain`` and checkpoints stay the same.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optree
import torch

from . import checks
from .tree import Params, Tree, tree_map, tree_norm, tree_scale


def _leaves(tree: Tree) -> tuple[list[torch.Tensor], Any]:
    leaves, spec = optree.tree_flatten(tree, none_is_leaf=False)
    return leaves, spec


def _unflatten(spec: Any, leaves: list[torch.Tensor]) -> Tree:
    return optree.tree_unflatten(spec, list(leaves))


def _same_leaves(a: Any, a_name: str, b_spec: Any, b_name: str) -> list[torch.Tensor]:
    """``a``'s leaves, refusing a tree whose structure is not ``b_spec`` (the foreach ops pair
    leaves by position, so a different structure must not pair the wrong ones)."""
    leaves, spec = optree.tree_flatten(a, none_is_leaf=False)
    if spec != b_spec:
        raise ValueError(f"{a_name} and {b_name} have different tree structures: {spec} vs {b_spec}")
    return leaves

__all__ = [
    "grad_and_value",
    "GradientTransformation",
    "SgdState",
    "MetaSgdState",
    "AdamState",
    "sgd",
    "meta_sgd",
    "adam",
    "ClipState",
    "clip_by_global_norm",
    "chain",
    "apply_updates",
]


class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params) -> (updates, state)``."""

    init: Callable[[Params], Any]
    update: Callable[[Tree, Any, Params | None], tuple[Tree, Any]]


class SgdState(NamedTuple):
    """SGD keeps no state; an empty NamedTuple keeps vmap / checkpoints uniform."""


class MetaSgdState(NamedTuple):
    """Per-parameter step sizes, same structure as params. Meta-learn them by differentiating
    the meta-loss with respect to this state (Li et al. 2017, Meta-SGD)."""

    lr: Params


class AdamState(NamedTuple):
    """Adam's state: the step count and the first and second moment estimates (same keys as params)."""

    count: torch.Tensor  # 0-d, number of updates taken
    mu: Params  # first moment
    nu: Params  # second moment


def sgd(lr: float, foreach: bool = False) -> GradientTransformation:
    """Plain gradient descent: ``update = -lr * grad``.

    ``foreach=True``: one ``torch._foreach_mul`` over all leaves, bit-equal (module docstring)."""
    lr = checks.positive_number(lr, "lr")
    foreach = checks.flag(foreach, "foreach")

    def init(params: Params) -> SgdState:
        return SgdState()

    def update(grads: Tree, state: SgdState, params: Params | None = None) -> tuple[Tree, SgdState]:
        if foreach:
            leaves, spec = _leaves(grads)
            return _unflatten(spec, torch._foreach_mul(leaves, -lr)), state
        return tree_map(lambda g: -lr * g, grads), state

    return GradientTransformation(init, update)


def meta_sgd(init_lr: float) -> GradientTransformation:
    """Meta-SGD: ``update = -alpha * grad`` with a learnable ``alpha`` per parameter entry.

    ``init`` fills every ``alpha`` with ``init_lr``; the state is differentiable data.
    """
    init_lr = checks.positive_number(init_lr, "init_lr")

    def init(params: Params) -> MetaSgdState:
        return MetaSgdState(lr=tree_map(lambda p: torch.full_like(p, init_lr), params))

    def update(grads: Tree, state: MetaSgdState, params: Params | None = None) -> tuple[Tree, MetaSgdState]:
        return tree_map(lambda a, g: -a * g, state.lr, grads), state

    return GradientTransformation(init, update)


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         foreach: bool = False) -> GradientTransformation:
    """Adam (Kingma & Ba 2015) with bias correction, out of place.

    ``foreach=True``: the same formulas with ``torch._foreach_*`` ops over all leaves at once,
    bit-equal to the default path and with the same ``AdamState`` (module docstring)."""
    lr = checks.positive_number(lr, "lr")
    foreach = checks.flag(foreach, "foreach")
    b1 = checks.number(b1, "b1", 0.0, 1.0, high_open=True)
    b2 = checks.number(b2, "b2", 0.0, 1.0, high_open=True)
    eps = checks.positive_number(eps, "eps")

    def init(params: Params) -> AdamState:
        some = optree.tree_leaves(params)[0]  # any tree of tensors (e.g. meta.MetaParams), not only a dict
        return AdamState(
            count=torch.zeros((), device=some.device, dtype=some.dtype),
            mu=tree_map(torch.zeros_like, params),
            nu=tree_map(torch.zeros_like, params),
        )

    def update(grads: Tree, state: AdamState, params: Params | None = None) -> tuple[Tree, AdamState]:
        if foreach:
            return _adam_foreach(grads, state)
        count = state.count + 1
        mu = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        mu_hat_scale = 1.0 / (1 - b1**count)
        nu_hat_scale = 1.0 / (1 - b2**count)
        updates = tree_map(
            lambda m, v: -lr * (m * mu_hat_scale) / (torch.sqrt(v * nu_hat_scale) + eps), mu, nu
        )
        return updates, AdamState(count, mu, nu)

    def _adam_foreach(grads: Tree, state: AdamState) -> tuple[Tree, AdamState]:
        # Each line is the reference's formula, op for op (same float rounding per element):
        # mu = b1 * m + (1 - b1) * g; nu = b2 * v + ((1 - b2) * g) * g;
        # update = (-lr) * (mu * s1) / (sqrt(nu * s2) + eps). Only fresh lists are written in place.
        g, spec = _leaves(grads)
        m = _same_leaves(state.mu, "state.mu", spec, "grads")
        v = _same_leaves(state.nu, "state.nu", spec, "grads")
        count = state.count + 1
        mu = torch._foreach_mul(m, b1)
        torch._foreach_add_(mu, torch._foreach_mul(g, 1 - b1))
        nu = torch._foreach_mul(v, b2)
        g2 = torch._foreach_mul(g, 1 - b2)
        torch._foreach_mul_(g2, g)
        torch._foreach_add_(nu, g2)
        mu_hat_scale = 1.0 / (1 - b1**count)
        nu_hat_scale = 1.0 / (1 - b2**count)
        num = torch._foreach_mul(mu, mu_hat_scale)
        torch._foreach_mul_(num, -lr)
        den = torch._foreach_mul(nu, nu_hat_scale)
        torch._foreach_sqrt_(den)
        torch._foreach_add_(den, eps)
        torch._foreach_div_(num, den)
        return _unflatten(spec, num), AdamState(count, _unflatten(spec, mu), _unflatten(spec, nu))

    return GradientTransformation(init, update)


class ClipState(NamedTuple):
    """Clipping keeps no state."""


def clip_by_global_norm(max_norm: float, foreach: bool = False) -> GradientTransformation:
    """Scale the whole gradient tree by ``min(1, max_norm / (||g|| + 1e-6))``, ``||g||`` the global
    L2 norm over every leaf. Compose it before an optimizer: ``chain(clip_by_global_norm(0.5), adam(lr))``.

    The ``1e-6`` keeps a zero gradient finite; it makes a gradient of norm exactly ``max_norm``
    shrink by a factor ``1 - 1e-6 / max_norm``, which no learning run can tell apart.

    ``foreach=True``: the norm from ``torch._foreach_norm`` per leaf (a different summation
    order: within 1e-6 relative of the reference) and one ``torch._foreach_mul`` to scale."""
    max_norm = checks.positive_number(max_norm, "max_norm")
    foreach = checks.flag(foreach, "foreach")

    def init(params: Params) -> ClipState:
        return ClipState()

    def update(grads: Tree, state: ClipState, params: Params | None = None) -> tuple[Tree, ClipState]:
        if foreach:
            leaves, spec = _leaves(grads)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(leaves)))
            scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
            return _unflatten(spec, torch._foreach_mul(leaves, scale)), state
        scale = torch.clamp(max_norm / (tree_norm(grads) + 1e-6), max=1.0)
        return tree_scale(grads, scale), state

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other: each one's updates are the next one's grads.
    The state is the tuple of their states, in order."""
    if not transforms:
        raise ValueError("chain needs at least one GradientTransformation, got none")
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain: transforms[{i}] must be an optim.GradientTransformation, got {type(t).__name__}")

    def init(params: Params) -> tuple[Any, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(grads: Tree, state: tuple[Any, ...], params: Params | None = None) -> tuple[Tree, tuple[Any, ...]]:
        new_states = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params)
            new_states.append(s)
        return grads, tuple(new_states)

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Tree, foreach: bool = False) -> Params:
    """``params + updates``, out of place. Keys and shapes must match (nothing broadcasts).

    ``foreach=True``: one ``torch._foreach_add`` over all leaves (bit-equal)."""
    checks.same_structure(updates, "updates", params, "params")
    if foreach:
        leaves, spec = _leaves(params)
        return _unflatten(spec, torch._foreach_add(leaves, _same_leaves(updates, "updates", spec, "params")))
    return tree_map(torch.add, params, updates)


def grad_and_value(objective: Callable, *, has_aux: bool = False) -> Callable:
    """``torch.func.grad_and_value(objective, has_aux=has_aux)`` for an ``objective`` whose first
    argument is a dict of params: ``(params, *args) -> (grads, value)``, or ``(grads, (value,
    aux))`` with ``has_aux``; ``value`` is a detached 0-d tensor.

    Why not ``torch.func`` itself: eagerly this runs ``torch.autograd.grad`` on detached leaf
    copies of the params, the same backward graph and kernels (the same bits) without
    functorch's per-call wrapping, which costs more than a small network's backward (the agents'
    updates). Under ``torch.compile`` it is ``torch.func.grad_and_value``, which dynamo traces
    (it does not trace ``torch.autograd.grad``). For updates, not inside ``torch.func``
    transforms: the MAML inner loops use ``torch.func`` directly.
    """
    checks.function(objective, "objective", "(params, *args) -> loss")
    has_aux = checks.flag(has_aux, "has_aux")
    functional = torch.func.grad_and_value(objective, has_aux=has_aux)

    def grad_fn(params: dict[str, torch.Tensor], *args: Any) -> tuple[dict[str, torch.Tensor], Any]:
        if torch.compiler.is_compiling():
            return functional(params, *args)
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad():
            out = objective(leaves, *args)
            value = out[0] if has_aux else out
            grads = torch.autograd.grad(value, tuple(leaves.values()))
        return dict(zip(leaves, grads)), ((value.detach(), out[1]) if has_aux else value.detach())

    return grad_fn
