"""Deep Option-Critic with Gaussian intra-option policies on Meta-World pick-place (MT1).

Continuous control: each option has its own state-dependent Gaussian mean and a learned log-std;
the critic, terminations and policy over options are as in the CartPole example. The env is
``gymnasium.make("Meta-World/MT1", env_name="pick-place-v3", seed=...)`` (needs ``metaworld``,
``pip install -e ".[metaworld]"``); each reset samples one of the 50 training variations (object
and goal positions), episodes are truncated at 500 steps and ``info["success"]`` is logged.

Pick-place is a hard task: off-policy learners are usually reported to need on the order of a
million steps for it, far more than a CPU run of minutes. The point of the example is the
continuous option machinery, not a solved task. Writes ``returns.png``, ``metrics.json``,
``tensorboard/`` and ``checkpoint.pt`` (``--resume`` continues exactly) to ``--out``.

    python examples/option_critic_pickplace.py --iterations 50   # 50 rounds of 4 x 500 steps = 100k steps
    python examples/option_critic_pickplace.py --help   # every DeepOptionCriticConfig field is a flag

Every field of ``DeepOptionCriticConfig`` is a flag (``--num-envs``, ``--num-options``, ``--hidden``,
``--xi``, ...); ``--lr`` sets the critic's, policies' and terminations' step sizes at once
(``--critic-lr`` ... set one), and ``--epsilon-decay-steps`` defaults to a quarter of the run's steps.

Measured (seed 0, one core, metaworld 3.1.1 / mujoco 3.3.0): pick-place, 100k steps in about
4.5 minutes: return per 500-step episode 2.6 (first 10 episodes) -> 1.9 (last 10), greedy
evaluation 1.6, success 0 throughout, i.e. no learning yet. The same settings on the easier
``--env-name reach-v3`` for 60k steps: return 291 -> 1336, greedy evaluation 1492, success 0.
"""

import sys
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
import tyro

from functional_metarl import checks
from functional_metarl.runners import CHECKPOINT_FILE, DeepOptionCriticConfig, DeepOptionCriticTrainer, resolve_device

import _cli

EPISODE_STEPS = 500  # Meta-World's episodes are truncated there
#: The example's defaults where they are not DeepOptionCriticConfig's.
DEFAULTS = dict(env_id="Meta-World/MT1", iterations=50, num_envs=4, num_options=4, hidden=(128, 128), activation="tanh",
                init_log_std=-0.5, xi=0.01, entropy_coef=1e-3, reward_scale=0.1, critic_lr=3e-4, policy_lr=3e-4,
                termination_lr=3e-4, learning_starts=2_000, target_update_every=2_000)


class SeedTaskChoice(gym.Wrapper):
    """Meta-World's envs ignore ``reset(seed=...)`` (they are seeded by ``env.seed``), so the task
    variation and start state would depend on the env's history. This wrapper seeds first, then
    resets: each episode then follows from its seed alone, which the trainer's exact resume
    relies on."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(seed)
        return self.env.reset(options=options)


def make_env(config: DeepOptionCriticConfig) -> gym.Env:
    """``gymnasium.make(config.env_id, **config.env_kwargs)`` with the task choice seeded."""
    import metaworld  # noqa: F401  (registers the Meta-World/ envs)

    return SeedTaskChoice(gym.make(config.env_id, **config.env_kwargs))


@dataclass
class Args(DeepOptionCriticConfig):
    """Deep Option-Critic with Gaussian options on Meta-World MT1. Every field of
    DeepOptionCriticConfig is a flag (--iterations: rounds of one 500-step episode of each of
    --num-envs envs, --num-options, --hidden, --xi, ...); the fields below are the example's."""

    env_name: str = "pick-place-v3"  # the MT1 task (env_kwargs env_name; its seed is --seed)
    lr: float | None = None  # Adam step size of the critic, policies and terminations (default 3e-4 each)
    eval_episodes: int = 5  # greedy evaluation episodes at the end
    threads: int = 1  # torch threads
    out: str = "runs/option_critic_pickplace"  # returns.png, metrics.json, tensorboard/, checkpoint.pt
    resume: bool = False  # continue from OUT/checkpoint.pt when there is one

    @property
    def config(self) -> DeepOptionCriticConfig:
        """The trainer's settings: the DeepOptionCriticConfig fields of the command line, the task
        and its seed in ``env_kwargs``."""
        values = {f.name: getattr(self, f.name) for f in fields(DeepOptionCriticConfig)}
        values["env_kwargs"] = {"env_name": self.env_name, "seed": self.seed, **self.env_kwargs}
        return DeepOptionCriticConfig(**values)


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (DeepOptionCriticConfig checks its fields as it is built);
    the example's own fields are checked too, before anything is built. Parsed twice: the defaults
    that follow other flags (``--epsilon-decay-steps`` a quarter of the run's steps, the three step
    sizes ``--lr``) are set from the first parse, and flags given win over them."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        default = _derived_defaults(Args(**DEFAULTS))
        args = _derived_defaults(tyro.cli(Args, args=argv, default=default, description=__doc__))
        args = tyro.cli(Args, args=argv, default=args, description=__doc__)
        checks.positive_int(args.eval_episodes, "--eval-episodes")
        checks.positive_int(args.threads, "--threads")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


def _derived_defaults(args: Args) -> Args:
    lrs = {} if args.lr is None else dict(critic_lr=args.lr, policy_lr=args.lr, termination_lr=args.lr)
    return replace(args, epsilon_decay_steps=max(args.iterations * args.num_envs * EPISODE_STEPS // 4, 1), **lrs)


usage_error = partial(_cli.usage_error, "option_critic_pickplace.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    config = args.config
    out = Path(args.out)
    trainer = DeepOptionCriticTrainer(config, output_dir=out, env_fn=lambda i: make_env(config))
    if args.resume and (out / CHECKPOINT_FILE).is_file():
        trainer.load_checkpoint(out / CHECKPOINT_FILE)
    trainer.train()
    result = trainer.evaluate(args.eval_episodes)
    trainer.write_metrics(result)
    trainer.close()
    episodes = trainer.episodes

    steps = np.array([e["step"] for e in episodes])
    returns = np.array([e["return"] for e in episodes])
    success = np.array([e.get("success", 0.0) for e in episodes])
    k = min(10, len(returns))
    print(f"{len(episodes)} training episodes, {trainer.steps} env steps")
    print(f"  first {k} episodes: return {returns[:k].mean():.1f}, success {success[:k].mean():.2f}")
    print(f"  last {k} episodes:  return {returns[-k:].mean():.1f}, success {success[-k:].mean():.2f}")
    print(f"  greedy evaluation over {args.eval_episodes} episodes: return {result['return']:.1f}, "
          f"success {result.get('success', float('nan')):.2f}, option duration {result['option_duration']:.1f}")

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax.plot(steps, returns, ".", ms=3, alpha=0.5, label="episode return")
    if len(returns) >= k:
        ax.plot(steps[k - 1:], np.convolve(returns, np.ones(k) / k, mode="valid"), lw=1.5, label=f"moving average ({k})")
    ax.set_ylabel("return (500 steps)")
    ax.set_title(f"Option-Critic, Meta-World {args.env_name}, {config.num_options} Gaussian options")
    ax.legend()
    ax2.plot(steps, success, ".", ms=3)
    ax2.set_ylabel("success (any step)")
    ax2.set_xlabel("env steps")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "returns.png", dpi=120)
    print(f"wrote {out / 'returns.png'}")


if __name__ == "__main__":
    main()
