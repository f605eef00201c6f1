"""RL² on random tabular MDPs (Duan et al. 2016, section 3.2), end to end.

    python examples/rl2_mdp.py --n 10                                  # trials of 10 episodes
    python examples/rl2_mdp.py --n 25 --output runs/rl2_mdp_n25
    python examples/rl2_mdp.py --output runs/rl2_mdp --resume          # continue from the checkpoint

MDPs of 10 states and 5 actions, mean rewards N(1, 1), unit reward noise, flat-Dirichlet
transition rows, episodes of 10 steps from state 0, trials of n episodes. Trains a GRU
actor-critic (input: one-hot state, previous action one-hot, previous reward, previous done; the
hidden state carries across the episodes of a trial) with PPO, GAE over the whole trial and
whole-trial backprop. Then scores RL², random, greedy (certainty equivalence: plans on the
posterior mean MDP each episode), posterior sampling (PSRL) and, with
--maml-iterations, MAML-TRPO with a categorical policy (half the trial's episodes before its
inner step, half after) on the same
--eval-tasks held-out MDPs with the same noise: mean total reward per trial and its standard
error. Writes metrics.json, checkpoint.pt, TensorBoard events and learning_curve.png to --output.
"""

from __future__ import annotations

import argparse

from rl2_bandits import add_common_args, common_config, run  # the shared training / evaluation / plot code

from functional_metarl.runners import RL2Config

# Duan et al. 2016, Table 2, as quoted in issue #12: mean total reward per trial by n.
PAPER = {10: {"rl2": 156.2, "psrl": 144.1}, 25: {"rl2": 445.7}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="episodes per trial")
    add_common_args(parser, iterations=150, trials=128, hidden=128, output="runs/rl2_mdp")
    args = parser.parse_args()
    config = RL2Config(env="mdp", num_episodes=args.n, **common_config(args))
    run(config, args, PAPER.get(args.n, {}), f"RL² on tabular MDPs, n={args.n} episodes")


if __name__ == "__main__":
    main()
