"""Option-Critic math (Bacon, Harb & Precup 2017): pure, unbatched, batch with ``vmap``.

One transition ``(s_tm1, option_tm1, a_tm1, r_t, s_t)`` of an option ``w = option_tm1`` run
call-and-return. With ``O`` options and ``A`` actions:

- critic (intra-option Q-learning): ``U(w, s_t) = (1 - beta_w(s_t)) Q(s_t, w) + beta_w(s_t) max_w' Q(s_t, w')``,
  target ``g = r_t + discount_t * U(w, s_t)`` with ``discount_t = gamma * (1 - terminal)``;
  loss ``0.5 * (g - Q(s_tm1, w))^2``, the target held fixed.
- intra-option policy gradient: ``Q_U(s_tm1, w, a_tm1)`` is estimated by the same one-step
  target ``g`` (the paper's tabular algorithm), ``Q(s_tm1, w)`` is the baseline; loss
  ``-log pi_w(a_tm1 | s_tm1) * (g - Q(s_tm1, w)) - entropy_coef * H(pi_w(. | s_tm1))``. The
  policy can be any distribution: :func:`intra_option_pg_loss` takes the log-probability and
  entropy (softmax logits: :func:`intra_option_policy_loss`; a Gaussian works the same way).
- termination gradient at ``s_t``: loss ``beta_w(s_t) * (Q(s_t, w) - V(s_t) + xi)``, whose
  gradient is ``dbeta/dtheta * (Q - V + xi)``. ``V(s_t) = sum_w' pi_Omega(w' | s_t) Q(s_t, w')`` is
  the value of the policy over options (the paper's ``V_Omega``); for epsilon-greedy over options
  that is ``(1 - eps) max_w' Q + eps mean_w' Q`` (:func:`epsilon_greedy_value`). ``value_epsilon = 0``
  gives ``V = max Q``, as in the authors' released tabular code: then ``Q - V <= 0`` and, without a
  margin, descending the loss can only *raise* ``beta``. With ``value_epsilon > 0`` (or ``xi > 0``)
  the greedy option has a positive advantage, so its ``beta`` falls where it is the best option and
  rises where another option is better. ``xi`` is the paper's margin (ALE experiments: 0.01).

Every advantage is a constant in the losses (``detach``): the gradient of each loss is exactly the
paper's update direction for its own parameters, so SGD on the three losses with step sizes
``alpha_Q, alpha_theta, alpha_vartheta`` *is* Algorithm 1. With one-hot state features and the
linear heads of :func:`linear_option_heads` (Q table, softmax logits table, sigmoid termination
table) this reproduces the tabular updates: ``Q[s,w] += a (g - Q[s,w])``,
``theta[s,w,:] += a (g - Q[s,w]) (e_a - pi)``, ``vartheta[s',w] -= a beta(1-beta)(Q[s',w] - V[s'] + xi)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import checks

__all__ = [
    "OptionActorLosses",
    "OptionCriticLosses",
    "epsilon_greedy_value",
    "init_linear_option_params",
    "intra_option_critic_loss",
    "intra_option_pg_loss",
    "intra_option_policy_loss",
    "intra_option_q_target",
    "linear_option_heads",
    "option_actor_losses",
    "option_critic_losses",
    "option_value_upon_arrival",
    "termination_advantage",
    "termination_loss",
]


class OptionCriticLosses(NamedTuple):
    """The three losses of one option-critic transition, and the detached quantities they used."""

    critic: torch.Tensor  # []
    policy: torch.Tensor  # []
    termination: torch.Tensor  # []
    target: torch.Tensor  # [] the one-step target g (detached)
    advantage: torch.Tensor  # [] g - Q(s_tm1, w) (detached)
    termination_advantage: torch.Tensor  # [] Q(s_t, w) - V(s_t) + xi (detached)


def _check_margin(xi: float, value_epsilon: float) -> None:
    checks.number(xi, "xi")
    checks.probability(value_epsilon, "value_epsilon")


def init_linear_option_params(
    num_features: int, num_options: int, num_actions: int, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Zero-initialised linear heads (the authors' tabular init: Q = 0, uniform pi, beta = 0.5).

    ``q_weight [F, O]``, ``policy_weight [F, O, A]`` (softmax logits), ``termination_weight [F, O]``
    (sigmoid logits). With one-hot features each is a table.
    """
    for name, v in (("num_features", num_features), ("num_options", num_options), ("num_actions", num_actions)):
        checks.positive_int(v, name)
    z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)
    return {"q_weight": z(num_features, num_options), "policy_weight": z(num_features, num_options, num_actions),
            "termination_weight": z(num_features, num_options)}


