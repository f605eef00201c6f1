"""One MAML meta-gradient, head to head: ours (eager and compiled) vs learn2learn, higher, torchopt.

    bash benchmarks/peers_env.sh                                  # once: .venv-bench with the peers
    .venv-bench/bin/python benchmarks/vs_peers.py                 # the full grid (~20-30 min on 2 cores)
    .venv-bench/bin/python benchmarks/vs_peers.py --meta-batch 25 --steps 5 --order second   # one cell
    python benchmarks/vs_peers.py --quick                         # ours + the autograd loop only, if
                                                                  # run from the runtime env (.venv)

Every implementation gets the same 1-40-40-1 ReLU net (the same initial weights), the same sine
task batches (K=10 support and 10 query points per task), the same inner SGD step size (0.01) and
the same loss (mean over tasks of the query MSE after ``steps`` inner SGD steps on the support
MSE), and computes ``d loss / d initial params``:

* ``ours`` / ``ours+compile``: ``meta.maml(meta.mse_loss(net.apply), optim.sgd(lr), steps,
  first_order, compile)``, the public API, checks included, all tasks vmapped at once;
* ``ours+compile/chunk1``: the same with ``chunk_size=1`` (one task per compiled call, gradients
  summed): the memory of a per-task loop, at some speed;
* ``autograd loop``: a plain per-task loop with ``torch.autograd.grad(create_graph=True)``, the
  reference the others are checked against;
* ``higher``: ``higher.innerloop_ctx`` per task (``track_higher_grads=False`` for first order);
* ``torchopt``: torchopt's functional API (``torchopt.sgd`` + ``apply_updates(inplace=False)``
  over ``torch.func.functional_call``) per task;
* ``torchopt.MetaSGD``: torchopt's object-oriented ``MetaSGD`` with ``extract_state_dict`` /
  ``recover_state_dict`` per task (second order only: it always differentiates through the step);
* ``learn2learn``: ``l2l.algorithms.MAML(model, lr, first_order).clone()`` / ``adapt`` per task.

First the benchmark checks, in float64 and at meta-batch 5, that every implementation's
meta-gradient matches the autograd loop's (relative L2 error <= 1e-5); one that does not is
flagged and its timings are not compared. Then, in float32, it times each implementation (median
over interleaved rounds, ``torch.utils.benchmark``) and measures its peak memory (the most bytes
of tensors alive at once during one call, above what was alive before it, from the profiler's
memory timeline) over meta-batch {5, 25, 100} x inner steps {1, 5} x {first, second} order.
It prints one table and writes JSON (``--output``). Peers are imported only here, never by the
library; a peer that is missing or fails is reported as such.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import importlib.util
import itertools
import json
import platform
import statistics
import sys
import time
import traceback
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tbench

from functional_metarl import meta, nn, optim
from functional_metarl.envs import RegressionBatch, SineRegression

INNER_LR = 0.01
K = 10
HIDDEN = (40, 40)
SEED = 0
TOL = 1e-5
OURS = ("ours", "ours+compile", "ours+compile/chunk1")
PEERS = ("learn2learn", "higher", "torchopt", "torchopt.MetaSGD")
ORDER = ("ours", "ours+compile", "ours+compile/chunk1", "autograd loop", "learn2learn", "higher", "torchopt", "torchopt.MetaSGD")

Grads = list  # list[Tensor] in the net's parameter order


@dataclass(frozen=True)
class Cell:
    meta_batch: int
    steps: int
    first_order: bool

    @property
    def order(self) -> str:
        return "first" if self.first_order else "second"


@dataclass
class Problem:
    template: torch.nn.Module
    names: list[str]
    params: dict[str, torch.Tensor]
    support: RegressionBatch
    query: RegressionBatch


# ----------------------------------------------------------------------------- peers


def load_peers() -> tuple[dict[str, object], dict[str, str]]:
    """Import what is importable; return (modules, status line per peer)."""
    mods: dict[str, object] = {}
    status: dict[str, str] = {}
    for name in ("higher", "torchopt"):
        try:
            mods[name] = importlib.import_module(name)
            status[name] = f"{name} {importlib.metadata.version(name)}"
        except Exception as exc:  # a peer that does not import is reported, not hidden
            status[name] = f"not available: {type(exc).__name__}: {exc}"
    try:
        import learn2learn  # noqa: F401

        mods["learn2learn"] = learn2learn.algorithms.MAML
        status["learn2learn"] = f"learn2learn {importlib.metadata.version('learn2learn')}"
    except Exception as exc:
        first_error = f"{type(exc).__name__}: {exc}"
        spec = importlib.util.find_spec("learn2learn") if "learn2learn" not in sys.modules else None
        if spec is None or not spec.submodule_search_locations:
            status["learn2learn"] = f"not available: {first_error}"
        else:
            # `import learn2learn` runs a package __init__ that imports gym, torchvision, ... for
            # its datasets. Its MAML needs none of them: load learn2learn/algorithms/maml.py and
            # learn2learn/utils from the installed files, without the package __init__s.
            try:
                for key in [k for k in sys.modules if k == "learn2learn" or k.startswith("learn2learn.")]:
                    del sys.modules[key]
                root = spec.submodule_search_locations[0]
                for pkg, path in (("learn2learn", root), ("learn2learn.algorithms", f"{root}/algorithms")):
                    stub = types.ModuleType(pkg)
                    stub.__path__ = [path]
                    sys.modules[pkg] = stub
                maml_mod = importlib.import_module("learn2learn.algorithms.maml")
                mods["learn2learn"] = maml_mod.MAML
                status["learn2learn"] = (
                    f"learn2learn {importlib.metadata.version('learn2learn')}: `import learn2learn` fails "
                    f"({first_error}); its MAML module is loaded on its own, without the package __init__"
                )
            except Exception as exc2:
                status["learn2learn"] = f"not available: {first_error}; loading its MAML alone: {exc2}"
    for name in PEERS:
        status.setdefault(name, status.get(name.split(".")[0], "not available"))
    return mods, status


# ----------------------------------------------------------------------------- problem


def make_problem(cell: Cell, dtype: torch.dtype) -> Problem:
    net = nn.mlp(1, 1, HIDDEN, "relu")
    params = net.init(SEED, dtype=dtype)
    gen = torch.Generator().manual_seed(SEED + cell.meta_batch)
    _, support, query = SineRegression().sample(cell.meta_batch, K, K, gen, dtype=dtype)
    template = copy.deepcopy(net.module).to(dtype)
    return Problem(template, list(params), params, support, query)


def module_with(problem: Problem) -> torch.nn.Module:
    """A fresh nn.Module holding the problem's initial params (leaves with requires_grad)."""
    module = copy.deepcopy(problem.template)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(problem.params[name])
    return module


