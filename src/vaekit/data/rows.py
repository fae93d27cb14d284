"""Examples that are not held as one float32 tensor: compact in memory, memory-mapped, or streamed from files.

A ``Rows`` object stands for N examples of one shape and hands out float32 batches on a device:
``rows.take(idx, device)`` returns the examples ``idx`` (a (B,) int64 tensor) as (B, *shape) float32, with the
same values the float32 path would hold (stored value / ``scale``, converted by the same operations, so a
training run gives the same numbers bit for bit).

- ``TensorRows``: a uint8 tensor (8-bit images, binary data) on the training device, converted per batch (4x less
  memory than float32).
- ``ArrayRows``: a ``.npy`` file or a folder of ``.npy`` shards opened with mmap, read per batch; resident memory
  stays bounded (pages read are dropped again after ``drop_every`` batches).
- ``FileRows`` (``vaekit.data.stream``): image files decoded in ``torch.utils.data`` worker processes.

``plan(batches)`` tells a source which batches come next (the rest of the epoch), so a streaming source can
decode ahead; ``take`` then returns them in that order.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so `vaekit datasets` starts without it
    import torch

__all__ = ["Rows", "TensorRows", "ArrayRows", "open_npy", "npy_shards", "cat_rows"]


class Rows:
    """N examples of one shape, read as float32 batches. ``index`` (sorted, int64) picks this split's examples
    out of the underlying store; None means all of them."""

    shape: tuple[int, ...]  # (N, *example shape)
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def device(self) -> "torch.device":
        import torch

        return torch.device("cpu")

    @property
    def nbytes(self) -> int:
        """Bytes this object keeps in memory (0 for data read from files per batch)."""
        return 0

    def value_range(self) -> tuple[float, float]:
        """Bounds of the example values (exact where cheap to know, else those the stored dtype allows)."""
        dtype = np.dtype(getattr(self, "dtype", np.float32))
        if dtype.kind in "ub":
            return 0.0, float(np.iinfo(dtype).max if dtype.kind == "u" else 1) / self.scale
        return -float("inf"), float("inf")

    def take(self, idx: "torch.Tensor", device: "torch.device | str | None" = None) -> "torch.Tensor":
        """Examples ``idx`` as a (B, *shape) float32 tensor on ``device`` (default: ``self.device``)."""
        raise NotImplementedError

    def subset(self, index: np.ndarray) -> "Rows":
        """The examples ``index`` (positions within this object) as a new object sharing the store."""
        raise NotImplementedError

    def to(self, device: "torch.device | str") -> "Rows":
        """The same rows, batches handed out on ``device`` (a compact tensor moves there)."""
        return self

    def plan(self, batches: Sequence["torch.Tensor"]) -> None:
        """The batches ``take`` will be asked for next, in order (a streaming source decodes ahead)."""

    def decode(self, chunk: int = 4096) -> "torch.Tensor":
        """All examples as one float32 tensor (for the small validation and test splits)."""
        import torch

        parts = [self.take(torch.arange(i, min(i + chunk, len(self))), self.device) for i in range(0, len(self), chunk)]
        return torch.cat(parts) if parts else torch.zeros((0, *self.shape[1:]), dtype=torch.float32)

    def __getitem__(self, idx) -> "torch.Tensor":
        """rows[idx] -> float32 examples on ``self.device`` (an index tensor or list, or a slice)."""
        import torch

        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        return self.take(torch.as_tensor(idx, dtype=torch.int64), self.device)


def _to_float(stored: "torch.Tensor", scale: float) -> "torch.Tensor":
    """stored values -> float32 / scale: the conversion the float32 path does once at load time."""
    import torch

    x = stored.to(torch.float32)
    return x.div_(scale) if scale != 1.0 else x


class TensorRows(Rows):
    """Examples kept as a compact tensor (uint8) on one device; each batch converted to float32 where it lies."""

    def __init__(self, stored: "torch.Tensor", scale: float) -> None:
        self.stored, self.scale = stored, float(scale)
        self.shape = tuple(int(s) for s in stored.shape)

    @property
    def device(self) -> "torch.device":
        return self.stored.device

    @property
    def nbytes(self) -> int:
        return self.stored.numel() * self.stored.element_size()

    def take(self, idx, device=None):
        xb = self.stored.index_select(0, idx.to(self.stored.device))  # (B, *shape) uint8
        if device is not None and xb.device != device:
            xb = xb.to(device, non_blocking=True)
        return _to_float(xb, self.scale)

    def subset(self, index):
        import torch

        return TensorRows(self.stored[torch.as_tensor(index, dtype=torch.int64)], self.scale)

    def to(self, device):
        return TensorRows(self.stored.to(device), self.scale)

    def decode(self, chunk: int = 4096):
        return _to_float(self.stored, self.scale)

    def value_range(self):
        if self.stored.numel() == 0:
            return 0.0, 0.0
        return float(self.stored.min()) / self.scale, float(self.stored.max()) / self.scale


# ------------------------------------------------------------------------------------------ memory-mapped
def open_npy(path: str | Path) -> tuple[np.ndarray, mmap.mmap]:
    """A ``.npy`` file as a read-only array over an mmap of the file (no pickle), and that mmap."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran, dtype = read_header[version](fh)
        except (ValueError, OSError, EOFError, SyntaxError) as e:
            raise ValueError(f"could not read {path} as a .npy array ({e}); the file is corrupt") from None
        offset = fh.tell()
        if dtype.hasobject or fortran:
            raise ValueError(f"{path}: {'object' if dtype.hasobject else 'Fortran-order'} arrays cannot be "
                             f"memory-mapped; save it with np.save(path, np.ascontiguousarray(x))")
        need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if os.fstat(fh.fileno()).st_size < need:
            raise ValueError(f"{path} is shorter than its header says ({need} bytes); the file is truncated")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    arr = np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=offset).reshape(shape)
    return arr, mm


