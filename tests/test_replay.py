"""Replay buffers: sum tree, prioritised sampling, importance weights, n-step aggregation, bad input.

References are independent: numpy sums, plain Python loops, chi-square bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from functional_metarl.rl import n_step_returns
from functional_metarl.runners import NStepAggregator, PrioritizedReplay, SumTree, UniformReplay, importance_weights


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int, start: int = 0, obs_dim: int = 3):
    obs = torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1).repeat(1, obs_dim)
    return dict(
        obs=obs,
        action=torch.arange(n) % 2,
        reward=torch.arange(start, start + n, dtype=torch.float32),
        next_obs=obs + 0.5,
        done=torch.zeros(n),
    )


# ---------------------------------------------------------------------- sum tree
def _check_tree_consistent(tree: SumTree, leaves: np.ndarray) -> None:
    t = tree.tree.numpy()
    got_leaves = t[tree.leaf_base : tree.leaf_base + tree.capacity]
    np.testing.assert_allclose(got_leaves, leaves, rtol=0, atol=1e-12)
    for node in range(1, tree.leaf_base):
        assert math.isclose(t[node], t[2 * node] + t[2 * node + 1], rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(float(tree.total), float(leaves.sum()), rel_tol=1e-12)


def test_sum_tree_updates_keep_totals_consistent():
    rng = np.random.default_rng(0)
    cap = 13  # not a power of two
    tree = SumTree(cap)
    leaves = np.zeros(cap)
    for _ in range(30):
        idx = rng.integers(0, cap, size=rng.integers(1, 8))  # duplicates included
        val = rng.random(len(idx)) * 5
        tree.update(torch.as_tensor(idx), torch.as_tensor(val))
        for i, v in zip(idx, val):  # the last write to an index wins
            leaves[i] = v
        _check_tree_consistent(tree, leaves)


def test_sum_tree_sampling_frequencies_match_priorities():
    cap = 10
    priorities = np.array([0.0, 1.0, 2.0, 3.0, 0.5, 0.0, 4.0, 1.5, 2.5, 0.5])
    tree = SumTree(cap)
    tree.update(torch.arange(cap), torch.as_tensor(priorities))
    gen = _gen(123)
    draws = torch.cat([tree.sample(256, gen, size=cap) for _ in range(200)])  # 51,200 draws
    counts = np.bincount(draws.numpy(), minlength=cap)
    assert counts[priorities == 0].sum() == 0, "zero-priority leaves must never be drawn"
    expected = priorities / priorities.sum() * len(draws)
    nz = priorities > 0
    chi2 = float((((counts - expected) ** 2)[nz] / expected[nz]).sum())
    dof = int(nz.sum()) - 1
    # Stratified sampling is less variable than multinomial; this bound is ~ p < 1e-6 for chi2(dof).
    assert chi2 < dof + 8 * math.sqrt(2 * dof), (chi2, counts, expected)


def test_prioritized_replay_sampling_follows_alpha_and_updates():
    buf = PrioritizedReplay(8, alpha=0.5, eps=0.0, num_actions=2)
    buf.add(**_batch(8))
    raw = torch.tensor([1.0, 4.0, 9.0, 16.0, 0.25, 1.0, 4.0, 0.0], dtype=torch.float64)
    buf.update_priorities(torch.arange(8), raw)
    gen = _gen(7)
    slots = torch.cat([buf.sample(8, gen, beta=0.4)[1] for _ in range(4000)])
    counts = np.bincount(slots.numpy(), minlength=8)
    p = raw.numpy() ** 0.5
    expected = p / p.sum() * len(slots)
    nz = p > 0
    chi2 = float((((counts - expected) ** 2)[nz] / expected[nz]).sum())
    dof = int(nz.sum()) - 1
    assert counts[7] == 0
    assert chi2 < dof + 8 * math.sqrt(2 * dof)


def test_new_transitions_enter_at_max_priority():
    buf = PrioritizedReplay(16, alpha=0.6, eps=0.0)
    buf.add(**_batch(4))
    np.testing.assert_allclose(buf.tree.get(torch.arange(4)).numpy(), 1.0)  # initial max priority 1
    buf.update_priorities(torch.tensor([0, 1]), torch.tensor([3.0, 0.2]))
    slots = buf.add(**_batch(2, start=4))
    np.testing.assert_allclose(buf.tree.get(slots).numpy(), 3.0**0.6)
    assert math.isclose(float(buf.tree.total), float(buf.tree.get(torch.arange(6)).sum()))


def test_importance_weights_at_most_one_and_match_formula():
    buf = PrioritizedReplay(64, alpha=0.5)
    buf.add(**_batch(50))
    buf.update_priorities(torch.arange(50), torch.rand(50, generator=_gen(1)) * 3)
    for beta in (0.0, 0.4, 1.0):
        batch, slots, w = buf.sample(32, _gen(2), beta=beta)
        assert (w <= 1.0 + 1e-6).all() and math.isclose(float(w.max()), 1.0, rel_tol=1e-6)
        probs = buf.tree.get(slots).numpy() / float(buf.tree.total)
        ref = (50 * probs) ** (-beta)
        np.testing.assert_allclose(w.numpy(), ref / ref.max(), rtol=1e-5)
        # the gathered batch is the stored data at those slots
        np.testing.assert_allclose(batch.reward.numpy(), slots.numpy().astype(np.float32))
    w = importance_weights(torch.tensor([0.1, 0.5, 0.4]), 3, 1.0)
    np.testing.assert_allclose(w.numpy(), [1.0, 0.2, 0.25], rtol=1e-6)


# ---------------------------------------------------------------------- uniform replay
def test_uniform_replay_wraps_and_samples_stored_items():
    buf = UniformReplay(5, num_actions=2)
    buf.add(**_batch(3))
    buf.add(**_batch(4, start=3))  # 7 items into capacity 5: items 0, 1 overwritten
    assert len(buf) == 5
    stored = sorted(buf.gather(torch.arange(5)).reward.tolist())
    assert stored == [2.0, 3.0, 4.0, 5.0, 6.0]
    gen = _gen(0)
    parts = [buf.sample(5, gen) for _ in range(20)]
    batch = type(parts[0])(*(torch.cat(field) for field in zip(*parts)))
    assert set(batch.reward.tolist()) <= set(stored)
    np.testing.assert_allclose(batch.next_obs[:, 0].numpy(), batch.obs[:, 0].numpy() + 0.5)
    assert batch.n_steps.dtype == torch.int64 and (batch.n_steps == 1).all()


def test_uniform_replay_float_actions_and_state_dict_roundtrip():
    buf = UniformReplay(10)
    data = _batch(6)
    data["action"] = torch.randn(6, 2, generator=_gen(3))
    buf.add(**data)
    clone = UniformReplay(10)
    clone.load_state_dict(buf.state_dict())
    a, b = buf.gather(torch.arange(6)), clone.gather(torch.arange(6))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert (clone.size, clone.cursor) == (buf.size, buf.cursor)


# ---------------------------------------------------------------------- bad input
def _snapshot(buf: UniformReplay):
    return (buf.size, buf.cursor, None if buf._storage is None else {k: v.clone() for k, v in buf._storage.items()})


def _unchanged(buf: UniformReplay, snap) -> bool:
    size, cursor, storage = snap
    if (buf.size, buf.cursor) != (size, cursor):
        return False
    if storage is None:
        return buf._storage is None
    return all(torch.equal(buf._storage[k], v) for k, v in storage.items())


@pytest.mark.parametrize("cls", [UniformReplay, PrioritizedReplay])
def test_bad_input_raises_and_stores_nothing(cls):
    buf = cls(16, num_actions=2)
    buf.add(**_batch(3))
    snap = _snapshot(buf)
    total = float(buf.tree.total) if cls is PrioritizedReplay else None
    bad = _batch(4, start=3)
    cases = [
        ({**bad, "action": bad["action"].float()}, TypeError, "integer"),
        ({**bad, "action": torch.tensor([0, 1, 2, 0])}, ValueError, r"\[0, 2\)"),
        ({**bad, "action": torch.tensor([0, -1, 1, 0])}, ValueError, r"\[0, 2\)"),
        ({**bad, "reward": torch.tensor([0.0, float("nan"), 1.0, 1.0])}, ValueError, "non-finite"),
        ({**bad, "reward": torch.tensor([0.0, float("inf"), 1.0, 1.0])}, ValueError, "non-finite"),
        ({**bad, "reward": torch.zeros(3)}, ValueError, "reward expected shape"),
        ({**bad, "next_obs": torch.zeros(4, 5)}, ValueError, "next_obs expected"),
        ({**bad, "obs": torch.zeros(4, 5), "next_obs": torch.zeros(4, 5)}, ValueError, "per-item shape"),
        ({**bad, "done": torch.tensor([0.0, 0.5, 0.0, 1.0])}, ValueError, "done must hold only 0 and 1"),
    ]
    for kwargs, err, msg in cases:
        with pytest.raises(err, match=msg):
            buf.add(**kwargs)
        assert _unchanged(buf, snap)
        if total is not None:
            assert float(buf.tree.total) == total


def test_sampling_before_a_full_batch_raises():
    buf = PrioritizedReplay(16)
    with pytest.raises(ValueError, match="holds only 0"):
        buf.sample(4, _gen(0))
    buf.add(**_batch(3))
    with pytest.raises(ValueError, match="batch of 4.*holds only 3"):
        buf.sample(4, _gen(0))
    uniform = UniformReplay(8)
    uniform.add(**_batch(3))
    with pytest.raises(ValueError, match="batch of 4.*holds only 3"):
        uniform.sample(4, _gen(0))
    with pytest.raises(TypeError, match="Generator"):
        buf.sample(2, 0)


def test_n_step_larger_than_buffer_is_rejected():
    from functional_metarl.runners import RainbowConfig

    with pytest.raises(ValueError, match=r"n_step \(20\) must not exceed buffer_size \(10\)"):
        RainbowConfig(n_step=20, buffer_size=10, batch_size=8)


def test_nstep_aggregator_rejects_non_finite_reward_without_storing():
    agg = NStepAggregator(3, 0.9, num_envs=2)
    obs = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="non-finite"):
        agg.push(obs, torch.tensor([0, 1]), torch.tensor([1.0, float("nan")]), obs, torch.zeros(2), torch.zeros(2))
    assert all(len(p) == 0 for p in agg._pending)


# ---------------------------------------------------------------------- n-step aggregation
def test_nstep_aggregator_matches_pure_n_step_returns():
    rng = np.random.default_rng(5)
    T, num_envs, n, gamma = 60, 3, 4, 0.9
    rewards = rng.normal(size=(T, num_envs)).astype(np.float32)
    terminated = rng.random((T, num_envs)) < 0.08
    truncated = (rng.random((T, num_envs)) < 0.05) & ~terminated
    truncated[-1] = ~terminated[-1]  # close every episode at the end of the data
    agg = NStepAggregator(n, gamma, num_envs)
    buf = UniformReplay(T * num_envs, num_actions=5)
    step_id = np.arange(T)[:, None] * num_envs + np.arange(num_envs)[None, :]
    for t in range(T):
        obs = torch.as_tensor(step_id[t], dtype=torch.float32).unsqueeze(1)  # obs = unique id of the step
        out = agg.push(obs, torch.tensor([t % 5] * num_envs), torch.as_tensor(rewards[t]), obs + 0.5,
                       torch.as_tensor(terminated[t]), torch.as_tensor(truncated[t]))
        if out is not None:
            buf.add(**out)
    assert len(buf) == T * num_envs  # every step emitted exactly once
    got = buf.gather(torch.arange(len(buf)))
    order = torch.argsort(got.obs[:, 0])
    for e in range(num_envs):
        ret, disc, steps, last = n_step_returns(
            torch.as_tensor(rewards[:, e], dtype=torch.float64), torch.as_tensor(terminated[:, e]),
            torch.as_tensor(truncated[:, e]), n, gamma,
        )
        rows = order[torch.as_tensor(step_id[:, e])]
        np.testing.assert_allclose(got.reward[rows].numpy(), ret.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got.n_steps[rows].numpy(), steps.numpy())
        np.testing.assert_allclose(got.next_obs[rows, 0].numpy(), step_id[last.numpy(), e] + 0.5)
        expect_disc = gamma ** got.n_steps[rows].double() * (1 - got.done[rows].double())
        np.testing.assert_allclose(expect_disc.numpy(), disc.numpy(), rtol=1e-6)


def test_nstep_aggregator_state_dict_resumes_pending_steps_exactly():
    """Saving mid-episode and loading into a fresh aggregator emits exactly what the unbroken one does."""
    rng = np.random.default_rng(3)
    steps = [(torch.as_tensor(rng.normal(size=(2, 3)), dtype=torch.float32), torch.as_tensor(rng.integers(0, 2, 2)),
              torch.as_tensor(rng.normal(size=2), dtype=torch.float32), torch.as_tensor(rng.normal(size=(2, 3)), dtype=torch.float32),
              torch.as_tensor(rng.random(2) < 0.15), torch.as_tensor(rng.random(2) < 0.1)) for _ in range(20)]
    unbroken, first = NStepAggregator(3, 0.9, 2), NStepAggregator(3, 0.9, 2)
    want = [unbroken.push(*s) for s in steps]
    got = [first.push(*s) for s in steps[:7]]
    state = first.state_dict()
    assert sum(len(p) for p in state["pending"]) > 0  # something is pending at the cut
    resumed = NStepAggregator(3, 0.9, 2)
    resumed.load_state_dict(state)
    got += [resumed.push(*s) for s in steps[7:]]
    assert [w is None for w in want] == [g is None for g in got]
    for w, g in zip(want, got):
        if w is not None:
            assert set(w) == set(g) and all(torch.equal(w[k], g[k]) for k in w)
    with pytest.raises(ValueError, match="n-step n 4 differs from the saved 3"):
        NStepAggregator(4, 0.9, 2).load_state_dict(state)


# ---------------------------------------------------------------------- frame-deduplicating replay
class _ScriptedFrameEnvs:
    """``num_envs`` envs stepping frame stacks as gymnasium's ``FrameStackObservation`` does:
    every frame distinct (random uint8 ``[H, W]``), episode lengths and their ends
    (terminated / truncated) drawn from ``rng``; the reset stack is its frame padded with
    ``padding`` ("reset": repeated, "zero": zeros)."""

    def __init__(self, num_envs: int, K: int, hw: tuple[int, int], padding: str, rng: np.random.Generator):
        self.n, self.K, self.hw, self.padding, self.rng = num_envs, K, hw, padding, rng
        self.stacks = np.zeros((num_envs, K, *hw), np.uint8)
        self.left = np.zeros(num_envs, np.int64)

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, self.hw, dtype=np.uint8)

    def reset(self, e: int) -> None:
        f = self._frame()
        self.stacks[e] = f if self.padding == "reset" else 0
        self.stacks[e, -1] = f
        self.left[e] = self.rng.choice([1, 1, 1, 1, 2, 3, 5, 8, 13])  # short and long episodes

    def step(self):
        """-> (next stacks, terminated, truncated): final stacks where an episode ended."""
        nxt = np.concatenate([self.stacks[:, 1:], np.stack([self._frame() for _ in range(self.n)])[:, None]], axis=1)
        self.left -= 1
        ended = self.left == 0
        terminated = ended & (self.rng.random(self.n) < 0.5)
        return nxt, terminated, ended & ~terminated


@pytest.mark.parametrize("num_envs, padding, prioritized", [(1, "reset", False), (3, "reset", True), (2, "zero", False)])
def test_frame_stack_replay_batches_equal_a_buffer_of_stacks(num_envs, padding, prioritized):
    """The frame-deduplicating replay returns exactly the batches (stacks, actions, n-step
    returns, dones, priorities' effect) of a buffer storing obs and next_obs stacks, from the
    same generator: across episode starts (padding), episode ends of every length, truncations,
    several envs and many wrap-arounds of both rings."""
    from functional_metarl.runners.replay import FrameStackReplay

    K, hw, capacity, n = 4, (6, 5), 61, 3
    rng = np.random.default_rng(7)
    envs = _ScriptedFrameEnvs(num_envs, K, hw, padding, rng)
    naive = PrioritizedReplay(capacity, num_actions=4) if prioritized else UniformReplay(capacity, num_actions=4)
    lean = FrameStackReplay(capacity, (K, *hw), num_envs, prioritized=prioritized, padding=padding, n_step=n,
                            num_actions=4)
    agg_naive, agg_lean = NStepAggregator(n, 0.9, num_envs), NStepAggregator(n, 0.9, num_envs)
    for e in range(num_envs):
        envs.reset(e)
    ids = lean.begin(torch.as_tensor(envs.stacks))
    compared = 0
    for t in range(600):
        obs = envs.stacks.copy()
        action = torch.as_tensor(rng.integers(0, 4, num_envs))
        reward = torch.as_tensor(rng.normal(size=num_envs), dtype=torch.float32)
        nxt, terminated, truncated = envs.step()
        next_ids = lean.extend(torch.as_tensor(nxt))
        out = agg_naive.push(torch.as_tensor(obs), action, reward, torch.as_tensor(nxt), terminated, truncated)
        out_lean = agg_lean.push(ids, action, reward, next_ids, terminated, truncated)
        assert (out is None) == (out_lean is None)
        if out is not None:
            naive.add(**out)
            lean.add(**out_lean)
        envs.stacks = nxt
        ended = terminated | truncated
        for e in np.flatnonzero(ended):
            envs.reset(e)
        ids = next_ids.clone()
        if ended.any():
            fresh = lean.begin(torch.as_tensor(envs.stacks), torch.as_tensor(ended))
            ids[torch.as_tensor(ended)] = fresh[torch.as_tensor(ended)]
        if len(naive) >= 8 and t % 7 == 0:
            seed = 1000 + t
            if prioritized:
                a, slots_a, w_a = naive.sample(8, _gen(seed), beta=0.6)
                b, slots_b, w_b = lean.sample(8, _gen(seed), beta=0.6)
                assert torch.equal(slots_a, slots_b) and torch.equal(w_a, w_b)
                p = torch.as_tensor(rng.random(8))
                naive.update_priorities(slots_a, p)
                lean.update_priorities(slots_b, p)
            else:
                a, b = naive.sample(8, _gen(seed)), lean.sample(8, _gen(seed))
            for field in a._fields:
                assert torch.equal(getattr(a, field), getattr(b, field)), (t, field)
            compared += 1
    assert compared > 40 and lean.written > 3 * capacity  # both rings wrapped several times
    # episodes of 1-13 steps: a final frame per episode, more than the initial ring holds, so it grew
    assert lean.num_frames > capacity + 2 * num_envs * (K + n + 1), lean.num_frames
    # a checkpoint restores the same batches
    restored = FrameStackReplay(capacity, (K, *hw), num_envs, prioritized=prioritized, padding=padding, n_step=n,
                                num_actions=4)
    restored.load_state_dict(lean.state_dict())
    x, y = lean.gather(torch.arange(len(lean))), restored.gather(torch.arange(len(lean)))
    assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in x._fields)


def test_frame_stack_replay_stores_about_one_frame_per_transition():
    """At 4 x 84 x 84 uint8 the lean replay holds <= 7.5 KB per transition (a buffer of obs
    and next_obs stacks: 56 KB), counted from its tensors once full."""
    from functional_metarl.runners.replay import FrameStackReplay

    capacity, K = 2_000, 4
    lean = FrameStackReplay(capacity, (K, 84, 84), 1, prioritized=True, n_step=3, num_actions=6)
    frame = torch.zeros((1, K, 84, 84), dtype=torch.uint8)
    ids = lean.begin(frame)
    for t in range(capacity + 100):  # 200-step episodes, one final frame each
        nxt = torch.roll(frame, -1, dims=1)
        nxt[0, -1] = t % 251
        next_ids = lean.extend(nxt)
        lean.add(ids, torch.zeros(1, dtype=torch.int64), torch.zeros(1), next_ids, torch.zeros(1))
        frame, ids = nxt, next_ids
        if t % 200 == 199:
            frame = torch.full((1, K, 84, 84), t % 7, dtype=torch.uint8)
            ids = lean.begin(frame)
    naive_bytes = 2 * K * 84 * 84
    assert lean.bytes_per_transition() <= 7.5 * 1024 < naive_bytes, lean.bytes_per_transition()


def test_frame_stack_replay_refuses_what_it_cannot_rebuild():
    from functional_metarl.runners.replay import FrameStackReplay

    lean = FrameStackReplay(8, (3, 2, 2), 2)
    stacks = torch.zeros((2, 3, 2, 2), dtype=torch.uint8)
    stacks[:, 0] = 5  # not its last frame repeated
    with pytest.raises(ValueError, match="padding='reset'"):
        lean.begin(stacks)
    lean.begin(torch.zeros((2, 3, 2, 2), dtype=torch.uint8))
    with pytest.raises(ValueError, match="shifted by one frame"):
        lean.extend(torch.full((2, 3, 2, 2), 9, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"obs expected shape \(2, 3, 2, 2\)"):
        lean.extend(torch.zeros((1, 3, 2, 2), dtype=torch.uint8))
    with pytest.raises(TypeError, match="obs expected dtype"):
        lean.begin(torch.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="padding must be one of"):
        FrameStackReplay(8, (3, 2, 2), padding="edge")
