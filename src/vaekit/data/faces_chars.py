"""Loaders of CelebA (aligned faces, streamed from the published zip) and Omniglot (the 28x28 ``chardata.mat``
of Burda et al.'s IWAE code). Their registry entries are in ``vaekit.data.registry``.

CelebA (Liu et al. 2015, "Deep Learning Face Attributes in the Wild"): 202,599 aligned 178x218 (WxH) JPEGs in
``img_align_celeba.zip``; ``list_eval_partition.txt`` gives the official split (0 train, 1 validation, 2 test).
The beta-VAE line of work (Higgins et al. 2017; Burgess et al. 2018) trains on 64x64 images: a centred square
crop of the face region (``crop``, 148 px by default) resized to ``size`` (64, or 128).

Omniglot as in the IWAE paper (Burda et al. 2016, Sec. 5): ``chardata.mat`` holds ``data`` (784 x 24,345 train)
and ``testdata`` (784 x 8,070 test) grey levels in [0, 1], each column a 28x28 image in column-major order.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaekit.data.base import ArrayData, DataSplits, split_indices

if TYPE_CHECKING:
    from vaekit.data.registry import LoadRequest

__all__ = ["load_celeba", "load_omniglot", "celeba_partition", "git_blob_check"]

CELEBA_DIR = "img_align_celeba"


def celeba_partition(path: str | Path) -> dict[str, int]:
    """``list_eval_partition.txt``: file name -> 0 (train), 1 (validation), 2 (test)."""
    out = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}, line {i + 1}: expected '<file name> 0|1|2', got {line[:60]!r}; the file is "
                             f"damaged: fetch it again")
        out[parts[0]] = int(parts[1])
    return out


def _celeba_names(req: "LoadRequest") -> list[str]:
    """The image names (archive::member or paths) of the zip or of the extracted folder, sorted by file name."""
    from vaekit.data.stream import ARCHIVE_SEP

    if "zip" in req.files:
        z = req.files["zip"]
        try:
            with zipfile.ZipFile(z) as f:
                members = [m for m in f.namelist() if m.lower().endswith(".jpg")]
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"could not read {z} as a .zip archive ({e}); delete it and fetch it again") from None
        return sorted((f"{z}{ARCHIVE_SEP}{m}" for m in members), key=lambda n: Path(n).name)
    folder = req.files["first"].parent
    return sorted((str(p) for p in folder.glob("*.jpg")), key=lambda n: Path(n).name)


def load_celeba(req: "LoadRequest") -> DataSplits:
    """CelebA, official split, streamed (``FileRows``) or decoded into memory as uint8 (storage memory/float32)."""
    from vaekit.data.rows import TensorRows
    from vaekit.data.stream import FileRows, ImageSpec, _Batches

    size, crop = int(req.options["size"]), int(req.options["crop"])
    if size < 8 or crop < 8 or crop > 178:
        raise ValueError(f"celeba dataset_options size={size} and crop={crop} must be >= 8, crop <= 178 (the "
                         f"images are 178 px wide)")
    part = celeba_partition(req.files["partition"])
    names = _celeba_names(req)
    split = np.array([part.get(Path(n).name, -1) for n in names])
    if (split < 0).any() or len(names) != len(part):
        raise ValueError(f"the images ({len(names)}) do not match {req.files['partition'].name} ({len(part)} "
                         f"entries); the download is incomplete: fetch it again")
    rows = FileRows(names, ImageSpec("RGB", (size, size), crop=(crop, crop)), workers=req.workers,
                    on_error=req.on_error)
    source = str(req.files.get("zip", req.files.get("first")))
    parts = []
    for k in range(3):
        x = rows.subset(np.flatnonzero(split == k))
        if req.storage in ("memory", "float32"):  # every image decoded now (minutes for the whole set)
            stored, bad = _Batches(rows.all_files, rows.spec)[x.index.tolist()]
            if bad:
                raise ValueError(f"{bad[0][1]}; with storage=stream unreadable images are skipped")
            x = TensorRows(stored, 255.0)
        parts.append(ArrayData(x))
    return DataSplits(*parts, shape=(3, size, size), n_levels=256, name="", source=source)


def load_omniglot(req: "LoadRequest") -> DataSplits:
    """Omniglot 28x28 (IWAE split): the official test set kept, validation carved from train."""
    import torch

    from vaekit.data.readers import read_mat_var

    def images(var: str) -> np.ndarray:
        a = np.asarray(read_mat_var(req.files["mat"], var), dtype=np.float32)  # (784, N), column-major images
        if a.ndim != 2 or a.shape[0] != 784:
            raise ValueError(f"{req.files['mat']}: variable {var!r} has shape {a.shape}, expected (784, N)")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError(f"{req.files['mat']}: {var!r} holds values outside [0, 1]; the file is wrong")
        return np.ascontiguousarray(a.T.reshape(-1, 28, 28).transpose(0, 2, 1))[:, None]  # (N, 1, 28, 28)

    train, test = images("data"), images("testdata")
    tr, va, _ = split_indices(len(train), test_fraction=0.0, val_fraction=req.val_fraction, seed=req.seed)
    parts = [ArrayData(torch.from_numpy(train[i])) for i in (tr, va)] + [ArrayData(torch.from_numpy(test))]
    binary = all(bool(np.isin(a, (0.0, 1.0)).all()) for a in (train, test))
    return DataSplits(*parts, shape=(1, 28, 28), n_levels=2 if binary else None, name="",
                      source=str(req.files["mat"]))


def git_blob_check(expected: str):
    """A download check: the file's git blob id (SHA-1 of ``b"blob <size>\\0" + content``) equals ``expected``,
    for files known only by the id a git repository lists for them."""

    def verify(path: Path) -> None:
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != expected:
            raise ValueError(f"{path.name}: git blob id {h.hexdigest()} != expected {expected}")

    return verify

