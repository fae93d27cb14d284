"""Image grids as PNG (Pillow; no torchvision)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["image_grid", "save_image_grid"]


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) or (N, D) with D a square number into a uint8 array (rows*H', cols*W', C').

    Values are clipped to [0, 1]. ``scale`` repeats pixels (nearest neighbour) so small images stay visible.
    """
    x = images.detach().float().cpu()
    if x.dim() == 2:
        side = int(round(math.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise ValueError(f"cannot show vectors of length {x.shape[1]} as images; give (N, C, H, W)")
        x = x.reshape(-1, 1, side, side)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"image grid needs (N, 1 or 3, H, W) images, got {tuple(x.shape)}")
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    x = x.clamp(0, 1).repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    h, w = h * scale, w * scale
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad) * 0.5
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return arr[..., 0] if c == 1 else arr


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Write an image grid PNG atomically (temporary file, then rename). Small images are upscaled."""
    from PIL import Image

    from vaekit.utils import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output file {str(path)!r} must end in .png")
    if scale is None:
        side = images.shape[-1] if images.dim() == 4 else int(math.sqrt(images.shape[-1]))
        scale = max(1, 56 // max(side, 1))
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, nrow=nrow, scale=scale)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
