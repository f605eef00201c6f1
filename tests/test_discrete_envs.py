"""Bernoulli bandits, random tabular MDPs and their classic agents, against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from functional_metarl.envs import (
    BanditTask,
    BernoulliBandits,
    MDPNoise,
    TabularMDP,
    bandit_baseline,
    bayes_optimal_bandit_value,
    mdp_baseline,
    repeat_tasks,
    sample_gamma,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- bandits
def test_bandit_reward_statistics_follow_the_arm_means():
    env = BernoulliBandits(num_arms=3, num_pulls=1)
    means = torch.tensor([0.1, 0.5, 0.9])
    num = 20_000
    tasks = env.task(means.expand(3, num, 3))  # [arm pulled, pull, k]
    state, obs = env.reset(tasks)
    action = torch.arange(3).unsqueeze(1).expand(3, num)
    _, _, reward, done = env.step(state, action, tasks, torch.rand(3, num, generator=gen(1)))
    assert obs.shape == (3, num, 1) and done.all()
    freq = reward.mean(dim=1)
    se = torch.sqrt(means * (1 - means) / num)
    assert torch.all((freq - means).abs() < 4 * se), (freq, means)


def test_bandit_tasks_are_uniform_arm_means():
    means = BernoulliBandits(5, 10).sample_tasks(20_000, gen(2)).means
    assert means.shape == (20_000, 5) and (means >= 0).all() and (means <= 1).all()
    assert abs(float(means.mean()) - 0.5) < 0.01
    assert abs(float(means.var()) - 1 / 12) < 0.003


def test_bandit_trial_boundary_and_batch_of_tasks_by_trials():
    env = BernoulliBandits(num_arms=2, num_pulls=3)
    tasks = repeat_tasks(BanditTask(torch.tensor([[1.0, 0.0], [0.0, 1.0]])), 4)  # 2 tasks x 4 trials
    assert tasks.means.shape == (2, 4, 2)
    state, _ = env.reset(tasks)
    action = torch.zeros(2, 4, dtype=torch.int64)
    u = torch.full((2, 4), 0.5)
    totals = torch.zeros(2, 4)
    for t in range(5):
        assert bool(state.trial_done.any()) == (t >= 3)
        state, _, reward, done = env.step(state, action, tasks, u)
        assert done.all()  # every pull is a one-step episode
        totals += reward
        assert (state.t == min(t + 1, 3)).all()
    # arm 0 always pays for task 0, never for task 1; pulls after the 3rd pay nothing
    assert torch.equal(totals, torch.tensor([[3.0] * 4, [0.0] * 4]))


def test_bandit_bad_input():
    with pytest.raises(ValueError, match="num_arms"):
        BernoulliBandits(num_arms=1)
    with pytest.raises(ValueError, match="num_pulls"):
        BernoulliBandits(num_pulls=0)
    with pytest.raises(TypeError, match="num_arms"):
        BernoulliBandits(num_arms=2.0)
    env = BernoulliBandits(3, 5)
    with pytest.raises(ValueError, match=r"means must lie in \[0, 1\]"):
        env.task(torch.tensor([0.2, 1.5, 0.3]))
    with pytest.raises(ValueError, match=r"means expected shape \[\.\.\., 3\]"):
        env.task(torch.tensor([0.2, 0.5]))
    tasks = env.sample_tasks(4, gen())
    state, _ = env.reset(tasks)
    u = torch.rand(4)
    with pytest.raises(ValueError, match=r"action must hold indices in \[0, 3\)"):
        env.step(state, torch.tensor([0, 1, 3, 0]), tasks, u)
    with pytest.raises(ValueError, match=r"action must hold indices in \[0, 3\)"):
        env.step(state, torch.tensor([0, -1, 2, 0]), tasks, u)
    with pytest.raises(TypeError, match="action must be an integer Tensor"):
        env.step(state, torch.zeros(4), tasks, u)
    with pytest.raises(ValueError, match="action expected shape"):
        env.step(state, torch.zeros(3, dtype=torch.int64), tasks, u)
    with pytest.raises(ValueError, match="noise expected shape"):
        env.step(state, torch.zeros(4, dtype=torch.int64), tasks, torch.rand(5))
    with pytest.raises(ValueError, match="num_tasks"):
        env.sample_tasks(0)


# ----------------------------------------------------------------------------- tabular MDPs
def test_mdp_tasks_follow_their_distributions():
    env = TabularMDP(num_episodes=2)
    tasks = env.sample_tasks(4000, gen(3))
    p = tasks.transitions
    assert p.shape == (4000, 10, 5, 10) and (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(4000, 10, 5))
    # a flat Dirichlet's marginal is Beta(1, S - 1): mean 1/S, variance (S - 1) / (S^2 (S + 1))
    assert abs(float(p.mean()) - 0.1) < 1e-3
    assert abs(float(p.var()) - 9 / (100 * 11)) < 2e-4
    r = tasks.reward_mean
    assert abs(float(r.mean()) - 1.0) < 0.01 and abs(float(r.std()) - 1.0) < 0.01


def _reference_step(env, s, t, a, reward_mean, transitions, u, z):
    """One entry, the definitions written out with Python scalars."""
    if t >= env.trial_length:
        return s, t, 0.0, False
    reward = float(reward_mean[s, a]) + env.reward_std * float(z)
    cdf, nxt = 0.0, env.num_states - 1
    for j in range(env.num_states):
        cdf += float(transitions[s, a, j])
        if u < cdf:
            nxt = j
            break
    t += 1
    done = t % env.horizon == 0
    return (0 if done else nxt), t, reward, done


def test_mdp_step_matches_the_definition_entry_by_entry():
    env = TabularMDP(num_episodes=2, num_states=4, num_actions=3, horizon=3)
    B = 5
    tasks = env.sample_tasks(B, gen(4))
    noise = env.sample_noise(env.trial_length, (B,), gen(5))
    acts = torch.randint(3, (env.trial_length + 2, B), generator=gen(6))
    state, obs = env.reset(tasks)
    ref = [(0, 0) for _ in range(B)]
    for t in range(env.trial_length + 2):  # two steps past the trial's end
        n_t = MDPNoise(noise.transition[min(t, env.trial_length - 1)], noise.reward[min(t, env.trial_length - 1)])
        state, obs, reward, done = env.step(state, acts[t], tasks, n_t)
        for b in range(B):
            s, tt = ref[b]
            s, tt, r, d = _reference_step(env, s, tt, int(acts[t, b]), tasks.reward_mean[b], tasks.transitions[b],
                                          float(n_t.transition[b]), float(n_t.reward[b]))
            ref[b] = (s, tt)
            assert int(state.s[b]) == s and int(state.t[b]) == tt and bool(done[b]) == d
            assert math.isclose(float(reward[b]), r, rel_tol=1e-6, abs_tol=1e-6)
            assert torch.equal(obs[b], torch.nn.functional.one_hot(torch.tensor(s), 4).float())
        assert bool(state.trial_done.all()) == (t + 1 >= env.trial_length)


def test_mdp_reward_noise_and_transition_frequencies():
    env = TabularMDP(num_episodes=1)
    task = env.sample_tasks(1, gen(7))
    num = 40_000
    tasks = type(task)(task.reward_mean.expand(num, 10, 5), task.transitions.expand(num, 10, 5, 10))
    state, _ = env.reset(tasks)
    noise = env.sample_noise(env.trial_length, (num,), gen(8))
    action = torch.full((num,), 2)
    state, obs, reward, _ = env.step(state, action, tasks, MDPNoise(noise.transition[0], noise.reward[0]))
    assert abs(float(reward.mean()) - float(task.reward_mean[0, 0, 2])) < 4 / math.sqrt(num)
    assert abs(float(reward.std()) - 1.0) < 0.02
    freq = torch.bincount(state.s, minlength=10).float() / num
    p = task.transitions[0, 0, 2]
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / num) + 1e-4)


def test_mdp_bad_input():
    with pytest.raises(ValueError, match="num_episodes"):
        TabularMDP(num_episodes=0)
    with pytest.raises(ValueError, match="num_actions"):
        TabularMDP(num_actions=1)
    env = TabularMDP(num_episodes=1, num_states=3, num_actions=2)
    with pytest.raises(ValueError, match=r"transitions must lie in \[0, 1\]"):
        env.task(torch.zeros(3, 2), torch.full((3, 2, 3), 1.2))
    with pytest.raises(ValueError, match="rows .* must sum to 1"):
        env.task(torch.zeros(3, 2), torch.full((3, 2, 3), 0.2))
    tasks = env.sample_tasks(2, gen())
    state, _ = env.reset(tasks)
    n = MDPNoise(torch.rand(2), torch.randn(2))
    with pytest.raises(ValueError, match=r"action must hold indices in \[0, 2\)"):
        env.step(state, torch.tensor([0, 2]), tasks, n)
    with pytest.raises(ValueError, match="noise.transition expected shape"):
        env.step(state, torch.tensor([0, 1]), tasks, MDPNoise(torch.rand(3), torch.randn(3)))


# ----------------------------------------------------------------------------- agents
def test_gamma_sampler_moments():
    alpha = torch.tensor([1.0, 2.0, 7.0, 60.0]).expand(50_000, 4)
    x = sample_gamma(alpha, gen(9))
    torch.testing.assert_close(x.mean(0), alpha[0], rtol=0.02, atol=0.0)
    torch.testing.assert_close(x.var(0), alpha[0], rtol=0.05, atol=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        sample_gamma(torch.tensor([0.5]))


def _pseudo_regret(env, tasks, method, seed):
    noise = env.sample_noise(env.trial_length, (tasks.means.shape[0],), gen(seed))
    run = bandit_baseline(env, tasks, method, noise, gen(seed + 1))
    pulled = torch.gather(tasks.means, 1, run.actions.T)  # [B, T]
    return torch.cumsum(tasks.means.max(1, keepdim=True).values - pulled, dim=1).mean(0)  # [T]


@pytest.mark.parametrize("method", ["ucb1", "thompson"])
def test_ucb1_and_thompson_regret_is_sublinear_on_an_easy_bandit(method):
    env = BernoulliBandits(num_arms=2, num_pulls=1000)
    tasks = BanditTask(torch.tensor([[0.8, 0.2]]).expand(64, 2))
    regret = _pseudo_regret(env, tasks, method, 10)
    random_regret = _pseudo_regret(env, tasks, "random", 10)
    # linear regret (random: 0.3 per pull) grows 10x from t = 100 to 1000; logarithmic far less
    assert float(random_regret[-1]) > 250
    assert float(regret[999]) < 3.0 * float(regret[99]), regret[[99, 999]]
    assert float(regret[999]) < 0.1 * float(random_regret[999])


def test_bandit_baselines_ranked_and_bad_method():
    env = BernoulliBandits(5, 10)
    tasks = env.sample_tasks(2000, gen(11))
    noise = env.sample_noise(env.trial_length, (2000,), gen(12))
    totals = {m: float(bandit_baseline(env, tasks, m, noise, gen(13)).rewards.sum(0).mean())
              for m in ("random", "greedy", "thompson")}
    assert abs(totals["random"] - 5.0) < 0.15  # E[mean] * n
    assert totals["greedy"] > totals["random"] + 1.0 and totals["thompson"] > totals["random"] + 0.5
    with pytest.raises(ValueError, match="method must be one of"):
        bandit_baseline(env, tasks, "oracle", noise)
    with pytest.raises(ValueError, match="env_noise expected shape"):
        bandit_baseline(env, tasks, "ucb1", noise[:, :10])


def test_psrl_and_greedy_beat_random_on_mdps():
    env = TabularMDP(num_episodes=10)
    tasks = env.sample_tasks(200, gen(14))
    noise = env.sample_noise(env.trial_length, (200,), gen(15))
    psrl = mdp_baseline(env, tasks, "psrl", noise, gen(16)).rewards.sum(0)
    greedy = mdp_baseline(env, tasks, "greedy", noise, gen(16)).rewards.sum(0)
    rand = mdp_baseline(env, tasks, "random", noise, gen(16)).rewards.sum(0)
    assert abs(float(rand.mean()) - 100.0) < 6.0  # E[R] = 1 per step under any policy that ignores R
    assert float(psrl.mean()) > float(rand.mean()) + 25.0
    assert float(greedy.mean()) > float(rand.mean()) + 20.0
    with pytest.raises(ValueError, match="method must be one of"):
        mdp_baseline(env, tasks, "ucb1", noise)


def test_mdp_planning_is_the_best_of_all_time_dependent_policies():
    # _planned_policy's H-step value iteration against an exhaustive search over every
    # deterministic time-dependent policy (A^(H*S) of them) on small random MDPs, scored exactly
    # by propagating the state distribution from state 0.
    import itertools

    from functional_metarl.envs.baselines import _planned_policy

    S, A, H = 2, 3, 3
    env = TabularMDP(num_episodes=1, num_states=S, num_actions=A, horizon=H)
    tasks = env.sample_tasks(4, gen(21))
    reward, transitions = tasks.reward_mean.double(), tasks.transitions.double()

    def exact_return(b: int, table: tuple[int, ...]) -> float:
        dist = torch.zeros(S, dtype=torch.float64)
        dist[0] = 1.0
        total = 0.0
        for h in range(H):
            acts = torch.tensor(table[h * S:(h + 1) * S])
            total += float((dist * reward[b, torch.arange(S), acts]).sum())
            dist = dist @ transitions[b, torch.arange(S), acts]
        return total

    plan = _planned_policy(env, reward, transitions)  # [B, H, S]
    for b in range(4):
        best = max(exact_return(b, t) for t in itertools.product(range(A), repeat=H * S))
        assert exact_return(b, tuple(plan[b].reshape(-1).tolist())) == pytest.approx(best, abs=1e-12)


def test_value_checks_and_public_types():
    from functional_metarl.envs import (
        BANDIT_BASELINES, MDP_BASELINES, RL2_PAPER_GITTINS, BanditState, BaselineRun, MDPState, MDPTask,
        check_int_actions, check_probabilities,
    )
    check_int_actions(torch.tensor([0, 2]), 3, (2,))
    with pytest.raises(ValueError, match=r"arm must hold indices in \[0, 3\), got values in \[0, 3\]"):
        check_int_actions(torch.tensor([0, 3]), 3, (2,), name="arm")
    with pytest.raises(TypeError, match="arm must be an integer Tensor"):
        check_int_actions(torch.tensor([True, False]), 3, (2,), name="arm")
    check_probabilities(torch.tensor([0.0, 1.0]), "p")
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
        check_probabilities(torch.tensor([0.5, float("nan")]), "p")
    with pytest.raises(TypeError, match="p must be a floating-point Tensor"):
        check_probabilities(torch.tensor([0, 1]), "p")
    bandits, mdp = BernoulliBandits(2, 3), TabularMDP(1, num_states=2, num_actions=2)
    assert isinstance(bandits.reset(bandits.sample_tasks(2))[0], BanditState)
    task = mdp.task(torch.zeros(2, 2), torch.full((2, 2, 2), 0.5))
    assert isinstance(task, MDPTask) and isinstance(mdp.reset(task)[0], MDPState)
    run = bandit_baseline(bandits, bandits.sample_tasks(2), BANDIT_BASELINES[0], torch.rand(3, 2))
    assert isinstance(run, BaselineRun) and run.actions.shape == run.rewards.shape == (3, 2)
    assert set(BANDIT_BASELINES) == {"random", "greedy", "ucb1", "thompson", "gittins"} and set(MDP_BASELINES) == {"random", "greedy", "psrl"}
    assert RL2_PAPER_GITTINS == {(5, 10): 6.6, (10, 100): 82.8}  # the numbers issue #12 quotes from the paper


def _gittins_reference(s0: int, f0: int, gamma: float, depth: int) -> float:
    """The index of one state by bisection on the retirement rate, with a memoised recursion."""
    def pull_beats_retire(lam: float) -> bool:
        memo: dict[tuple[int, int], float] = {}

        def v(s: int, f: int) -> float:
            p = (s + 1) / (s + f + 2)
            if s + f >= depth:
                return max(lam, p) / (1 - gamma)
            if (s, f) not in memo:
                memo[(s, f)] = max(lam / (1 - gamma), p + gamma * (p * v(s + 1, f) + (1 - p) * v(s, f + 1)))
            return memo[(s, f)]

        p = (s0 + 1) / (s0 + f0 + 2)
        return p + gamma * (p * v(s0 + 1, f0) + (1 - p) * v(s0, f0 + 1)) >= lam / (1 - gamma)

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pull_beats_retire(mid) else (lo, mid)
    return lo


def test_gittins_indices_against_a_per_state_bisection_and_the_published_value():
    from functional_metarl.envs import gittins_indices, tune_gittins_gamma

    table = gittins_indices(0.8, 10, grid=4001)
    for s, f in ((0, 0), (2, 1), (0, 4), (5, 3)):
        assert float(table[s, f]) == pytest.approx(_gittins_reference(s, f, 0.8, 10), abs=3e-4)
    assert torch.isnan(table[6, 6]) and torch.isnan(table[5, 5])  # on and beyond the truncation depth
    # posterior mean <= index; the uniform-prior arm at gamma = 0.9: 0.7029 (Gittins' tables)
    s, f = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    inside = s + f < 10
    assert torch.all(table[:6, :6][inside] >= ((s + 1) / (s + f + 2)).double()[inside] - 3e-4)
    assert float(gittins_indices(0.9, 300)[0, 0]) == pytest.approx(0.7029, abs=1e-3)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \(0, 1\)"):
        gittins_indices(1.0, 10)
    with pytest.raises(ValueError, match="depth"):
        gittins_indices(0.9, 0)
    env = BernoulliBandits(5, 10)
    tasks = env.sample_tasks(300, gen(20))
    best, scores = tune_gittins_gamma(env, tasks, env.sample_noise(env.trial_length, (300,), gen(21)), gammas=(0.5, 0.9), generator=gen(22))
    assert best in (0.5, 0.9) and scores[best] == max(scores.values())
    with pytest.raises(ValueError, match="gammas"):
        tune_gittins_gamma(env, tasks, env.sample_noise(env.trial_length, (300,), gen(21)), gammas=())


def test_ucb_exploration_constant_and_its_tuning():
    from functional_metarl.envs import tune_ucb_c

    env = BernoulliBandits(2, 50)
    tasks = BanditTask(torch.tensor([[0.6, 0.4]]).expand(200, 2))
    noise = env.sample_noise(env.trial_length, (200,), gen(40))
    # c = 0: after one pull of each arm, UCB1 is greedy on the empirical means
    run = bandit_baseline(env, tasks, "ucb1", noise, gen(41), ucb_c=0.0)
    counts = torch.nn.functional.one_hot(run.actions[:2].T, 2).sum(1)
    assert torch.all(counts == 1)  # the first two pulls try both arms
    s = torch.zeros(200, 2)
    c = torch.zeros(200, 2)
    for t in range(50):  # replay: every later pull is the arm of highest mean so far (ties: either)
        a = run.actions[t]
        if t >= 2:
            mean = s / c
            best = mean.max(1).values
            assert torch.all(mean.gather(1, a[:, None]).squeeze(1) == best)
        c[torch.arange(200), a] += 1
        s[torch.arange(200), a] += run.rewards[t]
    best, scores = tune_ucb_c(env, tasks, noise, values=(0.0, 1.0), generator=gen(42))
    assert best in (0.0, 1.0) and scores[best] == max(scores.values())
    with pytest.raises(ValueError, match="ucb_c must be"):
        bandit_baseline(env, tasks, "ucb1", noise, ucb_c=-1.0)
    with pytest.raises(ValueError, match="values must be"):
        tune_ucb_c(env, tasks, noise, values=())


# ----------------------------------------------------------------------------- the Bayes-optimal bandit value
def _bayes_value_by_brute_force(num_arms: int, num_pulls: int) -> float:
    """The same Bellman recursion over ordered per-arm (successes, failures), with none of the
    symmetry reduction (sorting, skipping equal arms) that the library's version uses."""
    def value(state, remaining):
        if remaining == 0:
            return 0.0
        best = 0.0
        for i, (s, f) in enumerate(state):
            p = (s + 1) / (s + f + 2)
            win = state[:i] + ((s + 1, f),) + state[i + 1:]
            lose = state[:i] + ((s, f + 1),) + state[i + 1:]
            best = max(best, p * (1 + value(win, remaining - 1)) + (1 - p) * value(lose, remaining - 1))
        return best

    return value(((0, 0),) * num_arms, num_pulls)


