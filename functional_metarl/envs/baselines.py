"""Classic agents for the RL² task families, batched over trials, as pure tensor loops.

Bandits (:func:`bandit_baseline`): ``"random"``; ``"greedy"`` (greedy with the uniform prior:
pull the arm of highest posterior mean ``(s + 1) / (c + 2)``); ``"ucb1"`` (Auer et al. 2002:
every arm once, then ``argmax s / c + ucb_c sqrt(ln t / c)``, ``ucb_c = sqrt(2)`` in the paper
that defines it; :func:`tune_ucb_c` picks it on tuning tasks); ``"thompson"`` (Beta(1, 1) prior,
pull the argmax of one draw from each arm's ``Beta(s + 1, c - s + 1)`` posterior). Ties are
broken uniformly at random. ``"gittins"``: pull the arm of highest Gittins index (Gittins 1979)
of its ``Beta(s + 1, c - s + 1)`` posterior for a discount ``gamma`` (:func:`gittins_indices`:
a table computed by calibration -- value iteration against a retirement reward, on a grid of
retirement rates). The index policy is optimal for a *discounted, infinite* horizon; a trial
is finite, so ``gamma`` is a setting (the RL² paper does not state its choice, so its Gittins
numbers are also cited, ``RL2_PAPER_GITTINS``).

Tabular MDPs (:func:`mdp_baseline`): ``"random"``; ``"psrl"`` (posterior sampling,
Osband et al. 2013): at the start of every episode draw an MDP from the posterior -- known
priors ``R ~ N(1, 1)`` with unit reward noise (a Normal posterior per ``(s, a)``) and flat
Dirichlet transition rows (a ``Dirichlet(1 + counts)`` posterior) -- solve it by ``H``-step
value iteration and act greedily on it for the episode; ``"greedy"`` (certainty equivalence):
the same, but on the posterior *mean* MDP (reward ``(1 + sum) / (1 + count)``, rows
``(1 + counts) / (S + count)``), so it never explores on purpose.

``"ucb1"`` takes ``ucb_prior``: ``"pull_once"`` (the default above) or ``"beta"`` (the RL² paper's
baseline: every arm starts at one pseudo-success and one pseudo-failure, so no arm needs a first
pull; ``t`` and ``c`` then count the pseudo-pulls too). The MDP planners take
``reward_prior_mean``: 1 is the family's true prior (the default); 0 is the default of the RL²
paper's baseline library, which reproduces its PSRL and greedy rows.

**The memory gauge** (:func:`windowed_greedy`): a 1-step agent that remembers only the last
``window`` steps of the trial. At each step, in the current state (bandits: the one state), it
takes the action with the highest posterior-mean reward computed from the window's observations
of that state-action pair alone: MDPs ``(prior + sum r) / (1 + count)`` with the N(1, 1) prior
(untried pairs count as the prior mean 1), bandits ``(s + 1) / (c + 2)`` with the uniform
Beta(1, 1) prior (untried arms count as 1/2). It never plans and never explores on purpose; its
score as a function of ``window`` says how much memory a trial rewards, so an RL² agent that
scores like ``window = W`` plays as if it remembered about ``W`` steps. ``window=None`` is full
memory (on bandits that is ``"greedy"``).

Each returns a :class:`BaselineRun` with ``actions`` and ``rewards`` ``[T, B]``; the env noise
is the env's pre-drawn trial noise (leaves ``[T, B]``), so every method can be scored on the same
tasks and the same reward / transition noise. The agents' own randomness comes from
``generator``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch

from .. import checks
from ..tree import tree_map
from .bandits import BanditTask, BernoulliBandits
from .tabular_mdp import MDPNoise, MDPTask, TabularMDP

__all__ = ["bayes_optimal_bandit_value", "gittins_indices", "tune_gittins_gamma", "tune_ucb_c", "BaselineRun", "BANDIT_BASELINES", "MDP_BASELINES", "sample_gamma", "bandit_baseline", "mdp_baseline",
           "RL2_PAPER_GITTINS", "windowed_greedy", "MEMORY_GAUGE_WINDOWS", "UCB_PRIORS"]

BANDIT_BASELINES = ("random", "greedy", "ucb1", "thompson", "gittins")
# Also the evaluation order (one agent generator for all): greedy, added last, leaves psrl's draws as they were.
MDP_BASELINES = ("random", "psrl", "greedy")
# Duan et al. 2016, Table 1 (as quoted in issue #12): Gittins index, mean total reward per
# trial, keyed by (k, n). Only the two settings this project runs are recorded.
RL2_PAPER_GITTINS = {(5, 10): 6.6, (10, 100): 82.8}
#: The windows of the memory gauge (:func:`windowed_greedy`) the RL² evaluation reports; None: all of the trial.
MEMORY_GAUGE_WINDOWS = (10, 20, 30, None)
#: UCB1's starting counts: every arm pulled once first, or one pseudo-success and one pseudo-failure per arm.
UCB_PRIORS = ("pull_once", "beta")


class BaselineRun(NamedTuple):
    """One trial of a classic agent on every task: its actions and rewards, time-major."""

    actions: torch.Tensor  # [T, B] int64
    rewards: torch.Tensor  # [T, B]


def sample_gamma(alpha: torch.Tensor, generator: torch.Generator | None = None, tries: int = 16) -> torch.Tensor:
    """``Gamma(alpha, 1)`` draws for ``alpha >= 1`` (any shape), by Marsaglia & Tsang (2000).

    ``tries`` proposals per entry are drawn at once and the first accepted is kept (each is
    accepted with probability > 0.95 for ``alpha >= 1``, so all 16 fail with probability
    < 1e-20; the last proposal is kept then).
    """
    checks.floating_tensor(alpha, "alpha")
    checks.positive_int(tries, "tries")
    if not bool((alpha >= 1).all()):
        raise ValueError(f"alpha must be >= 1 everywhere, got a minimum of {float(alpha.min())}")
    d = alpha - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    x = torch.randn((tries, *alpha.shape), generator=generator, device=alpha.device, dtype=alpha.dtype)
    u = torch.rand((tries, *alpha.shape), generator=generator, device=alpha.device, dtype=alpha.dtype)
    v = (1.0 + c * x) ** 3
    ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    ok[-1] = True
    first = torch.argmax(ok.to(torch.int8), dim=0, keepdim=True)  # index of the first accepted proposal
    return (d * torch.gather(v, 0, first)).squeeze(0)


def gittins_indices(gamma: float, depth: int, grid: int = 2001, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Gittins indices of Beta-Bernoulli arms with a uniform prior: ``[depth + 1, depth + 1]``,
    entry ``[s, f]`` for ``s`` successes and ``f`` failures seen (``s + f < depth``; the rest NaN).

    Calibration: for a retirement rate ``lam`` (a reward of ``lam`` per step forever after
    retiring), ``V(s, f) = max(lam / (1 - gamma), p + gamma (p V(s+1, f) + (1-p) V(s, f+1)))``
    with ``p = (s + 1) / (s + f + 2)``, truncated at ``s + f = depth`` by ``max(lam, p) / (1 -
    gamma)``. The index of ``(s, f)`` is the largest ``lam`` on a ``grid`` over [0, 1] at which
    pulling is still at least as good as retiring (accurate to ``1 / (grid - 1)``). One value
    iteration serves every state at once, for all ``lam`` of the grid.
    """
    checks.number(gamma, "gamma", 0.0, 1.0, low_open=True, high_open=True)
    checks.positive_int(depth, "depth")
    checks.int_in_range(grid, "grid", low=2)
    lam = torch.linspace(0.0, 1.0, grid, dtype=dtype)  # [L]
    retire = lam / (1.0 - gamma)
    index = torch.full((depth + 1, depth + 1), float("nan"), dtype=dtype)
    s = torch.arange(depth + 1, dtype=dtype)
    p = (s + 1) / (depth + 2)  # on the last diagonal s + f = depth
    value = torch.maximum(lam[:, None], p[None, :]) / (1.0 - gamma)  # [L, s] along the diagonal
    for total in range(depth - 1, -1, -1):
        s = torch.arange(total + 1, dtype=dtype)
        p = (s + 1) / (total + 2)
        pull = p + gamma * (p * value[:, 1:total + 2] + (1 - p) * value[:, :total + 1])  # [L, total + 1]
        keep = pull >= retire[:, None]  # pulling is worth it at this lam
        # largest lam on the grid where pulling still wins (keep is monotone: True, then False)
        index[s.long(), total - s.long()] = lam[keep.to(torch.int64).sum(0).clamp_min(1) - 1]
        value = torch.maximum(pull, retire[:, None])
    return index


