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
           "GroundTruthData", "DSprites", "DSpritesFile", "load_original", "build_cache", "render_all", "CACHE_FILE",
           "CACHE_FROM"]

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
    """Whether the sprite-frame points (u, v) (v up; (b, ...)) lie inside a shape of size r (b, 1, ...); u and v
    are overwritten (in-place arithmetic, each step the same float64 operation as written in the comments)."""
    if shape == 0:  # square, half-side 0.8 r: |u| <= 0.8 r and |v| <= 0.8 r
        h = 0.8 * r
        return (u.abs_() <= h) & (v.abs_() <= h)
    if shape == 1:  # ellipse, semi-axes r and r / 2: (u / r)^2 + (v / (r / 2))^2 <= 1
        a = u.div_(r)
        b = v.div_(0.5 * r)
        return a.mul_(a).add_(b.mul_(b)) <= 1.0
    # heart, centred on its bounding box: p = u / (0.85 r), q = v / (0.85 r) + 0.12, s = p^2 + q^2 - 1,
    # inside where s^3 - p^2 q^3 <= 0 (evaluated as ((s s) s) - ((((p p) q) q) q))
    k = 0.85 * r
    p = u.div_(k)
    q = v.div_(k).add_(0.12)
    pp = p * p
    s = (q * q).add_(pp).sub_(1.0)
    lhs = (s * s).mul_(s)
    rhs = pp.mul_(q).mul_(q).mul_(q)
    return lhs.sub_(rhs) <= 0.0


def _tables(dev: torch.device) -> dict[str, torch.Tensor]:
    """The factor tables and the window's sub-pixel sample positions on ``dev`` (float64)."""
    import torch

    f64 = torch.float64
    vals = factor_values()
    offs = (torch.arange(_SUPER, dtype=f64, device=dev) + 0.5) / _SUPER  # sub-pixel offsets in (0, 1)
    return {"cos": torch.tensor(np.cos(vals[2]), dtype=f64, device=dev),  # a fixed table: the same bits always
            "sin": torch.tensor(np.sin(vals[2]), dtype=f64, device=dev),
            "scale": torch.tensor(vals[1], dtype=f64, device=dev),
            "centre": 16.0 + 32.0 * torch.tensor(vals[3], dtype=f64, device=dev),  # (32,) pixel coordinates
            "local": (torch.arange(_WIN, dtype=f64, device=dev)[:, None] + offs).reshape(-1),  # (26 S,)
            "pix": torch.arange(_WIN, device=dev)}


_WIN = 26  # the window's side in pixels


