"""Wall time of one whole MAML-TRPO meta-iteration on 2D navigation (the example's settings).

    python benchmarks/maml_nav_iteration.py               # default, adapted curvature, pytorch-maml-rl's step
    python benchmarks/maml_nav_iteration.py --iterations 10 --compile
    python benchmarks/maml_nav_iteration.py --estimators-only   # maml vs e-maml / dice / lvc / ProMP / proportional-step rows
    python benchmarks/maml_nav_iteration.py --roofline --default-only          # FLOP floor and breakdown
    python benchmarks/maml_nav_iteration.py --default-only --meta-batch-sizes 20 40 80 160   # scaling

Each variant is a fresh ``MAMLTrainer`` (seed 0, meta-batch 20 x 20 episodes, horizon 100) that
runs a few warm-up meta-iterations and then ``--iterations`` timed ones; the variants are
interleaved round by round so that a change in machine load hits them alike. Prints the median
seconds per meta-iteration, the projected time of the default 500-iteration run, the ratio to
the default variant, and the mean line-search fraction; ``--json`` writes the same numbers.

``--roofline`` adds, per variant, the matmul FLOPs of one meta-iteration (every rollout step,
baseline fit, adaptation, the meta-gradient, each CG product and line-search evaluation), the
*FLOP floor* (those matmuls timed alone, at the same shapes and thread count, in this run), the
ratio measured / floor, and the time of each phase against its own floor (see
``benchmarks/_roofline.py``); the default variant's logging and checkpoint cost is timed too.
``--meta-batch-sizes`` times the default variant at each meta-batch size (with its FLOPs), to
check that the cost grows no faster than the work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import tempfile
from pathlib import Path

import _roofline
from _common import add_malloc_flag, apply_malloc
import torch

from functional_metarl.meta import TRPOConfig
from functional_metarl.runners import MAMLConfig, MAMLTrainer

VARIANTS = {
    "default (exact curvature, every 4th episode of 10 tasks)": TRPOConfig(),
    "adapted curvature": TRPOConfig(curvature="adapted"),
    "pytorch-maml-rl's step (exact curvature, whole batch)": TRPOConfig(fisher_subsample=1, fisher_tasks=None),
    "curvature on every 10th episode of 10 tasks": TRPOConfig(fisher_subsample=10),
}
# Not a TRPO setting: the same default step with the policy run through torch.func.functional_call
# (vmapped for per-task params) instead of the templates' pure and batched-matmul forwards (what
# the fast paths in nn.core buy).
FUNCTIONAL_CALL = "default, policy through functional_call"
# The meta-gradient estimators (meta.estimators) on the default TRPO step, the ProMP-style
# meta-step and the proportional inner step (MAMLConfig.proportional_inner_step), each against
# the default (estimator "maml", fixed-length inner steps) in the same interleaved rounds.
ESTIMATOR_ROWS = {
    "proportional inner step (D0 0.4), maml (TRPO)": dict(proportional_inner_step=0.4),
    "estimator e-maml (TRPO)": dict(estimator="e-maml"),
    "estimator dice (TRPO)": dict(estimator="dice"),
    "estimator lvc (TRPO)": dict(estimator="lvc"),
    "ProMP meta-step, lvc, 5 epochs": dict(estimator="lvc", meta_optimizer="promp"),
    "ProMP meta-step, maml, 5 epochs": dict(meta_optimizer="promp"),
}


def build_trainers(args: argparse.Namespace) -> dict[str, MAMLTrainer]:
    """The variants to time, the default first (the ratios are against it)."""
    if args.meta_batch_sizes:
        return {f"default, meta-batch {n}": MAMLTrainer(MAMLConfig(meta_batch_size=n, device="cpu"))
                for n in args.meta_batch_sizes}
    variants = dict(list(VARIANTS.items())[:1]) if args.estimators_only or args.default_only else VARIANTS
    trainers = {name: MAMLTrainer(MAMLConfig(trpo=cfg, device="cpu")) for name, cfg in variants.items()}
    if args.compile:
        trainers["default + compile=True"] = MAMLTrainer(MAMLConfig(compile=True, device="cpu"))
    if args.default_only:
        return trainers
    if not args.estimators_only:
        trainers[FUNCTIONAL_CALL] = MAMLTrainer(MAMLConfig(device="cpu"))
        trainers[FUNCTIONAL_CALL].policy._pure_apply = None
        trainers[FUNCTIONAL_CALL].policy._stacked_apply = None
    for name, overrides in ESTIMATOR_ROWS.items():
        trainers[name] = MAMLTrainer(MAMLConfig(device="cpu", **overrides))
    return trainers


def logging_and_checkpoint_seconds(iterations: int = 20) -> float:
    """Per-iteration cost of what ``MAMLTrainer.train`` adds to ``train_iteration``: TensorBoard
    scalars every iteration and a checkpoint (plus metrics.json) every ``checkpoint_every``."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MAMLTrainer(MAMLConfig(device="cpu"), output_dir=tmp)
        metrics = {k: v for k, v in trainer.train_iteration().items() if k != "iteration"}
        start = time.perf_counter()
        for _ in range(iterations):  # what Runner.train_iteration logs per iteration
            for key, value in metrics.items():
                trainer.logger.scalar(f"{trainer.log_prefix}/{key}", float(value), trainer.iteration)
        log = (time.perf_counter() - start) / iterations
        start = time.perf_counter()
        for _ in range(3):
            trainer.save_checkpoint()
        checkpoint = (time.perf_counter() - start) / 3
        trainer.logger.flush()
    return log + checkpoint / trainer.config.checkpoint_every


