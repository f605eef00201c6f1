"""TensorBoard scalars for the runners: one lazily created ``SummaryWriter`` per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ScalarLogger"]


class ScalarLogger:
    """Writes scalars under ``log_dir``. The writer (and its event file) is created at the first
    scalar, so a run that logs nothing leaves no TensorBoard files; ``log_dir=None`` logs nothing.
    """

    def __init__(self, log_dir: str | Path | None):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer: Any = None

    @property
    def started(self) -> bool:
        """Whether a scalar has been written (the writer exists)."""
        return self._writer is not None

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Log ``value`` under ``tag`` at ``step`` (nothing when ``log_dir`` is None)."""
        if self.log_dir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported only when a run logs

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        """Write buffered events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the writer; a later scalar opens a new one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
