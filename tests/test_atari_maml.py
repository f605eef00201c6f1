"""MAML on Atari (issue 25): the ALE task distributions (flavours and games), the Nature-CNN
actor-critic, and MAML-A2C as pure functions, each against an explicit reference.

Env tests take a few env steps; network tests use a tiny CNN on 4x12x12 frames (the Nature CNN's
84x84 shape is checked once, without gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from functional_metarl import envs  # noqa: E402
from functional_metarl.envs import (  # noqa: E402
    ATARI_OBS_SHAPE,
    FULL_ACTION_SPACE_SIZE,
    AtariTask,
    AtariTaskEnv,
    AtariTaskFamily,
    atari_game_ids,
    game_flavours,
    rom_flavours,
)


# --------------------------------------------------------------------------- task distributions
def test_flavour_list_is_the_roms_modes_and_difficulties():
    import ale_py
    import ale_py.roms

    for game in ("freeway", "breakout", "space_invaders"):
        ale = ale_py.ALEInterface()
        ale.setLoggerMode(ale_py.LoggerMode.Error)
        ale.loadROM(ale_py.roms.get_rom_path(game))
        modes, difficulties = list(ale.getAvailableModes()), list(ale.getAvailableDifficulties())
        assert rom_flavours(game) == (tuple(modes), tuple(difficulties))
        assert game_flavours(game) == [AtariTask(game, m, d) for m in modes for d in difficulties]
    assert rom_flavours("freeway") == (tuple(range(8)), (0, 1))
    assert rom_flavours("breakout")[0] == tuple(range(0, 48, 4))
    assert game_flavours("freeway", modes=[1], difficulties=[0, 1]) == [AtariTask("freeway", 1, 0),
                                                                     AtariTask("freeway", 1, 1)]
    assert "pong" in atari_game_ids() and "breakout" in atari_game_ids()


def test_preprocessing_gives_uint8_frame_stacks_and_a_flavour_change_changes_the_game():
    family = AtariTaskFamily(game_flavours("freeway", modes=[0, 4], difficulties=[0]), repeat_action_probability=0.0)
    env = family.make_env()
    assert isinstance(env, AtariTaskEnv)
    assert env.observation_space.shape == ATARI_OBS_SHAPE and env.action_space.n == family.num_actions == 3
    runs = {}
    for task in family.tasks:
        env.task = task
        obs, info = env.reset(seed=0)
        assert info["task"] == task
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        frames, reward = [obs], 0.0
        for _ in range(150):  # walk up: mode 4's faster traffic changes frames and the reward structure
            obs, r, terminated, truncated, _ = env.step(1)
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            frames.append(obs)
            reward += r
        runs[task.mode] = (np.stack(frames), reward)
    env.close()
    assert not np.array_equal(runs[0][0][:20], runs[4][0][:20])  # the first frames differ
    # the same flavour again gives the same game (no sticky actions; same seed)
    env = family.make_env(family.tasks[0])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, runs[0][0][0])
    env.close()


def test_several_games_share_the_full_action_space_and_sample_tasks():
    tasks = [AtariTask("breakout", 0, 0), AtariTask("pong", 0, 0)]
    family = AtariTaskFamily(tasks, full_action_space=True)
    assert family.num_actions == FULL_ACTION_SPACE_SIZE == 18 and family.games == ("breakout", "pong")
    env = family.make_env()
    env.reset(seed=1)
    env.task = tasks[1]
    obs, info = env.reset(seed=1)
    assert info["task"].game == "pong" and obs.shape == ATARI_OBS_SHAPE
    env.step(17)
    env.close()
    drawn = family.sample_tasks(6, np.random.default_rng(0))
    assert len(drawn) == 6 and set(drawn) <= set(tasks)


def test_bad_atari_tasks_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"modes of 'breakout'.*\(0, 4, 8"):
        AtariTaskFamily([AtariTask("breakout", 1, 0)])
    with pytest.raises(ValueError, match=r"difficulties of 'breakout'.*\(0, 1\)"):
        AtariTaskFamily([AtariTask("breakout", 0, 3)])
    with pytest.raises(ValueError, match=r"game must be one of .*'breakout'"):
        AtariTaskFamily([AtariTask("breakou", 0, 0)])
    with pytest.raises(ValueError, match=r"modes\[0\] .*must be one of \(0, 1, 2"):
        game_flavours("freeway", modes=[9])
    with pytest.raises(ValueError, match=r"breakout: 4, pong: 6 actions.*full_action_space=True"):
        AtariTaskFamily([AtariTask("breakout", 0, 0), AtariTask("pong", 0, 0)])
    family = AtariTaskFamily(game_flavours("freeway", modes=[0]))
    env = family.make_env()
    with pytest.raises(ValueError, match=r"game \(the family's games\) must be one of \('freeway',\)"):
        env.task = AtariTask("pong", 0, 0)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    with pytest.raises(TypeError, match="tasks must be"):
        AtariTaskFamily([])
    assert envs.AtariTaskFamily is AtariTaskFamily


# --------------------------------------------------------------------------- the Nature-CNN actor-critic
import math  # noqa: E402

import torch.nn.functional as F  # noqa: E402
from torch.func import vmap  # noqa: E402

from functional_metarl import meta, optim, rl  # noqa: E402
from functional_metarl.distributions import CATEGORICAL  # noqa: E402
from functional_metarl.meta import (  # noqa: E402
    A2CBatch,
    A2CConfig,
    a2c_loss,
    a2c_task_losses,
    adapt_a2c,
    maml_a2c,
    maml_a2c_gradient,
    maml_a2c_loss,
    nstep_advantages,
)
from functional_metarl.nn import NATURE_CONV, ActorCriticCNN, nature_cnn_actor_critic  # noqa: E402

TINY = dict(obs_shape=(4, 12, 12), conv=((4, 4, 2), (4, 3, 1)), hidden=8)


def tiny_net(num_actions: int = 5) -> ActorCriticCNN:
    return nature_cnn_actor_critic(num_actions, **TINY)


def test_nature_cnn_shapes_init_and_uint8_scaling():
    net = nature_cnn_actor_critic(18)
    assert isinstance(net, ActorCriticCNN) and net.distribution is CATEGORICAL and NATURE_CONV[0] == (32, 8, 4)
    params = net.init(0)
    assert params["conv.0.weight"].shape == (32, 4, 8, 8) and params["fc.weight"].shape == (512, 3136)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        logits, value = net.apply(params, obs)
        logits_f, value_f = net.apply(params, obs.float() / 255.0)
    assert logits.shape == (2, 18) and value.shape == (2,)
    torch.testing.assert_close(logits, logits_f)
    torch.testing.assert_close(value, value_f)
    # orthogonal init: rows of the heads orthogonal, scaled by their gains (actor 0.01, critic 1)
    actor = params["actor.weight"]
    torch.testing.assert_close(actor @ actor.T, 0.01**2 * torch.eye(18), atol=1e-7, rtol=0)
    assert math.isclose(float(params["critic.weight"].norm()), 1.0, rel_tol=1e-5)
    fc = params["fc.weight"]
    torch.testing.assert_close(fc @ fc.T, 2.0 * torch.eye(512), atol=1e-4, rtol=0)
    assert all(float(params[k].abs().max()) == 0 for k in params if k.endswith(".bias"))


def test_nature_cnn_apply_stacked_equals_vmap_and_a_loop():
    net = tiny_net()
    stacked = {k: torch.stack([net.init(s, dtype=torch.float64)[k] for s in range(3)]) for k in net.param_shapes}
    obs = torch.randint(0, 256, (3, 2, 5, *TINY["obs_shape"]), dtype=torch.uint8)
    got = net.apply_stacked(stacked, obs)
    want = vmap(net.apply)(stacked, obs)
    for i in range(3):
        loop = net.apply({k: v[i] for k, v in stacked.items()}, obs[i])
        torch.testing.assert_close(got[0][i], loop[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got[1][i], loop[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_nature_cnn_bad_inputs():
    net = tiny_net()
    params = net.init(0)
    with pytest.raises(ValueError, match=r"obs expected shape \[\.\.\., 4, 12, 12\]"):
        net.apply(params, torch.zeros(2, 4, 84, 84))
    with pytest.raises(TypeError, match="uint8 frames or of the params' dtype"):
        net.apply(params, torch.zeros(2, 4, 12, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match="same N"):
        net.apply_stacked(params, torch.zeros(2, 4, 12, 12))
    with pytest.raises(ValueError, match="does not fit the frames"):
        nature_cnn_actor_critic(4, obs_shape=(4, 6, 6))
    with pytest.raises(ValueError, match="num_actions"):
        nature_cnn_actor_critic(0)


# --------------------------------------------------------------------------- MAML-A2C against explicit references
def random_batch(generator: torch.Generator, lead: tuple[int, ...], num_actions: int = 5) -> A2CBatch:
    """Leaves ``[*lead, T, E, ...]`` with T = 4, E = 2; some episode ends inside."""
    t, e = 4, 2
    frames = TINY["obs_shape"]
    return A2CBatch(
        obs=torch.randint(0, 256, (*lead, t, e, *frames), dtype=torch.uint8, generator=generator),
        actions=torch.randint(0, num_actions, (*lead, t, e), generator=generator),
        rewards=torch.randn(*lead, t, e, generator=generator, dtype=torch.float64) * 2,
        dones=(torch.rand(*lead, t, e, generator=generator) < 0.3).double(),
        bootstrap_obs=torch.randint(0, 256, (*lead, e, *frames), dtype=torch.uint8, generator=generator),
    )


def reference_forward(params, obs):
    """The net written out independently: F.conv2d layers, then matmuls."""
    x = obs.double() / 255.0
    lead = x.shape[:-3]
    h = x.reshape(-1, *x.shape[-3:])
    for i, (_, _, stride) in enumerate(TINY["conv"]):
        h = torch.relu(F.conv2d(h, params[f"conv.{i}.weight"], params[f"conv.{i}.bias"], stride=stride))
    h = torch.relu(h.reshape(h.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"])
    logits = h @ params["actor.weight"].T + params["actor.bias"]
    value = (h @ params["critic.weight"].T + params["critic.bias"])[:, 0]
    return logits.reshape(*lead, -1), value.reshape(lead)


def reference_a2c_loss(params, batch, config=A2CConfig(), old_log_prob=None):
    """A2C by hand: per-env reverse loops for GAE, torch.distributions for log-prob and entropy."""
    logits, values = reference_forward(params, batch.obs)
    _, boot = reference_forward(params, batch.bootstrap_obs)
    steps, envs_ = batch.rewards.shape
    v = values.detach()
    adv = [[None] * envs_ for _ in range(steps)]
    for e in range(envs_):
        running, next_value = 0.0, boot[e].detach()
        for t in reversed(range(steps)):
            r = torch.sign(batch.rewards[t, e]) if config.clip_rewards else batch.rewards[t, e]
            if batch.dones[t, e] > 0:
                next_value, running = 0.0, 0.0
            delta = r + config.gamma * next_value - v[t, e]
            running = delta + config.gamma * config.gae_lambda * running
            adv[t][e] = running
            next_value = v[t, e]
    adv = torch.stack([torch.stack(row) for row in adv])
    returns = adv + v
    dist = torch.distributions.Categorical(logits=logits)
    log_prob = dist.log_prob(batch.actions)
    if old_log_prob is None:
        policy = -(log_prob * adv).mean()
    else:
        ratio = torch.exp(log_prob - old_log_prob)
        policy = -torch.min(ratio * adv, ratio.clamp(1 - config.clip_eps, 1 + config.clip_eps) * adv).mean()
    return policy + 0.5 * ((returns - values) ** 2).mean() - 0.01 * dist.entropy().mean()


def reference_meta_gradient(params, train, valid, lr, steps, first_order):
    """Second-order MAML by a loop over tasks with autograd.grad(create_graph=True)."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    total = 0.0
    num_tasks = valid.obs.shape[0]
    for i in range(num_tasks):
        task_train = A2CBatch(*(x[i] for x in train))
        adapted = dict(leaves)
        for _ in range(steps):
            inner = reference_a2c_loss(adapted, task_train)
            grads = torch.autograd.grad(inner, list(adapted.values()), create_graph=not first_order)
            adapted = {k: p - lr * g for (k, p), g in zip(adapted.items(), grads)}
        total = total + reference_a2c_loss(adapted, A2CBatch(*(x[i] for x in valid)))
    total = total / num_tasks
    grads = torch.autograd.grad(total, list(leaves.values()))
    return dict(zip(leaves, grads)), total.detach()


