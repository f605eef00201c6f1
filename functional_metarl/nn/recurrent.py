"""A GRU actor-critic as a param dict (the RL² policy, Duan et al. 2016).

``gru_actor_critic(obs_dim, num_actions, hidden=256)`` returns a :class:`RecurrentFunctional`:
``init(seed) -> params`` like every template, and

- ``apply(params, x, hidden) -> (logits, value, hidden')`` -- one step, ``x: [*B, in_dim]``,
  ``hidden: [*B, H]``; logits ``[*B, A]``, value ``[*B]``;
- ``apply_sequence(params, x, hidden0) -> (logits, values, hiddens)`` -- a whole trial,
  ``x: [T, *B, in_dim]``, outputs ``[T, *B, ...]``; ``hiddens[t]`` is the state *after* step t.

The input of step ``t`` is ``[obs_t, one_hot(a_{t-1}), r_{t-1}, d_{t-1}]`` (:func:`rl2_inputs`),
so ``in_dim = obs_dim + num_actions + 2``. The forward is the ``nn.GRUCell`` equations written
with ``F.linear`` (same params, same numbers as ``functional_call`` on the template, a test checks
it), so params go through ``grad`` / ``vmap`` / ``torch.compile`` like any other param dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .. import checks
from ..tree import Params
from .core import Functional

__all__ = ["RecurrentFunctional", "gru_actor_critic", "gru_cell", "rl2_inputs"]


class _GRUActorCritic(nn.Module):
    def __init__(self, in_dim: int, num_actions: int, hidden: int):
        super().__init__()
        self.gru = nn.GRUCell(in_dim, hidden)
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)
        # Near-uniform initial policy, unit-scale value head (the usual PPO initialisation).
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.zeros_(self.policy.bias)
        nn.init.orthogonal_(self.value.weight, gain=1.0)
        nn.init.zeros_(self.value.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.gru(x, h)
        return self.policy(h), self.value(h).squeeze(-1), h


def gru_cell(params: Params, x: torch.Tensor, h: torch.Tensor, prefix: str = "gru.") -> torch.Tensor:
    """The ``nn.GRUCell`` update on a params dict. ``x: [*B, in]``, ``h: [*B, H]`` -> ``[*B, H]``.

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``.
    """
    gi = F.linear(x, params[prefix + "weight_ih"], params[prefix + "bias_ih"])
    return _gru_from_projection(params, gi, h, prefix)


def _gru_from_projection(params: Params, gi: torch.Tensor, h: torch.Tensor, prefix: str = "gru.") -> torch.Tensor:
    gh = F.linear(h, params[prefix + "weight_hh"], params[prefix + "bias_hh"])
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def _heads(params: Params, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = F.linear(h, params["policy.weight"], params["policy.bias"])
    value = F.linear(h, params["value.weight"], params["value.bias"]).squeeze(-1)
    return logits, value


def rl2_inputs(
    obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, prev_done: torch.Tensor, num_actions: int
) -> torch.Tensor:
    """The RL² input ``[obs, one_hot(prev_action), prev_reward, prev_done]``.

    ``obs: [*B, obs_dim]``; ``prev_action: [*B]`` int (``-1`` = none yet: an all-zero one-hot);
    ``prev_reward, prev_done: [*B]`` -> ``[*B, obs_dim + num_actions + 2]`` in ``obs``'s dtype.
    """
    if prev_action.dtype.is_floating_point or prev_action.dtype == torch.bool:
        raise TypeError(f"prev_action must be an integer tensor, got {prev_action.dtype}")
    batch = tuple(obs.shape[:-1])
    for name, x in (("prev_action", prev_action), ("prev_reward", prev_reward), ("prev_done", prev_done)):
        if tuple(x.shape) != batch:
            raise ValueError(f"{name} expected shape {batch} (obs without its last axis), got {tuple(x.shape)}")
    one_hot = F.one_hot(prev_action.clamp_min(0), num_actions).to(obs.dtype) * (prev_action >= 0).unsqueeze(-1).to(obs.dtype)
    return torch.cat([obs, one_hot, prev_reward.to(obs.dtype).unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1)], dim=-1)


class RecurrentFunctional(Functional):
    """A pure recurrent actor-critic: ``init``, ``check`` as :class:`Functional`; ``apply`` takes
    and returns a hidden state (see the module docstring for shapes)."""

    def __init__(self, in_dim: int, num_actions: int, hidden_size: int):
        super().__init__(lambda: _GRUActorCritic(in_dim, num_actions, hidden_size), in_dim)
        self.num_actions = num_actions
        self.hidden_size = hidden_size

    @property
    def obs_dim(self) -> int:
        return self.in_dim - self.num_actions - 2

    def initial_state(self, batch_shape: tuple[int, ...], device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The hidden state at the start of a trial: zeros ``[*batch_shape, H]``."""
        return torch.zeros(*batch_shape, self.hidden_size, device=device, dtype=dtype)

    def _check_inputs(self, x: torch.Tensor, hidden: torch.Tensor, time_axis: bool) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(hidden, torch.Tensor):
            raise TypeError(f"x and hidden must be Tensors, got {type(x).__name__} and {type(hidden).__name__}")
        lead = 1 if time_axis else 0
        if x.ndim < 1 + lead or x.shape[-1] != self.in_dim:
            form = "[T, *B, in_dim]" if time_axis else "[*B, in_dim]"
            raise ValueError(f"x expected shape {form} with in_dim={self.in_dim}, got {tuple(x.shape)}")
        expected = (*x.shape[lead:-1], self.hidden_size)
        if tuple(hidden.shape) != expected:
            raise ValueError(f"hidden expected shape {expected} ([*B, hidden_size={self.hidden_size}]), "
                             f"got {tuple(hidden.shape)}")

    def apply(self, params: Params, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``x [*B, in_dim]``, ``hidden [*B, H]`` -> ``(logits [*B, A], value [*B], hidden [*B, H])``."""
        self.check(params)
        self._check_inputs(x, hidden, time_axis=False)
        h = gru_cell(params, x, hidden)
        logits, value = _heads(params, h)
        return logits, value, h

    def apply_module(
        self, params: Params, x: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``functional_call`` on the ``nn.GRUCell`` template: the reference ``apply`` must equal."""
        self.check(params)
        self._check_inputs(x, hidden, time_axis=False)
        return functional_call(self.module, params, (x, hidden))

    def apply_stacked(
        self, params: Params, x: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``vmap(apply)`` over params with a leading task axis ``N``; ``x: [N, *B, in]``, ``hidden: [N, *B, H]``."""
        return vmap(self.apply)(params, x, hidden)

    def apply_sequence(
        self, params: Params, x: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole trial from ``hidden [*B, H]`` (never reset inside): ``x [T, *B, in_dim]`` ->
        ``(logits [T, *B, A], values [T, *B], hiddens [T, *B, H])``; ``hiddens[t]`` follows step t.

        The input projection ``W_ih x + b_ih`` runs for all ``T`` steps in one matmul; only the
        recurrent part loops. Gradients flow through every step (whole-trial backprop).
        """
        self.check(params)
        self._check_inputs(x, hidden, time_axis=True)
        gi = F.linear(x, params["gru.weight_ih"], params["gru.bias_ih"])  # [T, *B, 3H]
        hs = []
        h = hidden
        # unbind, not gi[t]: the backward of each gi[t] would be a zero-filled [T, *B, 3H]
        # gradient added into the total (T full-size fills and adds); unbind's is one stack.
        for gi_t in gi.unbind(0):
            h = _gru_from_projection(params, gi_t, h)
            hs.append(h)
        hiddens = torch.stack(hs)
        logits, values = _heads(params, hiddens)
        return logits, values, hiddens


def gru_actor_critic(obs_dim: int, num_actions: int, hidden: int = 256) -> RecurrentFunctional:
    """GRU actor-critic for RL²: input ``obs_dim + num_actions + 2`` (obs, previous action
    one-hot, previous reward, previous done), a GRU of ``hidden`` units, linear policy (logits)
    and value heads."""
    checks.positive_int(obs_dim, "obs_dim")
    checks.int_in_range(num_actions, "num_actions", low=2)
    checks.positive_int(hidden, "hidden")
    return RecurrentFunctional(obs_dim + num_actions + 2, num_actions, hidden)
