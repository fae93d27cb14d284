"""Image files streamed per batch: decoded (Pillow), cropped, resized and converted to uint8 in
``torch.utils.data`` worker processes, a few batches ahead, pinned and copied to the GPU without blocking.

The batch order is the trainer's (a seeded permutation saved in every checkpoint, so a resumed run reads the
same batches from the same position of the epoch); under torchrun each rank is handed only its part of every
batch and decodes only those files. A file that cannot be read is skipped (the batch is one example shorter; the
count is logged) or stops the run with a one-line error naming it, as ``on_error`` says.

Files come from a folder (``list_image_folder``) or from a ``.zip`` or uncompressed ``.tar`` archive (members
named ``archive.zip::member``), read in place: a tar archive's members are located once by their headers and
read at their offsets. A compressed tar (``.tar.gz``, ``.tgz``, ...) has no such offsets and is refused with what
to do instead.
"""

from __future__ import annotations

import logging
import os
import tarfile
import zipfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vaekit.data.rows import Rows

if TYPE_CHECKING:  # torch is imported where it is used, so `vaekit datasets` starts without it
    import torch

__all__ = ["ImageSpec", "FileRows", "decode_image", "stream_rows", "list_image_archive", "archive_kind",
           "ARCHIVE_SEP"]

log = logging.getLogger(__name__)
ARCHIVE_SEP = "::"  # "archive.zip::member/name.png"


class ImageSpec:
    """How a file becomes an example: colour ``mode`` ("L" or "RGB"), an optional centred ``crop`` (H, W) taken
    first, then ``size`` (H, W): resized to it (bicubic) when ``resize``, else required."""

    def __init__(self, mode: str, size: tuple[int, int], crop: tuple[int, int] | None = None,
                 resize: bool = True) -> None:
        self.mode, self.size, self.crop, self.resize = mode, (int(size[0]), int(size[1])), crop, resize

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, *self.size)


_COMPRESSED_TAR = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Open archives, per process and per version of the file (a rewritten archive is opened again): a worker forked
# from the training process must not share the parent's file offset, so a handle opened before the fork is never
# used after it. Keys (pid, path, mtime_ns, size); the tar index is plain data, shared.
_ZIPS: dict[tuple, zipfile.ZipFile] = {}
_TAR_FILES: dict[tuple, object] = {}
_TAR_INDEX: dict[tuple, dict[str, tuple[int, int]]] = {}  # (path, mtime_ns, size) -> {member: (data offset, size)}


def _version(archive: str) -> tuple[str, int, int]:
    st = os.stat(archive)
    return archive, st.st_mtime_ns, st.st_size


def archive_kind(path: str | Path) -> str | None:
    """"zip" or "tar" for an image archive vaekit reads in place, None for anything else (a folder); a compressed
    tar archive is a ValueError saying what to do."""
    name = str(path).lower()
    if not Path(path).is_file():
        return None
    if name.endswith(_COMPRESSED_TAR):
        raise ValueError(f"{path} is a compressed tar archive, whose images cannot be read one at a time; "
                         f"decompress it once (gunzip/bunzip2/unxz, giving a .tar) or extract it to a folder")
    return "zip" if name.endswith(".zip") else "tar" if name.endswith(".tar") else None


