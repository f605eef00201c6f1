"""TD3 (or DDPG) on MuJoCo HalfCheetah-v5 with the TD3 paper's settings.

    pip install "gymnasium[mujoco]"                         # MuJoCo wheels from PyPI
    python examples/td3_halfcheetah.py                      # 1,000,000 env steps (hours on CPU)
    python examples/td3_halfcheetah.py --algo ddpg --iterations 200000 --output runs/ddpg_cheetah
    python examples/td3_halfcheetah.py --resume             # continue from --output/checkpoint.pt

Settings (Fujimoto et al. 2018, sec. 6.1): 400-300 ReLU actor and twin critics, Adam 1e-3,
batch 100, gamma 0.99, tau 0.005, 10,000 warm-up steps of uniform random actions, Gaussian
exploration N(0, 0.1), target smoothing N(0, 0.2) clipped at 0.5, actor and targets updated
every 2nd critic update, 1M-step buffer. One difference from the authors' code: the target
bootstraps through HalfCheetah's 1000-step time limit (it is a truncation, not a terminal state);
see ``functional_metarl.rl.actor_critic``.

The TD3 paper reports 9636.95 +- 859.07 (max evaluation return over 1M steps, HalfCheetah-v1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from functional_metarl.runners import CHECKPOINT_FILE, DDPGConfig, DDPGTrainer  # noqa: E402

ENV_ID = "HalfCheetah-v5"


def make_env():
    """``gymnasium.make(HalfCheetah-v5)``, or a clear error if MuJoCo is not installed."""
    import gymnasium as gym

    try:
        import mujoco  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"{ENV_ID} needs MuJoCo, which is not installed ({exc}). Install it with:\n"
            '    pip install "gymnasium[mujoco]"'
        ) from exc
    return gym.make(ENV_ID)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=("ddpg", "td3"), default="td3")
    p.add_argument("--iterations", type=int, default=1_000_000, help="env steps")
    p.add_argument("--start-steps", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None, help="default runs/<algo>_halfcheetah")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=50_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    output = args.output or f"runs/{args.algo}_halfcheetah"

    env = make_env()
    config = DDPGConfig(algo=args.algo, env_id=ENV_ID, iterations=args.iterations, start_steps=args.start_steps,
                        seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every)
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
        "env": ENV_ID,
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
