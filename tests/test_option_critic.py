"""Four Rooms env, Option-Critic losses vs hand-computed tabular updates, and a short run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad

from functional_metarl.envs import FOUR_ROOMS_LAYOUT, FourRooms, FourRoomsNoise, FourRoomsState
from functional_metarl.rl import (
    epsilon_greedy_value,
    init_linear_option_params,
    intra_option_q_target,
    linear_option_heads,
    option_critic_losses,
    termination_advantage,
    termination_loss,
)
from functional_metarl.runners import OptionCriticConfig, OptionCriticTrainer

torch.set_num_threads(1)


# ------------------------------------------------------------------ environment
def test_four_rooms_layout_and_walls():
    env = FourRooms()
    assert env.num_states == 104 and env.num_actions == 4
    assert len(FOUR_ROOMS_LAYOUT) == 13 and all(len(r) == 13 for r in FOUR_ROOMS_LAYOUT)
    assert int(env.walls.sum()) == 169 - 104
    assert env.cell_index(7, 9) == 62  # the east doorway, the paper's goal
    doorways = [(3, 6), (10, 6), (6, 2), (7, 9)]
    for r, c in doorways:
        env.cell_index(r, c)
    with pytest.raises(ValueError):
        env.cell_index(0, 0)
    # every free cell's neighbours: the move lands on the neighbour iff it is free, else stays
    for i, (r, c) in enumerate(env.coords.tolist()):
        for a, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
            wall = FOUR_ROOMS_LAYOUT[r + dr][c + dc] == "w"
            expect = i if wall else env.cell_index(r + dr, c + dc)
            assert int(env.transitions[i, a]) == expect
    rooms = sum(env.room_cells(n).numel() for n in ("upper_left", "upper_right", "lower_left", "lower_right"))
    assert rooms == 100  # + 4 doorways


def test_four_rooms_failure_probability_and_goal_ends_episode():
    env = FourRooms()
    n = 60_000
    g = torch.Generator().manual_seed(0)
    centre = env.cell_index(3, 3)  # all four neighbours free
    state = FourRoomsState(torch.full((n,), centre), torch.zeros(n, dtype=torch.bool))
    goal = env.task(torch.full((n,), env.cell_index(11, 11)))
    action = torch.full((n,), 3)  # right
    _, cell, reward, done = env.step(state, action, goal, FourRoomsNoise(move=torch.rand(n, 2, generator=g)))
    counts = torch.stack([(cell == env.transitions[centre, a]).float().mean() for a in range(4)])
    # intended 2/3; each other direction 1/9
    assert abs(float(counts[3]) - 2 / 3) < 0.01
    for a in range(3):
        assert abs(float(counts[a]) - 1 / 9) < 0.01
    assert not done.any() and (reward == 0).all()
    # stepping into the goal: reward 1, done; afterwards frozen with reward 0
    goal1 = env.task(torch.tensor([env.cell_index(3, 4)]))
    s = FourRoomsState(torch.tensor([centre]), torch.tensor([False]))
    no_fail = FourRoomsNoise(move=torch.tensor([[0.9, 0.0]]))
    s, cell, r, d = env.step(s, torch.tensor([3]), goal1, no_fail)
    assert int(cell) == env.cell_index(3, 4) and float(r) == 1.0 and bool(d)
    s, cell, r, d = env.step(s, torch.tensor([2]), goal1, no_fail)
    assert int(cell) == env.cell_index(3, 4) and float(r) == 0.0 and bool(d)
    # reset never starts on the goal
    st, obs = env.reset(env.task(torch.full((1000,), 62)), FourRoomsNoise(start=torch.rand(1000, generator=g)))
    assert not (obs == 62).any() and obs.min() >= 0 and obs.max() < 104 and not st.done.any()


# ------------------------------------------------------------------ losses vs the tabular algorithm
def _tiny():
    """3 states, 2 options, 2 actions; arbitrary non-zero tables."""
    g = torch.Generator().manual_seed(1)
    p = init_linear_option_params(3, 2, 2)
    return {k: torch.randn(v.shape, generator=g) for k, v in p.items()}


def test_critic_target_hand_computed():
    q_t = torch.tensor([0.2, 0.5])
    beta_t = torch.tensor([0.3, 0.9])
    target = intra_option_q_target(torch.tensor(1.0), torch.tensor(0.9), q_t, beta_t, torch.tensor(0))
    assert torch.allclose(target, torch.tensor(1.0 + 0.9 * (0.7 * 0.2 + 0.3 * 0.5)))
    terminal = intra_option_q_target(torch.tensor(1.0), torch.tensor(0.0), q_t, beta_t, torch.tensor(0))
    assert float(terminal) == 1.0


@pytest.mark.parametrize("value_eps", [0.0, 0.1])
def test_gradients_match_tabular_updates(value_eps):
    params = _tiny()
    s, s_next, w, a, r, gamma, xi, ent = 0, 2, 1, 0, 0.5, 0.9, 0.05, 0.0
    phi = lambda i: torch.nn.functional.one_hot(torch.tensor(i), 3).float()

    def objective(p):
        q_tm1, logits_tm1, _ = linear_option_heads(p, phi(s))
        q_t, _, beta_t = linear_option_heads(p, phi(s_next))
        L = option_critic_losses(q_tm1, logits_tm1, q_t, beta_t, torch.tensor(w), torch.tensor(a),
                                 torch.tensor(r), torch.tensor(gamma), xi, ent, value_eps)
        return L.critic + L.policy + L.termination

    g = grad(objective)(params)
    Q, Th, Vt = params["q_weight"], params["policy_weight"], params["termination_weight"]
    beta = torch.sigmoid(Vt[s_next, w])
    U = (1 - beta) * Q[s_next, w] + beta * Q[s_next].max()
    target = r + gamma * U
    delta = target - Q[s, w]
    # critic: Q[s,w] += lr * delta  <=>  grad = -delta at [s, w], zero elsewhere
    expect_q = torch.zeros_like(Q)
    expect_q[s, w] = -delta
    assert torch.allclose(g["q_weight"], expect_q, atol=1e-6)
    # policy: theta[s,w,:] += lr * (target - Q[s,w]) * (e_a - pi)
    pi = torch.softmax(Th[s, w], -1)
    expect_th = torch.zeros_like(Th)
    expect_th[s, w] = -delta * (torch.nn.functional.one_hot(torch.tensor(a), 2).float() - pi)
    assert torch.allclose(g["policy_weight"], expect_th, atol=1e-6)
    # termination: vartheta[s',w] -= lr * beta (1 - beta) (Q[s',w] - V[s'] + xi), V = (1-e) max Q + e mean Q
    V = (1 - value_eps) * Q[s_next].max() + value_eps * Q[s_next].mean()
    expect_v = torch.zeros_like(Vt)
    expect_v[s_next, w] = beta * (1 - beta) * (Q[s_next, w] - V + xi)
    assert torch.allclose(g["termination_weight"], expect_v, atol=1e-6)


def test_entropy_bonus_and_termination_sign():
    logits = torch.tensor([[0.3, -0.2], [1.0, 0.0]])
    q = torch.zeros(2)
    args = (q, logits, q, torch.full((2,), 0.5), torch.tensor(1), torch.tensor(0), torch.tensor(0.0), torch.tensor(0.9))

    def pol(lg, c):
        return option_critic_losses(args[0], lg, *args[2:], 0.0, c).policy

    # zero advantage: only the entropy term acts, its gradient raises entropy (pushes logits together)
    g = grad(pol)(logits, 0.1)
    pi = torch.softmax(logits[1], -1)
    logp = torch.log(pi)
    H = -(pi * logp).sum()
    dH = -pi * (logp + H)  # dH/dlogits
    assert torch.allclose(g[1], -0.1 * dH, atol=1e-6) and torch.all(g[0] == 0)
    # loss = beta * (Q_w - V + xi) < 0 when Q_w < V - xi, so descending raises beta
    beta = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = termination_loss(beta, torch.tensor([0.1, 0.4]), torch.tensor(0), xi=0.01)
    (gb,) = torch.autograd.grad(loss, beta)
    assert torch.allclose(gb, torch.tensor([0.1 - 0.4 + 0.01, 0.0]))


def test_termination_gradient_sign_with_margin_and_epsilon_greedy_value():
    """With V = max Q and xi = 0 the termination gradient can only raise beta (it is zero for the
    greedy option); a margin xi > 0 or the epsilon-greedy V gives the greedy option a positive
    advantage, so descending the loss lowers its beta, while a clearly worse option's beta still rises."""
    q = torch.tensor([0.50, 0.48, 0.10])  # option 0 greedy, 1 close behind, 2 far worse
    assert torch.allclose(epsilon_greedy_value(q, 0.1), torch.tensor(0.9 * 0.5 + 0.1 * (1.08 / 3)))
    assert float(epsilon_greedy_value(q, 0.0)) == 0.5

    def dloss_dbeta(option: int, xi: float, eps: float) -> float:
        beta = torch.full((3,), 0.5, requires_grad=True)
        (g,) = torch.autograd.grad(termination_loss(beta, q, torch.tensor(option), xi, eps), beta)
        return float(g[option])

    # greedy option: zero with V = max and no margin; positive (beta falls) with a margin or eps-greedy V
    assert dloss_dbeta(0, 0.0, 0.0) == 0.0
    assert dloss_dbeta(0, 0.01, 0.0) == pytest.approx(0.01)
    assert dloss_dbeta(0, 0.0, 0.1) == pytest.approx(0.1 * (0.5 - 1.08 / 3))
    # an option within the margin of the best: the sign flips from raising beta to lowering it
    assert dloss_dbeta(1, 0.0, 0.0) < 0 < dloss_dbeta(1, 0.05, 0.0)
    # a far worse option: beta rises under every setting
    for xi, eps in ((0.0, 0.0), (0.01, 0.0), (0.0, 0.1), (0.01, 0.1)):
        assert dloss_dbeta(2, xi, eps) < 0
    assert float(termination_advantage(q, torch.tensor(2), 0.01, 0.1)) == pytest.approx(0.1 - float(epsilon_greedy_value(q, 0.1)) + 0.01)
    with pytest.raises(ValueError):
        termination_loss(torch.full((3,), 0.5), q, torch.tensor(0), 0.0, 1.5)
    with pytest.raises(ValueError):
        termination_loss(torch.full((3,), 0.5), q, torch.tensor(0), float("nan"))


