"""Q-network templates for Rainbow: factorised noisy linear layers, dueling C51 heads.

Every template is a :class:`QNetwork` (a :class:`~functional_metarl.nn.core.Functional`):
``init(seed) -> params`` and ``apply(params, obs, noise=None)``. Noise is an explicit input,
a ``dict[str, Tensor]`` made by ``net.sample_noise(generator)``; ``noise=None`` evaluates the
mean network (every noisy weight at its ``mu``). Nothing inside draws random numbers.

Output of ``apply``: logits ``[..., A, K]`` when ``num_atoms > 1`` (distributional),
Q-values ``[..., A]`` when ``num_atoms == 1``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from ..tree import Params
from .. import checks
from .core import Functional

__all__ = [
    "NoisyLinear",
    "QNetwork",
    "factorised_noise",
    "noise_transform",
    "rainbow_mlp",
    "rainbow_cnn",
]

Noise = dict[str, torch.Tensor]


def noise_transform(eps: torch.Tensor) -> torch.Tensor:
    """``f(x) = sign(x) sqrt(|x|)`` of Fortunato et al. (2018), factorised Gaussian noise."""
    return torch.sign(eps) * torch.sqrt(eps.abs())


def factorised_noise(eps_in: torch.Tensor, eps_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias noise from factorised inputs: ``(f(eps_out) f(eps_in)^T [out, in], f(eps_out) [out])``."""
    checks.floating_tensor(eps_in, "eps_in", ndim=1)
    checks.floating_tensor(eps_out, "eps_out", ndim=1)
    f_out = noise_transform(eps_out)
    return torch.outer(f_out, noise_transform(eps_in)), f_out


