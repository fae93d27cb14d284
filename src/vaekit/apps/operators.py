"""Observation operators for image restoration: y = A(x) + noise, and the log-likelihood log p(y | A(x_hat)).

Each operator is an object whose ``__call__(x)`` is the deterministic, differentiable part of A on a batch
(B, C, H, W) -> (B, C', H', W'), with ``out_shape`` and ``start(y)``, a rough inverse that maps an observation
back to image space (the pseudo-input whose encoder mean starts the MAP search, and what the figures show):

- ``downsample:K``: K x K average pooling (super-resolution); start: nearest-neighbour upsampling;
- ``blur:S``: a normalised Gaussian kernel of standard deviation S pixels (at most the image's larger side: the
  kernel is bounded by the image), radius int(4 S + 0.5), edges replicated:
  ``scipy.ndimage.gaussian_filter(x, S, mode="nearest")`` (deblurring); start: y itself;
- ``mask:NAME`` / ``mask:random:P`` / ``mask:FILE`` (inpainting; ``vaekit.apps.inpaint.load_mask``; True = missing):
  the missing values are dropped from the likelihood (set to 0 in y); start: missing values set to ``fill``;
- ``noise:S``: additive Gaussian noise of standard deviation S (denoising, or on top of the others);
- ``identity``.

A spec chains operators with ``+`` in the order they act: ``downsample:4+noise:0.2`` is
y = avgpool_4(x) + 0.2 eps. At most one mask and one noise; a mask acts on the final image, so it comes after
every downsample and blur.

The observation log-likelihood (``Observation.log_likelihood``) is, for the decoder mean x_hat = E[x | z],
sum over observed entries i of log N(y_i; A(x_hat)_i, sigma^2) with sigma the noise's standard deviation or,
for a noiseless spec, ``DEFAULT_SIGMA`` = 0.02 (chosen on 200 MNIST validation digits, x4 super-resolution with
the 784-400-20 model: sigma 0.2, 0.1, 0.05, 0.02, 0.01 gave PSNR 16.8, 18.0, 18.7, 19.1, 19.1 dB; blur 1.5 was
as flat below 0.05) (the decoder's own pixel noise is not propagated through A: the
decoder mean is treated as the image, as in Bora et al. 2017, "Compressed Sensing using Generative Models").
A noiseless chain of masks and identities uses the decoder's own log p(x_i | z) on the observed pixels instead
(``likelihood="auto"``): exactly what ``vaekit.apps.inpaint`` and ``denoise`` optimise.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.distributions import Distribution

from vaekit.apps._common import pixel_log_prob

__all__ = ["DEFAULT_SIGMA", "OPERATOR_NAMES", "Operator", "Identity", "Downsample", "Blur", "Mask", "Noise",
           "Observation", "parse_operator", "gaussian_kernel"]

DEFAULT_SIGMA = 0.02  # likelihood scale of a noiseless observation (images in [0, 1]); chosen on MNIST validation digits
OPERATOR_NAMES = ("downsample", "blur", "mask", "noise", "identity")
_SPEC_HELP = "downsample:K, blur:SIGMA, mask:NAME|random:P|FILE, noise:SIGMA, identity, chained with +"


class Operator:
    """The deterministic part of one observation step; subclasses define ``__call__``, ``out_shape``, ``start``."""

    spec = "identity"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, *out_shape)
        return x

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def start(self, y: torch.Tensor) -> torch.Tensor:  # (B, *out_shape) -> (B, *in_shape)
        return y

    def batch(self, rows: slice) -> "Operator":
        """This operator for the examples ``rows`` of the data (only a per-example mask differs)."""
        return self


class Identity(Operator):
    """A(x) = x."""


class Downsample(Operator):
    """K x K average pooling: (B, C, H, W) -> (B, C, H/K, W/K); H and W must be multiples of K."""

    def __init__(self, factor: int) -> None:
        self.factor, self.spec = int(factor), f"downsample:{int(factor)}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)  # (B, C, H/K, W/K)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"{self.spec} needs image sides divisible by {self.factor}; these images are {h} x {w}")
        return c, h // self.factor, w // self.factor

    def start(self, y: torch.Tensor) -> torch.Tensor:
        k = self.factor
        return y.repeat_interleave(k, -2).repeat_interleave(k, -1)  # (B, C, H, W) nearest upsampling


def gaussian_kernel(sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(2r + 1,) normalised 1-D Gaussian, r = int(truncate * sigma + 0.5) (scipy.ndimage's radius)."""
    r = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class Blur(Operator):
    """Separable Gaussian blur of standard deviation ``sigma`` pixels with replicated edges (same shape)."""

    def __init__(self, sigma: float) -> None:
        self.sigma, self.spec = float(sigma), f"blur:{float(sigma):g}"
        self.kernel = gaussian_kernel(self.sigma)  # (2r + 1,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.kernel.to(x.device, x.dtype)
        r = (k.numel() - 1) // 2
        v = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")  # (B C, 1, H + 2r, W + 2r)
        v = F.conv2d(F.conv2d(v, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))  # (B C, 1, H, W); k is symmetric
        return v.reshape(b, c, h, w)


