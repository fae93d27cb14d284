"""`vaekit datasets` (list, download and verify, convert images into shards) and `vaekit presets`.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Callable

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``datasets`` and ``presets`` sub-commands to ``sub``; return {command name: handler}."""
    d = sub.add_parser("datasets", help="list datasets, whether their files are present, and where they are looked for")
    d.add_argument("--data-dir", default=None)
    d.add_argument("--download", default=None, metavar="NAME", help="download and verify a dataset (needs internet)")
    d.add_argument("--prepare", default=None, metavar="PATH", help="convert a folder, .zip or .tar of images once into "
                   "uint8 .npy shards (train on them with data.name=arrays data.path=OUT data.storage=mmap)")
    d.add_argument("--out", default=None, help="--prepare: the new folder to write the shards into")
    d.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="--prepare: resize the images to H x W")
    d.add_argument("--grayscale", action="store_true", help="--prepare: one channel")
    d.add_argument("--shard-size", type=int, default=10_000, help="--prepare: images per shard")
    d.add_argument("--workers", type=int, default=2, help="--prepare: decoding processes")

    sub.add_parser("presets", help="list the named presets")
    return {"datasets": _cmd_datasets, "presets": _cmd_presets}


def _cmd_datasets(a: argparse.Namespace) -> int:
    from vaekit.data import dataset_status

    if a.download:
        from vaekit.data import download

        try:
            path = download(a.download, a.data_dir)
        except RuntimeError as e:  # every mirror failed: no network, or a damaged copy on each
            raise ValueError(f"{str(e).splitlines()[0][:300]}; check the network connection (nothing was kept)") from None
        print(f"downloaded and verified {a.download} into {path}")
        return 0
    if a.prepare:
        from vaekit.data.prepare import prepare_shards

        if not a.out:
            raise ValueError("--prepare needs --out FOLDER (a new folder for the shards)")
        done = prepare_shards(a.prepare, a.out, image_size=tuple(a.image_size) if a.image_size else None,
                              grayscale=True if a.grayscale else None, shard_size=a.shard_size, workers=a.workers)
        print(f"wrote {done['images']} images {tuple(done['shape'])} as {done['shards']} uint8 shard(s) into "
              f"{done['out']} ({done['skipped']} unreadable skipped); train with data.name=arrays "
              f"data.path={done['out']} data.storage=mmap")
        return 0
    rows = dataset_status(a.data_dir)
    for r in rows:
        mark = "yes" if r["available"] else "no "
        print(f"{r['name']:<16} {mark}  {r['description']}")
        print(f"{'':<16}      looked for: {r['where']}")
        if not r["available"] and r.get("how_to_get"):
            print(f"{'':<16}      get it: {r['how_to_get']}")
    return 0


def _cmd_presets(a: argparse.Namespace) -> int:
    from vaekit.presets import list_presets  # reads the YAML files only: no torch import

    import textwrap

    presets = list_presets()
    width = max(60, min(120, shutil.get_terminal_size().columns))
    col = max(map(len, presets), default=0) + 2
    for name, desc in presets.items():  # whole descriptions, wrapped beside the name
        lines = textwrap.wrap(desc, max(30, width - col), break_on_hyphens=False) or [""]
        print(f"{name:<{col}}{lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{col}}{line}")
    return 0
