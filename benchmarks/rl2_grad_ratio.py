"""How much of the RL² gradient reaching the policy's GRU is value gradient (issue 28).

    python benchmarks/rl2_grad_ratio.py                      # MDP n=10, GRU 128, 64 trials
    python benchmarks/rl2_grad_ratio.py --hidden 256 --gamma 0.99 --reward-scale 0.05

On one batch of trials played by a freshly initialised agent, splits the PPO loss into its policy
part (the clipped surrogate and the entropy bonus, on normalised GAE advantages) and its value
part (``value_coef * 0.5 * (V - R)^2``), and prints the global norm of each part's gradient with
respect to the GRU that the *policy head reads* (``gru.*``), and their ratio value / policy. With
``value_network="shared"`` both parts flow into that GRU; with ``"separate"`` (the paper's form)
or ``"detached"`` the value part reaches only the value's own params, so the ratio is 0. The
value part's gradient into the value GRU (``value_gru.*``) is printed too. ``--seeds`` repeats
it over agent seeds (mean and range).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from functional_metarl.envs import BernoulliBandits, TabularMDP
from functional_metarl.meta import rl2_advantages, rl2_ppo_grad, rl2_rollout, sample_rl2_noise
from functional_metarl.nn import gru_actor_critic
from functional_metarl.rl import normalize_advantages
from functional_metarl.tree import tree_norm


def gradient_norms(env, value_network: str, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """``{"policy_into_gru", "value_into_gru", "ratio", "value_into_value_gru"}`` for one agent seed."""
    net = gru_actor_critic(env.obs_dim, env.num_actions, args.hidden, value_network=value_network,
                           init=args.cell_init, weight_norm=args.weight_norm)
    params = net.init(seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    tasks = env.sample_tasks(args.trials, gen)
    noise = sample_rl2_noise(env, args.trials, 0, gen)
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    scaled = trial._replace(rewards=trial.rewards * args.reward_scale)
    adv, ret = rl2_advantages(scaled, args.gamma, args.gae_lambda)
    adv = normalize_advantages(adv, torch.ones_like(adv))
    policy_g, _ = rl2_ppo_grad(params, trial, adv, ret, net, value_coef=0.0, entropy_coef=args.entropy_coef)
    value_g, _ = rl2_ppo_grad(params, trial, torch.zeros_like(adv), ret, net, value_coef=args.value_coef,
                              entropy_coef=0.0)
    on = lambda g, prefix: {k: v for k, v in g.items() if k.startswith(prefix)}  # noqa: E731
    p, v = float(tree_norm(on(policy_g, "gru."))), float(tree_norm(on(value_g, "gru.")))
    own = float(tree_norm(on(value_g, "value_gru."))) if value_network == "separate" else float("nan")
    return {"policy_into_gru": p, "value_into_gru": v, "ratio": v / p, "value_into_value_gru": own}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mdp", choices=("mdp", "bandit"))
    parser.add_argument("--n", type=int, default=10, help="episodes (MDP) or pulls (bandit) per trial")
    parser.add_argument("--k", type=int, default=10, help="arms (bandit)")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--gae-lambda", type=float, default=0.95)
    parser.add_argument("--reward-scale", type=float, default=0.05)
    parser.add_argument("--value-coef", type=float, default=0.5)
    parser.add_argument("--entropy-coef", type=float, default=0.03)
    parser.add_argument("--cell-init", default="pytorch", choices=("pytorch", "orthogonal"))
    parser.add_argument("--weight-norm", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = TabularMDP(args.n) if args.env == "mdp" else BernoulliBandits(args.k, args.n)
    out = {}
    for value_network in ("shared", "separate", "detached"):
        rows = [gradient_norms(env, value_network, args, seed) for seed in range(args.seeds)]
        out[value_network] = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
        ratios = [r["ratio"] for r in rows]
        print(f"{value_network:>9}: |grad policy part -> gru| {out[value_network]['policy_into_gru']:.4f}, "
              f"|grad value part -> gru| {out[value_network]['value_into_gru']:.4f}, ratio value/policy "
              f"{out[value_network]['ratio']:.2f} (seeds {min(ratios):.2f}-{max(ratios):.2f}); "
              f"|grad value part -> value_gru| {out[value_network]['value_into_value_gru']:.4f}")
    return out


if __name__ == "__main__":
    main()
