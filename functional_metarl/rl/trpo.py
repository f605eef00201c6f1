"""TRPO pieces (Schulman et al. 2015): curvature-vector products, conjugate gradient, and the
backtracking line search under a KL bound. They work on flat parameter vectors (see
``tree.ravel``) so they apply equally to a plain policy and to a MAML meta-policy.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.func import grad, jvp

from .. import checks

__all__ = [
    "hessian_vector_product",
    "gauss_newton_operator",
    "conjugate_gradient",
    "trpo_step_direction",
    "LineSearchResult",
    "backtracking_line_search",
]

Vector = torch.Tensor  # 1-D


def hessian_vector_product(fn: Callable[[Vector], torch.Tensor], x: Vector, v: Vector) -> Vector:
    """Exact ``H(x) v`` for scalar ``fn``: forward-mode jvp of the reverse-mode gradient."""
    return jvp(grad(fn), (x,), (v,))[1]


def gauss_newton_operator(
    outputs_fn: Callable[[Vector], tuple[torch.Tensor, ...]],
    divergence: Callable[[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]], torch.Tensor],
    x: Vector,
    output_curvature: Callable[[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None = None,
) -> Callable[[Vector], Vector]:
    """The curvature ``J^T M J`` of ``x -> divergence(stop_grad(out(x0)), out(x))`` at ``x0 = x``.

    ``outputs_fn`` maps the flat params to the distribution parameters (e.g. mean and log-std
    of every visited state); ``divergence(old, new)`` is a scalar such as the mean KL. At the
    point where old = new, the divergence has zero gradient in the outputs, so its Hessian in
    ``x`` is exactly ``J^T M J`` with ``M`` the divergence's Hessian in the outputs: the Fisher
    matrix. That costs one ``J v`` and one ``J^T u`` per product instead of a double backward.

    Both come from one autograd graph built here and reused by every product (which is what makes
    conjugate gradient cheap): the forward pass ``out(x)``, and its vector-Jacobian product
    ``g(w) = J^T w`` recorded with ``create_graph`` at a placeholder ``w``. ``J^T u`` is a backward
    pass through the forward; ``J v`` is the backward pass of the *linear* map ``g`` with
    cotangent ``v`` (the transpose of a transpose). Unlike a ``torch.func.jvp`` per product, this
    neither recomputes the forward pass nor pays forward-mode dispatch on every op (timings in
    ``docs/results/benchmarks.md``). The operator is therefore built with the autograd
    tape rather than ``torch.func`` transforms: use it at the runner level (as TRPO's step does),
    not inside ``vmap`` or ``grad``. ``output_curvature(old, u)`` may give ``M u`` in closed form;
    by default it is computed by a jvp of the divergence's gradient.
    """
    with torch.enable_grad():
        x_leaf = x.detach().requires_grad_(True)
        outputs = tuple(outputs_fn(x_leaf))
        placeholders = tuple(torch.zeros_like(o, requires_grad=True) for o in outputs)
        (transpose_of_placeholder,) = torch.autograd.grad(
            outputs, x_leaf, placeholders, create_graph=True, allow_unused=True, materialize_grads=True
        )
    # contiguous: an output may be an expanded view (a state-independent log-std), and the
    # generic curvature's jvp writes into tensors shaped like these.
    old = tuple(o.detach().contiguous() for o in outputs)

    def generic_curvature(tangent: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # M u: Hessian of the divergence in the outputs, at new = old, applied to u.
        return jvp(grad(lambda new: divergence(old, new)), (old,), (tangent,))[1]

    def product(v: Vector) -> Vector:
        with torch.enable_grad():
            jv = torch.autograd.grad(
                transpose_of_placeholder, placeholders, v, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            mu = generic_curvature(jv) if output_curvature is None else output_curvature(old, jv)
            (jtmu,) = torch.autograd.grad(outputs, x_leaf, tuple(mu), retain_graph=True, allow_unused=True,
                                          materialize_grads=True)
        return jtmu.detach()

    return product


_CG_RESIDUAL_TOL = 1e-10  # conjugate gradient stops once the squared residual norm is below this


def conjugate_gradient(
    matvec: Callable[[Vector], Vector], b: Vector, iters: int = 10, residual_tol: float = _CG_RESIDUAL_TOL
) -> Vector:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``matvec``.

    Runs exactly ``iters`` iterations; once the squared residual drops below ``residual_tol`` the
    remaining iterations leave ``x`` unchanged (``torch.where``, no data-dependent ``break``),
    so the function stays traceable.
    """
    checks.function(matvec, "matvec", "(v) -> A v")
    checks.positive_int(iters, "iters")
    checks.non_negative_number(residual_tol, "residual_tol")
    return _conjugate_gradient(matvec, b, iters, residual_tol)[0]


def _conjugate_gradient(
    matvec: Callable[[Vector], Vector], b: Vector, iters: int, residual_tol: float
) -> tuple[Vector, Vector]:
    """``conjugate_gradient`` that also returns its residual ``r = b - A x`` (kept by recurrence)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        active = rr > residual_tol
        ap = matvec(p)
        pap = torch.dot(p, ap)
        alpha = torch.where(active, rr / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rr))
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = torch.dot(r, r)
        beta = torch.where(active, rr_new / torch.where(active, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + beta * p
        rr = torch.where(active, rr_new, rr)
    return x, r


def trpo_step_direction(
    curvature: Callable[[Vector], Vector],
    loss_grad: Vector,
    max_kl: float,
    cg_iters: int = 10,
    damping: float = 1e-5,
) -> Vector:
    """The full TRPO step ``s / sqrt(s^T A s / (2 max_kl))`` with ``A s = g`` solved by CG,
    ``A = curvature + damping * I``. Subtract it (times the line-search fraction) from params.
    """
    checks.positive_number(max_kl, "max_kl")
    checks.non_negative_number(damping, "damping")
    checks.positive_int(cg_iters, "cg_iters")

    def damped(v: Vector) -> Vector:
        return curvature(v) + damping * v

    direction, residual = _conjugate_gradient(damped, loss_grad, cg_iters, _CG_RESIDUAL_TOL)
    # s^T A s without another product: CG keeps r = g - A s, so A s = g - r. Each product costs
    # as much as a CG iteration (about 10% of the step with the default 10 iterations).
    shs = 0.5 * torch.dot(direction, loss_grad - residual)
    return direction / torch.sqrt(shs.clamp_min(1e-30) / max_kl)


class LineSearchResult(NamedTuple):
    """The outcome of :func:`backtracking_line_search`: the accepted point and its loss and KL."""

    params: Vector
    loss: float
    kl: float
    step_fraction: float  # 0.0 when no step was accepted
    accepted: bool


def backtracking_line_search(
    loss_and_kl: Callable[[Vector], tuple[torch.Tensor, torch.Tensor]],
    x: Vector,
    full_step: Vector,
    old_loss: float,
    max_kl: float,
    max_steps: int = 15,
    backtrack_ratio: float = 0.8,
) -> LineSearchResult:
    """Try ``x - ratio^k * full_step`` for ``k = 0..max_steps-1``; accept the first with lower loss
    and mean KL below ``max_kl``. If none qualifies, keep ``x``. (Runner-level: it reads scalars.)
    """
    checks.positive_int(max_steps, "max_steps")
    checks.number(backtrack_ratio, "backtrack_ratio", 0.0, 1.0, low_open=True, high_open=True)
    checks.positive_number(max_kl, "max_kl")
    fraction = 1.0
    for _ in range(max_steps):
        candidate = x - fraction * full_step
        with torch.no_grad():
            loss, kl = loss_and_kl(candidate)
        loss_v, kl_v = float(loss), float(kl)
        if loss_v < old_loss and kl_v < max_kl:
            return LineSearchResult(candidate, loss_v, kl_v, fraction, True)
        fraction *= backtrack_ratio
    return LineSearchResult(x, old_loss, 0.0, 0.0, False)
