"""functional_metarl: functional, JAX-style meta-RL for PyTorch, built on torch.func."""

from . import checks, distributions, envs, meta, nn, optim, rl, runners, tree
from . import cli  # the command line over runners (imports them, so it comes last)

__version__ = "0.1.0"
__all__ = ["checks", "distributions", "envs", "meta", "nn", "optim", "rl", "runners", "tree", "cli", "__version__"]
