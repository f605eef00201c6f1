"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The suite's tensors are small: one intra-op thread avoids OpenMP oversubscription, which
    # on a shared 2-core machine made training steps 20-50x slower than single-threaded.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