_HEAD_KEYS = ("q_weight", "policy_weight", "termination_weight")


def linear_option_heads(params: dict[str, torch.Tensor], phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear heads on features ``phi [F]`` -> ``(q [O], logits [O, A], beta [O])``.

    ``q = phi @ q_weight``, ``logits = phi @ policy_weight`` (softmax policy per option),
    ``beta = sigmoid(phi @ termination_weight)``.
    """
    missing = [k for k in _HEAD_KEYS if k not in params]
    extra = [k for k in params if k not in _HEAD_KEYS]
    if missing or extra:
        raise ValueError(f"option-critic params expected keys {list(_HEAD_KEYS)}; missing {missing}, unexpected {extra}")
    if phi.shape[-1:] != params["q_weight"].shape[:1] or phi.ndim != 1:
        raise ValueError(f"phi expected shape [{params['q_weight'].shape[0]}], got {tuple(phi.shape)}")
    q = phi @ params["q_weight"]
    logits = torch.einsum("f,foa->oa", phi, params["policy_weight"])
    beta = torch.sigmoid(phi @ params["termination_weight"])
    return q, logits, beta


def _check_index(where: str, name: str, index: torch.Tensor) -> None:
    """An option / action index: a 0-d integer tensor (a float would index nothing, or wrongly)."""
    if not isinstance(index, torch.Tensor) or index.ndim != 0 or index.is_floating_point() or index.dtype == torch.bool:
        got = f"{index.dtype} {tuple(index.shape)}" if isinstance(index, torch.Tensor) else type(index).__name__
        raise TypeError(f"{where}: {name} must be a 0-d integer tensor (an index), got {got}")


def option_value_upon_arrival(q_t: torch.Tensor, beta_t: torch.Tensor, option: torch.Tensor) -> torch.Tensor:
    """``U(w, s_t) = (1 - beta_w) Q(s_t, w) + beta_w max_w' Q(s_t, w')``. q_t, beta_t: ``[O]``; option: ``[]``."""
    _check_index("option_value_upon_arrival", "option", option)
    b = beta_t[option]
    return (1.0 - b) * q_t[option] + b * q_t.max()


def epsilon_greedy_value(q: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Value of epsilon-greedy over options: ``(1 - epsilon) max_w Q + epsilon mean_w Q``. ``q: [O] -> []``.

    ``epsilon = 0`` is ``max_w Q`` (greedy). Ties in the max do not change the value.
    """
    if q.ndim != 1:
        raise ValueError(f"q expected shape [O], got {tuple(q.shape)}")
    return (1.0 - epsilon) * q.max() + epsilon * q.mean()


def termination_advantage(q_t: torch.Tensor, option: torch.Tensor, xi: float = 0.0, value_epsilon: float = 0.0) -> torch.Tensor:
    """``Q(s_t, w) - V(s_t) + xi`` with ``V`` from :func:`epsilon_greedy_value` (detached). q_t: ``[O]`` -> ``[]``."""
    _check_margin(xi, value_epsilon)
    q_t = q_t.detach()
    _check_index("termination_advantage", "option", option)
    return q_t[option] - epsilon_greedy_value(q_t, value_epsilon) + xi


def intra_option_q_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, q_t: torch.Tensor, beta_t: torch.Tensor, option: torch.Tensor
) -> torch.Tensor:
    """One-step intra-option Q-learning target ``r_t + discount_t * U(option, s_t)`` (detached).

    ``discount_t = gamma * (1 - terminal_t)``: no bootstrap when ``s_t`` is terminal. ``q_t`` may
    come from a target network (deep Option-Critic) and ``beta_t`` from the online one.
    r_t, discount_t, option: ``[]``; q_t, beta_t: ``[O]`` -> ``[]``.
    """
    if q_t.ndim != 1 or beta_t.shape != q_t.shape:
        raise ValueError(f"q_t and beta_t expected the same shape [O], got {tuple(q_t.shape)} and {tuple(beta_t.shape)}")
    return (r_t + discount_t * option_value_upon_arrival(q_t, beta_t, option)).detach()