class Mask(Operator):
    """Drops the pixels where ``missing`` (1 or N, C, H, W; True = missing) is set; ``fill`` starts them."""

    def __init__(self, missing: torch.Tensor, spec: str = "mask", fill: float | torch.Tensor = 0.5) -> None:
        self.missing, self.spec, self.fill = missing.bool(), spec, fill

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(self.missing.to(x.device), 0.0)

    def start(self, y: torch.Tensor) -> torch.Tensor:
        fill = torch.as_tensor(self.fill, dtype=y.dtype, device=y.device)
        return torch.where(self.missing.to(y.device), fill, y)

    def batch(self, rows: slice) -> "Mask":
        return self if self.missing.shape[0] == 1 else Mask(self.missing[rows], self.spec, self.fill)


class Noise(Operator):
    """Additive Gaussian noise of standard deviation ``sigma``: the identity as a deterministic map."""

    def __init__(self, sigma: float) -> None:
        self.sigma, self.spec = float(sigma), f"noise:{float(sigma):g}"


class Observation:
    """y = A(x) + sigma eps for a chain of operators (applied in order), with the log-likelihood of y."""

    def __init__(self, ops: Sequence[Operator], data_shape: Sequence[int]) -> None:
        self.ops, self.data_shape = list(ops), tuple(int(s) for s in data_shape)
        shape = self.data_shape
        for op in self.ops:
            shape = op.out_shape(shape)
        self.obs_shape = shape
        noise = [op for op in self.ops if isinstance(op, Noise)]
        self.sigma = noise[0].sigma if noise else None  # None: noiseless (DEFAULT_SIGMA in the likelihood)
        masks = [op for op in self.ops if isinstance(op, Mask)]
        self.mask = masks[0] if masks else None
        self.spec = "+".join(op.spec for op in self.ops)

    @property
    def kind(self) -> str:
        """The restoration task the chain poses: super-resolution, deblurring, inpainting or denoising."""
        for op, name in ((Downsample, "super-resolution"), (Blur, "deblurring"), (Mask, "inpainting")):
            if any(isinstance(o, op) for o in self.ops):
                return name
        return "denoising"

    @property
    def selects_pixels(self) -> bool:
        """True when A only keeps or drops pixels (masks and identities): the decoder's likelihood applies."""
        return all(isinstance(op, (Identity, Mask, Noise)) for op in self.ops)

    def batch(self, rows: slice) -> "Observation":
        return Observation([op.batch(rows) for op in self.ops], self.data_shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A(x): (B, *data_shape) -> (B, *obs_shape), no noise."""
        for op in self.ops:
            x = op(x)
        return x

    def observe(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A(x) + sigma eps (eps drawn on the CPU from ``generator``, then moved to x's device)."""
        y = self(x)
        if self.sigma:
            eps = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
            y = y + self.sigma * eps
            if self.mask is not None:
                y = self.mask(y)
        return y

    def start(self, y: torch.Tensor) -> torch.Tensor:
        """A rough inverse (B, *obs_shape) -> (B, *data_shape): each operator's ``start`` in reverse order."""
        for op in reversed(self.ops):
            y = op.start(y)
        return y

    def observed(self, like: torch.Tensor) -> torch.Tensor:
        """(B or 1, *obs_shape) float weights: 1 where y is observed, 0 where a mask drops it."""
        if self.mask is None:
            return torch.ones((1, *self.obs_shape), dtype=like.dtype, device=like.device)
        return (~self.mask.missing).to(like.device, like.dtype)

    def log_likelihood(self, px: Distribution, y: torch.Tensor, likelihood: str = "auto") -> torch.Tensor:
        """(*lead, B) log p(y | z) for p(x|z) = ``px`` (batch shape (*lead, B)) and y (B, *obs_shape).

        likelihood: "gaussian" (N(y; A(E[x|z]), sigma^2) on observed entries), "decoder" (the decoder's own
        log p(y_i | z) on observed pixels; only for masks and identities) or "auto" (decoder for a noiseless
        chain of masks and identities, else gaussian); see the module docstring."""
        if likelihood not in ("auto", "gaussian", "decoder"):
            raise ValueError(f"likelihood must be auto, gaussian or decoder, got {likelihood!r}")
        if likelihood == "decoder" and not self.selects_pixels:
            raise ValueError(f"the decoder's likelihood applies only to masks and identities, not to {self.spec}")
        w = self.observed(y)  # (B or 1, *obs_shape)
        if likelihood == "decoder" or (likelihood == "auto" and self.selects_pixels and self.sigma is None):
            return (pixel_log_prob(px, y) * w).flatten(-len(self.obs_shape)).sum(-1)
        lead = px.batch_shape
        mean = px.mean.reshape(-1, *self.data_shape)  # (prod lead, *data_shape)
        for op in self.ops:  # the mask acts through the weights w, so (*lead, B) batches need no per-row slicing
            mean = mean if isinstance(op, Mask) else op(mean)
        ax = mean.reshape(*lead, *self.obs_shape)  # (*lead, B, *obs_shape)
        s = self.sigma or DEFAULT_SIGMA
        lp = -0.5 * ((y - ax) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        return (lp * w).flatten(-len(self.obs_shape)).sum(-1)


def _number(kind: str, arg: str, spec: str, integer: bool = False) -> float:
    try:
        v = int(arg) if integer else float(arg)
    except ValueError:
        v = None
    if v is None or not (v >= (2 if integer else 0)) or not math.isfinite(v) or (not integer and v == 0):
        need = "an integer factor of at least 2" if integer else "a positive number"
        raise ValueError(f"{kind} in --operator {spec!r} needs {need} ({kind}:{'K' if integer else 'SIGMA'}), "
                         f"got {arg!r}")
    return v


def parse_operator(spec: str, data_shape: Sequence[int], n: int = 1, seed: int = 0,
                   fill: float | torch.Tensor = 0.5) -> Observation:
    """The ``Observation`` a spec names (see the module docstring) for images of ``data_shape`` (C, H, W);
    ``n`` and ``seed``: the examples a random or per-example mask covers. ValueError (one line) on a bad spec."""
    from vaekit.apps.inpaint import load_mask

    shape = tuple(int(s) for s in data_shape)
    if len(shape) != 3:
        raise ValueError(f"restoration needs images (C, H, W); this run models data of shape {shape}")
    parts = [p.strip() for p in str(spec).split("+")]
    if not spec or not all(parts):
        raise ValueError(f"empty operator in --operator {spec!r}; give {_SPEC_HELP}")
    ops: list[Operator] = []
    cur = shape
    for part in parts:
        kind, _, arg = part.partition(":")
        kind = kind.strip().lower()
        if kind == "downsample":
            ops.append(Downsample(int(_number(kind, arg, spec, integer=True))))
        elif kind == "blur":
            sigma, side = _number(kind, arg, spec), max(cur[1], cur[2])
            if sigma > side:  # the kernel (radius 4 sigma) is bounded by the image: wider leaves only its mean
                raise ValueError(f"blur in --operator {spec!r} needs a SIGMA of at most {side} pixels, the larger "
                                 f"side of the {cur[1]} x {cur[2]} images it blurs; got {arg!r}")
            ops.append(Blur(sigma))
        elif kind == "noise":
            ops.append(Noise(_number(kind, arg, spec)))
        elif kind == "identity" and not arg:
            ops.append(Identity())
        elif kind == "mask":
            if not arg:
                raise ValueError(f"mask in --operator {spec!r} needs a mask: mask:bottom, mask:random:0.5 or "
                                 f"mask:FILE.npy")
            m = torch.as_tensor(load_mask(arg, n, cur, seed))
            if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"mask values must be 0 or 1 (1 = missing pixel to fill, 0 = observed) in {arg!r}")
            m = m.bool()
            m = m[None] if tuple(m.shape) == cur else m
            if tuple(m.shape[1:]) != cur or m.shape[0] not in (1, n):
                raise ValueError(f"a mask of shape {tuple(m.shape)} does not fit observations of shape {cur} "
                                 f"({n} inputs)")
            ops.append(Mask(m, f"mask:{arg}", fill))
        else:
            raise ValueError(f"unknown operator {part!r} in --operator {spec!r}; give {_SPEC_HELP}")
        cur = ops[-1].out_shape(cur)
    for name, cls in (("mask", Mask), ("noise", Noise)):
        if sum(isinstance(op, cls) for op in ops) > 1:
            raise ValueError(f"--operator {spec!r} has more than one {name}; give at most one")
    kinds = [type(op) for op in ops]
    if Mask in kinds and any(k in (Downsample, Blur) for k in kinds[kinds.index(Mask):]):
        raise ValueError(f"in --operator {spec!r} the mask must come after every downsample and blur (it drops "
                         f"pixels of the final observation)")
    return Observation(ops, shape)
