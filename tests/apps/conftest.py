"""Shared fixtures for the apps tests: one CPU thread, the pPCA VAE of tests/evaluation, a tiny digits VAE."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))  # ppca_vae.py


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: a second thread only adds contention on the shared 2-core machine
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def ppca():
    from ppca_vae import PPCA

    return PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=0)


@pytest.fixture(scope="session")
def digits_x() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    return torch.tensor(x[:300] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # (300, 1, 8, 8) in [0, 1]


@pytest.fixture
def tiny_vae():
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=3, hidden=[16]), (1, 8, 8)).eval()
