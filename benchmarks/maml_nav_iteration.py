"""Wall time of one whole MAML-TRPO meta-iteration on 2D navigation (the example's settings).

    python benchmarks/maml_nav_iteration.py               # default, adapted curvature, pytorch-maml-rl's step
    python benchmarks/maml_nav_iteration.py --iterations 10 --compile
    python benchmarks/maml_nav_iteration.py --estimators-only   # maml vs e-maml / dice / lvc / ProMP rows

Each variant is a fresh ``MAMLTrainer`` (seed 0, meta-batch 20 x 20 episodes, horizon 100) that
runs a few warm-up meta-iterations and then ``--iterations`` timed ones; the variants are
interleaved round by round so that a change in machine load hits them alike. Prints the median
seconds per meta-iteration, the projected time of the default 500-iteration run, the ratio to
the default variant, and the mean line-search fraction; ``--json`` writes the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

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
# The meta-gradient estimators (meta.estimators) on the default TRPO step, and the ProMP-style
# meta-step, each against the default (estimator "maml") in the same interleaved rounds.
ESTIMATOR_ROWS = {
    "estimator e-maml (TRPO)": dict(estimator="e-maml"),
    "estimator dice (TRPO)": dict(estimator="dice"),
    "estimator lvc (TRPO)": dict(estimator="lvc"),
    "ProMP meta-step, lvc, 5 epochs": dict(estimator="lvc", meta_optimizer="promp"),
    "ProMP meta-step, maml, 5 epochs": dict(meta_optimizer="promp"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=8, help="timed meta-iterations per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the default with a compiled meta-gradient")
    parser.add_argument("--estimators-only", action="store_true",
                        help="time only the default and the estimator / ProMP rows")
    parser.add_argument("--json", default="benchmarks/results/maml_nav_iteration.json")
    args = parser.parse_args()
    if args.iterations < 1 or args.warmup < 0:
        raise ValueError(f"need --iterations >= 1 and --warmup >= 0, got {args.iterations} and {args.warmup}")
    torch.set_num_threads(args.threads)

    variants = dict(list(VARIANTS.items())[:1]) if args.estimators_only else VARIANTS
    trainers = {name: MAMLTrainer(MAMLConfig(trpo=cfg, device="cpu")) for name, cfg in variants.items()}
    if not args.estimators_only:
        trainers[FUNCTIONAL_CALL] = MAMLTrainer(MAMLConfig(device="cpu"))
        trainers[FUNCTIONAL_CALL].policy._pure_apply = None
        trainers[FUNCTIONAL_CALL].policy._stacked_apply = None
    for name, overrides in ESTIMATOR_ROWS.items():
        trainers[name] = MAMLTrainer(MAMLConfig(device="cpu", **overrides))
    if args.compile:
        trainers["default + compile=True"] = MAMLTrainer(MAMLConfig(compile=True, device="cpu"))
    for name, trainer in trainers.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            trainer.train_iteration()
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)

    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    fractions: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.iterations):
        for name, trainer in trainers.items():
            metrics = trainer.train_iteration()
            seconds[name].append(metrics["seconds"])
            fractions[name].append(metrics["step_fraction"])

    base = statistics.median(seconds[next(iter(trainers))])
    rows = []
    print(f"\nmedian over {args.iterations} meta-iterations each, {args.threads} threads, load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':58} | {'s / iteration':>13} | {'500 its, min':>12} | {'vs default':>10} | {'ls fraction':>11}")
    for name in trainers:
        med = statistics.median(seconds[name])
        frac = statistics.mean(fractions[name])
        rows.append({"variant": name, "median_s": med, "projected_500_min": med * 500 / 60, "ratio": med / base,
                     "mean_step_fraction": frac, "all_s": seconds[name]})
        print(f"{name:58} | {med:13.3f} | {med * 500 / 60:12.1f} | {med / base:10.2f} | {frac:11.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M"),
                               "load_average": os.getloadavg(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
