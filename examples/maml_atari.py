"""MAML-A2C on Atari flavours (modes x difficulties of one game) or on several games (issue 25).

    python examples/maml_atari.py                                   # Space Invaders flavours, 20 meta-iterations
    python examples/maml_atari.py --tasks games --held-out-games pong
    python examples/maml_atari.py --game freeway --held-out-modes 1 4 --first-order
    python examples/maml_atari.py --long --output runs/maml_atari   # 2000 meta-iterations
    python examples/maml_atari.py --output runs/maml_atari --resume # continue from the checkpoint

A Nature-CNN actor-critic (shared conv torso, actor and critic heads) is meta-trained with
MAML-A2C: per task, ``--inner-steps`` A2C steps (SGD ``--inner-lr``) on n-step batches of
``--envs-per-task`` envs, then the outer A2C (or ``--outer ppo``) loss of the adapted params on a
post-update batch, Adam with gradient-norm clipping 0.5 (``runners.MAMLAtariTrainer``; the pure
parts are ``meta.maml_a2c`` and ``nn.nature_cnn_actor_critic``). Atari protocol:
gymnasium's ``AtariPreprocessing`` (frame skip 4, 84x84 grayscale, no-op starts, no life-loss
terminals), 4 stacked frames, sticky actions 0.25, rewards clipped to their sign in the loss.

Then it evaluates on held-out flavours (or games): the mean raw reward per env step after
k = 0, 1, 2, 3 inner steps, of the meta-params and of a randomly initialised net adapted the
same way. Writes metrics.json, checkpoint.pt, TensorBoard events, training.png and
adaptation.png into --output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tyro  # noqa: E402

from functional_metarl.runners import (  # noqa: E402
    CHECKPOINT_FILE,
    MAMLAtariConfig,
    MAMLAtariTrainer,
    keep_freed_cpu_memory,
    resolve_device,
)

import _cli  # noqa: E402

SHORT, LONG = 20, 2000


@dataclass
class Args(MAMLAtariConfig):
    """MAML-A2C on Atari. Every field of MAMLAtariConfig is a flag; the fields below are the run's
    length, evaluation and output settings."""

    iterations: int = SHORT  # meta-iterations (a short run; --long for 2000)
    long: bool = False  # a long run: 2000 meta-iterations
    eval_inner_steps: int = 3  # evaluate after k = 0..this many inner steps
    output: str = "runs/maml_atari"  # directory for metrics, checkpoint, plots
    resume: bool = False  # continue from OUTPUT/checkpoint.pt
    no_progress: bool = False

    @property
    def config(self) -> MAMLAtariConfig:
        """The trainer's settings: the MAMLAtariConfig fields of the command line."""
        values = {f.name: getattr(self, f.name) for f in fields(MAMLAtariConfig)}
        if self.long and self.iterations == SHORT:
            values["iterations"] = LONG
        return MAMLAtariConfig(**values)


usage_error = partial(_cli.usage_error, "maml_atari.py")  # a bad command line: stderr, exit status 2


def plot_training(history: list[dict], path: Path) -> None:
    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [m["reward_pre"] for m in history], label="before adaptation")
    ax.plot(its, [m["reward_post"] for m in history], label="after the inner steps")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean raw reward per env step")
    ax.set_title("MAML-A2C on training tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_adaptation(rows: dict[str, dict[str, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in rows.items():
        ks = sorted(int(k.removeprefix("reward_k")) for k in row)
        ax.plot(ks, [row[f"reward_k{k}"] for k in ks], marker="o", label=name)
    ax.set_xlabel("inner A2C steps on the held-out task")
    ax.set_ylabel("mean raw reward per env step")
    ax.set_title("adaptation to held-out tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    try:
        args = tyro.cli(Args, description=__doc__)
        config = args.config
        resolve_device(config.device)
        if args.eval_inner_steps < 1:
            raise ValueError(f"--eval-inner-steps must be >= 1, got {args.eval_inner_steps}")
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    output = Path(args.output)
    if args.resume and not (output / CHECKPOINT_FILE).is_file():
        usage_error(f"--resume: no checkpoint at {output / CHECKPOINT_FILE}")
    keep_freed_cpu_memory()
    try:
        trainer = MAMLAtariTrainer(config, output_dir=output)
    except ValueError as error:  # a game, mode or difficulty the ROMs do not have: the valid ones are named
        usage_error(str(error))
    with trainer:
        if args.resume:
            try:
                trainer.load_checkpoint(output / CHECKPOINT_FILE)
            except ValueError as error:
                usage_error(str(error))
            print(f"resumed from {output / CHECKPOINT_FILE} at meta-iteration {trainer.iteration}")
        print(f"MAML-A2C on {len(trainer.train_tasks)} training tasks ({config.tasks}), held out: "
              f"{[tuple(t) for t in trainer.held_out_tasks]}; {config.iterations} meta-iterations on "
              f"{trainer.device} -> {output}")
        history = trainer.train(progress=not args.no_progress)
        steps = args.eval_inner_steps
        rows = {"MAML meta-params": trainer.evaluate(steps=steps),
                "random init": trainer.evaluate(steps=steps, params=trainer.net.init(config.seed + 1,
                                                                                     device=trainer.device))}
        trainer.write_metrics(evaluation=rows)
        plot_training(history, output / "training.png")
        plot_adaptation(rows, output / "adaptation.png")
        frames = trainer.sampler.steps_taken * 4
    print(f"\nheld-out tasks: mean raw reward per env step after k inner steps ({config.eval_tasks} tasks x "
          f"{config.envs_per_task} envs x {config.eval_steps} steps per k)")
    print(f"{'k':>3} | " + " | ".join(f"{name:>16}" for name in rows))
    for k in range(steps + 1):
        print(f"{k:>3} | " + " | ".join(f"{row[f'reward_k{k}']:16.4f}" for row in rows.values()))
    timed = [m for m in history if "seconds" in m]
    if timed:
        seconds = sum(m["seconds"] for m in timed)
        print(f"meta-training loop: {seconds / len(timed):.2f} s per meta-iteration, "
              f"{sum(m['frames_per_s'] for m in timed) / len(timed):.0f} emulator frames/s (sampling + meta-step)")
    print(f"training frames this session: {frames} (4 per env step); resume with: "
          f"python examples/maml_atari.py --output {output} --resume --iterations N")
    print(json.dumps({"eval": rows}))


if __name__ == "__main__":
    main()
