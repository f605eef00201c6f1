"""MAML-TRPO on HalfCheetah velocity / direction tasks (Finn et al. 2017, section 5.3), end to end.

    python examples/maml_cheetah.py --task dir                     # short CPU run (minutes)
    python examples/maml_cheetah.py --task vel --output runs/cheetah_vel
    python examples/maml_cheetah.py --task dir --paper --output runs/cheetah_dir   # paper-length run
    python examples/maml_cheetah.py --task dir --paper --output runs/cheetah_dir --resume

Tasks (``envs.HalfCheetahVel`` / ``envs.HalfCheetahDir`` over gymnasium's HalfCheetah-v5): a goal
velocity uniform in [0, 2] with reward ``-|v - goal| - 0.05 |a|^2``, or forward/backward with
reward ``+-v - 0.05 |a|^2``. Episodes come from the task-aware vector sampler (meta-batch x
episodes sub-envs stepped together, one batched policy call per step); the meta-step is the
library's MAML-TRPO (one inner SGD step of 0.1, gamma 0.99, lambda 1, max-KL 0.01).

Defaults are a short CPU run: 20 meta-iterations of 10 tasks x 10 episodes of 100 steps
(pytorch-maml-rl's horizon, half the paper's). ``--paper`` sets the paper's run: 500
meta-iterations of 40 tasks x 20 episodes, horizon 200 (appendix A.2). Then held-out tasks are
evaluated before and after one inner step, for the best meta-params of training (the paper's
choice) and the latest ones. The paper's MAML after one step: 293.2 on forward/backward
(from -50.7), about -80 on velocity (read off Fig. 5, see docs/simulators.md); both with horizon
200. Writes metrics.json, checkpoint.pt (``--resume`` continues it; pass the same settings),
TensorBoard events and returns.png into --output.
"""

import json
from dataclasses import dataclass
from typing import Literal

from _gym_maml_cli import GymMAMLArgs, evaluate_before_after, parse_args as parse_gym_args, plot_returns, train

from functional_metarl.envs import HalfCheetahDir, HalfCheetahVel

PAPER_AFTER_ONE_STEP = {"dir": 293.2, "vel": -80.0}  # horizon 200; vel read off Fig. 5
FAMILIES = {"vel": HalfCheetahVel, "dir": HalfCheetahDir}
SIZES = {"iterations": (20, 500), "meta_batch_size": (10, 40), "episodes_per_task": (10, 20), "horizon": (100, 200)}


@dataclass
class Args(GymMAMLArgs):
    """MAML-TRPO on half-cheetah. Every field of MAMLConfig is a flag (--iterations,
    --meta-batch-size, --trpo.max-kl, ...); --paper sets the paper's run sizes for those not given."""

    task: Literal["dir", "vel"] = "dir"  # forward/backward or goal velocity


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line (``--action-scale``: the env gets clip(scale * action, -1, 1); 0.1 =
    pytorch-maml-rl's normalization_scale 10, 1.0 = the policy acts in the env's box directly)."""
    args = parse_gym_args(Args, SIZES, dict(action_scale=0.1, eval_episodes=10, checkpoint_every=5),
                          prog="maml_cheetah.py", description=__doc__, argv=argv)
    args.output = args.output or f"runs/maml_cheetah_{args.task}"
    return args


def main() -> None:
    args = parse_args()
    family = FAMILIES[args.task](horizon=args.horizon)
    trainer, history, train_seconds = train(family, args)
    best, latest, eval_seconds = evaluate_before_after(trainer, args)
    paper = PAPER_AFTER_ONE_STEP[args.task]
    trainer.write_metrics(evaluation={"best": best, "final": latest, "paper_after_one_step_h200": paper,
                                      "train_seconds_this_run": train_seconds, "eval_seconds": eval_seconds})
    if history:
        plot_returns(history, trainer.output_dir / "returns.png", f"MAML on {family.name} (H={args.horizon})",
                     paper if args.horizon == 200 else None, "MAML paper, after 1 step (H=200)")
    trainer.close()
    print(f"MAML paper after one step (horizon 200): {paper}")
    print(f"training {train_seconds:.0f} s this run, evaluation {eval_seconds:.0f} s")
    print(json.dumps({"eval": {k: best[k] for k in ("return_before", "return_after")},
                      "eval_final": {k: latest[k] for k in ("return_before", "return_after")}}))


if __name__ == "__main__":
    main()
