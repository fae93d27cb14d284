"""Readers for user-supplied data: a folder of images, or arrays in ``.npy`` / ``.npz`` / ``.csv`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaekit.data.base import DataNotFoundError
from vaekit.data.readers import read_npz

__all__ = ["IMAGE_SUFFIXES", "ARRAY_SUFFIXES", "read_image", "list_image_folder", "read_image_folder", "read_arrays", "reader_for_path"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


def reader_for_path(path: str | Path) -> str | None:
    """The dataset reader for what ``path`` points at: ``image-folder`` for a folder holding images (directly or
    in class sub-folders), ``arrays`` for a ``.npy``/``.npz``/``.csv`` file; None where that cannot be told
    (a missing path, an empty folder, another file type)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "image-folder" if _images_under(p) else None
    if p.is_file() and p.suffix.lower() in ARRAY_SUFFIXES:
        return "arrays"
    return None
_GREY_MODES = {"1", "L", "LA"}
_LABEL_COLUMNS = ("label", "y")
_SPLIT_KEYS = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}


def _header_mode(path: Path) -> str:
    """The image's mode from its header (no pixels decoded); a file that cannot be opened gets read_image's
    one-line error."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode
    except Exception:  # noqa: BLE001 - read_image says what is wrong with the file
        read_image(path)
        raise


def read_image(path: str | Path, mode: str | None = None) -> "Image.Image":
    """The image at ``path``, fully decoded (converted to ``mode`` if given). ValueError naming the file for a
    zero-byte, truncated, corrupt or unrecognised image (PIL decodes lazily, so damage can otherwise surface
    later as an OSError far from the file's name)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"image {str(path)!r} is an empty (zero-byte) file; replace or remove it")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except Image.DecompressionBombError:  # a header declaring billions of pixels: refused before decoding
        raise ValueError(f"image {str(path)!r} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels (a "
                         f"decompression bomb?); replace or remove it") from None
    except UnidentifiedImageError:
        raise ValueError(f"image {str(path)!r} is not an image PIL can read (corrupt or of another format); "
                         f"replace or remove it") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad chunks, broken headers
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"image {str(path)!r} is truncated or corrupt ({reason}); replace or remove it") from None


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(s.startswith(".") for s in p.relative_to(folder).parts)  # skip hidden files and folders
    )


def list_image_folder(path: str | Path) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """The image files under ``path`` in a fixed order, their labels (one class per immediate sub-folder, sorted
    names -> 0, 1, ...; None without sub-folders) and the class names. See ``read_image_folder``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist or is not a folder; pass path=<folder of images>")
    top = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _images_under(d))
    if class_dirs and top:
        raise ValueError(f"{root} holds both images and class sub-folders; move the {len(top)} loose images into "
                         f"a sub-folder or remove them")
    if class_dirs:
        pairs = [(f, i) for i, d in enumerate(class_dirs) for f in _images_under(d)]
    else:
        pairs = [(f, -1) for f in _images_under(root)]
    if not pairs:
        raise DataNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    y = np.array([i for _, i in pairs], dtype=np.int64) if class_dirs else None
    return [f for f, _ in pairs], y, [d.name for d in class_dirs]


def read_image_folder(
    path: str | Path, *, image_size: tuple[int, int] | None = None, grayscale: bool | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read every PNG/JPEG/BMP image under ``path`` into (N, C, H, W) uint8.

    Labels: when ``path`` holds sub-folders, each immediate sub-folder is a class (sorted names -> 0, 1, ...) and
    its images (found recursively) get that label; images directly in ``path`` are then not allowed. Without
    sub-folders all images are read and labels are None.
    image_size: (H, W) to resize to (bicubic); None requires all images to share one size.
    grayscale: True -> 1 channel, False -> RGB, None -> 1 channel when every image is greyscale, else RGB.
    Returns (x, y, class_names).
    """
    from PIL import Image

    paths, labels, class_names = list_image_folder(path)
    if grayscale is None:  # from the headers: no pixels are held while the modes are looked at
        grayscale = all(_header_mode(f) in _GREY_MODES for f in paths)
    mode = "L" if grayscale else "RGB"
    x, first = None, None
    for i, f in enumerate(paths):  # decoded one at a time into the one (N, C, H, W) array: memory ~ its size
        im = read_image(f, mode)
        if image_size is not None:
            im = im.resize((int(image_size[1]), int(image_size[0])), Image.Resampling.BICUBIC)
        elif first is None:
            first = (f, im.size)
        elif im.size != first[1]:
            raise ValueError(f"images differ in size ({first[0].name}: {first[1][0]}x{first[1][1]}, {f.name}: "
                             f"{im.size[0]}x{im.size[1]} as WxH); set data.image_size=[H,W] (image_size=(H, W) from "
                             f"Python) to resize them")
        a = np.asarray(im, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
        if x is None:
            x = np.empty((len(paths), *a.shape), dtype=np.uint8)
        x[i] = a
    if x is None:
        raise ValueError(f"no images under {str(path)!r}")
    return x, labels, class_names


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().strip().split(",")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); is it really a .csv?") from None
    try:
        [float(t) for t in first]
        names = None
    except ValueError:
        names = [t.strip().strip('"').lower() for t in first]
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=0 if names is None else 1, dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: every value must be numeric ({reason}); remove text columns other than the "
                         f"header") from None
    label_cols = [i for i, n in enumerate(names or []) if n in _LABEL_COLUMNS]
    if len(label_cols) > 1:
        raise ValueError(f"{path} has several label columns {[names[i] for i in label_cols]}; keep one")
    if not label_cols:
        return table, None
    keep = [i for i in range(table.shape[1]) if i != label_cols[0]]
    return table[:, keep], table[:, label_cols[0]]


def read_arrays(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Read arrays from ``.npy``, ``.npz`` or ``.csv``.

    Returns ``{"all": (x, y)}`` for data still to be split, or ``{"train": .., "val": .., "test": ..}`` when the
    file fixes the split. Accepted layouts:
    - ``.npy``: one array x (N, ...).
    - ``.npz``: keys ``x`` and optionally ``y``; or ``train``, ``val`` (or ``valid``), ``test`` with optional
      labels ``train_y``, ``val_y``, ``test_y``.
    - ``.csv``: numeric table, one example per row; an optional header row; a column named ``label`` or ``y``
      becomes the labels.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(f"array file {p} does not exist; pass path=<file.npy|.npz|.csv>")
    if p.stat().st_size == 0:
        raise ValueError(f"array file {p} is empty (zero bytes); recreate it")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return {"all": (np.load(p, allow_pickle=False), None)}
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"could not read {p} as a .npy array ({e}); the file is corrupt or pickled") from None
    if suffix == ".csv":
        return {"all": _read_csv(p)}
    if suffix != ".npz":
        raise ValueError(f"{p}: unsupported file type {suffix!r}; use .npy, .npz or .csv")
    z = read_npz(p)
    if "x" in z:
        return {"all": (z["x"], z.get("y"))}
    found = {s: next((k for k in keys if k in z), None) for s, keys in _SPLIT_KEYS.items()}
    if all(found.values()):
        return {s: (z[k], z.get(f"{s}_y", z.get(f"{k}_y"))) for s, k in found.items()}
    raise ValueError(f"{p} has keys {sorted(z)}; expected 'x' (optionally 'y') or 'train', 'val', 'test'")
