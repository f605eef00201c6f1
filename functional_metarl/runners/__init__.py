"""Stateful runners: the only layer that owns devices, generators, logs and checkpoints."""

from .checkpoint import atomic_save, atomic_write_json, load_checkpoint_file, read_checkpoint, resolve_device
from .cpu_memory import keep_freed_cpu_memory
from .base import CHECKPOINT_FILE, CHECKPOINT_FORMAT, METRICS_FILE, RunConfig, Runner, restore_like, to_saveable
from .maml_trainer import MAMLConfig, MAMLTrainer, make_meta_step

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "METRICS_FILE",
    "RunConfig",
    "Runner",
    "restore_like",
    "to_saveable",
    "make_meta_step",
    "MAMLConfig",
    "MAMLTrainer",
    "atomic_save",
    "atomic_write_json",
    "keep_freed_cpu_memory",
    "load_checkpoint_file",
    "read_checkpoint",
    "resolve_device",
]

# Replay buffers (uniform, prioritised, n-step)
from .replay import (  # noqa: E402
    FrameStackReplay, NStepAggregator, PrioritizedReplay, SumTree, Transition, UniformReplay, importance_weights,
)

__all__ += ["FrameStackReplay", "NStepAggregator", "PrioritizedReplay", "SumTree", "Transition", "UniformReplay",
            "importance_weights"]

# Rainbow
from .rainbow import RainbowConfig, RainbowTrainer  # noqa: E402

__all__ += ["RainbowConfig", "RainbowTrainer"]

# DDPG / TD3
from .ddpg import DDPGConfig, DDPGTrainer, TensorReplay  # noqa: E402

__all__ += ["DDPGConfig", "DDPGTrainer", "TensorReplay"]

# Option-Critic (tabular, Four Rooms)
from .option_critic import OptionCriticConfig, OptionCriticTrainer  # noqa: E402

__all__ += ["OptionCriticConfig", "OptionCriticTrainer"]

# Deep Option-Critic (gymnasium envs; softmax or Gaussian intra-option policies)
from .deep_option_critic import DeepOptionCriticConfig, DeepOptionCriticTrainer  # noqa: E402

__all__ += ["DeepOptionCriticConfig", "DeepOptionCriticTrainer"]

# RL² (bandits, tabular MDPs)
from .rl2 import RL2Config, RL2Trainer, make_rl2_env, mean_and_stderr  # noqa: E402

__all__ += ["RL2Config", "RL2Trainer", "make_rl2_env", "mean_and_stderr"]

# Simulator meta-RL: the task-aware vector sampler and MAML-TRPO on top of it
from .gym_sampler import TaskVectorSampler  # noqa: E402
from .maml_samplers import (  # noqa: E402
    MAMLSampler,
    PureFamilySampler,
    SimulatorSampler,
    SplitTrialSampler,
    SplitTrialTasks,
    StatelessSampler,
)
from .maml_trainer import Evaluation  # noqa: E402
from .distributed import DataParallel  # noqa: E402

__all__ += ["TaskVectorSampler", "MAMLSampler", "PureFamilySampler", "SimulatorSampler", "SplitTrialSampler",
            "SplitTrialTasks", "StatelessSampler", "Evaluation", "DataParallel"]

# MAML-A2C on Atari: n-step segments of image-observation, discrete-action task envs
from .nstep_sampler import NStepTaskSampler, TaskPoolSampler  # noqa: E402

__all__ += ["NStepTaskSampler", "TaskPoolSampler"]

# MAML-A2C on Atari flavours or games
from .maml_atari import MAMLAtariConfig, MAMLAtariTrainer  # noqa: E402

__all__ += ["MAMLAtariConfig", "MAMLAtariTrainer"]
