"""MAML-TRPO on Meta-World ML1 / ML10 (metaworld 3.x), with Meta-World's success protocol.

    python examples/maml_metaworld.py --benchmark ML1 --env-name reach-v3     # short CPU run
    python examples/maml_metaworld.py --benchmark ML10 --output runs/mw_ml10
    python examples/maml_metaworld.py --benchmark ML10 --paper --output runs/mw_ml10 [--resume]

Tasks are metaworld's own (``metaworld.ML1(env_name)`` / ``metaworld.ML10()``: 50 goals per env
class; ML1 holds out goals, ML10 holds out 5 whole env classes), each sub-env set to its task;
the observation hides the goal. Meta-training samples meta-batches of the train split (ML10:
classes round robin over the meta-batch slots). Evaluation follows Meta-World's protocol
(``metaworld.evaluation.metalearning_evaluation``): for each evaluated task, ``--adapt-episodes``
rollouts of the meta-policy, one inner step, then ``--eval-episodes`` episodes of the adapted
policy; an episode is solved if ``info["success"]`` comes at any of its steps; success rates
per task, per env class and overall (the mean over classes), on the meta-train split and on the
held-out meta-test split. The Meta-World paper's MAML (ML10): 44.4% meta-train, 31.6% meta-test.

Defaults are a short CPU run: 10 meta-iterations of 10 tasks x 5 episodes, horizon 150 (the
Meta-World paper's episode length; metaworld 3's envs allow up to 500), evaluation on 10 tasks
per split. ``--paper`` sets meta-batch 20 x 10 episodes, horizon 500, 300 meta-iterations.
Writes metrics.json, checkpoint.pt (``--resume``), TensorBoard events and curves.png into --output.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _gym_maml_cli import GymMAMLArgs, before_after, train  # noqa: E402
from _gym_maml_cli import parse_args as parse_gym_args  # noqa: E402

from functional_metarl.envs import METAWORLD_BENCHMARKS, MetaWorldFamily  # noqa: E402

PAPER_MAML = {"ML10": {"meta_train": 0.444, "meta_test": 0.316}}
SIZES = {"iterations": (10, 300), "meta_batch_size": (10, 20), "episodes_per_task": (5, 10), "horizon": (150, 500)}


@dataclass
class Args(GymMAMLArgs):
    """MAML-TRPO on Meta-World. Every field of MAMLConfig is a flag (--iterations,
    --meta-batch-size, --trpo.max-kl, ...); --paper sets the paper's run sizes for those not given."""

    benchmark: Literal[METAWORLD_BENCHMARKS] = "ML1"
    env_name: str | None = "reach-v3"  # ML1's environment (ignored by ML10)
    adapt_episodes: int = 10  # adaptation rollouts per evaluated task


def parse_args(argv: list[str] | None = None) -> Args:
    args = parse_gym_args(Args, SIZES, dict(action_scale=1.0, eval_episodes=3, checkpoint_every=2),
                          prog="maml_metaworld.py", description=__doc__, positive_ints=("adapt_episodes",), argv=argv)
    if args.benchmark == "ML10":
        args.env_name = None
    args.output = args.output or f"runs/maml_metaworld_{args.benchmark if args.env_name is None else args.env_name}"
    return args


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    its = [m["iteration"] for m in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(its, [m["pre_return"] for m in history], label="before adaptation")
    axes[0].plot(its, [m["post_return"] for m in history], label="after 1 inner step")
    axes[0].set_ylabel("mean episode return")
    axes[1].plot(its, [m["pre_success"] for m in history], label="before adaptation")
    axes[1].plot(its, [m["post_success"] for m in history], label="after 1 inner step")
    axes[1].set_ylabel("success rate (meta-batch episodes)")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("meta-iteration")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    family = MetaWorldFamily(args.benchmark, args.env_name, seed=args.seed, horizon=args.horizon)
    trainer, history, train_seconds = train(family, args, success_key="success")

    start = time.perf_counter()
    results = {}
    for split, key in (("train", "meta_train"), ("test", "meta_test")):
        results[key] = before_after(trainer, args.eval_tasks, args.adapt_episodes, args.eval_episodes, split=split,
                                    params=trainer.best_params)
    eval_seconds = time.perf_counter() - start
    trainer.write_metrics(evaluation={**results, "paper_maml": PAPER_MAML.get(args.benchmark),
                                      "train_seconds_this_run": train_seconds, "eval_seconds": eval_seconds})
    if history:
        plot_curves(history, trainer.output_dir / "curves.png", f"MAML on Meta-World {family.name} (H={args.horizon})")
    trainer.close()

    print(f"\nMeta-World protocol: {args.adapt_episodes} adaptation rollouts, 1 inner step, {args.eval_episodes} "
          f"evaluation episodes per task; success = info['success'] at any step (best meta-params)")
    paper = PAPER_MAML.get(args.benchmark, {})
    for key, res in results.items():
        s = res["success_after"]
        ref = f" (Meta-World paper MAML: {paper[key]:.1%})" if key in paper else ""
        print(f"{key:>10}: success {s['overall']:.1%} after adapting (before: {res['success_before']['overall']:.1%})"
              f" on {res['tasks']} tasks{ref}")
        for name, rate in s["per_class"].items():
            print(f"{'':>12}{name:<26} {rate:.1%}")
    print(f"training {train_seconds:.0f} s this run, evaluation {eval_seconds:.0f} s")
    print(json.dumps({k: v["success_after"]["overall"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
