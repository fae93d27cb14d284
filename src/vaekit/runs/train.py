"""Training a run: the one path from a config and data to a trained model, used by `vaekit train` (a dataset
into a run folder, resumable), ``vaekit.fit`` (arrays) and ``VAEEmbedding`` (arrays, no folder kept).

``train_model`` is the shared core: the objective (with the supervision a semi-supervised objective needs),
the trainer, a resume or a fresh start of the folder, the loop, and the best weights loaded back. Everything a
command can check is checked before anything is written (the folder, the config, the data, the model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vaekit.config import RunConfig, config_to_dict, dump_config
from vaekit.registry import build_objective
from vaekit.runs.build import build_for, prepare, prepare_family, supervision, with_recorded_constants
from vaekit.runs.devices import resolve_device
from vaekit.runs.finish import finish
from vaekit.runs.folder import check_folder, check_run_folder, start_fresh
from vaekit.training.checkpoint import CheckpointError, load_weights, state_dict_problem
from vaekit.utils import atomic_write_text, read_jsonl

__all__ = ["TrainingData", "train_model", "train_run", "train_arrays"]

log = logging.getLogger("vaekit.run")


@dataclass
class TrainingData:
    """What the trainer iterates over and validates on, on the model's device, with the labels a supervised
    objective reads (train_y: -1 where unlabelled) and the data's description for the checkpoint."""

    train_x: torch.Tensor
    val_x: torch.Tensor | None
    transform: Callable | None
    description: dict[str, Any]
    train_y: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    name: str = "the data"
    supervision: Any = None  # what ``supervised`` made of the labels (set before anything is written)

    def supervised(self, cfg: RunConfig) -> "TrainingData":
        """These data with the labels a supervised objective trains with split off (``vaekit.runs.build.
        supervision``): the trainer then iterates over the unlabelled examples. Checks the labels (one-line
        errors) before anything is written."""
        sup, train_x = supervision(cfg, self.train_x, self.train_y, self.val_y, self.transform, self.name)
        return dataclasses.replace(self, train_x=train_x, supervision=sup)


def _restore(trainer: Any, ckpt: Path) -> None:
    """trainer.restore with every way a checkpoint can fail turned into a one-line CheckpointError."""
    try:
        trainer.restore(ckpt)
    except CheckpointError:
        raise
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} does not match the run's model config "
                              f"({state_dict_problem(e)})") from None
    except (KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} lacks part of the training state ({type(e).__name__}: "
                              f"{e}); it was not written by this vaekit's trainer") from None


