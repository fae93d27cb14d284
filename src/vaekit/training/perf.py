"""CPU performance settings the trainer applies while it runs (measured in bench/throughput.py)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator

import torch

__all__ = ["tune_malloc", "flush_denormals", "make_adam"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds so per-step tensors are reused, not mmap'ed and trimmed each step.

    The same as setting MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ before start-up. Process-wide and
    harmless; returns False where there is no glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok1 = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        ok2 = libc.mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
        return bool(ok1 and ok2)
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush subnormal floats to zero inside the block (dead ReLUs leave Adam's state subnormal, which is slow)."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def make_adam(params, *, lr: float, weight_decay: float = 0.0, fused: bool = True) -> torch.optim.Optimizer:
    """Adam, fused (one kernel for all parameters) where this build supports it, else foreach."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
