"""Which step size for the evaluation steps after the first? A sweep on tuning tasks.

    python benchmarks/maml_nav_eval_lrs.py runs/maml_nav/checkpoint.pt
    python benchmarks/maml_nav_eval_lrs.py runs/maml_nav/checkpoint.pt --ratios 0.5 0.2 0.1 0.05

Loads a ``MAMLTrainer`` checkpoint (written by ``examples/maml_nav.py``) and, for its latest and
its best meta-params, evaluates 0..3 inner steps with step sizes ``(inner_lr, ratio * inner_lr)``
for each ratio, on task sets drawn from the tuning seeds (default 20000 and 20001). Those seeds
differ from the held-out evaluation's (``config.seed + 10_000``), so choosing a ratio here does
not look at the numbers the example reports. Prints the mean return per step for each ratio.

``--proportional-inner-step D0`` evaluates with every inner step scaled by the episodes' final
distance over ``D0`` (``MAMLConfig.proportional_inner_step``), also for a run trained with
fixed-length steps: does the rule help a policy that was not meta-trained for it?

    python benchmarks/maml_nav_eval_lrs.py runs/maml_nav/checkpoint.pt --proportional-inner-step 0.4 --ratios 1 0.5 0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from _common import parse_and_load_checkpoint  # benchmarks/_common.py (this folder is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[20000, 20001])
    parser.add_argument("--proportional-inner-step", type=float, default=None, metavar="D0",
                        help="evaluate with MAMLConfig.proportional_inner_step = D0 (default: the run's own setting)")
    args, trainer = parse_and_load_checkpoint(parser)
    if args.proportional_inner_step is not None:
        try:
            trainer.config = dataclasses.replace(trainer.config, proportional_inner_step=args.proportional_inner_step)
        except ValueError as error:
            parser.error(str(error))
    config = trainer.config
    lr = config.inner_lr
    print(f"{args.checkpoint}: meta-iteration {trainer.iteration}, inner_lr {lr}, seeds {args.seeds}, "
          f"proportional_inner_step {config.proportional_inner_step}")
    print(f"{'params':6} | {'later lr':>8} | " + " | ".join(f"{k} steps" for k in "0123"))
    candidates = (("latest", trainer.params, trainer.learned_lrs), ("best", trainer.best_params, trainer.best_learned_lrs))
    for name, params, learned_lrs in candidates:  # learned_lrs: None unless the run learned its step sizes
        for ratio in args.ratios:
            runs = [trainer.evaluate(args.tasks, 3, seed=s, inner_lrs=(lr, ratio * lr), params=params,
                                     learned_lrs=learned_lrs) for s in args.seeds]
            means = [statistics.mean(r[k] for r in runs) for k in "0123"]
            print(f"{name:6} | {ratio * lr:8.4f} | " + " | ".join(f"{m:7.2f}" for m in means), flush=True)


if __name__ == "__main__":
    main()
