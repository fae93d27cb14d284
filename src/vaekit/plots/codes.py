"""Figures of a quantised model's codes: the codebook's use over training, and code maps beside their images.

They draw what they are handed (validation records, images and code indices); nothing here loads a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.plots._fig import FONT, axes_px, grid_panel, new_figure, save_png

__all__ = ["code_usage_matrix", "plot_code_usage", "plot_code_maps"]


def code_usage_matrix(recs: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), counts (K, T)) from the validation records that hold ``val_code_counts``."""
    rows = [(r["step"], r["val_code_counts"]) for r in recs if "val_code_counts" in r]
    if not rows:
        raise ValueError("no validation record holds code counts (val_code_counts); was the run trained with "
                         "model.objective=vq and validation data?")
    return np.array([s for s, _ in rows], dtype=np.float64), np.array([c for _, c in rows], dtype=np.float64).T


def plot_code_usage(recs: Sequence[dict[str, Any]], path: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Codebook use over training: left, each code's share of the validation codes at each validation (codes
    ordered by their final share; log colour scale, white: unused); right, the fraction of codes used."""
    from matplotlib import rc_context
    from matplotlib.colors import LogNorm

    steps, counts = code_usage_matrix(recs)  # (T,), (K, T)
    k = counts.shape[0]
    share = counts / np.maximum(counts.sum(0, keepdims=True), 1)
    order = np.argsort(-share[:, -1], kind="stable")
    shown = np.where(share[order] > 0, share[order], np.nan)
    used = (counts > 0).mean(0)
    with rc_context(FONT):
        fig = new_figure(1000, 420, dpi)
        ax = axes_px(fig, 70, 55, 480, 310)
        ax.set_facecolor("white")
        x = np.arange(len(steps) + 1) - 0.5
        mesh = ax.pcolormesh(x, np.arange(k + 1) - 0.5, shown, cmap="viridis", shading="flat",
                             norm=LogNorm(vmin=max(float(np.nanmin(shown)) if np.isfinite(shown).any() else 1e-6,
                                                   1e-6), vmax=1.0))
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([f"{int(s)}" for s in steps], rotation=45 if len(steps) > 8 else 0)
        ax.set_xlabel("training step (validation)")
        ax.set_ylabel("code (by final use)")
        fig.colorbar(mesh, cax=axes_px(fig, 560, 55, 14, 310)).set_label("share of validation codes")
        ax2 = axes_px(fig, 730, 55, 245, 310)
        ax2.plot(steps, 100 * used, marker="o")
        ax2.set_ylim(0, 102)
        ax2.set_xlabel("training step")
        ax2.set_ylabel("codes used (% of K)")
        ax2.grid(alpha=0.3)
        fig.suptitle(title or f"Codebook use over training: {int(used[-1] * k)} of {k} codes used at the end")
        return save_png(fig, path)


def plot_code_maps(images: torch.Tensor, codes: torch.Tensor, k: int, path: str | Path, title: str = "",
                   dpi: int = 100) -> Path:
    """Images (N, C, H, W) in the top row and their code maps (N, h, w) (integer codes in 0..K-1, one colour
    each) below."""
    from matplotlib import rc_context
    from matplotlib import colormaps

    n = images.shape[0]
    rgb = torch.as_tensor(colormaps["nipy_spectral"](codes.cpu().numpy() / max(k - 1, 1))[..., :3],
                          dtype=torch.float32).permute(0, 3, 1, 2)  # (N, 3, h, w)
    rgb = torch.nn.functional.interpolate(rgb, size=images.shape[-2:], mode="nearest")
    imgs = images.float().cpu().clamp(0, 1)
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    with rc_context(FONT):
        fig = new_figure(max(300, 70 * n + 40), 230, dpi)
        ax = axes_px(fig, 20, 10, 70 * n, 170)
        grid_panel(ax, torch.cat([imgs, rgb]), n)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title or f"Test images and their {codes.shape[-2]}x{codes.shape[-1]} code maps (K = {k})")
        return save_png(fig, path)
