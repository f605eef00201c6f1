"""RL²: the GRU param dict, the batched recurrent rollout, the PPO loss, the trainer."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from functional_metarl.envs import BanditTask, BernoulliBandits, MDPNoise, TabularMDP, bandit_baseline
from functional_metarl.meta import (
    PPOConfig,
    Trial,
    gumbel_sample,
    rl2_advantages,
    rl2_ppo_grad,
    rl2_ppo_loss,
    rl2_rollout,
    rl2_train_step,
    sample_rl2_noise,
)
from functional_metarl.meta import RL2Noise
from functional_metarl.nn import RecurrentFunctional, gru_actor_critic, gru_cell, rl2_inputs
from functional_metarl.optim import adam
from functional_metarl.runners import CHECKPOINT_FILE, RL2Config, RL2Trainer, make_rl2_env, mean_and_stderr


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the GRU param dict
def test_gru_apply_equals_torch_gru_cell_and_sequence_equals_steps():
    net = gru_actor_critic(obs_dim=3, num_actions=4, hidden=16)
    assert isinstance(net, RecurrentFunctional) and net.in_dim == 3 + 4 + 2 and net.obs_dim == 3
    params = net.init(0)
    x = torch.randn(7, 5, net.in_dim, generator=gen(1))
    h0 = torch.randn(5, 16, generator=gen(2))
    cell = torch.nn.GRUCell(net.in_dim, 16)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(params["gru." + name])
    h, hs, logits_steps, values_steps = h0, [], [], []
    for t in range(7):
        logits, value, h = net.apply(params, x[t], h)
        ref_logits, ref_value, ref_h = net.apply_module(params, x[t], hs[-1] if hs else h0)
        torch.testing.assert_close(h, cell(x[t], hs[-1] if hs else h0))  # torch's own GRU cell
        torch.testing.assert_close(h, gru_cell(params, x[t], hs[-1] if hs else h0))
        torch.testing.assert_close((logits, value, h), (ref_logits, ref_value, ref_h))
        hs.append(h)
        logits_steps.append(logits)
        values_steps.append(value)
    seq_logits, seq_values, seq_h = net.apply_sequence(params, x, h0)
    torch.testing.assert_close(seq_h, torch.stack(hs))
    torch.testing.assert_close(seq_logits, torch.stack(logits_steps))
    torch.testing.assert_close(seq_values, torch.stack(values_steps))


def test_gru_params_go_through_grad_and_vmap():
    net = gru_actor_critic(obs_dim=2, num_actions=3, hidden=8)
    stacked = {k: torch.stack([net.init(0)[k], net.init(1)[k]]) for k in net.init(0)}
    x = torch.randn(2, 4, net.in_dim, generator=gen(3))
    h = torch.zeros(2, 4, 8)
    out = net.apply_stacked(stacked, x, h)
    for i in range(2):
        ref = net.apply({k: v[i] for k, v in stacked.items()}, x[i], h[i])
        for a, b in zip(out, ref):
            torch.testing.assert_close(a[i], b)
    g = grad(lambda p: net.apply_sequence(p, x.unsqueeze(0).expand(3, 2, 4, net.in_dim), h)[1].sum())(net.init(0))
    assert set(g) == set(net.param_shapes) and all(torch.isfinite(v).all() for v in g.values())
    assert float(g["gru.weight_hh"].abs().sum()) > 0  # the recurrent weights get gradient through time
    per_task = vmap(grad(lambda p, xi: net.apply(p, xi, torch.zeros(4, 8))[1].sum()), in_dims=(None, 0))(net.init(0), x)
    assert per_task["value.weight"].shape == (2, 1, 8)


def test_gru_bad_input():
    net = gru_actor_critic(obs_dim=1, num_actions=5, hidden=8)
    params = net.init(0)
    x = torch.zeros(3, net.in_dim)
    with pytest.raises(ValueError, match=r"hidden expected shape \(3, 8\)"):
        net.apply(params, x, torch.zeros(3, 9))
    with pytest.raises(ValueError, match=r"hidden expected shape \(3, 8\)"):
        net.apply_sequence(params, x.unsqueeze(0), torch.zeros(4, 8))
    with pytest.raises(ValueError, match="in_dim=8"):
        net.apply(params, torch.zeros(3, 7), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="num_actions"):
        gru_actor_critic(1, 1)
    with pytest.raises(TypeError, match="hidden"):
        gru_actor_critic(1, 5, hidden=8.0)
    with pytest.raises(TypeError, match="prev_action must be an integer"):
        rl2_inputs(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), torch.zeros(3), 5)
    with pytest.raises(ValueError, match="prev_reward expected shape"):
        rl2_inputs(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64), torch.zeros(4), torch.zeros(3), 5)


# ----------------------------------------------------------------------------- rollout
def _reference_rollout(env, net, params, tasks, env_noise, gumbel_u, reset_every=None):
    """Each trial on its own, step by step, through the nn.GRUCell template (functional_call)."""
    T, B, A = gumbel_u.shape
    out = []
    for b in range(B):
        task_b = type(tasks)(*(x[b:b + 1] for x in tasks))
        state, obs = env.reset(task_b)
        h = torch.zeros(1, net.state_size)
        prev = [0.0] * A, 0.0, 0.0
        prev_obs = torch.zeros_like(obs[0])
        rows = []
        for t in range(T):
            if reset_every is not None and t % reset_every == 0:
                h = torch.zeros(1, net.state_size)
            seen = [obs[0], prev_obs] if net.prev_obs_input else [obs[0]]
            x = torch.cat([*seen, torch.tensor(prev[0]), torch.tensor([prev[1], prev[2]])]).unsqueeze(0)
            prev_obs = obs[0]
            logits, value, h = net.apply_module(params, x, h)
            g = -torch.log(-torch.log(gumbel_u[t, b]))
            a = int(torch.argmax(logits[0] + g))
            noise_t = env_noise[t, b:b + 1] if isinstance(env_noise, torch.Tensor) else MDPNoise(
                env_noise.transition[t, b:b + 1], env_noise.reward[t, b:b + 1])
            state, obs, reward, done = env.step(state, torch.tensor([a]), task_b, noise_t)
            log_p = float(torch.log_softmax(logits[0], -1)[a])
            rows.append((a, float(reward[0]), bool(done[0]), log_p, float(value[0])))
            one_hot = [0.0] * A
            one_hot[a] = 1.0
            prev = one_hot, float(reward[0]), float(done[0])
        out.append(rows)
    return out


@pytest.mark.parametrize("family", ["bandit", "mdp"])
def test_batched_rollout_equals_step_by_step_loop(family):
    env = BernoulliBandits(3, 6) if family == "bandit" else TabularMDP(num_episodes=3, num_states=4, num_actions=3, horizon=4)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=12)
    params = net.init(1)
    B = 4
    tasks = env.sample_tasks(B, gen(2))
    noise = sample_rl2_noise(env, B, 0, gen(3))
    assert isinstance(noise, RL2Noise) and noise.gumbel_u.shape == (env.trial_length, B, env.num_actions)
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    ref = _reference_rollout(env, net, params, tasks, noise.env, noise.gumbel_u)
    for b in range(B):
        for t, (a, r, d, lp, v) in enumerate(ref[b]):
            assert int(trial.actions[t, b]) == a
            assert float(trial.rewards[t, b]) == pytest.approx(r, abs=1e-6)
            assert bool(trial.dones[t, b]) == d
            assert float(trial.log_probs[t, b]) == pytest.approx(lp, abs=1e-5)
            assert float(trial.values[t, b]) == pytest.approx(v, abs=1e-5)
    if family == "mdp":
        # episode ends inside the trial (t = 3, 7) do not reset the hidden state: a loop that
        # resets it there acts on other values
        assert trial.dones[3].all() and trial.dones[7].all() and not trial.dones[4].any()
        reset = _reference_rollout(env, net, params, tasks, noise.env, noise.gumbel_u, reset_every=env.horizon)
        later = [abs(reset[b][t][4] - float(trial.values[t, b])) for b in range(B) for t in range(4, 12)]
        assert max(later) > 1e-4
        first = [abs(reset[b][t][4] - float(trial.values[t, b])) for b in range(B) for t in range(4)]
        assert max(first) < 1e-5


def test_hidden_state_starts_every_trial_at_zero():
    env = BernoulliBandits(3, 5)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=8)
    params = net.init(0)
    tasks = env.sample_tasks(6, gen(4))
    noise = sample_rl2_noise(env, 6, 0, gen(5))
    a = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    b = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net, hidden=torch.zeros(6, 8))
    c = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net, hidden=torch.ones(6, 8))
    assert torch.equal(a.values, b.values) and not torch.allclose(a.values[0], c.values[0])
    # a trial run after another one on the same batch starts afresh: same numbers again
    again = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    assert torch.equal(a.values, again.values) and torch.equal(a.actions, again.actions)
    # the first input carries no previous action, reward or done
    assert torch.equal(a.inputs[0], torch.cat([torch.ones(6, 1), torch.zeros(6, 5)], -1))


def test_gumbel_sample_is_a_categorical_sample():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.7]))
    u = torch.rand(100_000, 3, generator=gen(6))
    freq = torch.bincount(gumbel_sample(logits.expand(100_000, 3), u), minlength=3).float() / 100_000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.006, rtol=0)
    with pytest.raises(ValueError, match="u expected the shape of logits"):
        gumbel_sample(logits, torch.rand(4))


def test_rollout_bad_input():
    env = BernoulliBandits(3, 5)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=8)
    tasks = env.sample_tasks(4, gen())
    noise = sample_rl2_noise(env, 4, 0, gen())
    with pytest.raises(ValueError, match=r"gumbel_u expected shape \(5, 4, 3\)"):
        rl2_rollout(net.init(0), tasks, noise.env, noise.gumbel_u[:, :3], env, net)
    with pytest.raises(ValueError, match="env_noise leaves expected shape"):
        rl2_rollout(net.init(0), tasks, noise.env[:4], noise.gumbel_u, env, net)
    with pytest.raises(ValueError, match="num_actions 3 to match env"):
        rl2_rollout(gru_actor_critic(1, 4, 8).init(0), tasks, noise.env, noise.gumbel_u, env, gru_actor_critic(1, 4, 8))
    with pytest.raises(ValueError, match=r"hidden expected shape \(4, 8\)"):
        rl2_rollout(net.init(0), tasks, noise.env, noise.gumbel_u, env, net, hidden=torch.zeros(4, 7))


# ----------------------------------------------------------------------------- advantages and loss
def test_advantages_are_gae_over_the_whole_trial():
    T, B = 6, 3
    rewards, values = torch.randn(T, B, generator=gen(7)), torch.randn(T, B, generator=gen(8))
    dones = torch.zeros(T, B, dtype=torch.bool)
    dones[2] = True  # an episode end inside the trial: must not cut the return
    trial = Trial(torch.zeros(T, B, 1), torch.zeros(T, B, dtype=torch.int64), rewards, dones, torch.zeros(T, B), values)
    adv, ret = rl2_advantages(trial, 0.9, 0.5)
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            nxt = float(values[t + 1, b]) if t + 1 < T else 0.0
            delta = float(rewards[t, b]) + 0.9 * nxt - float(values[t, b])
            running = delta + 0.9 * 0.5 * running
            assert float(adv[t, b]) == pytest.approx(running, abs=1e-5)
            assert float(ret[t, b]) == pytest.approx(running + float(values[t, b]), abs=1e-5)


def test_ppo_loss_gradient_equals_an_explicit_autograd_reference():
    env = TabularMDP(num_episodes=2, num_states=3, num_actions=3, horizon=3)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=10)
    params = net.init(2)
    B = 5
    tasks = env.sample_tasks(B, gen(9))
    noise = sample_rl2_noise(env, B, 0, gen(10))
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    adv, ret = rl2_advantages(trial, 0.99, 0.9)
    # act with other params so ratios differ from 1 and some clip
    moved = {k: v + 0.3 * torch.randn(v.shape, generator=gen(11)) for k, v in params.items()}
    clip, vc, ec = 0.1, 0.7, 0.05
    g = grad(lambda p: rl2_ppo_loss(p, trial, adv, ret, net, clip_eps=clip, value_coef=vc, entropy_coef=ec)[0])(moved)
    g_autograd, (loss, aux) = rl2_ppo_grad(moved, trial, adv, ret, net, clip_eps=clip, value_coef=vc, entropy_coef=ec)
    torch.testing.assert_close(g_autograd, g)
    assert not any(v.requires_grad for v in moved.values())  # the inputs are left alone

    cell = torch.nn.GRUCell(net.in_dim, 10)
    pol, val = torch.nn.Linear(10, 3), torch.nn.Linear(10, 1)
    with torch.no_grad():
        for mod, prefix in ((cell, "gru."), (pol, "policy."), (val, "value.")):
            for name, p in mod.named_parameters():
                p.copy_(moved[prefix + name])
    T = trial.actions.shape[0]
    total = torch.zeros(())
    for b in range(B):
        h = torch.zeros(1, 10)
        for t in range(T):
            h = cell(trial.inputs[t, b:b + 1], h)
            dist = torch.distributions.Categorical(logits=pol(h)[0])
            ratio = torch.exp(dist.log_prob(trial.actions[t, b]) - trial.log_probs[t, b])
            a = adv[t, b]
            surrogate = -torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
            value_term = 0.5 * (val(h)[0, 0] - ret[t, b]) ** 2
            total = total + (surrogate + vc * value_term - ec * dist.entropy()) / (T * B)
    total.backward()
    for mod, prefix in ((cell, "gru."), (pol, "policy."), (val, "value.")):
        for name, p in mod.named_parameters():
            torch.testing.assert_close(g[prefix + name], p.grad, rtol=1e-4, atol=1e-6)


def test_train_step_bad_input():
    env = BernoulliBandits(3, 4)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=8)
    params, opt = net.init(0), adam(1e-3)
    tasks = env.sample_tasks(6, gen())
    noise = sample_rl2_noise(env, 6, 2, gen())
    with pytest.raises(ValueError, match=r"num_minibatches \(4\) must divide the number of trials \(6\)"):
        rl2_train_step(params, opt.init(params), tasks, noise, env, net, opt, config=PPOConfig(epochs=2, num_minibatches=4))
    with pytest.raises(ValueError, match=r"noise.perms expected shape \(3, 6\)"):
        rl2_train_step(params, opt.init(params), tasks, noise, env, net, opt, config=PPOConfig(epochs=3, num_minibatches=2))
    with pytest.raises(ValueError, match=r"config.gamma must be a finite number in \[0, 1\]"):
        rl2_train_step(params, opt.init(params), tasks, noise, env, net, opt, config=PPOConfig(epochs=2, num_minibatches=2, gamma=1.5))
    with pytest.raises(ValueError, match=r"config.reward_scale must be a finite number in \(0, inf\)"):
        rl2_train_step(params, opt.init(params), tasks, noise, env, net, opt, config=PPOConfig(2, 2, reward_scale=0.0))
    with pytest.raises(ValueError, match="num_trials"):
        sample_rl2_noise(env, 0, 1)
    with pytest.raises(ValueError, match="advantages expected shape"):
        trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
        rl2_ppo_loss(params, trial, torch.zeros(4, 5), torch.zeros(4, 6), net)


# ----------------------------------------------------------------------------- trainer
def _tiny(**kw) -> RL2Config:
    base = dict(env="bandit", num_arms=3, num_pulls=4, iterations=4, trials_per_iteration=8, hidden=8,
                epochs=2, num_minibatches=2, device="cpu", checkpoint_every=2)
    return RL2Config(**{**base, **kw})


def test_resume_is_bit_identical(tmp_path):
    straight = RL2Trainer(_tiny(), tmp_path / "a")
    straight.train(progress=False)
    first = RL2Trainer(_tiny(iterations=2), tmp_path / "b")
    first.train(progress=False)
    resumed = RL2Trainer(_tiny(), tmp_path / "c")
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    assert resumed.iteration == 2
    resumed.train(progress=False)
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
        assert torch.equal(straight.opt_state[1].nu[k], resumed.opt_state[1].nu[k]), k  # (clip, adam) states
    drop = ("seconds", "steps_per_second")
    assert [{k: v for k, v in m.items() if k not in drop} for m in straight.history] == \
           [{k: v for k, v in m.items() if k not in drop} for m in resumed.history]
    assert (tmp_path / "a" / "metrics.json").is_file() and any((tmp_path / "a" / "tensorboard").iterdir())
    rebuilt = RL2Trainer.from_checkpoint(tmp_path / "a" / CHECKPOINT_FILE)  # settings from the file, on the CPU
    assert rebuilt.config == straight.config and rebuilt.iteration == 4 and rebuilt.history == straight.history
    assert all(torch.equal(straight.params[k], rebuilt.params[k]) for k in straight.params)
    stopped = RL2Trainer(_tiny(), tmp_path / "d")
    stopped.train(progress=False, max_seconds=1e-9)  # stops after the first iteration, with a checkpoint
    assert stopped.iteration == 1 and (tmp_path / "d" / CHECKPOINT_FILE).is_file()
    with pytest.raises(ValueError, match="max_seconds"):
        stopped.train(progress=False, max_seconds=0)
    with pytest.raises(ValueError, match="different settings"):
        RL2Trainer(_tiny(hidden=16)).load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)


def test_config_bad_input():
    with pytest.raises(ValueError, match="num_arms"):
        _tiny(num_arms=1)
    with pytest.raises(ValueError, match="num_pulls"):
        _tiny(num_pulls=0)
    with pytest.raises(ValueError, match="env must be"):
        _tiny(env="gridworld")
    with pytest.raises(ValueError, match="must divide trials_per_iteration"):
        _tiny(num_minibatches=3)
    with pytest.raises(ValueError, match="gamma"):
        _tiny(gamma=2.0)


def test_entropy_schedule_is_linear_then_constant_and_drives_the_updates(tmp_path):
    cfg = _tiny(entropy_coef=0.04, entropy_coef_final=0.01, entropy_decay_iterations=3)
    assert [cfg.entropy_coef_at(i) for i in range(5)] == pytest.approx([0.04, 0.03, 0.02, 0.01, 0.01])
    assert _tiny(entropy_coef=0.04).entropy_coef_at(1000) == 0.04  # no schedule: constant
    trainer = RL2Trainer(cfg)
    trainer.train(progress=False)
    assert [m["entropy_coef"] for m in trainer.history] == pytest.approx([0.04, 0.03, 0.02, 0.01])
    # reference: the same iterations by hand, each rl2_train_step given that iteration's coefficient
    ref = RL2Trainer(_tiny(entropy_coef=0.04))
    for coef in [cfg.entropy_coef_at(i) for i in range(4)]:
        tasks = ref.env.sample_tasks(cfg.trials_per_iteration, ref.generator)
        noise = sample_rl2_noise(ref.env, cfg.trials_per_iteration, cfg.epochs, ref.generator)
        ppo = ref.config.ppo()._replace(entropy_coef=coef)
        ref.params, ref.opt_state, _ = rl2_train_step(ref.params, ref.opt_state, tasks, noise, ref.env, ref.policy,
                                                      ref.optimizer, config=ppo)
    for k in ref.params:
        assert torch.equal(trainer.params[k], ref.params[k]), k
    constant = RL2Trainer(_tiny(entropy_coef=0.04))
    constant.train(progress=False)
    assert any(not torch.allclose(constant.params[k], trainer.params[k], rtol=0, atol=1e-6) for k in ref.params)
    # resume in the middle of the schedule: bit-identical
    first = RL2Trainer(_tiny(entropy_coef=0.04, entropy_coef_final=0.01, entropy_decay_iterations=3, iterations=2),
                       tmp_path / "b")
    first.train(progress=False)
    resumed = RL2Trainer(cfg)
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    resumed.train(progress=False)
    for k in trainer.params:
        assert torch.equal(trainer.params[k], resumed.params[k]), k


def test_entropy_schedule_bad_input():
    with pytest.raises(ValueError, match="entropy_coef_final and entropy_decay_iterations go together"):
        _tiny(entropy_coef_final=0.0)
    with pytest.raises(ValueError, match="entropy_coef_final and entropy_decay_iterations go together"):
        _tiny(entropy_decay_iterations=10)
    with pytest.raises(ValueError, match=r"entropy_coef_final must be a finite number in \[0, inf\)"):
        _tiny(entropy_coef_final=-0.1, entropy_decay_iterations=10)
    with pytest.raises(ValueError, match=r"entropy_coef_final must be a finite number in \[0, inf\)"):
        _tiny(entropy_coef_final=float("nan"), entropy_decay_iterations=10)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"entropy_decay_iterations must be an int in \[1, inf\)"):
            _tiny(entropy_coef_final=0.0, entropy_decay_iterations=bad)
    for bad in (2.5, True):  # the wrong kind: a TypeError
        with pytest.raises(TypeError, match="entropy_decay_iterations must be an int"):
            _tiny(entropy_coef_final=0.0, entropy_decay_iterations=bad)


def test_short_rl2_run_beats_random_on_k5_n10():
    torch.manual_seed(0)
    cfg = RL2Config(env="bandit", num_arms=5, num_pulls=10, iterations=60, trials_per_iteration=128, hidden=32,
                    lr=3e-3, epochs=4, num_minibatches=2, device="cpu", seed=0)
    trainer = RL2Trainer(cfg)
    trainer.train(progress=False)
    results = trainer.evaluate(num_tasks=2000, seed=123)
    methods = {"rl2", "rl2_greedy", "random", "greedy", "ucb1", "ucb1_tuned", "ucb1_beta", "thompson", "gittins",
               "memory_w10", "memory_w20", "memory_w30", "memory_full"}
    assert set(results) == {f"{m}/{s}" for m in methods for s in ("mean", "stderr", "num_tasks")} | {
        "gittins/gamma", "ucb1_tuned/c", "ucb1_beta/c"}
    rl2 = {s: results[f"rl2/{s}"] for s in ("mean", "stderr")}
    rand = {s: results[f"random/{s}"] for s in ("mean", "stderr")}
    # random is 5.0 in expectation; require a gap of several standard errors
    assert rl2["mean"] > rand["mean"] + 4 * (rl2["stderr"] ** 2 + rand["stderr"] ** 2) ** 0.5, results


def test_make_rl2_env_and_mean_and_stderr():
    env = make_rl2_env(_tiny(num_arms=4, num_pulls=7))
    assert isinstance(env, BernoulliBandits) and (env.num_arms, env.num_pulls) == (4, 7)
    env = make_rl2_env(_tiny(env="mdp", num_episodes=3))
    assert isinstance(env, TabularMDP) and env.trial_length == 30
    x = torch.tensor([1.0, 2.0, 4.0, 7.0])
    out = mean_and_stderr(x)
    mean = sum(x.tolist()) / 4
    std = (sum((v - mean) ** 2 for v in x.tolist()) / 3) ** 0.5
    assert out == {"mean": pytest.approx(mean), "stderr": pytest.approx(std / 2), "num_tasks": 4}
    with pytest.raises(ValueError, match="totals expected shape"):
        mean_and_stderr(torch.ones(1))


def test_throughput_benchmark_smoke():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rl2_throughput.py"
    spec = importlib.util.spec_from_file_location("rl2_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--trials", "4", "--hidden", "8", "--repeats", "1", "--epochs", "1", "--minibatches", "1",
                       "--mdp-episodes", "1"])
    assert set(out) == {"bandit_k5_n10", "mdp_n1"}
    assert all(r["pure"] > 0 and r["gym"] > 0 and r["pure_rollout"] > 0 and r["gym_rollout"] > 0 for r in out.values())


# ----------------------------------------------------------------------------- MAML on the same families
def _policy_trial_loop(env, net, params, tasks, env_noise, gumbel_u):
    """A non-recurrent categorical policy playing whole trials step by step, one task at a time."""
    T, B, _ = gumbel_u.shape
    totals = []
    for b in range(B):
        task_b = type(tasks)(*(x[b:b + 1] for x in tasks))
        state, obs = env.reset(task_b)
        total = 0.0
        for t in range(T):
            logits = net.apply(params, obs)[0]
            a = int(torch.argmax(logits - torch.log(-torch.log(gumbel_u[t, b]))))
            noise_t = env_noise[t, b:b + 1] if isinstance(env_noise, torch.Tensor) else MDPNoise(
                env_noise.transition[t, b:b + 1], env_noise.reward[t, b:b + 1])
            state, obs, reward, _ = env.step(state, torch.tensor([a]), task_b, noise_t)
            total += float(reward[0])
        totals.append(total)
    return torch.tensor(totals)


@pytest.mark.parametrize("family", ["bandit", "mdp"])
def test_maml_episodes_and_trial_returns_match_a_loop_over_the_trial(family):
    from functional_metarl.meta import categorical_episodes, episode_env, maml_trial_returns, split_trial_noise
    from functional_metarl.nn import categorical_policy
    from functional_metarl.optim import sgd

    env = BernoulliBandits(3, 6) if family == "bandit" else TabularMDP(num_episodes=4, num_states=3, num_actions=2, horizon=3)
    net = categorical_policy(env.obs_dim, env.num_actions, hidden=(8,))
    params = net.init(0)
    B = 3
    tasks = env.sample_tasks(B, gen(30))
    noise = sample_rl2_noise(env, B, 0, gen(31))
    assert episode_env(env).trial_length == env.episode_length
    # with a vanishing inner step, the split protocol is the meta-policy playing the whole trial
    totals = maml_trial_returns(params, tasks, noise.env, noise.gumbel_u, env, net, sgd(1e-12), num_pre=2)
    torch.testing.assert_close(totals, _policy_trial_loop(env, net, params, tasks, noise.env, noise.gumbel_u))
    # episodes 1..2 of the trial, as independent episodes: the same rewards as the trial's steps
    n_env, n_u = split_trial_noise(env, noise.env, noise.gumbel_u, 1, 2)
    eps = categorical_episodes(params, tasks, n_env, n_u, env, net)
    H = env.episode_length
    assert eps.actions.shape == (B, H, 2) and eps.actions.dtype == torch.int64 and eps.obs.shape == (B, H, 2, env.obs_dim)
    for e in range(2):
        sub_env = (noise.env[(1 + e) * H:(2 + e) * H] if family == "bandit" else
                                MDPNoise(*(x[(1 + e) * H:(2 + e) * H] for x in noise.env)))
        one = episode_env(env)
        ref = _policy_trial_loop(one, net, params, tasks, sub_env, noise.gumbel_u[(1 + e) * H:(2 + e) * H])
        torch.testing.assert_close(eps.rewards[:, :, e].sum(1), ref)
    with pytest.raises(ValueError, match="num_pre must be an int in"):
        maml_trial_returns(params, tasks, noise.env, noise.gumbel_u, env, net, sgd(0.1), num_pre=0)
    with pytest.raises(ValueError, match="must lie within the trial"):
        split_trial_noise(env, noise.env, noise.gumbel_u, 3, env.trial_length // env.episode_length - 2)
    with pytest.raises(ValueError, match="categorical policy"):
        categorical_episodes(params, tasks, n_env, n_u, env, gru_actor_critic(env.obs_dim, env.num_actions, 4))


def test_split_trial_rollouts_is_pre_episodes_one_inner_step_then_post_episodes():
    from functional_metarl.meta import (adapt_tasks, categorical_episodes, make_rl_batches, split_trial_noise,
                                        split_trial_rollouts)
    from functional_metarl.nn import categorical_policy
    from functional_metarl.optim import sgd

    env = BernoulliBandits(3, 6)
    net = categorical_policy(env.obs_dim, env.num_actions, hidden=(8,))
    params, inner = net.init(0), sgd(0.5)
    tasks = env.sample_tasks(4, gen(40))
    noise = sample_rl2_noise(env, 4, 0, gen(41))
    pre, post, train = split_trial_rollouts(params, tasks, noise.env, noise.gumbel_u, env, net, inner, num_pre=2)
    # the reference: the same steps written out by hand
    pre_env, pre_u = split_trial_noise(env, noise.env, noise.gumbel_u, 0, 2)
    post_env, post_u = split_trial_noise(env, noise.env, noise.gumbel_u, 2, 4)
    ref_pre = categorical_episodes(params, tasks, pre_env, pre_u, env, net)
    ref_train = make_rl_batches(ref_pre)
    adapted = adapt_tasks(params, ref_train, net, inner, first_order=True)
    ref_post = categorical_episodes({k: v.detach() for k, v in adapted.items()}, tasks, post_env, post_u, env, net,
                                    params_per_task=True)
    for got, want in ((pre, ref_pre), (post, ref_post), (train, ref_train)):
        for a, b in zip(got, want):
            assert (a is None and b is None) or torch.equal(a, b)
    assert pre.rewards.shape == (4, 1, 2) and post.rewards.shape == (4, 1, 4)
    with pytest.raises(ValueError, match="num_pre must be an int in"):
        split_trial_rollouts(params, tasks, noise.env, noise.gumbel_u, env, net, inner, num_pre=6)


def test_split_trial_maml_trainer_follows_the_protocol_and_resumes_bit_identically(tmp_path):
    from functional_metarl.meta import TRPOConfig, make_rl_batches, split_trial_rollouts, trpo
    from functional_metarl.runners import MAMLConfig, MAMLTrainer, SplitTrialSampler

    env = BernoulliBandits(3, 4)

    def trainer(iterations=4, out=None):
        config = MAMLConfig(iterations=iterations, meta_batch_size=4, hidden=(4,), inner_lr=0.5, horizon=1,
                            device="cpu", checkpoint_every=2)
        return MAMLTrainer(config, out, sampler=SplitTrialSampler(env))

    # one iteration is split_trial_rollouts on the iteration's tasks and trial noise, then meta.trpo
    first = trainer()
    params0 = {k: v.clone() for k, v in first.params.items()}
    gen = torch.Generator().manual_seed(0)
    trial = first.sampler.sample_tasks(4, gen)
    pre, post, train = split_trial_rollouts(params0, trial.tasks, trial.noise.env, trial.noise.gumbel_u, env,
                                            first.policy, first.inner_opt, num_pre=2)
    want, _, _ = trpo(first.policy, first.inner_opt, config=TRPOConfig()).update(params0, (), train,
                                                                                 make_rl_batches(post))
    row = first.train_iteration()
    for k in want:
        torch.testing.assert_close(first.params[k], want[k], rtol=1e-6, atol=1e-7)
    assert row["pre_total"] == float(pre.rewards.sum(dim=(1, 2)).mean())
    assert row["trial_return"] == row["pre_total"] + row["post_total"]

    straight = trainer(out=tmp_path / "a")
    straight.train(progress=False)
    trainer(iterations=2, out=tmp_path / "b").train(progress=False)
    resumed = trainer(out=tmp_path / "c")
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    resumed.train(progress=False)
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    drop = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert drop(straight.history) == drop(resumed.history)

    assert SplitTrialSampler(env).num_pre == 2 and SplitTrialSampler(env, num_pre=3).num_pre == 3
    with pytest.raises(ValueError, match="num_pre must be an int in"):
        SplitTrialSampler(env, num_pre=4)
    with pytest.raises(ValueError, match=">= 2 episodes"):
        SplitTrialSampler(BernoulliBandits(3, 1))
    with pytest.raises(ValueError, match="inner_steps"):  # the protocol takes exactly one inner step
        MAMLTrainer(MAMLConfig(horizon=1, inner_steps=2, device="cpu"), sampler=SplitTrialSampler(env))
    with pytest.raises(ValueError, match="max_steps"):
        straight.evaluate(num_tasks=2, max_steps=2)
    assert set(straight.evaluate(num_tasks=2, max_steps=1)) == {"0", "1"}


def test_mdp_example_smoke(tmp_path, monkeypatch):
    import json
    import runpy
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    monkeypatch.setattr(sys, "argv", ["rl2_mdp.py", "--n", "2", "--iterations", "2", "--trials", "8", "--hidden", "8",
                                      "--minibatches", "2", "--eval-tasks", "20", "--maml-iterations", "1",
                                      "--maml-meta-batch", "4", "--entropy-coef", "0.02", "--entropy-coef-final", "0.0",
                                      "--entropy-decay-iterations", "2", "--output", str(tmp_path), "--no-progress"])
    runpy.run_path(str(examples / "rl2_mdp.py"), run_name="__main__")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    methods = {"rl2", "rl2_greedy", "random", "greedy", "psrl", "maml", "psrl_prior0", "greedy_prior0", "memory_w10",
               "memory_w20", "memory_w30", "memory_full"}
    assert {k.split("/")[0] for k in metrics["eval"] if k.endswith("/mean")} == methods
    assert len(metrics["history"]) == 2 and (tmp_path / "learning_curve.png").is_file()
    assert [m["entropy_coef"] for m in metrics["history"]] == pytest.approx([0.02, 0.01])
    assert metrics["config"]["entropy_decay_iterations"] == 2
    assert all(metrics["eval"][f"{m}/num_tasks"] == 20 for m in methods)


def test_compiled_ppo_gradient_equals_eager():
    # The one compiled test: dynamo + AOT autograd on a tiny trial (backend "aot_eager" keeps it
    # to seconds; the inductor backend gave the same gradients to 3e-8 in a manual run, 49 s).
    from torch.func import grad_and_value

    env = BernoulliBandits(2, 3)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=4)
    params = net.init(0)
    tasks = env.sample_tasks(2, gen(50))
    noise = sample_rl2_noise(env, 2, 0, gen(51))
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    adv, ret = rl2_advantages(trial, 0.99, 0.3)
    compiled = torch.compile(grad_and_value(rl2_ppo_loss, has_aux=True), dynamic=False, backend="aot_eager")
    g, (loss, _) = compiled(params, trial, adv, ret, net, clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    g_eager, (loss_eager, _) = rl2_ppo_grad(params, trial, adv, ret, net, clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    torch.testing.assert_close(loss, loss_eager)
    torch.testing.assert_close(g, g_eager)


# ----------------------------------------------------------------------------- issue 28: the memory gauge
def test_windowed_greedy_follows_a_hand_computed_trial():
    from functional_metarl.envs import windowed_greedy

    # One state, two actions, noise-free rewards 0.5 and 0, 4 one-step episodes; 8 copies (ties differ).
    env = TabularMDP(num_episodes=4, num_states=1, num_actions=2, horizon=1, reward_std=0.0)
    B = 8
    tasks = env.task(torch.tensor([[0.5, 0.0]]).expand(B, 1, 2).clone(), torch.ones(B, 1, 2, 1))
    noise = env.sample_noise(4, (B,), gen(0))
    # By hand, with the N(1, 1) prior: after a reward 0.5 the mean is 0.75, after 0 it is 0.5, an
    # untried action is 1. Full memory: try both, then stay with action 0 (0.75 and then
    # 2/3 > 0.5). A window of one step forgets the other action, which is untried again: alternate.
    want = {None: {0: [0, 1, 0, 0], 1: [1, 0, 0, 0]}, 1: {0: [0, 1, 0, 1], 1: [1, 0, 1, 0]}}
    firsts = set()
    for window, by_first in want.items():
        run = windowed_greedy(env, tasks, noise, window, gen(window or 7))
        for b in range(B):
            first = int(run.actions[0, b])
            firsts.add(first)
            assert run.actions[:, b].tolist() == by_first[first], (window, b)
            assert run.rewards[:, b].tolist() == [0.5 if a == 0 else 0.0 for a in by_first[first]]
    assert firsts == {0, 1}  # the first step's tie was broken both ways

    # Bandits (uniform prior, untried = 1/2): three arms that never pay, a window of two steps.
    # The window always holds two failures of two other arms, so the agent cycles with period 3.
    bandits = BernoulliBandits(3, 9)
    btasks = BanditTask(torch.zeros(4, 3))
    bnoise = bandits.sample_noise(9, (4,), gen(1))
    run = windowed_greedy(bandits, btasks, bnoise, 2, gen(2))
    for b in range(4):
        a = run.actions[:, b].tolist()
        assert sorted(a[:3]) == [0, 1, 2] and a == a[:3] * 3
    # full memory on bandits is the greedy-with-prior agent
    btasks = bandits.sample_tasks(64, gen(3))
    bnoise = bandits.sample_noise(9, (64,), gen(4))
    full = windowed_greedy(bandits, btasks, bnoise, None, gen(5))
    greedy = bandit_baseline(bandits, btasks, "greedy", bnoise, gen(5))
    assert torch.equal(full.actions, greedy.actions)


def test_windowed_greedy_equals_a_per_step_reference_on_random_mdps():
    from functional_metarl.envs import windowed_greedy

    env = TabularMDP(num_episodes=3, num_states=3, num_actions=3, horizon=4)
    B, W = 5, 3
    tasks = env.sample_tasks(B, gen(6))
    noise = env.sample_noise(env.trial_length, (B,), gen(7))
    run = windowed_greedy(env, tasks, noise, W, gen(8))
    # replay: at each step, the posterior means from the last W (state, action, reward) by hand
    for b in range(B):
        hist, s = [], 0
        for t in range(env.trial_length):
            window = hist[max(0, t - W):]
            means = []
            for a in range(3):
                rs = [r for (s2, a2, r) in window if (s2, a2) == (s, a)]
                means.append((1.0 + sum(rs)) / (1.0 + len(rs)) if rs else 1.0)
            a = int(run.actions[t, b])
            assert means[a] == pytest.approx(max(means), abs=1e-6), (b, t)
            r = float(run.rewards[t, b])
            assert r == pytest.approx(float(tasks.reward_mean[b, s, a] + noise.reward[t, b]), abs=1e-5)
            hist.append((s, a, r))
            # next state: the env's inverse-CDF draw, reset to 0 at each episode end
            cdf = torch.cumsum(tasks.transitions[b, s, a], 0)
            nxt = int((noise.transition[t, b] >= cdf).sum().clamp_max(2))
            s = 0 if (t + 1) % env.horizon == 0 else nxt



# ----------------------------------------------------------------------------- issue 28: the agent's options
def _mdp_trial(net, params, B=4, seed=20):
    env = TabularMDP(num_episodes=2, num_states=3, num_actions=3, horizon=3)
    tasks = env.sample_tasks(B, gen(seed))
    noise = sample_rl2_noise(env, B, 0, gen(seed + 1))
    return env, tasks, noise, rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)


@pytest.mark.parametrize("prev_obs_input", [False, True])
def test_separate_value_network_rollout_and_ppo_loss_equal_a_per_trial_loop(prev_obs_input):
    env = TabularMDP(num_episodes=2, num_states=3, num_actions=3, horizon=3)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=10, value_network="separate",
                           prev_obs_input=prev_obs_input)
    assert net.state_size == 20 and net.in_dim == (2 if prev_obs_input else 1) * 3 + 3 + 2
    params = net.init(2)
    assert {k.split(".")[0] for k in params} == {"gru", "value_gru", "policy", "value"}
    B = 5
    tasks = env.sample_tasks(B, gen(9))
    noise = sample_rl2_noise(env, B, 0, gen(10))
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    ref = _reference_rollout(env, net, params, tasks, noise.env, noise.gumbel_u)  # through the nn.Module template
    for b in range(B):
        for t, (a, r, d, lp, v) in enumerate(ref[b]):
            assert int(trial.actions[t, b]) == a
            assert float(trial.log_probs[t, b]) == pytest.approx(lp, abs=1e-5)
            assert float(trial.values[t, b]) == pytest.approx(v, abs=1e-5)
    if prev_obs_input:  # [obs_t, obs_{t-1}, ...]: zeros first, then the previous step's obs
        S = env.obs_dim
        assert torch.equal(trial.inputs[0, :, S:2 * S], torch.zeros(B, S))
        assert torch.equal(trial.inputs[1:, :, S:2 * S], trial.inputs[:-1, :, :S])
    adv, ret = rl2_advantages(trial, 0.99, 0.9)
    moved = {k: v + 0.3 * torch.randn(v.shape, generator=gen(11)) for k, v in params.items()}
    clip, vc, ec = 0.1, 0.7, 0.05
    g, (loss, _) = rl2_ppo_grad(moved, trial, adv, ret, net, clip_eps=clip, value_coef=vc, entropy_coef=ec)
    # reference: two torch.nn.GRUCell's, one for the policy, one for the value, each trial on its own
    cells = {p: torch.nn.GRUCell(net.in_dim, 10) for p in ("gru.", "value_gru.")}
    pol, val = torch.nn.Linear(10, 3), torch.nn.Linear(10, 1)
    mods = {**cells, "policy.": pol, "value.": val}
    with torch.no_grad():
        for prefix, mod in mods.items():
            for name, p in mod.named_parameters():
                p.copy_(moved[prefix + name])
    T = trial.actions.shape[0]
    total = torch.zeros(())
    for b in range(B):
        h_pi, h_v = torch.zeros(1, 10), torch.zeros(1, 10)
        for t in range(T):
            h_pi, h_v = cells["gru."](trial.inputs[t, b:b + 1], h_pi), cells["value_gru."](trial.inputs[t, b:b + 1], h_v)
            dist = torch.distributions.Categorical(logits=pol(h_pi)[0])
            ratio = torch.exp(dist.log_prob(trial.actions[t, b]) - trial.log_probs[t, b])
            a = adv[t, b]
            surrogate = -torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
            total = total + (surrogate + vc * 0.5 * (val(h_v)[0, 0] - ret[t, b]) ** 2 - ec * dist.entropy()) / (T * B)
    total.backward()
    torch.testing.assert_close(loss, total.detach(), rtol=1e-5, atol=1e-6)
    for prefix, mod in mods.items():
        for name, p in mod.named_parameters():
            torch.testing.assert_close(g[prefix + name], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("value_network", ["separate", "detached"])
def test_the_value_loss_gradient_does_not_reach_the_policy(value_network):
    net = gru_actor_critic(3, 3, hidden=8, value_network=value_network)
    params = net.init(0)
    env, tasks, noise, trial = _mdp_trial(net, params)
    _, ret = rl2_advantages(trial, 0.99, 0.9)
    h0 = net.initial_state((4,))

    def value_loss(p):
        return ((net.apply_sequence(p, trial.inputs, h0)[1] - ret) ** 2).mean()

    def policy_term(p):
        return torch.log_softmax(net.apply_sequence(p, trial.inputs, h0)[0], -1)[..., 0].mean()

    gv, gp = grad(value_loss)(params), grad(policy_term)(params)
    for k in params:
        if k.startswith(("gru.", "policy.")):  # the policy's params: no value gradient
            assert torch.count_nonzero(gv[k]) == 0, k
        if k.startswith(("value_gru.", "value.")):  # and the policy's loss leaves the value's params alone
            assert torch.count_nonzero(gp[k]) == 0, k
    assert float(gv["value.weight"].abs().sum()) > 0 and float(gp["gru.weight_hh"].abs().sum()) > 0
    if value_network == "separate":
        assert float(gv["value_gru.weight_hh"].abs().sum()) > 0
    # the shared form, for contrast: the value loss reaches the GRU
    shared = gru_actor_critic(3, 3, hidden=8)
    h0 = shared.initial_state((4,))
    gs = grad(lambda p: ((shared.apply_sequence(p, trial.inputs, h0)[1] - ret) ** 2).mean())(shared.init(0))
    assert float(gs["gru.weight_hh"].abs().sum()) > 0


def test_cell_options_follow_their_definitions():
    from torch.nn.functional import linear

    H, in_dim = 6, 3 + 3 + 2
    x, h = torch.randn(4, in_dim, generator=gen(30)), torch.randn(4, H, generator=gen(31))

    def by_hand(p, act, wn=False):  # the GRU equations, one gate at a time
        w_ih, w_hh = p["gru.weight_ih"], p["gru.weight_hh"]
        if wn:
            w_ih = p["gru.weight_ih_g"][:, None] * w_ih / w_ih.norm(dim=1, keepdim=True)
            w_hh = p["gru.weight_hh_g"][:, None] * w_hh / w_hh.norm(dim=1, keepdim=True)
        (wir, wiz, win), (whr, whz, whn) = w_ih.split(H), w_hh.split(H)
        (bir, biz, bin_), (bhr, bhz, bhn) = p["gru.bias_ih"].split(H), p["gru.bias_hh"].split(H)
        r = torch.sigmoid(linear(x, wir, bir) + linear(h, whr, bhr))
        z = torch.sigmoid(linear(x, wiz, biz) + linear(h, whz, bhz))
        n = act(linear(x, win, bin_) + r * linear(h, whn, bhn))
        return (1 - z) * n + z * h

    # orthogonal hidden-to-hidden (each gate's block), zero biases
    net = gru_actor_critic(3, 3, hidden=H, init="orthogonal")
    p = net.init(0)
    for block in p["gru.weight_hh"].split(H):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    assert not p["gru.bias_ih"].any() and not p["gru.bias_hh"].any()
    torch.testing.assert_close(net.apply(p, x, h)[2], by_hand(p, torch.tanh))
    # ReLU candidate
    net = gru_actor_critic(3, 3, hidden=H, activation="relu")
    p = net.init(1)
    torch.testing.assert_close(net.apply(p, x, h)[2], by_hand(p, torch.relu))
    torch.testing.assert_close(net.apply_module(p, x, h)[2], by_hand(p, torch.relu))
    # weight normalisation: rows g * v / ||v||, the gains starting at the rows' norms (same function)
    plain, wn = gru_actor_critic(3, 3, hidden=H), gru_actor_critic(3, 3, hidden=H, weight_norm=True)
    p0, p = plain.init(2), wn.init(2)
    assert set(p) == set(p0) | {"gru.weight_ih_g", "gru.weight_hh_g"}
    torch.testing.assert_close(p["gru.weight_hh_g"], p["gru.weight_hh"].norm(dim=1))
    torch.testing.assert_close(wn.apply(p, x, h), plain.apply(p0, x, h))
    p = {**p, "gru.weight_ih_g": p["gru.weight_ih_g"] * 2.0, "gru.weight_hh_g": torch.rand(3 * H, generator=gen(32))}
    torch.testing.assert_close(wn.apply(p, x, h)[2], by_hand(p, torch.tanh, wn=True))
    torch.testing.assert_close(wn.apply_module(p, x, h)[2], by_hand(p, torch.tanh, wn=True))
    seq = wn.apply_sequence(p, x.unsqueeze(0), h)
    torch.testing.assert_close(seq[2][0], by_hand(p, torch.tanh, wn=True))
    # a positive update-gate bias: z = sigmoid(b) at zero input and state
    net = gru_actor_critic(3, 3, hidden=H, init="orthogonal", update_gate_bias=2.0)
    p = net.init(3)
    assert torch.equal(p["gru.bias_hh"][H:2 * H], torch.full((H,), 2.0)) and not p["gru.bias_ih"][H:2 * H].any()
    torch.testing.assert_close(net.apply(p, x, h)[2], by_hand(p, torch.tanh))
    # at a zero input and state the update gate is sigmoid(2): h' = (1 - z) n + z h keeps 88% of h
    gate = torch.sigmoid(linear(torch.zeros(1, in_dim), p["gru.weight_ih"][H:2 * H], p["gru.bias_ih"][H:2 * H])
                         + linear(torch.zeros(1, H), p["gru.weight_hh"][H:2 * H], p["gru.bias_hh"][H:2 * H]))
    torch.testing.assert_close(gate, torch.full((1, H), float(torch.sigmoid(torch.tensor(2.0)))))
    # hidden 256 (the paper's) is a size like any other; the separate value GRU gets the same options
    net = gru_actor_critic(3, 3, hidden=256, value_network="separate", init="orthogonal", weight_norm=True)
    p = net.init(0)
    assert p["value_gru.weight_hh"].shape == (768, 256) and "value_gru.weight_hh_g" in p
    assert not p["value_gru.bias_hh"].any()


def test_kl_early_stopping_stops_the_epochs():
    env = BernoulliBandits(3, 6)
    net = gru_actor_critic(env.obs_dim, env.num_actions, hidden=8, value_network="separate")
    params, opt = net.init(0), adam(0.1)
    tasks = env.sample_tasks(8, gen(40))
    noise = sample_rl2_noise(env, 8, 4, gen(41))
    base = PPOConfig(epochs=4, num_minibatches=2)
    run = lambda cfg: rl2_train_step(params, opt.init(params), tasks, noise, env, net, opt, config=cfg)  # noqa: E731
    full = run(base)
    loose = run(base._replace(target_kl=1e9))  # never stops: the same numbers
    assert loose[2]["updates"] == 8 and all(torch.equal(full[0][k], loose[0][k]) for k in params)
    tight = run(base._replace(target_kl=1e-3))
    k = int(tight[2]["updates"])
    assert 1 <= k < 8 and float(tight[2]["kl"]) > 1e-3
    # the same as stepping the first k minibatches by hand
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, net)
    adv, ret = rl2_advantages(trial, base.gamma, base.gae_lambda)
    from functional_metarl.rl import normalize_advantages
    from functional_metarl.optim import apply_updates
    adv = normalize_advantages(adv, torch.ones_like(adv))
    p, state = params, opt.init(params)
    for step in range(k):
        idx = noise.perms[step // 2, (step % 2) * 4:(step % 2 + 1) * 4]
        mb = Trial(*(x[:, idx] for x in trial))
        g, _ = rl2_ppo_grad(p, mb, adv[:, idx], ret[:, idx], net, clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
        upd, state = opt.update(g, state, p)
        p = apply_updates(p, upd)
    assert all(torch.equal(p[name], tight[0][name]) for name in params)
    with pytest.raises(ValueError, match="config.target_kl"):
        run(base._replace(target_kl=0.0))


def test_resume_is_bit_identical_with_the_new_options(tmp_path):
    opts = dict(env="mdp", num_episodes=2, value_network="separate", cell_init="orthogonal", activation="relu",
                weight_norm=True, update_gate_bias=1.0, prev_state_input=True, target_kl=0.01, lr=1e-2)
    straight = RL2Trainer(_tiny(**opts), tmp_path / "a")
    straight.train(progress=False)
    RL2Trainer(_tiny(iterations=2, **opts), tmp_path / "b").train(progress=False)
    resumed = RL2Trainer(_tiny(**opts), tmp_path / "c")
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    resumed.train(progress=False)
    assert "value_gru.weight_hh_g" in straight.params and straight.policy.prev_obs_input
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    drop = ("seconds", "steps_per_second")
    assert [{k: v for k, v in m.items() if k not in drop} for m in straight.history] == \
           [{k: v for k, v in m.items() if k not in drop} for m in resumed.history]
    assert all("updates" in m for m in straight.history)
    with pytest.raises(ValueError, match="different settings"):
        RL2Trainer(_tiny(**{**opts, "value_network": "shared"})).load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)


def test_option_choices_are_what_the_config_and_the_policy_factory_accept():
    from functional_metarl.envs import MEMORY_GAUGE_WINDOWS, UCB_PRIORS
    from functional_metarl.nn.recurrent import CELL_ACTIVATIONS, CELL_INITS, VALUE_NETWORKS
    from functional_metarl.runners import RL2Config
    from functional_metarl.runners.rl2 import make_rl2_env, make_rl2_policy

    assert set(VALUE_NETWORKS) == {"shared", "separate", "detached"}
    assert set(CELL_INITS) == {"pytorch", "orthogonal"} and set(CELL_ACTIVATIONS) == {"tanh", "relu"}
    assert MEMORY_GAUGE_WINDOWS[-1] is None and all(w > 0 for w in MEMORY_GAUGE_WINDOWS[:-1])  # None: the whole trial
    assert set(UCB_PRIORS) == {"pull_once", "beta"}
    for value_network in VALUE_NETWORKS:
        config = RL2Config(env="bandit", num_arms=3, num_pulls=4, hidden=6, value_network=value_network, device="cpu")
        policy = make_rl2_policy(config, make_rl2_env(config))
        keys = set(policy.init(0))
        # a separate value network has a GRU of its own; the others share the policy's
        assert any(k.startswith("value") and "gru" in k for k in keys) == (value_network == "separate"), keys
    for field, bad in (("value_network", "split"), ("cell_init", "xavier"), ("activation", "gelu")):
        with pytest.raises(ValueError, match=field):
            RL2Config(env="bandit", **{field: bad})
