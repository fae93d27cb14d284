"""dSprites (Matthey, Higgins, Hassabis & Lerchner 2017, github.com/deepmind/dsprites-dataset), generated.

The published set: 737,280 binary 64x64 images, every combination of five factors exactly once,

    shape 3 (square, ellipse, heart), scale 6 (linspace(0.5, 1, 6)), orientation 40 (linspace(0, 2 pi, 40)),
    position x 32 and position y 32 (linspace(0, 1, 32)),

stored in the order image index = dot(factor classes, [245760, 40960, 1024, 32, 1]) (position y varies
fastest). The factor structure, values and index layout here are the published ones (the colour factor, constant
white, is left out, as disentanglement_lib does). DeepMind did not publish their renderer, so the pixel geometry
is vaekit's own, stated here and tested:

- the sprite's centre is at pixel coordinates (16 + 32 pos_x, 16 + 32 pos_y) (column, row; rows go down), so
  one position step is 32/31 ~ 1.03 pixels and every shape at every scale and angle stays inside the canvas;
- its size is R = 10 s pixels at scale s: a square of half-side 0.8 R, an ellipse of semi-axes R (along its
  orientation) and R / 2, a heart (the curve (p^2 + q^2 - 1)^3 - p^2 q^3 = 0, point down, scaled by 0.85 R);
- orientation theta turns it counter-clockwise on screen about its centre;
- a pixel is 1 when at least 5 of its 3x3 sub-pixel samples fall inside the shape.

Rendering uses only additions and multiplications in float64 (the angles' cosines and sines come from one fixed
table), so an image does not depend on the batch it is rendered in or on the device. ``load_original`` reads the
published ``.npz`` (md5-checked) for users who have it; both expose ``images(classes)`` and the factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["FACTOR_NAMES", "FACTOR_SIZES", "STRIDES", "N_IMAGES", "SHAPES", "ORIGINAL_FILE", "ORIGINAL_MD5",
           "factor_values", "index_to_classes", "classes_to_index", "classes_to_values", "render",
           "GroundTruthData", "DSprites", "DSpritesFile", "load_original", "build_cache", "CACHE_FILE"]

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
STRIDES = (245760, 40960, 1024, 32, 1)
N_IMAGES = 737280
SHAPES = ("square", "ellipse", "heart")
ORIGINAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
ORIGINAL_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
SIZE = 64
_SUPER = 3  # sub-pixel samples per axis


def factor_values() -> list[np.ndarray]:
    """The published ``latents_values`` of each factor (shape is 1, 2, 3 as in the file)."""
    return [np.arange(1.0, 4.0), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * np.pi, 40),
            np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)]


def index_to_classes(index: torch.Tensor) -> torch.Tensor:
    """(B,) image indices -> (B, 5) factor classes (int64), the published layout."""
    import torch

    index = torch.as_tensor(index, dtype=torch.int64)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= N_IMAGES):
        raise ValueError(f"dSprites image indices must be in [0, {N_IMAGES}), got {int(index.min())}..{int(index.max())}")
    strides = torch.tensor(STRIDES, dtype=torch.int64, device=index.device)
    sizes = torch.tensor(FACTOR_SIZES, dtype=torch.int64, device=index.device)
    return (index[:, None] // strides) % sizes  # (B, 5)


def classes_to_index(classes: torch.Tensor) -> torch.Tensor:
    """(B, 5) factor classes -> (B,) image indices: dot(classes, [245760, 40960, 1024, 32, 1])."""
    import torch

    classes = torch.as_tensor(classes, dtype=torch.int64)
    _check_classes(classes)
    return classes @ torch.tensor(STRIDES, dtype=torch.int64, device=classes.device)


def classes_to_values(classes: torch.Tensor) -> torch.Tensor:
    """(B, 5) factor classes -> (B, 5) float64 factor values (``latents_values`` without the colour column)."""
    import torch

    classes = torch.as_tensor(classes, dtype=torch.int64)
    _check_classes(classes)
    cols = [torch.as_tensor(v, dtype=torch.float64, device=classes.device)[classes[:, k]]
            for k, v in enumerate(factor_values())]
    return torch.stack(cols, 1)


def _check_classes(classes: torch.Tensor) -> None:
    if classes.ndim != 2 or classes.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"dSprites factor classes must have shape (B, 5), got {tuple(classes.shape)}")
    for k, n in enumerate(FACTOR_SIZES):
        c = classes[:, k]
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= n):
            raise ValueError(f"dSprites factor {FACTOR_NAMES[k]} classes must be in [0, {n}), "
                             f"got {int(c.min())}..{int(c.max())}")


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Whether the sprite-frame points (u, v) (v up; (b, P)) lie inside a shape of size r (b, 1)."""
    if shape == 0:  # square, half-side 0.8 r
        return (u.abs() <= 0.8 * r) & (v.abs() <= 0.8 * r)
    if shape == 1:  # ellipse, semi-axes r and r / 2
        a, b = u / r, v / (0.5 * r)
        return a * a + b * b <= 1.0
    p, q = u / (0.85 * r), v / (0.85 * r) + 0.12  # heart, centred on its bounding box
    s = p * p + q * q - 1.0
    return s * s * s - p * p * q * q * q <= 0.0


