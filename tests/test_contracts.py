"""The contracts of issue 24 against independent references: distributions as values (closed-form
Fisher vs a double-differentiated KL), the checks module (accepts exactly what it should,
property-tested), the MAML-RL building blocks that the meta-steps share (the stacked adaptation vs
a per-task loop, the surrogate pieces vs their definitions), and the MAML trainer's wiring of
config to meta-step and of samplers to episodes.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian

from functional_metarl import checks, distributions, envs, meta, nn, optim, runners
from functional_metarl.meta.adaptation import (
    InnerObjective,
    adaptation_path,
    check_policy,
    reinforce_loss,
    split_meta_params,
    task_losses,
)
from functional_metarl.meta.batch import check_rl_batch, check_train_data, per_step_batches
from functional_metarl.meta.estimators import OuterTerm
from functional_metarl.meta.meta_steps import MetaStepStats
from functional_metarl.meta.surrogates import (
    ScoreFn,
    adapted_distributions,
    check_surrogate_inputs,
    surrogate_of_distributions,
)
from functional_metarl.rl import surrogate_loss

DT = torch.float64
NAV = envs.Navigation2D(horizon=6)
POLICY = nn.gaussian_policy(2, 2, hidden=(5,))


def _batches(num_tasks: int = 3, episodes: int = 4, seed: int = 0) -> meta.RLBatch:
    gen = torch.Generator().manual_seed(seed)
    tasks = NAV.sample_tasks(num_tasks, gen)
    noise = envs.sample_noise(NAV.horizon, num_tasks, episodes, 2, gen)
    return meta.make_rl_batches(envs.rollout(POLICY.init(0), tasks, noise, NAV, POLICY))


# ----------------------------------------------------------------------------- distributions
def test_gaussian_value_matches_torch_distributions_and_its_fisher_is_the_kl_hessian():
    gen = torch.Generator().manual_seed(1)
    mean, log_std = torch.randn(4, 3, generator=gen, dtype=DT), 0.3 * torch.randn(4, 3, generator=gen, dtype=DT)
    dist: distributions.DistParams = distributions.GAUSSIAN.params((mean, log_std))
    x = torch.randn(4, 3, generator=gen, dtype=DT)
    ref = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(distributions.GAUSSIAN.log_prob(dist, x), ref.log_prob(x).sum(-1))
    torch.testing.assert_close(distributions.GAUSSIAN.entropy(dist), ref.entropy().sum(-1))
    noise = torch.randn(4, 3, generator=gen, dtype=DT)
    torch.testing.assert_close(distributions.GAUSSIAN.sample(dist, noise), mean + log_std.exp() * noise)
    # fisher(old, u) = d2/dnew2 KL(old || new) at new = old, times u: against autograd's Hessian
    u = (torch.randn(3, generator=gen, dtype=DT), torch.randn(3, generator=gen, dtype=DT))
    old = (mean[0], log_std[0])
    flat_old = torch.cat(old)
    h = hessian(lambda v: distributions.GAUSSIAN.kl(old, (v[:3], v[3:])))(flat_old)
    want = h @ torch.cat(u)
    got = torch.cat(distributions.GAUSSIAN.fisher(old, u))
    torch.testing.assert_close(got, want)
    assert isinstance(distributions.GAUSSIAN, distributions.Distribution)


def test_categorical_value_samples_by_gumbel_argmax_and_has_no_closed_form_fisher():
    logits = torch.tensor([[0.0, 2.0, -1.0]], dtype=DT)
    dist = distributions.CATEGORICAL.params(logits)
    ref = torch.distributions.Categorical(logits=logits)
    action = torch.tensor([1])
    torch.testing.assert_close(distributions.CATEGORICAL.log_prob(dist, action), ref.log_prob(action))
    torch.testing.assert_close(distributions.CATEGORICAL.entropy(dist), ref.entropy())
    assert int(distributions.CATEGORICAL.sample(dist, torch.tensor([[5.0, 0.0, 0.0]]))) == 0
    assert distributions.CATEGORICAL.fisher is None and distributions.CATEGORICAL.discrete
    assert nn.categorical_policy(2, 3).distribution is distributions.CATEGORICAL


# ----------------------------------------------------------------------------- checks
@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3),
                 st.none()))
def test_checks_accept_exactly_their_values(value):
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    cases = [
        (checks.positive_int, is_int and value >= 1),
        (checks.non_negative_int, is_int and value >= 0),
        (lambda v, n: checks.int_in_range(v, n, -1, 2), is_int and -1 <= value <= 2),
        (checks.positive_number, is_number and math.isfinite(value) and value > 0),
        (checks.non_negative_number, is_number and math.isfinite(value) and value >= 0),
        (checks.probability, is_number and math.isfinite(value) and 0 <= value <= 1),
        (checks.flag, isinstance(value, bool)),
    ]
    for check, ok in cases:
        if ok:
            assert check(value, "x") == value
        else:
            with pytest.raises((TypeError, ValueError), match="x"):
                check(value, "x")


def test_argument_type_error_is_both_kinds_and_kind_errors_use_it():
    assert issubclass(checks.ArgumentTypeError, TypeError) and issubclass(checks.ArgumentTypeError, ValueError)
    for call in (lambda: checks.positive_int(2.0, "n"), lambda: checks.flag("no", "f"),
                 lambda: checks.instance(3, "s", str), lambda: checks.one_of(1, "mode", ("a",))):
        with pytest.raises(checks.ArgumentTypeError):
            call()
    with pytest.raises(ValueError) as info:
        checks.one_of("c", "mode", ("a", "b"))
    assert not isinstance(info.value, TypeError)  # a wrong value of the right kind is a plain ValueError


def test_tensor_checks():
    ints, floats = torch.tensor([0, 2, 1]), torch.tensor([0.0, 1.0])
    assert checks.index_tensor(ints, "a", 3) is ints
    with pytest.raises(ValueError, match=r"a must hold indices in \[0, 2\)"):
        checks.index_tensor(ints, "a", 2)
    with pytest.raises(TypeError, match="a must be an integer Tensor"):
        checks.integer_tensor(floats, "a")
    with pytest.raises(TypeError, match="x must be a floating-point Tensor"):
        checks.floating_tensor(ints, "x")
    assert checks.binary_mask(floats, "m") is floats
    with pytest.raises(ValueError, match="m must hold only 0 and 1"):
        checks.binary_mask(floats + 0.5, "m")
    with pytest.raises(ValueError, match="r must be finite"):
        checks.finite_tensor(torch.tensor([1.0, math.inf]), "r")
    with pytest.raises(ValueError, match=r"b expected shape \(2,\) \(as a\)"):
        checks.same_shape(torch.zeros(3), "b", floats, "a")
    with pytest.raises(ValueError, match=r"t expected shape \(\*, 2\), got \(2, 3\)"):
        checks.tensor(torch.zeros(2, 3), "t", shape=(-1, 2))


# ----------------------------------------------------------------------------- MAML-RL building blocks
def test_adaptation_path_is_the_per_task_loop_and_task_losses_the_per_task_reinforce_loss():
    batch = _batches()
    params, inner = POLICY.init(3), optim.sgd(0.2)
    objective: InnerObjective = meta.MAML.inner_objective
    path = adaptation_path(params, (batch, batch), POLICY, inner, steps=2, first_order=False,
                           inner_objective=objective)
    assert len(path) == 3
    for n in range(3):
        one = meta.RLBatch(*(None if x is None else x[n] for x in batch))
        p = params
        for k in range(2):
            assert all(torch.allclose(path[k][key][n], p[key]) for key in p)
            g = grad(reinforce_loss)(p, one, POLICY)
            p = {key: p[key] - 0.2 * g[key] for key in p}
        for key in p:
            torch.testing.assert_close(path[2][key][n], p[key])
    stacked = {k: v.expand(3, *v.shape) for k, v in params.items()}
    want = torch.stack([reinforce_loss(params, meta.RLBatch(*(None if x is None else x[n] for x in batch)), POLICY)
                        for n in range(3)])
    torch.testing.assert_close(task_losses(POLICY, stacked, batch), want)
    assert per_step_batches(batch, 2) == (batch, batch) and per_step_batches((batch,), 1) == (batch,)


def test_surrogate_pieces_match_their_definitions():
    batch = _batches()
    params, inner = POLICY.init(4), optim.sgd(0.1)
    adapted = meta.adapt_tasks(params, batch, POLICY, inner)
    dist = adapted_distributions(adapted, batch, POLICY)
    mean, log_std = torch.func.vmap(POLICY.apply)(adapted, batch.obs)
    torch.testing.assert_close(dist[0], mean)
    old = torch.zeros_like(batch.mask)
    log_prob = POLICY.distribution.log_prob(dist, batch.actions)
    want = torch.stack([surrogate_loss(log_prob[n], old[n], batch.advantages[n], batch.mask[n]) for n in range(3)]).mean()
    torch.testing.assert_close(surrogate_of_distributions(dist, batch, old, POLICY), want)
    # the surrogate's gradient from meta.surrogate_gradient is grad of meta.maml_surrogate
    got = meta.surrogate_gradient(params, batch, batch, POLICY, inner)
    ref = grad(lambda p: meta.maml_surrogate(p, batch, batch, None, POLICY, inner)[0])(params)
    for k in params:
        torch.testing.assert_close(got.grads[k], ref[k])
    score: ScoreFn = meta.score_fn(POLICY, inner)
    loss, kl = score(params, batch, batch, POLICY.distribution.log_prob(got.dist, batch.actions), got.dist)
    torch.testing.assert_close(loss, got.loss)
    assert float(kl) == pytest.approx(0.0, abs=1e-12)


def test_shared_checks_name_what_is_wrong():
    batch = _batches()
    assert check_policy(POLICY) is POLICY
    with pytest.raises(ValueError, match="policy must be a policy template"):
        check_policy(nn.mlp(2, 2))
    check_rl_batch(batch, "valid", POLICY.distribution, task_axis=True)
    with pytest.raises(ValueError, match=r"valid.mask expected shape \[T, E\]"):
        check_rl_batch(batch, "valid", POLICY.distribution, task_axis=False)
    assert check_train_data((batch, batch), 2, POLICY.distribution) == (batch, batch)
    with pytest.raises(ValueError, match="3 per-step inner batches for 2 inner steps"):
        check_train_data((batch,) * 3, 2, POLICY.distribution)
    with pytest.raises(ValueError, match="old_log_prob expected shape"):
        check_surrogate_inputs(batch, torch.zeros(3), POLICY)
    params = POLICY.init(0)
    state = optim.meta_sgd(0.1).init(params)
    assert split_meta_params(meta.MetaParams(params, state)) == (params, state)
    assert split_meta_params(params) == (params, None)


def test_estimators_are_values_and_the_emaml_outer_term_is_zero_in_value():
    batch = _batches()
    params = POLICY.init(2)
    term: OuterTerm = meta.E_MAML.outer_term
    path = adaptation_path(params, batch, POLICY, optim.sgd(0.1), steps=1, first_order=False)
    assert float(term(path[:-1], (batch,), batch, POLICY)) == 0.0
    assert meta.MAML.outer_term is None and [e.name for e in meta.ESTIMATORS.values()] == list(meta.ESTIMATORS)
    assert meta.estimator_named("lvc") is meta.LVC
    meta.check_post_rewards(batch, "e-maml")  # make_rl_batches fills the post-update rewards
    with pytest.raises(ValueError, match="valid: estimator 'e-maml' needs the post-update rewards"):
        meta.check_post_rewards(meta.RLBatch(*batch[:4]), "e-maml")
    assert meta.FINAL_REWARD_WINDOW == 10


# ----------------------------------------------------------------------------- the MAML trainer's wiring
@pytest.mark.parametrize("meta_optimizer,state_type", [("trpo", meta.TRPOState), ("adam", optim.AdamState),
                                                       ("promp", meta.ProMPState)])
def test_make_meta_step_builds_the_configured_step(meta_optimizer, state_type):
    config = runners.MAMLConfig(meta_optimizer=meta_optimizer, horizon=6, device="cpu")
    step = runners.make_meta_step(config, POLICY, optim.sgd(0.1))
    assert isinstance(step, meta.MetaStep)
    params = POLICY.init(0)
    state = step.init(params)
    assert isinstance(state, state_type)
    batch = _batches()
    _, _, stats = step.update(params, state, batch, batch)
    stats: MetaStepStats
    assert {"meta_loss", "kl", "step_fraction", "grad_norm"} <= set(stats)


def test_split_trial_sampler_splits_one_trial_and_evaluation_reports_every_step():
    env = envs.BernoulliBandits(3, 4)
    sampler = runners.SplitTrialSampler(env)
    trial = sampler.sample_tasks(2, torch.Generator().manual_seed(0))
    assert isinstance(trial, runners.SplitTrialTasks) and trial.noise.gumbel_u.shape[0] == env.trial_length
    trainer = runners.MAMLTrainer(runners.MAMLConfig(horizon=1, hidden=(4,), device="cpu"), sampler=sampler)
    pre, _ = trainer.sample(trainer.params, trial, step=0)
    post, _ = trainer.sample(trainer.params, trial, step=1)
    assert pre.rewards.shape == (2, 1, 2) and post.rewards.shape == (2, 1, 2)
    returns, evaluation = trainer.evaluate_with_episodes(num_tasks=3, max_steps=1)
    assert isinstance(evaluation, runners.Evaluation) and len(evaluation.episodes) == 2
    assert set(returns) == {"0", "1"}


def test_stateless_samplers_share_their_trivial_state():
    from functional_metarl.runners.maml_samplers import StatelessSampler

    for sampler in (runners.PureFamilySampler(NAV), runners.SplitTrialSampler(envs.BernoulliBandits(3, 4))):
        assert isinstance(sampler, StatelessSampler) and isinstance(sampler, runners.MAMLSampler)
        assert sampler.for_evaluation(7) is sampler and sampler.state_dict() == {}
        with pytest.raises(ValueError, match="deterministic"):
            sampler.for_evaluation(7, deterministic=True)
