"""Process-wide CPU memory settings for training runs.

A MAML-TRPO meta-iteration allocates and frees activations of 10 MB (meta-batch 20) to 80 MB
(meta-batch 160) dozens of times. glibc's ``malloc`` serves blocks that large with a fresh
``mmap`` and gives them back with ``munmap`` on free, so every one of those tensors is paid for
again in page faults: the kernel maps and zeroes it page by page on first touch. That cost grows
faster than the work (``benchmarks/maml_nav_iteration.py --meta-batch-sizes``: 13.6x the
meta-batch-20 time at meta-batch 160 for 5.4x the FLOPs). :func:`keep_freed_cpu_memory` tells
malloc to serve every block from its heap and to keep what is freed for the next allocation.

This is a setting of the whole process, so nothing in the library changes it on import; the
examples and benchmarks call it at start-up, and a script of yours may do the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_cpu_memory"]

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Freed memory at the top of the heap is returned to the OS only beyond this (the largest value
# mallopt takes, an int): a run's working set stays mapped between iterations.
_TRIM_THRESHOLD_BYTES = 2**31 - 1


def keep_freed_cpu_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of unmapping it (no ``mmap`` for
    large blocks, ``M_TRIM_THRESHOLD`` at its maximum). Returns True when applied, False where
    the C library is not glibc (macOS, Windows, musl): nothing is changed there.

    The process's resident memory then stays at its peak instead of shrinking between
    iterations; the peak itself does not grow.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
