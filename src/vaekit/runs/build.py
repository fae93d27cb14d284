"""What a run is built from: its checked config, its data splits and batch transform, its model (after the
family's ``prepare`` hook) and the supervision a semi-supervised objective trains with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vaekit.config import ConfigError, RunConfig
from vaekit.registry import build_model
from vaekit.runs.devices import resolve_device

__all__ = ["Prepared", "prepare", "load_splits", "with_recorded_constants", "prepare_family", "build_for",
           "supervision"]


@dataclass
class Prepared:
    cfg: RunConfig
    splits: Any                      # vaekit.data.DataSplits
    model: nn.Module | None
    transform: Callable | None
    device: torch.device | None


def with_recorded_constants(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` whose component options (``model.likelihood_options``, and the family's, e.g. the vae's
    ``model.posterior_options``) spell out every declared option of the chosen component (e.g. the posterior's
    log-variance clamp), so the run folder rebuilds the same model even if a later vaekit changes a default, and
    whose path options (``model.m1_run``, ``train.init_from``) are absolute, so the run loads from any working
    directory. Given values are kept."""
    from vaekit.config import component_options, validate
    from vaekit.model_config import model_fields

    cfg = validate(cfg)  # a checked copy: every component is known
    m = cfg.model
    for obj, f in model_fields(m):
        value = getattr(obj, f.name)
        if "schema" in f.metadata:
            value = {**dataclasses.asdict(component_options(m, f.metadata["schema"][0])), **(value or {})}
        elif f.metadata.get("path") and value:
            value = str(Path(value).expanduser().resolve())
        object.__setattr__(obj, f.name, value)
    for f in dataclasses.fields(cfg.train):  # train.init_from: the same rule for a path outside model.*
        if f.metadata.get("path") and getattr(cfg.train, f.name):
            setattr(cfg.train, f.name, str(Path(getattr(cfg.train, f.name)).expanduser().resolve()))
    return cfg


def prepare_family(cfg: RunConfig, train_x: torch.Tensor) -> RunConfig:
    """The config after its family's ``prepare`` hook (``vaekit.models.registry.Family``) saw the training data."""
    from vaekit.models.registry import FAMILIES

    hook = FAMILIES[cfg.model.family].prepare
    return cfg if hook is None else hook(cfg, train_x)


def build_for(cfg: RunConfig, data_shape: tuple[int, ...], device: torch.device) -> nn.Module:
    """The config's model for data of ``data_shape``, initialised from ``seed``, on ``device``."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, data_shape).to(device)


def load_splits(cfg: RunConfig, storage: str = "float32") -> tuple[Any, Callable | None]:
    """(the data splits the config names, its batch transform): ``data.classes`` and ``data.merge_val`` applied.
    ``storage``: "float32" (float32 tensors) or "config" (``data.storage``: the training split may be ``Rows``)."""
    from vaekit.data import load_data, make_batch_transform

    d = cfg.data
    splits = load_data(
        d.name, data_dir=d.dir, path=d.path, val_fraction=d.val_fraction, seed=cfg.seed, binarize=d.binarize,
        image_size=tuple(d.image_size) if d.image_size else None, grayscale=d.grayscale,
        options=d.dataset_options, storage=d.storage if storage == "config" else storage,
        memory_limit_mb=d.memory_limit_mb, workers=d.workers, on_error=d.on_error,
    )
    if d.classes is not None:
        splits = splits.select_classes(d.classes)
    if d.merge_val:
        splits = splits.merge_val()
    return splits, make_batch_transform(d.binarize, d.dequantize, splits.n_levels)


def prepare(cfg: RunConfig, *, build: bool = True, storage: str = "float32") -> Prepared:
    """Check the config (``vaekit.config.validate``), load the data it names and, with ``build``, build its
    model (seeded, on ``train.device``, after the family's ``prepare`` hook) and batch transform. Without
    ``build`` the device is not looked at: a run trained on a GPU reads its data anywhere. ``storage``: see
    ``load_splits`` (training uses "config")."""
    from vaekit.config import validate

    cfg = validate(cfg)
    splits, transform = load_splits(cfg, storage)
    if not build:
        return Prepared(cfg, splits, None, transform, None)
    device = resolve_device(cfg.train.device)
    cfg = prepare_family(cfg, splits.train.x)
    return Prepared(cfg, splits, build_for(cfg, splits.shape, device), transform, device)


def supervision(cfg: RunConfig, train_x: torch.Tensor, train_y: torch.Tensor | None, val_y: torch.Tensor | None,
                transform: Callable | None, data_name: str = "the data") -> tuple[Any, torch.Tensor]:
    """(the labels a semi-supervised objective trains with, the unlabelled examples the trainer iterates over),
    for an objective declared ``supervised``; (None, train_x) otherwise. ``data.labels=N`` takes N training
    examples, balanced over the classes (seeded), with their labels and leaves the rest unlabelled; ``all``
    labels every example (the conditional VAE); labels given with -1 for unlabelled (``vaekit.fit(x, y)``) are
    used as they are (data.labels unset)."""
    from vaekit.objectives.registry import OBJECTIVES
    from vaekit.objectives.semi_supervised import balanced_label_subset, supervision_from_labels

    spec = OBJECTIVES.get(cfg.model.objective)
    if spec is None or not spec.supervised:
        return None, train_x
    from vaekit.data.rows import Rows

    if isinstance(train_x, Rows):  # the labelled examples are sliced out of one float32 tensor
        train_x = train_x.decode()
    labels = cfg.data.labels
    if train_y is None:
        if labels is None:
            raise ConfigError(f"model.objective={cfg.model.objective} trains with labels: set data.labels=N (N "
                              f"labelled training examples, balanced over the classes) or data.labels=all")
        raise ConfigError(f"data.labels needs labelled data, but {data_name!r} has no labels")
    y = train_y.to(train_x.device).long()
    if labels not in (None, "all"):  # N labelled, balanced over the classes (seeded); the others -1
        try:
            keep = balanced_label_subset(y.cpu(), int(labels), cfg.seed).to(train_x.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        y = torch.full_like(y, -1).index_copy(0, keep, y[keep])
    return supervision_from_labels(train_x, y, transform, cfg.seed, val_y)