def test_bad_inputs_raise():
    env = FourRooms()
    st, _ = env.reset(env.task(torch.tensor([62])), FourRoomsNoise(start=torch.rand(1)))
    with pytest.raises(ValueError):
        env.step(st, torch.tensor([0]), env.task(torch.tensor([62])), FourRoomsNoise(move=torch.rand(1)))
    with pytest.raises(TypeError):
        env.step(st, torch.tensor([0.0]), env.task(torch.tensor([62])), FourRoomsNoise(move=torch.rand(1, 2)))
    with pytest.raises(ValueError):
        linear_option_heads({"q_weight": torch.zeros(3, 2)}, torch.zeros(3))
    with pytest.raises(ValueError):
        OptionCriticConfig(iterations=10, switch_goal_at=10)
    with pytest.raises(ValueError):
        OptionCriticConfig(termination_value="mean")


# ------------------------------------------------------------------ short run
def test_short_run_steps_to_goal_decrease_and_resume(tmp_path):
    # the authors' tabular-code settings (intra-option step 25 on the logits, V = max Q, small
    # epsilon and termination step) learn within a few episodes; the defaults need hundreds
    cfg = OptionCriticConfig(num_runs=4, iterations=24, switch_goal_at=20, max_steps=300, seed=3,
                             checkpoint_every=10_000, temperature=0.01, epsilon=0.01, termination_lr=0.25,
                             termination_value="greedy")
    trainer = OptionCriticTrainer(cfg, output_dir=tmp_path)
    history = trainer.train(progress=False)
    steps = trainer.episode_steps.float()
    assert steps.shape == (4, 24) and (steps > 0).all()
    assert [row["steps_to_goal"] for row in history] == steps.mean(0).tolist()
    first, last = steps[:, :6].mean(), steps[:, 14:20].mean()
    assert last < 0.6 * first, (first, last)
    assert all(int(g) in trainer.lower_right.tolist() for g in trainer.goals[:, 1])
    beta = trainer.termination_map()
    assert beta.shape == (4, 13, 13) and torch.isnan(beta).sum() == 4 * 65
    assert trainer.termination_map(run=1).shape == (4, 13, 13)
    # every step of an unfinished episode is one arrival, counted in its phase
    arrivals = trainer.arrivals.sum((2, 3))  # [R, 2]
    assert torch.equal(arrivals.sum(1), trainer.episode_steps.sum(1) - trainer.config.iterations
                       + (trainer.episode_steps == cfg.max_steps).sum(1))
    assert torch.equal(arrivals[:, 1], trainer.episode_steps[:, 20:].sum(1) - 4 + (trainer.episode_steps[:, 20:] == cfg.max_steps).sum(1))
    probs, counts = trainer.arrival_termination_probs(0)
    assert probs.shape == (4, 104) and ((probs[counts > 0] >= 0) & (probs[counts > 0] <= 1)).all()
    assert trainer.arrival_termination_map(1).shape == (13, 13)
    stats = trainer.doorway_termination_stats(0)
    assert set(stats) == {"doorway", "interior", "ratio"} and 0 < stats["doorway"] < 1
    evaluation = trainer.evaluate()
    assert evaluation["doorway_before_goal_move"] == stats["doorway"]
    assert evaluation["steps_to_goal_last100"] == float(steps.mean())
    with pytest.raises(ValueError):
        trainer.arrival_termination_map(2)
    # resume restores everything
    again = OptionCriticTrainer(cfg, output_dir=tmp_path)
    again.load_checkpoint(tmp_path / "checkpoint.pt")
    assert again.steps == trainer.steps and again.done()
    assert all(torch.equal(again.params[k], trainer.params[k]) for k in trainer.params)
    assert torch.equal(again.arrivals, trainer.arrivals)
    assert math.isfinite(float(again.episode_steps.float().mean()))
