"""Task families as pure tensor functions, and batched rollouts."""

from .protocol import NoNoise, SupervisedTaskFamily, TaskFamily, noise_at, repeat_tasks
from .navigation import Navigation2D, NavState, NavTask
from .rollout import Episodes, rollout, sample_noise

__all__ = ["TaskFamily", "SupervisedTaskFamily", "NoNoise", "noise_at", "repeat_tasks",
           "Navigation2D", "NavState", "NavTask", "Episodes", "rollout", "sample_noise"]

from .sine import RegressionBatch, SineRegression, SineTasks  # noqa: E402

__all__ += ["RegressionBatch", "SineRegression", "SineTasks"]

from .four_rooms import FOUR_ROOMS_LAYOUT, FourRooms, FourRoomsNoise, FourRoomsState, FourRoomsTask  # noqa: E402

__all__ += ["FOUR_ROOMS_LAYOUT", "FourRooms", "FourRoomsNoise", "FourRoomsState", "FourRoomsTask"]

# Discrete task families for RL² (Bernoulli bandits, random tabular MDPs) and their classic agents
from .bandits import BanditState, BanditTask, BernoulliBandits, check_int_actions, check_probabilities  # noqa: E402
from .tabular_mdp import MDPNoise, MDPState, MDPTask, TabularMDP  # noqa: E402
from .baselines import (  # noqa: E402
    BANDIT_BASELINES,
    MDP_BASELINES,
    RL2_PAPER_GITTINS,
    BaselineRun,
    bandit_baseline,
    mdp_baseline,
    sample_gamma,
)

__all__ += [
    "BanditState", "BanditTask", "BernoulliBandits", "check_int_actions", "check_probabilities",
    "MDPNoise", "MDPState", "MDPTask", "TabularMDP",
    "BANDIT_BASELINES", "MDP_BASELINES", "RL2_PAPER_GITTINS", "BaselineRun", "bandit_baseline", "mdp_baseline",
    "sample_gamma",
]

# Simulator task families (gymnasium MuJoCo task wrappers, Meta-World ML1/ML10); mujoco and
# metaworld are imported only when an env or benchmark is built.
from .metaworld_tasks import (  # noqa: E402
    METAWORLD_BENCHMARKS,
    MetaWorldFamily,
    MetaWorldTaskEnv,
    episode_success,
    success_rates,
)
from .mujoco_tasks import (  # noqa: E402
    MUJOCO_TASK_FAMILIES,
    AntDir,
    AntDirEnv,
    HalfCheetahDir,
    HalfCheetahDirEnv,
    HalfCheetahVel,
    HalfCheetahVelEnv,
    make_mujoco_family,
)

__all__ += [
    "METAWORLD_BENCHMARKS",
    "MetaWorldFamily",
    "MetaWorldTaskEnv",
    "episode_success",
    "success_rates",
    "MUJOCO_TASK_FAMILIES",
    "AntDir",
    "AntDirEnv",
    "HalfCheetahDir",
    "HalfCheetahDirEnv",
    "HalfCheetahVel",
    "HalfCheetahVelEnv",
    "make_mujoco_family",
]

from .baselines import gittins_indices, tune_gittins_gamma  # noqa: E402

__all__ += ["gittins_indices", "tune_gittins_gamma"]

from .baselines import tune_ucb_c  # noqa: E402

__all__ += ["tune_ucb_c"]

from .baselines import bayes_optimal_bandit_value  # noqa: E402

__all__ += ["bayes_optimal_bandit_value"]

from .baselines import MEMORY_GAUGE_WINDOWS, UCB_PRIORS, windowed_greedy  # noqa: E402

__all__ += ["MEMORY_GAUGE_WINDOWS", "UCB_PRIORS", "windowed_greedy"]

# Atari flavours (mode x difficulty) and games as task distributions; ale-py is imported only when used.
from .atari_tasks import (  # noqa: E402
    ATARI_OBS_SHAPE,
    FULL_ACTION_SPACE_SIZE,
    AtariTask,
    AtariTaskEnv,
    AtariTaskFamily,
    atari_game_ids,
    game_flavours,
    rom_flavours,
)

__all__ += ["ATARI_OBS_SHAPE", "FULL_ACTION_SPACE_SIZE", "AtariTask", "AtariTaskEnv", "AtariTaskFamily",
            "atari_game_ids", "game_flavours", "rom_flavours"]
