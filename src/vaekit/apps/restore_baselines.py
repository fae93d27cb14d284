"""Classical baselines for ``vaekit.apps.restore`` and the image-quality metrics every method is scored by.

Baselines, by the task the observation poses (``Observation.kind``); masked values of y start at the mask's fill:
- super-resolution: nearest and bicubic upsampling of y to the image size (Pillow's ``Image.resize``, per
  channel in 32-bit float mode);
- deblurring: Richardson-Lucy deconvolution (30 iterations) and an unsupervised Wiener filter (its
  regularisation estimated from the image by Gibbs sampling, Orieux et al. 2010), both scikit-image's, with the
  operator's Gaussian kernel as the point-spread function, on y padded by replicating its edges (the blur's own
  boundary; without it the zero / periodic boundaries of those functions cost Frey Face's bright borders
  about 13 dB (Richardson-Lucy) and 6 dB (Wiener)), cropped back after;
- inpainting: the mean fill (the missing pixels set to the training mean image);
- denoising: the observation itself.
Every baseline is clipped to [0, 1]. Metrics: PSNR and SSIM per image (scikit-image's
``peak_signal_noise_ratio`` and ``structural_similarity`` with data_range 1, SSIM's window 7 or the largest odd
size that fits), averaged over images.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaekit.apps.operators import Blur, Downsample, Observation
from vaekit.utils import mean_and_stderr

__all__ = ["baselines", "image_metrics", "psnr_ssim", "require_skimage"]


def require_skimage(what: str):
    try:
        import skimage  # noqa: F401
    except ImportError:
        raise ValueError(f"{what} needs scikit-image: pip install 'vaekit[restore]'") from None


def _resize(y: np.ndarray, hw: tuple[int, int], method: str) -> np.ndarray:
    from PIL import Image

    resample = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[method]
    out = np.empty((*y.shape[:2], *hw), dtype=np.float32)  # (N, C, H, W)
    for i in range(y.shape[0]):
        for c in range(y.shape[1]):
            out[i, c] = np.asarray(Image.fromarray(y[i, c].astype(np.float32), mode="F").resize(hw[::-1], resample))
    return out


def _deconvolve(y: np.ndarray, psf: np.ndarray, method: str, seed: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy, unsupervised_wiener

    out = np.empty_like(y)
    rng = np.random.default_rng(seed)
    p = psf.shape[0] - 1  # edges replicated by twice the kernel's radius, as the blur saw them, cropped after
    for i in range(y.shape[0]):
        for c in range(y.shape[1]):
            img = np.pad(y[i, c].astype(np.float64), p, mode="edge")
            if method == "richardson_lucy":
                d = richardson_lucy(np.clip(img, 0, None), psf, num_iter=30, clip=False)
            else:
                d = unsupervised_wiener(img, psf, clip=False, rng=rng)[0]
            out[i, c] = d[p:-p, p:-p] if p else d
    return out


def baselines(observation: Observation, y: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """{name: (N, *data_shape) restoration} for observations y (N, *obs_shape); see the module docstring."""
    start = observation.mask.start(y) if observation.mask is not None else y
    a = start.detach().cpu().numpy().astype(np.float32)  # (N, *obs_shape)
    ops, (_, h, w) = observation.ops, observation.data_shape
    out: dict[str, np.ndarray] = {}
    if any(isinstance(op, Downsample) for op in ops):
        out = {m: _resize(a, (h, w), m) for m in ("nearest", "bicubic")}
    elif any(isinstance(op, Blur) for op in ops):
        require_skimage("the deblurring baselines")
        sigma = math.sqrt(sum(op.sigma**2 for op in ops if isinstance(op, Blur)))
        k = Blur(sigma).kernel.numpy()
        r = min((k.size - 1) // 2, (min(a.shape[-2:]) - 1) // 2)  # a point-spread function no larger than y
        k = k[(k.size - 1) // 2 - r: (k.size + 1) // 2 + r]
        psf = np.outer(k, k) / k.sum() ** 2
        out = {m: _deconvolve(a, psf, m, seed) for m in ("richardson_lucy", "wiener")}
    elif observation.mask is not None:
        out = {"mean_fill": a}
    else:
        out = {"observed": a}
    return {k: torch.from_numpy(np.clip(v, 0.0, 1.0).astype(np.float32)) for k, v in out.items()}


def psnr_ssim(pred: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N,), (N,) PSNR (dB) and SSIM of each image pred[i] (C, H, W) against target[i], data range 1."""
    require_skimage("PSNR and SSIM")
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    p, t = pred.detach().cpu().double().numpy(), target.detach().cpu().double().numpy()
    if p.shape != t.shape or p.ndim != 4:
        raise ValueError(f"PSNR/SSIM need two image batches (N, C, H, W) of one shape, got {p.shape} and {t.shape}")
    side = min(p.shape[-2:])
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    with np.errstate(divide="ignore"):  # an exact restoration: PSNR inf
        psnr = np.array([peak_signal_noise_ratio(ti, pi, data_range=1.0) for pi, ti in zip(p, t)])
    ssim = np.array([structural_similarity(ti, pi, data_range=1.0, channel_axis=0, win_size=win)
                     for pi, ti in zip(p, t)])
    return psnr, ssim


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR and SSIM over images with their standard errors (PSNR inf when some image is exact)."""
    psnr, ssim = psnr_ssim(pred, target)
    (pm, ps), (sm, ss) = mean_and_stderr(torch.from_numpy(psnr)), mean_and_stderr(torch.from_numpy(ssim))
    return {"psnr": pm, "psnr_stderr": ps, "ssim": sm, "ssim_stderr": ss}
