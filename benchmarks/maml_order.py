"""MAML meta-gradient microbenchmark on 2D navigation: first vs second order, vmap vs a task loop,
eager vs torch.compile; plus the cost of every other piece of one MAML-TRPO meta-iteration.

    python benchmarks/maml_order.py                 # meta-batch 20 and 40, eager + compiled
    python benchmarks/maml_order.py --quick         # meta-batch 20 only, fewer repeats, no compile (~1 min)
    python benchmarks/maml_order.py --no-compile --threads 1 --json /tmp/maml_order.json
    python benchmarks/maml_order.py --cold-compile  # compile without torch.compile's on-disk caches

What is measured (the MAML paper's 2D-navigation settings: 20 episodes per task, horizon 100,
64x64 tanh Gaussian policy, one inner SGD step of lr 0.1):

* The meta-gradient on one fixed batch (real rollouts: Navigation2D tasks, ``envs.rollout`` of
  the meta-params for the train episodes, one adaptation step, a rollout of the adapted params
  for the valid episodes, ``meta.make_rl_batches`` of both, as ``MAMLTrainer.train_iteration``
  does), for every combination of

  - order: first-order (inner gradient treated as a constant) / second-order (exact);
  - batching: ``vmap`` = the library's ``torch.func.grad_and_value(meta.maml_surrogate)`` with
    ``old_log_prob=None`` (the inner gradients of all tasks as one gradient over stacked per-task
    parameter copies, the network as batched matmuls, losses and optimizer vmapped over tasks),
    ``nested`` = the textbook form, grad of vmap over tasks of the per-task inner grad, or
    ``loop`` = a Python loop over tasks with plain
    ``torch.autograd`` (shared leaf params; per task the inner REINFORCE loss,
    ``autograd.grad(create_graph=not first_order)``, the adapted params and the surrogate; the
    sum over tasks / N is differentiated with one ``autograd.grad``);
  - mode: eager, or ``torch.compile(dynamic=False)`` of the vmap variant only (the loop uses
    ``autograd.grad(create_graph=True)``, which torch.compile does not trace: shown as n/a).
    Compilation time (the first call) is printed and excluded from the medians.

  Before any timing it checks that vmap and loop give the same meta-gradient (relative error
  < 1e-4 in float32), that compiled equals eager, and that second order differs from first.

* The pieces of one meta-iteration at the first meta-batch size: the two rollouts, one
  ``make_rl_batches`` (a train_iteration makes two: train and valid), the adaptation that produces the post-rollout params, one full
  ``meta.trpo`` meta-step with the default ``TRPOConfig()`` (exact curvature on every 4th episode of
  10 tasks), with ``curvature="adapted"``, and with the whole batch (pytorch-maml-rl's step), and one Fisher-vector
  product through the adaptation by each route: (a) ``rl.gauss_newton_operator`` (``J v`` and
  ``J^T u`` by backward passes on one graph built per step, closed-form KL curvature, as
  ``meta.trpo`` builds it) and (b) the exact
  double-backward Hessian-vector product of the mean KL (``rl.hessian_vector_product`` on the
  flat params). At the old params the KL Hessian *is* the Gauss-Newton/Fisher form, so (a) and
  (b) must agree; their relative difference is printed.

Timing uses ``torch.utils.benchmark.Timer.blocked_autorange`` after a warm-up call. The
meta-gradient variants (all meta-batch sizes) are timed interleaved: a few rounds, each giving
every variant a short ``blocked_autorange``, with the runs pooled, so that a change in the load
of a shared machine hits every variant alike. The tables report medians (means are not robust
on a shared machine), the IQR, the fastest run and the number of timed runs. ``/ loop eager``
compares with the loop in eager mode at the same meta-batch and order (the loop has no compiled
mode); ``2nd/1st`` compares second with first order at the same batching and mode;
``compiled/eager`` compares the compiled vmap with the eager vmap.

Run time on 2 busy cores: about 2.5 minutes for the default run when torch.compile's on-disk
caches are warm (a repeated run), about 2 more minutes when they are cold (each of the four
compilations takes 30-40 s; ``--cold-compile`` forces that); ``--quick`` about 1 minute.

OpenMP: on a shared machine, OpenMP's default *active* (spinning) wait makes multi-threaded
torch ops 10-50x slower whenever another process holds a core; ``--omp-wait-policy passive``
sets ``OMP_WAIT_POLICY=PASSIVE`` before importing torch for that case. On a quiet machine the
passive policy costs about 1.8x on these small ops (threads sleep between ops), so the default
leaves OpenMP alone unless the environment sets the variable. The choice is printed and written
to the JSON.

Results also go to ``--json`` (default benchmarks/results/maml_order.json) with the torch
version, the thread count, the load average and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from _common import configure_openmp  # benchmarks/_common.py (this folder is on sys.path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="meta-batch 20 only, fewer repeats, no compile")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "maml_order.json"),
                        help="where to write the results (default benchmarks/results/maml_order.json)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--cold-compile", action="store_true",
                        help="disable torch.compile's on-disk caches, so the compile time printed is a cold one "
                             "(by default a repeated run reuses them and compiles in seconds)")
    parser.add_argument("--meta-batches", type=int, nargs="+", default=None,
                        help="meta-batch sizes (default 20 40; --quick: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default=None,
                        help="OMP_WAIT_POLICY to set before torch loads (default: OpenMP default unless the "
                             "environment already sets it)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.meta_batches is None:
        args.meta_batches = [20] if args.quick else [20, 40]
    if any(n < 1 for n in args.meta_batches):
        parser.error("--meta-batches must be positive")
    if args.quick:
        args.no_compile = True
    return args




if __name__ == "__main__":
    _ARGS = parse_args()
    _OMP_POLICY = configure_openmp(_ARGS.omp_wait_policy)

import torch  # noqa: E402
from torch.func import grad_and_value, jvp, vjp, vmap  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from functional_metarl.envs import Navigation2D, rollout, sample_noise  # noqa: E402
from functional_metarl.distributions import GAUSSIAN  # noqa: E402
from functional_metarl.meta import (  # noqa: E402
    RLBatch,
    TRPOConfig,
    TRPOState,
    adapt_rl,
    adapt_tasks,
    maml_surrogate,
    make_rl_batches,
    trpo,
)
from functional_metarl.nn import gaussian_policy  # noqa: E402
from functional_metarl.optim import sgd  # noqa: E402
from functional_metarl.rl import (  # noqa: E402
    gauss_newton_operator,
    gaussian_kl,
    gaussian_log_prob,
    hessian_vector_product,
    masked_episode_mean,
    policy_gradient_loss,
    surrogate_loss,
)
from functional_metarl.tree import ravel  # noqa: E402

# The MAML paper's 2D-navigation settings.
EPISODES_PER_TASK = 20
HORIZON = 100
HIDDEN = (64, 64)
ACTIVATION = "tanh"
INNER_LR = 0.1
INNER_STEPS = 1
GAMMA = 0.99
GAE_LAMBDA = 1.0
REL_TOL = 1e-4


# --------------------------------------------------------------------------------------- setup
class Problem:
    """One fixed meta-batch: params, tasks, train/valid episodes and their RL batches."""

    def __init__(self, meta_batch: int, seed: int):
        self.meta_batch = meta_batch
        self.env = Navigation2D(horizon=HORIZON)
        self.policy = gaussian_policy(self.env.obs_dim, self.env.act_dim, HIDDEN, ACTIVATION)
        self.inner_opt = sgd(INNER_LR)
        self.params = self.policy.init(seed)
        gen = torch.Generator().manual_seed(seed)
        self.tasks = self.env.sample_tasks(meta_batch, gen)
        self.train_noise = sample_noise(HORIZON, meta_batch, EPISODES_PER_TASK, self.env.act_dim, gen)
        self.valid_noise = sample_noise(HORIZON, meta_batch, EPISODES_PER_TASK, self.env.act_dim, gen)
        # As MAMLTrainer.train_iteration: roll out -> adapt -> roll out adapted -> batches.
        self.train_episodes = self.rollout_train()
        self.train = self.make_batches(self.train_episodes)
        self.adapted = self.adapt_for_rollout()
        self.valid_episodes = self.rollout_valid()
        self.valid = self.make_batches(self.valid_episodes)

    # the pieces of a meta-iteration, each a zero-argument-able method for the timer
    def rollout_train(self):
        return rollout(self.params, self.tasks, self.train_noise, self.env, self.policy)

    def rollout_valid(self):
        return rollout(self.adapted, self.tasks, self.valid_noise, self.env, self.policy, params_per_task=True)

    def make_batches(self, episodes):
        return make_rl_batches(episodes, GAMMA, GAE_LAMBDA)

    def adapt_for_rollout(self):
        """MAMLTrainer.adapt_batch (its batch is timed separately)."""
        with torch.no_grad():
            return adapt_tasks(self.params, self.train, self.policy, self.inner_opt, steps=INNER_STEPS, first_order=True)

    # the meta-gradient variants: each returns (grads dict, loss)
    def vmap_grad_fn(self, first_order: bool):
        surrogate = partial(maml_surrogate, policy=self.policy, inner_opt=self.inner_opt, steps=INNER_STEPS,
                            first_order=first_order)
        return grad_and_value(surrogate, has_aux=True)

    def nested_grad_fn(self, first_order: bool):
        """The textbook form: the per-task inner gradient *inside* vmap over tasks (grad of vmap of
        grad), with the policy's plain forward per task. ``maml_surrogate`` instead takes the
        inner gradients of all tasks as one gradient over stacked per-task parameter copies."""
        def surrogate(params, train, valid, old_log_prob):
            def per_task(train_i, valid_i):
                adapted = adapt_rl(params, train_i, self.policy, self.inner_opt, steps=INNER_STEPS, first_order=first_order)
                mean, log_std = self.policy.apply(adapted, valid_i.obs)
                log_prob = gaussian_log_prob(mean, log_std, valid_i.actions)
                return surrogate_loss(log_prob, log_prob.detach(), valid_i.advantages, valid_i.mask), adapted

            losses, adapted = vmap(per_task)(train, valid)
            return losses.mean(), adapted

        return grad_and_value(surrogate, has_aux=True)

    def vmap_call(self, fn):
        grads, (loss, _adapted) = fn(self.params, self.train, self.valid, None)
        return grads, loss

    def loop_grad(self, first_order: bool):
        """Python loop over tasks, plain torch.autograd (no torch.func)."""
        names = list(self.params)
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in self.params.items()}
        leaf_list = [leaves[k] for k in names]
        num_tasks = self.train.obs.shape[0]
        total = 0.0
        for i in range(num_tasks):
            tr = RLBatch(*(x[i] for x in self.train))
            va = RLBatch(*(x[i] for x in self.valid))
            mean, log_std = self.policy.apply(leaves, tr.obs)
            inner = policy_gradient_loss(gaussian_log_prob(mean, log_std, tr.actions), tr.advantages, tr.mask)
            inner_grads = torch.autograd.grad(inner, leaf_list, create_graph=not first_order)
            adapted = {k: leaves[k] - INNER_LR * g for k, g in zip(names, inner_grads)}
            mean, log_std = self.policy.apply(adapted, va.obs)
            log_prob = gaussian_log_prob(mean, log_std, va.actions)
            total = total + surrogate_loss(log_prob, log_prob.detach(), va.advantages, va.mask)
        loss = total / num_tasks
        grads = torch.autograd.grad(loss, leaf_list)
        return dict(zip(names, grads)), loss.detach()

    # TRPO pieces
    def trpo_step(self, config: TRPOConfig):
        """One ``meta.trpo`` step (built once per config, as a trainer holds it): ``(params, stats)``."""
        steps = self.__dict__.setdefault("_trpo_steps", {})
        if repr(config) not in steps:
            steps[repr(config)] = trpo(self.policy, self.inner_opt, steps=INNER_STEPS, config=config)
        params, _, stats = steps[repr(config)].update(self.params, TRPOState(), self.train, self.valid)
        return params, stats


def _mean_kl_curvature(old, tangent, mask: torch.Tensor):
    """The closed-form curvature that ``meta.trpo`` gives ``rl.gauss_newton_operator``: the
    Hessian of the masked mean KL at ``new = old`` times ``tangent``, from ``GAUSSIAN.fisher``
    and the weights of the masked means (mask ``[N, T, E]``)."""
    m = mask.to(old[0].dtype)
    num_tasks, num_episodes = m.shape[0], m.shape[-1]
    weight = (m / m.sum(dim=1, keepdim=True).clamp_min(1.0) / (num_tasks * num_episodes)).unsqueeze(-1)
    return tuple(f * weight for f in GAUSSIAN.fisher(old, tangent))


def flat(tree) -> torch.Tensor:
    return ravel(tree)[0].detach()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# --------------------------------------------------------------------------------------- timing
def _stats(times_s: list[float]) -> dict:
    times = sorted(times_s)
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = times[0]
    return {"median_ms": statistics.median(times) * 1e3, "iqr_ms": (q3 - q1) * 1e3, "min_ms": times[0] * 1e3,
            "runs": len(times)}


def _error_text(exc: BaseException, limit: int = 80) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"failed: {type(exc).__name__}: {text[:limit]}"


class Bench:
    """``torch.utils.benchmark.Timer.blocked_autorange`` with a warm-up and a minimum number of runs."""

    def __init__(self, threads: int, min_run_time: float, min_reps: int):
        self.threads = threads
        self.min_run_time = min_run_time
        self.min_reps = min_reps

    def _timer(self, fn, label: str) -> Timer:
        return Timer(stmt="fn()", globals={"fn": fn}, num_threads=self.threads, label="maml_order",
                     description=label)

    @staticmethod
    def _per_run(m) -> list[float]:
        return [t / m.number_per_run for t in m.raw_times for _ in range(m.number_per_run)]

    def __call__(self, fn, label: str, min_reps: int | None = None, warm_s: float | None = None) -> dict:
        """Warm up once (timed), then blocked_autorange long enough for ``min_reps`` runs.

        ``warm_s``: the caller has just run ``fn`` (or the same computation) and it took this
        long; then that run is the warm-up and none is repeated here (for the slow pieces).
        """
        reps = self.min_reps if min_reps is None else min_reps
        if warm_s is None:
            start = time.perf_counter()
            fn()
            warm_s = time.perf_counter() - start
        m = self._timer(fn, label).blocked_autorange(min_run_time=max(self.min_run_time, reps * warm_s))
        return {**_stats(self._per_run(m)), "warmup_ms": warm_s * 1e3}

    def interleaved(self, entries: list[tuple[str, object]], rounds: int, log) -> dict[str, dict]:
        """Time every ``(label, fn)`` in ``rounds`` round-robin rounds (a few runs each per round)
        and pool the runs, so that a change in the machine's load hits all of them alike."""
        warm = {}
        for label, fn in entries:
            start = time.perf_counter()
            fn()
            warm[label] = time.perf_counter() - start
        pooled: dict[str, list[float]] = {label: [] for label, _ in entries}
        start = time.perf_counter()
        for r in range(rounds):
            for label, fn in entries:
                m = self._timer(fn, label).blocked_autorange(min_run_time=max(self.min_run_time, 1.5 * warm[label]))
                pooled[label] += self._per_run(m)
            log(f"  round {r + 1}/{rounds} done ({time.perf_counter() - start:.0f} s)")
        return {label: {**_stats(pooled[label]), "warmup_ms": warm[label] * 1e3} for label, _ in entries}