#: The largest trial length ``bayes_optimal_bandit_value`` accepts: the belief states grow
#: combinatorially (k=5: 3,519 states at n=10, 347,846 at n=20, about 3 s in pure Python).
BAYES_OPTIMAL_MAX_PULLS = 25


def bayes_optimal_bandit_value(num_arms: int, num_pulls: int) -> float:
    """The most expected total reward any agent can earn in a trial of ``num_pulls`` pulls of a
    ``num_arms``-armed Bernoulli bandit whose arm means are i.i.d. uniform on [0, 1]
    (``BernoulliBandits``' task distribution): the exact finite-horizon Bayes-optimal value.

    Dynamic programming over the posterior: with uniform priors an arm's posterior is
    ``Beta(s + 1, f + 1)`` after ``s`` successes and ``f`` failures, so the belief is the
    multiset of ``(s, f)`` pairs (arms are exchangeable) and
    ``V(b, m) = max_i [p_i (1 + V(b + success_i, m - 1)) + (1 - p_i) V(b + failure_i, m - 1)]``,
    ``p_i = (s_i + 1) / (s_i + f_i + 2)``, ``V(b, 0) = 0``. No policy (RL², Gittins, UCB1, ...)
    has a higher mean; e.g. k=5, n=10 gives 6.660. Exact up to float rounding; ``num_pulls`` is
    limited to ``BAYES_OPTIMAL_MAX_PULLS``.
    """
    checks.positive_int(num_arms, "num_arms")
    checks.int_in_range(num_pulls, "num_pulls", 1, BAYES_OPTIMAL_MAX_PULLS)  # belief states grow combinatorially

    @lru_cache(maxsize=None)
    def value(belief: tuple[tuple[int, int], ...], remaining: int) -> float:
        if remaining == 0:
            return 0.0
        best = 0.0
        for i, (s, f) in enumerate(belief):
            if i > 0 and belief[i - 1] == (s, f):  # the same posterior as the previous arm: same value
                continue
            p = (s + 1) / (s + f + 2)
            others = belief[:i] + belief[i + 1:]
            win = tuple(sorted(others + ((s + 1, f),)))
            lose = tuple(sorted(others + ((s, f + 1),)))
            best = max(best, p * (1.0 + value(win, remaining - 1)) + (1.0 - p) * value(lose, remaining - 1))
        return best

    return value(((0, 0),) * num_arms, num_pulls)


