"""Checkpoint and metrics files shared by every runner: atomic writes and checked reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = ["atomic_save", "atomic_write_json", "load_checkpoint_file", "read_checkpoint", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be 'auto', a device string or a torch.device, got {type(device).__name__}")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available")
    return device


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash leaves the old file or the new one.
    Creates the parent folder; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)  # atomic on POSIX
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(payload: Any, path: Path) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of one of this library's checkpoints, on CPU.

    A missing path raises ``FileNotFoundError``; an empty, truncated or foreign file (not a
    torch checkpoint, or one without the ``"config"`` entry every runner writes) raises one
    ``ValueError`` that names the path and what is wrong. Loading stays ``weights_only``: a file
    that needs arbitrary unpickling is refused, never loaded unsafely.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise ValueError(f"checkpoint path {path} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes); was the run interrupted while writing it?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises OSError, EOFError, RuntimeError or UnpicklingError here
        reason = type(error).__name__
        raise ValueError(
            f"checkpoint {path} cannot be read ({reason}): it is truncated, corrupted, or not a checkpoint written "
            "by functional_metarl (only weights-only checkpoints are loaded)"
        ) from None
    if not isinstance(state, dict) or "config" not in state:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path} is not a functional_metarl checkpoint: expected a dict with a 'config' "
                         f"entry, got {keys}")
    return state


def read_checkpoint(
    path: str | Path, config: dict[str, Any], may_differ: Iterable[str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a checkpoint (tensors on CPU) and check it was written with the same settings as
    ``config`` except for the keys in ``may_differ`` (run length, device, logging cadence ...).

    A setting the checkpoint does not record (one added to the config after it was written) is
    taken to have had its value in ``defaults``, when given: old checkpoints then load as long as
    the new setting is left at its default."""
    state = load_checkpoint_file(path)
    saved = {**(defaults or {}), **state["config"]}
    free = set(may_differ)
    mismatched = [k for k in config if k not in free and saved.get(k) != config[k]]
    if mismatched:
        raise ValueError(f"checkpoint {path} was written with different settings for {mismatched}")
    return state
