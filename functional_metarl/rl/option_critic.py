"""Option-Critic math (Bacon, Harb & Precup 2017): pure, unbatched, batch with ``vmap``.

One transition ``(s_tm1, option_tm1, a_tm1, r_t, s_t)`` of an option ``w = option_tm1`` run
call-and-return. With ``O`` options and ``A`` actions:

- critic (intra-option Q-learning): ``U(w, s_t) = (1 - beta_w(s_t)) Q(s_t, w) + beta_w(s_t) max_w' Q(s_t, w')``,
  target ``g = r_t + discount_t * U(w, s_t)`` with ``discount_t = gamma * (1 - terminal)``;
  loss ``0.5 * (g - Q(s_tm1, w))^2``, the target held fixed.
- intra-option policy gradient: ``Q_U(s_tm1, w, a_tm1)`` is estimated by the same one-step
  target ``g`` (the paper's tabular algorithm), ``Q(s_tm1, w)`` is the baseline; loss
  ``-log pi_w(a_tm1 | s_tm1) * (g - Q(s_tm1, w)) - entropy_coef * H(pi_w(. | s_tm1))``.
- termination gradient at ``s_t``: loss ``beta_w(s_t) * (Q(s_t, w) - V(s_t) + xi)`` with
  ``V(s_t) = max_w' Q(s_t, w')`` (greedy value, as the authors' tabular code), ``xi`` a margin
  (ALE experiments: 0.01); its gradient is ``dbeta/dtheta * (Q - V + xi)``.

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

__all__ = [
    "OptionCriticLosses",
    "init_linear_option_params",
    "intra_option_critic_loss",
    "intra_option_policy_loss",
    "intra_option_q_target",
    "linear_option_heads",
    "option_critic_losses",
    "option_value_upon_arrival",
    "termination_loss",
]


class OptionCriticLosses(NamedTuple):
    critic: torch.Tensor  # []
    policy: torch.Tensor  # []
    termination: torch.Tensor  # []
    target: torch.Tensor  # [] the one-step target g (detached)
    advantage: torch.Tensor  # [] g - Q(s_tm1, w) (detached)
    termination_advantage: torch.Tensor  # [] Q(s_t, w) - V(s_t) + xi (detached)


def init_linear_option_params(
    num_features: int, num_options: int, num_actions: int, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Zero-initialised linear heads (the authors' tabular init: Q = 0, uniform pi, beta = 0.5).

    ``q_weight [F, O]``, ``policy_weight [F, O, A]`` (softmax logits), ``termination_weight [F, O]``
    (sigmoid logits). With one-hot features each is a table.
    """
    for name, v in (("num_features", num_features), ("num_options", num_options), ("num_actions", num_actions)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
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


def option_value_upon_arrival(q_t: torch.Tensor, beta_t: torch.Tensor, option: torch.Tensor) -> torch.Tensor:
    """``U(w, s_t) = (1 - beta_w) Q(s_t, w) + beta_w max_w' Q(s_t, w')``. q_t, beta_t: ``[O]``; option: ``[]``."""
    b = beta_t[option]
    return (1.0 - b) * q_t[option] + b * q_t.max()


def intra_option_q_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, q_t: torch.Tensor, beta_t: torch.Tensor, option: torch.Tensor
) -> torch.Tensor:
    """One-step intra-option Q-learning target ``r_t + discount_t * U(option, s_t)`` (detached).

    ``discount_t = gamma * (1 - terminal_t)``: no bootstrap when ``s_t`` is terminal.
    r_t, discount_t, option: ``[]``; q_t, beta_t: ``[O]`` -> ``[]``.
    """
    if q_t.ndim != 1 or beta_t.shape != q_t.shape:
        raise ValueError(f"q_t and beta_t expected the same shape [O], got {tuple(q_t.shape)} and {tuple(beta_t.shape)}")
    return (r_t + discount_t * option_value_upon_arrival(q_t, beta_t, option)).detach()


def intra_option_critic_loss(q_tm1: torch.Tensor, option: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * (target - Q(s_tm1, option))^2``; target held fixed. q_tm1: ``[O]``."""
    return 0.5 * (target.detach() - q_tm1[option]) ** 2


def intra_option_policy_loss(
    logits_tm1: torch.Tensor, a_tm1: torch.Tensor, advantage: torch.Tensor, entropy_coef: float = 0.0
) -> torch.Tensor:
    """``-log pi(a_tm1) * advantage - entropy_coef * H(pi)`` for one option's softmax ``logits_tm1 [A]``.

    ``advantage`` = Q_U(s, w, a) - baseline, held fixed.
    """
    if logits_tm1.ndim != 1:
        raise ValueError(f"logits_tm1 expected shape [A] (the running option's logits), got {tuple(logits_tm1.shape)}")
    log_pi = torch.log_softmax(logits_tm1, dim=-1)
    entropy = -(log_pi.exp() * log_pi).sum()
    return -log_pi[a_tm1] * advantage.detach() - entropy_coef * entropy


def termination_loss(beta_t: torch.Tensor, q_t: torch.Tensor, option: torch.Tensor, xi: float = 0.0) -> torch.Tensor:
    """``beta_w(s_t) * (Q(s_t, w) - max_w' Q(s_t, w') + xi)``, the advantage held fixed.

    Its gradient is the termination gradient ``dbeta_w(s_t)/dvartheta * (Q - V + xi)``; descending it
    raises ``beta`` where the option is worse than the best one by more than ``xi``.
    beta_t, q_t: ``[O]``; option: ``[]``.
    """
    advantage = (q_t[option] - q_t.max() + xi).detach()
    return beta_t[option] * advantage


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
) -> OptionCriticLosses:
    """All three Option-Critic losses for one transition.

    Args:
        q_tm1: ``[O]`` Q(s_tm1, .); logits_tm1: ``[O, A]`` intra-option logits at s_tm1;
        q_t: ``[O]`` Q(s_t, .); beta_t: ``[O]`` termination probabilities at s_t;
        option_tm1, a_tm1: ``[]`` int, the running option and the action taken;
        r_t: ``[]``; discount_t: ``[]`` = gamma * (1 - terminal_t);
        xi: termination margin; entropy_coef: entropy bonus weight.

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
    term = termination_loss(beta_t, q_t.detach(), option_tm1, xi)
    term_adv = (q_t[option_tm1] - q_t.max() + xi).detach()
    return OptionCriticLosses(critic, policy, term, target, advantage, term_adv)
