"""Fixtures for the `vaekit serve` tests: small trained digits runs (a VAE and a Ladder VAE) written as run folders
in a few seconds (an in-process Adam loop on the ELBO, no report), and Explorers / test clients over them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit.config import apply_overrides, dump_config
from vaekit.registry import build_model, load_preset

VAE = ["model.hidden=[32]", "model.latent_dim=3"]
LADDER = ["model.family=ladder", "model.latent_dim=10", "model.latent_dims=[3,2]", "model.hidden=[32,16]"]


def make_run(run_dir: Path, overrides: list[str], steps: int = 150) -> Path:
    """A run folder (config.yaml + best.safetensors) of a digits model trained ``steps`` Adam steps."""
    from vaekit.runs import prepare
    from vaekit.training.checkpoint import save_checkpoint

    cfg = apply_overrides(load_preset("digits-quick"), overrides)
    x = prepare(cfg, build=False).splits.train.x
    torch.manual_seed(0)
    model = build_model(cfg.model, tuple(x.shape[1:]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small is fastest on one thread, above all on shared cores
    try:
        _train(model, x, opt, g, steps)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(run_dir / "best.safetensors", tensors, {"data": {"shape": list(x.shape[1:])}, "step": steps})
    return run_dir


def _train(model, x, opt, g, steps: int) -> None:
    from vaekit.objectives.bounds import elbo_terms

    for _ in range(steps):
        batch = x[torch.randint(len(x), (64,), generator=g)]
        loss = -elbo_terms(model, batch, check=False).elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("serve") / "vae", VAE)


@pytest.fixture(scope="session")
def ladder_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("serve") / "ladder", LADDER, steps=100)


@pytest.fixture(scope="session")
def vae_explorer(vae_run):
    from vaekit.cli.serve import build_explorer

    return build_explorer(str(vae_run), max_points=400)


@pytest.fixture(scope="session")
def ladder_explorer(ladder_run):
    from vaekit.cli.serve import build_explorer

    return build_explorer(str(ladder_run), max_points=200)


@pytest.fixture(scope="session")
def client(vae_explorer):
    """A TestClient over the VAE run's app (Host checks allow the test client's name)."""
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")
    from fastapi.testclient import TestClient

    from vaekit.serve.app import create_app

    return TestClient(create_app(vae_explorer, allowed_hosts=["testserver", "127.0.0.1", "localhost"]))


@pytest.fixture(scope="session")
def ladder_client(ladder_explorer):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from vaekit.serve.app import create_app

    return TestClient(create_app(ladder_explorer, allowed_hosts=["testserver"]))
