"""Convert a folder (or a ``.zip`` or ``.tar`` archive) of images once into the fast format: uint8 ``.npy`` shards, read back with
``data.name=arrays data.path=OUT`` (memory-mapped with ``data.storage=mmap``, or in memory).

    vaekit datasets --prepare ./faces --out ./faces-64 --image-size 64 64

Layout of OUT: ``images-00000.npy``, ``images-00001.npy``, ... each (n, C, H, W) uint8 with at most
``shard_size`` images, in the order of ``vaekit.data.files.list_image_folder``; ``labels.npy`` (int64) when the
images are in class sub-folders. Decoding runs in worker processes; unreadable images are skipped (counted) or
stop the conversion, as ``on_error`` says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["prepare_shards"]

log = logging.getLogger(__name__)


def prepare_shards(src: str | Path, out: str | Path, *, image_size: tuple[int, int] | None = None,
                   grayscale: bool | None = None, crop: tuple[int, int] | None = None, shard_size: int = 10_000,
                   workers: int = 2, on_error: str = "skip", progress: bool = True) -> dict:
    """Write the images under ``src`` as uint8 shards into ``out`` (a new or empty folder); returns a summary
    (images written, skipped, shards, example shape)."""
    from vaekit.data.registry import LABELS_FILE
    from vaekit.data.stream import stream_rows
    from vaekit.progress import progress_bar
    from vaekit.utils import atomic_save_npy

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new output folder")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    rows, y = stream_rows(src, image_size=image_size, grayscale=grayscale, crop=crop, workers=workers,
                          on_error=on_error)
    out.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(len(rows), enabled=progress, desc="preparing", unit="image")
    pending, labels, shards = np.zeros((0, *rows.shape[1:]), np.uint8), [], 0
    for xb, kept, n in rows.iter_uint8(256):
        pending = np.concatenate([pending, xb])
        if y is not None:
            labels.append(y[kept])
        if bar is not None:
            bar.update(n)
        while len(pending) >= shard_size:
            atomic_save_npy(out / f"images-{shards:05d}.npy", pending[:shard_size])
            pending, shards = pending[shard_size:], shards + 1
    if len(pending):
        atomic_save_npy(out / f"images-{shards:05d}.npy", pending)
        shards += 1
    if bar is not None:
        bar.close()
    if y is not None:
        atomic_save_npy(out / LABELS_FILE, np.concatenate(labels).astype(np.int64))
    if rows.skipped:
        log.warning("skipped %d unreadable image(s) of %d", len(rows.skipped), len(rows))
    return {"images": len(rows) - len(rows.skipped), "skipped": len(rows.skipped), "shards": shards, "shape": list(rows.shape[1:]),
            "out": str(out)}
