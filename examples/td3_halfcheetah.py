"""TD3 (or DDPG) on MuJoCo HalfCheetah-v5 with the TD3 paper's settings.

    pip install "gymnasium[mujoco]"                         # MuJoCo wheels from PyPI
    python examples/td3_halfcheetah.py                      # 1,000,000 env steps (hours on CPU)
    python examples/td3_halfcheetah.py --algo ddpg --iterations 200000 --output runs/ddpg_cheetah
    python examples/td3_halfcheetah.py --resume             # continue from --output/checkpoint.pt
    python examples/td3_halfcheetah.py --help               # every DDPGConfig field is a flag

Settings (Fujimoto et al. 2018, sec. 6.1): 400-300 ReLU actor and twin critics, Adam 1e-3,
batch 100, gamma 0.99, tau 0.005, 10,000 warm-up steps of uniform random actions, Gaussian
exploration N(0, 0.1), target smoothing N(0, 0.2) clipped at 0.5, actor and targets updated
every 2nd critic update, 1M-step buffer. One difference from the authors' code: the target
bootstraps through HalfCheetah's 1000-step time limit (it is a truncation, not a terminal state);
see ``functional_metarl.rl.actor_critic``.

The TD3 paper reports 9636.95 +- 859.07 (max evaluation return over 1M steps, HalfCheetah-v1).
"""

import json
import os
import sys
import time
from dataclasses import dataclass, fields
from functools import partial
from typing import Literal

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import tyro  # noqa: E402

from functional_metarl import checks  # noqa: E402
from functional_metarl.runners import CHECKPOINT_FILE, DDPGConfig, DDPGTrainer, resolve_device  # noqa: E402

import _cli  # noqa: E402

ENV_ID = "HalfCheetah-v5"
#: The example's defaults where they are not DDPGConfig's (which are the TD3 paper's).
DEFAULTS = dict(env_id=ENV_ID, checkpoint_every=50_000)


@dataclass
class Args(DDPGConfig):
    """TD3 (or DDPG) on HalfCheetah. Every field of DDPGConfig is a flag (--algo ddpg|td3,
    --iterations: env steps, --start-steps, ...); the fields below are the example's."""

    algo: Literal["ddpg", "td3"] = "td3"
    output: str | None = None  # default runs/<algo>_halfcheetah
    resume: bool = False  # continue from OUTPUT/checkpoint.pt when there is one
    threads: int = 1  # torch threads
    eval_episodes: int = 10  # deterministic evaluation episodes at the end (0: none)
    no_progress: bool = False

    @property
    def config(self) -> DDPGConfig:
        """The trainer's settings: the DDPGConfig fields of the command line."""
        return DDPGConfig(**{f.name: getattr(self, f.name) for f in fields(DDPGConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (DDPGConfig checks its fields as it is built); the
    example's own fields are checked too, before anything is built."""
    default = Args(**DEFAULTS)
    try:
        args = tyro.cli(Args, args=argv, default=default, description=__doc__)
        checks.positive_int(args.threads, "--threads")
        checks.int_in_range(args.eval_episodes, "--eval-episodes", low=0)
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "td3_halfcheetah.py")  # a bad command line: stderr, exit status 2


def make_env(env_id: str = ENV_ID):
    """``gymnasium.make(env_id)`` (HalfCheetah-v5), or a clear error if MuJoCo is not installed."""
    import gymnasium as gym

    try:
        import mujoco  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"{env_id} needs MuJoCo, which is not installed ({exc}). Install it with:\n"
            '    pip install "gymnasium[mujoco]"'
        ) from exc
    return gym.make(env_id)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    output = args.output or f"runs/{args.algo}_halfcheetah"

    config = args.config
    env = make_env(config.env_id)
    trainer = DDPGTrainer(config, output_dir=output, env=env)
    ckpt = os.path.join(output, CHECKPOINT_FILE)
    if args.resume and os.path.isfile(ckpt):
        trainer.load_checkpoint(ckpt)
        print(f"resumed from {ckpt} at step {trainer.steps}")
    start_steps, start_updates, t0 = trainer.steps, trainer.critic_updates, time.perf_counter()
    trainer.train(progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    summary = {
        "algo": config.algo,
        "env": config.env_id,
        "steps": trainer.steps,
        "last10_train_return": trainer.mean_return(10),
        "eval_return_deterministic": trainer.evaluate(args.eval_episodes)["return"] if args.eval_episodes > 0 else None,
        "env_steps_per_s": (trainer.steps - start_steps) / seconds,
        "updates_per_s": (trainer.critic_updates - start_updates) / seconds,
    }
    trainer.write_metrics(summary)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
