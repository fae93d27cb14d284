"""Checkpoints: one safetensors file holding tensors (model, optimizer state, RNG states) and, in its header
metadata, a JSON document (config, versions, step, metrics, trainer state). A readable copy of the JSON is
written beside it. Files are written to a temporary name and renamed, so a kill never leaves a broken
checkpoint in place. Loading never unpickles, and gives CPU tensors whatever device wrote them. What the
trainer packs into them is ``vaekit.training.state``'s (``pack_optimizer`` / ``unpack_optimizer`` are
re-exported here).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from vaekit.training.state import pack_optimizer, unpack_optimizer
from vaekit.utils import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write_bytes", "atomic_write_text",
           "pack_optimizer", "unpack_optimizer", "versions"]

_META_KEY = "vaekit"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated or from an incompatible model."""


def versions() -> dict[str, str]:
    import vaekit

    return {"vaekit": vaekit.__version__, "torch": torch.__version__, "python": platform.python_version()}


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> None:
    """Atomically write ``tensors`` + the JSON ``doc`` (in the safetensors header and as ``<path>.json``)."""
    path = Path(path)
    doc = {**doc, "versions": versions()}
    text = json.dumps(doc, indent=1, default=float)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # serialised in memory, then written by Python: a full disk or a read-only folder is a plain OSError
    atomic_write_bytes(path, save(flat, metadata={_META_KEY: text}))
    atomic_write_text(path.with_suffix(".json"), text + "\n")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (tensors, doc) from a checkpoint file; CheckpointError with a one-line reason if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        doc = json.loads(meta[_META_KEY])
        if not isinstance(doc, dict):
            raise ValueError("its JSON document is not a mapping")
    except Exception as e:  # safetensors raises several types for truncated/corrupt headers
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({reason}); use the run's other checkpoint "
            f"(best/last) or retrain"
        ) from None
    return tensors, doc
