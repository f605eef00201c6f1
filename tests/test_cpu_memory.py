"""runners.keep_freed_cpu_memory: what it changes in the process (page faults on reused large blocks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates a 64 MB tensor and frees it (twice), then prints the page faults of each of eight
# further allocations of the same size.
_PROBE = """
import resource, sys, torch
from functional_metarl.runners import keep_freed_cpu_memory
applied = keep_freed_cpu_memory() if sys.argv[1] == "keep" else None
for _ in range(2):  # the heap grows to hold the block (faulting it in) before it is reused
    x = torch.ones(16 * 2**20); del x
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20); del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sorted(faults)[4])
"""


def _faults_per_allocation(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_keep_freed_cpu_memory_stops_page_faults_on_reused_blocks():
    """Without it, every 64 MB tensor is a fresh mmap: one fault per 4 KB page (16,384). With it,
    the freed block is reused from the heap: the median allocation faults (almost) never. (The
    median, because the heap may still grow once more under other allocations.)"""
    applied, kept = _faults_per_allocation("keep")
    _, default = _faults_per_allocation("default")
    assert applied == "True"
    assert default > 8_000
    assert kept < 100
