"""In-memory data containers and seeded splitting.

A dataset is held as tensors (no per-item Dataset objects): ``ArrayData`` is one split, ``DataSplits`` the
train/val/test triple with the metadata the rest of vaekit needs (per-example shape, number of discrete levels,
where the data came from).

``n_levels`` tells evaluation how to report bits/dim: for discrete data with ``n_levels = n`` stored as
``x = k / (n - 1)``, k in {0..n-1}, a continuous density on dequantised data gives the discrete bound
``log P(k) >= E_u[log p((k + u) / n)] - D log n`` (Theis et al. 2016, "A note on the evaluation of generative
models", Sec. 3.1), see ``vaekit.data.transforms.dequantize``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so `vaekit datasets` starts without it
    import torch

__all__ = ["ArrayData", "DataSplits", "DataNotFoundError", "split_indices", "to_labels"]


class DataNotFoundError(FileNotFoundError):
    """Raised when the files a dataset needs are absent; the message says where they were looked for."""


@dataclass
class ArrayData:
    """One split held in memory.

    x: (N, *shape) float32; images in [0, 1] laid out (C, H, W), tabular data (D,). Data loaded with
        ``storage`` other than float32 hold a ``vaekit.data.rows.Rows`` instead (uint8 in memory, memory-mapped
        ``.npy``, streamed files), which hands out float32 batches; ``values()`` gives the float32 tensor either way.
    y: (N,) int64 labels when known, else None.
    factors: (N, K) int64 ground-truth factor classes when the data have known generative factors (dSprites).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    factors: torch.Tensor | None = None

    def __post_init__(self) -> None:
        import torch

        from vaekit.data.rows import Rows

        if isinstance(self.x, Rows):
            pass
        elif self.x.dtype != torch.float32:
            raise ValueError(f"ArrayData.x must be float32, got {self.x.dtype}; convert with x.float()")
        if self.y is not None and (self.y.dtype != torch.int64 or tuple(self.y.shape) != tuple(self.x.shape[:1])):
            raise ValueError(
                f"ArrayData.y must be int64 of shape ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}"
            )
        if self.factors is not None and (self.factors.dtype != torch.int64 or self.factors.ndim != 2
                                         or self.factors.shape[0] != self.x.shape[0]):
            raise ValueError(f"ArrayData.factors must be int64 of shape ({self.x.shape[0]}, K), got "
                             f"{self.factors.dtype} {tuple(self.factors.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def values(self) -> torch.Tensor:
        """x as one float32 tensor (decoded when it is held as ``Rows``)."""
        from vaekit.data.rows import Rows

        return self.x.decode() if isinstance(self.x, Rows) else self.x

    def take(self, index) -> "ArrayData":
        """The examples ``index`` (a bool mask or int64 positions), held the same way."""
        import torch

        from vaekit.data.rows import Rows

        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        x = self.x.subset(index.cpu().numpy()) if isinstance(self.x, Rows) else self.x[index]
        return ArrayData(x, None if self.y is None else self.y[index],
                         None if self.factors is None else self.factors[index])


@dataclass
class DataSplits:
    """A dataset split into train / val / test.

    shape: per-example shape, e.g. (1, 28, 28).
    n_levels: number of discrete values per dimension of what the model sees: 256 for 8-bit images, 2 for
        binary (including ``binarize="dynamic"``, where ``x`` still holds grey levels that each batch turns into
        a fresh binary sample), 17 for scikit-learn digits (0..16), None for real-valued data.
    name: registry name; source: where the data were read from (paths), for run metadata.
    binarize: the binarisation applied ("none", "static") or still to apply per batch ("dynamic").
    """

    train: ArrayData
    val: ArrayData
    test: ArrayData
    shape: tuple[int, ...]
    n_levels: int | None
    name: str
    source: str
    binarize: str = "none"

    def splits(self) -> dict[str, ArrayData]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def select_classes(self, classes: list[int]) -> "DataSplits":
        """The same splits keeping only examples whose label is in ``classes`` (one model per class, or all
        classes but one for one-class-out anomaly detection)."""
        import torch

        if any(a.y is None for a in (self.train, self.val, self.test)):
            raise ValueError(f"data.classes needs labels, but {self.name!r} data has none; drop data.classes")
        keep = torch.tensor(sorted({int(c) for c in classes}), dtype=torch.int64)
        known = torch.unique(self.train.y)
        missing = [int(c) for c in keep if c not in known]
        if missing or len(keep) == 0:
            raise ValueError(f"data.classes {list(classes)} names labels not in the training data "
                             f"(labels are {known.tolist()}); choose among those")

        def sub(a: ArrayData) -> ArrayData:
            return a.take(torch.isin(a.y, keep))

        return dataclasses.replace(self, train=sub(self.train), val=sub(self.val), test=sub(self.test))

    def merge_val(self) -> "DataSplits":
        """Validation examples appended to the training split, validation left empty: the final fit on all
        labelled-for-training data once a recipe is fixed (test untouched). Labels are kept when both have them."""
        import torch

        from vaekit.data.rows import Rows, cat_rows

        tr, va = self.train, self.val
        y = torch.cat([tr.y, va.y]) if tr.y is not None and va.y is not None else None
        f = torch.cat([tr.factors, va.factors]) if tr.factors is not None and va.factors is not None else None
        x = cat_rows(tr.x, va.x) if isinstance(tr.x, Rows) else torch.cat([tr.x, va.x])
        empty = va.take(torch.zeros(0, dtype=torch.int64))
        return dataclasses.replace(self, train=ArrayData(x, y, f), val=empty)


def subset_index(n: int, limit: int | None = None, first: int | None = None) -> slice | torch.Tensor:
    """Which of n examples to use: all; the ``first`` in file order; or ``limit`` drawn across them without
    replacement by a fixed generator (seed 0, file order kept), so every run and command sees the same points.
    Index x and its labels with the result. (Ordered files such as binarized MNIST's test set, sorted by digit,
    make the first N unrepresentative.)"""
    import torch

    if limit is not None and first is not None:
        raise ValueError("give --limit or --first, not both")
    k = limit if limit is not None else first
    if k is None:
        return slice(None)
    if k < 1:
        raise ValueError(f"--limit / --first must be at least 1, got {k}")
    if first is not None or k >= n:
        return slice(0, k)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].sort().values


def split_indices(
    n: int, *, test_fraction: float, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded disjoint (train, val, test) index arrays covering range(n), each sorted.

    test takes ``round(test_fraction * n)`` examples; val takes ``round(val_fraction * rest)`` of the remaining
    (so ``val_fraction`` is always a fraction of the training pool, as when carving val out of an official train
    set). The test indices depend only on ``n``, ``test_fraction`` and ``seed``, not on ``val_fraction``.
    """
    for what, f in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{what} must be in [0, 1), got {f}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * (n - n_test)))
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} examples are too few to split into training, validation and test data (a "
                         f"fraction {test_fraction:g} is held out for test, then data.val_fraction={val_fraction:g} "
                         f"for validation); give more examples")
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def to_labels(y: np.ndarray | None, what: str) -> torch.Tensor | None:
    """Integer class labels as an int64 tensor; ValueError if they are not whole numbers."""
    import torch

    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"labels in {what} must be whole numbers (class ids), got dtype {y.dtype}")
    return torch.from_numpy(y.astype(np.int64))
