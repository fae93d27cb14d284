"""Trainer callbacks for seeing a model while it trains: posterior-mean snapshots, TensorBoard logging, and the
experiment trackers of ``vaekit.training.trackers`` (MLflow, Weights & Biases), chosen by ``train.loggers``.

They are ``vaekit.training.events.Callback`` objects: loggers get each metrics record in memory
(``on_validation``), never by reading metrics.jsonl back. Every draw they make runs under a forked RNG, and
the model's train/eval mode is restored.
"""

from __future__ import annotations

import difflib
import io
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vaekit.config import ConfigError
from vaekit.training.events import SCALARS, Callback, is_final_step, metric_scalars
from vaekit.training.trackers import MLflowLogger, WandbLogger
from vaekit.utils import eval_mode

__all__ = ["LatentSnapshots", "TensorBoardLogger", "load_snapshots", "run_callbacks", "LOGGERS", "metric_scalars"]

log = logging.getLogger("vaekit.train")

SNAPSHOT_FILE = "latent_snapshots.npz"


@torch.no_grad()
def _embed(model: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Posterior means (N, D) in eval mode under a forked, seeded RNG (an IAF embedding averages samples)."""
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.cat([model.embed(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])


def load_snapshots(path: str | Path) -> dict[str, np.ndarray]:
    """{"step": (T,) int64, "z": (T, N, D) float32, "y": (N,) int64 (absent without labels)} from a snapshot file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latent snapshots at {str(path)!r}; train with train.snapshot_every=N to record them")
    from vaekit.data.readers import read_npz

    return read_npz(path)


class LatentSnapshots(Callback):
    """Every ``every`` steps (and at the first and last step), store the posterior means E_q[z|x] of a fixed
    subset of points into ``run_dir/latent_snapshots.npz`` (written atomically), for the animated latent map.

    x: the fixed subset (N, *data_shape), or None to take the first ``n`` validation points the trainer holds
    (already given their fixed binarisation); y: their labels (N,) or None. A resumed run keeps the snapshots up to
    its restored step. Cost: one encoder pass over N points per snapshot plus rewriting T*N*D float32 numbers.
    """

    def __init__(self, run_dir: str | Path, every: int, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, n: int = 1000) -> None:
        if every < 1:
            raise ConfigError(f"train.snapshot_every must be a positive number of steps, got {every}")
        self.path = Path(run_dir) / SNAPSHOT_FILE
        self.every, self.n = int(every), int(n)
        self.x = x[:n] if x is not None else None
        self.y = y[:n].cpu().numpy().astype(np.int64) if y is not None else None
        self.steps: list[int] | None = None
        self.z: list[np.ndarray] = []

    def _start(self, trainer: Any) -> None:
        if self.x is None:
            src = trainer.val_x if trainer.val_x is not None and trainer.val_x.shape[0] > 0 else trainer.train_x
            self.x = src[: self.n]
        if self.y is not None and self.y.shape[0] != self.x.shape[0]:
            self.y = self.y[: self.x.shape[0]]
        self.steps, self.z = [], []
        if self.path.is_file():  # a resumed run: keep what was recorded up to the restored step
            old = load_snapshots(self.path)
            keep = old["step"] <= trainer.state.step
            self.steps = [int(s) for s in old["step"][keep]]
            self.z = list(old["z"][keep])

    def on_step(self, trainer: Any, record: dict[str, Any]) -> None:
        step = trainer.state.step
        first = self.steps is None
        if first:
            self._start(trainer)
        take = (first and not self.steps) or step % self.every == 0 or is_final_step(trainer)
        if not take or (self.steps and self.steps[-1] == step):
            return
        z = _embed(trainer.model, self.x, trainer.seed + 6).float().cpu().numpy()  # (N, D)
        self.steps.append(step)
        self.z.append(z)
        self._write()

    def _write(self) -> None:
        from vaekit.utils import atomic_write_bytes

        arrays = {"step": np.asarray(self.steps, dtype=np.int64), "z": np.stack(self.z).astype(np.float32)}
        if self.y is not None:
            arrays["y"] = self.y
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path, buf.getvalue())


def _default_writer(log_dir: str) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install 'vaekit[tensorboard]' "
                          "(or pip install tensorboard)") from None
    return SummaryWriter(log_dir=log_dir)


