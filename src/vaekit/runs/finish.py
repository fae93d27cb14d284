"""The end of a run and its pictures: test metrics with the best weights, images, summary.json, the figures and
the report of a run folder (``vaekit.plots`` draws what it is handed; this module hands it the model and data)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vaekit.config import RunConfig, load_config
from vaekit.models.contract import CLASSIFIER
from vaekit.runs.build import Prepared
from vaekit.training.checkpoint import load_weights
from vaekit.utils import atomic_write_text

__all__ = ["write_images", "finish", "write_report_safely", "run_figures", "build_report"]

log = logging.getLogger("vaekit.run")


def write_images(model: nn.Module, x: torch.Tensor, run_dir: Path, n: int = 64, seed: int = 0) -> None:
    """samples.png (prior samples) and reconstructions.png (inputs in odd rows, reconstructions below them)."""
    from vaekit.plots import save_image_grid

    if len(model.data_shape) not in (2, 3):
        return  # tabular data: no images
    from vaekit.utils import evaluation_context

    def img(t: torch.Tensor) -> torch.Tensor:  # (T, D) sequences (piano rolls): one grey image per example
        return t.unsqueeze(1) if len(model.data_shape) == 2 else t

    with evaluation_context(model, seed):
        save_image_grid(img(model.sample(n)), run_dir / "samples.png", nrow=8)
        xs = x[torch.linspace(0, x.shape[0] - 1, min(32, x.shape[0])).round().long()]  # spread: files may be ordered by class
        rec = img(model.reconstruct(xs))
        xs = img(xs)
        rows = []
        for i in range(0, xs.shape[0], 8):
            rows += [xs[i:i + 8], rec[i:i + 8]]
        save_image_grid(torch.cat(rows), run_dir / "reconstructions.png", nrow=8)


def finish(run_dir: Path, cfg: RunConfig, p: Prepared, model: nn.Module, summary: dict[str, Any]) -> None:
    """With the best weights: images, test ELBO, what the model's capabilities add (a classifier's test error),
    the reconstruction probe, summary.json and the report (added to ``summary``)."""
    splits = p.splits
    best = run_dir / "best.safetensors"
    if best.exists():
        load_weights(model, best)
    test_x = p.splits.test.x.to(p.device)
    if p.transform is not None:
        test_x = p.transform(test_x, torch.Generator(device=test_x.device).manual_seed(cfg.seed + 4))
    from vaekit.evaluation import elbo_dataset

    model.eval()
    # the same seed as `vaekit evaluate`'s ELBO: the run's test ELBO is the number evaluate prints for it
    summary["test"] = elbo_dataset(model, test_x, batch_size=cfg.eval.batch_size, seed=cfg.seed)
    summary["test"]["seed"] = cfg.seed
    if CLASSIFIER in model.capabilities and splits.test.y is not None:  # a classifier q(y|x)
        from vaekit.evaluation.metrics import classification_error

        summary["test"]["error"] = classification_error(model, test_x, splits.test.y)
    if splits.train.y is not None and splits.test.y is not None and len(model.data_shape) == 3:
        from vaekit.evaluation.probe import reconstruction_knn_accuracy

        from vaekit.data.rows import Rows

        train_x = splits.train.x  # in-memory Rows: the probe's examples are converted as it indexes them
        if isinstance(train_x, Rows) and not train_x.nbytes:
            train_x = None  # read from files (where some may be unreadable): no probe
        elif p.transform is not None:  # the whole split transformed, as in training
            train_x = splits.train.values()
            train_x = p.transform(train_x, torch.Generator(device=train_x.device).manual_seed(cfg.seed + 4))
        if train_x is not None:
            summary["test"].update(reconstruction_knn_accuracy(model, train_x, splits.train.y, test_x,
                                                               splits.test.y, seed=cfg.seed))
    write_images(model, test_x, run_dir, seed=cfg.seed)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    summary["report"] = write_report_safely(run_dir, model, test_x, p.splits.test.y, cfg.seed)


def write_report_safely(run_dir: Path, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> str | None:
    """Figures and report.html at the end of training; a failure is logged, never loses the trained run."""
    try:
        return str(build_report(run_dir, model=model, x=x, y=y, seed=seed))
    except Exception as e:  # noqa: BLE001 - the run is saved; the report can be rebuilt with `vaekit report`
        log.warning("could not write the run report (%s: %s); try `vaekit report %s`", type(e).__name__, e, run_dir)
        return None


def run_figures(run_dir: str | Path, kinds: Sequence[str] = ("all",), out_dir: str | Path | None = None, *,
                model: nn.Module | None = None, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                checkpoint: str = "best", data_dir: str | None = None, device: str | None = None, **options: Any):
    """``vaekit.plots.make_figures`` for a run folder: the model (``checkpoint``) and its test data are loaded
    from the folder when the kinds need them and the caller did not hand them over."""
    from vaekit.plots.run_figures import KINDS, NEEDS_DATA, NEEDS_MODEL, make_figures

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} not found")
    todo = set(KINDS) if "all" in kinds else set(kinds)
    cfg = None
    if model is None and NEEDS_MODEL & todo:
        from vaekit.runs.load import load_run

        cfg, model, _ = load_run(run_dir, checkpoint, device)
    if x is None and NEEDS_DATA & todo:
        cfg = cfg if cfg is not None else load_config(run_dir / "config.yaml")
        from vaekit.runs.load import load_test_data

        x, y = load_test_data(cfg, data_dir)
    snapshots = None
    if "latent-gif" in todo:
        from vaekit.training.callbacks import SNAPSHOT_FILE, load_snapshots

        try:
            snapshots = load_snapshots(run_dir / SNAPSHOT_FILE)
        except FileNotFoundError:
            if "all" not in kinds:
                raise
    return make_figures(run_dir, kinds, out_dir, model=model, x=x, y=y, snapshots=snapshots, **options)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, model: nn.Module | None = None,
                 x: torch.Tensor | None = None, y: torch.Tensor | None = None, seed: int = 0,
                 checkpoint: str = "best", data_dir: str | None = None, device: str | None = None) -> Path:
    """Draw every figure into ``run_dir/figures`` and write the report (default ``run_dir/report.html``)."""
    from vaekit.plots.report import check_report_path, write_report

    if out is not None:
        check_report_path(out)
    figures, skipped = run_figures(run_dir, ("all",), model=model, x=x, y=y, seed=seed, checkpoint=checkpoint,
                                   data_dir=data_dir, device=device)
    return write_report(run_dir, figures, skipped, out)
