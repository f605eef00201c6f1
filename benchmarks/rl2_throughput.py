"""RL² throughput: the pure batched rollout + PPO step against gymnasium-style single envs.

    python benchmarks/rl2_throughput.py                       # bandits k=5 n=10 and MDP n=10
    python benchmarks/rl2_throughput.py --trials 64 --repeats 2 --hidden 64
    python benchmarks/rl2_throughput.py --only mdp --pure-only --trials 512 --value-network separate   # issue 28

Both sides do the same work per iteration: one trial on each of ``--trials`` tasks with the GRU
policy (``--hidden`` units), then the same PPO update (``--epochs`` x ``--minibatches``
steps of ``meta.rl2_ppo_loss`` with Adam). They differ only in how the trials are collected:

- **pure**: ``meta.rl2_train_step`` -- the task family as tensors, every trial stepping together
  (one batched env call per time step);
- **gym loop**: one ``gymnasium.Env`` object per trial (numpy RNG, Python scalars), stepped one
  by one in a Python loop each time step; the policy still runs once per step on the batch
  (as with a synchronous vector env), then the collected trials go through the same PPO update.

Prints env steps/s of each (median over ``--repeats`` timed iterations after one warm-up) and
the ratio pure / gym loop, for the whole iteration and for the trial collection alone (the PPO
update is the same work on both sides, so it bounds the whole-iteration ratio). Run as a
script it first calls ``runners.keep_freed_cpu_memory()``, as the rl2 examples do.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from functional_metarl.envs import BernoulliBandits, TabularMDP
from functional_metarl.meta import (
    PPOConfig,
    Trial,
    rl2_advantages,
    rl2_ppo_loss,
    rl2_rollout,
    rl2_train_step,
    sample_rl2_noise,
)
from functional_metarl.nn import gru_actor_critic, rl2_inputs
from functional_metarl.optim import adam, apply_updates, chain, clip_by_global_norm
from functional_metarl.rl import categorical_log_prob, normalize_advantages
from torch.func import grad_and_value


class GymBandit(gym.Env):
    """A k-armed Bernoulli bandit, one trial of n pulls, as a single gymnasium env."""

    def __init__(self, k: int, n: int):
        self.k, self.n = k, n
        self.observation_space = gym.spaces.Box(1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(k)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.means = self.np_random.uniform(size=self.k)
        self.t = 0
        return np.ones(1, np.float32), {}

    def step(self, action: int):
        reward = float(self.np_random.uniform() < self.means[action])
        self.t += 1
        return np.ones(1, np.float32), reward, True, self.t >= self.n, {}


class GymMDP(gym.Env):
    """A random tabular MDP (10 states, 5 actions, episodes of 10 steps), one trial of n episodes."""

    def __init__(self, n: int, states: int = 10, actions: int = 5, horizon: int = 10):
        self.n, self.S, self.A, self.H = n, states, actions, horizon
        self.observation_space = gym.spaces.Box(0.0, 1.0, (states,), np.float32)
        self.action_space = gym.spaces.Discrete(actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.R = self.np_random.normal(1.0, 1.0, (self.S, self.A))
        self.P = self.np_random.dirichlet(np.ones(self.S), (self.S, self.A))
        self.s, self.t = 0, 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.S, np.float32)
        o[self.s] = 1.0
        return o

    def step(self, action: int):
        reward = self.R[self.s, action] + self.np_random.normal()
        self.s = int(self.np_random.choice(self.S, p=self.P[self.s, action]))
        self.t += 1
        done = self.t % self.H == 0
        if done:
            self.s = 0
        return self._obs(), reward, done, self.t >= self.n * self.H, {}


def gym_collect(envs: list[gym.Env], policy, params, T: int, gen: torch.Generator, seed: int) -> Trial:
    """One trial per env, the envs stepped one by one in a Python loop each time step."""
    A = policy.num_actions
    obs = torch.as_tensor(np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]))
    B = len(envs)
    prev_a, prev_r, prev_d = torch.full((B,), -1), torch.zeros(B), torch.zeros(B)
    h = policy.initial_state((B,))
    rows: dict[str, list] = {k: [] for k in Trial._fields}
    with torch.no_grad():
        for _ in range(T):
            x = rl2_inputs(obs, prev_a, prev_r, prev_d, A)
            logits, value, h = policy.apply(params, x, h)
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(-1)
            outs = [env.step(int(a)) for env, a in zip(envs, action.tolist())]
            obs = torch.as_tensor(np.stack([o[0] for o in outs]))
            reward = torch.tensor([o[1] for o in outs], dtype=torch.float32)
            done = torch.tensor([o[2] for o in outs])
            for k, v in zip(Trial._fields, (x, action, reward, done, categorical_log_prob(logits, action), value)):
                rows[k].append(v)
            prev_a, prev_r, prev_d = action, reward, done.float()
    return Trial(*(torch.stack(rows[k]) for k in Trial._fields))


def gym_iteration(envs: list[gym.Env], policy, params, opt, opt_state, cfg: PPOConfig, T: int, seed: int):
    """Collect one trial per env with a Python loop over envs, then the same PPO update."""
    gen = torch.Generator().manual_seed(seed)
    B = len(envs)
    trial = gym_collect(envs, policy, params, T, gen, seed)
    adv, ret = rl2_advantages(trial, cfg.gamma, cfg.gae_lambda)
    adv = normalize_advantages(adv, torch.ones_like(adv))
    fn = grad_and_value(rl2_ppo_loss, has_aux=True)
    mb = B // cfg.num_minibatches
    for _ in range(cfg.epochs):
        perm = torch.randperm(B, generator=gen)
        for i in range(cfg.num_minibatches):
            idx = perm[i * mb:(i + 1) * mb]
            g, _ = fn(params, Trial(*(x[:, idx] for x in trial)), adv[:, idx], ret[:, idx], policy,
                      clip_eps=cfg.clip_eps, value_coef=cfg.value_coef, entropy_coef=cfg.entropy_coef)
            updates, opt_state = opt.update(g, opt_state, params)  # clipping composed in opt
            params = apply_updates(params, updates)
    return params, opt_state


def bench(name: str, env, gym_envs, args) -> dict[str, float]:
    policy = gru_actor_critic(env.obs_dim, env.num_actions, args.hidden, value_network=args.value_network)
    cfg = PPOConfig(epochs=args.epochs, num_minibatches=args.minibatches)
    opt = chain(clip_by_global_norm(0.5), adam(1e-3))  # the RL2Config default max_grad_norm
    B, T = args.trials, env.trial_length
    rates: dict[str, list[float]] = {"pure": [], "gym": [], "pure_rollout": [], "gym_rollout": []}
    gen = torch.Generator().manual_seed(0)
    params = policy.init(0)
    state = opt.init(params)
    for rep in range(args.repeats + 1):
        tasks = env.sample_tasks(B, gen)
        noise = sample_rl2_noise(env, B, cfg.epochs, gen)
        t0 = time.perf_counter()
        params, state, _ = rl2_train_step(params, state, tasks, noise, env, policy, opt, config=cfg)
        pure = time.perf_counter() - t0
        t0 = time.perf_counter()
        rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, policy)
        pure_rollout = time.perf_counter() - t0
        if rep > 0:  # the first iteration is warm-up
            rates["pure"].append(B * T / pure)
            rates["pure_rollout"].append(B * T / pure_rollout)
        if args.pure_only:
            continue
        t0 = time.perf_counter()
        params, state = gym_iteration(gym_envs, policy, params, opt, state, cfg, T, seed=rep * 10_000)
        loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        gym_collect(gym_envs, policy, params, T, gen, seed=rep * 10_000 + 1)
        gym_rollout = time.perf_counter() - t0
        if rep > 0:
            rates["gym"].append(B * T / loop)
            rates["gym_rollout"].append(B * T / gym_rollout)
    out = {k: statistics.median(v) for k, v in rates.items() if v}
    if args.pure_only:
        print(f"{name:>16}: pure {out['pure']:9.0f} env steps/s, rollout only {out['pure_rollout']:9.0f}   ({B} trials x "
              f"{T} steps, hidden {args.hidden}, value network {args.value_network}, {args.epochs} epochs x "
              f"{args.minibatches} minibatches)")
        return out
    print(f"{name:>16}: pure {out['pure']:9.0f} env steps/s | gym loop {out['gym']:9.0f} env steps/s | "
          f"ratio {out['pure'] / out['gym']:.2f}x   ({B} trials x {T} steps, hidden {args.hidden})")
    print(f"{'rollout only':>16}: pure {out['pure_rollout']:9.0f} env steps/s | gym loop {out['gym_rollout']:9.0f} env steps/s | "
          f"ratio {out['pure_rollout'] / out['gym_rollout']:.2f}x")
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mdp-episodes", type=int, default=10)
    parser.add_argument("--value-network", default="shared", choices=("shared", "separate", "detached"),
                        help="the agent's value network (issue 28; 'shared' is what the earlier numbers used)")
    parser.add_argument("--pure-only", action="store_true", help="time the pure batched step only (no gym loop)")
    parser.add_argument("--only", choices=("bandit", "mdp"), default=None, help="one family only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    if args.only in (None, "bandit"):
        results["bandit_k5_n10"] = bench("bandits k=5 n=10", BernoulliBandits(5, 10),
                                         [GymBandit(5, 10) for _ in range(args.trials)], args)
    if args.only in (None, "mdp"):
        results[f"mdp_n{args.mdp_episodes}"] = bench(f"MDP n={args.mdp_episodes}", TabularMDP(args.mdp_episodes),
                                                     [GymMDP(args.mdp_episodes) for _ in range(args.trials)], args)
    return results


if __name__ == "__main__":
    from functional_metarl.runners import keep_freed_cpu_memory

    keep_freed_cpu_memory()  # as the rl2 examples do; both sides share the process, so it favours neither
    main()
