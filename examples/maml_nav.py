"""MAML-TRPO on 2D navigation (Finn et al. 2017, section 5.3), end to end.

    python examples/maml_nav.py                      # the paper's settings, 500 meta-iterations
    python examples/maml_nav.py --meta-iterations 50 --output runs/quick
    python examples/maml_nav.py --output runs/nav --resume   # continue from runs/nav/checkpoint.pt
    python examples/maml_nav.py --estimator dice             # another meta-gradient estimator (meta.estimators)
    python examples/maml_nav.py --estimator lvc --meta-optimizer promp   # the ProMP-style meta-step
    python examples/maml_nav.py --proportional-inner-step 0.4 --eval-lrs 0.1 0.05   # steps as long as the distance left

Trains a 64x64 tanh Gaussian policy with MAML (meta-batch 20 tasks, 20 trajectories per task,
horizon 100, one inner SGD step of 0.1, gamma 0.99, lambda 1.0, TRPO meta-step), then evaluates
40 held-out goals after 0, 1, 2 and 3 inner steps (the paper's Table 4 form; its MAML row reads
-40.4, -11.7, -3.3, -3.2). The evaluation follows the paper's protocol (section 5.3, appendix
A.2): the meta-params with the best post-adaptation return during training, 40 episodes per
step, a smaller step size after the first one. The paper halves it (0.1, then 0.05); here a
tenth (0.1, then 0.01) did better on separate tuning tasks (see README), and
``--eval-lrs 0.1 0.05`` gives the paper's choice. The latest meta-params are evaluated the same
way for comparison. Writes metrics.json (``eval``: best params, ``eval_final``: latest),
checkpoint.pt, TensorBoard events, returns.png and trajectories.png into --output.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from functional_metarl.meta import ESTIMATORS, ProMPConfig, TRPOConfig  # noqa: E402
from functional_metarl.runners import (  # noqa: E402
    CHECKPOINT_NAME,
    MAMLConfig,
    MAMLTrainer,
    keep_freed_cpu_memory,
    resolve_device,
)

PAPER_MAML = {"0": -40.4, "1": -11.7, "2": -3.3, "3": -3.2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-iterations", type=int, default=500)
    parser.add_argument("--meta-batch-size", type=int, default=20)
    parser.add_argument("--episodes-per-task", type=int, default=20)
    parser.add_argument("--inner-lr", type=float, default=0.1)
    parser.add_argument("--inner-steps", type=int, default=1,
                        help="inner SGD steps during meta-training, each on fresh episodes of the policy adapted so far")
    parser.add_argument("--learn-inner-lr", action="store_true",
                        help="Meta-SGD: meta-learn per-parameter inner step sizes, starting from --inner-lr")
    parser.add_argument("--raw-inner-advantages", action="store_true",
                        help="inner steps learn from the baseline residuals as they are (default: normalized)")
    parser.add_argument("--proportional-inner-step", type=float, default=None, metavar="D0",
                        help="scale each task's inner step by d / D0, d = its episodes' mean distance to the goal "
                             "over their last 10 steps (meta.scale_by_final_reward); default: fixed-length steps")
    parser.add_argument("--mean-bound", type=float, default=None,
                        help="squash the policy mean into [-B, B] as B tanh(out / B), "
                             "e.g. onto the velocity box: B = 0.1 / action_scale")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="policy hidden sizes")
    parser.add_argument("--activation", default="tanh", help="policy activation (relu, tanh, elu, gelu, silu)")
    parser.add_argument("--action-scale", type=float, default=1.0,
                        help="velocity = clip(scale * action, -0.1, 0.1); 0.1 = the paper code's normalized actions")
    parser.add_argument("--first-order", action="store_true", help="first-order MAML (no grad through the inner step)")
    parser.add_argument("--meta-optimizer", choices=("trpo", "adam", "promp"), default="trpo",
                        help="promp: ProMP-style meta-step (clipped surrogate, several Adam epochs per batch, "
                             "adaptive KL penalty on the inner step), learning rate --meta-lr")
    parser.add_argument("--estimator", choices=ESTIMATORS, default="maml",
                        help="meta-gradient estimator (meta.estimators): maml (the default surrogate), e-maml "
                             "(adds the pre-update score term), dice (unbiased inner Hessian), lvc (ProMP's)")
    parser.add_argument("--meta-lr", type=float, default=1e-3, help="Adam / ProMP meta-step learning rate")
    parser.add_argument("--promp-epochs", type=int, default=ProMPConfig.epochs, help="ProMP: epochs per meta-batch")
    parser.add_argument("--promp-clip", type=float, default=ProMPConfig.clip_eps, help="ProMP: PPO clip range")
    parser.add_argument("--promp-target-kl", type=float, default=ProMPConfig.target_kl,
                        help="ProMP: target KL of the inner step (the penalty coefficient adapts to it)")
    parser.add_argument("--curvature", choices=("exact", "adapted"), default="exact",
                        help="TRPO curvature: Fisher of the adapted policies, or exactly through the adaptation")
    parser.add_argument("--eval-tasks", type=int, default=40)
    parser.add_argument("--eval-episodes", type=int, default=40, help="episodes per task and evaluation step")
    parser.add_argument("--eval-lrs", type=float, nargs="+", default=None,
                        help="step size of evaluation step k = EVAL_LRS[min(k, len-1)] (default: inner-lr, inner-lr/10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the meta-gradient and the line search's surrogate (the eager path is the reference)")
    parser.add_argument("--output", default="runs/maml_nav", help="directory for metrics, checkpoint, plots")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    # Everything that training does not use is checked here too, before any work starts, so a
    # bad evaluation flag fails in a second rather than after minutes of training.
    if args.eval_tasks < 1:
        parser.error(f"--eval-tasks must be >= 1, got {args.eval_tasks}")
    if args.eval_episodes < 1:
        parser.error(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
    if args.eval_lrs is not None and not all(lr > 0 and math.isfinite(lr) for lr in args.eval_lrs):
        parser.error(f"--eval-lrs must be positive finite step sizes, got {args.eval_lrs}")
    try:
        args.config = make_config(args)
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    checkpoint = Path(args.output) / CHECKPOINT_NAME
    if args.resume and not checkpoint.is_file():
        parser.error(f"--resume: no checkpoint at {checkpoint}")
    return args


def make_config(args: argparse.Namespace) -> MAMLConfig:
    """The trainer's settings from the command line (MAMLConfig checks every field)."""
    return MAMLConfig(
        meta_iterations=args.meta_iterations,
        meta_batch_size=args.meta_batch_size,
        episodes_per_task=args.episodes_per_task,
        inner_lr=args.inner_lr,
        inner_steps=args.inner_steps,
        hidden=tuple(args.hidden),
        activation=args.activation,
        action_scale=args.action_scale,
        first_order=args.first_order,
        meta_optimizer=args.meta_optimizer,
        meta_lr=args.meta_lr,
        estimator=args.estimator,
        promp=ProMPConfig(epochs=args.promp_epochs, clip_eps=args.promp_clip, target_kl=args.promp_target_kl),
        seed=args.seed,
        device=args.device,
        compile=args.compile,
        learn_inner_lr=args.learn_inner_lr,
        normalize_inner_advantages=not args.raw_inner_advantages,
        proportional_inner_step=args.proportional_inner_step,
        mean_bound=args.mean_bound,
        trpo=TRPOConfig(curvature=args.curvature),
    )


