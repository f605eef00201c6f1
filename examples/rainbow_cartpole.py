"""Rainbow on CartPole-v1: all six components on, each switchable from the command line.

    python examples/rainbow_cartpole.py --iterations 30000 --out runs/rainbow_cartpole
    python examples/rainbow_cartpole.py --no-noisy --no-distributional   # an ablation

Reports the mean return of the last 100 training episodes (the acting policy, noise on) and
100-episode evaluations of the final policy, greedy with the mean network (noise off) and with
fresh noise per step. (A 100-episode training mean >= 475 needs >= 47,500 steps of those
episodes alone, so the 30k-step target is read off the 100-episode evaluation.) ``--resume`` continues from the checkpoint in
``--out``.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30_000, help="env steps (one env)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=str, default=None, help="checkpoint / TensorBoard / metrics.json folder")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=5_000, help="greedy 10-episode evaluation every N steps (0: off)")
    parser.add_argument("--final-eval-episodes", type=int, default=100)
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--threads", type=int, default=1)
    for flag in ("double", "prioritized", "dueling", "distributional", "noisy"):
        parser.add_argument(f"--no-{flag}", action="store_true", help=f"ablate {flag}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = RainbowConfig(
        iterations=args.iterations,
        seed=args.seed,
        n_step=args.n_step,
        lr=args.lr,
        device=args.device,
        eval_every=args.eval_every,
        **{flag: not getattr(args, f"no_{flag}") for flag in ("double", "prioritized", "dueling", "distributional", "noisy")},
    )
    trainer = RainbowTrainer(config, output_dir=args.out)
    if args.resume and args.out and os.path.isfile(os.path.join(args.out, CHECKPOINT_FILE)):
        trainer.load_checkpoint(os.path.join(args.out, CHECKPOINT_FILE))
        print(f"resumed at step {trainer.step}")
    trainer.train()
    summary = trainer.summary()
    n = args.final_eval_episodes
    evaluation = {
        f"greedy_mean_net_return_{n}": trainer.evaluate(n)["return"],  # noise off: the mean network
        f"noisy_net_return_{n}": trainer.evaluate(n, noisy=True)["return"],  # acting as in training (noise on)
    }
    trainer.write_metrics(evaluation)
    trainer.close()
    print(json.dumps({**summary, **evaluation}, indent=1))


if __name__ == "__main__":
    main()
