"""DDPG or TD3 on Pendulum-v1, with the library's pure losses and the DDPGTrainer runner.

    python examples/ddpg_pendulum.py --algo ddpg                  # 20,000 env steps
    python examples/ddpg_pendulum.py --algo td3 --output runs/td3_pendulum
    python examples/ddpg_pendulum.py --algo ddpg --lillicrap       # the original DDPG settings
    python examples/ddpg_pendulum.py --algo td3 --resume           # continue from --output/checkpoint.pt
    python examples/ddpg_pendulum.py --help    # every DDPGConfig field is a flag (--tau, --actor-lr, --hidden, ...)
    python examples/ddpg_pendulum.py --algo td3 --compile          # the update under torch.compile
    python examples/ddpg_pendulum.py --algo td3 --num-envs 4 --iterations 5000   # 4 envs, 20,000 env steps
    # CleanRL's settings (ddpg/td3_continuous_action.py), learning starts cut to 5,000:
    python examples/ddpg_pendulum.py --algo ddpg --hidden 256 256 --batch-size 256 --start-steps 5000 \
        --learning-starts 5000 --policy-delay 2 --tau 0.005 --exploration-sigma 0.1 --actor-lr 3e-4 \
        --critic-lr 3e-4 --gamma 0.99 --buffer-size 1000000 --final-init None

Speed settings (issue 27): ``--compile`` runs the whole update under ``torch.compile`` (eager,
the default, is the reference; the first updates compile, tens of seconds on a CPU, and are
counted in the printed env_steps_per_s); ``--num-envs N`` steps N envs per iteration (so
``--iterations`` counts N env steps each) with one update per env step unless
``--updates-per-iteration`` says otherwise; ``--policy-delay`` applies to DDPG too when given.

Settings: the TD3 paper's (400-300 ReLU nets, Adam 1e-3, batch 100, tau 0.005, Gaussian
exploration 0.1 x action half-range, TD3 smoothing 0.2 clipped at 0.5, policy delay 2) with the
Pendulum-specific choices of the RL Baselines3 Zoo (gamma 0.98, 200k buffer); warm-up of
--start-steps uniform random actions (default 5,000; the zoo uses 10,000). ``--lillicrap`` makes
Lillicrap et al.'s values (``DDPGConfig.lillicrap``) the defaults of the flags not given.

Reference: the SB3 zoo reports -152 +- 94 for TD3/DDPG on Pendulum at 20k steps; our bar is
the mean return of the last 10 training episodes >= -170 (``metrics.json`` records "target_met").
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

TARGET = -170.0
#: The example's defaults where they are not DDPGConfig's (Pendulum: the RL Baselines3 Zoo's choices),
#: and those that --lillicrap replaces by Lillicrap et al.'s.
DEFAULTS = dict(env_id="Pendulum-v1", iterations=20_000, gamma=0.98, buffer_size=200_000, checkpoint_every=5_000)
NOT_LILLICRAP = dict(start_steps=5_000, batch_size=100)


@dataclass
class Args(DDPGConfig):
    """DDPG or TD3 on Pendulum-v1. Every field of DDPGConfig is a flag (--algo ddpg|td3,
    --iterations: iterations of num_envs env steps each, --start-steps, --batch-size, --gamma,
    --compile, --num-envs, ...); the fields below are the example's."""

    algo: Literal["ddpg", "td3"] = "td3"
    lillicrap: bool = False  # original DDPG settings (Lillicrap et al. 2015) for the flags not given
    output: str | None = None  # default runs/<algo>_pendulum
    resume: bool = False  # continue from OUTPUT/checkpoint.pt when there is one
    threads: int = 1  # torch threads
    eval_episodes: int = 10  # deterministic evaluation episodes at the end

    @property
    def config(self) -> DDPGConfig:
        """The trainer's settings: the DDPGConfig fields of the command line."""
        return DDPGConfig(**{f.name: getattr(self, f.name) for f in fields(DDPGConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (DDPGConfig checks its fields as it is built), with the
    example's defaults or, with ``--lillicrap``, Lillicrap et al.'s; the example's own fields are
    checked too, before anything is built."""
    argv = sys.argv[1:] if argv is None else list(argv)
    presets = [a for a in argv if a in ("--lillicrap", "--no-lillicrap")]
    lillicrap = bool(presets) and presets[-1] == "--lillicrap"
    preset = DDPGConfig.lillicrap(**DEFAULTS) if lillicrap else DDPGConfig(**DEFAULTS, **NOT_LILLICRAP)
    default = Args(**{f.name: getattr(preset, f.name) for f in fields(DDPGConfig)}, lillicrap=lillicrap)
    try:
        args = tyro.cli(Args, args=argv, default=default, description=__doc__)
        checks.positive_int(args.threads, "--threads")
        checks.positive_int(args.eval_episodes, "--eval-episodes")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "ddpg_pendulum.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    output = args.output or f"runs/{args.algo}_pendulum"
    config = args.config
    trainer = DDPGTrainer(config, output_dir=output)
    ckpt = os.path.join(output, CHECKPOINT_FILE)
    if args.resume and os.path.isfile(ckpt):
        trainer.load_checkpoint(ckpt)
        print(f"resumed from {ckpt} at step {trainer.steps}")
    start_steps, start_updates, t0 = trainer.steps, trainer.critic_updates, time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    last10 = trainer.mean_return(10)
    evaluation = trainer.evaluate(args.eval_episodes)["return"]
    summary = {
        "algo": config.algo,
        "compile": config.compile,
        "num_envs": config.num_envs,
        "env_steps": trainer.steps,
        "last10_train_return": last10,
        "eval_return_deterministic": evaluation,
        "target": TARGET,
        "target_met": last10 >= TARGET,
        "env_steps_per_s": (trainer.steps - start_steps) / seconds,
        "updates_per_s": (trainer.critic_updates - start_updates) / seconds,
        "seconds": seconds,
    }
    trainer.write_metrics(summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