def _strip_dot(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _tar_index(archive: str) -> dict[str, tuple[int, int]]:
    """{member name: (offset of its data, size)} of the regular files in an uncompressed tar, from its headers."""
    version = _version(archive)
    if version not in _TAR_INDEX:
        try:
            with tarfile.open(archive, "r:") as t:
                # members stored as "./a/1.png" (tar -C dir .) are named "a/1.png", as in a zip
                _TAR_INDEX[version] = {_strip_dot(m.name): (m.offset_data, m.size) for m in t if m.isfile()}
        except (tarfile.TarError, OSError) as e:
            raise ValueError(f"could not read {archive} as a .tar archive ({e}); the file is damaged") from None
    return _TAR_INDEX[version]


def _open_bytes(name: str):
    from io import BytesIO

    if ARCHIVE_SEP not in name:
        return name
    archive, member = name.split(ARCHIVE_SEP, 1)
    key = (os.getpid(), *_version(archive))
    if archive.lower().endswith(".tar"):
        offset, size = _tar_index(archive)[member]
        if key not in _TAR_FILES:
            _TAR_FILES[key] = open(archive, "rb")  # noqa: SIM115 - kept open for this process's reads
        f = _TAR_FILES[key]
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise OSError(f"{archive} ends inside member {member!r}")
        return BytesIO(data)
    if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(archive)
    return BytesIO(_ZIPS[key].read(member))


def decode_image(name: str, spec: ImageSpec) -> np.ndarray:
    """The file ``name`` as a (C, H, W) uint8 array; ValueError naming it when it cannot be read or has the
    wrong size."""
    from PIL import Image

    from vaekit.data.files import read_image

    try:
        src = _open_bytes(name)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"image {name!r} cannot be read ({type(e).__name__}: {e}); replace or remove it") from None
    if not isinstance(src, str):
        try:
            with Image.open(src) as im:
                im.load()
                im = im.convert(spec.mode)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for damaged data
            raise ValueError(f"image {name!r} is truncated or corrupt ({type(e).__name__}); replace or remove it") from None
    else:
        im = read_image(src, spec.mode)
    if spec.crop is not None:
        ch, cw = spec.crop
        left, top = (im.width - cw) // 2, (im.height - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    if im.size != (spec.size[1], spec.size[0]):
        if not spec.resize:
            raise ValueError(f"image {name!r} is {im.width}x{im.height} (WxH), the others {spec.size[1]}x"
                             f"{spec.size[0]}; set data.image_size=[H,W] to resize them")
        im = im.resize((spec.size[1], spec.size[0]), Image.Resampling.BICUBIC)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)


class _Batches:
    """The map-style dataset the DataLoader reads: key = a list of file positions, value = (uint8 (b, C, H, W)
    of the readable ones, [(position, reason)] of the others). Errors are returned, never raised, so the
    training process reports them in one line."""

    def __init__(self, files: Sequence[str], spec: ImageSpec) -> None:
        self.files, self.spec = files, spec

    def __getitem__(self, positions: list[int]):
        import torch

        good, bad = [], []
        for p in positions:
            try:
                good.append(decode_image(self.files[p], self.spec))
            except ValueError as e:
                bad.append((p, str(e)))
        x = np.stack(good) if good else np.zeros((0, *self.spec.shape), np.uint8)
        return torch.from_numpy(x), bad


class FileRows(Rows):
    """Images read from files per batch (see the module docstring). ``files``: one name per example (a path,
    or ``archive.zip::member``); ``index`` picks this split's files."""

    dtype = np.uint8
    scale = 255.0

    def __init__(self, files: Sequence[str], spec: ImageSpec, *, workers: int = 2, on_error: str = "skip",
                 index: np.ndarray | None = None, device: "torch.device | str" = "cpu") -> None:
        import torch

        self.all_files, self.spec, self.workers, self.on_error = list(files), spec, int(workers), on_error
        self.index = np.arange(len(self.all_files)) if index is None else np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *spec.shape)
        self._device = torch.device(device)
        self._queue: deque = deque()  # planned batches not yet taken: (positions tensor)
        self._it = None
        self.skipped: dict[int, str] = {}  # file position -> reason, over the whole run

    @property
    def device(self):
        return self._device

    def value_range(self):
        return 0.0, 1.0

    def subset(self, index):
        return FileRows(self.all_files, self.spec, workers=self.workers, on_error=self.on_error,
                        index=self.index[np.asarray(index, dtype=np.int64)], device=self._device)

    def to(self, device):
        return FileRows(self.all_files, self.spec, workers=self.workers, on_error=self.on_error, index=self.index,
                        device=device)

    def plan(self, batches):
        import torch
        from torch.utils.data import DataLoader

        self._close()
        keys = [self.index[b.cpu().numpy()].tolist() for b in batches]
        self._queue = deque(b.cpu() for b in batches)
        if not keys:
            return
        pin = self._device.type == "cuda"
        gen = torch.Generator().manual_seed(0)  # the loader's seed draw must not touch the global RNG stream
        self._it = iter(DataLoader(_Batches(self.all_files, self.spec), sampler=keys, batch_size=None,
                                   num_workers=self.workers, pin_memory=pin, generator=gen,
                                   prefetch_factor=4 if self.workers else None))

    def _close(self) -> None:
        self._it, self._queue = None, deque()  # the DataLoader's workers end with their iterator

    def take(self, idx, device=None):
        import torch

        device = torch.device(device) if device is not None else self._device
        idx = idx.cpu()
        if self._it is not None and self._queue and torch.equal(self._queue[0], idx):
            self._queue.popleft()
            xb, bad = next(self._it)
        else:  # not what was planned (or nothing was): decoded here, in this process
            self._close()
            xb, bad = _Batches(self.all_files, self.spec)[self.index[idx.numpy()].tolist()]
        self._report(bad)
        xb = xb.to(device, non_blocking=True)
        return xb.to(torch.float32).div_(self.scale)

    def decode(self, chunk: int = 512):
        import torch

        batches = list(torch.arange(len(self)).split(chunk))
        self.plan(batches)
        parts = [self.take(b, self._device) for b in batches]
        return torch.cat(parts) if parts else torch.zeros((0, *self.shape[1:]), dtype=torch.float32)

    def iter_uint8(self, chunk: int = 256):
        """Every image in order, decoded by the workers: per chunk of n positions, yields (uint8 (b, C, H, W), the
        positions of those b images, n); an unreadable image is left out (on_error=skip) or stops with its one-line
        error."""
        import torch

        batches = list(torch.arange(len(self)).split(chunk))
        self.plan(batches)
        for b in batches:
            before = set(self.skipped)
            xb = self.take(b, "cpu")  # float32 k / 255: back to the exact uint8 values
            bad = set(self.skipped) - before  # file positions skipped in this chunk
            kept = [int(i) for i in b if int(self.index[int(i)]) not in bad]
            yield xb.mul_(255.0).round_().to(torch.uint8).numpy(), kept, len(b)

    def _report(self, bad: list[tuple[int, str]]) -> None:
        if not bad:
            return
        if self.on_error == "error":
            self._close()
            raise ValueError(f"{bad[0][1]} (data.on_error=skip skips unreadable images)")
        new = [(p, r) for p, r in bad if p not in self.skipped]
        self.skipped.update(new)
        if new:
            log.warning("skipped %d unreadable image(s), %d so far; first: %s", len(new), len(self.skipped), new[0][1])

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_it"], d["_queue"] = None, deque()
        return d


