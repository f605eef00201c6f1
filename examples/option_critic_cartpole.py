"""Deep Option-Critic on CartPole-v1: softmax intra-option policies (Bacon, Harb & Precup 2017).

Trains ``--options`` options for ``--iterations`` rounds (one episode of each of the ``--envs``
CartPole envs per round), then
evaluates greedily (greedy over options, argmax actions). Writes to ``--out``:

- ``returns.png``: training episode returns (with the moving average) and option durations;
- ``metrics.json``, ``tensorboard/`` and ``checkpoint.pt`` (rerun with ``--resume`` to continue,
  e.g. with a larger ``--iterations``).

    python examples/option_critic_cartpole.py  # 250 rounds of 8 episodes, a few minutes on one core

See ``functional_metarl.runners.deep_option_critic`` for the algorithm and the settings that
come from the paper vs. our choices.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from functional_metarl.runners import CHECKPOINT_FILE, DeepOptionCriticConfig, DeepOptionCriticTrainer


def main() -> None:
    d = DeepOptionCriticConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=d.iterations, help="rounds of --envs episodes")
    parser.add_argument("--envs", type=int, default=d.num_envs)
    parser.add_argument("--options", type=int, default=d.num_options)
    parser.add_argument("--xi", type=float, default=d.xi)
    parser.add_argument("--entropy-coef", type=float, default=d.entropy_coef)
    parser.add_argument("--termination-value", choices=("epsilon_greedy", "greedy"), default=d.termination_value)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/option_critic_cartpole")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = DeepOptionCriticConfig(env_id="CartPole-v1", iterations=args.iterations, num_envs=args.envs,
                                    num_options=args.options, xi=args.xi, entropy_coef=args.entropy_coef,
                                    termination_value=args.termination_value, seed=args.seed, device=args.device)
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
    ax.set_title(f"Option-Critic, CartPole-v1, {args.options} options")
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
