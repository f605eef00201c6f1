"""Option-Critic network: ``Q_Omega(s, .)``, terminations ``beta_.(s)`` and intra-option policies.

``option_critic_net(obs_dim, num_options, num_actions=...)`` (softmax intra-option policies) or
``option_critic_net(obs_dim, num_options, act_dim=...)`` (diagonal Gaussian intra-option policies
with a state-dependent mean and a learned, state-independent log-std per option) returns a
:class:`~functional_metarl.nn.Functional` whose ``apply(params, obs [..., obs_dim])`` gives
:class:`OptionHeads`. The three heads sit on three separate MLP bodies (``critic.*``,
``termination.*``, ``policy.*`` keys), so each loss of Option-Critic updates only its own params.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .. import checks
from .core import Functional, check_mlp_args, mlp_module

__all__ = ["OptionHeads", "option_critic_net"]


class OptionHeads(NamedTuple):
    """Outputs for observations ``[..., obs_dim]``.

    q: ``[..., O]`` option values; beta: ``[..., O]`` termination probabilities (sigmoid);
    policy: ``[..., O, A]`` softmax logits (discrete) or Gaussian means (continuous);
    log_std: ``[..., O, A]`` Gaussian log-stds (continuous), ``None`` for discrete policies.
    """

    q: torch.Tensor
    beta: torch.Tensor
    policy: torch.Tensor
    log_std: torch.Tensor | None


class _OptionCriticNet(nn.Module):
    def __init__(self, obs_dim: int, num_options: int, out_per_option: int, continuous: bool,
                 hidden: Sequence[int], activation: str, init_log_std: float):
        super().__init__()
        self.num_options, self.out_per_option = num_options, out_per_option
        self.critic = mlp_module(obs_dim, num_options, hidden, activation)
        self.termination = mlp_module(obs_dim, num_options, hidden, activation)
        self.policy = mlp_module(obs_dim, num_options * out_per_option, hidden, activation)
        with torch.no_grad():  # small last policy layer: near-uniform / near-zero-mean start
            self.policy[-1].weight.mul_(0.01)
        self.log_std = nn.Parameter(torch.full((num_options, out_per_option), init_log_std)) if continuous else None

    def forward(self, obs: torch.Tensor) -> OptionHeads:
        q = self.critic(obs)
        beta = torch.sigmoid(self.termination(obs))
        policy = self.policy(obs).unflatten(-1, (self.num_options, self.out_per_option))
        log_std = None if self.log_std is None else self.log_std.expand_as(policy)
        return OptionHeads(q, beta, policy, log_std)


def option_critic_net(
    obs_dim: int,
    num_options: int,
    num_actions: int | None = None,
    act_dim: int | None = None,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    init_log_std: float = 0.0,
) -> Functional:
    """Option-Critic heads for ``num_options`` options; give exactly one of ``num_actions``
    (discrete, softmax) or ``act_dim`` (continuous, Gaussian).

    ``apply(params, obs [..., obs_dim]) -> OptionHeads``.
    """
    if (num_actions is None) == (act_dim is None):
        raise ValueError(f"give exactly one of num_actions (discrete) or act_dim (continuous), got {num_actions!r} and {act_dim!r}")
    checks.positive_int(num_options, "num_options")
    continuous = act_dim is not None
    out = checks.positive_int(act_dim if continuous else num_actions, "act_dim" if continuous else "num_actions")
    hidden = tuple(hidden)
    check_mlp_args(obs_dim, out, hidden, activation)
    checks.number(init_log_std, "init_log_std")
    return Functional(
        lambda: _OptionCriticNet(obs_dim, num_options, out, continuous, hidden, activation, float(init_log_std)), obs_dim
    )
