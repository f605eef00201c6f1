"""Where one MAML-TRPO meta-iteration's time goes, against what the machine's matmul units allow.

Used by ``benchmarks/maml_nav_iteration.py --roofline``. Three measurements of a ``MAMLTrainer``:

* ``PhaseClock``: wall time of each phase of ``train_iteration`` (rollouts, baseline fits,
  adaptation, meta-gradient, curvature build, CG, line search, the rest), by wrapping the
  module-level functions the trainer and the ``meta.trpo`` meta-step call (and the meta-gradient
  function the meta-step holds, see :func:`prepare`). It also counts the line-search
  evaluations, whose number changes from iteration to iteration.
* ``MatmulRecorder``: a dispatch mode that records every matmul (``mm``, ``addmm``, ``bmm``,
  ``baddbmm``) of one iteration with its phase, shapes and strides; its FLOP total is checked
  against ``torch.utils.flop_counter.FlopCounterMode`` in the same run.
* ``matmul_seconds``: each recorded (op, shapes, strides) timed alone at the same thread count.

The *FLOP floor* of an iteration is the sum over its matmuls of their standalone times: the time
the iteration would take if it did nothing but its matrix products, each as fast as this
machine runs that exact product. (Elementwise work, e.g. ``tanh``, and dispatch are what the
gap to the measured time is made of.) The *peak floor* divides the FLOPs by the throughput of
a large square matmul instead: what the same FLOPs would cost at the best shape.
"""

from __future__ import annotations

import collections
import statistics
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import functional_metarl.meta.meta_steps as meta_steps
import functional_metarl.runners.maml_trainer as maml_trainer

PHASES = ("rollout", "baseline", "adaptation", "gradient", "curvature build", "CG", "line search", "rest")
LINE_SEARCH = "line search"

_aten = torch.ops.aten
# op -> index of its two matrix operands
_MATMULS = {_aten.mm.default: (0, 1), _aten.bmm.default: (0, 1), _aten.addmm.default: (1, 2),
            _aten.baddbmm.default: (1, 2)}

MatmulKey = tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # op, shapes, strides


