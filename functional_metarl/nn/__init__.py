"""Stateless network templates: ``init(seed) -> params`` and ``apply(params, x)``."""

from .core import ACTIVATIONS, Functional, categorical_policy, gaussian_policy, mlp

__all__ = ["ACTIVATIONS", "Functional", "categorical_policy", "gaussian_policy", "mlp"]

# Rainbow Q-networks
from .q_networks import NoisyLinear, QNetwork, factorised_noise, noise_transform, rainbow_cnn, rainbow_mlp  # noqa: E402

__all__ += ["NoisyLinear", "QNetwork", "factorised_noise", "noise_transform", "rainbow_cnn", "rainbow_mlp"]

# DDPG / TD3 actor and critic templates
from .actor_critic_nets import deterministic_actor, q_critic  # noqa: E402

__all__ += ["deterministic_actor", "q_critic"]

# Deep Option-Critic: critic, terminations and intra-option policies in one template
from .option_critic_nets import OptionHeads, option_critic_net  # noqa: E402

__all__ += ["OptionHeads", "option_critic_net"]

# RL²: GRU actor-critic (recurrent param dict)
from .recurrent import RecurrentFunctional, gru_actor_critic, gru_cell, rl2_inputs  # noqa: E402

__all__ += ["RecurrentFunctional", "gru_actor_critic", "gru_cell", "rl2_inputs"]

# MAML on Atari: the Nature-CNN actor-critic (shared conv torso, actor and critic heads)
from .conv import NATURE_CONV, ActorCriticCNN, nature_cnn_actor_critic  # noqa: E402

__all__ += ["NATURE_CONV", "ActorCriticCNN", "nature_cnn_actor_critic"]
