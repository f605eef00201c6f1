"""Rainbow on CartPole-v1: all six components on, each switchable from the command line.

    python examples/rainbow_cartpole.py --iterations 30000 --out runs/rainbow_cartpole
    python examples/rainbow_cartpole.py --no-noisy --no-distributional   # an ablation
    python examples/rainbow_cartpole.py --help   # every RainbowConfig field is a flag (--n-step, --lr, ...)
    python examples/rainbow_cartpole.py --compile   # the update step under torch.compile
    # DQN as CleanRL's dqn.py runs it (Rainbow's parts off, 120-84 net, an update every 10 steps):
    python examples/rainbow_cartpole.py --no-double --no-prioritized --no-dueling --no-distributional \
        --no-noisy --n-step 1 --hidden 120 --head-hidden 84 --batch-size 128 --train-every 10 \
        --target-update 500 --lr 2.5e-4 --adam-eps 1e-8 --max-grad-norm None --huber-delta None \
        --buffer-size 10000 --learning-starts 10000 --eps-end 0.05 --eps-decay-steps 250000 --iterations 500000

Reports the mean return of the last 100 training episodes (the acting policy, noise on) and
100-episode evaluations of the final policy, greedy with the mean network (noise off) and with
fresh noise per step. (A 100-episode training mean >= 475 needs >= 47,500 steps of those
episodes alone, so the 30k-step target is read off the 100-episode evaluation.) ``--resume`` continues from the checkpoint in
``--out``.
"""

import json
import os
from dataclasses import dataclass, fields
from functools import partial

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import tyro  # noqa: E402

from functional_metarl import checks  # noqa: E402
from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer, resolve_device  # noqa: E402

import _cli  # noqa: E402

#: The example's defaults where they are not RainbowConfig's.
DEFAULTS = dict(eval_every=5_000)


@dataclass
class Args(RainbowConfig):
    """Rainbow on CartPole-v1. Every field of RainbowConfig is a flag (--n-step, --lr, --no-noisy,
    ...; --eval-every: greedy evaluation every N steps, 0: off); the fields below are the example's."""

    out: str | None = None  # checkpoint / TensorBoard / metrics.json folder
    resume: bool = False  # continue from OUT/checkpoint.pt when there is one
    final_eval_episodes: int = 100  # episodes of each evaluation of the final policy
    threads: int = 1  # torch threads

    @property
    def config(self) -> RainbowConfig:
        """The trainer's settings: the RainbowConfig fields of the command line."""
        return RainbowConfig(**{f.name: getattr(self, f.name) for f in fields(RainbowConfig)})


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as :class:`Args` (RainbowConfig checks its fields as it is built); the
    example's own fields are checked too, before anything is built."""
    try:
        args = tyro.cli(Args, args=argv, default=Args(**DEFAULTS), description=__doc__)
        checks.positive_int(args.final_eval_episodes, "--final-eval-episodes")
        checks.positive_int(args.threads, "--threads")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(str(error))
    return args


usage_error = partial(_cli.usage_error, "rainbow_cartpole.py")  # a bad command line: stderr, exit status 2


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    config = args.config
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
