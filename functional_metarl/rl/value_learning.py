"""Value-learning math: n-step returns with episode ends, (double) Q-learning targets and loss.

Unbatched first (rlax's habit): each loss takes one transition, argument names say the time
step (``_tm1`` where the action was taken, ``_t`` where the bootstrap happens); batch with
``torch.func.vmap``. Pure: no in-place writes, no Python control flow on tensor values.
"""

from __future__ import annotations

import torch

from .. import checks

__all__ = ["n_step_returns", "double_q_target", "q_learning_loss"]


def n_step_returns(
    r_t: torch.Tensor,
    terminated_t: torch.Tensor,
    truncated_t: torch.Tensor,
    n: int,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n-step returns along one trajectory segment that respect episode ends.

    For every step ``t`` the window is ``m_t = min(n, steps to the end of t's episode, T - t)``
    steps long, and

        ``G_t = sum_{k < m_t} gamma^k r_{t+k}``,  bootstrap from ``next_obs[t + m_t - 1]`` with
        discount ``gamma^{m_t} * (1 - terminated[t + m_t - 1])``.

    A window never crosses an episode end (``terminated`` or ``truncated``); a truncated
    episode still bootstraps from its last observation, a terminated one does not.

    Args:
        r_t: rewards ``[T]`` (step ``t``'s reward, received on leaving ``s_t``).
        terminated_t: ``[T]`` bool/0-1, the episode terminated *after* step ``t``.
        truncated_t: ``[T]`` bool/0-1, the episode was truncated *after* step ``t``.
        n: the most rewards in a window (``>= 1``).
        gamma: discount in ``[0, 1]``.

    Returns:
        ``(returns [T], discounts [T], steps [T] int64, last [T] int64)`` where ``last`` is the
        index ``t + m_t - 1`` whose ``next_obs`` is the bootstrap observation.
    """
    checks.positive_int(n, "n")
    if r_t.ndim != 1 or terminated_t.shape != r_t.shape or truncated_t.shape != r_t.shape:
        raise ValueError(
            f"n_step_returns expected r_t, terminated_t, truncated_t all [T], got "
            f"{tuple(r_t.shape)}, {tuple(terminated_t.shape)}, {tuple(truncated_t.shape)}"
        )
    checks.probability(gamma, "gamma")
    T = r_t.shape[0]
    device = r_t.device
    ended = (terminated_t.bool() | truncated_t.bool()).to(torch.int64)
    t = torch.arange(T, device=device).unsqueeze(1)  # [T, 1]
    k = torch.arange(n, device=device).unsqueeze(0)  # [1, n]
    idx = t + k  # [T, n]
    in_range = idx < T
    idx_c = idx.clamp(max=T - 1)
    # ends strictly before step t+k within the window: ended[t .. t+k-1]
    csum = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(ended, 0)])  # [T+1]
    ends_before = csum[idx_c] - csum[t]  # sum ended[t .. t+k-1]
    valid = in_range & (ends_before == 0)  # [T, n]
    powers = gamma ** k.to(r_t.dtype)
    returns = torch.sum(torch.where(valid, powers * r_t[idx_c], torch.zeros_like(powers * r_t[idx_c])), dim=1)
    steps = valid.sum(dim=1)
    last = t.squeeze(1) + steps - 1
    not_terminal = 1.0 - terminated_t.to(r_t.dtype)[last]
    discounts = gamma ** steps.to(r_t.dtype) * not_terminal
    return returns, discounts, steps, last


def double_q_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, q_t_value: torch.Tensor, q_t_selector: torch.Tensor
) -> torch.Tensor:
    """``r_t + discount_t * q_t_value[argmax_a q_t_selector[a]]`` (van Hasselt et al. 2016).

    Double Q-learning: pass the target net's values as ``q_t_value`` and the online net's as
    ``q_t_selector``; plain Q-learning passes the target net's values as both.
    r_t, discount_t: ``[]``; q_t_value, q_t_selector: ``[A]`` -> ``[]``.
    """
    if q_t_value.ndim != 1 or q_t_selector.shape != q_t_value.shape:
        raise ValueError(
            f"double_q_target expected q_t_value and q_t_selector of shape [A], got "
            f"{tuple(q_t_value.shape)} and {tuple(q_t_selector.shape)}"
        )
    a_star = torch.argmax(q_t_selector)
    return r_t + discount_t * q_t_value[a_star]


def q_learning_loss(
    q_tm1: torch.Tensor,
    a_tm1: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    q_t_value: torch.Tensor,
    q_t_selector: torch.Tensor,
    huber_delta: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Double) Q-learning loss for one transition; the target carries no gradient.

    q_tm1 ``[A]`` online values at ``s_tm1``; a_tm1 ``[]`` int; r_t, discount_t ``[]`` (n-step
    return and ``gamma^n (1 - done)``); q_t_value / q_t_selector ``[A]`` as in
    :func:`double_q_target`. Returns ``(loss [], td_error [])``: Huber loss with ``huber_delta``
    (as DQN's clipped error), or ``0.5 td^2`` when ``huber_delta`` is ``None``.
    """
    if q_tm1.ndim != 1:
        raise ValueError(f"q_learning_loss expected q_tm1 of shape [A], got {tuple(q_tm1.shape)}")
    checks.integer_tensor(a_tm1, "a_tm1", ndim=0)  # an index: a float would be truncated
    if huber_delta is not None:
        checks.positive_number(huber_delta, "huber_delta")
    target = double_q_target(r_t, discount_t, q_t_value, q_t_selector).detach()
    td = target - q_tm1[a_tm1.long()]
    if huber_delta is None:
        loss = 0.5 * td * td
    else:
        abs_td = td.abs()
        quad = torch.clamp(abs_td, max=huber_delta)
        loss = 0.5 * quad * quad + huber_delta * (abs_td - quad)
    return loss, td
