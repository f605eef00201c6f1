"""MAML-TRPO on 2D navigation (Finn et al. 2017, section 5.3), end to end.

    python examples/maml_nav.py                      # the paper's settings, 500 meta-iterations
    python examples/maml_nav.py --iterations 50 --output runs/quick
    python examples/maml_nav.py --output runs/nav --resume   # continue from runs/nav/checkpoint.pt
    python examples/maml_nav.py --estimator dice             # another meta-gradient estimator (meta.estimators)
    python examples/maml_nav.py --estimator lvc --meta-optimizer promp   # the ProMP-style meta-step
    python examples/maml_nav.py --proportional-inner-step 0.4 --eval-lrs 0.1 0.05   # steps as long as the distance left
    torchrun --nproc-per-node 2 examples/maml_nav.py          # the meta-batch split over 2 processes

Trains a 64x64 tanh Gaussian policy with MAML (meta-batch 20 tasks, 20 trajectories per task,
horizon 100, one inner SGD step of 0.1, gamma 0.99, lambda 1.0, TRPO meta-step), then evaluates
40 held-out goals after 0, 1, 2 and 3 inner steps (the paper's Table 4 form; its MAML row reads
-40.4, -11.7, -3.3, -3.2). The evaluation follows the paper's protocol (section 5.3, appendix
A.2): the meta-params with the best post-adaptation return during training, 40 episodes per
step, a smaller step size after the first one. The paper halves it (0.1, then 0.05); here a
tenth (0.1, then 0.01) did better on separate tuning tasks (see README), and
``--eval-lrs 0.1 0.05`` gives the paper's choice. The latest meta-params are evaluated the same
way for comparison. Writes metrics.json (``eval.best``: best params, ``eval.final``: latest),
checkpoint.pt, TensorBoard events, returns.png and trajectories.png into --output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402

from functional_metarl import checks  # noqa: E402
from functional_metarl.runners import (  # noqa: E402
    CHECKPOINT_FILE,
    MAMLConfig,
    MAMLTrainer,
    keep_freed_cpu_memory,
    resolve_device,
)

import _cli  # noqa: E402

PAPER_MAML = {"0": -40.4, "1": -11.7, "2": -3.3, "3": -3.2}


@dataclass
class Args(MAMLConfig):
    """MAML-TRPO on 2D navigation. Every field of MAMLConfig is a flag (its nested configs as
    --trpo.max-kl, --promp.epochs, ...); the fields below are evaluation and output settings."""

    eval_tasks: int = 40  # held-out goals
    eval_episodes: int = 40  # episodes per task and evaluation step
    # step size of evaluation step k = EVAL_LRS[min(k, len-1)] (default: inner-lr, inner-lr/10)
    eval_lrs: tuple[float, ...] | None = None
    output: str = "runs/maml_nav"  # directory for metrics, checkpoint, plots
    resume: bool = False  # continue from OUTPUT/checkpoint.pt
    overwrite: bool = False  # start again over OUTPUT when it holds a run of other settings
    no_progress: bool = False

    @property
    def config(self) -> MAMLConfig:
        """The trainer's settings: the MAMLConfig fields of the command line."""
        return MAMLConfig(**{f.name: getattr(self, f.name) for f in fields(MAMLConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (MAMLConfig checks its fields as it is built); the
    evaluation settings are checked too, before any work starts, so a bad evaluation flag fails
    in a second rather than after minutes of training."""
    try:
        args = tyro.cli(Args, args=argv, description=__doc__)
        checks.positive_int(args.eval_tasks, "--eval-tasks")
        checks.positive_int(args.eval_episodes, "--eval-episodes")
        for k, lr in enumerate(args.eval_lrs or ()):
            checks.positive_number(lr, f"--eval-lrs[{k}]")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    checkpoint = Path(args.output) / CHECKPOINT_FILE
    if args.resume and not checkpoint.is_file():
        usage_error(f"--resume: no checkpoint at {checkpoint}")
    return args


usage_error = partial(_cli.usage_error, "maml_nav.py")  # a bad command line: stderr, exit status 2


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
            trainer.load_checkpoint(output / CHECKPOINT_FILE)
        except ValueError as error:  # an unreadable checkpoint or one of other settings: say so, no traceback
            usage_error(str(error))
        print(f"resumed from {output / CHECKPOINT_FILE} at meta-iteration {trainer.iteration}")
    main_process = trainer.parallel.is_main  # under torchrun, rank 0 alone evaluates, plots and prints
    if main_process:
        print(f"training on {trainer.device} for {config.iterations} meta-iterations -> {output}"
              + (f" ({trainer.parallel.world_size} processes)" if trainer.parallel.world_size > 1 else ""))
    try:
        history = trainer.train(progress=not args.no_progress, overwrite=args.overwrite)
    except FileExistsError as error:  # OUTPUT holds a run of other settings: say so, no traceback
        usage_error(str(error))
    if not main_process:
        return

    evaluate = partial(trainer.evaluate_with_episodes, num_tasks=args.eval_tasks, max_steps=3,
                       episodes_per_task=args.eval_episodes, inner_lrs=args.eval_lrs)
    returns, evaluation = evaluate(params=trainer.best_params, learned_lrs=trainer.best_learned_lrs)
    returns_final, _ = evaluate(params=trainer.params, learned_lrs=trainer.learned_lrs)
    trainer.write_metrics(evaluation={"best": returns, "final": returns_final})
    plot_returns(history, output / "returns.png")
    plot_trajectories(evaluation.tasks, evaluation.episodes, output / "trajectories.png")

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
