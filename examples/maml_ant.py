"""MAML-TRPO on AntDir (Finn et al. 2017, section 5.3: ant forward/backward), end to end.

    python examples/maml_ant.py                                   # short CPU run (minutes)
    python examples/maml_ant.py --directions plane --output runs/ant_plane
    python examples/maml_ant.py --paper --output runs/ant_dir [--resume]

Tasks (``envs.AntDir`` over gymnasium's Ant-v5, 27-number observation): a unit direction ``u``
in the plane, reward ``u . v_xy - 0.005 |a|^2 - 0.0005 |clip(cfrc_ext)|^2 + 0.05``
(pytorch-maml-rl's AntDir); episodes end when the torso leaves z in [0.2, 1]. ``--directions
forward_backward`` (default) draws u = (+-1, 0) like pytorch-maml-rl and the paper; ``plane``
draws the angle uniformly. Episodes come from the task-aware vector sampler; the meta-step is
MAML-TRPO with one inner SGD step of 0.1.

Defaults are a short CPU run: 10 meta-iterations of 10 tasks x 10 episodes of 100 steps.
``--paper`` sets the paper's ant forward/backward run: 500 meta-iterations of 40 tasks x 40
episodes (the paper used 40 rollouts per step for this task), horizon 200. Then held-out
tasks are evaluated before and after one inner step. Writes metrics.json, checkpoint.pt
(``--resume``), TensorBoard events and returns.png into --output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from functional_metarl.envs import AntDir  # noqa: E402
from functional_metarl.runners import GYM_MAML_CHECKPOINT, GymMAMLConfig, GymMAMLTrainer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--directions", choices=("forward_backward", "plane"), default="forward_backward")
    parser.add_argument("--paper", action="store_true",
                        help="the paper's run: 500 meta-iterations, 40 tasks x 40 episodes, horizon 200")
    parser.add_argument("--meta-iterations", type=int, default=None, help="default 10 (500 with --paper)")
    parser.add_argument("--meta-batch-size", type=int, default=None, help="default 10 (40 with --paper)")
    parser.add_argument("--episodes-per-task", type=int, default=None, help="default 10 (40 with --paper)")
    parser.add_argument("--horizon", type=int, default=None, help="default 100 (200 with --paper)")
    parser.add_argument("--inner-lr", type=float, default=0.1)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--vectorization", choices=("sync", "async"), default="sync")
    parser.add_argument("--action-scale", type=float, default=0.1,
                        help="the env gets clip(scale * action, -1, 1); 0.1 = pytorch-maml-rl's normalization_scale 10, "
                             "1.0 = the policy acts in the env's box directly (rllab's normalize)")
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--output", default="runs/maml_ant")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    for name, short, paper in (("meta_iterations", 10, 500), ("meta_batch_size", 10, 40),
                               ("episodes_per_task", 10, 40), ("horizon", 100, 200)):
        if getattr(args, name) is None:
            setattr(args, name, paper if args.paper else short)
    for name in ('meta_iterations', 'meta_batch_size', 'episodes_per_task', 'horizon', 'eval_tasks', 'eval_episodes', 'checkpoint_every'):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    for name in ("inner_lr", "action_scale"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def plot_returns(history: list[dict], path: Path, title: str) -> None:
    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [m["pre_return"] for m in history], label="before adaptation")
    ax.plot(its, [m["post_return"] for m in history], label="after 1 inner step")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    family = AntDir(horizon=args.horizon, directions=args.directions)
    config = GymMAMLConfig(
        meta_iterations=args.meta_iterations, meta_batch_size=args.meta_batch_size,
        episodes_per_task=args.episodes_per_task, inner_lr=args.inner_lr, first_order=args.first_order,
        vectorization=args.vectorization, action_scale=args.action_scale, seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every,
    )
    output = Path(args.output)
    trainer = GymMAMLTrainer(family, config, output_dir=output)
    if args.resume:
        trainer.load_checkpoint(output / GYM_MAML_CHECKPOINT)
        print(f"resumed from {output / GYM_MAML_CHECKPOINT} at meta-iteration {trainer.iteration}")
    print(f"{family!r} on {trainer.device}: {config.meta_iterations} meta-iterations of {config.meta_batch_size} tasks "
          f"x {config.episodes_per_task} episodes -> {output}")
    start = time.perf_counter()
    history = trainer.train(progress=not args.no_progress)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    best = trainer.evaluate(args.eval_tasks, args.eval_episodes, args.eval_episodes, params=trainer.best_params)
    latest = trainer.evaluate(args.eval_tasks, args.eval_episodes, args.eval_episodes)
    eval_seconds = time.perf_counter() - start
    trainer.write_metrics(extra={"eval": best, "eval_final": latest, "train_seconds_this_run": train_seconds,
                                 "eval_seconds": eval_seconds})
    if history:
        plot_returns(history, output / "returns.png", f"MAML on {family!r}")
    trainer.close()

    print(f"\nheld-out evaluation on {args.eval_tasks} tasks x {args.eval_episodes} episodes (mean episode return)")
    print(f"{'':>14} | {'before':>8} | {'after 1 step':>12}")
    print(f"{'best params':>14} | {best['return_before']:8.1f} | {best['return_after']:12.1f}")
    print(f"{'latest params':>14} | {latest['return_before']:8.1f} | {latest['return_after']:12.1f}")
    print(f"training {train_seconds:.0f} s this run, evaluation {eval_seconds:.0f} s")
    print(json.dumps({"eval": {k: best[k] for k in ("return_before", "return_after")},
                      "eval_final": {k: latest[k] for k in ("return_before", "return_after")}}))


if __name__ == "__main__":
    main()