def plot_returns(history: list[dict], path: Path) -> None:
    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [m["pre_return"] for m in history], label="before adaptation")
    ax.plot(its, [m["post_return"] for m in history], label="after 1 inner step")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return")
    ax.set_title("MAML on 2D navigation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_trajectories(tasks, episodes_per_step, path: Path, num_goals: int = 4) -> None:
    """Paths of the first episode for a few goals, before (0 steps) and after 1 and 3 steps."""
    num_goals = min(num_goals, tasks.goal.shape[0])
    fig, axes = plt.subplots(1, num_goals, figsize=(3.2 * num_goals, 3.4), squeeze=False)
    axes = axes[0]
    styles = {0: ("tab:gray", "before"), 1: ("tab:blue", "1 step"), len(episodes_per_step) - 1: ("tab:red", f"{len(episodes_per_step) - 1} steps")}
    for i, ax in enumerate(axes):
        goal = tasks.goal[i].cpu()
        for step, (color, label) in styles.items():
            ep = episodes_per_step[step]
            obs, mask = ep.obs[i, :, 0].cpu(), ep.mask[i, :, 0].cpu().bool()
            path_xy = torch.cat([obs[mask], (obs[mask][-1:] if mask.any() else obs[:1])])
            ax.plot(path_xy[:, 0], path_xy[:, 1], color=color, label=label, lw=1.2)
        ax.scatter([0], [0], c="k", marker="o", s=20)
        ax.scatter([goal[0]], [goal[1]], c="tab:green", marker="*", s=120, label="goal")
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.6, 0.6)
        ax.set_aspect("equal")
        ax.set_title(f"goal {i}")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    keep_freed_cpu_memory()  # large activations are reused instead of page-faulted in anew (runners.cpu_memory)
    config = args.config
    output = Path(args.output)
    trainer = MAMLTrainer(config, output_dir=output)
    if args.resume:
        try:
            trainer.load_checkpoint(output / CHECKPOINT_NAME)
        except ValueError as error:  # an unreadable checkpoint or one of other settings: say so, no traceback
            raise SystemExit(f"maml_nav.py: error: {error}") from None
        print(f"resumed from {output / CHECKPOINT_NAME} at meta-iteration {trainer.iteration}")
    print(f"training on {trainer.device} for {config.meta_iterations} meta-iterations -> {output}")
    history = trainer.train(progress=not args.no_progress)

    evaluate = partial(trainer.evaluate_with_episodes, num_tasks=args.eval_tasks, max_steps=3,
                       episodes_per_task=args.eval_episodes, inner_lrs=args.eval_lrs)
    returns, (tasks, episodes_per_step) = evaluate(params=trainer.best_params, learned_lrs=trainer.best_learned_lrs)
    returns_final, _ = evaluate(params=trainer.params, learned_lrs=trainer.learned_lrs)
    trainer.write_metrics(evaluation=returns, extra={"eval_final": returns_final})
    plot_returns(history, output / "returns.png")
    plot_trajectories(tasks, episodes_per_step, output / "trajectories.png")

    seconds = sum(m["seconds"] for m in history)
    best_iteration = max(history, key=lambda m: m["post_return"])["iteration"] if history else 0
    print(f"\nheld-out evaluation on {args.eval_tasks} tasks (mean episode return)")
    print(f"{'inner steps':>12} | {'best params':>11} | {'latest':>8} | {'MAML paper':>10}")
    for step in ("0", "1", "2", "3"):
        print(f"{step:>12} | {returns[step]:11.2f} | {returns_final[step]:8.2f} | {PAPER_MAML[step]:10.1f}")
    print(f"(best params: the meta-params that meta-iteration {best_iteration} adapted from; "
          "its post-adaptation return was the highest in training)")
    print(f"\ntraining time {seconds:.1f} s ({seconds / max(len(history), 1):.3f} s per meta-iteration)")
    print(json.dumps({"eval": returns, "eval_final": returns_final}))


if __name__ == "__main__":
    main()