def tune_ucb_c(
    env: BernoulliBandits, tasks: BanditTask, env_noise: torch.Tensor,
    values: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, math.sqrt(2.0)),
    generator: torch.Generator | None = None, ucb_prior: str = "pull_once",
) -> tuple[float, dict[float, float]]:
    """The UCB1 exploration constant in ``values`` with the most total reward per trial on
    ``tasks`` (use tuning tasks, not the evaluation ones), for the starting counts ``ucb_prior``
    (:data:`UCB_PRIORS`). Returns ``(best, {c: mean})``."""
    if not values:
        raise ValueError("values must be a non-empty sequence of exploration constants >= 0")
    for i, c in enumerate(values):
        checks.non_negative_number(c, f"values[{i}]")
    scores = {c: float(bandit_baseline(env, tasks, "ucb1", env_noise, generator, ucb_c=c, ucb_prior=ucb_prior)
                       .rewards.sum(0).mean())
              for c in values}
    return max(scores, key=scores.get), scores


def tune_gittins_gamma(
    env: BernoulliBandits, tasks: BanditTask, env_noise: torch.Tensor, gammas: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99),
    generator: torch.Generator | None = None,
) -> tuple[float, dict[float, float]]:
    """The discount in ``gammas`` whose Gittins policy earns the most total reward per trial on
    ``tasks`` (use tuning tasks, not the evaluation ones). Returns ``(best, {gamma: mean})``."""
    if not gammas:
        raise ValueError("gammas must be a non-empty sequence of discounts in (0, 1)")
    for i, g in enumerate(gammas):
        checks.number(g, f"gammas[{i}]", 0.0, 1.0, low_open=True, high_open=True)
    scores = {g: float(bandit_baseline(env, tasks, "gittins", env_noise, generator, gittins_gamma=g).rewards.sum(0).mean())
              for g in gammas}
    return max(scores, key=scores.get), scores


