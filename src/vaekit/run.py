"""Run orchestration: data + model + objective built from a RunConfig, trained into a run folder, loaded back,
and its figures and report drawn. Sits above training/, evaluation/ and plots/; none of them imports it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from vaekit.config import ConfigError, RunConfig, config_from_dict, config_to_dict, dump_config, load_config
from vaekit.registry import build_model, build_objective
from vaekit.training.checkpoint import CheckpointError, load_checkpoint
from vaekit.training.trainer import Trainer
from vaekit.utils import atomic_write_text

__all__ = ["Prepared", "prepare", "train_run", "load_run", "resolve_device", "write_images", "load_test_data",
           "run_figures", "build_report"]

log = logging.getLogger("vaekit.run")


@dataclass
class Prepared:
    cfg: RunConfig
    splits: Any                      # vaekit.data.DataSplits
    model: nn.Module
    transform: Callable | None
    device: torch.device


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown train.device {name!r}; use cpu, cuda or auto") from None


def prepare(cfg: RunConfig, *, build: bool = True) -> Prepared:
    """Load the data the config names and build its model (seeded) and batch transform."""
    from vaekit.data import load_data, make_batch_transform

    d = cfg.data
    splits = load_data(
        d.name, data_dir=d.dir, path=d.path, val_fraction=d.val_fraction, seed=cfg.seed, binarize=d.binarize,
        image_size=tuple(d.image_size) if d.image_size else None, grayscale=d.grayscale,
        options=d.dataset_options,
    )
    if d.classes is not None:
        splits = splits.select_classes(d.classes)
    if d.merge_val:
        splits = splits.merge_val()
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, splits.shape).to(device) if build else None
    transform = make_batch_transform(d.binarize, d.dequantize, splits.n_levels)
    return Prepared(cfg, splits, model, transform, device)


def write_images(model: nn.Module, x: torch.Tensor, run_dir: Path, n: int = 64, seed: int = 0) -> None:
    """samples.png (prior samples) and reconstructions.png (inputs in odd rows, reconstructions below them)."""
    from vaekit.plots import save_image_grid

    if len(model.data_shape) != 3:
        return  # tabular data: no images
    from vaekit.utils import evaluation_context

    with evaluation_context(model, seed):
        save_image_grid(model.sample(n), run_dir / "samples.png", nrow=8)
        xs = x[torch.linspace(0, x.shape[0] - 1, min(32, x.shape[0])).round().long()]  # spread: files may be ordered by class
        rec = model.reconstruct(xs)
        rows = []
        for i in range(0, xs.shape[0], 8):
            rows += [xs[i:i + 8], rec[i:i + 8]]
        save_image_grid(torch.cat(rows), run_dir / "reconstructions.png", nrow=8)


def train_run(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
              callbacks: list | None = None) -> dict[str, Any]:
    """Train the run a config describes into ``run_dir`` (or resume it from its last checkpoint)."""
    run_dir = Path(run_dir)
    p = prepare(cfg)
    splits, model = p.splits, p.model
    train_x = splits.train.x.to(p.device)
    model.check_input(train_x)  # shape, NaN/inf and likelihood support, once for the whole split
    val_x = splits.val.x.to(p.device) if splits.val is not None else None
    doc = {"config": config_to_dict(cfg),
           "data": {"name": splits.name, "shape": list(splits.shape), "n_levels": splits.n_levels,
                    "source": splits.source, "n_train": int(train_x.shape[0])}}
    from vaekit.training.callbacks import run_callbacks

    watched = splits.val if val_x is not None and val_x.shape[0] > 0 else splits.train  # snapshot points
    callbacks = list(callbacks or []) + run_callbacks(cfg.train, run_dir, labels=watched.y, config=doc["config"])
    objective = build_objective(cfg.model, n_train=len(train_x))
    trainer = Trainer(model, objective, train_x, val_x, settings=cfg.train, run_dir=run_dir,
                      seed=cfg.seed, transform=p.transform, doc=doc, callbacks=callbacks)
    if resume:
        trainer.restore(run_dir / "last.safetensors")
        log.info("resumed %s at step %d", run_dir, trainer.state.step)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    summary = trainer.fit()
    # finish with the best weights: images, test ELBO, summary.json
    best = run_dir / "best.safetensors"
    if best.exists():
        tensors, _ = load_checkpoint(best)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    test_x = splits.test.x.to(p.device)
    if p.transform is not None:
        test_x = p.transform(test_x, torch.Generator(device=test_x.device).manual_seed(cfg.seed + 4))
    from vaekit.evaluation import elbo_dataset

    model.eval()
    summary["test"] = elbo_dataset(model, test_x, batch_size=cfg.eval.batch_size, seed=cfg.seed + 5)
    write_images(model, test_x, run_dir, seed=cfg.seed)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    summary["report"] = _write_report(run_dir, model, test_x, splits.test.y, cfg.seed)
    return summary


def _write_report(run_dir: Path, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> str | None:
    """Figures and report.html at the end of training; a failure is logged, never loses the trained run."""
    try:
        return str(build_report(run_dir, model=model, x=x, y=y, seed=seed))
    except Exception as e:  # noqa: BLE001 - the run is saved; the report can be rebuilt with `vaekit report`
        log.warning("could not write the run report (%s: %s); try `vaekit report %s`", type(e).__name__, e, run_dir)
        return None


def load_test_data(cfg: RunConfig, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y) of a run's test split, x given the evaluation's fixed binarisation/dequantisation (seed + 4)."""
    if data_dir:
        cfg.data.dir = data_dir
    p = prepare(cfg, build=False)
    x = p.splits.test.x
    if p.transform is not None:
        x = p.transform(x, torch.Generator(device=x.device).manual_seed(cfg.seed + 4))
    return x, p.splits.test.y


