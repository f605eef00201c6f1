"""MAML-TRPO on AntDir (Finn et al. 2017, section 5.3: ant forward/backward), end to end.

    python examples/maml_ant.py                                   # short CPU run (minutes)
    python examples/maml_ant.py --directions plane --output runs/ant_plane
    python examples/maml_ant.py --paper --output runs/ant_dir [--resume]

Tasks (``envs.AntDir`` over gymnasium's Ant-v5, 27-number observation): a unit direction ``u``
in the plane, reward ``u . v_xy - 0.005 |a|^2 - 0.0005 |clip(cfrc_ext)|^2 + 0.05``
(pytorch-maml-rl's AntDir); episodes end when the torso leaves z in [0.2, 1]. ``--directions
forward_backward`` (default) draws u = (+-1, 0) like pytorch-maml-rl and the paper; ``plane``
draws the angle uniformly. Episodes come from the task-aware vector sampler; the meta-step is
MAML-TRPO with one inner SGD step of 0.1.

Defaults are a short CPU run: 10 meta-iterations of 10 tasks x 10 episodes of 100 steps.
``--paper`` sets the paper's ant forward/backward run: 500 meta-iterations of 40 tasks x 40
episodes (the paper used 40 rollouts per step for this task), horizon 200. Then held-out
tasks are evaluated before and after one inner step. Writes metrics.json, checkpoint.pt
(``--resume``), TensorBoard events and returns.png into --output.
"""

import json
from dataclasses import dataclass
from typing import Literal

from _gym_maml_cli import GymMAMLArgs, evaluate_before_after, parse_args as parse_gym_args, plot_returns, train

from functional_metarl.envs import AntDir

SIZES = {"iterations": (10, 500), "meta_batch_size": (10, 40), "episodes_per_task": (10, 40), "horizon": (100, 200)}


@dataclass
class Args(GymMAMLArgs):
    """MAML-TRPO on AntDir. Every field of MAMLConfig is a flag (--iterations, --meta-batch-size,
    --trpo.max-kl, ...); --paper sets the paper's run sizes for those not given."""

    directions: Literal["forward_backward", "plane"] = "forward_backward"  # u = (+-1, 0), or any angle


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line (``--action-scale``: the env gets clip(scale * action, -1, 1); 0.1 =
    pytorch-maml-rl's normalization_scale 10, 1.0 = the policy acts in the env's box directly,
    rllab's normalize)."""
    args = parse_gym_args(Args, SIZES, dict(action_scale=0.1, eval_episodes=10, checkpoint_every=5),
                          prog="maml_ant.py", description=__doc__, argv=argv)
    args.output = args.output or "runs/maml_ant"
    return args


def main() -> None:
    args = parse_args()
    family = AntDir(horizon=args.horizon, directions=args.directions)
    trainer, history, train_seconds = train(family, args)
    best, latest, eval_seconds = evaluate_before_after(trainer, args)
    trainer.write_metrics(evaluation={"best": best, "final": latest, "train_seconds_this_run": train_seconds,
                                      "eval_seconds": eval_seconds})
    if history:
        plot_returns(history, trainer.output_dir / "returns.png", f"MAML on {family!r}")
    trainer.close()
    print(f"training {train_seconds:.0f} s this run, evaluation {eval_seconds:.0f} s")
    print(json.dumps({"eval": {k: best[k] for k in ("return_before", "return_after")},
                      "eval_final": {k: latest[k] for k in ("return_before", "return_after")}}))


if __name__ == "__main__":
    main()
