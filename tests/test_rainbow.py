"""Rainbow pieces: C51 projection and loss, n-step returns, (double) Q targets, noisy / dueling
nets, bad config, and a short CartPole run that must beat a random policy.

References are independent: plain Python loops over atoms / steps, closed forms.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch.func import grad_and_value, vmap

from functional_metarl import nn as fnn
from functional_metarl.rl import (
    categorical_double_q_loss,
    categorical_projection,
    categorical_q_values,
    double_q_target,
    n_step_returns,
    q_learning_loss,
    rainbow_loss,
)

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- C51 projection
def _reference_projection(z_p, probs, z_q):
    """Algorithm 1 of Bellemare et al. (2017) as a loop, with all the mass at l when b is an integer."""
    K = len(z_q)
    v_min, v_max = z_q[0], z_q[-1]
    dz = (v_max - v_min) / (K - 1)
    out = [0.0] * K
    for z, p in zip(z_p, probs):
        tz = min(max(z, v_min), v_max)
        b = (tz - v_min) / dz
        lo, hi = math.floor(b), math.ceil(b)
        if abs(b - round(b)) < 1e-9:  # lands on an atom
            out[int(round(b))] += p
        else:
            out[lo] += p * (hi - b)
            out[hi] += p * (b - lo)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_conserves_mass_and_matches_reference_loop(seed):
    g = _gen(seed)
    K = 11
    z_q = torch.linspace(-5.0, 5.0, K, dtype=DT)
    probs = torch.softmax(torch.randn(K, generator=g, dtype=DT), 0)
    r = float(torch.randn((), generator=g, dtype=DT)) * 3
    gamma = 0.9
    z_p = r + gamma * z_q  # some atoms fall outside [v_min, v_max]
    got = categorical_projection(z_p, probs, z_q)
    ref = _reference_projection(z_p.tolist(), probs.tolist(), z_q.tolist())
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    assert math.isclose(float(got.sum()), 1.0, abs_tol=1e-12)
    assert (got >= 0).all()


def test_projection_keeps_mass_when_targets_land_exactly_on_atoms():
    z_q = torch.linspace(-2.0, 2.0, 5, dtype=DT)  # spacing 1
    probs = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=DT)
    # r = 1, gamma = 1: every shifted atom lands on an atom (the last one is clipped to v_max)
    got = categorical_projection(1.0 + z_q, probs, z_q)
    np.testing.assert_allclose(got.numpy(), [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-12)
    # terminal transition (discount 0): everything on the atom at r
    got = categorical_projection(torch.full((5,), -1.0, dtype=DT), probs, z_q)
    np.testing.assert_allclose(got.numpy(), [0.0, 1.0, 0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(got.numpy(), _reference_projection([-1.0] * 5, probs.tolist(), z_q.tolist()), atol=1e-12)


def test_categorical_double_q_loss_matches_manual_kl_and_vmaps():
    g = _gen(3)
    B, A, K = 6, 3, 21
    atoms = torch.linspace(0.0, 10.0, K, dtype=DT)
    logits_tm1 = torch.randn(B, A, K, generator=g, dtype=DT)
    logits_t = torch.randn(B, A, K, generator=g, dtype=DT)
    selector = torch.randn(B, A, generator=g, dtype=DT)
    a_tm1 = torch.randint(A, (B,), generator=g)
    r_t = torch.rand(B, generator=g, dtype=DT) * 2
    discount_t = torch.tensor([0.9, 0.0, 0.81, 0.9, 0.729, 0.9], dtype=DT)
    batched = vmap(categorical_double_q_loss, in_dims=(None, 0, 0, 0, 0, 0, 0))(
        atoms, logits_tm1, a_tm1, r_t, discount_t, logits_t, selector
    )
    for b in range(B):
        a_star = int(torch.argmax(selector[b]))  # double Q: the selector picks, the target net evaluates
        p_t = torch.softmax(logits_t[b, a_star], 0)
        target = torch.tensor(
            _reference_projection((r_t[b] + discount_t[b] * atoms).tolist(), p_t.tolist(), atoms.tolist()), dtype=DT
        )
        q = torch.softmax(logits_tm1[b, a_tm1[b]], 0)
        kl = sum(float(t) * (math.log(float(t)) - math.log(float(qq))) for t, qq in zip(target, q) if t > 0)
        assert math.isclose(float(batched[b]), kl, rel_tol=1e-9, abs_tol=1e-12)
        assert float(batched[b]) >= -1e-12
    # gradient flows only into logits_tm1, and equals softmax - target (cross-entropy's gradient)
    b = 0
    x = logits_tm1[b].clone().requires_grad_(True)
    lt = logits_t[b].clone().requires_grad_(True)
    loss = categorical_double_q_loss(atoms, x, a_tm1[b], r_t[b], discount_t[b], lt, selector[b])
    loss.backward()
    assert lt.grad is None or torch.all(lt.grad == 0)
    a_star = int(torch.argmax(selector[b]))
    target = categorical_projection(r_t[b] + discount_t[b] * atoms, torch.softmax(logits_t[b, a_star], 0), atoms)
    expected = torch.zeros(A, K, dtype=DT)
    expected[a_tm1[b]] = torch.softmax(logits_tm1[b, a_tm1[b]], 0) - target
    torch.testing.assert_close(x.grad, expected)


def test_categorical_q_values_is_expectation():
    logits = torch.randn(4, 3, 7, generator=_gen(0), dtype=DT)
    atoms = torch.linspace(-1, 1, 7, dtype=DT)
    ref = (torch.softmax(logits, -1) * atoms).sum(-1)
    torch.testing.assert_close(categorical_q_values(logits, atoms), ref)


# ---------------------------------------------------------------------- n-step returns, Q targets
def _reference_n_step(r, term, trunc, n, gamma):
    T = len(r)
    out = []
    for t in range(T):
        g, k = 0.0, 0
        while k < n and t + k < T:
            g += gamma**k * r[t + k]
            k += 1
            if term[t + k - 1] or trunc[t + k - 1]:
                break
        last = t + k - 1
        disc = 0.0 if term[last] else gamma**k
        out.append((g, disc, k, last))
    return out


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_returns_match_reference_loop_with_episode_ends(n):
    rng = np.random.default_rng(n)
    T, gamma = 40, 0.95
    r = rng.normal(size=T)
    term = rng.random(T) < 0.1
    trunc = (rng.random(T) < 0.07) & ~term
    ret, disc, steps, last = n_step_returns(
        torch.as_tensor(r), torch.as_tensor(term), torch.as_tensor(trunc), n, gamma
    )
    ref = _reference_n_step(r.tolist(), term.tolist(), trunc.tolist(), n, gamma)
    np.testing.assert_allclose(ret.numpy(), [x[0] for x in ref], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(disc.numpy(), [x[1] for x in ref], rtol=1e-12)
    np.testing.assert_array_equal(steps.numpy(), [x[2] for x in ref])
    np.testing.assert_array_equal(last.numpy(), [x[3] for x in ref])


def test_n_step_returns_rejects_bad_arguments():
    r = torch.zeros(5)
    with pytest.raises(ValueError, match=r"n must be an int in \[1, inf\)"):
        n_step_returns(r, torch.zeros(5), torch.zeros(5), 0, 0.9)
    with pytest.raises(ValueError, match=r"all \[T\]"):
        n_step_returns(r, torch.zeros(4), torch.zeros(5), 2, 0.9)


def test_double_q_target_and_loss():
    q_t_value = torch.tensor([1.0, 5.0, 2.0], dtype=DT)
    q_t_selector = torch.tensor([0.0, -1.0, 3.0], dtype=DT)
    r, d = torch.tensor(0.5, dtype=DT), torch.tensor(0.9, dtype=DT)
    assert math.isclose(float(double_q_target(r, d, q_t_value, q_t_selector)), 0.5 + 0.9 * 2.0)
    assert math.isclose(float(double_q_target(r, d, q_t_value, q_t_value)), 0.5 + 0.9 * 5.0)
    q_tm1 = torch.tensor([0.0, 1.0, 0.0], dtype=DT)
    loss, td = q_learning_loss(q_tm1, torch.tensor(1), r, d, q_t_value, q_t_selector, huber_delta=None)
    assert math.isclose(float(td), 2.3 - 1.0) and math.isclose(float(loss), 0.5 * 1.3**2)
    loss, _ = q_learning_loss(q_tm1, torch.tensor(0), r, d, q_t_value, q_t_selector, huber_delta=1.0)
    assert math.isclose(float(loss), 2.3 - 0.5)  # Huber, linear part


# ---------------------------------------------------------------------- networks
def test_noisy_linear_noise_off_is_mean_net_and_noise_is_factorised():
    layer = fnn.NoisyLinear(5, 3, sigma0=0.5)
    x = torch.randn(4, 5, generator=_gen(0))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
        eps_in = torch.randn(5, generator=_gen(1))
        eps_out = torch.randn(3, generator=_gen(2))
        f = lambda e: torch.sign(e) * torch.sqrt(e.abs())  # noqa: E731
        # recover the effective weight column by column from unit inputs
        y0 = layer(torch.zeros(1, 5), eps_in, eps_out)[0]
        W = torch.stack([layer(torch.eye(5)[j : j + 1], eps_in, eps_out)[0] - y0 for j in range(5)], dim=1)
        noise_w = (W - layer.weight_mu) / layer.weight_sigma
        torch.testing.assert_close(noise_w, torch.outer(f(eps_out), f(eps_in)), rtol=1e-4, atol=1e-5)
        assert torch.linalg.matrix_rank(noise_w) == 1
        torch.testing.assert_close((y0 - layer.bias_mu) / layer.bias_sigma, f(eps_out), rtol=1e-4, atol=1e-5)
    # init follows Fortunato et al.: sigma = sigma0 / sqrt(in), |mu| <= 1 / sqrt(in)
    assert torch.allclose(layer.weight_sigma, torch.full((3, 5), 0.5 / math.sqrt(5)))
    assert layer.weight_mu.abs().max() <= 1 / math.sqrt(5)


def test_rainbow_mlp_noise_is_explicit_and_reproducible():
    net = fnn.rainbow_mlp(4, 2, num_atoms=11, hidden=(16,), head_hidden=8)
    params = net.init(0)
    obs = torch.randn(3, 4, generator=_gen(0))
    n1, n2 = net.sample_noise(_gen(5)), net.sample_noise(_gen(5))
    assert all(torch.equal(n1[k], n2[k]) for k in n1)
    out1, out2 = net.apply(params, obs, n1), net.apply(params, obs, n2)
    assert out1.shape == (3, 2, 11) and torch.equal(out1, out2)
    assert not torch.allclose(out1, net.apply(params, obs))  # noise changes the output
    # noise off equals the same net with every sigma at zero and any noise
    zero_sigma = {k: (torch.zeros_like(v) if "sigma" in k else v) for k, v in params.items()}
    torch.testing.assert_close(net.apply(params, obs), net.apply(zero_sigma, obs, n1))
    with pytest.raises(ValueError, match="noise keys"):
        net.apply(params, obs, {"bogus": torch.zeros(1)})


def test_dueling_head_is_combined_per_atom():
    net = fnn.rainbow_mlp(4, 3, num_atoms=7, hidden=(16,), head_hidden=8, dueling=True, noisy=False)
    p = net.init(1)
    obs = torch.randn(5, 4, generator=_gen(0))
    logits = net.apply(p, obs)
    h = torch.relu(obs @ p["mlp.0.weight"].T + p["mlp.0.bias"])
    v = torch.relu(h @ p["value_hidden.weight"].T + p["value_hidden.bias"]) @ p["value_out.weight"].T + p["value_out.bias"]
    a = torch.relu(h @ p["adv_hidden.weight"].T + p["adv_hidden.bias"]) @ p["adv_out.weight"].T + p["adv_out.bias"]
    a = a.reshape(5, 3, 7)
    ref = v[:, None, :] + a - a.mean(dim=1, keepdim=True)
    torch.testing.assert_close(logits, ref)
    # non-distributional net gives [..., A]
    q = fnn.rainbow_mlp(4, 3, num_atoms=1, hidden=(16,), head_hidden=8)
    assert q.apply(q.init(0), obs).shape == (5, 3)


def test_rainbow_cnn_shapes():
    for arch in ("nature", "data_efficient"):
        net = fnn.rainbow_cnn((4, 84, 84), num_actions=6, num_atoms=5, arch=arch)
        p = net.init(0)
        obs = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
        assert net.apply(p, obs, net.sample_noise(_gen(0))).shape == (2, 6, 5)


# ---------------------------------------------------------------------- config and runner
def test_config_rejects_bad_values():
    from functional_metarl.runners import RainbowConfig

    with pytest.raises(ValueError, match="num_atoms >= 2"):
        RainbowConfig(num_atoms=1)
    with pytest.raises(ValueError, match="v_min < v_max"):
        RainbowConfig(v_min=1.0, v_max=0.0)
    with pytest.raises(TypeError, match="noisy must be a bool"):
        RainbowConfig(noisy=1)


def test_short_cartpole_run_beats_random():
    """A few thousand steps of full Rainbow must beat a random policy (~22 return) clearly."""
    from functional_metarl.runners import RainbowConfig, RainbowTrainer

    # Checked on seeds 0, 1, 2 of this config: greedy returns 115, 154, 318 (random: ~22).
    cfg = RainbowConfig(
        iterations=2_000, learning_starts=200, batch_size=32, hidden=(64,), head_hidden=64, target_update=200,
        v_max=100.0, train_every=1, lr=2e-3, seed=0, device="cpu", log_every=500,
    )
    trainer = RainbowTrainer(cfg)
    try:
        trainer.train(progress=False)
        score = trainer.evaluate(10, seed=123)["return"]
    finally:
        trainer.close()
    assert score > 50.0, score


@pytest.mark.parametrize(
    "flags",
    [
        dict(double=False, prioritized=False, dueling=False, distributional=False, noisy=False, n_step=1),
        dict(distributional=False),
        dict(noisy=False, prioritized=False),
    ],
)
def test_ablations_run_and_checkpoint_resumes(flags, tmp_path):
    from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer

    cfg = RainbowConfig(iterations=80, learning_starts=48, batch_size=16, hidden=(16,), head_hidden=16,
                        target_update=20, device="cpu", seed=3, log_every=40, checkpoint_every=40, **flags)
    trainer = RainbowTrainer(cfg, output_dir=tmp_path)
    trainer.train(progress=False)
    assert trainer.updates == 80 - 48 + 1
    assert trainer.epsilon() == (0.0 if cfg.noisy else pytest.approx(1.0 + 80 / cfg.eps_decay_steps * (cfg.eps_end - 1.0)))
    trainer.close()
    # resume: same params, buffer and generator; training continues from the saved step
    resumed = RainbowTrainer(RainbowConfig.from_dict({**cfg.to_dict(), "iterations": 100}), output_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert resumed.step == 80 and len(resumed.buffer) == len(trainer.buffer)
    assert all(torch.equal(resumed.params[k], trainer.params[k]) for k in trainer.params)
    assert torch.equal(resumed.generator.get_state(), trainer.generator.get_state())
    resumed.train(progress=False)
    assert resumed.step == 100 and resumed.updates == trainer.updates + 20
    resumed.close()
    with pytest.raises(ValueError, match="different settings"):
        RainbowTrainer(RainbowConfig.from_dict({**cfg.to_dict(), "lr": 0.5}), output_dir=tmp_path).load_checkpoint(
            tmp_path / CHECKPOINT_FILE
        )


def test_gradient_clipping_is_a_chained_optimizer():
    """max_grad_norm composes optim.clip_by_global_norm before Adam (its state: (ClipState, AdamState));
    None leaves plain Adam. One update equals the same chain applied by hand."""
    from functional_metarl.optim import AdamState, ClipState, adam, apply_updates, chain, clip_by_global_norm
    from functional_metarl.runners import RainbowConfig, RainbowTrainer

    cfg = RainbowConfig(iterations=40, learning_starts=16, batch_size=8, hidden=(8,), head_hidden=8, device="cpu",
                        max_grad_norm=0.01, noisy=False, prioritized=False)
    trainer = RainbowTrainer(cfg)
    assert isinstance(trainer.opt_state[0], ClipState) and isinstance(trainer.opt_state[1], AdamState)
    for _ in range(20):
        trainer.train_iteration()
    params, generator_state = dict(trainer.params), trainer.generator.get_state()
    batch = trainer.buffer.sample(cfg.batch_size, trainer.generator)
    trainer.generator.set_state(generator_state)
    # the reference gradient: torch.func over the checked, vmapped loss (the runner's eager path
    # uses autograd over the batched, unchecked one)
    loss = partial(rainbow_loss, net=trainer.net, atoms=trainer.atoms, gamma=cfg.gamma, double=cfg.double)
    grads, _ = grad_and_value(loss, has_aux=True)(params, trainer.target_params, batch, torch.ones(cfg.batch_size),
                                                  None, None)
    by_hand = chain(clip_by_global_norm(0.01), adam(cfg.lr, eps=cfg.adam_eps))
    updates, _ = by_hand.update(grads, trainer.opt_state, params)
    trainer.update()
    expected = apply_updates(params, updates)
    assert all(torch.equal(trainer.params[k], expected[k]) for k in params)
    plain = RainbowTrainer(RainbowConfig(**{**cfg.to_dict(), "max_grad_norm": None, "hidden": (8,)}))
    assert isinstance(plain.opt_state, AdamState)
    for t in (trainer, plain):
        t.close()


# ---------------------------------------------------------------------- issue 27: the fast path
def _reference_cases():
    """The configs of tests/data/make_rainbow_reference.py (its CASES), read from that script."""
    from pathlib import Path

    source = (Path(__file__).parent / "data" / "make_rainbow_reference.py").read_text()
    namespace: dict = {}
    exec(source.split("out = {}")[0], namespace)  # the imports and CASES, not the recording
    return namespace["CASES"]


@pytest.mark.parametrize("case", ["full", "full_2envs", "dqn"])
def test_fast_path_gives_the_params_of_the_code_before_it(case):
    """Same seed, same params, bit for bit: the eager fast path (unchecked forward, batched
    losses, autograd, unchecked replay writes, skipped forwards when exploring) against params
    recorded with the code before it (tests/data/rainbow_reference_params.pt, written by
    tests/data/make_rainbow_reference.py at commit 3781ac6): full Rainbow, two envs, DQN-style."""
    from pathlib import Path

    from functional_metarl.runners import RainbowConfig, RainbowTrainer

    reference = torch.load(Path(__file__).parent / "data" / "rainbow_reference_params.pt")[case]
    trainer = RainbowTrainer(RainbowConfig(**_reference_cases()[case]))
    try:
        trainer.train(progress=False)
    finally:
        trainer.close()
    assert trainer.updates == reference["updates"]
    assert list(trainer.recent_returns) == reference["returns"]
    for k, v in reference["params"].items():
        assert torch.equal(trainer.params[k], v), k


@pytest.mark.parametrize("distributional, double, huber", [(True, True, 1.0), (True, False, 1.0), (False, True, 1.0),
                                                           (False, False, None)])
def test_unchecked_rainbow_loss_equals_the_vmapped_one(distributional, double, huber):
    """rainbow_loss(checked=False) (batched ops, apply_unchecked) gives the vmapped, checked
    loss, priorities and gradients exactly, with noise on."""
    from functional_metarl.runners.replay import Transition

    g = _gen(11)
    B, A, K = 16, 3, 11
    net = fnn.rainbow_mlp(5, A, K if distributional else 1, (12,), 10, dueling=True, noisy=True)
    params, target = net.init(0), net.init(1)
    atoms = torch.linspace(-2.0, 6.0, K) if distributional else None
    batch = Transition(torch.randn(B, 5, generator=g), torch.randint(A, (B,), generator=g),
                       torch.randn(B, generator=g), torch.randn(B, 5, generator=g),
                       (torch.rand(B, generator=g) < 0.3).float(), torch.randint(1, 4, (B,), generator=g))
    weights = torch.rand(B, generator=g)
    noise = (net.sample_noise(g), net.sample_noise(g))
    out = {}
    for checked in (True, False):
        loss = partial(rainbow_loss, net=net, atoms=atoms, gamma=0.9, double=double, huber_delta=huber, checked=checked)
        out[checked] = grad_and_value(loss, has_aux=True)(params, target, batch, weights, *noise)
    (g1, (l1, p1)), (g2, (l2, p2)) = out[True], out[False]
    assert torch.equal(l1, l2) and torch.equal(p1, p2)
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_apply_unchecked_equals_apply():
    g = _gen(2)
    for net in (fnn.rainbow_mlp(4, 2, 7, (8, 8), 6, dueling=True, noisy=True),
                fnn.rainbow_cnn((4, 30, 30), 5, 1, None, dueling=False, noisy=False, arch="data_efficient")):
        params = net.init(3)
        obs = torch.randint(0, 256, (3, *net.obs_shape), dtype=torch.uint8) if len(net.obs_shape) == 3 \
            else torch.randn(3, *net.obs_shape, generator=g)
        for noise in (None, net.sample_noise(g) if net.noisy else None):
            assert torch.equal(net.apply(params, obs, noise), net.apply_unchecked(params, obs, noise))


class _FlickerEnv:
    """A tiny frame env for the frame replay: random uint8 30x30 frames, 3 actions, episodes of
    1-11 steps ending terminated or truncated, all a function of the reset seed and the actions."""

    @staticmethod
    def make():
        import gymnasium as gym

        class Flicker(gym.Env):
            observation_space = gym.spaces.Box(0, 255, (30, 30), np.uint8)
            action_space = gym.spaces.Discrete(3)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.t, self.length = 0, int(self.np_random.integers(1, 12))
                return self.np_random.integers(0, 256, (30, 30), dtype=np.uint8), {}

            def step(self, action):
                self.t += 1
                end = self.t >= self.length
                terminated = end and bool(self.np_random.random() < 0.5)
                frame = self.np_random.integers(0, 256, (30, 30), dtype=np.uint8)
                return frame, float(action == 1), terminated, end and not terminated, {}

        return gym.wrappers.FrameStackObservation(Flicker(), 4)


def _flicker_vector_env(config):
    import gymnasium as gym

    return gym.vector.SyncVectorEnv([_FlickerEnv.make for _ in range(config.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


@pytest.mark.parametrize("prioritized", [False, True])
def test_frame_replay_trains_exactly_as_a_buffer_of_stacks(prioritized, tmp_path):
    """The runner on stacked uint8 frames (two envs, 1-11-step episodes, n = 3, a replay that
    wraps): dedup_frames=True (FrameStackReplay) reaches the same params as dedup_frames=False
    (obs and next_obs stacks), and a resumed run continues exactly."""
    from functional_metarl.runners import CHECKPOINT_FILE, RainbowConfig, RainbowTrainer
    from functional_metarl.runners.replay import FrameStackReplay

    cfg = dict(iterations=60, num_envs=2, learning_starts=40, batch_size=8, buffer_size=48, n_step=3, num_atoms=5,
               network="data_efficient_cnn", target_update=20, seed=5, prioritized=prioritized, checkpoint_every=30,
               log_every=40)
    params = {}
    for dedup in (True, False):
        trainer = RainbowTrainer(RainbowConfig(**cfg, dedup_frames=dedup), output_dir=tmp_path / str(dedup),
                                 env_fn=_flicker_vector_env)
        assert isinstance(trainer.buffer, FrameStackReplay) == dedup
        trainer.train(progress=False)
        params[dedup] = trainer.params
        trainer.close()
    assert all(torch.equal(params[True][k], params[False][k]) for k in params[True])
    resumed = RainbowTrainer(RainbowConfig(**{**cfg, "iterations": 70}), output_dir=tmp_path / "True",
                             env_fn=_flicker_vector_env)
    resumed.load_checkpoint(tmp_path / "True" / CHECKPOINT_FILE)
    resumed.train(progress=False)
    unbroken = RainbowTrainer(RainbowConfig(**cfg), env_fn=_flicker_vector_env)  # the same budgets, never stopped
    unbroken.train(progress=False)
    unbroken.config.iterations = 70
    unbroken.train(progress=False)
    assert all(torch.equal(resumed.params[k], unbroken.params[k]) for k in unbroken.params)
    for t in (resumed, unbroken):
        t.close()


def test_compiled_update_matches_eager():
    """compile=True (the update step under torch.compile) follows the eager reference: after
    the 'full' reference case's 200 updates (C51, noisy, dueling, prioritized, n = 3) the params
    agree to 1e-5 (float32 rounding of fused kernels; observed ~2e-7) and the episodes are the same."""
    from functional_metarl.runners import RainbowConfig, RainbowTrainer

    case = _reference_cases()["full"]
    runs = {}
    for compiled in (False, True):
        trainer = RainbowTrainer(RainbowConfig(**case, compile=compiled))
        trainer.train(progress=False)
        runs[compiled] = trainer
        trainer.close()
    eager, compiled = runs[False], runs[True]
    assert list(eager.recent_returns) == list(compiled.recent_returns) and eager.updates == compiled.updates
    for k in eager.params:
        torch.testing.assert_close(compiled.params[k], eager.params[k], rtol=0, atol=1e-5)