def run_figures(run_dir: str | Path, kinds: Sequence[str] = ("all",), out_dir: str | Path | None = None, *,
                model: nn.Module | None = None, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                checkpoint: str = "best", data_dir: str | None = None, **options: Any):
    """``vaekit.plots.make_figures`` for a run folder: the model (``checkpoint``) and its test data are loaded
    from the folder when the kinds need them and the caller did not hand them over."""
    from vaekit.plots.run_figures import KINDS, NEEDS_DATA, NEEDS_MODEL, make_figures

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} not found")
    todo = set(KINDS) if "all" in kinds else set(kinds)
    cfg = None
    if model is None and NEEDS_MODEL & todo:
        cfg, model, _ = load_run(run_dir, checkpoint)
    if x is None and NEEDS_DATA & todo:
        cfg = cfg if cfg is not None else load_config(run_dir / "config.yaml")
        x, y = load_test_data(cfg, data_dir)
    return make_figures(run_dir, kinds, out_dir, model=model, x=x, y=y, **options)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, model: nn.Module | None = None,
                 x: torch.Tensor | None = None, y: torch.Tensor | None = None, seed: int = 0,
                 checkpoint: str = "best", data_dir: str | None = None) -> Path:
    """Draw every figure into ``run_dir/figures`` and write the report (default ``run_dir/report.html``)."""
    from vaekit.plots.report import check_report_path, write_report

    if out is not None:
        check_report_path(out)
    figures, skipped = run_figures(run_dir, ("all",), model=model, x=x, y=y, seed=seed, checkpoint=checkpoint,
                                   data_dir=data_dir)
    return write_report(run_dir, figures, skipped, out)


def load_run(run_dir: str | Path, which: str = "best") -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """(config, model with the chosen checkpoint's weights, checkpoint document) of a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} not found")
    ckpt = run_dir / f"{which}.safetensors"
    if which == "best" and not ckpt.exists():
        ckpt = run_dir / "last.safetensors"
    tensors, doc = load_checkpoint(ckpt)
    cfg_path = run_dir / "config.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else config_from_dict(doc.get("config", {}))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, doc["data"]["shape"])
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} does not match the run's model config ({str(e).splitlines()[0]})") from None
    model.eval()
    return cfg, model, doc
