"""Deep Option-Critic on CartPole-v1: softmax intra-option policies (Bacon, Harb & Precup 2017).

Trains ``--num-options`` options for ``--iterations`` rounds (one episode of each of the
``--num-envs`` CartPole envs per round), then
evaluates greedily (greedy over options, argmax actions). Writes to ``--out``:

- ``returns.png``: training episode returns (with the moving average) and option durations;
- ``metrics.json``, ``tensorboard/`` and ``checkpoint.pt`` (rerun with ``--resume`` to continue,
  e.g. with a larger ``--iterations``).

    python examples/option_critic_cartpole.py  # 250 rounds of 8 episodes, a few minutes on one core
    python examples/option_critic_cartpole.py --help   # every DeepOptionCriticConfig field is a flag

See ``functional_metarl.runners.deep_option_critic`` for the algorithm and the settings that
come from the paper vs. our choices.
"""

from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import tyro

from functional_metarl import checks
from functional_metarl.runners import CHECKPOINT_FILE, DeepOptionCriticConfig, DeepOptionCriticTrainer, resolve_device

import _cli


@dataclass
class Args(DeepOptionCriticConfig):
    """Deep Option-Critic on CartPole-v1. Every field of DeepOptionCriticConfig is a flag
    (--iterations: rounds of --num-envs episodes, --num-options, --xi, --entropy-coef,
    --termination-value, ...); the fields below are the example's."""

    eval_episodes: int = 20  # greedy evaluation episodes at the end
    threads: int = 1  # torch threads
    out: str = "runs/option_critic_cartpole"  # returns.png, metrics.json, tensorboard/, checkpoint.pt
    resume: bool = False  # continue from OUT/checkpoint.pt when there is one

    @property
    def config(self) -> DeepOptionCriticConfig:
        """The trainer's settings: the DeepOptionCriticConfig fields of the command line."""
        return DeepOptionCriticConfig(**{f.name: getattr(self, f.name) for f in fields(DeepOptionCriticConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (DeepOptionCriticConfig checks its fields as it is built);
    the example's own fields are checked too, before anything is built."""
    try:
        args = tyro.cli(Args, args=argv, description=__doc__)
        checks.positive_int(args.eval_episodes, "--eval-episodes")
        checks.positive_int(args.threads, "--threads")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "option_critic_cartpole.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    config = args.config
    out = Path(args.out)
    trainer = DeepOptionCriticTrainer(config, output_dir=out)
    if args.resume and (out / CHECKPOINT_FILE).is_file():
        trainer.load_checkpoint(out / CHECKPOINT_FILE)
    trainer.train()
    result = trainer.evaluate(args.eval_episodes)
    trainer.write_metrics(result)
    trainer.close()
    episodes = trainer.episodes

    steps = np.array([e["step"] for e in episodes])
    returns = np.array([e["return"] for e in episodes])
    durations = np.array([e["option_duration"] for e in episodes])
    print(f"{len(episodes)} training episodes, {trainer.steps} env steps")
    print(f"  mean training return, last 20 episodes: {returns[-20:].mean():.1f} (random policy: about 22)")
    print(f"  greedy evaluation over {args.eval_episodes} episodes: return {result['return']:.1f}, "
          f"mean option duration {result['option_duration']:.1f} steps")

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax.plot(steps, returns, ".", ms=2, alpha=0.4, label="episode return")
    k = min(20, len(returns))
    ax.plot(steps[k - 1:], np.convolve(returns, np.ones(k) / k, mode="valid"), lw=1.5, label=f"moving average ({k})")
    ax.axhline(result["return"], color="k", ls="--", lw=1, label=f"greedy eval: {result['return']:.0f}")
    ax.set_ylabel("return")
    ax.set_title(f"Option-Critic, {config.env_id}, {config.num_options} options")
    ax.legend()
    ax2.plot(steps, durations, ".", ms=2, alpha=0.4)
    ax2.plot(steps[k - 1:], np.convolve(durations, np.ones(k) / k, mode="valid"), lw=1.5)
    ax2.set_xlabel("env steps")
    ax2.set_ylabel("mean option duration (steps)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "returns.png", dpi=120)
    print(f"wrote {out / 'returns.png'}")


if __name__ == "__main__":
    main()
