"""A GRU actor-critic as a param dict (the RL² policy, Duan et al. 2016).

``gru_actor_critic(obs_dim, num_actions, hidden=256)`` returns a :class:`RecurrentFunctional`:
``init(seed) -> params`` like every template, and

- ``apply(params, x, hidden) -> (logits, value, hidden')`` -- one step, ``x: [*B, in_dim]``,
  ``hidden: [*B, state_size]``; logits ``[*B, A]``, value ``[*B]``;
- ``apply_sequence(params, x, hidden0) -> (logits, values, hiddens)`` -- a whole trial,
  ``x: [T, *B, in_dim]``, outputs ``[T, *B, ...]``; ``hiddens[t]`` is the state *after* step t.

The input of step ``t`` is ``[obs_t, one_hot(a_{t-1}), r_{t-1}, d_{t-1}]`` (:func:`rl2_inputs`),
so ``in_dim = obs_dim + num_actions + 2``; with ``prev_obs_input`` the previous observation
``obs_{t-1}`` (zeros at the trial's start) sits after ``obs_t`` (``in_dim = 2 obs_dim + A + 2``):
the state the previous action was taken in, next to that action and its reward.

Options (each a departure from the defaults, which keep the earlier numbers):

- ``value_network``: ``"shared"`` -- one GRU feeds the policy and the value head (params
  ``gru.*``, ``policy.*``, ``value.*``; the state is ``[*B, H]``); ``"separate"`` -- the RL²
  paper's form: the value head reads its own GRU (``value_gru.*``) of the same shape, so the value
  loss's gradient never reaches the policy's params (state ``[*B, 2H]``: policy half first);
  ``"detached"`` -- one GRU, the value head on its stopped-gradient state (the value cannot swamp
  the policy's gradient, but it cannot shape the memory either).
- ``init``: ``"pytorch"`` (``nn.GRUCell``'s uniform init) or ``"orthogonal"`` (each gate's
  ``H x H`` block of ``weight_hh`` orthogonal, every bias zero; ``weight_ih`` keeps its init).
- ``activation``: the candidate's nonlinearity, ``"tanh"`` (the GRU's) or ``"relu"``.
- ``weight_norm``: each row of ``weight_ih`` / ``weight_hh`` is ``g * v / ||v||`` (Salimans &
  Kingma 2016) with the gains ``weight_ih_g`` / ``weight_hh_g`` (``[3H]``) as params, initialised to
  the rows' norms (so the initial function is unchanged).
- ``update_gate_bias``: a number ``b`` sets the update gate's biases to ``b`` (``bias_hh``) and 0
  (``bias_ih``) at init, so ``z = σ(b)`` at a zero input: ``b > 0`` starts the cell remembering
  (``h' = (1 - z) n + z h`` keeps most of ``h``). ``None`` leaves the init's biases.

The forward is the ``nn.GRUCell`` equations written with ``F.linear`` (same params, same
numbers as ``functional_call`` on the template, a test checks it), so params go through
``grad`` / ``vmap`` / ``torch.compile`` like any other param dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .. import checks
from ..tree import Params
from .core import Functional

__all__ = ["RecurrentFunctional", "gru_actor_critic", "gru_cell", "rl2_inputs", "VALUE_NETWORKS", "CELL_INITS",
           "CELL_ACTIVATIONS"]

#: How the value head reads the recurrent state (see the module docstring).
VALUE_NETWORKS = ("shared", "separate", "detached")
#: The recurrent cell's initialisations.
CELL_INITS = ("pytorch", "orthogonal")
#: The candidate state's nonlinearity.
CELL_ACTIVATIONS = ("tanh", "relu")


class _Cell(nn.GRUCell):
    """``nn.GRUCell`` with the module docstring's init, activation and weight-norm options."""

    def __init__(self, in_dim: int, hidden: int, init: str, activation: str, weight_norm: bool,
                 update_gate_bias: float | None):
        super().__init__(in_dim, hidden)
        self.activation, self.weight_norm = activation, weight_norm
        with torch.no_grad():
            if init == "orthogonal":
                for block in self.weight_hh.chunk(3, dim=0):  # r, z, n: one orthogonal H x H block each
                    nn.init.orthogonal_(block)
                self.bias_ih.zero_()
                self.bias_hh.zero_()
            if update_gate_bias is not None:
                self.bias_ih[hidden:2 * hidden] = 0.0
                self.bias_hh[hidden:2 * hidden] = update_gate_bias
        if weight_norm:
            self.weight_ih_g = nn.Parameter(self.weight_ih.detach().norm(dim=1))
            self.weight_hh_g = nn.Parameter(self.weight_hh.detach().norm(dim=1))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.activation == "tanh" and not self.weight_norm:
            return super().forward(x, h)  # torch's own cell: the reference of the default
        return gru_cell(dict(self.named_parameters()), x, h, prefix="", activation=self.activation,
                        weight_norm=self.weight_norm)


