"""Small helpers every package shares: atomic file writes, eval mode, batching, device and dtype of a model,
mean and standard error. No vaekit imports: anything may import this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["full_precision", "atomic_write", "atomic_write_bytes", "atomic_write_text", "as_data_tensor", "to_tensor", "model_device",
           "check_positive",
           "model_dtype", "eval_mode", "evaluation_context", "batches", "mean_and_stderr"]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it and rename it onto ``path``; on any
    failure the temporary file is removed and the old ``path`` (if any) is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write data to path via a temporary file and rename (the old file survives any failure)."""
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, w)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """t in float32 when autocast made it bf16/fp16 (log-densities, KLs and losses stay float32); else t."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def as_data_tensor(x: Any) -> torch.Tensor:
    """The (N, *shape) data tensor of ``x``: a Tensor, a numpy array (converted to torch's default float dtype,
    values unchanged), or an object with an ``.x`` tensor (``ArrayData``)."""
    t = getattr(x, "x", x)
    if isinstance(t, np.ndarray):
        if t.dtype.kind not in "biuf":
            raise ValueError(f"expected numbers, got a numpy array of dtype {t.dtype}")
        t = torch.as_tensor(t, dtype=torch.get_default_dtype())
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected a data tensor or numpy array of shape (N, ...), or an object with .x, "
                         f"got {type(x).__name__}")
    if t.dim() < 2 or t.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of shape (N, ...), got {tuple(t.shape)}")
    return t


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def check_positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, the previous training mode restored afterwards (also on error).

    Gradients stay on: inference-time optimisation (refinement, inpainting) needs them."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@contextlib.contextmanager
def evaluation_context(model: nn.Module, seed: int | None = None, num_threads: int | None = None) -> Iterator[None]:
    """``model.eval()`` + ``torch.no_grad()``; optionally a private RNG stream and a CPU thread count.

    seed: if given, the global torch RNG (which ``model.log_weights`` / ``elbo_terms`` draw from) is seeded
        inside ``torch.random.fork_rng``, so the caller's RNG state is the same afterwards; None draws from
        (and advances) the caller's global RNG.
    num_threads: if given, ``torch.set_num_threads`` for the duration (restored afterwards).
    Training mode and the thread count are restored on exit, also on error.
    """
    old_threads = torch.get_num_threads()
    dev = model_device(model)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=devices))
            torch.manual_seed(int(seed))
        stack.enter_context(torch.no_grad())
        if num_threads is not None:
            torch.set_num_threads(check_positive("num_threads", num_threads))
        stack.enter_context(eval_mode(model))
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)


def batches(x: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``x`` of at most ``batch_size`` examples, moved to ``device``."""
    batch_size = check_positive("batch_size", batch_size)
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size].to(device, non_blocking=True)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error std / sqrt(N) (sample std, N - 1 in the denominator; NaN for N = 1)."""
    v = values.double().flatten()
    n = v.numel()
    mean = float(v.mean())
    stderr = float(v.std(correction=1) / math.sqrt(n)) if n > 1 else float("nan")
    return mean, stderr


def to_tensor(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``dtype`` from a tensor or an array-like (numpy array, nested lists)."""
    return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x), dtype=dtype)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter or buffer (float32 if it has none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32