def render(classes: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """(B, 5) factor classes -> (B, 1, 64, 64) float32 binary images on the classes' device (see module doc).

    Each sprite is sampled on a 26x26-pixel window around its centre (every shape at every scale and angle lies
    within 11.4 pixels of it) and the window is placed on the empty canvas. The sample offsets from the centre
    are separable, dx (78 columns) and dy (78 rows), so the rotation's four products are taken on those 78-vectors
    and only the sums u = cos dx + sin dy, v = cos dy - sin dx and the shape test run on the 78 x 78 grid; sprites
    are rendered shape by shape, ``chunk`` at a time.
    """
    import torch

    classes = torch.as_tensor(classes, dtype=torch.int64)
    _check_classes(classes)
    t, win, s2 = _tables(classes.device), _WIN, _SUPER
    out = torch.zeros(classes.shape[0], SIZE * SIZE, dtype=torch.float32, device=classes.device)
    for shape in range(len(SHAPES)):
        rows = torch.nonzero(classes[:, 0] == shape).reshape(-1)
        for i in range(0, rows.numel(), chunk):
            sel = rows[i:i + chunk]
            c, b = classes[sel], len(sel)
            cx, cy = t["centre"][c[:, 3]][:, None], t["centre"][c[:, 4]][:, None]  # (b, 1)
            col0, row0 = cx.floor() - 12.0, cy.floor() - 12.0  # window origins, 4..36
            dx, dy = (col0 + t["local"]) - cx, cy - (row0 + t["local"])  # (b, 78) each, dy up
            ct, st = t["cos"][c[:, 2]][:, None], t["sin"][c[:, 2]][:, None]  # (b, 1)
            # rotated by -theta into the sprite's frame; (b, 78 rows, 78 columns)
            u = (ct * dx)[:, None, :] + (st * dy)[:, :, None]
            v = (ct * dy)[:, :, None] - (st * dx)[:, None, :]
            hit = _inside(shape, u, v, 10.0 * t["scale"][c[:, 1]][:, None, None]).view(torch.uint8)
            cols = (hit[..., 0::s2] + hit[..., 1::s2] + hit[..., 2::s2]).view(b, win, s2, win)  # (b, 26, 3, 26)
            count = cols[:, :, 0] + cols[:, :, 1] + cols[:, :, 2]  # (b, 26, 26) samples inside
            on = (count * 2 > s2 * s2).to(torch.float32)
            idx = (row0.long()[:, :, None] + t["pix"][:, None]) * SIZE + col0.long()[:, :, None] + t["pix"]
            out[sel] = out[sel].scatter_(1, idx.reshape(b, -1), on.reshape(b, -1))  # (b, 4096)
    return out.reshape(-1, 1, SIZE, SIZE)


class GroundTruthData:
    """A dataset with known generative factors: what the disentanglement metrics sample from.

    ``sample_factors(n, generator)`` draws factor classes uniformly and independently, (n, K) int64;
    ``images(classes)`` returns the observation of each (n, *shape) float32 (disentanglement_lib's
    ``sample_factors`` / ``sample_observations_from_factors``); ``prepare(n)`` is told that about ``n``
    observations are about to be drawn (a dataset may then cache them; by default it does nothing).
    ``deterministic_images``: True where ``images`` is a function of the classes (no noise, no random colour), so
    a metric may reuse the code of an observation drawn before.
    """

    deterministic_images: bool = False
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

    def prepare(self, n: int) -> None:
        """About ``n`` observations will be drawn next."""


CACHE_FILE = "vaekit-dsprites-rendered-v1.npy"  # all 737,280 images, np.packbits of each 64x64 image (N, 512)
CACHE_FROM = N_IMAGES // 2  # ``prepare(n)`` renders every image once when n is at least this


class DSprites(GroundTruthData):
    """dSprites rendered on the fly (module doc); ``images(classes)`` on the classes' device.

    ``cache``: a file of every image rendered once (``build_cache``; 377 MB). When it exists it is memory-mapped
    and indexed instead of rendering, after re-rendering 16 of its images to check it is current. When it does
    not, ``prepare(n)`` with n >= ``CACHE_FROM`` (the metrics at their default sizes draw millions of images)
    renders all 737,280 images once, with a progress bar, and writes the file (kept in memory instead where it
    cannot be written, or where no ``cache`` is given)."""

    deterministic_images = True

    def __init__(self, cache: str | Path | None = None) -> None:
        self._bits, self.cache = None, None if cache is None else Path(cache)
        if self.cache is not None and self.cache.is_file():
            bits = np.load(self.cache, mmap_mode="r", allow_pickle=False)
            probe = np.linspace(0, N_IMAGES - 1, 16).astype(np.int64)
            if bits.shape != (N_IMAGES, SIZE * SIZE // 8) or not np.array_equal(
                    bits[probe], _pack(render(index_to_classes(probe)))):
                raise ValueError(f"{self.cache} is not vaekit's current dSprites rendering; delete it (or rebuild "
                                 "it with vaekit.data.dsprites.build_cache)")
            self._bits = bits

    def images(self, classes: torch.Tensor) -> torch.Tensor:
        import torch

        if self._bits is None:
            return render(classes)
        idx = classes_to_index(classes).cpu().numpy()
        px = np.unpackbits(self._bits[idx], axis=1).reshape(-1, 1, SIZE, SIZE)
        return torch.from_numpy(px.astype(np.float32)).to(classes.device)

    def prepare(self, n: int) -> None:
        """Render every image once (into ``cache`` where it can be written) when ``n >= CACHE_FROM``."""
        if self._bits is not None or n < CACHE_FROM:
            return
        import logging

        log = logging.getLogger("vaekit")
        where = f"into {self.cache}" if self.cache is not None else "in memory"
        log.info("dSprites: rendering all %d images once %s (%d are about to be drawn)", N_IMAGES, where, n)
        bits = render_all(progress=True)
        if self.cache is not None:
            from vaekit.utils import atomic_save_npy

            try:
                self.cache.parent.mkdir(parents=True, exist_ok=True)
                atomic_save_npy(self.cache, bits)
            except OSError as e:
                log.warning("dSprites: could not write the rendering cache %s (%s); it is kept in memory",
                            self.cache, e)
        self._bits = bits


def _pack(images: torch.Tensor) -> np.ndarray:
    return np.packbits(images.reshape(images.shape[0], -1).cpu().numpy().astype(np.uint8), axis=1)


def render_all(chunk: int = 8192, progress: bool = False) -> np.ndarray:
    """(737280, 512) uint8: every image in index order, packed bits (np.packbits of each 64x64 image)."""
    import torch

    from vaekit.progress import Progress

    out = np.empty((N_IMAGES, SIZE * SIZE // 8), dtype=np.uint8)
    with Progress(N_IMAGES, desc="rendering dSprites", unit="image", enabled=progress) as bar:
        for i in range(0, N_IMAGES, chunk):
            j = min(i + chunk, N_IMAGES)
            out[i:j] = _pack(render(index_to_classes(torch.arange(i, j))))
            bar.update(j - i)
    return out


def build_cache(path: str | Path, chunk: int = 8192, progress: bool = False) -> Path:
    """Render all 737,280 images into ``path`` (packed bits, written atomically); about a minute per core."""
    from vaekit.utils import atomic_save_npy

    atomic_save_npy(path, render_all(chunk, progress))
    return Path(path)


@dataclass
class DSpritesFile(GroundTruthData):
    """The published dSprites arrays: imgs (737280, 64, 64) uint8 and latents_classes (737280, 6)."""

    imgs: np.ndarray
    classes: np.ndarray
    deterministic_images = True

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