def render(classes: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """(B, 5) factor classes -> (B, 1, 64, 64) float32 binary images on the classes' device (see module doc).

    Each sprite is sampled on a 26x26-pixel window around its centre (every shape at every scale and angle lies
    within 11.4 pixels of it) and the window is placed on the empty canvas.
    """
    import torch

    classes = torch.as_tensor(classes, dtype=torch.int64)
    _check_classes(classes)
    dev, f64, win = classes.device, torch.float64, 26
    vals = factor_values()
    cos_t = torch.tensor(np.cos(vals[2]), dtype=f64, device=dev)  # a fixed table: the same bits in every call
    sin_t = torch.tensor(np.sin(vals[2]), dtype=f64, device=dev)
    scale_t = torch.tensor(vals[1], dtype=f64, device=dev)
    centre_t = 16.0 + 32.0 * torch.tensor(vals[3], dtype=f64, device=dev)  # (32,) pixel coordinates
    offs = (torch.arange(_SUPER, dtype=f64, device=dev) + 0.5) / _SUPER  # sub-pixel offsets in (0, 1)
    local = (torch.arange(win, dtype=f64, device=dev)[:, None] + offs).reshape(-1)  # (26 S,)
    n_s = local.numel()
    lr = local[:, None].expand(-1, n_s).reshape(1, -1)  # (1, P) sample rows in the window
    lc = local[None, :].expand(n_s, -1).reshape(1, -1)  # (1, P) sample columns
    pix = torch.arange(win, device=dev)
    out = torch.zeros(classes.shape[0], SIZE * SIZE, dtype=torch.float32, device=dev)
    for i in range(0, classes.shape[0], chunk):
        c = classes[i:i + chunk]
        cx, cy = centre_t[c[:, 3]][:, None], centre_t[c[:, 4]][:, None]  # (b, 1)
        col0, row0 = cx.floor() - 12.0, cy.floor() - 12.0  # window origins, 4..36
        dx, dy = (col0 + lc) - cx, cy - (row0 + lr)  # (b, P), dy up
        ct, st = cos_t[c[:, 2]][:, None], sin_t[c[:, 2]][:, None]
        u, v = ct * dx + st * dy, ct * dy - st * dx  # rotated by -theta into the sprite's frame
        r = 10.0 * scale_t[c[:, 1]][:, None]
        hit = torch.zeros_like(u, dtype=torch.bool)
        for s in range(len(SHAPES)):
            m = c[:, 0] == s
            if bool(m.any()):
                hit[m] = _inside(s, u[m], v[m], r[m])
        count = hit.reshape(-1, win, _SUPER, win, _SUPER).sum(dim=(2, 4))  # (b, 26, 26) samples inside
        on = (count * 2 > _SUPER * _SUPER).to(torch.float32)
        idx = (row0.long()[:, :, None] + pix[:, None]) * SIZE + col0.long()[:, :, None] + pix  # (b, 26, 26)
        out[i:i + chunk].scatter_(1, idx.reshape(len(c), -1), on.reshape(len(c), -1))
    return out.reshape(-1, 1, SIZE, SIZE)


class GroundTruthData:
    """A dataset with known generative factors: what the disentanglement metrics sample from.

    ``sample_factors(n, generator)`` draws factor classes uniformly and independently, (n, K) int64;
    ``images(classes)`` returns the observation of each (n, *shape) float32 (disentanglement_lib's
    ``sample_factors`` / ``sample_observations_from_factors``).
    """

    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = FACTOR_SIZES
    shape: tuple[int, ...] = (1, SIZE, SIZE)

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        import torch

        dev = generator.device
        cols = [torch.randint(0, k, (n,), generator=generator, device=dev) for k in self.factor_sizes]
        return torch.stack(cols, 1)  # (n, K)

    def images(self, classes: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


CACHE_FILE = "vaekit-dsprites-rendered-v1.npy"  # all 737,280 images, np.packbits of each 64x64 image (N, 512)


class DSprites(GroundTruthData):
    """dSprites rendered on the fly (module doc); ``images(classes)`` on the classes' device.

    ``cache``: a file of every image rendered once (``build_cache``; 377 MB); when it exists it is memory-mapped
    and indexed instead of rendering (the metrics draw millions of images), after re-rendering 16 of its images
    to check it is current."""

    def __init__(self, cache: str | Path | None = None) -> None:
        self._bits = None
        if cache is not None and Path(cache).is_file():
            bits = np.load(cache, mmap_mode="r", allow_pickle=False)
            probe = np.linspace(0, N_IMAGES - 1, 16).astype(np.int64)
            if bits.shape != (N_IMAGES, SIZE * SIZE // 8) or not np.array_equal(
                    bits[probe], _pack(render(index_to_classes(probe)))):
                raise ValueError(f"{cache} is not vaekit's current dSprites rendering; delete it (or rebuild it "
                                 "with vaekit.data.dsprites.build_cache)")
            self._bits = bits

    def images(self, classes: torch.Tensor) -> torch.Tensor:
        import torch

        if self._bits is None:
            return render(classes)
        idx = classes_to_index(classes).cpu().numpy()
        px = np.unpackbits(self._bits[idx], axis=1).reshape(-1, 1, SIZE, SIZE)
        return torch.from_numpy(px.astype(np.float32)).to(classes.device)


def _pack(images: torch.Tensor) -> np.ndarray:
    return np.packbits(images.reshape(images.shape[0], -1).cpu().numpy().astype(np.uint8), axis=1)


def build_cache(path: str | Path, chunk: int = 8192) -> Path:
    """Render all 737,280 images into ``path`` (packed bits, written atomically); minutes on a few cores."""
    import torch

    from vaekit.utils import atomic_write

    out = np.empty((N_IMAGES, SIZE * SIZE // 8), dtype=np.uint8)
    for i in range(0, N_IMAGES, chunk):
        out[i:i + chunk] = _pack(render(index_to_classes(torch.arange(i, min(i + chunk, N_IMAGES)))))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, out, allow_pickle=False)

    atomic_write(path, write)
    return Path(path)


@dataclass
class DSpritesFile(GroundTruthData):
    """The published dSprites arrays: imgs (737280, 64, 64) uint8 and latents_classes (737280, 6)."""

    imgs: np.ndarray
    classes: np.ndarray

    def images(self, classes: torch.Tensor) -> torch.Tensor:
        import torch

        idx = classes_to_index(classes).cpu().numpy()
        return torch.from_numpy(self.imgs[idx][:, None].astype(np.float32)).to(classes.device)


def load_original(path: str | Path, check: bool = True) -> DSpritesFile:
    """Read the published ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (md5 checked unless ``check`` is
    False) without unpickling its metadata; ValueError when it is not that file."""
    from vaekit.data.readers import check_digest

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dSprites file {path} not found; get {ORIGINAL_FILE} from "
                                "github.com/deepmind/dsprites-dataset or drop data.path to render dSprites")
    if check:
        check_digest(path, ORIGINAL_MD5, "md5")
    try:
        with np.load(path, allow_pickle=False) as z:
            imgs, classes = z["imgs"], z["latents_classes"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not the dSprites .npz (imgs, latents_classes): {e}") from None
    if imgs.shape != (N_IMAGES, SIZE, SIZE) or classes.shape != (N_IMAGES, 6):
        raise ValueError(f"{path}: imgs {imgs.shape} / latents_classes {classes.shape}, expected "
                         f"({N_IMAGES}, 64, 64) / ({N_IMAGES}, 6)")
    return DSpritesFile(imgs, classes[:, 1:].astype(np.int64))