class _GRUActorCritic(nn.Module):
    def __init__(self, in_dim: int, num_actions: int, hidden: int, value_network: str = "shared",
                 init: str = "pytorch", activation: str = "tanh", weight_norm: bool = False,
                 update_gate_bias: float | None = None):
        super().__init__()
        self.value_network = value_network
        self.gru = _Cell(in_dim, hidden, init, activation, weight_norm, update_gate_bias)
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)
        # Near-uniform initial policy, unit-scale value head (the usual PPO initialisation).
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.zeros_(self.policy.bias)
        nn.init.orthogonal_(self.value.weight, gain=1.0)
        nn.init.zeros_(self.value.bias)
        if value_network == "separate":  # built last: gru / policy / value keep the shared form's init
            self.value_gru = _Cell(in_dim, hidden, init, activation, weight_norm, update_gate_bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.value_network == "separate":
            h_pi, h_v = h.chunk(2, dim=-1)
            h_pi, h_v = self.gru(x, h_pi), self.value_gru(x, h_v)
            return self.policy(h_pi), self.value(h_v).squeeze(-1), torch.cat([h_pi, h_v], dim=-1)
        h = self.gru(x, h)
        value_in = h.detach() if self.value_network == "detached" else h
        return self.policy(h), self.value(value_in).squeeze(-1), h


def _weights(params: Params, prefix: str, weight_norm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_ih, W_hh)`` of the cell at ``prefix``: the params, or ``g * v / ||v||`` row-wise."""
    w_ih, w_hh = params[prefix + "weight_ih"], params[prefix + "weight_hh"]
    if weight_norm:
        w_ih = params[prefix + "weight_ih_g"].unsqueeze(-1) * w_ih / w_ih.norm(dim=-1, keepdim=True)
        w_hh = params[prefix + "weight_hh_g"].unsqueeze(-1) * w_hh / w_hh.norm(dim=-1, keepdim=True)
    return w_ih, w_hh


def gru_cell(params: Params, x: torch.Tensor, h: torch.Tensor, prefix: str = "gru.", *, activation: str = "tanh",
             weight_norm: bool = False) -> torch.Tensor:
    """The ``nn.GRUCell`` update on a params dict. ``x: [*B, in]``, ``h: [*B, H]`` -> ``[*B, H]``.

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``.

    Args:
        params: the cell's ``weight_ih [3H, in]``, ``weight_hh [3H, H]``, ``bias_ih``, ``bias_hh``
            (``[3H]``) under ``prefix`` (with ``weight_norm`` also the gains ``weight_ih_g``,
            ``weight_hh_g [3H]``).
        x: the input ``[*B, in]``.
        h: the state ``[*B, H]``.
        prefix: the cell's key prefix in ``params``.
        activation: ``act``, ``"tanh"`` (the GRU's) or ``"relu"``.
        weight_norm: read each weight row as ``g * v / ||v||``.

    Returns:
        the next state ``[*B, H]``.
    """
    w_ih, w_hh = _weights(params, prefix, weight_norm)
    gi = F.linear(x, w_ih, params[prefix + "bias_ih"])
    return _gru_from_projection(gi, h, w_hh, params[prefix + "bias_hh"], activation)


def _gru_from_projection(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
                         activation: str = "tanh") -> torch.Tensor:
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    pre = i_n + r * h_n
    n = torch.tanh(pre) if activation == "tanh" else torch.relu(pre)
    return n + z * (h - n)


def rl2_inputs(
    obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, prev_done: torch.Tensor, num_actions: int,
    prev_obs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The RL² input ``[obs, (prev_obs,) one_hot(prev_action), prev_reward, prev_done]``.

    ``obs: [*B, obs_dim]``; ``prev_action: [*B]`` int (``-1`` = none yet: an all-zero one-hot);
    ``prev_reward, prev_done: [*B]``; ``prev_obs``: ``[*B, obs_dim]`` or None (left out) ->
    ``[*B, obs_dim (x 2 with prev_obs) + num_actions + 2]`` in ``obs``'s dtype.
    """
    if prev_action.dtype.is_floating_point or prev_action.dtype == torch.bool:
        raise TypeError(f"prev_action must be an integer tensor, got {prev_action.dtype}")
    batch = tuple(obs.shape[:-1])
    for name, x in (("prev_action", prev_action), ("prev_reward", prev_reward), ("prev_done", prev_done)):
        if tuple(x.shape) != batch:
            raise ValueError(f"{name} expected shape {batch} (obs without its last axis), got {tuple(x.shape)}")
    one_hot = F.one_hot(prev_action.clamp_min(0), num_actions).to(obs.dtype) * (prev_action >= 0).unsqueeze(-1).to(obs.dtype)
    if prev_obs is not None:
        checks.same_shape(prev_obs, "prev_obs", obs, "obs")
        obs = torch.cat([obs, prev_obs.to(obs.dtype)], dim=-1)
    return torch.cat([obs, one_hot, prev_reward.to(obs.dtype).unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1)], dim=-1)


class RecurrentFunctional(Functional):
    """A pure recurrent actor-critic: ``init``, ``check`` as :class:`Functional`; ``apply`` takes
    and returns a hidden state (see the module docstring for shapes and options).

    Attributes: ``num_actions``, ``obs_dim``, ``hidden_size`` (``H``, units per GRU),
    ``state_size`` (the carried state: ``2H`` with ``value_network="separate"``, else ``H``),
    ``prev_obs_input``, ``value_network``, ``activation``, ``weight_norm``.
    """

    def __init__(self, in_dim: int, num_actions: int, hidden_size: int, *, obs_dim: int | None = None,
                 value_network: str = "shared", init: str = "pytorch", activation: str = "tanh",
                 weight_norm: bool = False, update_gate_bias: float | None = None, prev_obs_input: bool = False):
        super().__init__(lambda: _GRUActorCritic(in_dim, num_actions, hidden_size, value_network, init, activation,
                                                 weight_norm, update_gate_bias), in_dim)
        self.num_actions = num_actions
        self.hidden_size = hidden_size
        self._obs_dim = in_dim - num_actions - 2 if obs_dim is None else obs_dim
        self.prev_obs_input = prev_obs_input
        self.value_network, self.init_name, self.activation = value_network, init, activation
        self.weight_norm, self.update_gate_bias = weight_norm, update_gate_bias

    @property
    def obs_dim(self) -> int:
        return self._obs_dim

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size if self.value_network == "separate" else self.hidden_size

    def initial_state(self, batch_shape: tuple[int, ...], device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The hidden state at the start of a trial: zeros ``[*batch_shape, state_size]``."""
        return torch.zeros(*batch_shape, self.state_size, device=device, dtype=dtype)

    def _check_inputs(self, x: torch.Tensor, hidden: torch.Tensor, time_axis: bool) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(hidden, torch.Tensor):
            raise TypeError(f"x and hidden must be Tensors, got {type(x).__name__} and {type(hidden).__name__}")
        lead = 1 if time_axis else 0
        if x.ndim < 1 + lead or x.shape[-1] != self.in_dim:
            form = "[T, *B, in_dim]" if time_axis else "[*B, in_dim]"
            raise ValueError(f"x expected shape {form} with in_dim={self.in_dim}, got {tuple(x.shape)}")
        expected = (*x.shape[lead:-1], self.state_size)
        if tuple(hidden.shape) != expected:
            raise ValueError(f"hidden expected shape {expected} ([*B, state_size={self.state_size}]), "
                             f"got {tuple(hidden.shape)}")

    def _heads(self, params: Params, h_pi: torch.Tensor, h_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = F.linear(h_pi, params["policy.weight"], params["policy.bias"])
        value = F.linear(h_v, params["value.weight"], params["value.bias"]).squeeze(-1)
        return logits, value

    def _value_state(self, h: torch.Tensor) -> torch.Tensor:
        return h.detach() if self.value_network == "detached" else h

    def apply(self, params: Params, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``x [*B, in_dim]``, ``hidden [*B, state_size]`` -> ``(logits [*B, A], value [*B],
        hidden [*B, state_size])``."""
        self.check(params)
        self._check_inputs(x, hidden, time_axis=False)
        cell = dict(activation=self.activation, weight_norm=self.weight_norm)
        if self.value_network == "separate":
            h_pi, h_v = hidden.chunk(2, dim=-1)
            h_pi, h_v = gru_cell(params, x, h_pi, **cell), gru_cell(params, x, h_v, "value_gru.", **cell)
            logits, value = self._heads(params, h_pi, h_v)
            return logits, value, torch.cat([h_pi, h_v], dim=-1)
        h = gru_cell(params, x, hidden, **cell)
        logits, value = self._heads(params, h, self._value_state(h))
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
        """``vmap(apply)`` over params with a leading task axis ``N``; ``x: [N, *B, in]``, ``hidden: [N, *B, S]``."""
        return vmap(self.apply)(params, x, hidden)

    def _sequence(self, params: Params, x: torch.Tensor, h: torch.Tensor, prefix: str) -> torch.Tensor:
        """The states ``[T, *B, H]`` of the cell at ``prefix`` over ``x [T, *B, in]`` from ``h [*B, H]``."""
        w_ih, w_hh = _weights(params, prefix, self.weight_norm)  # weight norm: once per trial, not per step
        gi = F.linear(x, w_ih, params[prefix + "bias_ih"])  # [T, *B, 3H]
        b_hh = params[prefix + "bias_hh"]
        hs = []
        # unbind, not gi[t]: the backward of each gi[t] would be a zero-filled [T, *B, 3H]
        # gradient added into the total (T full-size fills and adds); unbind's is one stack.
        for gi_t in gi.unbind(0):
            h = _gru_from_projection(gi_t, h, w_hh, b_hh, self.activation)
            hs.append(h)
        return torch.stack(hs)

    def apply_sequence(
        self, params: Params, x: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole trial from ``hidden [*B, state_size]`` (never reset inside): ``x [T, *B, in_dim]`` ->
        ``(logits [T, *B, A], values [T, *B], hiddens [T, *B, state_size])``; ``hiddens[t]`` follows step t.

        The input projection ``W_ih x + b_ih`` runs for all ``T`` steps in one matmul; only the
        recurrent part loops. Gradients flow through every step (whole-trial backprop).
        """
        self.check(params)
        self._check_inputs(x, hidden, time_axis=True)
        if self.value_network == "separate":
            h_pi, h_v = hidden.chunk(2, dim=-1)
            hs_pi, hs_v = self._sequence(params, x, h_pi, "gru."), self._sequence(params, x, h_v, "value_gru.")
            logits, values = self._heads(params, hs_pi, hs_v)
            return logits, values, torch.cat([hs_pi, hs_v], dim=-1)
        hiddens = self._sequence(params, x, hidden, "gru.")
        logits, values = self._heads(params, hiddens, self._value_state(hiddens))
        return logits, values, hiddens


def gru_actor_critic(
    obs_dim: int, num_actions: int, hidden: int = 256, *, value_network: str = "shared", init: str = "pytorch",
    activation: str = "tanh", weight_norm: bool = False, update_gate_bias: float | None = None,
    prev_obs_input: bool = False,
) -> RecurrentFunctional:
    """GRU actor-critic for RL²: input ``obs_dim + num_actions + 2`` (obs, previous action
    one-hot, previous reward, previous done; with ``prev_obs_input`` also the previous obs), a GRU
    of ``hidden`` units, linear policy (logits) and value heads.

    Args:
        obs_dim: the observation's size.
        num_actions: ``A >= 2``.
        hidden: ``H``, units of each GRU.
        value_network: one of :data:`VALUE_NETWORKS` (module docstring); the RL² agent's default
            (``runners.RL2Config``) is the paper's ``"separate"``.
        init: one of :data:`CELL_INITS`.
        activation: one of :data:`CELL_ACTIVATIONS`.
        weight_norm: weight-normalised GRU weights.
        update_gate_bias: the update gate's initial bias (``None``: the init's).
        prev_obs_input: the previous observation in the input too.

    Returns:
        a :class:`RecurrentFunctional`.
    """
    checks.positive_int(obs_dim, "obs_dim")
    checks.int_in_range(num_actions, "num_actions", low=2)
    checks.positive_int(hidden, "hidden")
    checks.one_of(value_network, "value_network", VALUE_NETWORKS)
    checks.one_of(init, "init", CELL_INITS)
    checks.one_of(activation, "activation", CELL_ACTIVATIONS)
    checks.flag(weight_norm, "weight_norm")
    if update_gate_bias is not None:
        checks.number(update_gate_bias, "update_gate_bias")
    checks.flag(prev_obs_input, "prev_obs_input")
    in_dim = (2 if prev_obs_input else 1) * obs_dim + num_actions + 2
    return RecurrentFunctional(in_dim, num_actions, hidden, obs_dim=obs_dim, value_network=value_network, init=init,
                               activation=activation, weight_norm=weight_norm, update_gate_bias=update_gate_bias,
                               prev_obs_input=prev_obs_input)
