"""PNG data URLs out, validated uploads in (``vaekit serve``). Uploads are checked before any pixel is decoded:
format, byte size, pixel size and aspect ratio; every failure is an ``UploadError`` with a message (a 4xx)."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch

__all__ = ["UploadError", "to_data_url", "decode_upload", "MAX_UPLOAD_BYTES", "MAX_SIDE", "FORMATS"]

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # of the decoded image file
MAX_SIDE = 2048                     # pixels, checked from the header before the pixels are read
MAX_ASPECT = 4.0
FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP")  # MPO: multi-picture JPEG from cameras


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with (413 too large, else 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def to_data_url(x: torch.Tensor) -> str:
    """A PNG data URL of one image (C, H, W) with values in [0, 1] (C = 1 grey, 3 RGB)."""
    from PIL import Image

    a = (x.detach().float().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (C, H, W)
    im = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)), "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _raw_bytes(data: str) -> bytes:
    if data.startswith("data:"):
        head, sep, data = data.partition(",")
        if not sep or not head.endswith(";base64"):
            raise UploadError("an image data URL must look like data:image/png;base64,...")
    if len(data) > (MAX_UPLOAD_BYTES * 4) // 3 + 4:
        raise UploadError(f"image larger than {MAX_UPLOAD_BYTES // 1024} KiB", 413)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("the image is not valid base64") from None
    if not raw:
        raise UploadError("the image is empty")
    return raw


def decode_upload(data: str, shape: tuple[int, int, int], binarize: bool = False) -> torch.Tensor:
    """An uploaded image (base64 or a data URL) as a model input (1, C, H, W) in [0, 1]: alpha composited on
    black, converted to the model's channels, area-resized to H x W, thresholded at 0.5 if ``binarize``."""
    from PIL import Image, UnidentifiedImageError

    raw = _raw_bytes(data)
    try:
        im = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError:  # PIL refuses a header of over 2 * MAX_IMAGE_PIXELS before any pixel
        raise UploadError(f"the image declares far too many pixels; each side must be 1 to {MAX_SIDE}", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(f"not an image in a supported format ({', '.join(FORMATS)})") from None
    with im:
        if im.format not in FORMATS:
            raise UploadError(f"image format {im.format} is not accepted; use one of {', '.join(FORMATS)}", 415)
        w, h = im.size
        if w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE:
            raise UploadError(f"image of {w} x {h} pixels; each side must be 1 to {MAX_SIDE}", 413 if max(w, h) > MAX_SIDE else 422)
        if max(w, h) / min(w, h) > MAX_ASPECT:
            raise UploadError(f"image of {w} x {h} pixels is too elongated (aspect ratio above {MAX_ASPECT:g})")
        try:
            im.seek(0)
            rgba = im.convert("RGBA")
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            raise UploadError("the image file is damaged or truncated") from None
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    rgb = Image.alpha_composite(black, rgba).convert("L" if shape[0] == 1 else "RGB")
    box = getattr(getattr(Image, "Resampling", Image), "BOX")
    rgb = rgb.resize((shape[2], shape[1]), box)
    a = np.asarray(rgb, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    x = torch.from_numpy(np.ascontiguousarray(a))[None]
    return (x > 0.5).float() if binarize else x
