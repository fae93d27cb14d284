"""What a model's user-facing methods accept and return: numpy arrays or tensors of any float dtype, on any device.

``vaekit.fit`` takes numpy arrays, so the model it returns must too. ``@array_io`` on a method whose first argument
is a batch x: x (a numpy array, a pandas DataFrame, or a tensor of any dtype on any device) is converted to a tensor
of the model's dtype on the model's device, and the result is given back in the caller's terms:

- numpy in -> numpy out: float results in the input's float dtype (float32 for integer input), integer results
  (class predictions) as int64;
- a tensor in -> a tensor on the input's device, float results in the input's float dtype (the model's dtype for an
  integer tensor, e.g. uint8 images), integer results as they are;
- anything else the method returns (a Distribution, e.g. ``encode``'s q(z|x); a list of tensors) is returned as the
  model computed it: on the model's device, in its dtype.

A tensor already of the model's dtype on its device takes the fast path: the method is called with it unchanged
(the models' own calls between these methods, and gradients through ``encode``, are untouched).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable, TypeVar

import numpy as np
import torch

__all__ = ["array_io", "to_model_tensor"]

F = TypeVar("F", bound=Callable[..., Any])


def _model_place(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    """(dtype, device) of the model's first floating parameter or buffer (float32 on CPU for a model with none)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.float32, torch.device("cpu")


def to_model_tensor(model: torch.nn.Module, x: Any, name: str = "x") -> torch.Tensor:
    """``x`` (numpy array, DataFrame, tensor, nested list of numbers) as a tensor of the model's dtype on its
    device; a tensor already there is returned as it is."""
    dtype, device = _model_place(model)
    if not isinstance(x, torch.Tensor):
        x = _as_numpy(x, name)
    if isinstance(x, torch.Tensor):
        if x.dtype == dtype and x.device == device:
            return x
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got a {x.dtype} tensor")
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(x, device=device, dtype=dtype)


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # a pandas DataFrame or Series
        x = x.to_numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        kind = type(x).__name__ if arr is None else f"array of dtype {arr.dtype}"
        raise TypeError(f"{name} must be a numpy array or tensor of numbers, got {kind}; convert it first "
                        f"(e.g. np.asarray(x, dtype='float32'))")
    return arr


def _back(out: Any, given: torch.Tensor | np.ndarray) -> Any:
    """``out`` (what the model returned) in the terms of ``given`` (the caller's x, a tensor or numpy array):
    tensors, and lists or tuples of them, converted; anything else unchanged."""
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return type(out)(_back(o, given) for o in out)
    if not isinstance(out, torch.Tensor):
        return out
    if isinstance(given, torch.Tensor):
        if out.is_floating_point() and given.is_floating_point():
            out = out.to(dtype=given.dtype)
        return out.to(device=given.device)
    arr = out.detach().cpu().numpy()
    if out.is_floating_point():
        return arr.astype(given.dtype if given.dtype.kind == "f" else np.float32, copy=False)
    return arr.astype(np.int64, copy=False)


def array_io(method: F) -> F:
    """Let ``method(self, x, ...)`` take numpy arrays and tensors of any dtype and device (module docstring)."""

    @functools.wraps(method)
    def wrapper(self: torch.nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, torch.Tensor):
            dtype, device = _model_place(self)
            if x.dtype == dtype and x.device == device:  # the fast path: nothing to convert either way
                return method(self, x, *args, **kwargs)
        given = x if isinstance(x, torch.Tensor) else _as_numpy(x, "x")
        return _back(method(self, to_model_tensor(self, given), *args, **kwargs), given)

    return wrapper  # type: ignore[return-value]
