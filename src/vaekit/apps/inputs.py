"""What the app commands read: a registered dataset (the run's own by default) or the user's files.

``--data`` (``spec``) is either
- omitted: the dataset the run was trained on (same name, path, binarisation), ALL its classes (a run trained
  with ``data.classes`` is then shown the other classes too, as anomaly detection and classification need);
- a dataset name (``vaekit datasets``), loaded with the run's data settings;
- a file: ``.npy`` / ``.npz`` / ``.csv`` (read as ``data.name=arrays`` reads them; an ``.npz`` with train/val/test
  keys gives the ``--split``), a ``.png`` / ``.jpg`` image, or a folder of images (sub-folders = classes).
  8-bit arrays and images are divided by 255; rows with as many values as the model's input are reshaped to it.
For registered datasets ``split`` picks train / val / test. ``evaluated=True`` prepares the data as
``vaekit evaluate`` does: a run trained with dynamic binarisation sees one fixed (seeded) binary sample, a
dequantised run one fixed dequantisation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["AppData", "load_inputs", "train_mean", "write_csv"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class AppData:
    """x: (N, *data_shape) float32; y: (N,) int64 labels or None; source: what was read."""

    x: torch.Tensor
    y: torch.Tensor | None
    source: str


def _from_registry(cfg: Any, split: str, keep_classes: bool) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    from vaekit.runs import prepare

    if not keep_classes:
        cfg = copy.deepcopy(cfg)
        cfg.data.classes = None
    p = prepare(cfg, build=False)
    part = getattr(p.splits, split)
    if len(part) == 0:
        raise ValueError(f"the {split} split of {p.splits.name} is empty; choose another --split")
    return part.x, part.y, p


def _from_file(path: Path, split: str, grey: bool | None) -> tuple[np.ndarray, np.ndarray | None]:
    """grey: read images as 1 channel (True), RGB (False) or as stored (None: tabular models)."""
    from vaekit.data.files import read_arrays, read_image_folder

    if path.is_dir():
        x, y, _ = read_image_folder(path, grayscale=grey)
        return x, y
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        from vaekit.data.files import read_image

        im = read_image(path)
        grey = im.mode in ("1", "L", "LA") if grey is None else grey
        a = np.asarray(im.convert("L" if grey else "RGB"))
        return (a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]), None
    parts = read_arrays(path)
    if "all" in parts:
        return parts["all"]
    return parts[split]


def _fit_shape(x: torch.Tensor, data_shape: Sequence[int]) -> torch.Tensor:
    shape = tuple(int(s) for s in data_shape)
    if x.dim() == 1:
        x = x[:, None]
    if tuple(x.shape[1:]) != shape and x[0].numel() == math.prod(shape):
        x = x.reshape(x.shape[0], *shape)
    return x


def load_inputs(cfg: Any, doc: dict, spec: str | None = None, split: str = "test", *, data_dir: str | None = None,
                limit: int | None = None, first: int | None = None, evaluated: bool = False,
                keep_classes: bool = False) -> AppData:
    """Data for a run (its config ``cfg`` and checkpoint document ``doc`` from ``load_run``), see the module
    docstring. keep_classes: keep the run's ``data.classes`` selection (its own normal data)."""
    from vaekit.data import DATASETS, make_batch_transform, subset_index

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    subset_index(1, limit, first)  # bad limit / first: fail before loading anything
    cfg = copy.deepcopy(cfg)
    if data_dir:
        cfg.data.dir = data_dir
    n_levels = doc.get("data", {}).get("n_levels")
    if spec is not None and spec in DATASETS and DATASETS[spec].needs_path:
        raise ValueError(f"--data {spec!r} names the reader of your own files; give the file or folder itself "
                         f"as --data")
    if spec is None or spec in DATASETS:
        if spec is not None and spec != cfg.data.name:
            cfg.data.name, cfg.data.path = spec, None
        x, y, p = _from_registry(cfg, split, keep_classes)
        source = f"{cfg.data.name}/{split}"
        n_levels = p.splits.n_levels
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"--data {spec!r} is neither a dataset name ({', '.join(DATASETS)}) nor an "
                                    f"existing file or folder")
        shape = doc["data"]["shape"]
        raw, labels = _from_file(path, split, grey=(shape[0] == 1) if len(shape) == 3 else None)
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"{spec}: values must be numbers, got dtype {raw.dtype}")
        arr = raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
        x = _fit_shape(torch.from_numpy(arr), doc["data"]["shape"])
        y = None if labels is None else torch.as_tensor(np.asarray(labels).reshape(-1).astype(np.int64))
        source = str(path)
    idx = subset_index(len(x), limit, first)
    x, y = x[idx], (None if y is None else y[idx])
    if evaluated:
        fn = make_batch_transform(cfg.data.binarize, cfg.data.dequantize, n_levels)
        if fn is not None:  # one fixed sample, the same as `vaekit evaluate` uses
            x = fn(x, torch.Generator().manual_seed(cfg.seed + 4))
    return AppData(x.float(), y, source)


def train_mean(cfg: Any, data_dir: str | None = None) -> torch.Tensor:
    """(*data_shape) mean of the run's own training split (its classes only): the naive 'mean image' fill."""
    cfg = copy.deepcopy(cfg)
    if data_dir:
        cfg.data.dir = data_dir
    x, _, _ = _from_registry(cfg, "train", keep_classes=True)
    return x.mean(0)


def write_csv(path: str | Path, columns: dict[str, Any]) -> None:
    """Write equal-length columns as CSV with a header; a 2-D column (N, D) becomes ``name0 .. name{D-1}``.
    Integer columns are written as integers, others with 6 significant digits. Written to a temporary file and
    renamed: a failure leaves an existing file as it was."""
    names = list(columns)
    n = len(np.asarray(columns[names[0]]))
    cols = [np.asarray(c).reshape(n, -1) for c in columns.values()]
    header, fmts = [], []
    for name, c in zip(names, cols):
        header += [name] if c.shape[1] == 1 else [f"{name}{j}" for j in range(c.shape[1])]
        fmts += ["%d" if c.dtype.kind in "biu" else "%.6g"] * c.shape[1]
    from vaekit.utils import atomic_savetxt

    atomic_savetxt(path, np.hstack([c.astype(np.float64) for c in cols]), delimiter=",", header=",".join(header),
               comments="", fmt=fmts)
