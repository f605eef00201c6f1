"""Task families as pure tensor functions, and batched rollouts."""

from .navigation import Navigation2D, NavState, NavTask
from .rollout import Episodes, rollout, sample_noise

__all__ = ["Navigation2D", "NavState", "NavTask", "Episodes", "rollout", "sample_noise"]

from .sine import RegressionBatch, SineRegression, SineTasks  # noqa: E402

__all__ += ["RegressionBatch", "SineRegression", "SineTasks"]

from .four_rooms import FOUR_ROOMS_LAYOUT, FourRooms, FourRoomsState, FourRoomsTask  # noqa: E402

__all__ += ["FOUR_ROOMS_LAYOUT", "FourRooms", "FourRoomsState", "FourRoomsTask"]