class TensorBoardLogger(Callback):
    """Log to ``run_dir/tensorboard``: the run's config (as text) at the start, the training loss every step;
    at each validation the metrics record the trainer hands over (``metric_scalars``: loss, rec, kl, beta, lr,
    sigma, val elbo/rec/kl and the KL of each latent dimension) and, for image data, grids of prior samples and
    of inputs above their reconstructions; the writer is closed when training ends.

    writer_factory(log_dir) -> an object with add_scalar / add_text / add_image / flush / close (a SummaryWriter
    by default; ConfigError with the install command when tensorboard is missing). config: the run's config as a
    dict (None: the trainer's ``doc["config"]``). Image draws use a forked RNG.
    """

    SCALARS = SCALARS

    def __init__(self, run_dir: str | Path, writer_factory: Callable[[str], Any] | None = None,
                 images: bool = True, n_images: int = 32, config: dict[str, Any] | None = None) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer = (writer_factory or _default_writer)(str(self.log_dir))
        self.images, self.n_images = images, int(n_images)
        self.config = config
        self._started = False

    def on_step(self, trainer: Any, record: dict[str, Any]) -> None:
        step = record["step"]
        if not self._started:
            self._started = True
            config = self.config if self.config is not None else trainer.doc.get("config")
            if config:
                import yaml

                text = yaml.safe_dump(config, sort_keys=False)
                self.writer.add_text("config", "```yaml\n" + text + "```", step)  # markdown: kept as written
        self.writer.add_scalar("train/step_loss", record["loss"], step)

    def on_validation(self, trainer: Any, record: dict[str, Any]) -> None:
        step = record["step"]
        for tag, value in metric_scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        if self.images and len(trainer.model.data_shape) == 3:
            self._log_images(trainer, step)
        self.writer.flush()

    def on_end(self, trainer: Any) -> None:
        self.writer.close()

    @torch.no_grad()
    def _log_images(self, trainer: Any, step: int) -> None:
        from vaekit.plots.grid import image_grid

        model = trainer.model
        src = trainer.val_x if trainer.val_x is not None else trainer.train_x
        with eval_mode(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(trainer.seed + 7)
            samples = model.sample(self.n_images)
            xs = src[: min(self.n_images, src.shape[0])]
            rec = model.reconstruct(xs)
        rows = []
        for i in range(0, xs.shape[0], 8):
            rows += [xs[i:i + 8], rec[i:i + 8]]
        for tag, imgs in (("images/samples", samples), ("images/reconstructions", torch.cat(rows))):
            scale = max(1, 28 // int(imgs.shape[-1]))  # small images (8x8 digits) upscaled to about 28 pixels
            grid = image_grid(imgs, nrow=8, scale=scale)  # (H, W) or (H, W, 3) uint8
            self.writer.add_image(tag, grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")


#: what ``train.loggers`` can name -> its callback class (options in ``train.logger_options``, see the classes)
_LOGGER_CLASSES: dict[str, Callable[..., Callback]] = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger,
                                                       "wandb": WandbLogger}
LOGGERS = tuple(_LOGGER_CLASSES)


def run_callbacks(settings: Any, run_dir: str | Path, labels: torch.Tensor | None = None,
                  config: dict[str, Any] | None = None) -> list[Callback]:
    """The callbacks a run's ``TrainConfig`` (``settings``) asks for: ``train.snapshot_every``, and the loggers
    of ``train.loggers`` (``train.tensorboard=true`` adds "tensorboard") with their ``train.logger_options``.
    labels: of the snapshot points; config: the run's config as a dict (logged by every logger).
    ConfigError for an unknown logger or option, or a logger whose package is not installed."""
    cbs: list[Callback] = []
    if settings.snapshot_every:
        cbs.append(LatentSnapshots(run_dir, settings.snapshot_every, y=labels))
    names = list(dict.fromkeys((["tensorboard"] if settings.tensorboard else []) + list(settings.loggers or [])))
    options = dict(settings.logger_options or {})
    for name in [*names, *options]:
        if name not in LOGGERS:
            close = difflib.get_close_matches(str(name), LOGGERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown logger {name!r} in train.loggers / train.logger_options{hint} "
                              f"(choose from {', '.join(LOGGERS)})")
    for name in names:
        opts = options.get(name) or {}
        if not isinstance(opts, dict):
            raise ConfigError(f"train.logger_options.{name} must be a mapping like {{option: value}}, got {opts!r}")
        try:
            cbs.append(_LOGGER_CLASSES[name](run_dir, config=config, **opts))
        except TypeError as e:
            raise ConfigError(f"bad train.logger_options for {name}: {e}") from None
    return cbs
