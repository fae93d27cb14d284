"""Binarisation and dequantisation of data in [0, 1].

Binarisation treats a grey level x in [0, 1] as the probability of a 1 and draws x_bin ~ Bernoulli(x):
- ``static``: one fixed-seed sample at load time for every split (a fixed binarised dataset, as in
  Salakhutdinov & Murray 2008 / Larochelle & Murray 2011);
- ``dynamic``: a fresh sample for every batch (Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5),
  applied by the function ``make_batch_transform`` returns.

Uniform dequantisation (Theis et al. 2016, "A note on the evaluation of generative models", Sec. 3.1; Uria et
al. 2013): discrete data stored as x = k / (n - 1), k in {0, ..., n-1}, become x_deq = (k + u) / n with
u ~ U[0, 1) per value; for 8-bit images x_deq = (255 x + u) / 256. x_deq lies in [0, 1) and floor(n x_deq) = k.
A density p on x_deq defines a discrete model P(k) = int p((k + u) / n) / n^D du >= by Jensen
``log P(k) >= E_u[log p(x_deq)] - D log n``: subtract log n (log 256 for 8-bit data) per dimension from the
continuous log-density before converting to bits/dim, i.e. bits/dim = -(log p(x_deq) - D log n) / (D log 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from vaekit.data.base import ArrayData, DataSplits

if TYPE_CHECKING:  # torch is imported where it is used, so `vaekit datasets` starts without it
    import torch

__all__ = ["BINARIZE_MODES", "BatchTransform", "check_binarize", "binarize_static", "dequantize", "make_batch_transform"]

BINARIZE_MODES = ("none", "static", "dynamic")
BatchTransform = Callable[["torch.Tensor", "torch.Generator | None"], "torch.Tensor"]


def check_binarize(binarize: str) -> None:
    """ValueError if ``binarize`` is not one of BINARIZE_MODES."""
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {', '.join(BINARIZE_MODES)}; got {binarize!r}")


def binarize_static(data: DataSplits, seed: int) -> DataSplits:
    """Replace every split by one Bernoulli sample drawn with a generator seeded by ``seed`` (train, val, test in
    that order). Deterministic for a seed; n_levels becomes 2."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    out = {k: ArrayData(torch.bernoulli(s.x, generator=g), s.y) for k, s in data.splits().items()}
    return DataSplits(**out, shape=data.shape, n_levels=2, name=data.name, source=data.source, binarize="static")


def dequantize(x: torch.Tensor, n_levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly dequantise x = k / (n - 1): returns (k + u) / n, u ~ U[0, 1), same shape (B, ...) as x.

    k is recovered as round(x (n - 1)) so float error in x does not move a value to a neighbouring bin. The
    result is clamped below (k + 1) / n so that float32 rounding of k + u can never reach the next bin (for n a
    power of two this makes floor(n x_deq) == k exact).
    """
    import torch

    n = float(n_levels)
    k = torch.round(x * (n - 1.0))
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    upper = torch.nextafter((k + 1.0) / n, torch.zeros((), device=x.device, dtype=x.dtype))
    return torch.minimum((k + u) / n, upper)


def make_batch_transform(binarize: str, dequantize: bool, n_levels: int | None) -> BatchTransform | None:
    """The per-batch transform for training, or None when batches are used as stored.

    binarize="dynamic": fn(x, g) = Bernoulli(x) sample drawn with generator g (fresh per call).
    dequantize=True: fn(x, g) = (k + u) / n with n = n_levels (see ``dequantize``); needs discrete data.
    The generator must live on the same device as x (None uses torch's default generator for that device).
    """
    import torch

    check_binarize(binarize)
    if dequantize and binarize == "dynamic":
        raise ValueError("dequantize and binarize='dynamic' exclude each other: binary data are already discrete; "
                         "use a Bernoulli likelihood without dequantisation")
    if dequantize:
        if n_levels is None or n_levels < 2:
            raise ValueError("dequantize needs discrete data (n_levels >= 2) but this dataset is real-valued; "
                             "turn dequantisation off")
        levels = int(n_levels)

        def _dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return _deq(x, levels, generator)

        return _dequantize
    if binarize == "dynamic":

        def _binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return torch.bernoulli(x, generator=generator)

        return _binarize
    return None


_deq = dequantize  # the parameter name of make_batch_transform shadows the function inside it