def list_image_archive(path: str | Path) -> tuple[list[str], np.ndarray | None]:
    """The images in a ``.zip`` or ``.tar`` archive (``archive::member`` names, sorted) and their labels: one class
    per top-level folder of the archive when every image is in one (sorted names -> 0, 1, ...), else None."""
    from vaekit.data.files import IMAGE_SUFFIXES

    kind = archive_kind(path)
    if kind == "tar":
        members = list(_tar_index(str(path)))
    else:
        try:
            with zipfile.ZipFile(path) as z:
                members = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"could not read {path} as a .zip archive ({e}); the file is damaged") from None
    names = sorted(n for n in members if n.lower().endswith(IMAGE_SUFFIXES)
                   and not any(part.startswith(".") for part in n.split("/")))
    if not names:
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    tops = [n.split("/")[0] if "/" in n else None for n in names]
    labels = None
    if all(t is not None for t in tops):
        classes = sorted(set(tops))
        labels = np.array([classes.index(t) for t in tops], dtype=np.int64) if len(classes) > 1 else None
    return [f"{path}{ARCHIVE_SEP}{n}" for n in names], labels


def stream_rows(path: str | Path, *, image_size: tuple[int, int] | None = None, grayscale: bool | None = None,
                crop: tuple[int, int] | None = None, workers: int = 2,
                on_error: str = "skip") -> tuple[FileRows, np.ndarray | None]:
    """The images of a folder (class sub-folders give labels, as ``read_image_folder``) or a ``.zip``/``.tar``
    archive as ``FileRows``, and their labels. The colour mode (grayscale None) and the size (image_size None) are
    those of the first image; the others are converted to them (a differing size is an unreadable file then)."""
    from vaekit.data.files import _GREY_MODES, list_image_folder

    p = Path(path).expanduser()
    if archive_kind(p) is not None:
        names, y = list_image_archive(p)
    else:
        files, y, _ = list_image_folder(p)
        names = [str(f) for f in files]
    from PIL import Image

    with Image.open(_open_bytes(names[0])) as im:  # the header only
        first_mode, first_size = im.mode, (im.height, im.width)
    mode = "L" if (grayscale if grayscale is not None else first_mode in _GREY_MODES) else "RGB"
    size = tuple(image_size) if image_size is not None else (crop or first_size)
    spec = ImageSpec(mode, size, crop=crop, resize=image_size is not None)
    return FileRows(names, spec, workers=workers, on_error=on_error), y
