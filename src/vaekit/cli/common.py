"""Arguments several CLI commands share."""

from __future__ import annotations

import argparse

__all__ = ["add_device_argument", "load_eval_data"]


def add_device_argument(p: argparse.ArgumentParser, default: str | None = "cpu", help: str | None = None) -> None:
    """``--device cpu|cuda|cuda:N|mps|auto`` for a command that runs a model (a missing device: exit 2)."""
    p.add_argument("--device", default=default, help=help or "where the model runs: cpu, cuda, cuda:N, mps or auto")


def load_eval_data(cfg, split: str, overrides: list[str], data_dir: str | None):
    """(x of ``split``, the splits) of a run's config with data.* ``overrides``, under the run's fixed binarisation or
    dequantisation of evaluation data."""
    from vaekit.config import apply_overrides
    from vaekit.runs import prepare

    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ValueError(f"only data.* overrides are allowed here, got {bad[0]!r}")
    cfg = apply_overrides(cfg, overrides)
    if data_dir:
        cfg.data.dir = data_dir
    p = prepare(cfg, build=False)
    part = getattr(p.splits, split)
    x = part.x
    if p.transform is not None:  # a fixed binarisation/dequantisation of the evaluation data
        import torch

        x = p.transform(x, torch.Generator(device=x.device).manual_seed(cfg.seed + 4))
    return x, p.splits
