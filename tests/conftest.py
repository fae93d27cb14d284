"""Suite-wide fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread per test, restored afterwards: the tensors are tiny, a second OpenMP thread only adds
    contention on a shared 2-core machine, and a test that sets the thread count cannot leak it."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
