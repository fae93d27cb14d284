"""Leave the process as a library call found it: thread count, global RNGs, the denormal flag.

The trainer sets ``train.threads`` and draws the model's noise from torch's global RNG (it restores both itself);
process tuning (denormals, malloc) is the CLI's alone (``vaekit.tuning``). A CLI run owns its process, but a call
from someone's program or notebook (``vaekit.fit``, ``VAEEmbedding.fit``) must not change it behind their back.
glibc's malloc settings cannot be read back, so library calls change them only when asked to
(``vaekit.fit(..., train={"malloc_tuning": True})``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

__all__ = ["flush_denormal_enabled", "preserve_process_state"]


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes subnormal floats to zero (``torch.set_flush_denormal``): torch offers no
    getter, so a subnormal float32 is multiplied by one and the result compared with zero."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # below float32's smallest normal number, 1.18e-38
    return bool((tiny * 1.0)[0] == 0)


@contextlib.contextmanager
def preserve_process_state() -> Iterator[None]:
    """Inside: anything goes. On exit (also on error): torch's intra-op thread count, torch's CPU (and current
    CUDA device's) RNG state, numpy's global RNG state and the flush-denormal flag are what they were before."""
    threads = torch.get_num_threads()
    np_state = np.random.get_state()
    denormal = flush_denormal_enabled()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(np_state)
        if flush_denormal_enabled() != denormal:
            torch.set_flush_denormal(denormal)
