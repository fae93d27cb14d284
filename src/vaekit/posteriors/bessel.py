"""The modified Bessel function of the first kind I_v(x) of real order v, for torch, in log space.

torch has no Bessel function of real order, so ``scipy.special.ive`` (exponentially scaled: ive(v, x) =
I_v(x) e^{-x}, imported on first use) is evaluated in float64 inside an autograd Function, ``log_ive``, whose
backward is the exact derivative (from I_v' = I_{v-1} - (v / x) I_v, DLMF 10.29.2):

    d/dx ive(v, x) = ive(v - 1, x) - ive(v, x) (v + x) / x
    d/dx log ive(v, x) = ive(v - 1, x) / ive(v, x) - (v + x) / x        (the ratio as exp of a difference of logs)

Working with log ive keeps every value finite for large x (ive(v, x) ~ 1 / sqrt(2 pi x)). Where ive underflows
float64 (an order far above the argument: v of several hundred at x ~ 1), log I_v is the leading term of Debye's
uniform expansion (DLMF 10.41.3), log I_v(v t) ~ v eta - log(2 pi v) / 2 - log(1 + t^2) / 4 with
eta = sqrt(1 + t^2) + log(t / (1 + sqrt(1 + t^2))), whose relative error is O(1 / v) there.

The von Mises-Fisher distribution (``vaekit.posteriors.vmf``) needs log I_{m/2-1}(kappa) for its normaliser and
the ratio A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa) for its mean, entropy and KL: ``log_ive_pair`` gives
log ive(v, x) and log ive(v + 1, x) together, with gradients from the recurrence I_{v-1} = I_{v+1} + (2v / x) I_v
(no Bessel evaluation in backward).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["log_ive", "log_ive_pair", "ive", "log_iv", "bessel_ratio"]

_TINY = 1e-300  # below this ive's float64 value has lost its precision (or is 0): Debye's expansion instead


def _log_ive_f64(v: float, x: np.ndarray) -> np.ndarray:
    """log ive(v, x) in float64 for x > 0 (a numpy array)."""
    from scipy.special import ive

    shape, x = np.shape(x), np.asarray(x, dtype=np.float64).reshape(-1)
    r = ive(v, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(r)
    bad = ~(r > _TINY) | ~np.isfinite(out)
    if bad.any() and v != 0:  # underflow: |v| >> x (x <= 0 or NaN gives -inf or NaN, as ive does)
        a, xb = abs(v), x[bad]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = xb / a
            s = np.sqrt(1.0 + t * t)
            out[bad] = a * (s + np.log(t / (1.0 + s))) - 0.5 * math.log(2 * math.pi * a) - 0.25 * np.log1p(t * t) - xb
    return out.reshape(shape)


def _log_ive_tensor(v: float, x: torch.Tensor) -> torch.Tensor:
    x64 = x.detach().to("cpu", torch.float64).numpy()
    return torch.from_numpy(_log_ive_f64(v, x64)).to(device=x.device, dtype=x.dtype)


class _LogIve(torch.autograd.Function):
    """log ive(v, x) with d/dx = ive(v - 1, x) / ive(v, x) - (v + x) / x (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, v: float) -> torch.Tensor:
        out = _log_ive_tensor(v, x)
        ctx.save_for_backward(x, out)
        ctx.v = v
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, out = ctx.saved_tensors
        ratio = torch.exp(_log_ive_tensor(ctx.v - 1.0, x) - out)  # ive(v - 1, x) / ive(v, x)
        return grad * (ratio - (ctx.v + x) / x), None


class _LogIvePair(torch.autograd.Function):
    """(log ive(v, x), log ive(v + 1, x)) with no Bessel evaluation in backward: by the recurrence
    I_{v-1} = I_{v+1} + (2v / x) I_v (DLMF 10.29.1), with A = ive(v + 1, x) / ive(v, x),
    d/dx log ive(v, x) = A + v / x - 1 and d/dx log ive(v + 1, x) = 1 / A - (v + 1) / x - 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, v: float) -> tuple[torch.Tensor, torch.Tensor]:
        l0, l1 = _log_ive_tensor(v, x), _log_ive_tensor(v + 1.0, x)
        ctx.save_for_backward(x, l0, l1)
        ctx.v = v
        return l0, l1

    @staticmethod
    def backward(ctx, g0: torch.Tensor, g1: torch.Tensor):
        x, l0, l1 = ctx.saved_tensors
        v = ctx.v
        d0 = torch.expm1(l1 - l0) + v / x  # A - 1 + v / x, without cancellation at large x
        d1 = torch.expm1(l0 - l1) - (v + 1.0) / x  # 1 / A - 1 - (v + 1) / x
        return g0 * d0 + g1 * d1, None


def log_ive_pair(v: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log ive(v, x), log ive(v + 1, x)) in one call, differentiable in x (the gradients from the recurrence,
    no further Bessel evaluation): what the von Mises-Fisher normaliser and mean ratio need together."""
    return _LogIvePair.apply(x, float(v))


def log_ive(v: float, x: torch.Tensor) -> torch.Tensor:
    """log ive(v, x) = log I_v(x) - x, elementwise for x > 0, differentiable in x (the values in float64 via scipy,
    returned in x's dtype: pass float64 x for float64 arithmetic downstream)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"log_ive needs a tensor x, got {type(x).__name__}")
    return _LogIve.apply(x, float(v))


def ive(v: float, x: torch.Tensor) -> torch.Tensor:
    """ive(v, x) = I_v(x) e^{-x}, whose derivative is ive(v - 1, x) - ive(v, x) (v + x) / x."""
    return log_ive(v, x).exp()


def log_iv(v: float, x: torch.Tensor) -> torch.Tensor:
    """log I_v(x) (finite where I_v(x) itself overflows)."""
    return log_ive(v, x) + x


def bessel_ratio(v: float, x: torch.Tensor) -> torch.Tensor:
    """I_{v+1}(x) / I_v(x), in (0, 1) for v >= -1/2 and x > 0."""
    return torch.exp(log_ive(v + 1.0, x) - log_ive(v, x))
