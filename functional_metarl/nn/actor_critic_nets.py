"""Actor and critic templates for deterministic-policy-gradient agents (DDPG, TD3).

``deterministic_actor``: ``apply(params, obs: [..., obs_dim]) -> action: [..., act_dim]``, a
tanh-bounded output affinely scaled onto ``[action_low, action_high]``.

``q_critic``: ``apply(params, concat(obs, action): [..., obs_dim + act_dim]) -> q: [...]``.
With ``action_layer=1`` the action joins at the second layer, as in Lillicrap et al. (2015,
sec. 7); with ``action_layer=0`` (Fujimoto et al. 2018) it is concatenated at the input.

Both keep the one-input ``Functional.apply(params, x)`` interface, so params stay a plain
``dict[str, Tensor]`` and an ensemble of critics is a params dict stacked on a leading axis,
evaluated with ``vmap(critic.apply, in_dims=(0, None))``.

Both carry a pure ``(params, x)`` forward made of the template's own ops (``F.linear``, the
activation's function, ``torch.tanh`` and the same bound arithmetic), which ``apply`` runs
instead of ``functional_call``: the same numbers bit for bit (a test compares them), without
swapping tensors into the module on every call (DDPG / TD3 act on one observation per env step).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .. import checks
import torch.nn.functional as F

from .core import ACTIVATION_FNS, ACTIVATIONS, Functional, check_mlp_args, init_linear

__all__ = ["deterministic_actor", "q_critic"]


def _final_layer(in_dim: int, out_dim: int, final_init: float | None) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    if final_init is None:
        return init_linear(layer)
    # Lillicrap et al. 2015, sec. 7: last layer from U[-3e-3, 3e-3] so first outputs are near 0.
    nn.init.uniform_(layer.weight, -final_init, final_init)
    nn.init.uniform_(layer.bias, -final_init, final_init)
    return layer


def _hidden_layer(in_dim: int, out_dim: int) -> nn.Linear:
    # Lillicrap et al. 2015, sec. 7: hidden layers from U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
    # (this is also PyTorch's default nn.Linear bias range; we set both explicitly).
    layer = nn.Linear(in_dim, out_dim)
    bound = 1.0 / math.sqrt(in_dim)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.uniform_(layer.bias, -bound, bound)
    return layer


class _Actor(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden, activation, low, high, final_init):
        super().__init__()
        sizes = [obs_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [_hidden_layer(a, b), ACTIVATIONS[activation]()]
        layers.append(_final_layer(sizes[-1], act_dim, final_init))
        self.net = nn.Sequential(*layers)
        # Plain Python numbers, not buffers: the bounds follow the input's device and dtype.
        self._low = list(low)
        self._high = list(high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        low = torch.tensor(self._low, device=obs.device, dtype=obs.dtype)
        high = torch.tensor(self._high, device=obs.device, dtype=obs.dtype)
        return low + (torch.tanh(self.net(obs)) + 1.0) * 0.5 * (high - low)


class _Critic(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden, activation, action_layer, final_init):
        super().__init__()
        self.obs_dim = obs_dim
        self.action_layer = action_layer
        self.act = ACTIVATIONS[activation]()
        sizes = [obs_dim + (act_dim if action_layer == 0 else 0), *hidden]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i == 1 and action_layer == 1:
                a += act_dim
            layers.append(_hidden_layer(a, b))
        self.hidden = nn.ModuleList(layers)
        self.out = _final_layer(sizes[-1], 1, final_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        obs, action = x[..., : self.obs_dim], x[..., self.obs_dim :]
        h = x if self.action_layer == 0 else obs
        for i, layer in enumerate(self.hidden):
            if i == 1 and self.action_layer == 1:
                h = torch.cat([h, action], dim=-1)
            h = self.act(layer(h))
        return self.out(h).squeeze(-1)


def _check_bounds(action_low: Sequence[float], action_high: Sequence[float], act_dim: int) -> tuple[list, list]:
    low = [checks.number(v, f"action_low[{i}]") for i, v in enumerate(action_low)]
    high = [checks.number(v, f"action_high[{i}]") for i, v in enumerate(action_high)]
    if len(low) != act_dim or len(high) != act_dim:
        raise ValueError(f"action_low/action_high expected {act_dim} entries each, got {len(low)} and {len(high)}")
    for i, (lo, hi) in enumerate(zip(low, high)):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"action bounds must be finite with low < high; got [{lo}, {hi}] at index {i}")
    return low, high


def _check_final_init(final_init: object) -> None:
    if final_init is not None:
        checks.positive_number(final_init, "final_init")


def deterministic_actor(
    obs_dim: int,
    act_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    hidden: Sequence[int] = (400, 300),
    activation: str = "relu",
    final_init: float | None = 3e-3,
) -> Functional:
    """Deterministic policy ``mu(s)``: ``[..., obs_dim] -> [..., act_dim]`` inside the bounds.

    ``low + (tanh(mlp(s)) + 1) / 2 * (high - low)``. ``final_init``: half-width of the uniform
    init of the last layer (Lillicrap et al. use 3e-3); ``None`` uses Xavier.
    """
    hidden = tuple(hidden)
    check_mlp_args(obs_dim, act_dim, hidden, activation)
    low, high = _check_bounds(action_low, action_high, act_dim)
    _check_final_init(final_init)
    act = ACTIVATION_FNS[activation]
    num_layers = len(hidden) + 1
    bounds: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (device, dtype) -> (low, high): built once

    def pure_apply(params, obs: torch.Tensor) -> torch.Tensor:
        # _Actor.forward, op for op: Sequential(Linear, act, ..., Linear), then the tanh bounds.
        h = obs
        for i in range(num_layers):
            h = F.linear(h, params[f"net.{2 * i}.weight"], params[f"net.{2 * i}.bias"])
            if i < num_layers - 1:
                h = act(h)
        key = (obs.device, obs.dtype)
        if key not in bounds:
            bounds[key] = (torch.tensor(low, device=obs.device, dtype=obs.dtype),
                           torch.tensor(high, device=obs.device, dtype=obs.dtype))
        lo, hi = bounds[key]
        return lo + (torch.tanh(h) + 1.0) * 0.5 * (hi - lo)

    return Functional(lambda: _Actor(obs_dim, act_dim, hidden, activation, low, high, final_init), obs_dim,
                      pure_apply=pure_apply)


def q_critic(
    obs_dim: int,
    act_dim: int,
    hidden: Sequence[int] = (400, 300),
    activation: str = "relu",
    action_layer: int = 0,
    final_init: float | None = 3e-3,
) -> Functional:
    """Action-value ``Q(s, a)``: ``apply(params, cat([obs, action], -1)) -> [...]``.

    ``action_layer``: 0 concatenates the action at the input (Fujimoto et al. 2018); 1 feeds it
    into the second hidden layer (Lillicrap et al. 2015; needs at least two hidden layers).
    """
    hidden = tuple(hidden)
    check_mlp_args(obs_dim, act_dim, hidden, activation)
    checks.one_of(action_layer, "action_layer", (0, 1))
    _check_final_init(final_init)
    if action_layer == 1 and len(hidden) < 2:
        raise ValueError(f"action_layer=1 needs at least two hidden layers, got hidden={hidden}")
    act = ACTIVATION_FNS[activation]

    def pure_apply(params, x: torch.Tensor) -> torch.Tensor:
        # _Critic.forward, op for op.
        obs, action = x[..., :obs_dim], x[..., obs_dim:]
        h = x if action_layer == 0 else obs
        for i in range(len(hidden)):
            if i == 1 and action_layer == 1:
                h = torch.cat([h, action], dim=-1)
            h = act(F.linear(h, params[f"hidden.{i}.weight"], params[f"hidden.{i}.bias"]))
        return F.linear(h, params["out.weight"], params["out.bias"]).squeeze(-1)

    return Functional(
        lambda: _Critic(obs_dim, act_dim, hidden, activation, action_layer, final_init), obs_dim + act_dim,
        pure_apply=pure_apply,
    )