# --------------------------------------------------------------------------------------- checks
def correctness_checks(problem: Problem, compiled: dict, log) -> list[dict]:
    """vmap vs loop (both orders), compiled vs eager, second vs first order."""
    n = problem.meta_batch
    checks = []
    grads = {}
    for first_order in (True, False):
        order = "first" if first_order else "second"
        g_vmap, loss_vmap = problem.vmap_call(problem.vmap_grad_fn(first_order))
        g_loop, loss_loop = problem.loop_grad(first_order)
        g_nested, loss_nested = problem.vmap_call(problem.nested_grad_fn(first_order))
        grads[order] = flat(g_vmap)
        for other, g_other, loss_other in (("loop", g_loop, loss_loop), ("nested", g_nested, loss_nested)):
            err = rel_err(flat(g_vmap), flat(g_other))
            checks.append({
                "meta_batch": n, "check": f"{order}-order vmap vs {other}", "rel_err": err,
                "loss_diff": abs(float(loss_vmap) - float(loss_other)), "ok": err < REL_TOL,
            })
        fn = compiled.get(order)
        if fn is not None and not isinstance(fn, Exception):
            g_comp, loss_comp = problem.vmap_call(fn)
            err = rel_err(flat(g_comp), flat(g_vmap))
            checks.append({
                "meta_batch": n, "check": f"{order}-order compiled vs eager (vmap)", "rel_err": err,
                "loss_diff": abs(float(loss_comp) - float(loss_vmap)), "ok": err < REL_TOL,
            })
    diff = rel_err(grads["first"], grads["second"])
    # Second order must actually differ from first order (else the Hessian term was dropped).
    checks.append({"meta_batch": n, "check": "second-order differs from first-order", "rel_err": diff,
                   "loss_diff": 0.0, "ok": diff > 10 * REL_TOL})
    for c in checks:
        log(f"  [{'PASS' if c['ok'] else 'FAIL'}] N={n:<3d} {c['check']:<40s} rel err {c['rel_err']:.2e}"
            f"   |loss diff| {c['loss_diff']:.1e}")
    return checks


