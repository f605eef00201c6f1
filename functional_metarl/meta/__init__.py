"""Meta-learning algorithms as pure functions: the MAML family."""

from .maml import adapt, adapt_sequence, maml_loss, meta_gradient
from .maml_rl import (
    RLBatch,
    TRPOConfig,
    TRPOStats,
    adapt_rl,
    adapt_tasks,
    adapted_distribution,
    default_score_fn,
    maml_surrogate,
    maml_trpo_step,
    policy_distribution,
    maml_gradient_step,
    make_rl_batch,
    make_rl_batches,
    reinforce_loss,
    scale_by_final_reward,
)

__all__ = [
    "adapt",
    "adapt_sequence",
    "maml_loss",
    "meta_gradient",
    "RLBatch",
    "TRPOConfig",
    "TRPOStats",
    "adapt_rl",
    "adapt_tasks",
    "adapted_distribution",
    "maml_surrogate",
    "default_score_fn",
    "maml_trpo_step",
    "policy_distribution",
    "maml_gradient_step",
    "make_rl_batch",
    "make_rl_batches",
    "reinforce_loss",
    "scale_by_final_reward",
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

# Meta-policy-gradient estimators (E-MAML, DiCE, LVC) and the ProMP-style meta-step
from .estimators import (  # noqa: E402
    ESTIMATORS,
    ProMPConfig,
    ProMPState,
    ProMPStats,
    check_estimator,
    dice_inner_loss,
    dice_objective,
    emaml_score_term,
    estimator_surrogate,
    inner_loss,
    lvc_inner_loss,
    magic_box,
    maml_promp_step,
    promp_init,
)

__all__ += [
    "ESTIMATORS", "ProMPConfig", "ProMPState", "ProMPStats", "check_estimator", "dice_inner_loss", "dice_objective",
    "emaml_score_term", "estimator_surrogate", "inner_loss", "lvc_inner_loss", "magic_box", "maml_promp_step",
    "promp_init",
]

from .rl2 import rl2_ppo_grad  # noqa: E402

__all__ += ["rl2_ppo_grad"]

# MAML with a categorical policy on the RL² families (split-trial protocol)
from .maml_discrete import categorical_episodes, episode_env, maml_trial_returns, split_trial_noise, split_trial_rollouts  # noqa: E402

__all__ += ["categorical_episodes", "episode_env", "maml_trial_returns", "split_trial_noise", "split_trial_rollouts"]
