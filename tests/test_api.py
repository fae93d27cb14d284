"""The high-level Python API: fit on numpy arrays, save / load (file or run folder), numpy wherever a tensor is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit.config import ConfigError, ModelConfig
from vaekit.training.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"latent_dim": 2, "hidden": [16], "likelihood": "sigma-vae"}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    return (z @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(200, 6))).astype(np.float32)  # (200, 6)


@pytest.fixture(scope="module")
def fitted(x):
    return vaekit.fit(x, model=TINY, train={"steps": 40, "lr": 3e-3}, seed=1, progress=False)


def test_fit_on_a_numpy_array_trains_and_is_reproducible(x, fitted):
    assert fitted.latent_dim == 2 and tuple(fitted.data_shape) == (6,) and not fitted.training
    one, two = (vaekit.fit(x, model=TINY, train={"steps": 20}, seed=1, progress=False) for _ in range(2))
    xt = torch.from_numpy(x[:10])
    assert torch.equal(one.embed(xt), two.embed(xt))  # the same seed and thread count: the same weights
    untrained = vaekit.fit(x, model=TINY, train={"steps": 1}, seed=1, progress=False)
    e_fit = vaekit.evaluate(fitted, x, k=5, seed=0)["elbo"]
    assert e_fit > vaekit.evaluate(untrained, x, k=5, seed=0)["elbo"] + 1  # 40 steps of Adam help by nats


def test_fit_leaves_the_process_as_it_found_it(x):
    from vaekit.process_state import flush_denormal_enabled

    torch.set_flush_denormal(False)  # as a fresh process has it (a CLI test run in this process may have set it)
    torch.manual_seed(123)
    np.random.seed(7)
    threads, torch_rng, np_rng = torch.get_num_threads(), torch.get_rng_state(), np.random.get_state()[1].copy()
    vaekit.fit(x, model=TINY, train={"steps": 3, "threads": 2}, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), torch_rng) and np.array_equal(np.random.get_state()[1], np_rng)
    assert not flush_denormal_enabled()  # the trainer flushes subnormals while it runs, not after


def test_save_and_load_a_model_file(fitted, x, tmp_path):
    path = vaekit.save(fitted, tmp_path / "m.safetensors")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["format"] == "vaekit.model" and doc["format_version"] == 1 and doc["data"]["shape"] == [6]
    assert doc["model"]["likelihood"] == "sigma-vae" and "torch" in doc["versions"]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # the same document in the file's header
        assert json.loads(f.metadata()["vaekit"])["format_version"] == 1
    loaded = vaekit.load(path)
    xt = torch.from_numpy(x[:20])
    assert torch.equal(loaded.embed(xt), fitted.embed(xt)) and not loaded.training
    assert vaekit.save(loaded, tmp_path / "again.safetensors").is_file()  # a loaded model saves again


def test_load_refuses_newer_formats_and_foreign_files(fitted, tmp_path):
    from safetensors.torch import save_file

    from vaekit.training.checkpoint import load_checkpoint, save_checkpoint

    tensors, doc = load_checkpoint(vaekit.save(fitted, tmp_path / "m.safetensors"))
    save_checkpoint(tmp_path / "new.safetensors", tensors, {**doc, "format_version": 99})
    with pytest.raises(CheckpointError, match="format version 99; this vaekit reads up to 1"):
        vaekit.load(tmp_path / "new.safetensors")
    save_checkpoint(tmp_path / "other.safetensors", tensors, {"hello": 1})
    with pytest.raises(CheckpointError, match="not a vaekit model"):
        vaekit.load(tmp_path / "other.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))  # another program's file: named as such
    with pytest.raises(CheckpointError, match="bare.safetensors' is a safetensors file but not a vaekit model"):
        vaekit.load(tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        vaekit.load(tmp_path / "missing.safetensors")


def test_fit_into_a_run_folder_and_load_it_back(x, tmp_path):
    run = tmp_path / "run"
    model = vaekit.fit(x, val=x[:50], model=TINY, train={"steps": 10, "val_every": 5}, run_dir=run, progress=False)
    assert {"config.yaml", "metrics.jsonl", "best.safetensors", "last.safetensors"} <= {p.name for p in run.iterdir()}
    xt = torch.from_numpy(x[:5])
    for source in (run, run / "best.safetensors"):  # the folder, or one of its checkpoints
        assert torch.equal(vaekit.load(source).embed(xt), model.embed(xt))


def test_a_hand_built_model_saves_with_its_config(tmp_path):
    from vaekit.registry import build_model

    cfg = ModelConfig(latent_dim=3, hidden=[8], likelihood="gaussian")
    model = build_model(cfg, (5,))
    with pytest.raises(ValueError, match="pass model_config=ModelConfig"):
        vaekit.save(model, tmp_path / "m.safetensors")
    vaekit.save(model, tmp_path / "m.safetensors", model_config=cfg)
    assert vaekit.load(tmp_path / "m.safetensors").latent_dim == 3


def test_numpy_is_accepted_wherever_a_tensor_is(fitted, x):
    from vaekit.apps import embed

    a = vaekit.estimate_log_likelihood(fitted, x[:8], k=10, seed=3)
    b = vaekit.estimate_log_likelihood(fitted, torch.from_numpy(x[:8]), k=10, seed=3)
    assert a.mean == b.mean
    assert torch.equal(embed(fitted, x[:8].astype(np.float64)), embed(fitted, torch.from_numpy(x[:8])))
    with pytest.raises(ValueError, match="expected numbers"):
        vaekit.estimate_log_likelihood(fitted, np.array([["a"] * 6]), k=2)


def test_bad_arguments_are_clear(x):
    with pytest.raises(ConfigError, match="unknown keyword 'modle'"):
        vaekit.fit(x, modle={"latent_dim": 2})
    with pytest.raises(ConfigError, match="unknown config key 'model.latnet_dim'"):
        vaekit.fit(x, model={"latnet_dim": 2})
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        vaekit.fit(bad, model=TINY)


def test_import_vaekit_stays_light():
    code = "import sys, vaekit; print('torch' in sys.modules, callable(vaekit.fit), 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "True", "True"]


def test_the_worked_example_runs(tmp_path, capsys, monkeypatch):
    """examples/fit_save_load.py run as a script (``__main__``, its own argv), in this process: the same code a
    user runs, without a second interpreter importing torch and scikit-learn again."""
    import runpy

    from vaekit.process_state import preserve_process_state

    out = tmp_path / "digits.safetensors"
    script = ROOT / "examples" / "fit_save_load.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--steps", "60", "--out", str(out)])
    monkeypatch.chdir(tmp_path)
    with preserve_process_state():
        runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "test log p(x) =" in printed and "5-NN on the latent means" in printed and out.is_file()


def test_fit_takes_a_dataframe_and_returns_its_history(x):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(x, columns=["a", "b", "x", "c", "d", "e"])  # a column named x is just a column
    kw = dict(model=TINY, train={"steps": 10, "val_every": 5}, seed=2, progress=False)
    model = vaekit.fit(frame, val=frame.iloc[:50], **kw)
    same = vaekit.fit(x, val=x[:50], **kw)
    np.testing.assert_array_equal(model.embed(x[:8]), same.embed(x[:8]))
    assert [r["step"] for r in model.history_] == [5, 10]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_elbo"]) for r in model.history_)
    assert [r["loss"] for r in model.history_] == [r["loss"] for r in same.history_]  # time and speed vary
    with pytest.raises(ValueError, match="non-numeric columns \\(name\\)"):
        vaekit.fit(frame.assign(name="row"), **kw)


def test_fit_with_a_series_of_labels():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    data = (rng.random((60, 6)) < 0.5).astype(np.float32)
    y = pd.Series(np.where(np.arange(60) < 12, np.arange(60) % 3, -1), name="label")
    m = vaekit.fit(pd.DataFrame(data), y, model={"family": "m2", "objective": "m2", "n_classes": 3, "latent_dim": 2,
                                                  "hidden": [8]}, train={"steps": 4, "val_every": 2}, progress=False)
    assert m.predict(data[:5]).shape == (5,) and len(m.history_) == 2


def test_fit_is_quiet_unless_asked(x, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="vaekit")
    kw = dict(model=TINY, train={"steps": 4, "val_every": 2}, progress=False)
    vaekit.fit(x, **kw)
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]
    assert logging.getLogger("vaekit").level == logging.INFO  # as it was before the call
    vaekit.fit(x, verbose=True, **kw)
    assert [r.getMessage().split()[:2] for r in caplog.records if "loss" in r.getMessage()] == [["step", "2/4"],
                                                                                               ["step", "4/4"]]
