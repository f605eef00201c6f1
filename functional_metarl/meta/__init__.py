"""Meta-learning algorithms as pure functions: the MAML family."""

from .maml import adapt, adapt_sequence, maml_loss, meta_gradient
from .batch import FINAL_REWARD_WINDOW, RLBatch, TrainData, make_rl_batch, make_rl_batches, scale_by_final_reward
from .adaptation import (
    adapt_rl,
    adapt_tasks,
    adapt_tasks_vjp,
    adapted_distribution,
    policy_distribution,
    reinforce_loss,
)
from .estimators import (
    DICE,
    E_MAML,
    ESTIMATORS,
    LVC,
    MAML,
    Estimator,
    check_post_rewards,
    dice_inner_loss,
    dice_objective,
    emaml_score_term,
    estimator_named,
    inner_loss,
    lvc_inner_loss,
    magic_box,
)
from .surrogates import MetaGradient, maml_surrogate, surrogate_gradient, surrogate_gradient_fn, surrogate_gradient_through, score_fn
from .meta_steps import MetaStep, ProMPConfig, ProMPState, TaskShard, TRPOConfig, TRPOState, gradient, promp, trpo

__all__ = [
    "adapt",
    "adapt_sequence",
    "maml_loss",
    "meta_gradient",
    # MAML-RL: data, inner loop, estimators, outer surrogate, meta-steps
    "FINAL_REWARD_WINDOW", "RLBatch", "TrainData", "make_rl_batch", "make_rl_batches", "scale_by_final_reward",
    "adapt_rl", "adapt_tasks", "adapt_tasks_vjp", "adapted_distribution", "policy_distribution", "reinforce_loss",
    "DICE", "E_MAML", "ESTIMATORS", "LVC", "MAML", "Estimator", "check_post_rewards", "dice_inner_loss", "dice_objective",
    "emaml_score_term", "estimator_named", "inner_loss", "lvc_inner_loss", "magic_box",
    "MetaGradient", "maml_surrogate", "surrogate_gradient", "surrogate_gradient_fn", "surrogate_gradient_through", "score_fn",
    "MetaStep", "ProMPConfig", "ProMPState", "TaskShard", "TRPOConfig", "TRPOState", "gradient", "promp", "trpo",
]

from .supervised import (  # noqa: E402
    MetaLearner,
    MetaParams,
    adaptation_losses,
    anil,
    check_task_batches,
    fomaml,
    last_layer,
    maml,
    meta_sgd,
    meta_update,
    mse_loss,
    reptile,
)

__all__ += [
    "MetaLearner",
    "MetaParams",
    "adaptation_losses",
    "anil",
    "check_task_batches",
    "fomaml",
    "last_layer",
    "maml",
    "meta_sgd",
    "meta_update",
    "mse_loss",
    "reptile",
]

# RL² with PPO (recurrent rollout, loss and train step)
from .rl2 import (  # noqa: E402
    PPOConfig,
    RL2Noise,
    Trial,
    gumbel_sample,
    rl2_advantages,
    rl2_ppo_loss,
    rl2_rollout,
    rl2_train_step,
    sample_rl2_noise,
)

__all__ += [
    "PPOConfig", "RL2Noise", "Trial", "gumbel_sample", "rl2_advantages", "rl2_ppo_loss", "rl2_rollout",
    "rl2_train_step", "sample_rl2_noise",
]

from .rl2 import rl2_ppo_grad  # noqa: E402

__all__ += ["rl2_ppo_grad"]

# MAML with a categorical policy on the RL² families (split-trial protocol)
from .maml_discrete import categorical_episodes, episode_env, maml_trial_returns, split_trial_noise, split_trial_rollouts  # noqa: E402

__all__ += ["categorical_episodes", "episode_env", "maml_trial_returns", "split_trial_noise", "split_trial_rollouts"]

# MAML-A2C on Atari: the n-step A2C inner loss, adaptation of every task, meta-gradient, meta-step
from .a2c import (  # noqa: E402
    A2CBatch,
    A2CConfig,
    a2c_loss,
    a2c_task_losses,
    adapt_a2c,
    maml_a2c,
    maml_a2c_gradient,
    maml_a2c_loss,
    nstep_advantages,
)

__all__ += ["A2CBatch", "A2CConfig", "a2c_loss", "a2c_task_losses", "adapt_a2c", "maml_a2c", "maml_a2c_gradient",
            "maml_a2c_loss", "nstep_advantages"]
