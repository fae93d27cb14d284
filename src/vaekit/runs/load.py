"""A trained run folder loaded back: its config, its model with a checkpoint's weights on the device a command
asks for (whatever ``train.device`` the run was trained with), and its test data as evaluation sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.config import RunConfig, config_from_dict, load_config
from vaekit.registry import build_model
from vaekit.runs.build import load_splits
from vaekit.runs.devices import resolve_device
from vaekit.training.checkpoint import CheckpointError, check_saved_model, load_checkpoint, load_weights

__all__ = ["load_run", "load_test_data", "checkpoint_path", "init_from_run"]


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """``run_dir/<which>.safetensors``; 'best' falls back to 'last' (a run without validation)."""
    ckpt = run_dir / f"{which}.safetensors"
    if which == "best" and not ckpt.exists():
        ckpt = run_dir / "last.safetensors"
    return ckpt


def load_run(run_dir: str | Path, which: str = "best",
             device: str | torch.device | None = None) -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """(config, model with the chosen checkpoint's weights, checkpoint document) of a run folder; the model on
    ``device`` (cpu, cuda, cuda:N, mps, auto; default cpu), in eval mode. The run's ``train.device`` plays no
    part: a run trained on a GPU loads on a machine without one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} not found")
    ckpt = checkpoint_path(run_dir, which)
    _, doc = load_checkpoint(ckpt)
    check_saved_model(doc, ckpt)  # the header's sizes bounded before anything is built from it
    cfg_path = run_dir / "config.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else config_from_dict(doc.get("config", {}))
    shape = doc.get("data", {}).get("shape") if isinstance(doc.get("data"), dict) else None
    if not isinstance(shape, list) or not shape:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} records no data shape in its JSON document; it was not "
                              f"written by vaekit's trainer")
    with torch.random.fork_rng(devices=[]):  # building initialises weights: the caller's RNG is left alone
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, shape)
    load_weights(model, ckpt, f"checkpoint {str(ckpt)!r}")
    model.eval()
    if device is not None:
        model.to(resolve_device(str(device), "--device"))
    return cfg, model, doc


def load_test_data(cfg: RunConfig, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y) of a run's test split, x given the evaluation's fixed binarisation/dequantisation (seed + 4)."""
    if data_dir:
        cfg.data.dir = data_dir
    splits, transform = load_splits(cfg)
    x = splits.test.x
    if transform is not None:
        x = transform(x, torch.Generator(device=x.device).manual_seed(cfg.seed + 4))
    return x, splits.test.y


def init_from_run(model: nn.Module, run_dir: str | Path) -> dict[str, Any]:
    """Load the best checkpoint's weights of the run folder ``run_dir`` into ``model`` (``train.init_from``: a run
    continued with another objective or schedule, e.g. a VAE trained further on the IWAE bound as in Burda et al.
    2016, Sec. 5.2); returns the checkpoint's document. CheckpointError (one line) for a missing run or a model of
    another shape."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"train.init_from: run folder {str(run_dir)!r} not found")
    ckpt = checkpoint_path(run_dir)
    if not ckpt.is_file():
        raise CheckpointError(f"train.init_from: {str(run_dir)!r} has no checkpoint (best.safetensors or "
                              f"last.safetensors); train it first")
    return load_weights(model, ckpt, f"train.init_from: the weights of {str(ckpt)!r}")
