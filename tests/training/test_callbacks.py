"""Latent snapshots and the TensorBoard logger: what they record, that they leave training untouched."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from vaekit.config import ConfigError, TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.training import Trainer
from vaekit.training.callbacks import LatentSnapshots, TensorBoardLogger, load_snapshots


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=g) > 0.5).float()


def _fit(run_dir, callbacks, steps=20):
    torch.manual_seed(0)
    model = build_vae((1, 4, 4), hidden=(12,), latent_dim=3, posterior="iaf",
                      posterior_kwargs={"steps": 1, "hidden": [8]})  # its embedding draws samples: RNG must be forked
    x = _data()
    s = TrainConfig(steps=steps, batch_size=16, val_every=10, progress=False)
    t = Trainer(model, ELBO(), x[:60], x[60:], settings=s, run_dir=run_dir, seed=1, callbacks=callbacks)
    t.fit()
    return t


def test_snapshots_record_fixed_points_and_do_not_change_training(tmp_path):
    y = torch.arange(20) % 3
    plain = _fit(tmp_path / "a", [])
    snap = _fit(tmp_path / "b", [LatentSnapshots(tmp_path / "b", every=5, y=y, n=12)])
    for p, q in zip(plain.model.parameters(), snap.model.parameters()):
        assert torch.equal(p, q)  # same weights with and without the callback
    s = load_snapshots(tmp_path / "b" / "latent_snapshots.npz")
    assert s["step"].tolist() == [1, 5, 10, 15, 20]
    assert s["z"].shape == (5, 12, 3) and s["z"].dtype == np.float32
    assert s["y"].tolist() == (torch.arange(12) % 3).tolist()
    assert not np.allclose(s["z"][0], s["z"][-1])  # the encoder moved
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(snap.seed + 6)
        np.testing.assert_allclose(s["z"][-1], snap.model.eval().embed(snap.val_x[:12]).numpy(), atol=1e-6)


class _FakeTrainer:
    def __init__(self, run_dir, step):
        from types import SimpleNamespace

        self.state = SimpleNamespace(step=step, stopped="")
        self.total_steps, self.seed, self.run_dir = 100, 0, run_dir
        torch.manual_seed(0)
        self.model = build_vae((4,), hidden=(4,), latent_dim=2)
        self.val_x, self.train_x = torch.rand(6, 4), torch.rand(6, 4)


def test_a_resumed_run_keeps_the_snapshots_up_to_its_step(tmp_path):
    cb = LatentSnapshots(tmp_path, every=10)
    for step in (1, 10, 20, 30):
        cb.on_step(_FakeTrainer(tmp_path, step), {"step": step, "loss": 0.0})
    assert load_snapshots(tmp_path / "latent_snapshots.npz")["step"].tolist() == [1, 10, 20, 30]
    resumed = LatentSnapshots(tmp_path, every=10)  # a new process resumed at step 20
    for step in (20, 21, 30):
        resumed.on_step(_FakeTrainer(tmp_path, step), {"step": step, "loss": 0.0})
    s = load_snapshots(tmp_path / "latent_snapshots.npz")
    assert s["step"].tolist() == [1, 10, 20, 30] and "y" not in s
    with pytest.raises(ConfigError, match="positive number of steps"):
        LatentSnapshots(tmp_path, every=0)
    with pytest.raises(FileNotFoundError, match="train.snapshot_every"):
        load_snapshots(tmp_path / "none.npz")


class _FakeWriter:
    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.images, self.texts, self.closed = log_dir, [], [], [], 0

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def add_image(self, tag, img, step, dataformats):
        self.images.append((tag, img.shape, step, dataformats))

    def flush(self):
        pass

    def close(self):
        self.closed += 1


def test_tensorboard_logger_writes_validation_scalars_and_image_grids(tmp_path):
    writers = []
    tb = TensorBoardLogger(tmp_path, writer_factory=lambda d: writers.append(_FakeWriter(d)) or writers[-1])
    t = _fit(tmp_path, [tb])
    w = writers[0]
    assert w.log_dir == str(tmp_path / "tensorboard")
    assert [s for tag, _, s in w.scalars if tag == "train/step_loss"] == list(range(1, 21))
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [(s, v) for tag, v, s in w.scalars if tag == "val/elbo"]
    assert val == [(r["step"], pytest.approx(r["val_elbo"])) for r in recs] and len(val) == 2
    assert {tag for tag, *_ in w.images} == {"images/samples", "images/reconstructions"}
    assert [s for tag, _, s, _ in w.images if tag == "images/samples"] == [10, 20]
    assert w.closed == 1 and t.state.step == 20


def test_tensorboard_missing_gives_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'vaekit\[tensorboard\]'"):
        TensorBoardLogger(tmp_path)


def test_tensorboard_logs_the_kl_of_each_latent_dimension_and_the_config(tmp_path):
    writers = []
    tb = TensorBoardLogger(tmp_path, writer_factory=lambda d: writers.append(_FakeWriter(d)) or writers[-1],
                           images=False, config={"model": {"latent_dim": 3, "beta": 1.0}, "seed": 1})
    _fit(tmp_path, [tb])
    w = writers[0]
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for d in range(3):  # one series per latent dimension, the numbers of metrics.jsonl
        got = [(s, v) for tag, v, s in w.scalars if tag == f"val/kl_dim/{d}"]
        assert got == [(r["step"], pytest.approx(r["val_kl_dims"][d])) for r in recs]
    assert [t for t, *_ in w.texts] == ["config"] and "latent_dim: 3" in w.texts[0][1]
