"""Pure RL math: returns, GAE, the linear baseline, policy-gradient / PPO / TRPO pieces."""

from .baseline import baseline_features, fit_linear_baseline, linear_baseline_values, predict_linear_baseline
from .distributions import (
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
)
from .losses import masked_episode_mean, normalize_advantages, policy_gradient_loss, ppo_clip_loss, surrogate_loss
from .returns import discounted_returns, gae
from .trpo import (
    LineSearchResult,
    backtracking_line_search,
    conjugate_gradient,
    gauss_newton_operator,
    hessian_vector_product,
    trpo_step_direction,
)

__all__ = [
    "baseline_features",
    "fit_linear_baseline",
    "linear_baseline_values",
    "predict_linear_baseline",
    "categorical_entropy",
    "categorical_kl",
    "categorical_log_prob",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "masked_episode_mean",
    "normalize_advantages",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "surrogate_loss",
    "discounted_returns",
    "gae",
    "LineSearchResult",
    "backtracking_line_search",
    "conjugate_gradient",
    "gauss_newton_operator",
    "hessian_vector_product",
    "trpo_step_direction",
]
