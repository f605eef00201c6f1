"""Rainbow on an Atari game (ALE via ale-py), with Data-efficient Rainbow settings by default.

    pip install ale-py            # ROMs ship with ale-py >= 0.9
    python examples/rainbow_atari.py --game Pong --iterations 100000 --out runs/rainbow_pong
    python examples/rainbow_atari.py --help   # every RainbowConfig field is a flag (--n-step, --lr, --no-noisy, ...)

Defaults follow van Hasselt et al. (2019), "When to use parametric models in reinforcement
learning?" (Data-efficient Rainbow): 100k agent steps (400k frames), n = 20, one update per
step, target copy every 2,000 updates, lr 1e-4, Adam eps 1.5e-4, 1,600 warm-up steps,
noisy sigma0 = 0.1, the small conv torso with 256-unit streams. ``--paper`` switches to the
Rainbow paper's net and learning values (Nature CNN, n = 3, lr 6.25e-5, sigma0 = 0.5,
target every 32k frames = 8k steps, 80k-frame warm-up = 20k steps), which need far more steps
than a CPU run allows.

Preprocessing as in the paper: gymnasium's ``AtariPreprocessing`` (no-op starts up to 30,
frame skip 4 with max-pooling, 84x84 grayscale), ``FrameStackObservation(4)``, rewards clipped
to [-1, 1] for learning (the logged episode returns are therefore *clipped* returns), no
sticky actions, episodes capped at 108k frames.

Memory: the runner stores each 84x84 frame once (``runners.replay.FrameStackReplay``; stacks
rebuilt at sampling, the same batches as a buffer of stacks), about 7.2 KB per transition instead
of 56 KB, so the default ``--buffer-size`` of 30,000 holds ~0.2 GB and Data-efficient Rainbow's
100,000 ~0.7 GB (the paper's 1M: ~7 GB). ``--no-dedup-frames`` stores the stacks as they are.
"""

import json
import os
import sys
from dataclasses import dataclass, fields, replace
from functools import partial

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402

from functional_metarl import checks  # noqa: E402
from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer, resolve_device  # noqa: E402

import _cli  # noqa: E402

#: The example's defaults where they are not RainbowConfig's, then Data-efficient Rainbow's values
#: and the Rainbow paper's (``--paper``) for the settings that the command line leaves out.
DEFAULTS = dict(env_id="ALE/Pong-v5", iterations=100_000, buffer_size=30_000, gamma=0.99, v_min=-10.0, v_max=10.0,
                num_atoms=51, batch_size=32, adam_eps=1.5e-4, alpha=0.5, beta0=0.4, max_grad_norm=10.0,
                checkpoint_every=10_000, log_every=1_000, eps_end=0.01)
DATA_EFFICIENT = dict(network="data_efficient_cnn", n_step=20, lr=1e-4, sigma0=0.1, target_update=2_000,
                      learning_starts=1_600, train_every=1, eps_decay_steps=2_500)
PAPER = dict(network="nature_cnn", n_step=3, lr=6.25e-5, sigma0=0.5, target_update=8_000, learning_starts=20_000,
             train_every=4, eps_decay_steps=62_500)


@dataclass
class Args(RainbowConfig):
    """Rainbow on an Atari game. Every field of RainbowConfig is a flag (--iterations: agent steps,
    4 frames each; --buffer-size, --n-step, --no-noisy, ...; --eval-episodes: episodes of the
    final greedy evaluation too); the fields below are the example's."""

    game: str = "Pong"  # the ALE game (env id ALE/GAME-v5)
    paper: bool = False  # the Rainbow paper's values instead of Data-efficient Rainbow's, for the settings not given
    out: str | None = None  # checkpoint / TensorBoard / metrics.json folder
    resume: bool = False  # continue from OUT/checkpoint.pt when there is one
    threads: int = 1  # torch threads

    @property
    def config(self) -> RainbowConfig:
        """The trainer's settings: the RainbowConfig fields of the command line."""
        return RainbowConfig(**{f.name: getattr(self, f.name) for f in fields(RainbowConfig)})


def make_atari_env(game: str, max_frames: int = 108_000):
    import ale_py

    gym.register_envs(ale_py)

    def thunk():
        env = gym.make(
            f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False,
            max_num_frames_per_episode=max_frames,
        )
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
        env = gym.wrappers.FrameStackObservation(env, 4)
        return gym.wrappers.TransformReward(env, lambda r: float(np.clip(r, -1.0, 1.0)))

    def env_fn(config: RainbowConfig):
        return gym.vector.SyncVectorEnv(
            [thunk for _ in range(config.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )

    return env_fn


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (RainbowConfig checks its fields as it is built), its
    defaults Data-efficient Rainbow's or, with ``--paper``, the paper's; the example's own fields are
    checked too, before anything is built."""
    argv = sys.argv[1:] if argv is None else list(argv)
    presets = [a for a in argv if a in ("--paper", "--no-paper")]
    paper = bool(presets) and presets[-1] == "--paper"
    default = Args(**DEFAULTS, **(PAPER if paper else DATA_EFFICIENT), paper=paper)
    try:
        args = tyro.cli(Args, args=argv, default=default, description=__doc__)
        if args.env_id == default.env_id:  # --game names the env unless --env-id does
            args = replace(args, env_id=f"ALE/{args.game}-v5")
        elif args.env_id != f"ALE/{args.game}-v5":
            raise ValueError(f"--env-id {args.env_id} is not --game {args.game}'s ALE/{args.game}-v5; give --game")
        checks.positive_int(args.threads, "--threads")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "rainbow_atari.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    config = args.config
    trainer = RainbowTrainer(config, output_dir=args.out, env_fn=make_atari_env(args.game))
    if args.resume and args.out and os.path.isfile(os.path.join(args.out, CHECKPOINT_FILE)):
        trainer.load_checkpoint(os.path.join(args.out, CHECKPOINT_FILE))
        print(f"resumed at step {trainer.step}")
    trainer.train()
    evaluation = {"greedy_mean_net_clipped_return": trainer.evaluate(config.eval_episodes)["return"]}
    trainer.write_metrics(evaluation)
    trainer.close()
    print(json.dumps({**trainer.summary(), **evaluation}, indent=1))


if __name__ == "__main__":
    main()