def _mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, y)


# ----------------------------------------------------------------------------- implementations


def impl_ours(problem: Problem, cell: Cell, compile: bool, chunk_size: int | None = None) -> Callable[[], Grads]:
    net = nn.mlp(1, 1, HIDDEN, "relu")
    learner = meta.maml(meta.mse_loss(net.apply), optim.sgd(INNER_LR), cell.steps, cell.first_order,
                        compile=compile, chunk_size=chunk_size)
    mp = learner.init(problem.params)
    s, q, names = problem.support, problem.query, problem.names

    def run() -> Grads:
        grads, _ = learner.meta_gradient(mp, s, q)
        return [grads.params[k] for k in names]

    return run


def impl_autograd_loop(problem: Problem, cell: Cell) -> Callable[[], Grads]:
    theta = [problem.params[k].clone().requires_grad_() for k in problem.names]
    s, q, T = problem.support, problem.query, cell.meta_batch

    def forward(p, x):
        h = torch.relu(F.linear(x, p[0], p[1]))
        h = torch.relu(F.linear(h, p[2], p[3]))
        return F.linear(h, p[4], p[5])

    def run() -> Grads:
        total = 0.0
        for t in range(T):
            fast = theta
            for _ in range(cell.steps):
                gs = torch.autograd.grad(_mse(forward(fast, s.x[t]), s.y[t]), fast, create_graph=not cell.first_order)
                fast = [p - INNER_LR * g for p, g in zip(fast, gs)]
            total = total + _mse(forward(fast, q.x[t]), q.y[t])
        return list(torch.autograd.grad(total / T, theta))

    return run


def impl_higher(problem: Problem, cell: Cell, higher) -> Callable[[], Grads]:
    model = module_with(problem)
    inner_opt = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    s, q, T = problem.support, problem.query, cell.meta_batch
    params = list(model.parameters())

    def run() -> Grads:
        model.zero_grad(set_to_none=True)
        fo_grads = [torch.zeros_like(p) for p in params] if cell.first_order else None
        for t in range(T):
            with higher.innerloop_ctx(
                model, inner_opt, copy_initial_weights=False, track_higher_grads=not cell.first_order
            ) as (fmodel, diffopt):
                for _ in range(cell.steps):
                    diffopt.step(_mse(fmodel(s.x[t]), s.y[t]))
                loss = _mse(fmodel(q.x[t]), q.y[t]) / T
                if cell.first_order:  # fast weights are detached leaves: grad at the adapted params
                    for acc, g in zip(fo_grads, torch.autograd.grad(loss, list(fmodel.parameters()))):
                        acc.add_(g)
                else:
                    loss.backward()
        return fo_grads if cell.first_order else [p.grad for p in params]

    return run


