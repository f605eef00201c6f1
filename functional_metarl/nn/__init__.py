"""Stateless network templates: ``init(seed) -> params`` and ``apply(params, x)``."""

from .core import ACTIVATIONS, Functional, categorical_policy, gaussian_policy, mlp

__all__ = ["ACTIVATIONS", "Functional", "categorical_policy", "gaussian_policy", "mlp"]
