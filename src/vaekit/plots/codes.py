"""Figures of a quantised model's codes: the codebook's use over training, and code maps beside their images.

They draw what they are handed (validation records, images and code indices); nothing here loads a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from vaekit.plots._fig import FONT, axes_px, grid_panel, new_figure, save_png

__all__ = ["COUNTS", "count_keys", "code_usage_matrix", "plot_code_usage", "plot_code_maps"]


COUNTS = "val_code_counts"  # the validation records' per-code counts (one map; a suffix "_<group>" per map of several)


def count_keys(recs: Sequence[dict[str, Any]]) -> list[str]:
    """The per-code count keys the records hold (``val_code_counts``, or one per code map), in first-seen order."""
    keys: dict[str, None] = {}
    for r in recs:
        keys.update((k, None) for k in r if k == COUNTS or k.startswith(COUNTS + "_"))
    return list(keys)


def code_usage_matrix(recs: Sequence[dict[str, Any]], key: str = COUNTS) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), counts (K, T)) from the validation records that hold ``key``."""
    rows = [(r["step"], r[key]) for r in recs if key in r]
    if not rows:
        raise ValueError(f"no validation record holds code counts ({key}); was the run trained with "
                         f"model.objective=vq and validation data?")
    return np.array([s for s, _ in rows], dtype=np.float64), np.array([c for _, c in rows], dtype=np.float64).T


def plot_code_usage(recs: Sequence[dict[str, Any]], path: str | Path, title: str = "", dpi: int = 100,
                    keys: Sequence[str] | None = None) -> Path:
    """Codebook use over training, one row per code map (``keys``; default every count key of the records):
    left, each code's share of the validation codes at each validation (codes ordered by their final share; log
    colour scale, white: unused); right, the fraction of codes used."""
    from matplotlib import rc_context
    from matplotlib.colors import LogNorm

    keys = list(keys) if keys is not None else count_keys(recs) or [COUNTS]
    rows = [(key, *code_usage_matrix(recs, key)) for key in keys]  # (key, (T,), (K, T))
    notes = []
    with rc_context(FONT):
        fig = new_figure(1000, 60 + 380 * len(rows), dpi)
        for i, (key, steps, counts) in enumerate(rows):
            top = 55 + 380 * (len(rows) - 1 - i)  # pixels from the bottom: the first map's row on top
            name = key[len(COUNTS) + 1:]
            k = counts.shape[0]
            share = counts / np.maximum(counts.sum(0, keepdims=True), 1)
            order = np.argsort(-share[:, -1], kind="stable")
            shown = np.where(share[order] > 0, share[order], np.nan)
            used = (counts > 0).mean(0)
            ax = axes_px(fig, 70, top, 480, 310)
            ax.set_facecolor("white")
            x = np.arange(len(steps) + 1) - 0.5
            low = max(float(np.nanmin(shown)) if np.isfinite(shown).any() else 1e-6, 1e-6)
            mesh = ax.pcolormesh(x, np.arange(k + 1) - 0.5, shown, cmap="viridis", shading="flat",
                                 norm=LogNorm(vmin=low, vmax=1.0))
            ax.set_ylim(k - 0.5, -0.5)
            ax.set_xticks(range(len(steps)))
            ax.set_xticklabels([f"{int(s)}" for s in steps], rotation=45 if len(steps) > 8 else 0)
            ax.set_xlabel("training step (validation)")
            ax.set_ylabel(f"{name + ' ' if name else ''}code (by final use)")
            fig.colorbar(mesh, cax=axes_px(fig, 560, top, 14, 310)).set_label("share of validation codes")
            ax2 = axes_px(fig, 730, top, 245, 310)
            ax2.plot(steps, 100 * used, marker="o")
            ax2.set_ylim(0, 102)
            ax2.set_xlabel("training step")
            ax2.set_ylabel(f"{name + ' ' if name else ''}codes used (% of K)")
            ax2.grid(alpha=0.3)
            notes.append(f"{name + ': ' if name else ''}{int(round(used[-1] * k))} of {k}")
        fig.suptitle(title or f"Codebook use over training: {', '.join(notes)} codes used at the end")
        return save_png(fig, path)


def plot_code_maps(images: torch.Tensor, codes: torch.Tensor | Mapping[str, torch.Tensor], k: int,
                   path: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Images (N, C, H, W) in the top row and their code maps below: (N, h, w) integer codes in 0..K-1, or one
    such map per name (a row each, e.g. a two-level model's bottom and top), one colour per code."""
    from matplotlib import rc_context
    from matplotlib import colormaps

    maps = dict(codes) if isinstance(codes, Mapping) else {"": codes}
    n = images.shape[0]
    imgs = images.float().cpu().clamp(0, 1)
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    rows = [imgs]
    for c in maps.values():
        rgb = torch.as_tensor(colormaps["nipy_spectral"](c.cpu().numpy() / max(k - 1, 1))[..., :3],
                              dtype=torch.float32).permute(0, 3, 1, 2)  # (N, 3, h, w)
        rows.append(torch.nn.functional.interpolate(rgb, size=images.shape[-2:], mode="nearest"))
    sizes = ", ".join(f"{name + ' ' if name else ''}{c.shape[-2]}x{c.shape[-1]}" for name, c in maps.items())
    with rc_context(FONT):
        fig = new_figure(max(420, 70 * n + 40), 60 + 85 * len(rows), dpi)
        ax = axes_px(fig, 20, 10, 70 * n, 85 * len(rows))
        grid_panel(ax, torch.cat(rows), n)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.suptitle(title or f"Inputs and their codes\n{sizes} (K = {k})")
        return save_png(fig, path)
