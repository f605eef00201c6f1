"""The Nature-CNN actor-critic (Mnih et al. 2015's torso; Mnih et al. 2016's A3C heads) as a
param-dict template, for MAML on Atari.

``apply(params, obs [..., 4, 84, 84]) -> (logits [..., A], value [...])``: a shared torso of
three ReLU convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1) and a 512-unit ReLU
linear layer, then two linear heads, the actor's logits (a categorical policy,
``distribution = CATEGORICAL``, whose ``params`` take the logits) and the critic's state value.
``uint8`` frames are scaled by 1/255 inside the net (in the params' dtype), so rollouts store
and move bytes.

Init (as the A2C/PPO Atari baselines do): orthogonal weights, zero biases; gain sqrt(2) for the
torso (convolutions and the 512 layer), gain 0.01 for the actor head (near-uniform first policy),
gain 1 for the critic head.

``apply_stacked(params, obs [N, ..., C, H, W])`` runs one params set per task (leaves
``[N, *shape]``, e.g. the adapted params of a meta-batch) in one pass: each convolution as a
grouped convolution with ``groups = N`` (task ``i``'s channels are group ``i``), each linear
layer as a batched matrix product. It equals ``vmap(apply)`` (a test checks it) and is
differentiable twice, which second-order MAML needs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from ..distributions import CATEGORICAL
from ..tree import Params
from .core import Functional

__all__ = ["NATURE_CONV", "ActorCriticCNN", "nature_cnn_actor_critic"]

NATURE_CONV: tuple[tuple[int, int, int], ...] = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""The Nature-DQN torso: ``(out_channels, kernel, stride)`` of each convolution."""

TORSO_GAIN = math.sqrt(2.0)
ACTOR_GAIN = 0.01
CRITIC_GAIN = 1.0


def _orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class _ActorCriticModule(nn.Module):
    """Holds the params (and their init); the forward is :func:`_forward` on them."""

    def __init__(self, obs_shape: tuple[int, int, int], conv: Sequence[tuple[int, int, int]], hidden: int,
                 num_actions: int, feature_dim: int):
        super().__init__()
        channels = [obs_shape[0], *(c for c, _, _ in conv)]
        self.conv = nn.ModuleList([_orthogonal(nn.Conv2d(a, b, k, s), TORSO_GAIN)
                                   for a, b, (_, k, s) in zip(channels[:-1], channels[1:], conv)])
        self.fc = _orthogonal(nn.Linear(feature_dim, hidden), TORSO_GAIN)
        self.actor = _orthogonal(nn.Linear(hidden, num_actions), ACTOR_GAIN)
        self.critic = _orthogonal(nn.Linear(hidden, 1), CRITIC_GAIN)
        self.strides = tuple(s for _, _, s in conv)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _forward(dict(self.named_parameters()), obs, self.strides)