def print_roofline(name: str, recorder: _roofline.MatmulRecorder, recorded_evals: int, floors: dict[str, float],
                   phase_seconds: list[dict[str, float]], seconds: list[float], evals: list[int],
                   peak: float) -> dict:
    """One variant's roofline row and phase breakdown; returns them for the JSON file."""
    flops = recorder.flops_by_phase()
    per_eval_flops = flops[_roofline.LINE_SEARCH] / recorded_evals
    per_eval_floor = floors[_roofline.LINE_SEARCH] / recorded_evals
    fixed_flops = sum(v for k, v in flops.items() if k != _roofline.LINE_SEARCH)
    fixed_floor = sum(v for k, v in floors.items() if k != _roofline.LINE_SEARCH)
    # The line search's evaluations vary per iteration: each timed iteration gets its own floor.
    iteration_floor = [fixed_floor + n * per_eval_floor for n in evals]
    iteration_flops = [fixed_flops + n * per_eval_flops for n in evals]
    ratio = statistics.median(s / f for s, f in zip(seconds, iteration_floor))
    peak_ratio = statistics.median(s * peak / f for s, f in zip(seconds, iteration_flops))
    mean_evals = statistics.mean(evals)
    print(f"\n{name}: {statistics.mean(iteration_flops) / 1e9:.2f} GFLOP of matmuls per iteration "
          f"({mean_evals:.1f} line-search evaluations on average); measured {statistics.median(seconds):.3f} s, "
          f"FLOP floor {statistics.median(iteration_floor):.3f} s -> measured / floor {ratio:.2f} "
          f"(at the peak {peak / 1e9:.0f} GFLOP/s: {peak_ratio:.2f})")
    print(f"  {'phase':16} | {'s / iteration':>13} | {'floor s':>8} | {'/ floor':>7} | {'GFLOP':>6} | share of time")
    total = statistics.median(seconds)
    breakdown = []
    for phase in _roofline.PHASES:
        # "rest" is never entered: it is what the iteration spent outside the wrapped calls.
        times = [s - sum(p.values()) if phase == "rest" else p.get(phase, 0.0) for p, s in zip(phase_seconds, seconds)]
        scale = mean_evals / recorded_evals if phase == _roofline.LINE_SEARCH else 1.0
        floor, gflop = floors.get(phase, 0.0) * scale, flops.get(phase, 0) * scale / 1e9
        med = statistics.median(times)
        shown = f"{med / floor:7.2f}" if floor > 0 else f"{'-':>7}"
        print(f"  {phase:16} | {med:13.3f} | {floor:8.3f} | {shown} | {gflop:6.2f} | {med / total:6.1%}")
        breakdown.append({"phase": phase, "median_s": med, "floor_s": floor, "gflop": gflop})
    return {"gflop": statistics.mean(iteration_flops) / 1e9, "floor_s": statistics.median(iteration_floor),
            "ratio_to_floor": ratio, "ratio_to_peak_floor": peak_ratio, "mean_line_search_evals": mean_evals,
            "breakdown": breakdown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=8, help="timed meta-iterations per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the default with compile=True (meta-gradient and line-search surrogate)")
    parser.add_argument("--estimators-only", action="store_true",
                        help="time only the default and the estimator / ProMP / proportional-step rows")
    parser.add_argument("--default-only", action="store_true", help="time only the default variant")
    parser.add_argument("--roofline", action="store_true",
                        help="add the FLOP floor per variant and a breakdown of the iteration by phase")
    parser.add_argument("--meta-batch-sizes", type=int, nargs="+", default=None,
                        help="time only the default variant, at each of these meta-batch sizes, with its FLOPs")
    add_malloc_flag(parser, ", as examples/maml_nav.py does")
    parser.add_argument("--json", default="benchmarks/results/maml_nav_iteration.json")
    args = parser.parse_args()
    if args.iterations < 1 or args.warmup < 0:
        parser.error(f"need --iterations >= 1 and --warmup >= 0, got {args.iterations} and {args.warmup}")
    if args.meta_batch_sizes and min(args.meta_batch_sizes) < 1:
        parser.error(f"--meta-batch-sizes must be positive, got {args.meta_batch_sizes}")
    torch.set_num_threads(args.threads)
    apply_malloc(args.malloc)

    trainers = build_trainers(args)
    for name, trainer in trainers.items():
        _roofline.prepare(trainer)  # its meta-gradient reports to the phase clock (before the warm-up compiles it)
        start = time.perf_counter()
        for _ in range(args.warmup):
            trainer.train_iteration()
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    if args.compile:
        from torch._dynamo.utils import counters  # dynamo's own tally, filled while compiling the warm-up

        breaks = sum(counters["graph_break"].values())
        print(f"compile=True: {breaks} graph breaks in the compiled meta-gradient and line-search surrogate"
              + "".join(f"\n  {n} x {reason}" for reason, n in counters["graph_break"].items()))
    # FLOPs of one recorded iteration per variant (not one of the timed ones: recording slows it down).
    recorded = {}
    if args.roofline or args.meta_batch_sizes:
        for name, trainer in trainers.items():
            recorder, flop_counter_total, evals = _roofline.record_iteration(trainer)
            own_total = sum(recorder.flops_by_phase().values())
            if own_total != flop_counter_total:
                raise RuntimeError(f"{name}: recorded {own_total} matmul FLOPs, FlopCounterMode {flop_counter_total}")
            recorded[name] = (recorder, evals)

    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    fractions: dict[str, list[float]] = {name: [] for name in trainers}
    phases: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    evals: dict[str, list[int]] = {name: [] for name in trainers}
    for _ in range(args.iterations):
        for name, trainer in trainers.items():
            clock = _roofline.PhaseClock()
            with _roofline.instrumented(trainer, clock):
                metrics = trainer.train_iteration()
            seconds[name].append(metrics["seconds"])
            fractions[name].append(metrics["step_fraction"])
            phases[name].append(dict(clock.seconds))
            evals[name].append(clock.line_search_evals)

    base = statistics.median(seconds[next(iter(trainers))])
    rows = []
    print(f"\nmedian over {args.iterations} meta-iterations each, {args.threads} threads, malloc {args.malloc}, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':58} | {'s / iteration':>13} | {'500 its, min':>12} | {'vs default':>10} | {'ls fraction':>11}"
          + (" | GFLOP / it" if recorded else ""))
    for name in trainers:
        med = statistics.median(seconds[name])
        frac = statistics.mean(fractions[name])
        row = {"variant": name, "median_s": med, "projected_500_min": med * 500 / 60, "ratio": med / base,
               "mean_step_fraction": frac, "all_s": seconds[name]}
        line = f"{name:58} | {med:13.3f} | {med * 500 / 60:12.1f} | {med / base:10.2f} | {frac:11.2f}"
        if name in recorded:
            recorder, recorded_evals = recorded[name]
            flops = recorder.flops_by_phase()
            per_eval = flops[_roofline.LINE_SEARCH] / recorded_evals
            row["gflop"] = (sum(flops.values()) + (statistics.mean(evals[name]) - recorded_evals) * per_eval) / 1e9
            line += f" | {row['gflop']:10.2f}"
        rows.append(row)
        print(line)
    if args.roofline:
        peak = _roofline.peak_matmul_flops_per_second()
        for row, (name, (recorder, recorded_evals)) in zip(rows, recorded.items()):
            floors = _roofline.floor_by_phase(recorder)
            row["roofline"] = print_roofline(name, recorder, recorded_evals, floors, phases[name], seconds[name],
                                             evals[name], peak)
        extra = logging_and_checkpoint_seconds()
        print(f"\nlogging + checkpoint (what MAMLTrainer.train adds per iteration, default settings): {extra * 1e3:.1f} ms")
        rows[0]["logging_checkpoint_s"] = extra
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads, "malloc": args.malloc, "date": time.strftime("%Y-%m-%d %H:%M"),
                               "load_average": os.getloadavg(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