def test_nstep_advantages_match_rl_gae_without_episode_ends():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    adv, ret = nstep_advantages(r, v, torch.zeros(6, 3), torch.zeros(3, dtype=torch.float64), 0.99, 0.95)
    torch.testing.assert_close(adv, rl.gae(r, v, torch.ones(6, 3), 0.99, 0.95))
    torch.testing.assert_close(ret, adv + v)
    # lambda = 1 with a bootstrap: the n-step return
    boot = torch.randn(3, generator=g, dtype=torch.float64)
    _, ret = nstep_advantages(r, v, torch.zeros(6, 3), boot, 0.9, 1.0)
    want = sum(0.9**t * r[t] for t in range(6)) + 0.9**6 * boot
    torch.testing.assert_close(ret[0], want)


def test_a2c_loss_equals_a_hand_written_reference():
    net = tiny_net()
    params = net.init(1, dtype=torch.float64)
    batch = random_batch(torch.Generator().manual_seed(1), ())
    torch.testing.assert_close(a2c_loss(params, batch, net), reference_a2c_loss(params, batch), rtol=1e-12, atol=1e-12)
    config = A2CConfig(gae_lambda=0.9, clip_rewards=False)
    torch.testing.assert_close(a2c_loss(params, batch, net, config), reference_a2c_loss(params, batch, config),
                               rtol=1e-12, atol=1e-12)
    # every task at once equals the loss task by task
    batches = random_batch(torch.Generator().manual_seed(2), (3,))
    stacked = {k: torch.stack([net.init(s, dtype=torch.float64)[k] for s in range(3)]) for k in params}
    losses = a2c_task_losses(stacked, batches, net)
    for i in range(3):
        torch.testing.assert_close(losses[i], a2c_loss({k: v[i] for k, v in stacked.items()},
                                                      A2CBatch(*(x[i] for x in batches)), net), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_a2c_meta_gradient_equals_an_autograd_reference(first_order):
    net = tiny_net()
    params = net.init(2, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    train, valid = random_batch(g, (3,)), random_batch(g, (3,))
    grads, loss, aux = maml_a2c_gradient(params, train, valid, net, optim.sgd(0.5), steps=2, first_order=first_order)
    want, want_loss = reference_meta_gradient(params, train, valid, 0.5, 2, first_order)
    torch.testing.assert_close(loss, want_loss, rtol=1e-10, atol=1e-12)
    for k in params:
        torch.testing.assert_close(grads[k], want[k], rtol=1e-8, atol=1e-10)
    assert set(aux) == {"inner_loss", "entropy"}
    torch.testing.assert_close(maml_a2c_loss(params, train, valid, net, optim.sgd(0.5), steps=2), want_loss.detach()
                               if not first_order else loss, rtol=1e-10, atol=1e-12)
    if not first_order:  # the second-order terms are not negligible here: the first-order gradient differs
        fo, _, _ = maml_a2c_gradient(params, train, valid, net, optim.sgd(0.5), steps=2, first_order=True)
        assert max(float((fo[k] - grads[k]).abs().max()) for k in params) > 1e-6


def test_adapt_a2c_stacked_equals_a_per_task_loop():
    net = tiny_net()
    params = net.init(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    train = (random_batch(g, (3,)), random_batch(g, (3,)))
    inner = optim.sgd(0.3)
    stacked = adapt_a2c(params, train, net, inner, steps=2)
    for i in range(3):
        loop = meta.adapt_sequence(params, [A2CBatch(*(x[i] for x in b)) for b in train],
                                   lambda p, b: a2c_loss(p, b, net), inner)
        for k in params:
            torch.testing.assert_close(stacked[k][i], loop[k], rtol=1e-12, atol=1e-12)
    # per-task starting params
    again = adapt_a2c(stacked, train[0], net, inner, params_per_task=True)
    for i in range(3):
        one = meta.adapt({k: v[i] for k, v in stacked.items()}, A2CBatch(*(x[i] for x in train[0])),
                         lambda p, b: a2c_loss(p, b, net), inner)
        torch.testing.assert_close(again["fc.weight"][i], one["fc.weight"], rtol=1e-12, atol=1e-12)


def test_maml_a2c_meta_step_sgd_adam_and_ppo_outer():
    net = tiny_net()
    params = net.init(4, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    train, valid = random_batch(g, (2,)), random_batch(g, (2,))
    inner = optim.sgd(0.1)
    grads, loss, _ = maml_a2c_gradient(params, train, valid, net, inner)
    step = maml_a2c(net, inner, optim.sgd(0.01))
    assert isinstance(step, meta.MetaStep)
    new, _, stats = step.update(params, step.init(params), train, valid)
    for k in params:
        torch.testing.assert_close(new[k], params[k] - 0.01 * grads[k], rtol=1e-12, atol=1e-14)
    assert stats["meta_loss"] == pytest.approx(float(loss))
    assert set(stats) == {"meta_loss", "grad_norm", "inner_loss", "entropy", "loss_after"}
    # PPO's surrogate at ratio 1 has A2C's policy gradient: the first epoch's gradient is the same
    with torch.no_grad():
        adapted = adapt_a2c(params, train, net, inner)
        old = CATEGORICAL.log_prob(CATEGORICAL.params(net.apply_stacked(adapted, valid.obs)[0]), valid.actions)
    ppo_grads, _, _ = maml_a2c_gradient(params, train, valid, net, inner, old_log_prob=old)
    for k in params:
        torch.testing.assert_close(ppo_grads[k], grads[k], rtol=1e-10, atol=1e-12)
    # the meta-optimizer: Adam with gradient clipping at 0.5, PPO outer over 2 epochs
    meta_opt = optim.chain(optim.clip_by_global_norm(0.5), optim.adam(1e-3))
    ppo = maml_a2c(net, inner, meta_opt, outer="ppo", epochs=2, first_order=True)
    state = ppo.init(params)
    new, state, stats = ppo.update(params, state, train, valid)
    assert all(math.isfinite(v) for v in stats.values())
    assert int(state[1].count) == 2


def test_maml_a2c_bad_inputs():
    net = tiny_net()
    params = net.init(0, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    train, valid = random_batch(g, (2,)), random_batch(g, (2,))
    inner = optim.sgd(0.1)
    with pytest.raises(ValueError, match="outer must be one of"):
        maml_a2c(net, inner, optim.adam(1e-3), outer="trpo")
    with pytest.raises(ValueError, match="epochs"):
        maml_a2c(net, inner, optim.adam(1e-3), epochs=3)
    with pytest.raises(TypeError, match="actions must be an integer Tensor"):
        maml_a2c_loss(params, train._replace(actions=train.actions.double()), valid, net, inner)
    with pytest.raises(ValueError, match=r"valid.obs expected shape"):
        maml_a2c_loss(params, train, valid._replace(obs=valid.obs[..., :6]), net, inner)
    with pytest.raises(ValueError, match="2 per-step inner batches for 1 inner steps"):
        adapt_a2c(params, (train, train), net, inner)
    with pytest.raises(TypeError, match="net must be an ActorCriticCNN"):
        a2c_loss(params, A2CBatch(*(x[0] for x in train)), optim.sgd(0.1))
    with pytest.raises(ValueError, match="gamma"):
        A2CConfig(gamma=1.5)


# --------------------------------------------------------------------------- sampling n-step batches of flavours
def test_nstep_sampler_feeds_one_maml_a2c_meta_step():
    from functional_metarl.runners import NStepTaskSampler

    family = AtariTaskFamily(game_flavours("breakout", modes=[0, 4], difficulties=[0]))
    net = nature_cnn_actor_critic(family.num_actions, conv=((4, 8, 4), (4, 4, 2)), hidden=8)
    params = net.init(0)
    batches = []
    for _ in range(2):
        with NStepTaskSampler(family.make_env, 2, 2, 3, seed=7) as sampler:
            sampler.set_tasks(list(family.tasks))
            assert sampler.envs.get_attr("task") == (family.tasks[0],) * 2 + (family.tasks[1],) * 2
            train = sampler.sample(params, net)
            inner = optim.sgd(0.1)
            adapted = adapt_a2c(params, train, net, inner, first_order=True)
            valid = sampler.sample(adapted, net, params_per_task=True)
            batches.append((train, valid))
            assert sampler.steps_taken == 2 * 3 * 4
    train, valid = batches[0]
    assert train.obs.shape == (2, 3, 2, 4, 84, 84) and train.obs.dtype == torch.uint8
    assert train.actions.shape == train.rewards.shape == train.dones.shape == (2, 3, 2)
    assert train.bootstrap_obs.shape == (2, 2, 4, 84, 84)
    assert int(train.actions.max()) < family.num_actions
    for a, b in zip(batches[0], batches[1]):  # same seed, same calls: same batches
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y)
    step = maml_a2c(net, optim.sgd(0.1), optim.chain(optim.clip_by_global_norm(0.5), optim.adam(1e-3)),
                    first_order=True)
    new, _, stats = step.update(params, step.init(params), train, valid)
    assert all(math.isfinite(v) for v in stats.values()) and set(new) == set(params)
    # a restored generator state gives the same episodes from the next set_tasks
    with NStepTaskSampler(family.make_env, 2, 1, 2, seed=3) as sampler:
        saved = sampler.state_dict()
        sampler.set_tasks(list(family.tasks))
        first = sampler.sample(params, net)
        sampler.load_state_dict(saved)
        sampler.set_tasks(list(family.tasks))
        again = sampler.sample(params, net)
        for x, y in zip(first, again):
            torch.testing.assert_close(x, y)
    with NStepTaskSampler(family.make_env, 2, 1, 2) as sampler:
        with pytest.raises(RuntimeError, match="before set_tasks"):
            sampler.sample(params, net)
        sampler.set_tasks(list(family.tasks))
        with pytest.raises(ValueError, match="the net expects obs"):
            sampler.sample(tiny_net().init(0), tiny_net())


# --------------------------------------------------------------------------- the runner: resume is bit-identical
def test_maml_atari_trainer_resumes_bit_identically(tmp_path):
    import json

    from functional_metarl.runners import CHECKPOINT_FILE, METRICS_FILE, MAMLAtariConfig, MAMLAtariTrainer

    settings = dict(checkpoint_every=2, net="tiny", meta_batch_size=2, envs_per_task=1, num_steps=3, device="cpu",
                    eval_tasks=2, eval_steps=2, inner_steps=2, tasks="games", games=("breakout", "freeway", "boxing"))
    with MAMLAtariTrainer(MAMLAtariConfig(iterations=4, **settings)) as straight:
        straight.train(progress=False)
        evaluation = straight.evaluate(steps=2)
    assert set(evaluation) == {"reward_k0", "reward_k1", "reward_k2"}
    assert [t.game for t in straight.train_tasks] == ["breakout", "freeway", "boxing"]
    assert straight.held_out_tasks == [AtariTask("pong", 0, 0)] and straight.net.num_actions == 18
    with MAMLAtariTrainer(MAMLAtariConfig(iterations=2, **settings), tmp_path) as first:
        first.train(progress=False)
    assert [row["iteration"] for row in json.loads((tmp_path / METRICS_FILE).read_text())["history"]] == [1, 2]
    with MAMLAtariTrainer(MAMLAtariConfig(iterations=4, **settings), tmp_path) as resumed:
        resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
        resumed.train(progress=False)
        for k in straight.params:
            assert torch.equal(straight.params[k], resumed.params[k]), k
        timing = ("seconds", "frames_per_s")
        assert [{k: v for k, v in row.items() if k not in timing} for row in resumed.history] == \
            [{k: v for k, v in row.items() if k not in timing} for row in straight.history]
        assert all(row["frames_per_s"] > 0 for row in resumed.history)


def test_task_pool_sampler_continues_each_tasks_episodes():
    from functional_metarl.runners import TaskPoolSampler

    family = AtariTaskFamily(game_flavours("breakout", modes=[0, 4], difficulties=[0]))
    net = nature_cnn_actor_critic(family.num_actions, conv=((4, 8, 4), (4, 4, 2)), hidden=8)
    params = net.init(0)
    with TaskPoolSampler(family.make_env, list(family.tasks), 2, 3, seed=1) as pool:
        first = pool.sample(params, net, [1, 0])
        second = pool.sample(params, net, [0])
        assert first.obs.shape == (2, 3, 2, 4, 84, 84) and second.obs.shape == (1, 3, 2, 4, 84, 84)
        torch.testing.assert_close(second.obs[0, 0], first.bootstrap_obs[1])  # task 0 went on where it stopped
        assert pool.groups[0].get_attr("task") == (family.tasks[0],) * 2
        pool.restart()
        third = pool.sample(params, net, [0])
        assert not torch.equal(third.obs[0, 0], second.bootstrap_obs[0])  # a new episode's first frames
        with pytest.raises(ValueError, match="distinct indices"):
            pool.sample(params, net, [1, 1])
        with pytest.raises(ValueError, match=r"task_ids\[0\] must be an int in \[0, 1\]"):
            pool.sample(params, net, [2])


def test_maml_atari_config_errors_name_the_choices():
    from functional_metarl.runners import MAMLAtariConfig, MAMLAtariTrainer

    with pytest.raises(ValueError, match="tasks must be one of"):
        MAMLAtariConfig(tasks="levels")
    with pytest.raises(ValueError, match=r"modes\[0\] \(the modes of 'breakout'\) must be one of \(0, 4"):
        MAMLAtariTrainer(MAMLAtariConfig(game="breakout", held_out_modes=(1,), net="tiny", device="cpu"))
    with pytest.raises(ValueError, match="game must be one of"):
        MAMLAtariTrainer(MAMLAtariConfig(tasks="games", games=("breakout", "pongg"), net="tiny", device="cpu"))
    with pytest.raises(ValueError, match=r"held out and trained on: \['pong'\]"):
        MAMLAtariTrainer(MAMLAtariConfig(tasks="games", games=("breakout", "pong"), net="tiny", device="cpu"))
    with pytest.raises(ValueError, match="meta_batch_size 5 is more than the 4 training tasks"):
        MAMLAtariTrainer(MAMLAtariConfig(tasks="games", meta_batch_size=5, net="tiny", device="cpu"))


def test_maml_atari_example_runs_resumes_and_names_bad_modes(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "maml_atari.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    tiny = ["--net", "tiny", "--meta-batch-size", "2", "--envs-per-task", "1", "--num-steps", "2", "--eval-tasks", "1",
            "--eval-steps", "2", "--eval-inner-steps", "1", "--no-progress", "--device", "cpu", "--output", str(tmp_path)]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *tiny, *extra], env=env, capture_output=True, text=True,
                              timeout=300, check=False)

    proc = run("--iterations", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("metrics.json", "checkpoint.pt", "training.png", "adaptation.png"):
        assert (tmp_path / name).is_file(), name
    proc = run("--iterations", "2", "--resume")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "at meta-iteration 1" in proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["iteration"] for row in metrics["history"]] == [1, 2]
    assert set(metrics["eval"]) == {"MAML meta-params", "random init"}
    proc = run("--game", "breakout", "--held-out-modes", "1")
    assert proc.returncode == 2 and "must be one of (0, 4, 8" in proc.stderr