def _scaled(obs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return obs.to(dtype) / 255.0 if obs.dtype == torch.uint8 else obs


def _forward(params: Params, obs: torch.Tensor, strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``obs [..., C, H, W] -> (logits [..., A], value [...])`` with one params set."""
    lead = obs.shape[:-3]
    h = _scaled(obs, params["fc.weight"].dtype).reshape(-1, *obs.shape[-3:])
    for i, stride in enumerate(strides):
        h = F.relu(F.conv2d(h, params[f"conv.{i}.weight"], params[f"conv.{i}.bias"], stride=stride))
    h = F.relu(F.linear(h.flatten(1), params["fc.weight"], params["fc.bias"]))
    logits = F.linear(h, params["actor.weight"], params["actor.bias"])
    value = F.linear(h, params["critic.weight"], params["critic.bias"]).squeeze(-1)
    return logits.reshape(*lead, -1), value.reshape(lead)


def _linear_stacked(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``h [N, M, in]``, ``weight [N, out, in]``, ``bias [N, out]`` -> ``[N, M, out]``."""
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def _forward_stacked(params: Params, obs: torch.Tensor, strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``vmap(_forward)`` over params leaves ``[N, *shape]`` and ``obs [N, ..., C, H, W]``."""
    num, lead = obs.shape[0], obs.shape[1:-3]
    x = _scaled(obs, params["fc.weight"].dtype).reshape(num, -1, *obs.shape[-3:])  # [N, M, C, H, W]
    m = x.shape[1]
    h = x.transpose(0, 1).reshape(m, -1, *x.shape[-2:])  # [M, N * C, H, W]: task i = channel group i
    for i, stride in enumerate(strides):
        w, b = params[f"conv.{i}.weight"], params[f"conv.{i}.bias"]  # [N, O, C, k, k], [N, O]
        h = F.relu(F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=stride, groups=num))
    h = h.reshape(m, num, -1).transpose(0, 1)  # [N, M, O * h * w], each task's features in apply's order
    h = F.relu(_linear_stacked(h, params["fc.weight"], params["fc.bias"]))
    logits = _linear_stacked(h, params["actor.weight"], params["actor.bias"])
    value = _linear_stacked(h, params["critic.weight"], params["critic.bias"]).squeeze(-1)
    return logits.reshape(num, *lead, -1), value.reshape(num, *lead)


class ActorCriticCNN(Functional):
    """A conv actor-critic template: ``apply(params, obs [..., C, H, W]) -> (logits [..., A],
    value [...])``; ``apply_stacked`` for one params set per task (see the module docstring).

    ``obs`` is ``uint8`` (scaled by 1/255 inside) or of the params' floating dtype.
    ``distribution`` is ``CATEGORICAL``: ``distribution.params(logits)`` gives its parameters.
    Attributes: ``obs_shape``, ``num_actions``.
    """

    def __init__(self, obs_shape: tuple[int, int, int], conv: Sequence[tuple[int, int, int]], hidden: int,
                 num_actions: int):
        size = list(obs_shape[1:])
        for _, k, s in conv:
            size = [(x - k) // s + 1 for x in size]
        feature_dim = conv[-1][0] * size[0] * size[1]
        strides = tuple(s for _, _, s in conv)
        super().__init__(lambda: _ActorCriticModule(obs_shape, conv, hidden, num_actions, feature_dim),
                         in_dim=obs_shape[-1], pure_apply=lambda p, x: _forward(p, x, strides),
                         stacked_apply=lambda p, x: _forward_stacked(p, x, strides), distribution=CATEGORICAL)
        self.obs_shape = tuple(obs_shape)
        self.num_actions = num_actions
        self._strides = strides

    def _check_obs(self, obs: object, params: Params, lead: int) -> torch.Tensor:
        checks.instance(obs, "obs", torch.Tensor)
        if obs.ndim < 3 + lead or tuple(obs.shape[-3:]) != self.obs_shape:
            wanted = ", ".join(map(str, self.obs_shape))
            raise ValueError(f"obs expected shape [{'N, ' if lead else ''}..., {wanted}], got {tuple(obs.shape)}")
        reference = next(iter(params.values()))
        if obs.dtype != torch.uint8 and obs.dtype != reference.dtype:
            raise TypeError(f"obs must be uint8 frames or of the params' dtype {reference.dtype}, got {obs.dtype}")
        if obs.device != reference.device:
            raise ValueError(f"obs is on {obs.device} but the params are on {reference.device}; move one of them")
        return obs

    def apply(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [..., A], value [...])`` at ``obs [..., C, H, W]``."""
        self.check(params)
        return _forward(params, self._check_obs(obs, params, 0), self._strides)

    def apply_stacked(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``vmap(apply)``: params leaves ``[N, *shape]``, ``obs [N, ..., C, H, W]`` -> ``(logits
        [N, ..., A], value [N, ...])``, as grouped convolutions and batched matmuls."""
        if not (isinstance(params, dict) and params and isinstance(obs, torch.Tensor) and obs.ndim >= 4 and all(
                isinstance(p, torch.Tensor) and p.ndim >= 1 and p.shape[0] == obs.shape[0] for p in params.values())):
            raise ValueError("apply_stacked expected params leaves [N, *shape] and obs [N, ..., C, H, W] with the same "
                             f"N, got obs {tuple(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__}")
        self.check({k: p[0] for k, p in params.items()})
        return _forward_stacked(params, self._check_obs(obs, params, 1), self._strides)


def nature_cnn_actor_critic(num_actions: int, obs_shape: tuple[int, int, int] = (4, 84, 84),
                            conv: Sequence[tuple[int, int, int]] = NATURE_CONV, hidden: int = 512) -> ActorCriticCNN:
    """The Nature-CNN actor-critic for ``num_actions`` discrete actions (see the module docstring).

    ``conv`` (``(out_channels, kernel, stride)`` per layer) and ``hidden`` default to the Nature
    net; smaller ones give a tiny net of the same form (tests, quick CPU runs).
    """
    checks.positive_int(num_actions, "num_actions")
    checks.instance(obs_shape, "obs_shape", tuple)
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape!r}")
    for i, s in enumerate(obs_shape):
        checks.positive_int(s, f"obs_shape[{i}]")
    conv = tuple(tuple(layer) for layer in conv)
    if not conv:
        raise ValueError("conv must have at least one (out_channels, kernel, stride) layer, got none")
    for i, layer in enumerate(conv):
        if len(layer) != 3:
            raise ValueError(f"conv[{i}] must be (out_channels, kernel, stride), got {layer!r}")
        for j, v in enumerate(layer):
            checks.positive_int(v, f"conv[{i}][{j}]")
    checks.positive_int(hidden, "hidden")
    size = list(obs_shape[1:])
    for i, (_, k, s) in enumerate(conv):
        size = [(x - k) // s + 1 for x in size]
        if min(size) < 1:
            raise ValueError(f"conv[{i}] (kernel {k}, stride {s}) does not fit the frames of obs_shape {obs_shape}")
    return ActorCriticCNN(obs_shape, conv, hidden, num_actions)
