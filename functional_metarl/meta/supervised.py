"""Supervised meta-learners on the shared MAML core: MAML (second / first order), Meta-SGD,
ANIL and Reptile, vmapped over tasks, optionally ``torch.compile``-d.

Every learner is a :class:`MetaLearner`, a NamedTuple of pure functions built by a factory::

    learner = meta.maml(loss_fn, optim.sgd(0.01), steps=1)        # or fomaml / meta_sgd / anil / reptile
    mp = learner.init(params)                                      # MetaParams(params, inner_state)
    grads, loss = learner.meta_gradient(mp, support, query)        # grads: MetaParams, loss: 0-d
    adapted = learner.adapt(mp, support)                           # params with a leading task axis

``loss_fn(params, batch) -> 0-d Tensor`` scores *one task's* batch (unbatched; the learners vmap
it). ``support`` / ``query`` are pytrees (e.g. ``RegressionBatch(x, y)``) whose leaves are
``[tasks, K, *feature]``: every leaf shares the task axis, the leaves of one batch share ``K``,
and support and query agree on the feature axes. The learners check this at the boundary and then
run a lean hot path: per task, ``grad`` of "adapt on the support set, then score the query set",
``vmap``-ed over tasks (one backward per task, batched), averaged over tasks. Nested
``torch.func.grad`` makes the second-order terms exact, and it is what ``torch.compile`` can
trace end to end (``compile=True`` compiles the whole meta-gradient, static shapes; on CPU with
inductor's ``cpp_wrapper``). The first call compiles (tens of seconds); a new meta-batch size compiles
again, and dynamo keeps a limited number of compiled variants per function (``torch._dynamo.reset()``
between many differently-shaped learners).

Memory: vmapping all tasks at once keeps every task's inner-loop graph alive together, so peak
memory grows with the meta-batch. ``chunk_size=c`` vmaps ``c`` tasks at a time and sums the
gradients over chunks (compiled per chunk when ``compile=True``): ``chunk_size=1`` holds one
task's graph, like a per-task loop, and is slower than all-at-once.

The meta-objective is ``mean_t loss_fn(adapt(theta, support_t), query_t)``; its gradient is
``meta_gradient``'s first output. Reptile has no such objective: its ``meta_gradient`` returns
the pseudo-gradient ``theta - mean_t phi_t`` (``phi_t`` = adapted params), so an outer
``optim.sgd(epsilon)`` step is exactly Reptile's update ``theta + epsilon (mean_t phi_t - theta)``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

import torch
from torch.func import grad_and_value, vmap

from ..optim import GradientTransformation, apply_updates
from ..optim import meta_sgd as _meta_sgd_opt
from ..tree import Params, tree_map
from .. import checks
from .maml import adapt
from .task_batches import LossFn, check_task_batches

__all__ = [
    "MetaParams",
    "MetaLearner",
    "mse_loss",
    "maml",
    "fomaml",
    "meta_sgd",
    "anil",
    "reptile",
    "last_layer",
    "check_task_batches",
    "adaptation_losses",
    "meta_update",
]

class MetaParams(NamedTuple):
    """What the outer loop learns: the network's initial ``params`` and, for Meta-SGD, the inner
    optimizer's state (``optim.MetaSgdState(lr)``, per-parameter step sizes); ``()`` otherwise."""

    params: Params
    inner_state: Any = ()


class MetaLearner(NamedTuple):
    """A supervised meta-learner as pure functions (see the module docstring).

    * ``init(params) -> MetaParams``
    * ``meta_gradient(meta, support, query) -> (grads: MetaParams, loss: 0-d)``: ``loss`` is the
      mean query loss after adaptation; ``grads`` has ``meta``'s structure.
    * ``meta_loss(meta, support, query) -> 0-d`` (``None`` for Reptile, which has no objective).
    * ``adapt(meta, support, steps=None) -> Params`` with leading task axis ``[tasks, ...]``;
      ``steps`` overrides the learner's (``0`` returns the initial params, broadcast).
    """

    name: str
    init: Callable[[Params], MetaParams]
    meta_gradient: Callable[[MetaParams, Any, Any], tuple[MetaParams, torch.Tensor]]
    meta_loss: Callable[[MetaParams, Any, Any], torch.Tensor] | None
    adapt: Callable[..., Params]
    steps: int
    first_order: bool


def mse_loss(apply: Callable[[Params, torch.Tensor], torch.Tensor]) -> LossFn:
    """``loss(params, batch) = mean((apply(params, batch.x) - batch.y) ** 2)`` for one task.

    ``batch`` is anything with ``x: [K, in_dim]`` and ``y: [K, out_dim]`` (a ``RegressionBatch``).
    ``apply`` is a network's forward, e.g. ``net.apply``.
    """
    checks.function(apply, "apply", "(params, x) -> y")

    def loss(params: Params, batch: Any) -> torch.Tensor:
        return torch.mean((apply(params, batch.x) - batch.y) ** 2)

    return loss


