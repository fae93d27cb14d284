"""Aggregate-posterior scatter plots for the IAF toy experiment (Kingma et al. 2016, Figure 1 style)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_aggregate_posteriors"]


def plot_aggregate_posteriors(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    limit: float = 3.5,
) -> Path:
    """Side-by-side scatter plots of latent samples z (N, 2) coloured by integer class label (N,).

    panels: (title, z, labels) per panel. The standard normal prior is drawn as contours at radius 1, 2, 3
    (its 39%, 86% and 99% mass circles), so a good posterior fit shows the coloured clouds tiling that disc.
    Writes a PNG at ``path`` and returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output file {str(path)!r} must end in .png")
    if not panels:
        raise ValueError("plot_aggregate_posteriors needs at least one panel")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, (title, z, labels) in zip(axes[0], panels):
        z, labels = np.asarray(z), np.asarray(labels)
        if z.ndim != 2 or z.shape[1] != 2 or labels.shape != (z.shape[0],):
            raise ValueError(f"each panel needs z of shape (N, 2) and labels (N,), got {z.shape}, {labels.shape}")
        for r in (1, 2, 3):
            ax.plot(r * np.cos(theta), r * np.sin(theta), color="0.6", lw=0.8, ls="--", zorder=0)
        for k in np.unique(labels):
            sel = labels == k
            name = class_names[int(k)] if class_names is not None else f"class {int(k)}"
            ax.scatter(z[sel, 0], z[sel, 1], s=2, alpha=0.35, color=colors(int(k) % 10), label=name,
                       rasterized=True)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_title(title, fontsize=10)
    leg = axes[0][-1].legend(loc="upper right", fontsize=7, markerscale=4, framealpha=0.8)
    for handle in leg.legend_handles if hasattr(leg, "legend_handles") else leg.legendHandles:
        handle.set_alpha(1.0)
    fig.tight_layout()
    import io

    from vaekit.utils import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
