"""Meta-policy-gradient estimators (meta/estimators.py) against exact answers.

The reference is a tiny tabular MDP (2 states, 2 actions, horizon 1-3, undiscounted) whose
expected return ``V(theta)`` is computed exactly by enumerating every trajectory, with the policy's
logits read straight from the parameter table (``W[:, s] + b``), plain ``log_softmax`` and
``torch.func`` derivatives of that sum: nothing in the reference calls the library's losses.

Monte Carlo checks: ``M`` trajectories (or pairs of pre-/post-update trajectories) are drawn with a
fixed seed from their exact distributions; each distinct draw's estimate is computed once and
weighted by its count. The sample mean is compared with the exact value entry by entry with the
tolerance ``K * SE``, ``SE = sample std / sqrt(M)`` computed from the same samples (``K = 4.5``;
with at most 36 entries per check a false failure has probability below 3e-4). A bias is shown by
the opposite: some entry is more than ``BIAS_K = 10`` standard errors away.
"""

from __future__ import annotations

import itertools
import math

import optree
import pytest
import torch
from torch.func import grad, hessian

from functional_metarl import meta, nn, optim, rl
from functional_metarl.envs import Navigation2D, rollout, sample_noise
from functional_metarl.meta import (
    DICE,
    E_MAML,
    ESTIMATORS,
    LVC,
    MAML,
    Estimator,
    ProMPConfig,
    ProMPState,
    RLBatch,
    dice_inner_loss,
    dice_objective,
    emaml_score_term,
    estimator_named,
    inner_loss,
    lvc_inner_loss,
    magic_box,
    maml_surrogate,
    make_rl_batches,
    reinforce_loss,
)
from functional_metarl.meta.surrogates import mean_kl
from functional_metarl.tree import ravel

DT = torch.float64
K = 4.5
BIAS_K = 10.0
NUM_S, NUM_A = 2, 2

# ----------------------------------------------------------------------------- the tiny MDP

P0 = torch.tensor([0.6, 0.4], dtype=DT)  # initial state distribution
TRANS = torch.tensor([[[0.8, 0.2], [0.3, 0.7]], [[0.5, 0.5], [0.1, 0.9]]], dtype=DT)  # P[s, a, s']
REWARD = torch.tensor([[1.0, -0.5], [0.2, 2.0]], dtype=DT)  # r[s, a]
BASELINE = torch.tensor([[0.3, -0.2], [0.5, 0.1], [0.0, 0.4]], dtype=DT)  # b[t, s]: any fixed table
POLICY = nn.categorical_policy(NUM_S, NUM_A, hidden=())  # logits = W onehot(s) + b


def _theta() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {"0.weight": 0.8 * torch.randn(NUM_A, NUM_S, generator=gen, dtype=DT),
            "0.bias": 0.5 * torch.randn(NUM_A, generator=gen, dtype=DT)}


