"""The command line and run loop that ``maml_cheetah.py``, ``maml_ant.py`` and ``maml_metaworld.py``
share: MAML-TRPO through ``runners.MAMLTrainer`` with a ``runners.SimulatorSampler`` on a simulator
task family. Each script adds
its own task flags and builds its family; everything else (run sizes with a ``--paper`` preset,
the trainer settings, resume, checks of the flags before anything is built, training) is here.
The scripts run as ``python examples/<name>.py``, which puts this directory on ``sys.path``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from functional_metarl.envs import success_rates
from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer, SimulatorSampler

# The run sizes that --paper switches (argparse dest names).
SIZE_FLAGS = ("iterations", "meta_batch_size", "episodes_per_task", "horizon")


def add_run_flags(parser: argparse.ArgumentParser, sizes: dict[str, tuple[int, int]], *, action_scale: float,
                  action_scale_help: str, eval_episodes: int, checkpoint_every: int, output_help: str,
                  first_order: bool = True) -> None:
    """The shared flags. ``sizes``: ``{size flag: (short default, --paper value)}`` for every
    name in ``SIZE_FLAGS``; a size left unset on the command line takes one of the two."""
    for name in SIZE_FLAGS:
        short, paper = sizes[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {short} ({paper} with --paper)"
                            + (" (meta-iterations: MAMLConfig.iterations)" if name == "iterations" else ""))
    parser.add_argument("--inner-lr", type=float, default=0.1)
    if first_order:
        parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--vectorization", choices=("sync", "async"), default="sync")
    parser.add_argument("--action-scale", type=float, default=action_scale, help=action_scale_help)
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=eval_episodes)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', ...")
    parser.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    parser.add_argument("--output", default=None, help=output_help)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true")


def finish_run_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, sizes: dict[str, tuple[int, int]],
                     positive_ints: tuple[str, ...] = ()) -> argparse.Namespace:
    """Fill the sizes from ``--paper`` and reject bad values with a usage error (exit 2) before
    anything is built. ``positive_ints``: the script's own int flags that must be positive."""
    for name in SIZE_FLAGS:
        if getattr(args, name) is None:
            setattr(args, name, sizes[name][1] if args.paper else sizes[name][0])
    for name in (*SIZE_FLAGS, "eval_tasks", "eval_episodes", "checkpoint_every", *positive_ints):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    for name in ("inner_lr", "action_scale"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def train(family: Any, args: argparse.Namespace, success_key: str | None = None) -> tuple[MAMLTrainer, list[dict], float]:
    """Build the trainer from the flags (resuming with ``--resume``) and train it; returns
    ``(trainer, history, training seconds)``. The caller evaluates, writes metrics and closes it."""
    config = MAMLConfig(
        iterations=args.iterations, meta_batch_size=args.meta_batch_size,
        episodes_per_task=args.episodes_per_task, horizon=family.horizon, inner_lr=args.inner_lr,
        first_order=getattr(args, "first_order", False), seed=args.seed, device=args.device,
        checkpoint_every=args.checkpoint_every,
    )
    sampler = SimulatorSampler(family, seed=args.seed, vectorization=args.vectorization, action_scale=args.action_scale,
                               success_key=success_key)
    output = Path(args.output)
    trainer = MAMLTrainer(config, output_dir=output, sampler=sampler)
    if args.resume:
        trainer.load_checkpoint(output / CHECKPOINT_FILE)
        print(f"resumed from {output / CHECKPOINT_FILE} at meta-iteration {trainer.iteration}")
    print(f"{family!r} on {trainer.device}: {config.iterations} meta-iterations of {config.meta_batch_size} tasks "
          f"x {config.episodes_per_task} episodes -> {output}")
    start = time.perf_counter()
    history = trainer.train(progress=not args.no_progress)
    return trainer, history, time.perf_counter() - start


def plot_returns(history: list[dict], path: Path, title: str, paper: float | None = None,
                 paper_label: str = "paper") -> None:
    """Mean episode return of the meta-batch before and after the inner step, per meta-iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [m["pre_return"] for m in history], label="before adaptation")
    ax.plot(its, [m["post_return"] for m in history], label="after 1 inner step")
    if paper is not None:
        ax.axhline(paper, color="k", ls="--", lw=0.8, label=paper_label)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def before_after(trainer: MAMLTrainer, num_tasks: int, adapt_episodes: int, eval_episodes: int, *,
                 split: str = "train", params: Any = None, seed: int | None = None) -> dict[str, Any]:
    """Held-out evaluation, Meta-World's protocol (``metaworld.evaluation``): per task,
    ``adapt_episodes`` rollouts of the meta-params, one inner step, then ``eval_episodes`` rollouts
    of the adapted policy. Tasks and rollouts come from an evaluation sampler seeded with ``seed``
    (default ``config.seed + 10_000``). Returns ``{"return_before", "return_after", "tasks"}`` and,
    when the sampler counts success, ``"success_before"`` / ``"success_after"`` (per task, per
    class, overall: ``envs.success_rates``)."""
    params = trainer.params if params is None else params
    seed = trainer.config.seed + 10_000 if seed is None else seed
    sampler = trainer.sampler.for_evaluation(seed)
    try:
        tasks = sampler.sample_tasks(num_tasks, None, split)
        before, info_before = trainer.sample(params, tasks, step=0, episodes_per_task=adapt_episodes, sampler=sampler)
        adapted = trainer.adapt_batch(params, trainer.inner_batch(before))
        after, info_after = trainer.sample(adapted, tasks, per_task=True, step=1, episodes_per_task=eval_episodes,
                                           sampler=sampler)
    finally:
        sampler.close()
    out: dict[str, Any] = {"tasks": len(tasks), "split": split, "adapt_episodes": adapt_episodes,
                           "eval_episodes": eval_episodes,
                           "return_before": float(before.rewards.sum(dim=1).mean()),
                           "return_after": float(after.rewards.sum(dim=1).mean())}
    if "success" in info_before:
        names = [getattr(t, "env_name", trainer.sampler.family.name) for t in tasks]
        out["success_before"] = success_rates(info_before["success"], names)
        out["success_after"] = success_rates(info_after["success"], names)
    return out


def evaluate_before_after(trainer: MAMLTrainer, args: argparse.Namespace) -> tuple[dict, dict, float]:
    """Held-out return before and after one inner step for the best and the latest meta-params:
    ``(best, latest, seconds)``; prints the table."""
    start = time.perf_counter()
    best = before_after(trainer, args.eval_tasks, args.eval_episodes, args.eval_episodes, params=trainer.best_params)
    latest = before_after(trainer, args.eval_tasks, args.eval_episodes, args.eval_episodes)
    seconds = time.perf_counter() - start
    print(f"\nheld-out evaluation on {args.eval_tasks} tasks x {args.eval_episodes} episodes (mean episode return)")
    print(f"{'':>14} | {'before':>8} | {'after 1 step':>12}")
    print(f"{'best params':>14} | {best['return_before']:8.1f} | {best['return_after']:12.1f}")
    print(f"{'latest params':>14} | {latest['return_before']:8.1f} | {latest['return_after']:12.1f}")
    return best, latest, seconds
