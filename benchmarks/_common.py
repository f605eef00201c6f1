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


def parse_and_load_checkpoint(parser):
    """For the scripts that diagnose a ``MAMLTrainer`` checkpoint: add the arguments they share
    (``checkpoint``, ``--tasks``, ``--threads``), parse, set torch's thread count and restore the
    run on the CPU. Returns ``(args, trainer)``. (torch is imported here, not at module level, so
    that ``configure_openmp`` can still run before it.)"""
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", type=int, default=40, help="goals to evaluate on")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from functional_metarl.runners import MAMLTrainer

    torch.set_num_threads(args.threads)
    return args, MAMLTrainer.from_checkpoint(args.checkpoint)


def add_malloc_flag(parser, keep_help: str) -> None:
    """``--malloc keep|default``: whether the benchmark first calls
    ``runners.keep_freed_cpu_memory()`` (``keep``, what the examples do) or leaves glibc's own
    settings; read back with :func:`apply_malloc`."""
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help=f"keep: runners.keep_freed_cpu_memory() first{keep_help}; default: glibc's own settings")


def apply_malloc(choice: str) -> None:
    """Apply ``--malloc`` (see :func:`add_malloc_flag`) and say so when it cannot be applied."""
    from functional_metarl.runners import keep_freed_cpu_memory

    if choice == "keep" and not keep_freed_cpu_memory():
        print("keep_freed_cpu_memory: not glibc, malloc left as it is")