def npy_shards(path: str | Path) -> list[Path]:
    """The ``.npy`` files making up a dataset: the file itself, or a folder's ``*.npy`` in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.npy") if not f.name.startswith("."))
        if not files:
            raise ValueError(f"{p} holds no .npy shards")
        return files
    return [p]


class ArrayRows(Rows):
    """Examples in ``.npy`` shards, memory-mapped, read per batch and converted (stored / ``scale``) on the
    target device. Every ``drop_every`` batches the pages read so far are released (``madvise``), so resident
    memory stays bounded however large the files are."""

    def __init__(self, files: Sequence[str | Path], scale: float = 1.0, index: np.ndarray | None = None,
                 drop_every: int = 64, device: "torch.device | str" = "cpu") -> None:
        import torch

        self.files, self.scale, self.drop_every = [Path(f) for f in files], float(scale), int(drop_every)
        self._device = torch.device(device)
        opened = [open_npy(f) for f in self.files]
        self._arrays, self._maps = [a for a, _ in opened], [m for _, m in opened]
        shapes = {a.shape[1:] for a in self._arrays}
        dtypes = {a.dtype for a in self._arrays}
        if len(shapes) > 1 or len(dtypes) > 1:
            raise ValueError(f"the .npy shards in {self.files[0].parent} differ in example shape or dtype "
                             f"({sorted(map(str, shapes))}, {sorted(map(str, dtypes))}); write them alike")
        self._starts = np.cumsum([0] + [len(a) for a in self._arrays])  # shard k holds [starts[k], starts[k+1])
        total = int(self._starts[-1])
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        n = total if self.index is None else len(self.index)
        self.shape = (n, *self._arrays[0].shape[1:])
        self.dtype = self._arrays[0].dtype
        self._reads = 0

    def subset(self, index):
        base = np.asarray(index, dtype=np.int64) if self.index is None else self.index[np.asarray(index)]
        return self.with_index(base)

    def base_index(self) -> np.ndarray:
        return np.arange(int(self._starts[-1])) if self.index is None else self.index

    def same_store(self, other: "ArrayRows") -> bool:
        return self.files == other.files and self.scale == other.scale

    def with_index(self, index: np.ndarray) -> "ArrayRows":
        return ArrayRows(self.files, self.scale, index, self.drop_every, self._device)

    @property
    def device(self):
        return self._device

    def to(self, device):
        return ArrayRows(self.files, self.scale, self.index, self.drop_every, device)

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The stored rows at ``positions`` (of this split), in that order, as one in-memory array."""
        g = positions if self.index is None else self.index[positions]
        out = np.empty((len(g), *self.shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self._starts, g, side="right") - 1
        for k in np.unique(shard):
            m = shard == k
            out[m] = self._arrays[k][g[m] - self._starts[k]]
        self._reads += 1
        if self.drop_every and self._reads % self.drop_every == 0:
            self.release()
        return out

    def release(self) -> None:
        """Drop the pages read so far from this process's resident memory (they are re-read on demand)."""
        for m in self._maps:
            if hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED)

    def take(self, idx, device=None):
        import torch

        device = torch.device(device) if device is not None else self._device
        xb = torch.from_numpy(self.read(idx.cpu().numpy()))  # (B, *shape) as stored
        if device.type == "cuda":
            xb = xb.pin_memory().to(device, non_blocking=True)
        return _to_float(xb, self.scale) if xb.dtype != torch.float32 or self.scale != 1.0 else xb

    def __getstate__(self) -> dict:  # worker processes re-open the files
        return {"files": self.files, "scale": self.scale, "index": self.index, "drop_every": self.drop_every,
                "device": str(self._device)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def cat_rows(a: Rows, b: Rows) -> Rows:
    """The examples of ``a`` then those of ``b`` (two splits of one store, or two compact tensors)."""
    import torch

    if isinstance(a, TensorRows) and isinstance(b, TensorRows) and a.scale == b.scale:
        return TensorRows(torch.cat([a.stored, b.stored]), a.scale)
    base = getattr(a, "base_index", None)
    if base is not None and type(a) is type(b) and a.same_store(b):
        return a.with_index(np.concatenate([base(), b.base_index()]))
    raise ValueError(f"cannot join {type(a).__name__} and {type(b).__name__} examples; use data.merge_val=false")
