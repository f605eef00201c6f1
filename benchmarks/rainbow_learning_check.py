"""Issue 27's learning check for Rainbow on the fast path: CartPole-v1, greedy 500 within 30k steps, 3 seeds.

    python benchmarks/rainbow_learning_check.py                      # seeds 0 1 2, eager, one after the other
    python benchmarks/rainbow_learning_check.py --jobs 2             # two seeds at a time (one core each)
    python benchmarks/rainbow_learning_check.py --compile            # the update under torch.compile
    python benchmarks/rainbow_learning_check.py --seeds 0 --iterations 3000   # a smoke run

Each seed trains ``examples/rainbow_cartpole.py``'s configuration (RainbowConfig's defaults, all
six components on, 30,000 env steps, a greedy 10-episode evaluation every 5,000 steps) and then
evaluates the final policy greedily (mean network, noise off) on ``--final-episodes`` episodes.
Printed per seed: the final greedy mean, the first periodic evaluation at 500 (its step), the
training mean of the last 100 episodes and the wall time; then the mean and spread (min-max)
over the seeds and whether every seed reached a greedy 500. ``--json`` writes the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=30_000, help="env steps per seed (default 30,000)")
    parser.add_argument("--compile", action="store_true", help="compile=True (the update under torch.compile)")
    parser.add_argument("--final-episodes", type=int, default=100, help="greedy episodes of the final evaluation")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, one process and one thread each")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    for name in ("iterations", "final_episodes", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def run_seed(seed: int, iterations: int, compile: bool, final_episodes: int) -> dict:
    """One seed of the example's configuration; returns its numbers."""
    import torch

    from functional_metarl.runners import RainbowConfig, RainbowTrainer

    torch.set_num_threads(1)
    config = RainbowConfig(seed=seed, iterations=iterations, eval_every=5_000, compile=compile)
    start = time.perf_counter()
    trainer = RainbowTrainer(config)
    try:
        history = trainer.train(progress=False)
        final = trainer.evaluate(final_episodes)["return"]
        summary = trainer.summary()
    finally:
        trainer.close()
    evals = [(int(r["step"]), r["eval_return"]) for r in history if "eval_return" in r]
    first_500 = next((step for step, value in evals if value >= 500.0), None)
    return {"seed": seed, "greedy_return": final, "first_eval_500_step": first_500, "evaluations": evals,
            "train_return_mean100": summary.get("return_mean100"), "seconds": time.perf_counter() - start}


def main(args: argparse.Namespace) -> int:
    work = [(s, args.iterations, args.compile, args.final_episodes) for s in args.seeds]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(run_seed, *zip(*work)))
    else:
        rows = [run_seed(*w) for w in work]
    for r in rows:
        print(f"seed {r['seed']}: greedy {r['greedy_return']:.1f} over {args.final_episodes} episodes; periodic "
              f"evaluations {[(s, round(v, 1)) for s, v in r['evaluations']]}; first at 500: step "
              f"{r['first_eval_500_step']}; training mean100 {r['train_return_mean100']}; {r['seconds']:.0f} s")
    finals = [r["greedy_return"] for r in rows]
    passed = all(v >= 500.0 for v in finals)
    print(f"greedy return over {len(rows)} seeds: mean {statistics.mean(finals):.1f}, min {min(finals):.1f}, "
          f"max {max(finals):.1f} ({args.iterations} env steps, compile={args.compile}); "
          f"every seed at 500: {'yes' if passed else 'no'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"iterations": args.iterations, "compile": args.compile, "rows": rows, "passed": passed}, f, indent=1)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
