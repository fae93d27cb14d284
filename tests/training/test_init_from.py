"""``train.init_from``: a new run starts from another run's best weights (Burda et al. 2016, Sec. 5.2: a VAE
trained further on the IWAE bound), with its own objective, optimiser and schedule."""

from __future__ import annotations

import yaml
import torch

from vaekit.cli import main
from vaekit.training.checkpoint import load_checkpoint

QUICK = ["train.val_every=10", "model.hidden=[32]", "model.latent_dim=3", "eval.iw_samples=5"]


def _weights(run_dir, which="best"):
    tensors, _ = load_checkpoint(run_dir / f"{which}.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_a_run_starts_from_another_runs_best_weights(tmp_path, capsys):
    a, b = tmp_path / "vae", tmp_path / "iwae"
    assert main(["train", "--quiet", "--out", str(a), "train.steps=30", *QUICK]) == 0
    # one step at a learning rate of 1e-9 moves no weight by more than ~1e-9 (Adam's first step is lr * sign)
    assert main(["train", "--quiet", "--out", str(b), "train.steps=1", "train.lr=1e-9", "train.val_every=1",
                 "model.objective=iwae", "model.objective_options={k: 4}", "model.warmup_steps=0", "model.free_bits=0", f"train.init_from={a}",
                 *QUICK[1:]]) == 0
    wa, wb = _weights(a), _weights(b, "last")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-6, rtol=0, msg=k)
    fresh = tmp_path / "fresh"  # the same command without init_from starts elsewhere: the check above can fail
    assert main(["train", "--quiet", "--out", str(fresh), "train.steps=1", "train.lr=1e-9", "train.val_every=1",
                 *QUICK[1:]]) == 0
    assert any((_weights(fresh, "last")[k] - wa[k]).abs().max() > 1e-3 for k in wa)
    cfg = yaml.safe_load((b / "config.yaml").read_text())
    assert cfg["train"]["init_from"] == str(a.resolve())  # absolute: the run reads the same from anywhere


def test_init_from_a_missing_or_mismatched_run_is_one_line_and_writes_nothing(tmp_path, capsys):
    a = tmp_path / "vae"
    assert main(["train", "--quiet", "--out", str(a), "train.steps=10", *QUICK]) == 0
    capsys.readouterr()
    out = tmp_path / "b"
    assert main(["train", "--quiet", "--out", str(out), "train.steps=1", "model.latent_dim=4",
                 f"train.init_from={a}", "model.hidden=[32]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaekit train: error: train.init_from") and "does not match the model config" in err[-1]
    assert not out.exists() or not any(out.iterdir())
    assert main(["train", "--quiet", "--out", str(out), "train.steps=1", f"train.init_from={tmp_path / 'nope'}",
                 *QUICK]) == 2
    assert "not found" in capsys.readouterr().err
