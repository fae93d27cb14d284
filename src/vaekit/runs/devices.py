"""Devices by name: what ``train.device`` and every command's ``--device`` accept."""

from __future__ import annotations

import torch

from vaekit.config import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """cpu | cuda | cuda:N | mps | auto -> a torch.device that exists here (ConfigError naming ``key`` if not).

    Under torchrun, "cuda" means cuda:LOCAL_RANK (one GPU per process)."""
    import os

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown {key} {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but no CUDA device is available here; use {key}=cpu")
        if dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={name} but MPS (Apple GPU) is not available here; use {key}=cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported {key} {name!r}; use cpu, cuda, cuda:N, mps or auto")
    return dev
