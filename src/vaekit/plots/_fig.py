"""Shared figure plumbing: Agg figures laid out in pixels, image-grid panels, deterministic atomic PNG writes.

matplotlib is imported lazily here and only here (plus the figure modules that call these helpers). Figures are
built with ``matplotlib.figure.Figure`` on the Agg canvas, never pyplot: no display, no global figure state.
A figure's PNG has exactly the pixel size asked for (no tight bounding box), so sizes are predictable.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["new_figure", "axes_px", "grid_panel", "save_png", "cell_px", "check_png_path", "images_only"]

FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 8, "ytick.labelsize": 8}
PAD = 2  # pixels between images in a grid


def check_png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output file {str(path)!r} must end in .png")
    return path


def images_only(model: Any, what: str) -> None:
    """ValueError unless the model's data are images (C, H, W)."""
    if len(getattr(model, "data_shape", ())) != 3:
        raise ValueError(f"{what} needs image data; this model's data have shape {tuple(model.data_shape)} "
                         f"(tabular runs have latent-map, curves and kl figures)")


def cell_px(data_shape: Sequence[int]) -> tuple[int, int]:
    """Displayed (height, width) of one (C, H, W) image in a grid: the width is the image's own, at least 40 and
    at most 96 pixels; the height keeps the image's aspect ratio."""
    h, w = int(data_shape[-2]), int(data_shape[-1])
    cw = int(min(96, max(40, w)))
    return int(round(cw * h / w)), cw


def new_figure(width_px: int, height_px: int, dpi: int = 100) -> Any:
    """An Agg-backed Figure of exactly width_px x height_px pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def axes_px(fig: Any, left: float, bottom: float, width: float, height: float) -> Any:
    """Axes at a rectangle given in pixels from the figure's lower-left corner."""
    w, h = fig.get_size_inches() * fig.dpi
    return fig.add_axes((left / w, bottom / h, width / w, height / h))


def grid_panel(ax: Any, images: torch.Tensor, ncol: int, *, col_labels: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None) -> None:
    """Show images (N, C, H, W) as a grid with ``ncol`` columns in ``ax``; tick labels at the cell centres."""
    from vaekit.plots.grid import image_grid

    arr = image_grid(images, nrow=ncol, pad=PAD)  # (rows*(H+PAD)+PAD, ncol*(W+PAD)+PAD[, 3]) uint8
    h, w = images.shape[-2:]
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest",
              aspect="auto")
    ax.set_xticks([PAD + j * (w + PAD) + (w - 1) / 2 for j in range(len(col_labels or []))])
    ax.set_xticklabels(list(col_labels or []))
    ax.set_yticks([PAD + i * (h + PAD) + (h - 1) / 2 for i in range(len(row_labels or []))])
    ax.set_yticklabels(list(row_labels or []))
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)


def save_png(fig: Any, path: str | Path) -> Path:
    """Write the figure as PNG atomically; no metadata that varies between runs (same input, same bytes)."""
    from vaekit.utils import atomic_write_bytes

    path = check_png_path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return path
