"""Figures of sequences: piano rolls (time across, keys up) and frame strips (Moving MNIST prediction)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vaekit.plots._fig import axes_px, new_figure, save_png

__all__ = ["plot_piano_rolls", "plot_frame_rows"]


def plot_piano_rolls(rolls: Sequence[np.ndarray], path: str | Path, lowest_note: int = 21,
                     titles: Sequence[str] | None = None) -> Path:
    """One panel per roll (T, K) of 0/1 (or probabilities): step across, MIDI note (lowest_note + column) up,
    the rows cut to the notes any roll plays (with 2 of margin)."""
    rolls = [np.asarray(r, dtype=np.float32) for r in rolls]
    if not rolls or any(r.ndim != 2 for r in rolls):
        raise ValueError("piano rolls must be a non-empty list of (T, keys) arrays")
    played = np.nonzero(np.concatenate(rolls).max(0) > 0.05)[0]
    lo, hi = (int(played.min()) - 2, int(played.max()) + 3) if len(played) else (0, rolls[0].shape[1])
    lo, hi = max(lo, 0), min(hi, rolls[0].shape[1])
    width, height = 900, 40 + 170 * len(rolls)
    fig = new_figure(width, height)
    for i, r in enumerate(rolls):
        ax = axes_px(fig, 60, height - 170 * (i + 1) + 10, width - 80, 130)
        ax.imshow(r[:, lo:hi].T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                  interpolation="nearest", extent=(0, len(r), lowest_note + lo - 0.5, lowest_note + hi - 0.5))
        ax.set_ylabel("MIDI note")
        if titles:
            ax.set_title(titles[i], fontsize=9)
    fig.axes[-1].set_xlabel("time step")
    return save_png(fig, path)


def plot_frame_rows(rows: Sequence[np.ndarray], path: str | Path, labels: Sequence[str]) -> Path:
    """Rows of frames (each (F, H, W) in [0, 1]) one above the other, a label left of each row."""
    from vaekit.plots._fig import grid_panel

    import torch

    frames = torch.from_numpy(np.concatenate([np.asarray(r, np.float32) for r in rows]))[:, None]  # (N, 1, H, W)
    ncol = len(rows[0])
    h, w = frames.shape[-2:]
    fig = new_figure(80 + ncol * (w + 2), 20 + len(rows) * (h + 2))
    ax = axes_px(fig, 78, 10, ncol * (w + 2) + 2, len(rows) * (h + 2) + 2)
    grid_panel(ax, frames, ncol, row_labels=list(labels))
    return save_png(fig, path)