def last_layer(params: Params) -> tuple[str, ...]:
    """Names of the last layer's params (those sharing the last name's module prefix), e.g.
    ``("4.weight", "4.bias")`` for ``nn.mlp(1, 1, (40, 40))``: ANIL's default head."""
    checks.params_dict(params, "params")
    last = list(params)[-1]
    prefix = last.rsplit(".", 1)[0] + "." if "." in last else last
    return tuple(k for k in params if k == last or k.startswith(prefix))


# ----------------------------------------------------------------------------- the shared core


def _make_adapt_one(
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    steps: int,
    first_order: bool,
    learn_state: bool,
    head: tuple[str, ...] | None,
) -> Callable[[MetaParams, Any], Params]:
    """Adaptation of one task (unbatched): ``steps`` updates of all params, or of ``head`` only."""
    if head is None:

        def adapt_one(meta: MetaParams, support: Any) -> Params:
            state = meta.inner_state if learn_state else None
            return adapt(meta.params, support, loss_fn, inner_opt, steps=steps, first_order=first_order, opt_state=state)

        return adapt_one

    head_set = frozenset(head)

    def adapt_head(meta: MetaParams, support: Any) -> Params:
        params = meta.params
        body = {k: v for k, v in params.items() if k not in head_set}

        def head_loss(h: Params, batch: Any) -> torch.Tensor:
            return loss_fn({**body, **h}, batch)

        state = meta.inner_state if learn_state else None
        new_head = adapt({k: params[k] for k in head}, support, head_loss, inner_opt, steps=steps, first_order=first_order,
                         opt_state=state)
        return {k: new_head[k] if k in head_set else v for k, v in params.items()}

    return adapt_head


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)`` with static shapes, chosen per device type on the first call.

    On CPU, inductor's ``cpp_wrapper`` (C++ host code instead of Python between kernels) cuts the
    per-kernel overhead that dominates small meta-learning graphs (``docs/results/benchmarks.md``).
    """
    compiled: dict[str, Callable[..., Any]] = {}

    def call(meta: MetaParams, *args: Any) -> Any:
        device = next(iter(meta.params.values())).device.type
        if device not in compiled:
            options = {"cpp_wrapper": True} if device == "cpu" else None
            compiled[device] = torch.compile(fn, dynamic=False, options=options)
        return compiled[device](meta, *args)

    return call


def _broadcast_tasks(params: Params, tasks: int) -> Params:
    return {k: v.expand(tasks, *v.shape) for k, v in params.items()}


def _build(
    name: str,
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    steps: int,
    first_order: bool,
    learn_state: bool,
    head: Sequence[str] | None,
    reptile_update: bool,
    compile: bool,
    chunk_size: int | None,
) -> MetaLearner:
    checks.function(loss_fn, "loss_fn", "loss_fn(params, batch) -> loss")
    chunk = None if chunk_size is None else checks.positive_int(chunk_size, "chunk_size")
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    steps = checks.positive_int(steps, "steps")
    for flag_name, value in (("first_order", first_order), ("learn_state", learn_state),
                             ("reptile_update", reptile_update), ("compile", compile)):
        checks.flag(value, flag_name)
    head_t: tuple[str, ...] | None = None
    if head is not None:
        if isinstance(head, str) or not all(isinstance(h, str) for h in head):
            raise TypeError(f"head must be a sequence of param names, got {head!r}")
        head_t = tuple(head)
        if not head_t:
            raise ValueError("head must name at least one parameter")

    def check_meta(meta: Any, where: str) -> MetaParams:
        if not isinstance(meta, MetaParams):
            raise TypeError(f"{where}: expected MetaParams (from learner.init), got {type(meta).__name__}")
        params = checks.params_dict(meta.params, f"{where}: params")
        if head_t is not None:
            missing = [h for h in head_t if h not in params]
            if missing:
                raise ValueError(f"{where}: head names {missing} are not in params {list(params)}")
        if learn_state:
            lr = getattr(meta.inner_state, "lr", None)
            adapted = head_t if head_t is not None else tuple(params)
            if not isinstance(lr, dict) or set(lr) != set(adapted):
                raise ValueError(f"{where}: Meta-SGD inner_state.lr must have the keys {sorted(adapted)}")
        return meta

    def init(params: Params) -> MetaParams:
        params = checks.params_dict(params, f"{name}.init: params")
        if head_t is not None:
            missing = [h for h in head_t if h not in params]
            if missing:
                raise ValueError(f"{name}.init: head names {missing} are not in params {list(params)}")
        if not learn_state:
            return MetaParams(dict(params), ())
        adapted = {k: params[k] for k in (head_t if head_t is not None else params)}
        return MetaParams(dict(params), inner_opt.init(adapted))

    adapt_one = _make_adapt_one(loss_fn, inner_opt, steps, first_order, learn_state, head_t)

    def task_loss(meta: MetaParams, support: Any, query: Any) -> torch.Tensor:
        return loss_fn(adapt_one(meta, support), query)

    per_task_grad = vmap(grad_and_value(task_loss), in_dims=(None, 0, 0))

    def gradient_sums(meta: MetaParams, support: Any, query: Any) -> tuple[MetaParams, torch.Tensor]:
        """Sums over the batch's tasks of the per-task meta-gradient and query loss."""
        grads, losses = per_task_grad(meta, support, query)
        return tree_map(lambda g: g.sum(0), grads), losses.sum()

    def reptile_sums(meta: MetaParams, support: Any, query: Any) -> tuple[MetaParams, torch.Tensor]:
        """Sums over the batch's tasks of ``theta - phi_t`` and of the adapted query loss."""
        adapted = vmap(adapt_one, in_dims=(None, 0))(meta, support)
        losses = vmap(loss_fn)(adapted, query)
        tasks = losses.shape[0]
        diff = {k: tasks * p - adapted[k].sum(0) for k, p in meta.params.items()}
        return MetaParams(diff, tree_map(torch.zeros_like, meta.inner_state)), losses.sum()

    sums = reptile_sums if reptile_update else gradient_sums

    def whole(meta: MetaParams, support: Any, query: Any, tasks: int) -> tuple[MetaParams, torch.Tensor]:
        total, loss = sums(meta, support, query)
        return tree_map(lambda g: g / tasks, total), loss / tasks

    def accumulate(
        meta: MetaParams, support: Any, query: Any, acc: MetaParams, acc_loss: torch.Tensor
    ) -> tuple[MetaParams, torch.Tensor]:
        total, loss = sums(meta, support, query)
        return tree_map(torch.add, acc, total), acc_loss + loss

    if compile:
        whole = _compiled(whole)
        accumulate = _compiled(accumulate)

    def core(meta: MetaParams, support: Any, query: Any, tasks: int) -> tuple[MetaParams, torch.Tensor]:
        if chunk is None or chunk >= tasks:
            return whole(meta, support, query, tasks)
        acc = tree_map(torch.zeros_like, meta)
        acc_loss = next(iter(meta.params.values())).new_zeros(())
        for start in range(0, tasks, chunk):
            part = slice(start, start + chunk)
            s_part = tree_map(lambda x: x[part], support)
            q_part = tree_map(lambda x: x[part], query)
            acc, acc_loss = accumulate(meta, s_part, q_part, acc, acc_loss)
        return tree_map(lambda g: g / tasks, acc), acc_loss / tasks

    def meta_gradient(meta: MetaParams, support: Any, query: Any) -> tuple[MetaParams, torch.Tensor]:
        """``(d meta_loss / d meta, meta_loss)``; Reptile: ``(theta - mean adapted, query loss)``."""
        check_meta(meta, f"{name}.meta_gradient")
        tasks, _, _ = check_task_batches(support, query)
        grads, loss = core(meta, support, query, tasks)
        if not torch.isfinite(loss):
            raise ValueError(f"{name}: the meta-loss is not finite ({loss.item()}); lower the inner lr?")
        return grads, loss

    def meta_loss(meta: MetaParams, support: Any, query: Any) -> torch.Tensor:
        """``mean_t loss_fn(adapt(meta, support_t), query_t)``; differentiable in ``meta``."""
        check_meta(meta, f"{name}.meta_loss")
        check_task_batches(support, query)
        return vmap(task_loss, in_dims=(None, 0, 0))(meta, support, query).mean()

    def adapt_tasks(meta: MetaParams, support: Any, steps: int | None = None) -> Params:
        """Adapted params for every task of ``support`` -> leaves ``[tasks, ...]``."""
        check_meta(meta, f"{name}.adapt")
        tasks, _, _ = check_task_batches(support, support)
        if steps is None:
            fn = adapt_one
        elif checks.non_negative_int(steps, "steps") == 0:
            return _broadcast_tasks(meta.params, tasks)
        else:
            fn = _make_adapt_one(loss_fn, inner_opt, steps, first_order, learn_state, head_t)
        return vmap(fn, in_dims=(None, 0))(meta, support)

    return MetaLearner(
        name=name,
        init=init,
        meta_gradient=meta_gradient,
        meta_loss=None if reptile_update else meta_loss,
        adapt=adapt_tasks,
        steps=steps,
        first_order=first_order,
    )


