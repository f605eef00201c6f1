"""Checkpoint and metrics files shared by every runner: atomic writes and checked reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = ["atomic_save", "atomic_write_json", "read_checkpoint", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
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


def read_checkpoint(
    path: str | Path, config: dict[str, Any], may_differ: Iterable[str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a checkpoint (tensors on CPU) and check it was written with the same settings as
    ``config`` except for the keys in ``may_differ`` (run length, device, logging cadence ...).

    A setting the checkpoint does not record (one added to the config after it was written) is
    taken to have had its value in ``defaults``, when given: old checkpoints then load as long as
    the new setting is left at its default."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {**(defaults or {}), **state["config"]}
    free = set(may_differ)
    mismatched = [k for k in config if k not in free and saved.get(k) != config[k]]
    if mismatched:
        raise ValueError(f"checkpoint {path} was written with different settings for {mismatched}")
    return state
