"""Out-of-place, differentiable optimizers as ``(init, update)`` pairs (optax's shape).

``updates, state = opt.update(grads, state, params)`` returns the *step to add*;
``apply_updates(params, updates)`` adds it. Nothing is written in place, so a whole inner loop
stays differentiable: this is what lets MAML take exact second-order meta-gradients through it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optree
import torch

from . import checks
from .tree import Params, Tree, tree_map, tree_norm, tree_scale

__all__ = [
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


def sgd(lr: float) -> GradientTransformation:
    """Plain gradient descent: ``update = -lr * grad``."""
    lr = checks.positive_number(lr, "lr")

    def init(params: Params) -> SgdState:
        return SgdState()

    def update(grads: Tree, state: SgdState, params: Params | None = None) -> tuple[Tree, SgdState]:
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


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam (Kingma & Ba 2015) with bias correction, out of place."""
    lr = checks.positive_number(lr, "lr")
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
        count = state.count + 1
        mu = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        mu_hat_scale = 1.0 / (1 - b1**count)
        nu_hat_scale = 1.0 / (1 - b2**count)
        updates = tree_map(
            lambda m, v: -lr * (m * mu_hat_scale) / (torch.sqrt(v * nu_hat_scale) + eps), mu, nu
        )
        return updates, AdamState(count, mu, nu)

    return GradientTransformation(init, update)


class ClipState(NamedTuple):
    """Clipping keeps no state."""


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale the whole gradient tree by ``min(1, max_norm / (||g|| + 1e-6))``, ``||g||`` the global
    L2 norm over every leaf. Compose it before an optimizer: ``chain(clip_by_global_norm(0.5), adam(lr))``.

    The ``1e-6`` keeps a zero gradient finite; it makes a gradient of norm exactly ``max_norm``
    shrink by a factor ``1 - 1e-6 / max_norm``, which no learning run can tell apart."""
    max_norm = checks.positive_number(max_norm, "max_norm")

    def init(params: Params) -> ClipState:
        return ClipState()

    def update(grads: Tree, state: ClipState, params: Params | None = None) -> tuple[Tree, ClipState]:
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


def apply_updates(params: Params, updates: Tree) -> Params:
    """``params + updates``, out of place. Keys and shapes must match (nothing broadcasts)."""
    checks.same_structure(updates, "updates", params, "params")
    return tree_map(torch.add, params, updates)
