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

__all__ = ["full_precision", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy",
           "atomic_savetxt", "check_output_path", "remove_stale_temps", "read_json", "read_jsonl", "as_data_tensor",
           "to_tensor", "model_device", "check_positive",
           "model_dtype", "eval_mode", "evaluation_context", "batches", "mean_and_stderr"]


def _umask() -> int:
    """The process's umask: from /proc on Linux (no change to process state), else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it and rename it onto ``path``; on any
    failure the temporary file is removed and the old ``path`` (if any) is left as it was.

    The file gets the mode ``open()`` would give a new file (0o666 minus the umask), not mkstemp's 0600. A
    ``path`` that is an existing directory, or whose parent is a regular file, is refused with an OSError
    naming it (``check_output_path``)."""
    path = Path(path)
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_output_path(path: str | Path) -> Path:
    """Raise ``IsADirectoryError`` / ``NotADirectoryError`` (one line, naming the path) when ``path`` cannot be a
    file to write: it is an existing directory, or one of its parents is a regular file. Returns ``Path(path)``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
            break
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write data to path via a temporary file and rename (the old file survives any failure)."""
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, w)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """t in float32 when autocast made it bf16/fp16 (log-densities, KLs and losses stay float32); else t."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def atomic_save_npy(path: str | Path, array: Any) -> None:
    """``numpy.save`` through a temporary file and rename (no pickle; the old file survives any failure)."""
    arr = np.asarray(array)

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    atomic_write(path, w)


def atomic_savetxt(path: str | Path, table: Any, **kwargs: Any) -> None:
    """``numpy.savetxt`` through a temporary file and rename (the old file survives any failure)."""
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savetxt(f, table, **kwargs)
    atomic_write(path, w)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files ``atomic_write`` leaves when a process is killed mid-write. Call it only
    while no other process can be writing the folder (e.g. holding its run lock). Returns what was removed."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def read_json(path: str | Path) -> Any:
    """The JSON document in ``path``; ValueError naming the file when it is not UTF-8 or not valid JSON."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {e.start}: {e.reason}); it is damaged") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); it is "
                         f"damaged or was cut short") from None


def read_jsonl(path: str | Path) -> list[Any]:
    """The records of a JSON-lines file. A line that does not parse (e.g. the last one, cut short by a kill
    during an append) is skipped, never fatal; bytes that are not UTF-8 are replaced."""
    import json

    out = []
    for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if ln.strip():
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
    return out


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