def test_bayes_optimal_bandit_value_by_hand_and_by_brute_force():
    assert bayes_optimal_bandit_value(1, 7) == pytest.approx(3.5)  # one arm: E[mean] per pull whatever one does
    assert bayes_optimal_bandit_value(3, 1) == pytest.approx(0.5)
    # k=2, n=2: pull once (1/2); stay after a success (posterior mean 2/3), switch after a failure (1/2)
    assert bayes_optimal_bandit_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)
    for k, n in ((2, 5), (3, 4), (4, 3)):
        assert bayes_optimal_bandit_value(k, n) == pytest.approx(_bayes_value_by_brute_force(k, n), rel=1e-12)
    assert bayes_optimal_bandit_value(5, 10) == pytest.approx(6.65999, abs=1e-5)


def test_bayes_optimal_bandit_value_bounds_every_baseline():
    """No agent beats it in expectation: the baselines' means on 4000 tasks stay below it (to
    3 standard errors), and the best of them comes within 0.1 of it."""
    env = BernoulliBandits(5, 10)
    tasks = env.sample_tasks(4000, gen(21))
    noise = env.sample_noise(env.trial_length, (4000,), gen(22))
    optimum = bayes_optimal_bandit_value(5, 10)
    means = {}
    for method in ("greedy", "thompson", "ucb1", "gittins"):
        totals = bandit_baseline(env, tasks, method, noise, gen(23)).rewards.sum(0)
        means[method] = float(totals.mean())
        assert means[method] < optimum + 3 * float(totals.std()) / math.sqrt(totals.numel()), (method, means)
    assert max(means.values()) > optimum - 0.1, means


@pytest.mark.parametrize("args, match", [((0, 10), "num_arms"), ((5, 0), "num_pulls"), ((5.0, 10), "num_arms"),
                                         ((True, 10), "num_arms"), ((5, 26), r"num_pulls must be an int in \[1, 25\]")])
def test_bayes_optimal_bandit_value_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        bayes_optimal_bandit_value(*args)
