"""Figures of which latent dimension moves which ground-truth factor (drawn from what the caller hands over)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vaekit.plots._fig import FONT, axes_px, cell_px, grid_panel, new_figure, save_png

__all__ = ["plot_factor_traversal", "plot_labelled_traversals"]


def plot_factor_traversal(truth: torch.Tensor, traversal: torch.Tensor, path: str | Path, *, factor: str,
                          dim: int, score: float, values: Sequence[float], dpi: int = 100) -> Path:
    """Two rows for one factor: the ground truth with only that factor changing (truth (S, C, H, W)), and the
    model's decodings as its best-matching latent dimension ``dim`` sweeps ``values`` (traversal (S', C, H, W)).
    ``score``: that dimension's mutual information with the factor over the factor's entropy."""
    from matplotlib import rc_context

    n = max(len(truth), len(traversal))
    blank = lambda t: torch.cat([t, t.new_zeros(n - len(t), *t.shape[1:])]) if len(t) < n else t  # noqa: E731
    ch, cw = cell_px(truth.shape[1:])
    pw, ph = n * cw, 2 * ch
    with rc_context(FONT):
        fig = new_figure(150 + pw + 20, 60 + ph + 40, dpi)
        ax = axes_px(fig, 150, 40, pw, ph)
        grid_panel(ax, torch.cat([blank(truth), blank(traversal)]), n,
                   row_labels=[f"true {factor}", f"z{dim} traversed"],
                   col_labels=[f"{v:.1f}" for v in values])
        ax.set_xlabel(f"z{dim} value (the other dimensions at a test image's posterior mean)", fontsize=8)
        fig.suptitle(f"{factor}: moved most by z{dim} (MI / H = {score:.2f})", fontsize=11)
        return save_png(fig, path)


def plot_labelled_traversals(images: torch.Tensor, path: str | Path, labels: Sequence[str],
                             values: Sequence[float], dpi: int = 100) -> Path:
    """One row per latent dimension (images (D * S, C, H, W), rows in ``labels`` order), each labelled with the
    factor the dimension tracks most."""
    from matplotlib import rc_context

    s = len(values)
    ch, cw = cell_px(images.shape[1:])
    pw, ph = s * cw, len(labels) * ch
    with rc_context(FONT):
        fig = new_figure(190 + pw + 20, 60 + ph + 40, dpi)
        ax = axes_px(fig, 190, 40, pw, ph)
        grid_panel(ax, images, s, row_labels=list(labels), col_labels=[f"{v:.1f}" for v in values])
        ax.set_xlabel("value of the traversed dimension (the others at a test image's posterior mean)", fontsize=8)
        fig.suptitle("Latent traversals labelled with the factor each dimension tracks most (MI / H)", fontsize=11)
        return save_png(fig, path)


