"""Public entry points: ``load_data``, ``dataset_status``, ``download``.

Data directory: the explicit ``data_dir`` argument, else the environment variable ``VAEKIT_DATA_DIR``, else
``~/.cache/vaekit/data``. Each dataset lives in its own sub-folder (e.g. ``<data_dir>/mnist/``). Loading never
downloads: missing files raise ``DataNotFoundError`` (a FileNotFoundError) saying what was looked for where and
how to get it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from vaekit.data.base import DataNotFoundError, DataSplits
from vaekit.data.download import fetch
from vaekit.data.readers import check_digest
from vaekit.data.registry import DATASETS, DatasetSpec, LoadRequest
from vaekit.data.transforms import binarize_static, check_binarize

__all__ = ["ENV_VAR", "DEFAULT_DATA_DIR", "resolve_data_dir", "get_spec", "load_data", "ground_truth", "dataset_status", "download"]

log = logging.getLogger(__name__)
ENV_VAR = "VAEKIT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/vaekit/data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and where it came from ("argument", the env var name, or "default")."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "argument"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR
    return Path(DEFAULT_DATA_DIR).expanduser(), "default"


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; ValueError suggesting the closest known name otherwise."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(str(name), DATASETS, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown dataset {name!r}; {hint}known datasets: {', '.join(DATASETS)}")


def _how_to_get(spec: DatasetSpec) -> str:
    where = f"set {ENV_VAR} or --data-dir to a folder holding {spec.folder}/"
    if spec.downloads:
        return f"run `vaekit datasets --download {spec.name}` {spec.how_to_get}, or {where}"
    return spec.how_to_get or where


def _find_layout(spec: DatasetSpec, folder: Path) -> dict[str, Path] | None:
    for layout in spec.layouts:
        files = {role: folder / rel for role, rel in layout.items()}
        if all(p.is_file() for p in files.values()):
            return files
    return None


def _folder(spec: DatasetSpec, root: Path) -> Path:
    """The dataset's folder under ``root``: the first of ``folder`` and its aliases holding a complete layout,
    else ``folder`` itself."""
    names = [spec.folder or "", *spec.folder_aliases]
    return next((root / n for n in names if _find_layout(spec, root / n) is not None), root / names[0])


def _missing_message(spec: DatasetSpec, folder: Path, origin: str) -> str:
    best = max(spec.layouts, key=lambda lay: sum((folder / r).is_file() for r in lay.values()))
    missing = [r for r in best.values() if not (folder / r).is_file()]
    others = [", ".join(lay.values()) for lay in spec.layouts if lay is not best]
    alt = f" (or {'; or '.join(others)})" if others else ""
    return (f"{spec.name}: missing {', '.join(missing)}{alt} in {folder} (data dir from {origin}); "
            f"to get them: {_how_to_get(spec)}")


def _options(spec: DatasetSpec, options: dict | None) -> dict:
    """The spec's defaults updated with the user's dataset options; ValueError on a key the dataset lacks."""
    for k in options or {}:
        if k not in spec.options:
            close = difflib.get_close_matches(str(k), list(spec.options), n=1)
            known = ", ".join(spec.options) or "none"
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"dataset {spec.name!r} has no option {k!r}; {hint}its options: {known}")
    return {**spec.options, **{k: _typed(spec, k, v) for k, v in (options or {}).items()}}


def _typed(spec: DatasetSpec, key: str, value: Any) -> Any:
    """``value`` as the type of the option's default (an integer option takes 100000 or 1e5, never 1.5 or "abc");
    ValueError naming the option otherwise."""
    default = spec.options[key]
    where = f"data.dataset_options {key} of dataset {spec.name!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or int(value) != value:
            raise ValueError(f"{where} must be a whole number (e.g. {default}), got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number (e.g. {default}), got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{where} must be a string (e.g. {default!r}), got {value!r}")
    return value


def ground_truth(name: str, *, path: str | None = None, data_dir: str | None = None):
    """The ``GroundTruthData`` sampler (factor sampling + rendering) of a dataset with known factors."""
    spec = get_spec(name)
    if spec.ground_truth is None:
        with_truth = ", ".join(s.name for s in DATASETS.values() if s.ground_truth is not None)
        raise ValueError(f"dataset {name!r} has no known generative factors; disentanglement needs one of: {with_truth}")
    user_path = Path(path).expanduser() if path is not None else None
    from vaekit.data.dsprites import CACHE_FILE  # a rendering cache, used where one was built

    cache = resolve_data_dir(data_dir)[0] / (spec.folder or spec.name) / CACHE_FILE
    return spec.ground_truth(LoadRequest({"cache": cache}, user_path, 0.0, 0, options=_options(spec, None)))


def load_data(
    name: str,
    *,
    data_dir: str | None = None,
    path: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    binarize: str = "none",
    image_size: tuple[int, int] | None = None,
    grayscale: bool | None = None,
    options: dict | None = None,
) -> DataSplits:
    """Load dataset ``name`` (a key of ``DATASETS``) as in-memory train/val/test tensors.

    path: the user's file or folder for ``image-folder`` / ``arrays``; for file datasets it replaces
        ``<data_dir>/<dataset folder>`` as the folder holding the files.
    val_fraction: fraction of the training pool held out for validation (ignored where the dataset fixes a
        validation split). seed: fixes the splits and the static binarisation.
    binarize: "none"; "static" (one Bernoulli sample of every split, seeded, at load time); "dynamic" (data
        kept in [0, 1]; ``make_batch_transform`` samples each batch afresh). Needs data in [0, 1].
    image_size, grayscale: resizing / colour mode for datasets that accept them (image-folder).
    options: dataset-specific options (``data.dataset_options``, e.g. dsprites' n_train); unknown keys are errors.
    """
    spec = get_spec(name)
    check_binarize(binarize)
    if not spec.image_options and (image_size is not None or grayscale is not None):
        takers = ", ".join(s.name for s in DATASETS.values() if s.image_options)
        raise ValueError(f"image_size / grayscale apply only to {takers} data, not to {name!r}; drop them")
    t0 = time.perf_counter()
    files: dict[str, Path] = {}
    user_path = Path(path).expanduser() if path is not None else None
    if spec.needs_path:
        if user_path is None:
            raise ValueError(f"dataset {name!r} reads your own data: pass path=... (--path); {spec.how_to_get}")
    elif spec.layouts:
        if user_path is not None:
            folder, origin = user_path, "path argument"
        else:
            root, origin = resolve_data_dir(data_dir)
            folder = _folder(spec, root)
        found = _find_layout(spec, folder)
        if found is None:
            raise DataNotFoundError(_missing_message(spec, folder, origin))
        files = found
        for p in files.values():
            if p.name in spec.md5:
                check_digest(p, spec.md5[p.name], "md5")
    req = LoadRequest(files, user_path, val_fraction, seed, image_size, grayscale, _options(spec, options))
    data = dataclasses.replace(spec.load(req), name=spec.name)
    if binarize != "none":
        for split, part in data.splits().items():
            if len(part) and (float(part.x.min()) < 0.0 or float(part.x.max()) > 1.0):
                raise ValueError(f"binarize={binarize!r} needs data in [0, 1] but {name} {split} has values in "
                                 f"[{float(part.x.min()):g}, {float(part.x.max()):g}]; use binarize='none'")
        if binarize == "static":
            data = binarize_static(data, seed)
        else:
            data = dataclasses.replace(data, n_levels=2, binarize="dynamic")
    log.info("loaded %s (%d/%d/%d) in %.2f s from %s", name, len(data.train), len(data.val), len(data.test),
             time.perf_counter() - t0, data.source)
    return data


def dataset_status(data_dir: str | None = None) -> list[dict]:
    """One dict per registered dataset (for ``vaekit datasets``): name, description, available, where,
    how_to_get, downloadable."""
    root, origin = resolve_data_dir(data_dir)
    rows = []
    for spec in DATASETS.values():
        if spec.layouts:
            folder = _folder(spec, root)
            available, where = _find_layout(spec, folder) is not None, f"{folder} (data dir from {origin})"
        else:
            available, where = True, "the file or folder given as data.path" if spec.needs_path else "bundled"
        rows.append(dict(name=spec.name, description=spec.description, available=available, where=where,
                         how_to_get=_how_to_get(spec) if spec.layouts else spec.how_to_get,
                         downloadable=bool(spec.downloads)))
    return rows


def download(name: str, data_dir: str | None = None, *, force: bool = False) -> Path:
    """Download and verify dataset ``name`` into ``<data_dir>/<folder>``; returns the folder.

    Skips the download when the files are already there (unless ``force``). Needs internet access.
    """
    spec = get_spec(name)
    if not spec.downloads:
        raise ValueError(f"{name!r} has no download: {spec.how_to_get}")
    root, _ = resolve_data_dir(data_dir)
    folder = _folder(spec, root)
    if force or _find_layout(spec, folder) is None:
        fetch(spec.downloads, folder)
    return folder
