"""Tabular Option-Critic on Four Rooms (Bacon, Harb & Precup 2017, Fig. 2 / Fig. 3).

Trains ``--num-runs`` independent learners (``--num-options`` 4 each) for ``--iterations``
episodes; the goal sits in the east doorway and moves to a random cell of the lower-right room
after ``--switch-goal-at`` episodes. Every field of ``OptionCriticConfig`` is a flag (``--help``). Writes to ``--out``:

- ``steps_to_goal.png``: steps to reach the goal per episode, mean over runs, before and after
  the goal moves;
- ``terminations.png``: top row, run 0's termination probability beta_w(s) for every option
  (option labels are arbitrary per run, so one run is shown, as in the paper's figure); bottom
  row, pooled over runs, the termination probability of the option that is running when the
  agent arrives in a cell, before and after the goal moves;
- ``metrics.json``, ``tensorboard/`` and ``checkpoint.pt`` (rerun with ``--resume`` to continue).

    python examples/option_critic_fourrooms.py --num-runs 10 --iterations 2000 --switch-goal-at 1000

It also prints that arrival termination probability averaged over cells next to a doorway vs
room interiors (goal cells left out). The defaults (``OptionCriticConfig``: epsilon-greedy ``V``
in the termination advantage, epsilon 0.1, temperature 1, termination step 2.5, ``xi = 0``) make
each option own a room or two and terminate where it leaves them, around the doorways;
``--termination-value greedy --epsilon 0.01 --temperature 0.01 --termination-lr 0.25`` gives the
authors' tabular-code settings, with which ``beta`` only rises and the map stays flat.

Measured with the command above (seed 0, one core, about 13 minutes):

- defaults: mean steps to goal 402 (episodes 1-10), 31 (901-1000), 329 just after the goal
  moves, 36 (1901-2000); running option's termination probability on arrival, doorway cells /
  room interiors: 0.39 / 0.28 before the move, 0.40 / 0.21 after;
- authors' tabular-code settings: 416, 25, 296, 34 steps; 0.56 / 0.54 and 0.60 / 0.53, i.e.
  options of about two steps everywhere.
"""

from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import tyro

from functional_metarl import checks
from functional_metarl.runners import CHECKPOINT_FILE, OptionCriticConfig, OptionCriticTrainer

import _cli


@dataclass
class Args(OptionCriticConfig):
    """Tabular Option-Critic on Four Rooms. Every field of OptionCriticConfig is a flag (--num-runs,
    --iterations: episodes per learner, --switch-goal-at, --num-options, --xi, --epsilon, ...); the
    fields below are the example's."""

    threads: int = 1  # torch threads
    out: str = "runs/option_critic_fourrooms"  # plots, metrics.json, tensorboard/, checkpoint.pt
    resume: bool = False  # continue from OUT/checkpoint.pt when there is one

    @property
    def config(self) -> OptionCriticConfig:
        """The trainer's settings: the OptionCriticConfig fields of the command line."""
        return OptionCriticConfig(**{f.name: getattr(self, f.name) for f in fields(OptionCriticConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (OptionCriticConfig checks its fields as it is built); the
    example's own fields are checked too, before anything is built."""
    try:
        args = tyro.cli(Args, args=argv, description=__doc__)
        checks.positive_int(args.threads, "--threads")
        if args.switch_goal_at is None:
            raise ValueError("--switch-goal-at: this example compares before and after the goal moves, got None")
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "option_critic_fourrooms.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    config = args.config
    out = Path(args.out)
    trainer = OptionCriticTrainer(config, output_dir=out)
    if args.resume and (out / CHECKPOINT_FILE).is_file():
        trainer.load_checkpoint(out / CHECKPOINT_FILE)
    trainer.train()
    trainer.write_metrics(trainer.evaluate())
    steps = trainer.episode_steps.float()  # [runs, episodes]
    mean = steps.mean(0)

    def window(a: int, b: int) -> float:
        return float(mean[a:b].mean())

    k, n = config.switch_goal_at, config.iterations
    print(f"mean steps to goal over {config.num_runs} runs:")
    print(f"  episodes 1-10: {window(0, 10):.1f}   episodes {max(k - 99, 1)}-{k} (before the move): {window(max(k - 100, 0), k):.1f}")
    print(f"  episodes {k + 1}-{k + 10} (just after): {window(k, k + 10):.1f}   "
          f"episodes {max(n - 99, k + 1)}-{n} (end): {window(max(n - 100, k), n):.1f}")
    print(f"  goals (before -> after) per run: {trainer.goals.tolist()}")
    print("termination probability of the running option on arrival, doorway cells vs room interiors:")
    for phase, name in ((0, "before the goal moves"), (1, "after the goal moves")):
        st = trainer.doorway_termination_stats(phase)
        print(f"  {name}: doorway {st['doorway']:.3f}   interior {st['interior']:.3f}   ratio {st['ratio']:.2f}")

    fig, ax = plt.subplots(figsize=(8, 4))
    ep = torch.arange(1, config.iterations + 1)
    ax.plot(ep, mean, lw=0.6, alpha=0.5, label=f"mean over {config.num_runs} runs")
    smooth = torch.nn.functional.avg_pool1d(mean[None, None], 20, stride=1).squeeze()
    ax.plot(ep[19:], smooth, lw=1.5, label="moving average (20)")
    ax.axvline(k + 0.5, color="k", ls="--", lw=1, label="goal moves")
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps to goal")
    ax.set_title(f"Option-Critic, Four Rooms, {config.num_options} options")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "steps_to_goal.png", dpi=120)

    O = config.num_options
    beta = trainer.termination_map(run=0)  # [O, 13, 13]
    fig, axes = plt.subplots(2, max(O, 2), figsize=(3 * max(O, 2), 7.0), squeeze=False, layout="constrained")

    def draw(a, grid, title, goals):
        im = a.imshow(grid.numpy(), cmap="viridis", vmin=0, vmax=1)
        a.imshow(torch.where(trainer.env.walls.cpu(), 1.0, float("nan")).numpy(), cmap="gray_r", vmin=0, vmax=1)
        for g, marker in goals:
            r, c = trainer.env.coords[g].tolist()
            a.plot(c, r, marker, color="red", ms=9, mfc="none" if marker == "o" else "red")
        a.set_title(title, fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
        return im

    run0_goals = list(zip(trainer.goals[0].tolist(), ("*", "o")))
    for o in range(O):
        im = draw(axes[0, o], beta[o], f"run 0, option {o}: beta(s)", run0_goals)
    for phase, name in ((0, "before the goal moves"), (1, "after the goal moves")):
        st = trainer.doorway_termination_stats(phase)
        title = f"all runs, {name}:\nrunning option's beta on arrival\ndoorway {st['doorway']:.2f} / interior {st['interior']:.2f}"
        draw(axes[1, phase], trainer.arrival_termination_map(phase), title, [(trainer.goals[0, 0].item(), "*")] if phase == 0 else [])
    for a in axes[1, 2:]:
        a.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6)
    fig.suptitle("termination probability per cell (red star: first goal; circle: run 0's second goal)")
    fig.savefig(out / "terminations.png", dpi=120)
    print(f"wrote {out / 'steps_to_goal.png'} and {out / 'terminations.png'}")


if __name__ == "__main__":
    main()