def trajectories(horizon: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every (states, actions) of the MDP at this horizon: (2 * 2) ** horizon of them."""
    out = []
    for states in itertools.product(range(NUM_S), repeat=horizon):
        for actions in itertools.product(range(NUM_A), repeat=horizon):
            out.append((states, actions))
    return out


def ref_log_pi(params: dict[str, torch.Tensor], s: int, a: int) -> torch.Tensor:
    return torch.log_softmax(params["0.weight"][:, s] + params["0.bias"], dim=0)[a]


def ref_probs(params: dict[str, torch.Tensor], horizon: int) -> torch.Tensor:
    """P(tau | theta) of every trajectory of ``trajectories(horizon)``, differentiable."""
    out = []
    for states, actions in trajectories(horizon):
        logp = torch.log(P0[states[0]])
        for t in range(horizon):
            logp = logp + ref_log_pi(params, states[t], actions[t])
            if t + 1 < horizon:
                logp = logp + torch.log(TRANS[states[t], actions[t], states[t + 1]])
        out.append(torch.exp(logp))
    return torch.stack(out)


def ref_returns(horizon: int) -> torch.Tensor:
    return torch.tensor([sum(float(REWARD[s, a]) for s, a in zip(st, ac)) for st, ac in trajectories(horizon)], dtype=DT)


def ref_value(params: dict[str, torch.Tensor], horizon: int) -> torch.Tensor:
    """Exact expected (undiscounted) return V(theta)."""
    return (ref_probs(params, horizon) * ref_returns(horizon)).sum()


def flat_hessian(fn, params: dict[str, torch.Tensor]) -> torch.Tensor:
    flat, unravel = ravel(params)
    return hessian(lambda x: fn(unravel(x)))(flat)


def flat_grad(fn, params: dict[str, torch.Tensor]) -> torch.Tensor:
    return ravel(grad(fn)(params))[0]


def batch_of(taus: list[tuple[tuple[int, ...], tuple[int, ...]]], with_baseline: bool = True) -> RLBatch:
    """One task's RLBatch [T, E] of these trajectories: one-hot obs, advantages G_t - b[t, s_t]
    (reward-to-go, gamma = 1), per-step rewards, advantage_std 1 (not normalized)."""
    horizon = len(taus[0][0])
    states = torch.tensor([st for st, _ in taus]).T  # [T, E]
    actions = torch.tensor([ac for _, ac in taus]).T
    rewards = REWARD[states, actions]
    returns = torch.flip(torch.cumsum(torch.flip(rewards, [0]), 0), [0])
    base = BASELINE[:horizon].gather(1, states) if with_baseline else torch.zeros_like(returns)
    obs = torch.nn.functional.one_hot(states, NUM_S).to(DT)
    mask = torch.ones_like(rewards)
    return RLBatch(obs, actions, returns - base, mask, rewards, torch.ones((), dtype=DT))


def stacked(batch: RLBatch) -> RLBatch:
    """Add a task axis of one."""
    return RLBatch(*(x.unsqueeze(0) for x in batch))


def mc_mean_and_se(counts: torch.Tensor, estimates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and its standard error of draws given as counts of distinct estimates [D, ...]."""
    m = counts.sum()
    w = (counts / m).reshape(-1, *([1] * (estimates.ndim - 1)))
    mean = (w * estimates).sum(0)
    var = (w * (estimates - mean) ** 2).sum(0) * m / (m - 1)
    return mean, torch.sqrt(var / m)


def draw_counts(probs: torch.Tensor, num: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.multinomial(probs.detach().float(), num, replacement=True, generator=gen)
    return torch.bincount(idx, minlength=probs.shape[0]).to(DT)


def z_scores(mean: torch.Tensor, se: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|mean - exact| / SE per entry; an entry whose estimates never vary (SE 0) gets the floor
    SE = 1e-9 * max |exact| (round-off), so it cannot pass or fail on a division by zero."""
    return (mean - exact).abs() / se.clamp_min(1e-9 * float(exact.abs().max()))


def assert_matches(mean: torch.Tensor, se: torch.Tensor, exact: torch.Tensor) -> None:
    z = z_scores(mean, se, exact)
    assert float(z.max()) < K, f"max |mean - exact| / SE = {float(z.max()):.2f} >= {K}\n{mean}\n{exact}\n{se}"


def max_z(mean: torch.Tensor, se: torch.Tensor, exact: torch.Tensor) -> float:
    return float(z_scores(mean, se, exact).max())


# ----------------------------------------------------------------------------- the reference itself


def test_reference_enumeration_is_a_distribution_and_matches_sampling():
    theta = _theta()
    for horizon in (1, 2, 3):
        probs = ref_probs(theta, horizon)
        assert len(trajectories(horizon)) == 4 ** horizon
        torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=DT))
    # the exact value against a plain simulation of the MDP (independent of the enumeration)
    gen = torch.Generator().manual_seed(0)
    num, horizon = 40000, 3
    s = torch.multinomial(P0.float(), num, replacement=True, generator=gen)
    total = torch.zeros(num, dtype=DT)
    for t in range(horizon):
        pi = torch.softmax(theta["0.weight"][:, s].T + theta["0.bias"], dim=1)
        a = torch.multinomial(pi.float(), 1, generator=gen).squeeze(1)
        total += REWARD[s, a]
        s = torch.multinomial(TRANS[s, a].float(), 1, generator=gen).squeeze(1)
    se = total.std() / math.sqrt(num)
    assert abs(float(total.mean() - ref_value(theta, horizon))) < K * float(se)


# ----------------------------------------------------------------------------- curvature (formulation II)


def _hessian_estimates(estimator: Estimator, horizon: int, theta) -> torch.Tensor:
    """The estimator's Hessian estimate of V / horizon, one per trajectory: [4**H, P, P]."""
    return torch.stack([
        flat_hessian(lambda p, b=batch_of([tau]): -inner_loss(p, b, POLICY, estimator=estimator), theta)
        for tau in trajectories(horizon)
    ])


def _exact_hessian(theta, horizon: int) -> torch.Tensor:
    return flat_hessian(lambda p: ref_value(p, horizon), theta) / horizon


@pytest.mark.parametrize("horizon", [1, 3])
def test_dice_hessian_is_unbiased(horizon):
    theta = _theta()
    counts = draw_counts(ref_probs(theta, horizon), 400_000, torch.Generator().manual_seed(10 + horizon))
    mean, se = mc_mean_and_se(counts, _hessian_estimates(DICE, horizon, theta))
    assert_matches(mean, se, _exact_hessian(theta, horizon))


def test_lvc_hessian_is_exact_at_horizon_one_and_biased_beyond():
    theta = _theta()
    counts = draw_counts(ref_probs(theta, 1), 400_000, torch.Generator().manual_seed(21))
    mean, se = mc_mean_and_se(counts, _hessian_estimates(LVC, 1, theta))
    assert_matches(mean, se, _exact_hessian(theta, 1))
    # at horizon 3 it drops the cross-time score products s_k s_j^T A_max(k,j), k != j
    counts = draw_counts(ref_probs(theta, 3), 400_000, torch.Generator().manual_seed(23))
    mean, se = mc_mean_and_se(counts, _hessian_estimates(LVC, 3, theta))
    assert max_z(mean, se, _exact_hessian(theta, 3)) > BIAS_K


@pytest.mark.parametrize("estimator", [MAML, E_MAML], ids=lambda e: e.name)
def test_maml_hessian_is_biased(estimator):
    # sum_t grad^2 log pi_t A_t only: biased even at horizon 1 (no s s^T A term)
    theta = _theta()
    counts = draw_counts(ref_probs(theta, 1), 400_000, torch.Generator().manual_seed(31))
    mean, se = mc_mean_and_se(counts, _hessian_estimates(estimator, 1, theta))
    assert max_z(mean, se, _exact_hessian(theta, 1)) > BIAS_K


def test_dice_objective_gradient_and_hessian_are_unbiased_with_its_baseline():
    theta, horizon = _theta(), 3
    taus = trajectories(horizon)

    def objective(p, tau):
        b = batch_of([tau])
        log_prob = rl.categorical_log_prob(POLICY.apply(p, b.obs), b.actions)
        values = BASELINE[:horizon].gather(1, b.obs.argmax(-1))
        return dice_objective(log_prob, b.rewards, b.mask, values)

    grads = torch.stack([flat_grad(lambda p, t=tau: objective(p, t), theta) for tau in taus])
    hessians = torch.stack([flat_hessian(lambda p, t=tau: objective(p, t), theta) for tau in taus])
    values = torch.stack([objective(theta, tau) for tau in taus])
    torch.testing.assert_close(values, ref_returns(horizon))  # value: the sampled return (box = 1)
    counts = draw_counts(ref_probs(theta, horizon), 400_000, torch.Generator().manual_seed(41))
    mean, se = mc_mean_and_se(counts, grads)
    assert_matches(mean, se, flat_grad(lambda p: ref_value(p, horizon), theta))
    mean, se = mc_mean_and_se(counts, hessians)
    assert_matches(mean, se, flat_hessian(lambda p: ref_value(p, horizon), theta))


def test_dice_inner_loss_is_the_dice_objective_on_advantage_increments():
    # gamma = 1, A = G - b: same gradient and Hessian as -dice_objective(rewards, baselines) / T
    theta, horizon = _theta(), 3
    for tau in trajectories(horizon)[::7]:
        b = batch_of([tau])

        def dice(p, b=b):
            log_prob = rl.categorical_log_prob(POLICY.apply(p, b.obs), b.actions)
            return -dice_objective(log_prob, b.rewards, b.mask, BASELINE[:horizon].gather(1, b.obs.argmax(-1))) / horizon

        lib = lambda p, b=b: inner_loss(p, b, POLICY, estimator=DICE)  # noqa: E731
        torch.testing.assert_close(flat_grad(lib, theta), flat_grad(dice, theta), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(flat_hessian(lib, theta), flat_hessian(dice, theta), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the meta-gradient (formulation I)

ALPHA = 0.5


def _exact_j_one(theta, horizon: int) -> torch.Tensor:
    """J_I(theta) = sum_D P(D | theta) V(theta'(D)), theta' one SGD step of ALPHA on the REINFORCE
    loss of the single trajectory D (hand-written: theta' = theta + ALPHA grad(mean log pi A))."""
    total = 0.0
    probs = ref_probs(theta, horizon)
    for i, tau in enumerate(trajectories(horizon)):
        b = batch_of([tau])
        states = b.obs.argmax(-1)[:, 0]

        def pg(p):
            return sum(ref_log_pi(p, int(states[t]), int(b.actions[t, 0])) * b.advantages[t, 0]
                       for t in range(horizon)) / horizon

        g = torch.func.grad(pg)(theta)
        adapted = {k: theta[k] + ALPHA * g[k] for k in theta}
        total = total + probs[i] * ref_value(adapted, horizon)
    return total


def _meta_gradient_estimates(estimator: Estimator, horizon: int, theta, gen: torch.Generator, num: int):
    """Counts over (pre-update D, post-update D') pairs and the estimator's -d(loss) per pair."""
    taus = trajectories(horizon)
    inner = optim.sgd(ALPHA)
    counts_d = draw_counts(ref_probs(theta, horizon), num, gen)
    counts, estimates = [], []
    for i, tau in enumerate(taus):
        if counts_d[i] == 0:
            continue
        train = stacked(batch_of([tau]))
        adapted = {k: v[0] for k, v in meta.adapt_tasks(theta, train, POLICY, inner).items()}
        counts_post = draw_counts(ref_probs(adapted, horizon), int(counts_d[i]), gen)
        for j, tau_post in enumerate(taus):
            if counts_post[j] == 0:
                continue
            valid = stacked(batch_of([tau_post]))
            g = grad(lambda p: -maml_surrogate(p, train, valid, None, POLICY, inner, estimator=estimator)[0])(theta)
            counts.append(counts_post[j])
            estimates.append(ravel(g)[0])
    return torch.stack(counts), torch.stack(estimates)


def test_emaml_meta_gradient_is_unbiased_for_formulation_one_and_maml_is_not():
    theta, horizon = _theta(), 2
    # the surrogates estimate J / horizon (each episode's steps are averaged)
    exact = flat_grad(lambda p: _exact_j_one(p, horizon), theta) / horizon
    counts, estimates = _meta_gradient_estimates(E_MAML, horizon, theta, torch.Generator().manual_seed(51), 300_000)
    mean, se = mc_mean_and_se(counts, estimates)
    assert_matches(mean, se, exact)
    counts, estimates = _meta_gradient_estimates(MAML, horizon, theta, torch.Generator().manual_seed(52), 300_000)
    mean, se = mc_mean_and_se(counts, estimates)
    assert max_z(mean, se, exact) > BIAS_K  # the dropped score term of the pre-update episodes


# ----------------------------------------------------------------------------- special cases, exactly


def _nav_problem(seed: int = 0, tasks: int = 3, episodes: int = 4, horizon: int = 6):
    env = Navigation2D(horizon=horizon)
    policy = nn.gaussian_policy(2, 2, hidden=(8,))
    params = {k: v.to(DT) for k, v in policy.init(seed).items()}
    gen = torch.Generator().manual_seed(seed)
    goals = env.sample_tasks(tasks, gen)
    goals = goals._replace(goal=goals.goal.to(DT))
    train_eps = rollout(params, goals, sample_noise(horizon, tasks, episodes, 2, gen).to(DT), env, policy)
    train = make_rl_batches(train_eps)
    adapted = meta.adapt_tasks(params, train, policy, optim.sgd(0.1))
    valid_eps = rollout(adapted, goals, sample_noise(horizon, tasks, episodes, 2, gen).to(DT), env, policy,
                        params_per_task=True)
    return params, train, make_rl_batches(valid_eps), policy


def test_first_derivative_of_every_inner_loss_is_reinforce():
    params, train, _, policy = _nav_problem()
    one = RLBatch(*(x[0] for x in train))
    expected = grad(reinforce_loss)(params, one, policy)
    for estimator in ESTIMATORS.values():
        got = grad(lambda p, e=estimator: inner_loss(p, one, policy, estimator=e))(params)
        for k in params:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-12, atol=1e-12)
    # and on log-probs directly: the gradient of DiCE's and LVC's loss is policy_gradient_loss's
    log_prob = torch.randn(5, 3, dtype=DT)
    adv, mask = torch.randn(5, 3, dtype=DT), torch.tensor([[1.0] * 3] * 3 + [[1.0, 0.0, 1.0]] * 2, dtype=DT)
    adv = adv * mask
    pg = grad(rl.policy_gradient_loss)(log_prob, adv, mask)
    for fn in (dice_inner_loss, lvc_inner_loss):
        torch.testing.assert_close(grad(fn)(log_prob, adv, mask), pg, rtol=1e-12, atol=1e-12)


def test_magic_box_is_one_with_the_derivatives_of_its_argument():
    x = torch.tensor([0.3, -1.2], dtype=DT)
    torch.testing.assert_close(magic_box(x), torch.ones_like(x))
    f = lambda v: (magic_box(v ** 2) * torch.tensor([2.0, 3.0], dtype=DT)).sum()  # noqa: E731
    # d/dv = 2 v * w; d2/dv2 = (2 + 4 v^2) w on the diagonal
    torch.testing.assert_close(grad(f)(x), 2 * x * torch.tensor([2.0, 3.0], dtype=DT))
    torch.testing.assert_close(torch.diag(hessian(f)(x)), (2 + 4 * x ** 2) * torch.tensor([2.0, 3.0], dtype=DT))


def test_value_and_adapted_params_are_maml_s_and_first_order_reduces_to_fomaml():
    params, train, valid, policy = _nav_problem(seed=1)
    inner = optim.sgd(0.1)
    ref_loss, ref_adapted = maml_surrogate(params, train, valid, None, policy, inner)
    for estimator in ESTIMATORS.values():
        loss, adapted = maml_surrogate(params, train, valid, None, policy, inner, estimator=estimator)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        for k in params:
            torch.testing.assert_close(adapted[k], ref_adapted[k], rtol=1e-12, atol=1e-12)
    fo = grad(lambda p: maml_surrogate(p, train, valid, None, policy, inner, first_order=True)[0])(params)
    for estimator in (DICE, LVC):
        got = grad(lambda p, e=estimator: maml_surrogate(p, train, valid, None, policy, inner, first_order=True,
                                                         estimator=e)[0])(params)
        for k in params:
            torch.testing.assert_close(got[k], fo[k], rtol=1e-12, atol=1e-12)
    # e-maml, first order: first-order MAML plus the score term of the pre-update episodes
    got = grad(lambda p: maml_surrogate(p, train, valid, None, policy, inner, first_order=True,
                                        estimator=E_MAML)[0])(params)
    stack = {k: v.expand(3, *v.shape) for k, v in params.items()}
    score = grad(lambda p: emaml_score_term([{k: v.expand(3, *v.shape) for k, v in p.items()}], (train,), valid,
                                            policy))(params)
    for k in params:
        torch.testing.assert_close(got[k], fo[k] + score[k], rtol=1e-10, atol=1e-12)
    assert float(emaml_score_term([stack], (train,), valid, policy)) == 0.0
    # and MAML is maml_surrogate's default, second order included
    second = grad(lambda p: maml_surrogate(p, train, valid, None, policy, inner)[0])(params)
    got = grad(lambda p: maml_surrogate(p, train, valid, None, policy, inner, estimator=MAML)[0])(params)
    assert all(torch.equal(got[k], second[k]) for k in params)


def test_emaml_score_term_by_hand_on_a_single_task():
    params, train, valid, policy = _nav_problem(seed=2, tasks=1)
    stack = {k: v.unsqueeze(0) for k, v in params.items()}
    got = grad(lambda p: emaml_score_term([{k: v.unsqueeze(0) for k, v in p.items()}], (train,), valid, policy))(params)
    # one task: baseline 0; u = mean reward per step / advantage std
    u = float(rl.masked_episode_mean(valid.rewards[0], valid.mask[0]) / valid.advantage_std[0])

    def log_lik(p):
        mean, log_std = policy.apply(p, train.obs[0])
        return (rl.gaussian_log_prob(mean, log_std, train.actions[0]) * train.mask[0]).sum()

    expected = grad(log_lik)(params)
    for k in params:
        torch.testing.assert_close(got[k], -u * expected[k], rtol=1e-10, atol=1e-12)
    del stack


def test_multi_step_estimators_keep_the_adapted_params():
    params, train, valid, policy = _nav_problem(seed=3)
    inner = optim.sgd(0.1)
    two = (train, train)
    ref_loss, ref_adapted = maml_surrogate(params, two, valid, None, policy, inner, steps=2)
    for estimator in (E_MAML, DICE, LVC):
        loss, adapted = maml_surrogate(params, two, valid, None, policy, inner, steps=2, estimator=estimator)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        for k in params:
            torch.testing.assert_close(adapted[k], ref_adapted[k], rtol=1e-12, atol=1e-12)


def test_line_search_scoring_is_every_estimators_surrogate_and_the_kl_in_one_pass():
    # meta.trpo's line search scores new params with meta.score_fn (one forward pass for the
    # loss and the KL): it must equal each estimator's own surrogate value and the KL computed
    # from a separate forward pass of its adapted params.
    params, train, valid, policy = _nav_problem(seed=4)
    inner = optim.sgd(0.1)
    gen = torch.Generator().manual_seed(5)
    moved = {k: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
    for steps, train_data in ((1, train), (2, (train, train))):
        _, adapted0 = maml_surrogate(params, train_data, valid, None, policy, inner, steps=steps)
        old_dist = policy.distribution.params(policy.apply_stacked(adapted0, valid.obs))
        old_log_prob = policy.distribution.log_prob(old_dist, valid.actions)
        with torch.no_grad():
            loss, kl = meta.score_fn(policy, inner, steps=steps)(moved, train_data, valid, old_log_prob, old_dist)
        assert float(kl) > 1e-6  # the moved params are not the old ones
        for estimator in ESTIMATORS.values():
            ref_loss, adapted = maml_surrogate(moved, train_data, valid, old_log_prob, policy, inner, steps=steps,
                                               estimator=estimator)
            new_dist = policy.distribution.params(policy.apply_stacked(adapted, valid.obs))
            ref_kl = mean_kl(policy, old_dist, new_dist, valid.mask)
            torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(kl, ref_kl.detach(), rtol=1e-12, atol=1e-12)


def test_meta_steps_take_the_estimator():
    params, train, valid, policy = _nav_problem(seed=4)
    inner = optim.sgd(0.1)
    default, _, _ = meta.trpo(policy, inner).update(params, meta.TRPOState(), train, valid)
    explicit, _, _ = meta.trpo(policy, inner, estimator=MAML).update(params, meta.TRPOState(), train, valid)
    assert all(torch.equal(default[k], explicit[k]) for k in params)
    dice, _, stats = meta.trpo(policy, inner, estimator=DICE).update(params, meta.TRPOState(), train, valid)
    assert math.isfinite(stats["grad_norm"]) and any(not torch.equal(dice[k], default[k]) for k in params)
    # Adam meta-step: the update is Adam's first step on the estimator's gradient
    adam = optim.adam(1e-2)
    step = meta.gradient(policy, inner, adam, estimator=LVC)
    new, _, _ = step.update(params, step.init(params), train, valid)
    g = grad(lambda p: maml_surrogate(p, train, valid, None, policy, inner, estimator=LVC)[0])(params)
    updates, _ = adam.update(g, adam.init(params), params)
    for k in params:
        torch.testing.assert_close(new[k], params[k] + updates[k], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- ProMP meta-step


def test_promp_first_epoch_is_a_step_on_the_estimator_gradient():
    # at the start of the step the clipped ratio is 1 and the KL penalty has zero gradient, so
    # one epoch of SGD is one SGD step on the estimator's surrogate gradient
    params, train, valid, policy = _nav_problem(seed=5)
    inner, lr = optim.sgd(0.1), 0.05
    sgd = optim.sgd(lr)
    for estimator in (LVC, E_MAML):
        step = meta.promp(policy, inner, sgd, estimator=estimator, config=ProMPConfig(epochs=1))
        state = step.init(params)
        assert isinstance(state, ProMPState)
        new, state2, stats = step.update(params, state, train, valid)
        assert isinstance(state2, ProMPState)
        assert isinstance(stats, dict) and set(stats) == {"meta_loss", "loss_after", "kl", "step_fraction",
                                                          "grad_norm", "inner_kl", "kl_coef"}
        assert all(isinstance(v, float) for v in stats.values())
        g = grad(lambda p, e=estimator: maml_surrogate(p, train, valid, None, policy, inner, estimator=e)[0])(params)
        for k in params:
            torch.testing.assert_close(new[k], params[k] - lr * g[k], rtol=1e-10, atol=1e-12)


def test_promp_kl_coefficient_adapts_and_epochs_lower_the_clipped_loss():
    params, train, valid, policy = _nav_problem(seed=6)
    inner, adam = optim.sgd(0.1), optim.adam(1e-2)
    tight = ProMPConfig(epochs=3, target_kl=1e-9, init_kl_coef=0.1)
    step = meta.promp(policy, inner, adam, config=tight)
    _, state, stats = step.update(params, step.init(params), train, valid)
    assert stats["inner_kl"] > 1.5 * tight.target_kl and float(state.kl_coef) == pytest.approx(0.2)
    loose = ProMPConfig(epochs=3, target_kl=10.0, init_kl_coef=0.1)
    step = meta.promp(policy, inner, adam, config=loose)
    _, state, stats = step.update(params, step.init(params), train, valid)
    assert float(state.kl_coef) == pytest.approx(0.05)
    assert stats["loss_after"] < stats["meta_loss"]  # the clipped surrogate went down over the epochs
    assert stats["kl"] > 0


# ----------------------------------------------------------------------------- bad input


def test_unknown_estimator_is_refused_everywhere():
    params, train, valid, policy = _nav_problem(seed=7)
    inner = optim.sgd(0.1)
    # the names configs use map to the values, and nothing else does
    assert set(ESTIMATORS) == {"maml", "e-maml", "dice", "lvc"}
    assert all(estimator_named(name) is e and e.name == name for name, e in ESTIMATORS.items())
    with pytest.raises(ValueError, match="estimator must be one of .*got 'dcie'"):
        estimator_named("dcie")
    with pytest.raises(TypeError, match="estimator must be a str"):
        estimator_named(None)
    # everything that takes an estimator takes an Estimator value, never a name or anything else
    for call in (
        lambda: maml_surrogate(params, train, valid, None, policy, inner, estimator="promp"),
        lambda: meta.trpo(policy, inner, estimator="DiCE"),
        lambda: meta.gradient(policy, inner, optim.adam(), estimator="x"),
        lambda: inner_loss(params, RLBatch(*(x[0] for x in train)), policy, estimator="lvc2"),
        lambda: meta.promp(policy, inner, optim.adam(), estimator="ppo"),
        lambda: meta.surrogate_gradient_fn(policy, inner, estimator=None),
    ):
        with pytest.raises(TypeError, match="estimator must be an? Estimator"):
            call()


def test_emaml_needs_the_post_update_rewards():
    params, train, valid, policy = _nav_problem(seed=8)
    inner = optim.sgd(0.1)
    bare = RLBatch(valid.obs, valid.actions, valid.advantages, valid.mask)  # the four fields only
    for est in (MAML, DICE, LVC):  # these do not read them
        assert not est.needs_post_rewards
        maml_surrogate(params, train, bare, None, policy, inner, estimator=est)
    assert E_MAML.needs_post_rewards
    with pytest.raises(ValueError, match="valid.rewards"):
        maml_surrogate(params, train, bare, None, policy, inner, estimator=E_MAML)
    with pytest.raises(ValueError, match="valid.rewards"):
        meta.trpo(policy, inner, estimator=E_MAML).update(params, meta.TRPOState(), train, bare)
    step = meta.promp(policy, inner, optim.adam(), estimator=E_MAML)
    with pytest.raises(ValueError, match="valid.rewards"):
        step.update(params, step.init(params), train, bare)
    with pytest.raises(ValueError, match="valid.rewards expected shape"):
        maml_surrogate(params, train, valid._replace(rewards=valid.rewards[:, :-1]), None, policy, inner,
                       estimator=E_MAML)
    with pytest.raises(ValueError, match="advantage_std expected shape"):
        maml_surrogate(params, train, valid._replace(advantage_std=valid.advantage_std[:1]), None, policy, inner,
                       estimator=E_MAML)


def test_emaml_score_term_needs_one_batch_per_params():
    params, train, valid, policy = _nav_problem(seed=10)
    stack = {k: v.expand(3, *v.shape) for k, v in params.items()}
    with pytest.raises(ValueError, match="path and train"):
        emaml_score_term([stack, stack], (train,), valid, policy)
    with pytest.raises(ValueError, match="path and train"):
        emaml_score_term([], (), valid, policy)


@pytest.mark.parametrize("field,value,error", [("epochs", 0, ValueError), ("clip_eps", 0.0, ValueError),
                                               ("target_kl", -1.0, ValueError), ("init_kl_coef", float("nan"), ValueError),
                                               ("epochs", 2.5, TypeError)])  # a wrong kind: TypeError
def test_bad_promp_config_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        ProMPConfig(**{field: value})


def test_promp_refuses_meta_params_and_bad_state():
    params, train, valid, policy = _nav_problem(seed=9)
    inner = optim.sgd(0.1)
    step = meta.promp(policy, inner, optim.adam())
    with pytest.raises(ValueError, match="MetaParams"):
        step.update(meta.MetaParams(params, ()), step.init(params), train, valid)
    with pytest.raises(TypeError, match="ProMPState"):
        step.update(params, optim.adam().init(params), train, valid)
    with pytest.raises(TypeError, match="ProMPConfig"):
        meta.promp(policy, inner, optim.adam(), config={"epochs": 3})


# ----------------------------------------------------------------------------- the trainer and the example


def _tiny(**overrides):
    from functional_metarl.runners import MAMLConfig

    base = dict(iterations=2, meta_batch_size=3, episodes_per_task=3, horizon=10, hidden=(8,), seed=0,
                device="cpu", checkpoint_every=1)
    base.update(overrides)
    return MAMLConfig(**base)


@pytest.mark.parametrize("overrides", [dict(estimator="dice"), dict(estimator="e-maml", meta_optimizer="adam"),
                                       dict(estimator="lvc", meta_optimizer="promp", meta_lr=1e-2)])
def test_trainer_resume_with_an_estimator_is_bit_identical(tmp_path, overrides):
    from functional_metarl.runners import CHECKPOINT_FILE, MAMLTrainer

    straight = MAMLTrainer(_tiny(iterations=4, **overrides))
    straight.train(progress=False)
    first = MAMLTrainer(_tiny(iterations=2, checkpoint_every=50, **overrides), tmp_path)
    first.train(progress=False)
    second = MAMLTrainer(_tiny(iterations=4, **overrides), tmp_path)
    second.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    second.train(progress=False)
    for name in straight.params:
        assert torch.equal(second.params[name], straight.params[name]), name
    drop = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert drop(second.history) == drop(straight.history)
    # the meta-step's state (Adam's moments, ProMP's KL coefficient) resumed exactly too
    straight_state, second_state = optree.tree_leaves(straight.meta_state), optree.tree_leaves(second.meta_state)
    assert len(straight_state) == len(second_state)
    assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(second_state, straight_state))
    if overrides.get("meta_optimizer") == "promp":
        assert "kl_coef" in straight.history[0] and isinstance(straight.meta_state, ProMPState)
        assert float(second.meta_state.kl_coef) == float(straight.meta_state.kl_coef)
    # the estimator changed the training (not silently ignored): maml's run differs
    plain = MAMLTrainer(_tiny(iterations=4, **{k: v for k, v in overrides.items() if k != "estimator"}))
    plain.train(progress=False)
    assert any(not torch.equal(plain.params[n], straight.params[n]) for n in plain.params)


@pytest.mark.parametrize("field,value,error", [("estimator", "dicey", ValueError), ("estimator", 3, TypeError),
                                               ("meta_optimizer", "ppo", ValueError), ("promp", 5, TypeError)])
def test_bad_estimator_config_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        _tiny(**{field: value})


def test_config_round_trips_the_promp_settings():
    from functional_metarl.runners import MAMLConfig

    cfg = _tiny(meta_optimizer="promp", promp=ProMPConfig(epochs=2, clip_eps=0.2))
    again = MAMLConfig(**cfg.to_dict())
    assert again.promp == cfg.promp and again.estimator == "maml"


def test_example_cli_passes_the_estimator_and_promp_flags(tmp_path, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "maml_nav.py"
    spec = importlib.util.spec_from_file_location("example_maml_nav_estimators", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # its dataclasses look their module up
    monkeypatch.syspath_prepend(str(path.parent))  # as `python examples/<name>.py` does: _cli
    spec.loader.exec_module(example)
    # the nested configs' fields keep their prefix: --promp.epochs, --promp.target-kl
    monkeypatch.setattr(sys, "argv", ["maml_nav.py", "--estimator", "lvc", "--meta-optimizer", "promp", "--meta-lr",
                                      "3e-3", "--promp.epochs", "4", "--promp.target-kl", "0.02", "--output",
                                      str(tmp_path)])
    cfg = example.parse_args().config
    assert (cfg.estimator, cfg.meta_optimizer, cfg.meta_lr) == ("lvc", "promp", 3e-3)
    assert cfg.promp == ProMPConfig(epochs=4, target_kl=0.02)