# ----------------------------------------------------------------------------- the family


def maml(
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    steps: int = 1,
    first_order: bool = False,
    compile: bool = False,
    chunk_size: int | None = None,
) -> MetaLearner:
    """MAML (Finn et al. 2017): adapt every param with ``inner_opt`` for ``steps`` steps.

    ``first_order=True`` treats the inner gradients as constants (FOMAML). ``compile=True``
    wraps the meta-gradient in ``torch.compile``. ``chunk_size`` (default: all tasks at once)
    vmaps that many tasks at a time and sums over chunks: peak memory grows with the chunk, not
    with the meta-batch, for some speed.
    """
    return _build("fomaml" if first_order else "maml", loss_fn, inner_opt, steps, first_order,
                  learn_state=False, head=None, reptile_update=False, compile=compile, chunk_size=chunk_size)


def fomaml(
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    steps: int = 1,
    compile: bool = False,
    chunk_size: int | None = None,
) -> MetaLearner:
    """First-order MAML: ``maml(..., first_order=True)``."""
    return maml(loss_fn, inner_opt, steps, first_order=True, compile=compile, chunk_size=chunk_size)


def meta_sgd(
    loss_fn: LossFn,
    init_lr: float = 0.01,
    steps: int = 1,
    first_order: bool = False,
    compile: bool = False,
    chunk_size: int | None = None,
) -> MetaLearner:
    """Meta-SGD (Li et al. 2017): MAML whose inner step sizes are per-parameter and meta-learned.

    The step sizes live in ``MetaParams.inner_state.lr`` (an ``optim.MetaSgdState``), start at
    ``init_lr`` and receive gradients like the params do. Other arguments as in :func:`maml`.
    """
    return _build("meta_sgd", loss_fn, _meta_sgd_opt(init_lr), steps, first_order,
                  learn_state=True, head=None, reptile_update=False, compile=compile, chunk_size=chunk_size)