def train_model(cfg: RunConfig, model: nn.Module, data: TrainingData, run_dir: Path | None, *,
                callbacks: list | None = None, dist_info: Any = None, resume: bool = False,
                fresh: Callable[[], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train ``model`` on ``data`` (``TrainingData.supervised`` already applied) into ``run_dir`` (None: no files
    at all): the objective the config names, one
    ``Trainer``, its last checkpoint restored (``resume``) or ``fresh()`` called first (the caller writes the
    folder's first files); then the best weights loaded back where validation chose them. Returns (trainer,
    summary)."""
    from vaekit.training.trainer import Trainer

    objective = build_objective(cfg.model, n_train=len(data.train_x), supervision=data.supervision)
    doc = {"config": config_to_dict(cfg), "data": data.description}
    trainer = Trainer(model, objective, data.train_x, data.val_x, settings=cfg.train, run_dir=run_dir, seed=cfg.seed,
                      transform=data.transform, doc=doc, callbacks=list(callbacks or []), dist_info=dist_info)
    if resume:
        _restore(trainer, run_dir / "last.safetensors")
        log.info("resumed %s at step %d", run_dir, trainer.state.step)
    elif fresh is not None:
        fresh()
    summary = trainer.fit()
    return trainer, summary


def _start_from(model: nn.Module, run_dir: str) -> None:
    """``train.init_from``: the model starts from another run's best weights (checked before anything is written)."""
    from vaekit.runs.load import init_from_run

    doc = init_from_run(model, run_dir)
    log.info("starting from the weights of %s (step %s)", run_dir, doc.get("step", "?"))


def _keep_old_config(run_dir: Path, old_text: str, last_before: tuple | None) -> None:
    """After a resume failed: put config.yaml back as it was unless the resumed run saved a checkpoint (so a
    failed command leaves the folder as it was: e.g. a full disk refusing the first checkpoint)."""
    last = run_dir / "last.safetensors"
    now = (last.stat().st_mtime_ns, last.stat().st_size) if last.is_file() else None
    if now == last_before:
        try:
            atomic_write_text(run_dir / "config.yaml", old_text)
        except OSError as e:  # the disk may refuse even that; say so rather than hide the first error
            log.warning("could not restore %s (%s)", run_dir / "config.yaml", e)


def check_training_input(model: nn.Module, train_x: Any, chunk: int = 8192) -> None:
    """``model.check_input`` on the training examples: a tensor at once; in-memory ``Rows`` chunk by chunk (no
    float32 copy of the whole split); file-backed ``Rows`` on their first chunk (read again per batch)."""
    from vaekit.data.rows import Rows

    if not isinstance(train_x, Rows):
        model.check_input(train_x)
        return
    ends = range(0, len(train_x), chunk) if train_x.nbytes else range(0, min(len(train_x), 1))
    for i in ends:
        model.check_input(train_x[slice(i, min(i + chunk, len(train_x)))])


def train_run(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
              callbacks: list | None = None) -> dict[str, Any]:
    """Train the run a config describes into ``run_dir`` (or resume it from its last checkpoint).

    Everything is checked before anything is written: the folder (a new or empty one, or a vaekit run; never a
    folder of the user's own files), a resume's config against the run's (``check_resume_config``), the data,
    the model and the checkpoint. The folder is locked while the run is written (``vaekit.runfolder``). A run
    killed before its first checkpoint is started again from step 0, by a resume or a new training into it.
    """
    from vaekit.runfolder import run_lock
    from vaekit.training.callbacks import run_callbacks
    from vaekit.training.distributed import barrier, init_from_env

    run_dir = Path(run_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 checks and writes the folder
    state = check_folder(run_dir, resume, cfg) if main_rank else "run"
    restoring = resume and (run_dir / "last.safetensors").is_file()
    if not restoring:  # a new model: record all its constants
        cfg = with_recorded_constants(cfg)
    p = prepare(cfg, storage="config")  # the training split may be Rows (uint8, mmap, streamed)
    small = {k: dataclasses.replace(a, x=a.values()) for k, a in (("val", p.splits.val), ("test", p.splits.test))}
    p = dataclasses.replace(p, splits=dataclasses.replace(p.splits, **small))  # validated on as float32 tensors
    cfg, splits, model = p.cfg, p.splits, p.model  # p.cfg: after the family's prepare hook
    if cfg.train.init_from and not restoring:  # a resumed run's checkpoint holds its weights already
        _start_from(model, cfg.train.init_from)
    train_x = splits.train.x.to(p.device)
    check_training_input(model, train_x)  # shape, NaN/inf and likelihood support, once for the whole split
    if len(splits.test) == 0:
        raise ValueError(f"the test split of {splits.name} is empty; give more examples")
    val_x = splits.val.x.to(p.device) if splits.val is not None else None
    labelled = cfg.data.labels is not None
    data = TrainingData(train_x, val_x, p.transform,
                        {"name": splits.name, "shape": list(splits.shape), "n_levels": splits.n_levels,
                         "source": splits.source, "n_train": int(train_x.shape[0])},
                        train_y=splits.train.y if labelled else None,
                        val_y=splits.val.y if labelled and val_x is not None and len(splits.val) > 0 else None,
                        name=splits.name).supervised(cfg)
    info = init_from_env(p.device)  # torchrun: every rank computes, rank 0 alone writes
    watched = splits.val if val_x is not None and val_x.shape[0] > 0 else splits.train  # snapshot points
    callbacks = list(callbacks or [])
    if info.is_main:
        callbacks += run_callbacks(cfg.train, run_dir, labels=watched.y, config=config_to_dict(cfg))
        run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir) if info.is_main else contextlib.nullcontext():  # rank 0 alone writes
        if info.is_main:
            state = check_folder(run_dir, resume, cfg, locked=True)  # again, now that no other process can
        old_config, last_before = None, None
        if restoring and info.is_main:
            old_config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else None
            last = run_dir / "last.safetensors"
            last_before = (last.stat().st_mtime_ns, last.stat().st_size)
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        elif info.is_main and (resume or state == "new-run"):
            log.info("%s was stopped before its first checkpoint: training it from step 0", run_dir)
        try:
            _, summary = train_model(cfg, model, data, run_dir, callbacks=callbacks, dist_info=info,
                                     resume=restoring,
                                     fresh=(lambda: start_fresh(run_dir, cfg)) if info.is_main else None)
        except BaseException:
            if old_config is not None:
                _keep_old_config(run_dir, old_config, last_before)
            raise
        barrier()
        if not info.is_main:  # the other ranks are done: rank 0 evaluates and writes the images and the report
            summary["rank"] = info.rank
            return summary
        finish(run_dir, cfg, p, model, summary)
    return summary


def train_arrays(cfg: RunConfig, train_x: torch.Tensor, val_x: torch.Tensor | None, run_dir: Path | None, *,
                 labels: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                 files: bool = True) -> tuple[RunConfig, nn.Module, list[dict[str, Any]]]:
    """Train on in-memory arrays (``vaekit.fit``, ``VAEEmbedding``): into ``run_dir`` (a new, empty or
    restartable folder, kept) or a temporary folder removed at the end (None; ``files=False``: no folder at
    all, the last weights). ``labels``: (train y, val y) with -1 for unlabelled examples, for a supervised
    objective. Returns (the recorded config, the model with the best weights, in eval mode, the records of
    metrics.jsonl: one per validation, with step, loss, rec, kl and val_elbo where there are validation data;
    empty with ``files=False``)."""
    from vaekit.data import make_batch_transform
    from vaekit.runfolder import run_lock
    from vaekit.training.callbacks import run_callbacks

    keep = run_dir is not None
    cfg = prepare_family(cfg, train_x)
    if keep:  # the user's run folder: a new, empty or restartable one only (never someone's own files)
        check_run_folder(run_dir)
        cfg = with_recorded_constants(cfg)
    shape = tuple(int(s) for s in train_x.shape[1:])
    device = resolve_device(cfg.train.device)
    model = build_for(cfg, shape, device)
    if cfg.train.init_from:
        _start_from(model, cfg.train.init_from)
    train_x = train_x.to(device)
    val_x = val_x.to(device) if val_x is not None else None
    model.check_input(train_x)
    if val_x is not None:
        model.check_input(val_x)
    cfg.data.name = "arrays"  # what a saved run folder says its data were
    y, val_y = (None, None) if labels is None else (t if t is None else t.to(device) for t in labels)
    data = TrainingData(train_x, val_x, make_batch_transform(cfg.data.binarize, False, None),
                        {"name": "arrays", "shape": list(shape), "n_levels": None, "source": "python",
                         "n_train": int(train_x.shape[0])}, train_y=y, val_y=val_y, name="arrays").supervised(cfg)
    with contextlib.ExitStack() as stack:
        if keep:
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(run_dir))
            check_run_folder(run_dir, locked=True)
        elif files:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vaekit-fit-")))
        cbs = run_callbacks(cfg.train, run_dir, config=config_to_dict(cfg)) if keep else []
        train_model(cfg, model, data, run_dir, callbacks=cbs,
                    fresh=(lambda: start_fresh(run_dir, cfg)) if keep else None)
        if run_dir is not None and (run_dir / "best.safetensors").exists():
            load_weights(model, run_dir / "best.safetensors")
        metrics = None if run_dir is None else run_dir / "metrics.jsonl"
        history = read_jsonl(metrics) if metrics is not None and metrics.is_file() else []
    return cfg, model.eval(), history
