"""Deep Option-Critic: actor / critic losses vs hand-computed values, the network, bad inputs,
a short CartPole run that beats a random policy, exact resume, Gaussian options."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.func import grad

from functional_metarl.nn.option_critic_nets import option_critic_net
from functional_metarl.rl import (
    intra_option_critic_loss,
    intra_option_q_target,
    option_actor_losses,
)
from functional_metarl.runners import DeepOptionCriticConfig, DeepOptionCriticTrainer

torch.set_num_threads(1)


# ------------------------------------------------------------------ pure losses
def _actor(log_prob, entropy, beta_t, terminal=0.0, xi=0.01, ent=0.05, veps=0.1):
    q_tm1, q_t = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5])
    discount = torch.tensor(0.9 * (1.0 - terminal))
    return option_actor_losses(log_prob, entropy, q_tm1, q_t, beta_t, torch.tensor(0), torch.tensor(1.0), discount,
                               torch.tensor(terminal), xi, ent, veps)


def test_actor_losses_hand_computed():
    lp, h, beta = torch.tensor(-0.7), torch.tensor(0.6), torch.tensor([0.2, 0.6])
    L = _actor(lp, h, beta)
    # U = 0.8 * 0.5 + 0.2 * max(0.5, 1.5) = 0.7; g = 1 + 0.9 * 0.7 = 1.63; advantage = g - Q(s, 0) = 0.63
    assert float(L.advantage) == pytest.approx(0.63)
    assert float(L.policy) == pytest.approx(0.7 * 0.63 - 0.05 * 0.6)
    # V = 0.9 * 1.5 + 0.1 * mean(0.5, 1.5) = 1.45; Q - V + xi = 0.5 - 1.45 + 0.01
    assert float(L.termination_advantage) == pytest.approx(-0.94)
    assert float(L.termination) == pytest.approx(0.2 * -0.94)
    # gradients: policy w.r.t. log-prob is -advantage, w.r.t. entropy -coef; termination only on beta_w
    def total(a, b, c):
        out = _actor(a, b, c)
        return out.policy + out.termination

    g_lp, g_h, g_beta = grad(total, argnums=(0, 1, 2))(lp, h, beta)
    assert float(g_lp) == pytest.approx(-0.63) and float(g_h) == pytest.approx(-0.05)
    assert torch.allclose(g_beta, torch.tensor([-0.94, 0.0]))
    # terminal s': no bootstrap (g = r) and no termination gradient
    T = _actor(lp, h, beta, terminal=1.0)
    assert float(T.advantage) == pytest.approx(1.0 - 1.0) and float(T.termination) == 0.0
    g_beta_t = grad(lambda c: _actor(lp, h, c, terminal=1.0).termination)(beta)
    assert torch.equal(g_beta_t, torch.zeros(2))


def test_critic_loss_with_target_network_values():
    q_online_tm1 = torch.tensor([0.3, 0.8], requires_grad=True)
    q_target_t, beta_online_t = torch.tensor([1.0, 2.0]), torch.tensor([0.25, 0.5])
    g = intra_option_q_target(torch.tensor(0.5), torch.tensor(0.99), q_target_t, beta_online_t, torch.tensor(1))
    # option 1 at s': (1 - 0.5) * 2.0 + 0.5 * 2.0 = 2.0 -> 0.5 + 0.99 * 2.0
    assert float(g) == pytest.approx(2.48)
    loss = intra_option_critic_loss(q_online_tm1, torch.tensor(1), g)
    assert float(loss.detach()) == pytest.approx(0.5 * (2.48 - 0.8) ** 2)
    (dq,) = torch.autograd.grad(loss, q_online_tm1)
    assert torch.allclose(dq, torch.tensor([0.0, 0.8 - 2.48]))


def test_network_heads_and_gradient_routing():
    net = option_critic_net(3, 2, num_actions=4, hidden=(8,))
    p = net.init(0)
    h = net.apply(p, torch.zeros(5, 3))
    assert h.q.shape == (5, 2) and h.beta.shape == (5, 2) and h.policy.shape == (5, 2, 4) and h.log_std is None
    assert ((h.beta > 0) & (h.beta < 1)).all()
    gnet = option_critic_net(3, 2, act_dim=2, hidden=(8,), init_log_std=-0.5)
    gp = gnet.init(0)
    gh = gnet.apply(gp, torch.zeros(5, 3))
    assert gh.policy.shape == (5, 2, 2) and torch.allclose(gh.log_std, torch.full((5, 2, 2), -0.5))

    # the actor loss built on the net moves the policy and termination bodies, never the critic
    def actor_loss(params):
        x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
        h0, h1 = net.apply(params, x[:1]), net.apply(params, x[1:])
        logp = torch.log_softmax(h0.policy[0, 1], -1)[2]
        L = option_actor_losses(logp, torch.tensor(0.0), h0.q[0].detach(), h1.q[0].detach(), h1.beta[0], torch.tensor(1),
                                torch.tensor(1.0), torch.tensor(0.99), torch.tensor(0.0), 0.01, 0.0, 0.1)
        return L.policy + L.termination

    g = grad(actor_loss)(p)
    assert all(float(v.abs().sum()) == 0 for k, v in g.items() if k.startswith("critic."))
    assert any(float(v.abs().sum()) > 0 for k, v in g.items() if k.startswith("policy."))
    assert any(float(v.abs().sum()) > 0 for k, v in g.items() if k.startswith("termination."))


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        option_critic_net(3, 2)  # neither num_actions nor act_dim
    with pytest.raises(ValueError):
        option_critic_net(3, 2, num_actions=2, act_dim=2)
    with pytest.raises(ValueError):
        option_actor_losses(torch.tensor(0.0), torch.tensor(0.0), torch.zeros(2), torch.zeros(3), torch.zeros(3),
                            torch.tensor(0), torch.tensor(0.0), torch.tensor(0.9), torch.tensor(0.0))
    with pytest.raises(ValueError):  # log-prob of a whole batch where one transition's was expected
        option_actor_losses(torch.zeros(4), torch.tensor(0.0), torch.zeros(2), torch.zeros(2), torch.zeros(2),
                            torch.tensor(0), torch.tensor(0.0), torch.tensor(0.9), torch.tensor(0.0))
    for bad in ({"num_options": 0}, {"gamma": 1.5}, {"termination_value": "mean"}, {"critic_lr": -1.0},
                {"epsilon_end": 2.0}, {"hidden": ()}, {"xi": float("nan")}, {"learning_starts": -1}):
        with pytest.raises(ValueError):
            DeepOptionCriticConfig(**bad)
    with pytest.raises(TypeError):  # unsupported action space
        DeepOptionCriticTrainer(DeepOptionCriticConfig(num_envs=1), env_fn=lambda i: _TinyReach(multi_discrete=True))
    t = DeepOptionCriticTrainer(DeepOptionCriticConfig(num_envs=1))
    with pytest.raises(ValueError):
        t.evaluate(0)
    t.env_step()  # one CartPole step never ends an episode: the round is still going
    assert t._in_round and t.steps == 1
    with pytest.raises(RuntimeError, match="between rounds only"):
        t.state_dict()
    t.close()


# ------------------------------------------------------------------ short runs
def _cartpole_random_return(episodes: int = 30) -> float:
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    total = 0.0
    for e in range(episodes):
        env.reset(seed=e)
        done = False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total, done = total + r, term or trunc
    return total / episodes


def test_short_cartpole_run_beats_random():
    # larger steps than the defaults so that a few seconds suffice (seeds 0-3 reach 160-245);
    # 9 rounds: the 3,853 env steps that a 3,000-step budget ran before budgets counted rounds
    cfg = DeepOptionCriticConfig(num_envs=8, iterations=9, learning_starts=256, epsilon_decay_steps=1_000,
                                 critic_lr=3e-3, policy_lr=3e-3, termination_lr=1e-3, target_update_every=250, seed=0)
    t = DeepOptionCriticTrainer(cfg)
    t.train(progress=False)
    random_return = _cartpole_random_return()
    assert random_return < 30
    last = t.mean_return(10)
    assert last > 3 * random_return, (last, random_return)
    assert all(0 < e["option_duration"] <= e["length"] for e in t.episodes)
    t.close()


def test_exact_resume(tmp_path):
    kw = {"num_envs": 2, "learning_starts": 20, "batch_size": 16, "epsilon_decay_steps": 500, "target_update_every": 50,
          "seed": 4}
    straight = DeepOptionCriticTrainer(DeepOptionCriticConfig(iterations=5, **kw))
    straight.train(progress=False)
    first = DeepOptionCriticTrainer(DeepOptionCriticConfig(iterations=4, **kw), output_dir=tmp_path)
    first.train(progress=False)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "metrics.json").is_file()
    resumed = DeepOptionCriticTrainer(DeepOptionCriticConfig(iterations=5, **kw), output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    resumed.train(progress=False)
    assert resumed.steps == straight.steps and resumed.updates == straight.updates
    assert all(torch.equal(resumed.params[k], straight.params[k]) for k in straight.params)
    assert [e["return"] for e in resumed.episodes] == [e["return"] for e in straight.episodes]
    assert resumed.history == straight.history
    with pytest.raises(ValueError):  # different settings
        DeepOptionCriticTrainer(DeepOptionCriticConfig(iterations=5, **{**kw, "xi": 0.5})).load_checkpoint(
            tmp_path / "checkpoint.pt")
    for t in (straight, first, resumed):
        t.close()


class _TinyReach(gym.Env):
    """1-D reach: obs (x, target), action dx in [-1, 1], reward -|x - target|, 8 steps; reports success."""

    def __init__(self, multi_discrete: bool = False):
        self.observation_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, 2]) if multi_discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t, self.n = 0.0, float(self.np_random.uniform(-2, 2)), 0
        return np.array([self.x, self.t], np.float32), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        self.x, self.n = self.x + float(action[0]), self.n + 1
        d = abs(self.x - self.t)
        return np.array([self.x, self.t], np.float32), -d, False, self.n >= 8, {"success": float(d < 0.3)}


def test_gaussian_options_run_and_report_success(tmp_path):
    cfg = DeepOptionCriticConfig(num_envs=2, iterations=4, learning_starts=16, batch_size=8, num_options=3,
                                 hidden=(16,), init_log_std=-1.0, seed=1)
    t = DeepOptionCriticTrainer(cfg, output_dir=tmp_path, env_fn=lambda i: _TinyReach())
    assert t.continuous and t.params["log_std"].shape == (3, 1)
    before = t.params["log_std"].clone()
    t.train(progress=False)
    assert t.steps == 64 and len(t.episodes) == 8 and all("success" in e for e in t.episodes)
    assert not torch.equal(before, t.params["log_std"])  # the log-std is learned
    ev = t.evaluate(2)
    assert set(ev) >= {"return", "success", "option_duration"} and math.isfinite(ev["return"])
    t.close()


def test_metaworld_pickplace_few_steps():
    pytest.importorskip("metaworld", reason="metaworld is not installed (pip install -e '.[metaworld]'; it pins mujoco 3.3.0)")
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    cfg = DeepOptionCriticConfig(env_id="Meta-World/MT1", env_kwargs={"env_name": "pick-place-v3", "seed": 0},
                                 num_envs=1, iterations=2, learning_starts=8, batch_size=4, hidden=(16,), num_options=2)
    t = DeepOptionCriticTrainer(cfg, env_fn=lambda i: gym.make(cfg.env_id, max_episode_steps=12, **cfg.env_kwargs))
    assert t.continuous and t.act_dim == 4 and t.obs_dim == 39
    t.train(progress=False)
    assert t.steps == 24 and len(t.episodes) == 2
    assert all(e["length"] == 12 and e["success"] in (0.0, 1.0) for e in t.episodes)
    t.close()
