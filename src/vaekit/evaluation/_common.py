"""Helpers shared by the evaluators: eval mode, seeding without touching the caller's RNG, batching."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["as_data_tensor", "model_device", "eval_mode", "evaluation_context", "batches", "mean_and_stderr"]


def as_data_tensor(x: Any) -> torch.Tensor:
    """The (N, *shape) data tensor of ``x``: a Tensor, or an object with an ``.x`` tensor (``ArrayData``)."""
    t = getattr(x, "x", x)
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected a data tensor of shape (N, ...) or an object with .x, got {type(x).__name__}")
    if t.dim() < 2 or t.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of shape (N, ...), got {tuple(t.shape)}")
    return t


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _check_positive(name: str, value: int) -> int:
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
            torch.set_num_threads(_check_positive("num_threads", num_threads))
        stack.enter_context(eval_mode(model))
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)


def batches(x: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``x`` of at most ``batch_size`` examples, moved to ``device``."""
    batch_size = _check_positive("batch_size", batch_size)
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size].to(device, non_blocking=True)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error std / sqrt(N) (sample std, N - 1 in the denominator; NaN for N = 1)."""
    v = values.double().flatten()
    n = v.numel()
    mean = float(v.mean())
    stderr = float(v.std(correction=1) / math.sqrt(n)) if n > 1 else float("nan")
    return mean, stderr
