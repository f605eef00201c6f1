"""Pure RL math: returns, GAE, the linear baseline, policy-gradient / PPO / TRPO pieces."""

from .baseline import baseline_features, fit_linear_baseline, linear_baseline_values, predict_linear_baseline
from ..distributions import (
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

# Rainbow / value learning
from .distributional import categorical_double_q_loss, categorical_projection, categorical_q_values  # noqa: E402
from .value_learning import double_q_target, n_step_returns, q_learning_loss  # noqa: E402
from .rainbow import q_values, rainbow_loss  # noqa: E402

__all__ += [
    "categorical_double_q_loss",
    "categorical_projection",
    "categorical_q_values",
    "double_q_target",
    "n_step_returns",
    "q_learning_loss",
    "q_values",
    "rainbow_loss",
]

# DDPG / TD3 (deterministic policy gradient)
from .actor_critic import (  # noqa: E402
    TransitionBatch,
    check_transition,
    clipped_double_q_target,
    critic_loss,
    ddpg_targets,
    dpg_actor_loss,
    is_policy_update_step,
    ou_noise_step,
    polyak_update,
    smoothed_target_action,
    squared_td_error,
    td3_targets,
    td_target,
    twin_critic_loss,
)

__all__ += [
    "TransitionBatch",
    "check_transition",
    "clipped_double_q_target",
    "critic_loss",
    "ddpg_targets",
    "dpg_actor_loss",
    "is_policy_update_step",
    "ou_noise_step",
    "polyak_update",
    "smoothed_target_action",
    "squared_td_error",
    "td3_targets",
    "td_target",
    "twin_critic_loss",
]

# Option-Critic
from .option_critic import (  # noqa: E402
    OptionActorLosses,
    OptionCriticLosses,
    epsilon_greedy_value,
    init_linear_option_params,
    intra_option_critic_loss,
    intra_option_pg_loss,
    intra_option_policy_loss,
    intra_option_q_target,
    linear_option_heads,
    option_actor_losses,
    option_critic_losses,
    option_value_upon_arrival,
    termination_advantage,
    termination_loss,
)

__all__ += [
    "OptionActorLosses",
    "OptionCriticLosses",
    "epsilon_greedy_value",
    "init_linear_option_params",
    "intra_option_critic_loss",
    "intra_option_pg_loss",
    "intra_option_policy_loss",
    "intra_option_q_target",
    "linear_option_heads",
    "option_actor_losses",
    "option_critic_losses",
    "option_value_upon_arrival",
    "termination_advantage",
    "termination_loss",
]