def impl_torchopt(problem: Problem, cell: Cell, torchopt) -> Callable[[], Grads]:
    model = module_with(problem)
    names = problem.names
    params = tuple(dict(model.named_parameters())[k] for k in names)
    opt = torchopt.sgd(INNER_LR)
    s, q, T = problem.support, problem.query, cell.meta_batch

    def forward(p, x):
        return torch.func.functional_call(model, dict(zip(names, p)), (x,))

    def run() -> Grads:
        model.zero_grad(set_to_none=True)
        for t in range(T):
            fast, state = params, opt.init(params)
            for _ in range(cell.steps):
                loss = _mse(forward(fast, s.x[t]), s.y[t])
                grads = torch.autograd.grad(loss, fast, create_graph=not cell.first_order)
                updates, state = opt.update(grads, state, inplace=False)
                fast = torchopt.apply_updates(fast, updates, inplace=False)
            (_mse(forward(fast, q.x[t]), q.y[t]) / T).backward()
        return [p.grad for p in params]

    return run


def impl_torchopt_metasgd(problem: Problem, cell: Cell, torchopt) -> Callable[[], Grads] | None:
    if cell.first_order:
        return None  # MetaSGD always differentiates through its step
    model = module_with(problem)
    names = problem.names
    leaves = [dict(model.named_parameters())[k] for k in names]
    inner_opt = torchopt.MetaSGD(model, lr=INNER_LR)
    s, q, T = problem.support, problem.query, cell.meta_batch

    def run() -> Grads:
        for p in leaves:
            p.grad = None
        net_state = torchopt.extract_state_dict(model, by="reference", detach_buffers=True)
        opt_state = torchopt.extract_state_dict(inner_opt, by="reference")
        for t in range(T):
            for _ in range(cell.steps):
                inner_opt.step(_mse(model(s.x[t]), s.y[t]))
            (_mse(model(q.x[t]), q.y[t]) / T).backward()
            torchopt.recover_state_dict(model, net_state)
            torchopt.recover_state_dict(inner_opt, opt_state)
        return [p.grad for p in leaves]

    return run


def impl_learn2learn(problem: Problem, cell: Cell, MAML) -> Callable[[], Grads]:
    model = module_with(problem)
    maml = MAML(model, lr=INNER_LR, first_order=cell.first_order)
    names = problem.names
    leaves = [dict(model.named_parameters())[k] for k in names]
    s, q, T = problem.support, problem.query, cell.meta_batch

    def run() -> Grads:
        maml.zero_grad(set_to_none=True)
        for t in range(T):
            learner = maml.clone()
            for _ in range(cell.steps):
                learner.adapt(_mse(learner(s.x[t]), s.y[t]))
            (_mse(learner(q.x[t]), q.y[t]) / T).backward()
        return [p.grad for p in leaves]

    return run


def build(name: str, problem: Problem, cell: Cell, mods: dict) -> Callable[[], Grads] | None:
    if name == "ours":
        return impl_ours(problem, cell, compile=False)
    if name in ("ours+compile", "ours+compile/chunk1"):
        torch._dynamo.reset()  # one compiled meta-gradient at a time: stay under dynamo's recompile limit
        return impl_ours(problem, cell, compile=True, chunk_size=1 if name.endswith("chunk1") else None)
    if name == "autograd loop":
        return impl_autograd_loop(problem, cell)
    if name == "higher" and "higher" in mods:
        return impl_higher(problem, cell, mods["higher"])
    if name == "torchopt" and "torchopt" in mods:
        return impl_torchopt(problem, cell, mods["torchopt"])
    if name == "torchopt.MetaSGD" and "torchopt" in mods:
        return impl_torchopt_metasgd(problem, cell, mods["torchopt"])
    if name == "learn2learn" and "learn2learn" in mods:
        return impl_learn2learn(problem, cell, mods["learn2learn"])
    return None


# ----------------------------------------------------------------------------- measurements


def rel_error(a: Grads, b: Grads) -> float:
    va = torch.cat([x.reshape(-1) for x in a])
    vb = torch.cat([x.reshape(-1) for x in b])
    return (torch.linalg.vector_norm(va - vb) / torch.linalg.vector_norm(vb)).item()