def intra_option_critic_loss(q_tm1: torch.Tensor, option: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * (target - Q(s_tm1, option))^2``; target held fixed. q_tm1: ``[O]``, option, target: ``[]``."""
    _check_index("intra_option_critic_loss", "option", option)
    return 0.5 * (target.detach() - q_tm1[option]) ** 2


def intra_option_pg_loss(
    log_prob: torch.Tensor, entropy: torch.Tensor, advantage: torch.Tensor, entropy_coef: float = 0.0
) -> torch.Tensor:
    """``-log_prob * advantage - entropy_coef * entropy`` for the running option's policy at ``s_tm1``.

    Any distribution: pass ``log pi_w(a_tm1 | s_tm1)`` and ``H(pi_w(. | s_tm1))`` (all ``[]``);
    ``advantage`` = Q_U(s, w, a) - baseline, held fixed.
    """
    if log_prob.ndim != 0 or entropy.ndim != 0:
        raise ValueError(f"log_prob and entropy expected scalars, got shapes {tuple(log_prob.shape)} and {tuple(entropy.shape)}")
    return -log_prob * advantage.detach() - entropy_coef * entropy


def intra_option_policy_loss(
    logits_tm1: torch.Tensor, a_tm1: torch.Tensor, advantage: torch.Tensor, entropy_coef: float = 0.0
) -> torch.Tensor:
    """:func:`intra_option_pg_loss` for one option's softmax ``logits_tm1 [A]`` and integer action ``a_tm1 []``."""
    if logits_tm1.ndim != 1:
        raise ValueError(f"logits_tm1 expected shape [A] (the running option's logits), got {tuple(logits_tm1.shape)}")
    _check_index("intra_option_policy_loss", "a_tm1", a_tm1)
    log_pi = torch.log_softmax(logits_tm1, dim=-1)
    entropy = -(log_pi.exp() * log_pi).sum()
    return intra_option_pg_loss(log_pi[a_tm1], entropy, advantage, entropy_coef)


def termination_loss(
    beta_t: torch.Tensor, q_t: torch.Tensor, option: torch.Tensor, xi: float = 0.0, value_epsilon: float = 0.0
) -> torch.Tensor:
    """``beta_w(s_t) * (Q(s_t, w) - V(s_t) + xi)``, the advantage held fixed (:func:`termination_advantage`).

    Its gradient is the termination gradient ``dbeta_w(s_t)/dvartheta * (Q - V + xi)``: descending it
    raises ``beta`` where the option is worse than the policy over options by more than ``xi`` and
    lowers it where it is better. beta_t, q_t: ``[O]``; option: ``[]``.
    """
    if beta_t.shape != q_t.shape or q_t.ndim != 1:
        raise ValueError(f"beta_t and q_t expected the same shape [O], got {tuple(beta_t.shape)} and {tuple(q_t.shape)}")
    _check_index("termination_loss", "option", option)
    return beta_t[option] * termination_advantage(q_t, option, xi, value_epsilon)


def option_critic_losses(
    q_tm1: torch.Tensor,
    logits_tm1: torch.Tensor,
    q_t: torch.Tensor,
    beta_t: torch.Tensor,
    option_tm1: torch.Tensor,
    a_tm1: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    xi: float = 0.0,
    entropy_coef: float = 0.0,
    value_epsilon: float = 0.0,
) -> OptionCriticLosses:
    """All three Option-Critic losses for one transition (softmax intra-option policies).

    Args:
        q_tm1: ``[O]`` Q(s_tm1, .); logits_tm1: ``[O, A]`` intra-option logits at s_tm1;
        q_t: ``[O]`` Q(s_t, .); beta_t: ``[O]`` termination probabilities at s_t;
        option_tm1: ``[]`` int, the running option;
        a_tm1: ``[]`` int, the action taken;
        r_t: ``[]``; discount_t: ``[]`` = gamma * (1 - terminal_t);
        xi: termination margin; entropy_coef: entropy bonus weight;
        value_epsilon: epsilon of the policy over options used for ``V`` in the termination
            advantage (0: ``V = max Q``).

    Gradients flow into ``q_tm1`` (critic), ``logits_tm1`` (policy) and ``beta_t`` (termination)
    only; every target and advantage is detached. Sum the losses and differentiate w.r.t. disjoint
    parameter sets, or weight them by per-head step sizes.
    """
    if logits_tm1.ndim != 2 or logits_tm1.shape[0] != q_tm1.shape[0]:
        raise ValueError(f"logits_tm1 expected shape [O={q_tm1.shape[0]}, A], got {tuple(logits_tm1.shape)}")
    target = intra_option_q_target(r_t, discount_t, q_t.detach(), beta_t.detach(), option_tm1)
    advantage = (target - q_tm1[option_tm1]).detach()
    critic = intra_option_critic_loss(q_tm1, option_tm1, target)
    policy = intra_option_policy_loss(logits_tm1[option_tm1], a_tm1, advantage, entropy_coef)
    term_adv = termination_advantage(q_t, option_tm1, xi, value_epsilon)
    term = beta_t[option_tm1] * term_adv
    return OptionCriticLosses(critic, policy, term, target, advantage, term_adv)


class OptionActorLosses(NamedTuple):
    """The actor's two losses (intra-option policy, termination) and the detached advantages they used."""

    policy: torch.Tensor  # []
    termination: torch.Tensor  # []
    advantage: torch.Tensor  # [] g - Q(s_tm1, w) (detached)
    termination_advantage: torch.Tensor  # [] Q(s_t, w) - V(s_t) + xi (detached)


def option_actor_losses(
    log_prob_tm1: torch.Tensor,
    entropy_tm1: torch.Tensor,
    q_tm1: torch.Tensor,
    q_t: torch.Tensor,
    beta_t: torch.Tensor,
    option_tm1: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    terminal_t: torch.Tensor,
    xi: float = 0.0,
    entropy_coef: float = 0.0,
    value_epsilon: float = 0.0,
) -> OptionActorLosses:
    """Intra-option policy and termination losses for one transition, for any policy family
    (deep Option-Critic's actor; the tabular :func:`option_critic_losses` is the softmax case).

    Args:
        log_prob_tm1: ``[]`` ``log pi_w(a_tm1 | s_tm1)`` of the running option ``w = option_tm1``
            (differentiable: the policy gradient flows here);
        entropy_tm1: ``[]`` ``H(pi_w(. | s_tm1))`` of the running option;
        q_tm1: ``[O]`` Q(s_tm1, .), the baseline ``Q(s_tm1, w)`` (held fixed);
        q_t: ``[O]`` Q(s_t, .) (held fixed); beta_t: ``[O]`` terminations at s_t (differentiable:
            the termination gradient flows here);
        r_t: ``[]`` reward;
        discount_t: ``[]``, ``gamma * (1 - terminal_t)``;
        terminal_t: ``[]`` 1.0 if ``s_t`` is terminal: no termination gradient there (no option
            runs on from a terminal state);
        xi: as in :func:`option_critic_losses`.
        entropy_coef: as in :func:`option_critic_losses`.
        value_epsilon: as in :func:`option_critic_losses`.

    Policy: ``-log_prob * (g - Q(s_tm1, w)) - entropy_coef * H`` with the one-step target
    ``g = r_t + discount_t * U(w, s_t)`` from ``q_t`` and ``beta_t`` (both detached there).
    Termination: ``(1 - terminal_t) * beta_w(s_t) * (Q(s_t, w) - V(s_t) + xi)``.
    """
    if q_tm1.ndim != 1 or q_t.shape != q_tm1.shape or beta_t.shape != q_t.shape:
        raise ValueError(f"q_tm1, q_t and beta_t expected the same shape [O], got {tuple(q_tm1.shape)}, "
                         f"{tuple(q_t.shape)}, {tuple(beta_t.shape)}")
    target = intra_option_q_target(r_t, discount_t, q_t.detach(), beta_t.detach(), option_tm1)
    advantage = (target - q_tm1[option_tm1]).detach()
    policy = intra_option_pg_loss(log_prob_tm1, entropy_tm1, advantage, entropy_coef)
    term_adv = termination_advantage(q_t, option_tm1, xi, value_epsilon)
    termination = (1.0 - terminal_t) * beta_t[option_tm1] * term_adv
    return OptionActorLosses(policy, termination, advantage, term_adv)
