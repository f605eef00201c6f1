"""runners.keep_freed_cpu_memory: what it changes in the process (page faults on reused large blocks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates a 64 MB tensor and frees it (twice), then counts the page faults of doing that again five times.
_PROBE = """
import resource, sys, torch
from functional_metarl.runners import keep_freed_cpu_memory
applied = keep_freed_cpu_memory() if sys.argv[1] == "keep" else None
for _ in range(2):  # the heap grows to hold the block (faulting it in) before it is reused
    x = torch.ones(16 * 2**20); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    x = torch.ones(16 * 2**20); del x
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _faults_per_allocation(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_keep_freed_cpu_memory_stops_page_faults_on_reused_blocks():
    """Without it, every 64 MB tensor is a fresh mmap: one fault per 4 KB page (16,384). With it,
    the freed block is reused from the heap and faults (almost) never."""
    applied, kept = _faults_per_allocation("keep")
    _, default = _faults_per_allocation("default")
    assert applied == "True"
    assert default > 8_000
    assert kept < 100