def matmul_flops(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """2 * m * k * n (times the batch for ``bmm``): a multiply and an add per term."""
    batch = a_shape[0] if len(a_shape) == 3 else 1
    m, k = a_shape[-2:]
    return 2 * batch * m * k * b_shape[-1]


class PhaseClock:
    """Wall time per phase; ``phase`` is also read by ``MatmulRecorder``."""

    def __init__(self) -> None:
        self.phase = "rest"
        self.seconds: collections.Counter[str] = collections.Counter()
        self.line_search_evals = 0

    @contextmanager
    def enter(self, name: str) -> Iterator[None]:
        outer, self.phase = self.phase, name
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed
            if outer != "rest":  # nested phase: its time is not also the outer one's
                self.seconds[outer] -= elapsed
            self.phase = outer

    def timed(self, fn: Any, name: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.enter(name):
                return fn(*args, **kwargs)

        return wrapper


# The clock that the meta-gradient functions of prepared trainers report to (None: not timed).
_ACTIVE: list[PhaseClock | None] = [None]


def prepare(trainer: maml_trainer.MAMLTrainer) -> None:
    """Give ``trainer`` a meta-step whose meta-gradient function reports to the active clock.

    A ``MetaStep`` holds its meta-gradient function in a closure (``meta.surrogate_gradient_fn``,
    looked up in ``meta.meta_steps`` when the factory runs), so it is rebuilt here, once, with
    that function wrapped; outside :func:`instrumented` the wrapper only calls through. Call it
    before the warm-up (``compile=True`` compiles the rebuilt step's gradient there); the state
    of the meta-step (``trainer.meta_state``) is kept. Idempotent.
    """
    if getattr(trainer, "_roofline_prepared", False):
        return
    build = meta_steps.surrogate_gradient_fn

    def timed_gradient_fn(*args: Any, **kwargs: Any) -> Any:
        fn = build(*args, **kwargs)

        def gradient(*a: Any, **k: Any) -> Any:
            clock = _ACTIVE[0]
            if clock is None:
                return fn(*a, **k)
            with clock.enter("gradient"):
                return fn(*a, **k)

        return gradient

    meta_steps.surrogate_gradient_fn = timed_gradient_fn
    try:
        trainer.meta_step = maml_trainer.make_meta_step(trainer.config, trainer.policy, trainer.inner_opt)
    finally:
        meta_steps.surrogate_gradient_fn = build
    trainer._roofline_prepared = True


@contextmanager
def instrumented(trainer: maml_trainer.MAMLTrainer, clock: PhaseClock) -> Iterator[None]:
    """Wrap the functions ``train_iteration`` calls so that ``clock`` sees each phase; undone on exit.

    The curvature build, CG and the line search are looked up in ``meta.meta_steps``' namespace
    at call time, so wrapping them there reaches the ``meta.trpo`` step; the line search's
    objective is wrapped to count its evaluations. The meta-gradient the meta-step computes
    itself is timed through :func:`prepare` (done here if it was not done before).
    """
    prepare(trainer)
    saved_trainer = {name: getattr(maml_trainer, name) for name in
                     ("rollout", "make_rl_batches", "adapt_tasks", "adapt_tasks_vjp", "surrogate_gradient_through")}
    saved_steps = {name: getattr(meta_steps, name) for name in
                   ("gauss_newton_operator", "trpo_step_direction", "backtracking_line_search")}

    def line_search(loss_and_kl: Any, *args: Any, **kwargs: Any) -> Any:
        def counted(flat: torch.Tensor) -> Any:
            clock.line_search_evals += 1
            return loss_and_kl(flat)

        return saved_steps["backtracking_line_search"](counted, *args, **kwargs)

    maml_trainer.rollout = clock.timed(saved_trainer["rollout"], "rollout")
    maml_trainer.make_rl_batches = clock.timed(saved_trainer["make_rl_batches"], "baseline")
    maml_trainer.adapt_tasks = clock.timed(saved_trainer["adapt_tasks"], "adaptation")
    # The default trainer keeps the adaptation's vjp and differentiates through it later.
    maml_trainer.adapt_tasks_vjp = clock.timed(saved_trainer["adapt_tasks_vjp"], "adaptation")
    maml_trainer.surrogate_gradient_through = clock.timed(saved_trainer["surrogate_gradient_through"], "gradient")
    meta_steps.gauss_newton_operator = clock.timed(saved_steps["gauss_newton_operator"], "curvature build")
    meta_steps.trpo_step_direction = clock.timed(saved_steps["trpo_step_direction"], "CG")
    meta_steps.backtracking_line_search = clock.timed(line_search, LINE_SEARCH)
    _ACTIVE[0] = clock
    try:
        yield
    finally:
        _ACTIVE[0] = None
        for name, fn in saved_trainer.items():
            setattr(maml_trainer, name, fn)
        for name, fn in saved_steps.items():
            setattr(meta_steps, name, fn)


class MatmulRecorder(TorchDispatchMode):
    """Counts every matmul by (phase, op, shapes, strides) while active."""

    def __init__(self, clock: PhaseClock) -> None:
        super().__init__()
        self.clock = clock
        self.counts: collections.Counter[tuple[str, MatmulKey]] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        if func in _MATMULS:
            i, j = _MATMULS[func]
            a, b = args[i], args[j]
            key = (func.__name__, tuple(a.shape), tuple(b.shape), tuple(a.stride()), tuple(b.stride()))
            self.counts[(self.clock.phase, key)] += 1
        return func(*args, **(kwargs or {}))

    def flops_by_phase(self) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for (phase, key), count in self.counts.items():
            out[phase] += count * matmul_flops(key[1], key[2])
        return out


def record_iteration(trainer: maml_trainer.MAMLTrainer) -> tuple[MatmulRecorder, int, int]:
    """Run one meta-iteration under the recorder; returns ``(recorder, FlopCounterMode's total,
    line-search evaluations)``."""
    clock = PhaseClock()
    recorder = MatmulRecorder(clock)
    with instrumented(trainer, clock), FlopCounterMode(display=False) as counter, recorder:
        trainer.train_iteration()
    return recorder, counter.get_total_flops(), clock.line_search_evals


def _operand(shape: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """A random tensor with this shape and strides (a view of a large enough buffer)."""
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    return torch.randn(size).as_strided(shape, stride)


def matmul_seconds(key: MatmulKey, repeats: int = 9) -> float:
    """Median standalone time of one recorded matmul (same op, shapes and strides)."""
    name, a_shape, b_shape, a_stride, b_stride = key
    a, b = _operand(a_shape, a_stride), _operand(b_shape, b_stride)
    fn = torch.mm if len(a_shape) == 2 else torch.bmm  # the bias add of addmm / baddbmm is not matmul work
    for _ in range(2):
        fn(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_matmul_flops_per_second(size: int = 1024, repeats: int = 7) -> float:
    """Throughput of a large square fp32 matmul at the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(torch.mm, a, b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def floor_by_phase(recorder: MatmulRecorder) -> collections.Counter[str]:
    """Seconds per phase if every recorded matmul ran alone at its measured speed and nothing else ran."""
    seconds = {key: matmul_seconds(key) for key in {key for _, key in recorder.counts}}
    out: collections.Counter[str] = collections.Counter()
    for (phase, key), count in recorder.counts.items():
        out[phase] += count * seconds[key]
    return out
