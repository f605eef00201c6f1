"""Learning check for issue 27: DDPG / TD3 on Pendulum-v1 reach a mean return >= -170 within
20,000 env steps, on 3 seeds each, on the fast path (eager by default; ``--compile`` for the
compiled update, ``--num-envs`` for vector envs). Prints every run, then per algorithm the mean
and spread (min-max, standard deviation) over the seeds.

    python benchmarks/ddpg_pendulum_seeds.py                         # ddpg and td3, seeds 0 1 2, eager
    python benchmarks/ddpg_pendulum_seeds.py --compile               # the same with compile=True
    python benchmarks/ddpg_pendulum_seeds.py --algos td3 --seeds 0 --iterations 1200 --start-steps 400  # a smoke run
    python benchmarks/ddpg_pendulum_seeds.py --json benchmarks/results/ddpg_pendulum_seeds.json

Each run is ``examples/ddpg_pendulum.py --algo A --seed S`` with the example's settings (TD3
paper's nets and optimizer, gamma 0.98, 200k buffer, 5,000 warm-up steps, 20,000 env steps; the
example's own command-line parser builds the config, so the two cannot drift apart). The
measure is the example's: the mean return of the last 10 training episodes (``target_met`` when
>= -170), plus the deterministic policy's mean return over 10 evaluation episodes. Nothing is
written unless ``--json`` is given. One run takes a few minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

from _common import configure_openmp  # benchmarks/_common.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
TARGET = -170.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["ddpg", "td3"], choices=["ddpg", "td3"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=20_000, help="iterations per run (x num_envs env steps)")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--start-steps", type=int, default=None,
                        help="warm-up env steps of random actions (default: the example's 5,000)")
    parser.add_argument("--compile", action="store_true", help="run the update under torch.compile")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--json", default=None, help="write the runs and the summary here")
    args = parser.parse_args(argv)
    for name in ("iterations", "num_envs", "threads", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def load_example():
    path = ROOT / "examples" / "ddpg_pendulum.py"
    spec = importlib.util.spec_from_file_location("ddpg_pendulum_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # tyro looks the Args dataclass's module up there
    spec.loader.exec_module(module)
    return module


def run_one(example, algo: str, seed: int, args: argparse.Namespace) -> dict:
    from functional_metarl.runners import DDPGTrainer

    argv = ["--algo", algo, "--seed", str(seed), "--iterations", str(args.iterations), "--num-envs", str(args.num_envs),
            "--device", args.device] + (["--compile"] if args.compile else [])
    if args.start_steps is not None:
        argv += ["--start-steps", str(args.start_steps)]
    config = example.parse_args(argv).config
    trainer = DDPGTrainer(config)
    t0 = time.perf_counter()
    trainer.train(progress=False)
    seconds = time.perf_counter() - t0
    last10 = trainer.mean_return(10)
    evaluation = trainer.evaluate(args.eval_episodes)["return"]
    row = {"algo": algo, "seed": seed, "env_steps": trainer.steps, "last10_train_return": last10,
           "eval_return_deterministic": evaluation, "target_met": last10 >= TARGET, "seconds": seconds,
           "env_steps_per_s": trainer.steps / seconds}
    trainer.close()
    return row


def summarize(rows: list[dict], algo: str) -> dict:
    mine = [r for r in rows if r["algo"] == algo]
    last = [r["last10_train_return"] for r in mine]
    evals = [r["eval_return_deterministic"] for r in mine]
    return {"algo": algo, "seeds": [r["seed"] for r in mine], "last10_mean": statistics.mean(last),
            "last10_std": statistics.stdev(last) if len(last) > 1 else 0.0, "last10_min": min(last), "last10_max": max(last),
            "eval_mean": statistics.mean(evals), "eval_min": min(evals), "eval_max": max(evals),
            "all_seeds_met": all(r["target_met"] for r in mine), "mean_met": statistics.mean(last) >= TARGET}


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    example = load_example()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"DDPG / TD3 Pendulum-v1 learning check: {args.iterations} iterations x {args.num_envs} env(s), "
        f"compile={args.compile}, seeds {args.seeds}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    rows = []
    for algo in args.algos:
        for seed in args.seeds:
            row = run_one(example, algo, seed, args)
            rows.append(row)
            log(f"  {algo} seed {seed}: last-10 training return {row['last10_train_return']:.1f}, deterministic eval "
                f"{row['eval_return_deterministic']:.1f} ({'met' if row['target_met'] else 'NOT met'}; "
                f"{row['env_steps_per_s']:.0f} env steps/s, {row['seconds']:.0f} s)")
    summary = [summarize(rows, algo) for algo in args.algos]
    log(f"\nsummary (target: last-10 training return >= {TARGET:.0f} on every seed)")
    for s in summary:
        log(f"  {s['algo']}: last-10 mean {s['last10_mean']:.1f} (std {s['last10_std']:.1f}, min {s['last10_min']:.1f}, "
            f"max {s['last10_max']:.1f}); eval mean {s['eval_mean']:.1f} (min {s['eval_min']:.1f}, max {s['eval_max']:.1f}); "
            f"every seed met: {s['all_seeds_met']}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmark": "ddpg_pendulum_seeds", "settings": vars(args), "runs": rows,
                                    "summary": summary}, indent=1))
        log(f"wrote {path}")
    return 0 if all(s["all_seeds_met"] for s in summary) else 1


if __name__ == "__main__":
    _ARGS = parse_args()
    configure_openmp(None, default="passive")
    sys.exit(main(_ARGS))
