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

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "check_saved_model", "load_weights",
           "state_dict_problem", "atomic_write_bytes", "atomic_write_text", "pack_optimizer", "unpack_optimizer",
           "versions"]

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
    doc = None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if _META_KEY in meta:  # the document first: another program's file is named before its tensors load
                doc = json.loads(meta[_META_KEY])
                if not isinstance(doc, dict):
                    raise ValueError("its JSON document is not a mapping")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated/corrupt headers
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({reason}); use the run's other checkpoint "
            f"(best/last) or retrain"
        ) from None
    if doc is None:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a vaekit model or checkpoint (its header "
                              f"holds no vaekit document); load it with the program that wrote it")
    return tensors, doc


def check_saved_model(doc: dict[str, Any], path: str | Path) -> None:
    """CheckpointError naming ``path`` when the JSON document of a saved model or checkpoint asks for more than
    ``vaekit.limits`` allows (a latent size or width above 65536, more than 64 layers, over 2**26 values per
    example, networks of over 2**30 weights) or has a format version that is not a whole number: checked before
    any model is built from it, so a damaged or hostile header cannot make the loader allocate without bound."""
    from vaekit.limits import model_problem

    version = doc.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{str(path)!r} has format_version {version!r}, not a whole number; the file is damaged "
                              f"or was not written by vaekit")
    config, data = doc.get("config"), doc.get("data")
    models = ([doc["model"]] if "model" in doc else []) + (  # a saved model's section, a checkpoint's config
        [config["model"]] if isinstance(config, dict) and "model" in config else [])
    shape = data.get("shape") if isinstance(data, dict) else None
    for model in models or [{}]:  # {}: the data shape alone
        problem = model_problem(model, shape)
        if problem is not None:
            raise CheckpointError(f"{str(path)!r} cannot be loaded: in its header, {problem} (a damaged file, "
                                  f"or not written by vaekit)")


def state_dict_problem(e: Exception) -> str:
    """The useful part of a ``load_state_dict`` error: its first detail line (and how many more there are)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    details = [ln for ln in lines if not ln.startswith("Error(s) in loading state_dict")]
    if not details:
        return lines[0] if lines else type(e).__name__
    first = details[0].split(". ")[0].rstrip(".")
    more = f"; and {len(details) - 1} more" if len(details) > 1 else ""
    return first + more


def load_weights(model: torch.nn.Module, path: str | Path, what: str | None = None) -> dict[str, Any]:
    """Load the model weights of a checkpoint or saved model (the tensors named ``model.*``) into ``model``, on
    the model's device whatever device wrote them; returns the file's JSON document. The one place a run's or a
    saved model's weights are read. CheckpointError (one line, naming ``what`` or the file) when they do not fit."""
    tensors, doc = load_checkpoint(path)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise CheckpointError(f"{what or f'checkpoint {str(path)!r}'} does not match the model config "
                              f"({state_dict_problem(e)})") from None
    return doc