def peak_bytes(fn: Callable[[], Grads]) -> int:
    """Most bytes of tensors alive at once during one call of ``fn``, above what was alive before.

    From the profiler's raw allocation events (every CPU tensor allocation and free, in order).
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def time_interleaved(fns: dict[str, Callable[[], Grads]], rounds: int, threads: int, block_s: float) -> dict:
    """Median seconds per call of each fn, measured round-robin so that all see the same load."""
    numbers = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        one = time.perf_counter() - t0
        numbers[name] = max(1, int(block_s / max(one, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            timer = tbench.Timer("fn()", globals={"fn": fns[name]}, num_threads=threads)
            samples[name].append(timer.timeit(numbers[name]).median)
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
        out[name] = {"median_s": statistics.median(xs), "q1_s": q[0], "q3_s": q[2], "samples_s": xs,
                     "calls_per_sample": numbers[name]}
    return out


# ----------------------------------------------------------------------------- driver


def check_agreement(cells: list[Cell], impls: list[str], mods: dict, check_batch: int) -> dict:
    print(f"\n== agreement in float64 (meta-batch {check_batch}): relative L2 error vs the autograd loop, tol {TOL:g}")
    results = {}
    seen = set()
    for cell in cells:
        key = (cell.steps, cell.first_order)
        if key in seen:
            continue
        seen.add(key)
        small = Cell(check_batch, cell.steps, cell.first_order)
        problem = make_problem(small, torch.float64)
        ref = impl_autograd_loop(problem, small)()
        for name in impls:
            if name == "autograd loop":
                continue
            label = f"steps={cell.steps} {cell.order:<6} {name}"
            try:
                fn = build(name, problem, small, mods)
                if fn is None:
                    continue
                err = rel_error(fn(), ref)
                ok = err <= TOL
                results.setdefault(name, {})[f"{cell.steps}/{cell.order}"] = err
                print(f"  {label:<40} {err:.2e}  {'ok' if ok else 'DISAGREES'}")
            except Exception as exc:
                results.setdefault(name, {})[f"{cell.steps}/{cell.order}"] = f"failed: {type(exc).__name__}: {exc}"
                print(f"  {label:<40} FAILED: {type(exc).__name__}: {exc}")
    return results


def run_cell(cell: Cell, impls: list[str], mods: dict, args, agreement: dict) -> dict:
    problem = make_problem(cell, torch.float32)
    fns, compile_s, notes = {}, {}, {}
    for name in impls:
        errs = agreement.get(name, {})
        err = errs.get(f"{cell.steps}/{cell.order}")
        if name != "autograd loop" and not isinstance(err, float):
            notes[name] = "skipped: " + (err if isinstance(err, str) else "n/a for this order")
            continue
        if isinstance(err, float) and err > TOL:
            notes[name] = f"skipped: disagrees (rel err {err:.1e})"
            continue
        try:
            fn = build(name, problem, cell, mods)
            if fn is None:
                notes[name] = "n/a"
                continue
            t0 = time.perf_counter()
            fn()
            compile_s[name] = time.perf_counter() - t0
            fn()
            fns[name] = fn
        except Exception as exc:
            notes[name] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
    timings = time_interleaved(fns, args.rounds, args.threads, args.block)
    memory = {} if args.no_memory else {name: peak_bytes(fn) for name, fn in fns.items()}
    return {"cell": asdict(cell), "order": cell.order, "timing": timings, "peak_bytes": memory,
            "first_call_s": compile_s, "notes": notes}


def fmt_cell(res: dict, name: str) -> str:
    if name in res["timing"]:
        ms = res["timing"][name]["median_s"] * 1e3
        mem = res["peak_bytes"].get(name)
        mem_s = f" {mem / 2**10:6.0f}K" if mem is not None else ""
        return f"{ms:8.2f}{mem_s}"
    note = res["notes"].get(name, "")
    return "n/a" if note in ("", "n/a") or "n/a" in note else note.split(":")[0]


def summarize(results: list[dict], impls: list[str]) -> tuple[str, dict]:
    peers = [n for n in impls if n in PEERS]
    ours_here = [o for o in OURS if o in impls]
    header = ["meta-batch", "steps", "order", *impls, "fastest peer", *(f"{o} x" for o in ours_here)]
    rows = []
    for res in results:
        c = res["cell"]
        t = {n: v["median_s"] for n, v in res["timing"].items()}
        peer_t = {n: t[n] for n in peers if n in t}
        fastest = min(peer_t, key=peer_t.get) if peer_t else None
        row = [str(c["meta_batch"]), str(c["steps"]), res["order"], *[fmt_cell(res, n) for n in impls]]
        row.append(fastest or "-")
        for ours in ours_here:
            row.append(f"{peer_t[fastest] / t[ours]:.1f}" if fastest and ours in t else "-")
        res["fastest_peer"] = fastest
        res["speedup_vs_fastest_peer"] = {o: peer_t[fastest] / t[o] for o in OURS if fastest and o in t}
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(x.ljust(w) for x, w in zip(r, widths)) for r in rows]
    table = "\n".join(lines)
    table += "\n(cells: median ms per meta-gradient, then peak tensor memory in KiB; 'ours x' = fastest peer time / ours)"
    return table, targets(results, peers)


def targets(results: list[dict], peers: list[str]) -> dict:
    by = {(r["cell"]["meta_batch"], r["cell"]["steps"], r["order"]): r for r in results}
    out: dict = {}
    so = by.get((25, 5, "second"))
    fo = by.get((25, 5, "first"))
    if so:
        t = {n: v["median_s"] for n, v in so["timing"].items()}
        peer_t = {n: t[n] for n in peers if n in t}
        if peer_t:
            best = min(peer_t.values())
            for ours in OURS:
                if ours in t:
                    out[f"{ours}: speedup vs fastest peer (>= 10)"] = round(best / t[ours], 2)
        peer_m = {n: so["peak_bytes"][n] for n in peers if n in so["peak_bytes"]}
        if peer_m:
            low = min(peer_m.values())
            for ours in OURS:
                if ours in so["peak_bytes"]:
                    out[f"{ours}: peak memory / lowest peer's (<= 1)"] = round(so["peak_bytes"][ours] / low, 3)
    if so and fo:
        for ours in OURS:
            if ours in so["timing"] and ours in fo["timing"]:
                ratio = so["timing"][ours]["median_s"] / fo["timing"][ours]["median_s"]
                out[f"{ours}: second / first order time (<= 1.8)"] = round(ratio, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-batch", type=int, nargs="+", default=[5, 25, 100])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--order", choices=("first", "second"), nargs="+", default=["first", "second"])
    parser.add_argument("--impls", nargs="+", choices=ORDER, default=list(ORDER))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per cell (median over them)")
    parser.add_argument("--block", type=float, default=0.2, help="seconds per timing sample (calls are batched up to it)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, OpenMP regions with more threads "
                             "than free cores stall the batched/compiled kernels far more than the peers' tiny ops)")
    parser.add_argument("--check-batch", type=int, default=5, help="meta-batch of the float64 agreement check")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--quick", action="store_true", help="meta-batch 25, 5 steps, both orders, 3 rounds")
    parser.add_argument("--output", default="runs/vs_peers.json")
    args = parser.parse_args()
    # torchopt.MetaSGD's patched modules read .grad of non-leaf params on every call; not ours to fix.
    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
    if args.quick:
        args.meta_batch, args.steps, args.rounds = [25], [5], 3
    torch.set_num_threads(args.threads)

    mods, status = load_peers()
    print(f"torch {torch.__version__} | python {platform.python_version()} | {args.threads} threads | "
          f"{platform.processor() or platform.machine()}")
    for name in PEERS:
        print(f"  {name:<20} {status[name]}")
    impls = [n for n in ORDER if n in args.impls]
    cells = [Cell(b, s, o == "first") for b, s, o in itertools.product(args.meta_batch, args.steps, args.order)]

    agreement = check_agreement(cells, impls, mods, args.check_batch)
    results = []
    for cell in cells:
        print(f"\n== timing meta-batch {cell.meta_batch}, {cell.steps} steps, {cell.order} order", flush=True)
        res = run_cell(cell, impls, mods, args, agreement)
        for name, tm in res["timing"].items():
            mem = res["peak_bytes"].get(name)
            print(f"  {name:<20} {tm['median_s'] * 1e3:9.2f} ms  (IQR {tm['q1_s'] * 1e3:.2f}-{tm['q3_s'] * 1e3:.2f})"
                  + (f"  peak {mem / 2**10:.0f} KiB" if mem is not None else "")
                  + (f"  first call {res['first_call_s'][name]:.1f} s" if "compile" in name else ""))
        for name, note in res["notes"].items():
            print(f"  {name:<20} {note}")
        results.append(res)

    table, goal = summarize(results, impls)
    print("\n" + table)
    if goal:
        print("\ntargets at meta-batch 25, 5 steps:")
        for k, v in goal.items():
            print(f"  {k}: {v}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "setup": {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
                  "net": f"1-{HIDDEN[0]}-{HIDDEN[1]}-1 relu", "K": K, "inner_lr": INNER_LR, "rounds": args.rounds,
                  "peers": status},
        "agreement_rel_error": agreement,
        "results": results,
        "targets": goal,
        "table": table,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
