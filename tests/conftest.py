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


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for the tests that take the `device` fixture "
                     "(cpu, cuda, cuda:N, mps); CPU is the default")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device given with ``pytest --device``; the tests that take it run their models there."""
    name = request.config.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: no CUDA device here")
    return dev
