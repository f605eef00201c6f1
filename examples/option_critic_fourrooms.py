"""Tabular Option-Critic on Four Rooms (Bacon, Harb & Precup 2017, Fig. 2 / Fig. 3).

Trains ``--runs`` independent learners (4 options each) for ``--episodes`` episodes; the goal
sits in the east doorway and moves to a random cell of the lower-right room after
``--switch-at`` episodes. Writes to ``--out``:

- ``steps_to_goal.png``: steps to reach the goal per episode, mean over runs, before and after
  the goal moves;
- ``terminations.png``: termination probability beta_w(s) of every option on the map (mean
  over runs);
- ``metrics.json``, ``tensorboard/`` and ``checkpoint.pt`` (rerun with ``--resume`` to continue).

    python examples/option_critic_fourrooms.py --runs 10 --episodes 2000 --switch-at 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from functional_metarl.runners import OptionCriticConfig, OptionCriticTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--switch-at", type=int, default=1000)
    parser.add_argument("--options", type=int, default=4)
    parser.add_argument("--xi", type=float, default=0.0)
    parser.add_argument("--entropy-coef", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/option_critic_fourrooms")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = OptionCriticConfig(num_options=args.options, num_runs=args.runs, num_episodes=args.episodes,
                                switch_goal_at=args.switch_at, xi=args.xi, entropy_coef=args.entropy_coef,
                                seed=args.seed)
    out = Path(args.out)
    trainer = OptionCriticTrainer(config, output_dir=out)
    if args.resume and (out / "checkpoint.pt").is_file():
        trainer.load_checkpoint(out / "checkpoint.pt")
    steps = trainer.train().float()  # [runs, episodes]
    mean = steps.mean(0)

    def window(a: int, b: int) -> float:
        return float(mean[a:b].mean())

    k = args.switch_at
    print(f"mean steps to goal over {args.runs} runs:")
    print(f"  episodes 1-10: {window(0, 10):.1f}   episodes {k - 99}-{k} (before the move): {window(k - 100, k):.1f}")
    print(f"  episodes {k + 1}-{k + 10} (just after): {window(k, k + 10):.1f}   "
          f"episodes {args.episodes - 99}-{args.episodes} (end): {window(args.episodes - 100, args.episodes):.1f}")
    print(f"  goals (before -> after) per run: {trainer.goals.tolist()}")

    fig, ax = plt.subplots(figsize=(8, 4))
    ep = torch.arange(1, args.episodes + 1)
    ax.plot(ep, mean, lw=0.6, alpha=0.5, label=f"mean over {args.runs} runs")
    smooth = torch.nn.functional.avg_pool1d(mean[None, None], 20, stride=1).squeeze()
    ax.plot(ep[19:], smooth, lw=1.5, label="moving average (20)")
    ax.axvline(k + 0.5, color="k", ls="--", lw=1, label="goal moves")
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps to goal")
    ax.set_title(f"Option-Critic, Four Rooms, {args.options} options")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "steps_to_goal.png", dpi=120)

    beta = trainer.termination_map()  # [O, 13, 13]
    fig, axes = plt.subplots(1, args.options, figsize=(3 * args.options, 3.2))
    for o, a in enumerate(axes if args.options > 1 else [axes]):
        im = a.imshow(beta[o].numpy(), cmap="viridis", vmin=0, vmax=1)
        walls = torch.isnan(beta[o])
        a.imshow(torch.where(walls, 1.0, float("nan")).numpy(), cmap="gray_r", vmin=0, vmax=1)
        for g, marker in zip(trainer.goals[0].tolist(), ("*", "o")):
            r, c = trainer.env.coords[g].tolist()
            a.plot(c, r, marker, color="red", ms=9, mfc="none" if marker == "o" else "red")
        a.set_title(f"option {o}: beta(s)")
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=list(axes) if args.options > 1 else axes, shrink=0.8)
    fig.suptitle("termination probability per cell (mean over runs; red star: first goal, circle: run 0's second goal)")
    fig.savefig(out / "terminations.png", dpi=120)
    print(f"wrote {out / 'steps_to_goal.png'} and {out / 'terminations.png'}")


if __name__ == "__main__":
    main()
