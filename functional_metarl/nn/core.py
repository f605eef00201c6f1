"""Stateless network templates.

A :class:`Functional` wraps an ``nn.Module`` *template* that is never trained itself:
``init(seed)`` returns a fresh params dict and ``apply(params, x)`` runs the template through
``torch.func.functional_call`` with those params. Params are plain ``dict[str, Tensor]`` keyed
as ``named_parameters()`` names them, so they go straight into ``grad`` / ``vmap``.

The built-in templates (``mlp``, ``gaussian_policy``) also carry an equivalent pure function of
``(params, x)`` made of the same ``F.linear`` / activation calls, which ``apply`` runs instead of
``functional_call``: same ops, same numbers (the tests compare them bit for bit), without
swapping tensors into a module on every call, which is most of the cost of a small network's
forward (the rollouts call it 200 times per MAML meta-iteration).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .. import checks
from ..distributions import CATEGORICAL, GAUSSIAN, Distribution
from ..tree import Params, check_params

__all__ = ["Functional", "mlp", "gaussian_policy", "categorical_policy", "ACTIVATIONS"]

class _SigmoidFormTanh(torch.autograd.Function):
    """``tanh(x) = 2 sigmoid(2x) - 1``, with torch's own ``tanh`` derivative.

    Why: on the CPU, ``torch.tanh``'s kernel (a high-accuracy polynomial) is several times slower
    than ``torch.sigmoid``'s, and a tanh policy's forward passes are a large share of a MAML-TRPO
    meta-iteration (measurements: ``docs/results/benchmarks.md``, "Measurements behind the pure
    layers"). This form costs one sigmoid and two in-place scalings; its error is at most 2e-7
    (float32) / 4e-16 (float64) absolute.
    The backward and forward-mode rules are ``aten.tanh_backward`` on the saved output: the
    op torch's tanh differentiates with, so first and higher derivatives cost what they always did.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * 2).mul_(2).sub_(1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad_output, output)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(tangent, output)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """The templates' tanh: the sigmoid form on the CPU (see ``_SigmoidFormTanh``), ``torch.tanh``
    elsewhere and inside ``torch.compile``.
    With autograd off (rollouts, line-search scoring) the same three ops run without the
    autograd.Function around them, whose call costs as much as the ops on a rollout step's tensors."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        # Under torch.compile the generated kernel fuses tanh itself (and dynamo cannot trace an
        # autograd.Function with a custom jvp: it would break the graph there).
        return torch.tanh(x)
    if not torch.is_grad_enabled():
        return _SigmoidFormTanh.forward(x)
    return _SigmoidFormTanh.apply(x)


class Tanh(nn.Module):
    """``nn.Tanh`` computed as the templates compute it (``ACTIVATIONS["tanh"]``): on the CPU as
    ``2 sigmoid(2x) - 1`` (faster there; within 2e-7 of ``torch.tanh`` in float32), so that a
    template module and its pure fast path give the same bits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise tanh of ``x`` (any shape)."""
        return _tanh(x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
# The functions those modules call in forward (default arguments), for the pure fast path.
ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": _tanh,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}


def _check_input_matches_params(x: torch.Tensor, params: Params) -> None:
    """The input must have the params' floating dtype and device: name both instead of torch's
    "mat1 and mat2 must have the same dtype". Cheap (reads one param), so it runs on every call."""
    reference = next(iter(params.values()))
    if x.dtype != reference.dtype:
        raise TypeError(f"input has dtype {x.dtype} but the params are {reference.dtype}; convert the input "
                        f"(x.to({reference.dtype})) or the params")
    if x.device != reference.device:
        raise ValueError(f"input is on {x.device} but the params are on {reference.device}; move one of them")


class Functional:
    """A pure network: ``init(seed) -> Params`` and ``apply(params, x)``.

    Args:
        make_module: builds the template module (called once, and again per ``init``).
        in_dim: size of the last input axis; ``apply`` checks it.
        pure_apply: optional ``(params, x) -> output`` equal to ``functional_call(module, params,
            (x,))``; ``apply`` uses it when given (see the module docstring).
        stacked_apply: optional ``(stacked_params, x) -> output`` equal to ``vmap(apply)``:
            params with a leading axis ``N`` (one set per task), ``x: [N, ..., in_dim]``;
            ``apply_stacked`` uses it when given.
        distribution: what the output parameterises when the network is a policy, as a
            ``distributions.Distribution`` value (``GAUSSIAN``: ``apply -> (mean, log_std)``;
            ``CATEGORICAL``: ``apply -> logits``), or ``None`` for a plain network. Rollouts and
            the MAML-RL losses call its functions (log-probability, KL, sampling) and refuse a
            network that is not a policy.
    """

    def __init__(
        self,
        make_module: Callable[[], nn.Module],
        in_dim: int,
        pure_apply: Callable[[Params, torch.Tensor], object] | None = None,
        stacked_apply: Callable[[Params, torch.Tensor], object] | None = None,
        distribution: Distribution | None = None,
    ):
        if distribution is not None and not isinstance(distribution, Distribution):
            raise TypeError(f"distribution must be a distributions.Distribution (GAUSSIAN, CATEGORICAL) or None, "
                            f"got {distribution!r}")
        self.distribution = distribution
        self._make_module = make_module
        self._pure_apply = pure_apply
        self._stacked_apply = stacked_apply
        self.in_dim = in_dim
        with torch.random.fork_rng(devices=[]):  # building the template must not move the global RNG
            self.module = make_module()
        self.param_shapes = {k: v.shape for k, v in self.module.named_parameters()}

    def init(self, seed: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Params:
        """Fresh parameters from ``seed``; the global RNG is left untouched."""
        checks.int_in_range(seed, "seed")
        if dtype is not None and not dtype.is_floating_point:  # an integer dtype would truncate the init
            raise TypeError(f"dtype must be a floating-point dtype (or None), got {dtype}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._make_module()
        return {
            k: v.detach().to(device=device, dtype=dtype or v.dtype).clone()
            for k, v in module.named_parameters()
        }

    def check(self, params: Params) -> None:
        """Raise if ``params`` does not have this network's keys and shapes."""
        # Fast path for the common valid case (apply runs on every rollout step); any mismatch
        # goes to check_params, which names what was expected and what came.
        if type(params) is dict and len(params) == len(self.param_shapes):
            try:
                if all(isinstance(params[k], torch.Tensor) and params[k].shape == shape for k, shape in self.param_shapes.items()):
                    return
            except KeyError:
                pass
        check_params(params, self.param_shapes, type(self.module).__name__)

    def apply(self, params: Params, x: torch.Tensor) -> Any:
        """Run the network. ``x: [..., in_dim]``; leading axes are batch axes."""
        self.check(params)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(f"input expected shape [..., {self.in_dim}], got {tuple(x.shape)}")
        _check_input_matches_params(x, params)
        if self._pure_apply is not None:
            return self._pure_apply(params, x)
        return functional_call(self.module, params, (x,))

    def apply_stacked(self, params: Params, x: torch.Tensor) -> Any:
        """``vmap(apply)(params, x)``: one set of params per leading index. Params leaves
        ``[N, *shape]``, ``x: [N, ..., in_dim]``; outputs carry the leading ``N``.

        The built-in templates run it as batched matrix products (``torch.baddbmm``), which
        skips vmap's per-call dispatch: a per-task rollout calls this once per time step.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a Tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[-1] != self.in_dim:
            raise ValueError(f"input expected shape [N, ..., {self.in_dim}], got {tuple(x.shape)}")
        num = x.shape[0]
        if not (type(params) is dict and all(
            isinstance(p, torch.Tensor) and p.ndim >= 1 and p.shape[0] == num for p in params.values()
        )):
            shapes = ({k: tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__ for k, p in params.items()}
                      if isinstance(params, dict) else type(params).__name__)
            raise ValueError(f"stacked params expected leaves [{num}, *shape] (N = x.shape[0]), got {shapes}")
        self.check({k: p[0] for k, p in params.items()})
        _check_input_matches_params(x, params)
        if self._stacked_apply is None:
            return vmap(self.apply)(params, x)
        return self._stacked_apply(params, x)

    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(math.prod(s) for s in self.param_shapes.values())


def init_linear(layer: nn.Linear) -> nn.Linear:
    # Xavier-uniform weights and zero biases, as the MAML-RL reference policies use.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def mlp_module(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [init_linear(nn.Linear(a, b)), ACTIVATIONS[activation]()]
    layers.append(init_linear(nn.Linear(sizes[-1], out_dim)))
    return nn.Sequential(*layers)


def _mlp_forward(params: Params, x: torch.Tensor, prefix: str, num_layers: int, activation: str) -> torch.Tensor:
    """What ``mlp_module(...)(x)`` computes, on ``params`` named ``{prefix}{2 i}.weight/bias``."""
    act = ACTIVATION_FNS[activation]
    for i in range(num_layers):
        x = F.linear(x, params[f"{prefix}{2 * i}.weight"], params[f"{prefix}{2 * i}.bias"])
        if i < num_layers - 1:
            x = act(x)
    return x


def _mlp_forward_stacked(params: Params, x: torch.Tensor, prefix: str, num_layers: int, activation: str) -> torch.Tensor:
    """``vmap(_mlp_forward)`` over stacked params (weights ``[N, out, in]``), as batched matmuls.
    ``x: [N, ..., in] -> [N, ..., out]``."""
    act = ACTIVATION_FNS[activation]
    h = x.reshape(x.shape[0], -1, x.shape[-1])  # [N, M, in]
    for i in range(num_layers):
        weight, bias = params[f"{prefix}{2 * i}.weight"], params[f"{prefix}{2 * i}.bias"]
        if weight.shape[1] < weight.shape[2]:
            # A layer narrower than its input (a policy's 64 -> 2 head) as [N, out, in] @ [N, in, M]:
            # its products and their derivatives then have the narrow side as rows, which the CPU
            # BLAS runs several times faster than as columns (a 2-column output is a near-scalar loop).
            h = torch.baddbmm(bias.unsqueeze(2), weight, h.transpose(1, 2)).transpose(1, 2)
        else:
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if i < num_layers - 1:
            h = act(h)
    return h.reshape(*x.shape[:-1], h.shape[-1])


def check_mlp_args(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str) -> None:
    """The checks of an MLP template's arguments, shared by every template built on one."""
    checks.positive_int(in_dim, "in_dim")
    checks.positive_int(out_dim, "out_dim")
    for i, h in enumerate(hidden):
        checks.positive_int(h, f"hidden[{i}]")
    checks.one_of(activation, "activation", sorted(ACTIVATIONS))


def _mlp_functional(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str,
                    distribution: Distribution | None) -> Functional:
    hidden = tuple(hidden)
    check_mlp_args(in_dim, out_dim, hidden, activation)
    num_layers = len(hidden) + 1
    return Functional(
        lambda: mlp_module(in_dim, out_dim, hidden, activation),
        in_dim,
        pure_apply=lambda params, x: _mlp_forward(params, x, "", num_layers, activation),
        stacked_apply=lambda params, x: _mlp_forward_stacked(params, x, "", num_layers, activation),
        distribution=distribution,
    )


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (100, 100), activation: str = "relu") -> Functional:
    """Multi-layer perceptron ``[..., in_dim] -> [..., out_dim]`` (not a policy: ``distribution=None``)."""
    return _mlp_functional(in_dim, out_dim, hidden, activation, None)


def _check_mean_bound(mean_bound: object) -> float | None:
    """``gaussian_policy``'s ``mean_bound``: None, or a positive finite number (as a float)."""
    return None if mean_bound is None else checks.positive_number(mean_bound, "mean_bound")


def _bound_mean(mean: torch.Tensor, mean_bound: float | None) -> torch.Tensor:
    """``mean_bound * tanh(mean / mean_bound)``: the identity near 0, never beyond the bound."""
    return mean if mean_bound is None else mean_bound * torch.tanh(mean / mean_bound)


class _GaussianPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str, init_std: float,
                 mean_bound: float | None = None):
        super().__init__()
        self.mean = mlp_module(obs_dim, act_dim, hidden, activation)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.mean_bound = mean_bound

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = _bound_mean(self.mean(obs), self.mean_bound)
        return mean, self.log_std.expand_as(mean)


def gaussian_policy(
    obs_dim: int,
    act_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    init_std: float = 1.0,
    mean_bound: float | None = None,
) -> Functional:
    """Diagonal Gaussian policy with a state-independent log-std.

    ``apply(params, obs: [..., obs_dim]) -> (mean: [..., act_dim], log_std: [..., act_dim])``.
    With ``mean_bound`` the mean is squashed smoothly into ``[-mean_bound, mean_bound]``
    (``mean_bound * tanh(out / mean_bound)``), e.g. onto an environment's action box, so the
    mean cannot sit far outside the box, where clipping makes every sampled action the same.
    """
    hidden = tuple(hidden)
    check_mlp_args(obs_dim, act_dim, hidden, activation)
    checks.positive_number(init_std, "init_std")
    mean_bound = _check_mean_bound(mean_bound)
    num_layers = len(hidden) + 1

    def pure_apply(params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = _bound_mean(_mlp_forward(params, obs, "mean.", num_layers, activation), mean_bound)
        return mean, params["log_std"].expand_as(mean)

    def stacked_apply(params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = _bound_mean(_mlp_forward_stacked(params, obs, "mean.", num_layers, activation), mean_bound)
        log_std = params["log_std"]  # [N, act_dim]
        return mean, log_std.reshape(log_std.shape[0], *([1] * (mean.ndim - 2)), -1).expand_as(mean)

    return Functional(
        lambda: _GaussianPolicy(obs_dim, act_dim, hidden, activation, float(init_std), mean_bound), obs_dim,
        pure_apply=pure_apply, stacked_apply=stacked_apply, distribution=GAUSSIAN,
    )


def categorical_policy(
    obs_dim: int, num_actions: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh"
) -> Functional:
    """Categorical policy: ``apply(params, obs: [..., obs_dim]) -> logits: [..., num_actions]``.

    An MLP whose ``distribution`` is ``distributions.CATEGORICAL``: actions are integer indices
    ``[...]`` in ``[0, num_actions)``.
    """
    return _mlp_functional(obs_dim, num_actions, hidden, activation, CATEGORICAL)
