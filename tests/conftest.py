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


M2_RUN = ["model.family=m2", "model.objective=m2", "data.labels=100", "model.warmup_steps=0", "model.free_bits=0",
          "model.hidden=[64]", "model.latent_dim=4", "train.steps=200", "train.val_every=100", "train.threads=1",
          "eval.batch_size=500"]


@pytest.fixture(scope="session")
def m2_run(tmp_path_factory):
    """(run folder, summary) of one tiny semi-supervised M2 run on digits (200 steps, 100 labels, hidden [64]),
    trained once per test session for the M2 figure, report, classify and evaluate tests."""
    from vaekit.config import apply_overrides
    from vaekit.registry import load_preset
    from vaekit.runs import train_run

    run_dir = tmp_path_factory.mktemp("m2") / "run"
    cfg = apply_overrides(load_preset("digits-quick"), M2_RUN)
    cfg.train.progress = False
    return run_dir, train_run(cfg, run_dir)
