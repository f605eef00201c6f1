"""Rainbow on an Atari game (ALE via ale-py), with Data-efficient Rainbow settings by default.

    pip install ale-py            # ROMs ship with ale-py >= 0.9
    python examples/rainbow_atari.py --game Pong --iterations 100000 --out runs/rainbow_pong

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

Memory: the buffer stores ``obs`` and ``next_obs`` as full uint8 stacks (4x84x84 each, ~56 kB
per transition, no frame sharing), so ``--buffer`` defaults to 30,000 (~1.7 GB) instead of
the paper's 1M.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", type=str, default="Pong")
    parser.add_argument("--iterations", type=int, default=100_000, help="agent steps (4 frames each)")
    parser.add_argument("--buffer", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=str, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--paper", action="store_true", help="the Rainbow paper's values instead of Data-efficient Rainbow's")
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=10)
    for flag in ("double", "prioritized", "dueling", "distributional", "noisy"):
        parser.add_argument(f"--no-{flag}", action="store_true", help=f"ablate {flag}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    common = dict(
        env_id=f"ALE/{args.game}-v5", iterations=args.iterations, buffer_size=args.buffer, seed=args.seed, device=args.device,
        gamma=0.99, v_min=-10.0, v_max=10.0, num_atoms=51, batch_size=32, adam_eps=1.5e-4, alpha=0.5, beta0=0.4,
        max_grad_norm=10.0, checkpoint_every=10_000, log_every=1_000,
        **{flag: not getattr(args, f"no_{flag}") for flag in ("double", "prioritized", "dueling", "distributional", "noisy")},
    )
    if args.paper:
        config = RainbowConfig(network="nature_cnn", n_step=3, lr=6.25e-5, sigma0=0.5, target_update=8_000,
                               learning_starts=20_000, train_every=4, eps_decay_steps=62_500, eps_end=0.01, **common)
    else:
        config = RainbowConfig(network="data_efficient_cnn", n_step=20, lr=1e-4, sigma0=0.1, target_update=2_000,
                               learning_starts=1_600, train_every=1, eps_decay_steps=2_500, eps_end=0.01, **common)
    trainer = RainbowTrainer(config, output_dir=args.out, env_fn=make_atari_env(args.game))
    if args.resume and args.out and os.path.isfile(os.path.join(args.out, CHECKPOINT_FILE)):
        trainer.load_checkpoint(os.path.join(args.out, CHECKPOINT_FILE))
        print(f"resumed at step {trainer.step}")
    trainer.train()
    evaluation = {"greedy_mean_net_clipped_return": trainer.evaluate(args.eval_episodes)["return"]}
    trainer.write_metrics(evaluation)
    trainer.close()
    print(json.dumps({**trainer.summary(), **evaluation}, indent=1))


if __name__ == "__main__":
    main()