class NoisyLinear(nn.Module):
    """``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b`` with factorised noise
    ``eps_w = f(eps_out) f(eps_in)^T``, ``eps_b = f(eps_out)`` (Fortunato et al. 2018, Sec. 3).

    Init as the paper's factorised case: ``mu ~ U[-1/sqrt(in), 1/sqrt(in)]``,
    ``sigma = sigma0 / sqrt(in)``. The noise comes in as ``eps_in [in]``, ``eps_out [out]``;
    ``None`` gives the mean layer.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))

    def forward(self, x: torch.Tensor, eps_in: torch.Tensor | None = None, eps_out: torch.Tensor | None = None) -> torch.Tensor:
        """``x [..., in] -> [..., out]``; with ``eps_in``/``eps_out`` None, the mean layer."""
        if eps_in is None:
            return nn.functional.linear(x, self.weight_mu, self.bias_mu)
        w_noise, b_noise = factorised_noise(eps_in, eps_out)
        weight = self.weight_mu + self.weight_sigma * w_noise
        bias = self.bias_mu + self.bias_sigma * b_noise
        return nn.functional.linear(x, weight, bias)


class _RainbowQ(nn.Module):
    """torso -> (dueling) head; all linear layers noisy when ``noisy``."""

    def __init__(
        self,
        torso: nn.Module | None,
        feature_dim: int,
        hidden: Sequence[int],
        head_hidden: int,
        num_actions: int,
        num_atoms: int,
        dueling: bool,
        noisy: bool,
        sigma0: float,
    ):
        super().__init__()
        self.num_actions, self.num_atoms, self.dueling = num_actions, num_atoms, dueling

        def linear(a: int, b: int) -> nn.Module:
            return NoisyLinear(a, b, sigma0) if noisy else nn.Linear(a, b)

        self.conv = torso
        sizes = [feature_dim, *hidden]
        self.mlp = nn.ModuleList([linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        width = sizes[-1]
        out = num_actions * num_atoms
        if dueling:
            self.value_hidden, self.value_out = linear(width, head_hidden), linear(head_hidden, num_atoms)
            self.adv_hidden, self.adv_out = linear(width, head_hidden), linear(head_hidden, out)
        else:
            self.q_hidden, self.q_out = linear(width, head_hidden), linear(head_hidden, out)

    def _layer(self, name: str, x: torch.Tensor, noise: Noise | None) -> torch.Tensor:
        layer = self.get_submodule(name)
        if isinstance(layer, NoisyLinear) and noise is not None:
            return layer(x, noise[f"{name}.eps_in"], noise[f"{name}.eps_out"])
        return layer(x)

    def forward(self, x: torch.Tensor, noise: Noise | None = None) -> torch.Tensor:
        if self.conv is not None:
            if x.dtype == torch.uint8:
                x = x.float() / 255.0
            lead = x.shape[:-3]
            x = self.conv(x.reshape(-1, *x.shape[-3:]))
            x = x.reshape(*lead, -1)
        for i in range(len(self.mlp)):
            x = torch.relu(self._layer(f"mlp.{i}", x, noise))
        A, K = self.num_actions, self.num_atoms
        if self.dueling:
            v = self._layer("value_out", torch.relu(self._layer("value_hidden", x, noise)), noise)  # [..., K]
            a = self._layer("adv_out", torch.relu(self._layer("adv_hidden", x, noise)), noise)
            a = a.reshape(*a.shape[:-1], A, K)
            # Combined per atom (Rainbow Eq. 3 / Wang et al. 2016 Eq. 9): the mean advantage over
            # actions is subtracted atom by atom, before the softmax over atoms.
            out = v.unsqueeze(-2) + a - a.mean(dim=-2, keepdim=True)
        else:
            out = self._layer("q_out", torch.relu(self._layer("q_hidden", x, noise)), noise)
            out = out.reshape(*out.shape[:-1], A, K)
        return out.squeeze(-1) if K == 1 else out


class QNetwork(Functional):
    """A Q-network template: ``apply(params, obs [..., *obs_shape], noise=None)``.

    Attributes: ``obs_shape``, ``num_actions``, ``num_atoms``, ``noise_shapes`` (the keys and
    shapes ``sample_noise`` produces; empty when the net has no noisy layers).
    """

    def __init__(self, make_module, obs_shape: tuple[int, ...], num_actions: int, num_atoms: int):
        super().__init__(make_module, in_dim=obs_shape[-1])
        self.obs_shape = tuple(obs_shape)
        self.num_actions = num_actions
        self.num_atoms = num_atoms
        self.noise_shapes: dict[str, tuple[int, ...]] = {}
        for name, m in self.module.named_modules():
            if isinstance(m, NoisyLinear):
                self.noise_shapes[f"{name}.eps_in"] = (m.in_features,)
                self.noise_shapes[f"{name}.eps_out"] = (m.out_features,)

    @property
    def noisy(self) -> bool:
        return bool(self.noise_shapes)

    def sample_noise(
        self, generator: torch.Generator, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Noise:
        """Fresh standard-normal ``eps_in`` / ``eps_out`` for every noisy layer, from ``generator``.

        Drawn on the generator's device, then moved to ``device``; same generator state, same noise.
        """
        checks.instance(generator, "generator", torch.Generator)
        return {
            k: torch.randn(s, generator=generator, device=generator.device, dtype=dtype).to(device or generator.device)
            for k, s in self.noise_shapes.items()
        }

    def apply(self, params: Params, obs: torch.Tensor, noise: Noise | None = None) -> torch.Tensor:
        """Q-values ``[..., A]`` (or atom logits ``[..., A, atoms]``) at ``obs``; ``noise`` from
        ``sample_noise`` for noisy layers, ``None`` for their mean."""
        self.check(params)
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"obs must be a Tensor, got {type(obs).__name__}")
        n = len(self.obs_shape)
        if obs.ndim < n or tuple(obs.shape[obs.ndim - n :]) != self.obs_shape:
            raise ValueError(f"obs expected shape [..., {', '.join(map(str, self.obs_shape))}], got {tuple(obs.shape)}")
        if noise is not None:
            if not isinstance(noise, dict):
                raise TypeError(f"noise must be None or dict[str, Tensor], got {type(noise).__name__}")
            if set(noise) != set(self.noise_shapes):
                raise ValueError(
                    f"noise keys do not match the noisy layers; missing {sorted(set(self.noise_shapes) - set(noise))}, "
                    f"unexpected {sorted(set(noise) - set(self.noise_shapes))}"
                )
            for k, s in self.noise_shapes.items():
                if tuple(noise[k].shape) != s:
                    raise ValueError(f"noise[{k!r}] expected shape {s}, got {tuple(noise[k].shape)}")
            if not noise:
                noise = None
        return functional_call(self.module, params, (obs, noise))

    def apply_unchecked(self, params: Params, obs: torch.Tensor, noise: Noise | None = None) -> torch.Tensor:
        """What :meth:`apply` computes, op for op (so bit for bit), straight from the ``params``
        dict: no argument checks and no ``functional_call`` (whose module swapping costs more
        than a small net's whole forward). For hot loops that checked their inputs once, and
        for ``torch.compile``. ``obs [..., *obs_shape]`` -> ``[..., A, K]`` / ``[..., A]``."""
        m = self.module
        x = obs
        if m.conv is not None:
            if x.dtype == torch.uint8:
                x = x.float() / 255.0
            lead = x.shape[:-3]
            x = x.reshape(-1, *x.shape[-3:])
            for i, layer in enumerate(m.conv):
                if isinstance(layer, nn.Conv2d):
                    x = nn.functional.conv2d(x, params[f"conv.{i}.weight"], params[f"conv.{i}.bias"], layer.stride,
                                             layer.padding, layer.dilation, layer.groups)
                else:
                    x = torch.relu(x)
            x = x.reshape(*lead, -1)

        def layer(name: str, h: torch.Tensor) -> torch.Tensor:
            if f"{name}.weight" in params:
                return nn.functional.linear(h, params[f"{name}.weight"], params[f"{name}.bias"])
            if noise is None:
                return nn.functional.linear(h, params[f"{name}.weight_mu"], params[f"{name}.bias_mu"])
            b_noise = noise_transform(noise[f"{name}.eps_out"])  # factorised_noise without its checks
            w_noise = torch.outer(b_noise, noise_transform(noise[f"{name}.eps_in"]))
            weight = params[f"{name}.weight_mu"] + params[f"{name}.weight_sigma"] * w_noise
            bias = params[f"{name}.bias_mu"] + params[f"{name}.bias_sigma"] * b_noise
            return nn.functional.linear(h, weight, bias)

        for i in range(len(m.mlp)):
            x = torch.relu(layer(f"mlp.{i}", x))
        A, K = m.num_actions, m.num_atoms
        if m.dueling:
            v = layer("value_out", torch.relu(layer("value_hidden", x)))
            a = layer("adv_out", torch.relu(layer("adv_hidden", x)))
            a = a.reshape(*a.shape[:-1], A, K)
            out = v.unsqueeze(-2) + a - a.mean(dim=-2, keepdim=True)
        else:
            out = layer("q_out", torch.relu(layer("q_hidden", x)))
            out = out.reshape(*out.shape[:-1], A, K)
        return out.squeeze(-1) if K == 1 else out


def _check_head_args(num_actions: int, num_atoms: int, head_hidden: int, sigma0: float, dueling: bool,
                     noisy: bool) -> None:
    checks.positive_int(num_actions, "num_actions")
    checks.positive_int(num_atoms, "num_atoms")
    checks.positive_int(head_hidden, "head_hidden")
    checks.non_negative_number(sigma0, "sigma0")
    checks.flag(dueling, "dueling")
    checks.flag(noisy, "noisy")


def rainbow_mlp(
    obs_dim: int,
    num_actions: int,
    num_atoms: int = 51,
    hidden: Sequence[int] = (128,),
    head_hidden: int = 128,
    dueling: bool = True,
    noisy: bool = True,
    sigma0: float = 0.5,
) -> QNetwork:
    """MLP Rainbow net for vector observations: ``obs [..., obs_dim]`` -> ``[..., A, K]`` / ``[..., A]``.

    ``hidden`` ReLU layers form the torso; each head stream has one ``head_hidden`` layer.
    With ``noisy`` every linear layer is a :class:`NoisyLinear` (as Rainbow: "we replace all
    linear layers with their noisy equivalent").
    """
    checks.positive_int(obs_dim, "obs_dim")
    hidden = tuple(hidden)
    for i, h in enumerate(hidden):
        checks.positive_int(h, f"hidden[{i}]")
    _check_head_args(num_actions, num_atoms, head_hidden, sigma0, dueling, noisy)
    make = lambda: _RainbowQ(None, obs_dim, hidden, head_hidden, num_actions, num_atoms, dueling, noisy, sigma0)  # noqa: E731
    return QNetwork(make, (obs_dim,), num_actions, num_atoms)


def _conv_torso(channels: int, arch: str) -> nn.Sequential:
    if arch == "nature":  # Mnih et al. 2015
        return nn.Sequential(
            nn.Conv2d(channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1), nn.ReLU()
        )
    if arch == "data_efficient":  # van Hasselt et al. 2019, Data-efficient Rainbow
        return nn.Sequential(nn.Conv2d(channels, 32, 5, 5), nn.ReLU(), nn.Conv2d(32, 64, 5, 5), nn.ReLU())
    raise ValueError(f"arch must be 'nature' or 'data_efficient', got {arch!r}")


def rainbow_cnn(
    obs_shape: tuple[int, int, int] = (4, 84, 84),
    num_actions: int = 18,
    num_atoms: int = 51,
    head_hidden: int | None = None,
    dueling: bool = True,
    noisy: bool = True,
    sigma0: float = 0.5,
    arch: str = "nature",
) -> QNetwork:
    """Conv Rainbow net for stacked frames ``obs [..., C, H, W]`` (uint8 is scaled by 1/255).

    ``arch="nature"``: the Nature-DQN torso with 512-unit head streams (Rainbow's Atari net);
    ``arch="data_efficient"``: the smaller torso with 256-unit streams of Data-efficient Rainbow.
    Conv layers are never noisy; the head's linear layers are when ``noisy``.
    """
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape!r}")
    for i, s in enumerate(obs_shape):
        checks.positive_int(s, f"obs_shape[{i}]")
    checks.one_of(arch, "arch", ("nature", "data_efficient"))
    head_hidden = head_hidden or (512 if arch == "nature" else 256)
    _check_head_args(num_actions, num_atoms, head_hidden, sigma0, dueling, noisy)
    torso = _conv_torso(obs_shape[0], arch)
    with torch.no_grad():
        feature_dim = torso(torch.zeros(1, *obs_shape)).reshape(-1).shape[0]
    make = lambda: _RainbowQ(  # noqa: E731
        _conv_torso(obs_shape[0], arch), feature_dim, (), head_hidden, num_actions, num_atoms, dueling, noisy, sigma0
    )
    return QNetwork(make, tuple(obs_shape), num_actions, num_atoms)