# --------------------------------------------------------------------------------------- meta-gradient
def _cache_counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {"fx_hit": counters["inductor"]["fxgraph_cache_hit"], "fx_miss": counters["inductor"]["fxgraph_cache_miss"],
            "aot_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "aot_miss": counters["aot_autograd"]["autograd_cache_miss"]}


def compile_variants(problem: Problem, log) -> tuple[dict, dict]:
    """torch.compile(dynamic=False) of the vmap meta-gradient per order; the first call is timed.

    Returns ``({order: compiled fn or the exception}, {order: {"seconds", cache counters}})``.
    """
    out, info = {}, {}
    for first_order in (True, False):
        order = "first" if first_order else "second"
        fn = torch.compile(problem.vmap_grad_fn(first_order), dynamic=False)
        before = _cache_counters()
        start = time.perf_counter()
        try:
            problem.vmap_call(fn)
            seconds = time.perf_counter() - start
            out[order] = fn
            status = "ok"
        except Exception as exc:  # report and go on
            seconds = time.perf_counter() - start
            out[order] = exc
            status = _error_text(exc, 200)
        after = _cache_counters()
        delta = {k: after[k] - before[k] for k in after}
        info[order] = {"seconds": seconds, "status": status, **delta}
        cache = (f"inductor FX-graph cache {delta['fx_hit']} hit / {delta['fx_miss']} miss, "
                 f"AOT-autograd cache {delta['aot_hit']} hit / {delta['aot_miss']} miss")
        if status == "ok":
            log(f"  compiled N={problem.meta_batch} {order}-order vmap meta-gradient: first call (compile + one run) "
                f"{seconds:.1f} s ({cache})")
        else:
            log(f"  compile FAILED N={problem.meta_batch} {order}-order after {seconds:.1f} s: "
                f"{status.removeprefix('failed: ')}")
    return out, info


def meta_gradient_rows(problems: list[Problem], compiled: dict, compile_info: dict, bench: Bench, rounds: int,
                       do_compile: bool, log) -> list[dict]:
    """Every (meta-batch, order, batching, mode), timed interleaved; then the ratios."""
    rows, entries = [], []
    for problem in problems:
        n = problem.meta_batch
        for first_order in (True, False):
            order = "first" if first_order else "second"
            eager_fn = problem.vmap_grad_fn(first_order)
            variants = [
                ("vmap", "eager", lambda p=problem, f=eager_fn: p.vmap_call(f)),
                ("nested", "eager", lambda p=problem, f=problem.nested_grad_fn(first_order): p.vmap_call(f)),
                ("loop", "eager", lambda p=problem, fo=first_order: p.loop_grad(fo)),
            ]
            if do_compile:
                comp = compiled[n].get(order)
                variants.append(("vmap", "compiled", comp if isinstance(comp, Exception)
                                 else (lambda p=problem, f=comp: p.vmap_call(f))))
                variants.append(("loop", "compiled", None))
            for batching, mode, fn in variants:
                row = {"meta_batch": n, "order": order, "batching": batching, "mode": mode,
                       "median_ms": None, "status": "ok"}
                if fn is None:
                    row["status"] = "n/a"
                elif isinstance(fn, Exception):
                    row["status"] = _error_text(fn)
                else:
                    row["label"] = f"N={n} {order} {batching} {mode}"
                    entries.append((row["label"], fn))
                if mode == "compiled" and batching == "vmap":
                    info = compile_info[n][order]
                    row["compile_s"] = info["seconds"]
                    hits, misses = info["fx_hit"] + info["aot_hit"], info["fx_miss"] + info["aot_miss"]
                    cold = info.get("caches_disabled") or (misses and not hits)
                    row["compile_cache"] = " (cold)" if cold else (" (cached)" if hits and not misses else "")
                rows.append(row)
    try:
        results = bench.interleaved(entries, rounds, log)
    except Exception as exc:  # a variant that breaks at run time: time the others one by one
        log(f"  interleaved timing failed ({_error_text(exc)}); timing one by one")
        results = {}
        for label, fn in entries:
            try:
                results[label] = bench(fn, label)
            except Exception as exc2:
                results[label] = {"status": _error_text(exc2)}
    for row in rows:
        if "label" in row:
            row.update(results[row.pop("label")])
    # Matmul FLOPs of each eager variant (torch.utils.flop_counter, one call): the work a
    # variant must do however fast its kernels run. A compiled variant does the same matmuls.
    flops = {}
    for problem in problems:
        for first_order in (True, False):
            order = "first" if first_order else "second"
            for batching, fn in (("vmap", lambda p=problem, f=problem.vmap_grad_fn(first_order): p.vmap_call(f)),
                                 ("nested", lambda p=problem, f=problem.nested_grad_fn(first_order): p.vmap_call(f)),
                                 ("loop", lambda p=problem, fo=first_order: p.loop_grad(fo))):
                flops[(problem.meta_batch, order, batching)] = matmul_gflop(fn)
    for row in rows:
        gflop = flops.get((row["meta_batch"], row["order"], row["batching"]))
        row["matmul_gflop"] = gflop
        if gflop is not None and row.get("median_ms"):
            row["gflop_per_s"] = gflop / (row["median_ms"] / 1000)

    def find(n, order, batching, mode):
        for r in rows:
            if (r["meta_batch"], r["order"], r["batching"], r["mode"]) == (n, order, batching, mode):
                return r.get("median_ms")
        return None

    for r in rows:
        if r.get("median_ms") is None:
            continue
        n = r["meta_batch"]
        loop = find(n, r["order"], "loop", "eager")
        r["ratio_vs_loop_eager"] = r["median_ms"] / loop if loop else None
        if r["order"] == "second":
            first = find(n, "first", r["batching"], r["mode"])
            r["ratio_second_first"] = r["median_ms"] / first if first else None
            first_flops = flops.get((n, "first", r["batching"]))
            r["flop_ratio_second_first"] = r["matmul_gflop"] / first_flops if first_flops else None
        if r["mode"] == "compiled":
            eager = find(n, r["order"], r["batching"], "eager")
            r["ratio_compiled_eager"] = r["median_ms"] / eager if eager else None
    return rows


def matmul_gflop(fn) -> float:
    """Matmul GFLOPs of one call of ``fn`` (mm / bmm / addmm ... as torch's flop counter counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


# --------------------------------------------------------------------------------------- pieces
def mean_kl(old, new, mask) -> torch.Tensor:
    """Mean over tasks of the per-episode-mean KL(old || new), from the public pieces."""
    kl = gaussian_kl(old[0], old[1], new[0], new[1])
    return vmap(masked_episode_mean)(kl, mask).mean()


def piece_rows(problem: Problem, bench: Bench, expensive_reps: int, log) -> tuple[list[dict], dict]:
    n = problem.meta_batch
    rows, extra = [], {}

    def add(name, fn, note="", reps=None, warm_s=None):
        row = {"meta_batch": n, "piece": name, "note": note, "status": "ok", "median_ms": None}
        try:
            row.update(bench(fn, name, min_reps=reps, warm_s=warm_s))
        except Exception as exc:
            row["status"] = _error_text(exc)
        rows.append(row)
        if row["median_ms"] is not None:
            log(f"  timed N={n} {name:<44s} median {row['median_ms']:9.1f} ms ({row['runs']} runs)")
        return row

    add("rollout, meta-params (train episodes)", problem.rollout_train, f"{HORIZON} steps x {EPISODES_PER_TASK} ep")
    add("adapt for the post-rollout", problem.adapt_for_rollout, "adapt_tasks, first-order, no_grad")
    add("rollout, adapted params (valid episodes)", problem.rollout_valid, "params per task")
    add("make_rl_batches (one call)", lambda: problem.make_batches(problem.train_episodes),
        "train_iteration makes 2")
    add("meta-gradient (vmap eager, 2nd order)", lambda f=problem.vmap_grad_fn(False): problem.vmap_call(f),
        "inside every trpo step")

    configs = [
        ("trpo step exact, 4th ep. of 10 tasks (default)", TRPOConfig()),
        ("trpo step adapted, 4th ep. of 10 tasks", TRPOConfig(curvature="adapted")),
        ("trpo step exact, all (pytorch-maml-rl)", TRPOConfig(fisher_subsample=1, fisher_tasks=None)),
    ]
    for name, cfg in configs:
        start = time.perf_counter()
        _, stats = problem.trpo_step(cfg)  # the warm-up; its stats show the step is sane
        warm_s = time.perf_counter() - start
        note = f"frac {stats['step_fraction']:.2f}, kl {stats['kl']:.1e}"
        add(name, lambda c=cfg: problem.trpo_step(c), note, reps=expensive_reps, warm_s=warm_s)

    # Fisher-vector products through the adaptation, at the current params, full valid batch.
    policy, inner_opt, train, valid = problem.policy, problem.inner_opt, problem.train, problem.valid
    flat_params, unravel = ravel(problem.params)
    flat_params = flat_params.detach()

    def outputs_fn(x):  # as meta.trpo builds it
        return policy.apply_stacked(adapt_tasks(unravel(x), train, policy, inner_opt, steps=INNER_STEPS), valid.obs)

    with torch.no_grad():
        old = tuple(o.detach() for o in outputs_fn(flat_params))
    divergence = lambda o, new: mean_kl(o, new, valid.mask)  # noqa: E731

    def build():
        return gauss_newton_operator(outputs_fn, divergence, flat_params,
                                     output_curvature=partial(_mean_kl_curvature, mask=valid.mask))

    operator = build()
    v = torch.randn(flat_params.numel(), generator=torch.Generator().manual_seed(1234))
    v = v / v.norm()
    hvp_fn = lambda: hessian_vector_product(lambda x: mean_kl(old, outputs_fn(x), valid.mask), flat_params, v)  # noqa: E731
    fvp_a = operator(v).detach()
    start = time.perf_counter()
    fvp_b = hvp_fn().detach()
    hvp_s = time.perf_counter() - start
    diff = rel_err(fvp_a, fvp_b)
    cos = float(torch.dot(fvp_a, fvp_b) / (fvp_a.norm() * fvp_b.norm()))
    extra["fvp_rel_diff"] = diff
    extra["fvp_cosine"] = cos
    extra["fvp_norm"] = float(fvp_b.norm())
    log(f"  Fisher-vector product through the adaptation: |GN - HVP| / |HVP| = {diff:.2e} (cosine {cos:.8f})")
    add("FVP (a) gauss_newton_operator: build", build, "forward + recorded vjp, once per step")
    add("FVP (a) gauss_newton_operator: product", lambda: operator(v), f"J v + J^T u on one graph; rel diff to (b) {diff:.1e}")
    add("FVP (b) exact HVP of mean KL (double bwd)", hvp_fn, "jvp of grad, per product", warm_s=hvp_s)

    # (c) the same Gauss-Newton product with a torch.func jvp per product and a reused torch.func
    # vjp (the form gauss_newton_operator used before it built one autograd graph per step).
    _, pullback = vjp(outputs_fn, flat_params)

    def fvp_c():
        _, jv = jvp(outputs_fn, (flat_params,), (v,))
        return pullback(_mean_kl_curvature(old, jv, valid.mask))[0]

    diff_c = rel_err(fvp_c().detach(), fvp_a)
    extra["fvp_jvp_form_rel_diff"] = diff_c
    add("FVP (c) same product, torch.func jvp + reused vjp", fvp_c, f"jvp per product; rel diff to (a) {diff_c:.1e}")
    return rows, extra


# --------------------------------------------------------------------------------------- output
def _fmt(x, spec="{:.2f}"):
    return "" if x is None else spec.format(x)


def format_meta_table(rows: list[dict]) -> str:
    head = (f"{'meta_batch':>10} | {'order':<6} | {'batching':<8} | {'mode':<8} | {'median ms':>10} | "
            f"{'IQR ms':>8} | {'min ms':>8} | {'runs':>4} | {'/ loop eager':>12} | {'2nd/1st':>7} | "
            f"{'compiled/eager':>14} | {'compile s':>9} | {'GFLOP':>6} | {'GFLOP/s':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["median_ms"] is None:
            timing = f"{r['status']:>10}"
            lines.append(f"{r['meta_batch']:>10} | {r['order']:<6} | {r['batching']:<8} | {r['mode']:<8} | {timing}")
            continue
        lines.append(
            f"{r['meta_batch']:>10} | {r['order']:<6} | {r['batching']:<8} | {r['mode']:<8} | "
            f"{r['median_ms']:>10.1f} | {r['iqr_ms']:>8.1f} | {r['min_ms']:>8.1f} | {r['runs']:>4} | "
            f"{_fmt(r.get('ratio_vs_loop_eager')):>12} | {_fmt(r.get('ratio_second_first')):>7} | "
            f"{_fmt(r.get('ratio_compiled_eager')):>14} | {_fmt(r.get('compile_s'), '{:.1f}'):>9} | "
            f"{_fmt(r.get('matmul_gflop')):>6} | {_fmt(r.get('gflop_per_s'), '{:.0f}'):>7}"
            f"{r.get('compile_cache', '')}")
    return "\n".join(lines)


def format_piece_table(rows: list[dict]) -> str:
    head = f"{'piece':<48} | {'meta_batch':>10} | {'median ms':>10} | {'IQR ms':>8} | {'min ms':>8} | {'runs':>4} | note"
    lines = [head, "-" * (len(head) + 30)]
    for r in rows:
        if r["median_ms"] is None:
            lines.append(f"{r['piece']:<48} | {r['meta_batch']:>10} | {r['status']}")
            continue
        lines.append(f"{r['piece']:<48} | {r['meta_batch']:>10} | {r['median_ms']:>10.1f} | {r['iqr_ms']:>8.1f} | "
                     f"{r['min_ms']:>8.1f} | {r['runs']:>4} | {r['note']}")
    by = {r["piece"]: r["median_ms"] for r in rows}
    parts = ["rollout, meta-params (train episodes)", "adapt for the post-rollout",
             "rollout, adapted params (valid episodes)", "trpo step exact, 4th ep. of 10 tasks (default)"]
    if all(by.get(p) is not None for p in parts) and by.get("make_rl_batches (one call)") is not None:
        total = sum(by[p] for p in parts) + 2 * by["make_rl_batches (one call)"]
        lines.append("-" * (len(head) + 30))
        lines.append(f"{'= one trainer meta-iteration (sum of the above)':<48} | {rows[0]['meta_batch']:>10} | "
                     f"{total:>10.1f} |          |          |      | 2 rollouts + adapt + 2 batches + default trpo step")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- main
def main(args: argparse.Namespace, omp_policy: str) -> int:
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    load = os.getloadavg()
    log(f"maml_order: torch {torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY={omp_policy}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if load[0] > max(1.0, (os.cpu_count() or 1) - args.threads + 0.5):
        log("  note: the machine is busy (load average above the free cores); timings are noisy, read the medians")
    do_compile = not args.no_compile
    if do_compile and args.cold_compile:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        log("  --cold-compile: torch.compile's caches are disabled; compile times are cold")
    if args.quick:
        bench, rounds, expensive_reps = Bench(args.threads, min_run_time=0.25, min_reps=3), 2, 1
    else:
        bench, rounds, expensive_reps = Bench(args.threads, min_run_time=0.5, min_reps=5), 4, 3
    log(f"settings: meta-batch {args.meta_batches}, {EPISODES_PER_TASK} episodes/task, horizon {HORIZON}, "
        f"{'x'.join(map(str, HIDDEN))} {ACTIVATION} gaussian policy, inner SGD lr {INNER_LR} x {INNER_STEPS} step, "
        f"compile {'on' if do_compile else 'off'}{' (quick)' if args.quick else ''}")

    problems, compiled, compile_info, checks = [], {}, {}, []
    for n in args.meta_batches:
        log(f"\n== meta-batch {n}: building the batch from rollouts")
        t0 = time.perf_counter()
        problem = Problem(n, args.seed)
        pre = float(problem.train_episodes.rewards.sum(1).mean())
        post = float(problem.valid_episodes.rewards.sum(1).mean())
        log(f"  built in {time.perf_counter() - t0:.1f} s; mean return before / after adaptation {pre:.1f} / {post:.1f}")
        compiled[n], compile_info[n] = compile_variants(problem, log) if do_compile else ({}, {})
        for info in compile_info[n].values():
            info["caches_disabled"] = bool(args.cold_compile)
        log("  correctness:")
        checks += correctness_checks(problem, compiled[n], log)
        problems.append(problem)

    log(f"\n== meta-gradient timings, all variants interleaved over {rounds} rounds")
    meta_rows = meta_gradient_rows(problems, compiled, compile_info, bench, rounds, do_compile, log)

    log(f"\n== pieces of one meta-iteration at meta-batch {problems[0].meta_batch} "
        f"(elapsed so far {time.perf_counter() - t_start:.0f} s)")
    pieces, extra = piece_rows(problems[0], bench, expensive_reps, log)

    total_s = time.perf_counter() - t_start
    failed = [c for c in checks if not c["ok"]]
    if extra.get("fvp_rel_diff", 0.0) > 1e-3:
        failed.append({"check": "FVP gauss_newton_operator vs HVP"})
    if extra.get("fvp_jvp_form_rel_diff", 0.0) > 1e-4:
        failed.append({"check": "FVP gauss_newton_operator vs the jvp form"})
    log("\nCorrectness: " + ("all checks passed" if not failed
                             else f"{len(failed)} check(s) FAILED: " + "; ".join(c["check"] for c in failed)))
    log(f"\nMeta-gradient: median ms over the pooled runs (torch {torch.__version__}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={omp_policy})")
    log(format_meta_table(meta_rows))
    log("  / loop eager: vs the autograd task loop at the same meta-batch and order (the loop runs eager only);\n"
        "  2nd/1st: same batching and mode; compiled/eager: the vmap variant; compile s: first call (compile +\n"
        "  one run), excluded from the medians; (cached): torch.compile's on-disk caches served it (--cold-compile);\n"
        "  GFLOP: matmul FLOPs of one call (torch.utils.flop_counter; a compiled variant does the same matmuls)")
    for r in meta_rows:
        if r.get("flop_ratio_second_first") and r["mode"] == "eager":
            log(f"  meta-batch {r['meta_batch']} {r['batching']}: second order does {r['flop_ratio_second_first']:.2f}x "
                f"the matmul FLOPs of first order; its time ratio is {_fmt(r.get('ratio_second_first'))}")
    log("\nPieces of one MAML-TRPO meta-iteration (second order, eager)")
    log(format_piece_table(pieces))
    log(f"  Fisher-vector product through the adaptation, gauss_newton_operator vs exact HVP: relative difference "
        f"{extra.get('fvp_rel_diff', math.nan):.2e}")
    end_load = os.getloadavg()
    log(f"\ntotal run time {total_s:.1f} s; load average at the end {end_load[0]:.2f} {end_load[1]:.2f} "
        f"{end_load[2]:.2f}")

    payload = {
        "benchmark": "maml_order",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": omp_policy,
        "load_average_start": list(load),
        "load_average_end": list(end_load),
        "quick": args.quick,
        "compile": do_compile,
        "timing": {"method": "torch.utils.benchmark.Timer.blocked_autorange", "meta_gradient_rounds": rounds,
                   "min_run_time_s": bench.min_run_time, "min_reps": bench.min_reps,
                   "trpo_step_reps": expensive_reps},
        "settings": {
            "meta_batches": args.meta_batches, "episodes_per_task": EPISODES_PER_TASK, "horizon": HORIZON,
            "hidden": list(HIDDEN), "activation": ACTIVATION, "inner_lr": INNER_LR, "inner_steps": INNER_STEPS,
            "gamma": GAMMA, "gae_lambda": GAE_LAMBDA, "seed": args.seed,
        },
        "checks": checks,
        "compile_first_call": {str(n): info for n, info in compile_info.items()},
        "meta_gradient": meta_rows,
        "pieces": pieces,
        "fvp": extra,
        "total_seconds": total_s,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    log(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(_ARGS, _OMP_POLICY))
