"""Process-level tuning that only an application may do, at start-up: the CLI calls ``tune_process()`` first.

Library code never calls this module (a library must leave process-wide state as it found it). A Python user who
wants the same speed calls ``vaekit.tuning.tune_process()`` at the top of their script, before any torch op.

- Denormals: ``torch.set_flush_denormal(True)`` sets the flag (x86 MXCSR FTZ/DAZ) of the calling thread; OpenMP
  worker threads copy it when they are created, so it must be set before the first parallel op of the process.
  Dead ReLUs leave Adam's state subnormal, which is slow (bench/throughput.py).
- glibc malloc: raising the mmap and trim thresholds (``mallopt``, documented in mallopt(3); the same as
  MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment) stops per-step tensors from being mmap'ed
  and trimmed at every step. The threshold cannot go above 32 MiB, and a conv step has larger buffers (im2col of
  a batch of 128 64x64 images: ~64 MB), each mapped, faulted in page by page and unmapped at every step: 0.27 of
  1.0 CPU-seconds per step in the kernel for the mnist-conv model on 64x64 RGB. So allocations are also kept off
  mmap altogether (M_MMAP_MAX = 0, MALLOC_MMAP_MAX_ in the environment): everything comes from the heap, and
  freed memory above the trim threshold still goes back to the system from its top. The only ctypes calls in
  vaekit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

__all__ = ["tune_process", "flush_denormals", "tune_malloc"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def flush_denormals() -> bool:
    """Flush subnormal floats to zero from now on (call before the first parallel op); False where unsupported."""
    return bool(torch.set_flush_denormal(True))


def tune_malloc() -> bool:
    """Raise glibc's mmap (to its 64-bit maximum, 32 MiB) and trim (1 GiB) thresholds and allocate nothing with
    mmap (M_MMAP_MAX = 0); False where there is no glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok1 = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        ok2 = libc.mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
        ok3 = libc.mallopt(_M_MMAP_MAX, 0)
        return bool(ok1 and ok2 and ok3)
    except (OSError, AttributeError):
        return False


def tune_process(denormals: bool = True, malloc: bool = True) -> dict[str, bool]:
    """Apply both settings; returns which took effect."""
    return {"flush_denormals": flush_denormals() if denormals else False,
            "tune_malloc": tune_malloc() if malloc else False}
