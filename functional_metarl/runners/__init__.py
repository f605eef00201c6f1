"""Stateful runners: the only layer that owns devices, generators, logs and checkpoints."""

from .maml_trainer import CHECKPOINT_NAME, MAMLConfig, MAMLTrainer, resolve_device

__all__ = ["CHECKPOINT_NAME", "MAMLConfig", "MAMLTrainer", "resolve_device"]