def _argmax_random_ties(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    best = scores.max(dim=-1, keepdim=True).values
    u = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
    return torch.argmax(torch.where(scores >= best, u + 1.0, u - 1.0), dim=-1)


def bandit_baseline(
    env: BernoulliBandits, tasks: BanditTask, method: str, env_noise: torch.Tensor, generator: torch.Generator | None = None,
    gittins_gamma: float = 0.9, ucb_c: float = math.sqrt(2.0), ucb_prior: str = "pull_once",
) -> BaselineRun:
    """Play one trial of ``method`` (see the module docstring) on every bandit of ``tasks``
    (``means [B, k]``) with the env's uniforms ``env_noise [n, B]``. ``gittins_gamma``: the
    discount of the Gittins indices (``"gittins"`` only); ``ucb_c``: UCB1's exploration
    constant, bonus ``ucb_c * sqrt(ln t / c)`` (``"ucb1"`` only; ``sqrt(2)`` is Auer et al.'s);
    ``ucb_prior``: one of :data:`UCB_PRIORS` (see the module docstring; ``"ucb1"`` only)."""
    checks.instance(env, "env", BernoulliBandits)
    checks.one_of(ucb_prior, "ucb_prior", UCB_PRIORS)
    checks.non_negative_number(ucb_c, "ucb_c")
    checks.number(gittins_gamma, "gittins_gamma", 0.0, 1.0, low_open=True, high_open=True)
    checks.one_of(method, "method", BANDIT_BASELINES)
    checks.floating_tensor(env_noise, "env_noise")
    means = tasks.means
    if means.ndim != 2 or means.shape[-1] != env.num_arms:
        raise ValueError(f"tasks.means expected shape [B, {env.num_arms}], got {tuple(means.shape)}")
    B, k = means.shape
    if tuple(env_noise.shape) != (env.num_pulls, B):
        raise ValueError(f"env_noise expected shape {(env.num_pulls, B)} [n, B], got {tuple(env_noise.shape)}")
    state, _ = env.reset(tasks, env_noise[0])
    counts = torch.zeros(B, k, dtype=means.dtype, device=means.device)
    successes = torch.zeros_like(counts)
    actions, rewards = [], []
    if method == "gittins":
        table = gittins_indices(gittins_gamma, env.num_pulls).to(device=means.device, dtype=means.dtype)
    for t in range(env.num_pulls):
        if method == "gittins":
            f = (counts - successes).long()
            scores = table[successes.long(), f]
        elif method == "random":
            scores = torch.zeros_like(counts)
        elif method == "greedy":
            scores = (successes + 1) / (counts + 2)
        elif method == "ucb1" and ucb_prior == "beta":  # one pseudo-success and one pseudo-failure per arm
            c, total = counts + 2.0, 2.0 * k + t
            scores = (successes + 1.0) / c + ucb_c * torch.sqrt(math.log(total) / c)
        elif method == "ucb1":
            bonus = ucb_c * torch.sqrt(math.log(max(t, 1)) / counts.clamp_min(1))
            scores = torch.where(counts == 0, torch.full_like(counts, math.inf), successes / counts.clamp_min(1) + bonus)
        else:  # thompson
            a = sample_gamma(successes + 1, generator)
            b = sample_gamma(counts - successes + 1, generator)
            scores = a / (a + b)
        action = _argmax_random_ties(scores, generator)
        state, _, reward, _ = env.step(state, action, tasks, env_noise[t])
        one_hot = torch.nn.functional.one_hot(action, k).to(means.dtype)
        counts = counts + one_hot
        successes = successes + one_hot * reward.unsqueeze(-1)
        actions.append(action)
        rewards.append(reward)
    return BaselineRun(torch.stack(actions), torch.stack(rewards))


def _posterior_mdp(counts: torch.Tensor, reward_sums: torch.Tensor, next_counts: torch.Tensor, sample: bool,
                   generator: torch.Generator | None, prior_mean: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reward [B, S, A], transitions [B, S, A, S])`` of one MDP drawn from the posterior
    (``sample``) or of the posterior mean MDP: N(prior_mean, 1) reward prior with unit noise, flat
    Dirichlet rows."""
    reward = (prior_mean + reward_sums) / (1.0 + counts)
    if not sample:
        return reward, (next_counts + 1.0) / (next_counts + 1.0).sum(-1, keepdim=True)
    z = torch.randn(counts.shape, generator=generator, device=counts.device, dtype=counts.dtype)
    g = sample_gamma(next_counts + 1.0, generator)
    return reward + z / torch.sqrt(1.0 + counts), g / g.sum(-1, keepdim=True)


def _planned_policy(env: TabularMDP, reward: torch.Tensor, transitions: torch.Tensor,
                    tie_generator: torch.Generator | None = None, random_ties: bool = False) -> torch.Tensor:
    """Greedy time-dependent actions ``[B, H, S]`` of the MDP ``(reward [B, S, A], transitions
    [B, S, A, S])`` by ``H``-step value iteration. ``random_ties``: break exact ties uniformly
    (the posterior mean MDP ties every action of an unvisited state); else the first action."""
    value = torch.zeros(reward.shape[:-1], device=reward.device, dtype=reward.dtype)  # [B, S]
    policy = []
    for _ in range(env.horizon):
        q = reward + torch.einsum("bsat,bt->bsa", transitions, value)
        policy.append(_argmax_random_ties(q, tie_generator) if random_ties else torch.argmax(q, dim=-1))
        value = q.max(dim=-1).values
    return torch.stack(policy[::-1], dim=1)  # [B, H, S]: step h of the episode


def mdp_baseline(
    env: TabularMDP, tasks: MDPTask, method: str, env_noise: MDPNoise, generator: torch.Generator | None = None,
    reward_prior_mean: float = 1.0,
) -> BaselineRun:
    """Play one trial of ``method`` (``"random"``, ``"greedy"`` or ``"psrl"``) on every MDP of ``tasks``
    (leading axis ``B``) with the env's trial noise (leaves ``[n H, B]``). ``reward_prior_mean``:
    the mean of the planners' N(mean, 1) reward prior (1: the family's; 0: the RL² paper's library)."""
    checks.instance(env, "env", TabularMDP)
    checks.number(reward_prior_mean, "reward_prior_mean")
    checks.one_of(method, "method", MDP_BASELINES)
    checks.instance(env_noise, "env_noise", MDPNoise)
    S, A, H = env.num_states, env.num_actions, env.horizon
    r = tasks.reward_mean
    if r.ndim != 3 or r.shape[1:] != (S, A):
        raise ValueError(f"tasks.reward_mean expected shape [B, {S}, {A}], got {tuple(r.shape)}")
    B = r.shape[0]
    for leaf in env_noise:
        if tuple(leaf.shape) != (env.trial_length, B):
            raise ValueError(f"env_noise leaves expected shape {(env.trial_length, B)}, got {tuple(leaf.shape)}")
    state, _ = env.reset(tasks, tree_map(lambda n: n[0], env_noise))
    counts = torch.zeros(B, S, A, dtype=r.dtype, device=r.device)
    reward_sums = torch.zeros_like(counts)
    next_counts = torch.zeros(B, S, A, S, dtype=r.dtype, device=r.device)
    rows = torch.arange(B, device=r.device)
    actions, rewards = [], []
    plan = None
    for t in range(env.trial_length):
        h = t % H
        if method == "random":
            action = torch.randint(A, (B,), generator=generator, device=r.device)
        else:
            if h == 0:  # plan once per episode, on what the trial has shown so far
                model = _posterior_mdp(counts, reward_sums, next_counts, method == "psrl", generator, reward_prior_mean)
                plan = _planned_policy(env, *model, generator, random_ties=method == "greedy")
            action = plan[rows, h, state.s]
        s = state.s
        state, _, reward, done = env.step(state, action, tasks, tree_map(lambda n: n[t], env_noise))
        # An episode's last transition is not observed (the next observation is the reset
        # state 0), so it updates the reward posterior only.
        if method != "random":
            seen = (~done).to(r.dtype)
            next_s = state.s
            counts = counts.index_put((rows, s, action), torch.ones(B, dtype=r.dtype, device=r.device), accumulate=True)
            reward_sums = reward_sums.index_put((rows, s, action), reward, accumulate=True)
            next_counts = next_counts.index_put((rows, s, action, next_s), seen, accumulate=True)
        actions.append(action)
        rewards.append(reward)
    return BaselineRun(torch.stack(actions), torch.stack(rewards))


def windowed_greedy(
    env: BernoulliBandits | TabularMDP, tasks: BanditTask | MDPTask, env_noise: torch.Tensor | MDPNoise,
    window: int | None, generator: torch.Generator | None = None,
) -> BaselineRun:
    """The memory gauge: one trial of the windowed 1-step agent (module docstring) on every task.

    At step ``t`` the agent, in state ``s_t``, takes ``argmax_a m(s_t, a)`` (exact ties uniformly at
    random), where ``m`` is the posterior-mean reward from the observations of steps
    ``max(0, t - window) .. t - 1`` only: MDPs ``(1 + sum r) / (1 + count)``, exactly 1 with no
    observation in the window; bandits ``(1 + s) / (2 + c)``.

    Args:
        env: a :class:`BernoulliBandits` or :class:`TabularMDP` family.
        tasks: ``B`` tasks of ``env`` (bandit means ``[B, k]``, MDP tables ``[B, S, A(, S)]``).
        env_noise: the env's trial noise, leaves ``[T, B]``.
        window: the steps remembered, a positive int; ``None`` remembers the whole trial.
        generator: the source of the tie-breaking draws.

    Returns:
        a :class:`BaselineRun`, ``actions`` / ``rewards`` ``[T, B]``.
    """
    checks.instance(env, "env", (BernoulliBandits, TabularMDP))
    if window is not None:
        checks.positive_int(window, "window")
    bandit = isinstance(env, BernoulliBandits)
    if bandit:
        checks.instance(tasks, "tasks", BanditTask)
        checks.floating_tensor(env_noise, "env_noise")
        ref = tasks.means
        S, A, T, prior, pseudo = 1, env.num_arms, env.num_pulls, 1.0, 2.0
        if ref.ndim != 2 or ref.shape[-1] != A:
            raise ValueError(f"tasks.means expected shape [B, {A}], got {tuple(ref.shape)}")
    else:
        checks.instance(tasks, "tasks", MDPTask)
        checks.instance(env_noise, "env_noise", MDPNoise)
        ref = tasks.reward_mean
        S, A, T, prior, pseudo = env.num_states, env.num_actions, env.trial_length, 1.0, 1.0
        if ref.ndim != 3 or ref.shape[1:] != (S, A):
            raise ValueError(f"tasks.reward_mean expected shape [B, {S}, {A}], got {tuple(ref.shape)}")
    B = ref.shape[0]
    for leaf in (env_noise,) if bandit else tuple(env_noise):
        if tuple(leaf.shape) != (T, B):
            raise ValueError(f"env_noise leaves expected shape {(T, B)} [T, B], got {tuple(leaf.shape)}")
    noise_at = (lambda t: env_noise[t]) if bandit else (lambda t: tree_map(lambda n: n[t], env_noise))
    state, _ = env.reset(tasks, noise_at(0))
    rows = torch.arange(B, device=ref.device)
    counts = torch.zeros(B, S, A, dtype=ref.dtype, device=ref.device)
    sums = torch.zeros_like(counts)
    one = torch.ones(B, dtype=ref.dtype, device=ref.device)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (state, action, reward) of each step
    actions, rewards = [], []
    for t in range(T):
        if window is not None and t > window:  # step t - window - 1 leaves the window
            s_old, a_old, r_old = seen[t - window - 1]
            counts = counts.index_put((rows, s_old, a_old), -one, accumulate=True)
            sums = sums.index_put((rows, s_old, a_old), -r_old, accumulate=True)
        s = torch.zeros(B, dtype=torch.int64, device=ref.device) if bandit else state.s
        c, total = counts[rows, s], sums[rows, s]  # [B, A]
        # exactly the prior mean where the window holds nothing (no rounding left by the removals)
        scores = torch.where(c > 0, (prior + total) / (pseudo + c), torch.full_like(c, prior / pseudo))
        action = _argmax_random_ties(scores, generator)
        state, _, reward, _ = env.step(state, action, tasks, noise_at(t))
        counts = counts.index_put((rows, s, action), one, accumulate=True)
        sums = sums.index_put((rows, s, action), reward, accumulate=True)
        seen.append((s, action, reward))
        actions.append(action)
        rewards.append(reward)
    return BaselineRun(torch.stack(actions), torch.stack(rewards))
