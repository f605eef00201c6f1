"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this
directory is on ``sys.path``)."""

from __future__ import annotations

import os
import sys


def configure_openmp(choice: str | None, default: str = "default") -> str:
    """Set ``OMP_WAIT_POLICY`` before torch (and its OpenMP runtime) is loaded; returns what was
    set, for the report. ``choice``: "passive", "active", "default" (unset) or None (keep the
    environment's value, else use ``default``)."""
    if "torch" in sys.modules:
        return os.environ.get("OMP_WAIT_POLICY", "unset") + " (torch already imported: not changed)"
    if choice is None:
        if "OMP_WAIT_POLICY" in os.environ:
            return os.environ["OMP_WAIT_POLICY"] + " (from the environment)"
        choice = default
    if choice == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
        return "unset (OpenMP default)"
    os.environ["OMP_WAIT_POLICY"] = choice.upper()
    return choice.upper()