def anil(
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    head: Sequence[str],
    steps: int = 1,
    first_order: bool = False,
    compile: bool = False,
    chunk_size: int | None = None,
) -> MetaLearner:
    """ANIL (Raghu et al. 2020): the inner loop adapts only the ``head`` params (e.g.
    ``last_layer(params)``); the body is shared as is, and meta-learned through the outer loss
    (and, at second order, through the head's inner gradients). Other arguments as in :func:`maml`."""
    return _build("anil", loss_fn, inner_opt, steps, first_order,
                  learn_state=False, head=head, reptile_update=False, compile=compile, chunk_size=chunk_size)


def reptile(
    loss_fn: LossFn,
    inner_opt: GradientTransformation,
    steps: int = 5,
    compile: bool = False,
    chunk_size: int | None = None,
) -> MetaLearner:
    """Reptile (Nichol et al. 2018). ``meta_gradient`` returns ``theta - mean_t phi_t`` where
    ``phi_t`` is ``theta`` after ``steps`` steps of ``inner_opt`` on task t's support set, and the
    mean query loss of the ``phi_t``. Step with ``optim.sgd(epsilon)`` for Reptile's update."""
    return _build("reptile", loss_fn, inner_opt, steps, True,
                  learn_state=False, head=None, reptile_update=True, compile=compile, chunk_size=chunk_size)


# ----------------------------------------------------------------------------- helpers


def meta_update(
    learner: MetaLearner,
    outer_opt: GradientTransformation,
    meta: MetaParams,
    outer_state: Any,
    support: Any,
    query: Any,
) -> tuple[MetaParams, Any, torch.Tensor]:
    """One outer step: ``(meta, outer_state, loss)`` after ``outer_opt`` applies the meta-gradient.

    ``outer_state = outer_opt.init(meta)`` to start.
    """
    checks.instance(learner, "learner", MetaLearner)
    checks.instance(outer_opt, "outer_opt", GradientTransformation)
    grads, loss = learner.meta_gradient(meta, support, query)
    updates, outer_state = outer_opt.update(grads, outer_state, meta)
    return apply_updates(meta, updates), outer_state, loss


def adaptation_losses(
    learner: MetaLearner,
    loss_fn: LossFn,
    meta: MetaParams,
    support: Any,
    query: Any,
    steps: Iterable[int] = range(11),
) -> torch.Tensor:
    """Per-task query loss after each number of inner steps in ``steps`` -> ``[len(steps), tasks]``
    (detached). Each entry adapts from scratch, so stateful inner optimizers are handled right.
    """
    checks.instance(learner, "learner", MetaLearner)
    checks.function(loss_fn, "loss_fn", "loss_fn(params, batch) -> loss")
    check_task_batches(support, query)
    steps = [checks.non_negative_int(s, "steps[i]") for s in steps]
    out = []
    for s in steps:
        adapted = learner.adapt(meta, support, s)
        out.append(vmap(loss_fn)(adapted, query).detach())
    return torch.stack(out)
