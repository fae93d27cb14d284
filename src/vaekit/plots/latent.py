"""Latent maps: posterior means E_q[z|x] of data points in 2-D, coloured by label, and their evolution during
training as an animated GIF (from the snapshots ``vaekit.training.callbacks.LatentSnapshots`` records).

With more than two latent dimensions a map shows either the two most informative dimensions (largest mean KL
per dimension, the quantity that separates active from collapsed units, Burda et al. 2016 Sec. 5.2) or the first
two principal components of the posterior means; which one is stated on the plot.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaekit.plots._fig import FONT, axes_px, new_figure, save_png

__all__ = ["MapAxes", "choose_map_axes", "pca_2d", "plot_latent_map", "plot_latent_gif"]


@dataclass
class MapAxes:
    """How a (N, D) latent cloud is drawn in 2-D: xy = z @ proj + offset, axis labels and a one-line note."""

    proj: np.ndarray     # (D, 2)
    offset: np.ndarray   # (2,)
    xlabel: str
    ylabel: str
    note: str

    def apply(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) @ self.proj + self.offset  # (N, 2)


def pca_2d(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First two principal axes of z (N, D): (components (D, 2), mean (D,), explained variance ratio (2,)).
    Signs are fixed so each component's largest-magnitude loading is positive (a deterministic orientation)."""
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(0)
    # one point (N = 1) has a single singular vector: the full basis then completes the pair (D x D, cheap)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=z.shape[0] < 2)
    comps = vt[:2].T.copy()  # (D, 2)
    for k in range(2):
        if comps[np.argmax(np.abs(comps[:, k])), k] < 0:
            comps[:, k] *= -1
    var = np.zeros(2)
    var[: min(2, s.size)] = s[:2] ** 2
    return comps, mean, var / max(float((s ** 2).sum()), 1e-300)


def choose_map_axes(z: np.ndarray, method: str = "auto", kl: Sequence[float] | None = None) -> MapAxes:
    """The 2-D view of posterior means z (N, D): D = 2 -> the two dimensions; otherwise "kl" -> the two
    dimensions with the largest KL (needs ``kl``, one value per dimension), "pca"/"auto" -> the first two
    principal components of z."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"a latent map needs at least 2 latent dimensions, got posterior means of shape {z.shape}")
    d = z.shape[1]
    if method not in ("auto", "pca", "kl"):
        raise ValueError(f"unknown latent-map axes {method!r}; choose auto, pca or kl")
    if d == 2:
        return MapAxes(np.eye(2), np.zeros(2), "z0", "z1", "the model's 2 latent dimensions")
    if method == "kl":
        if kl is None or len(kl) != d:
            raise ValueError(f"latent-map axes 'kl' need one KL value per latent dimension ({d})")
        i, j = (int(k) for k in np.argsort(-np.asarray(kl, dtype=np.float64), kind="stable")[:2])
        proj = np.zeros((d, 2))
        proj[i, 0] = proj[j, 1] = 1.0
        return MapAxes(proj, np.zeros(2), f"z{i} (KL {kl[i]:.2f} nats)", f"z{j} (KL {kl[j]:.2f} nats)",
                       f"the 2 of {d} latent dimensions with the largest KL")
    comps, mean, ratio = pca_2d(z)
    return MapAxes(comps, -(mean @ comps), f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)",
                   f"PCA projection of the {d}-dimensional posterior means")


def _colours(y: np.ndarray | None, n: int) -> tuple[np.ndarray, list[tuple[str, Any]]]:
    """Per-point RGBA (N, 4) and legend entries [(label, colour)]; grey without labels."""
    from matplotlib import colormaps

    if y is None:
        return np.tile(np.array([[0.3, 0.3, 0.3, 0.5]]), (n, 1)), []
    classes = np.unique(y)
    cmap = colormaps["tab10" if len(classes) <= 10 else "turbo"]
    pos = {c: (k if len(classes) <= 10 else k / max(len(classes) - 1, 1)) for k, c in enumerate(classes)}
    rgba = np.array([cmap(pos[c]) for c in y])
    rgba[:, 3] = 0.6
    legend = [(str(int(c)), cmap(pos[c])) for c in classes] if len(classes) <= 20 else []
    return rgba, legend


def _draw_map(ax: Any, xy: np.ndarray, rgba: np.ndarray, legend: list, axes: MapAxes, lim: float) -> Any:
    theta = np.linspace(0, 2 * np.pi, 121)
    if axes.note.startswith(("the model's", "the 2 of")):  # axes in prior units: N(0, I) circles of radius 1, 2, 3
        for r in (1, 2, 3):
            ax.plot(r * np.cos(theta), r * np.sin(theta), color="0.75", lw=0.7, ls="--", zorder=0)
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=5, c=rgba, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel(axes.xlabel)
    ax.set_ylabel(axes.ylabel)
    for name, col in legend:
        ax.scatter([], [], s=25, color=col, label=name)
    if legend:
        ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return sc


def _limit(xy: np.ndarray) -> float:
    return float(max(3.0, 1.05 * np.percentile(np.abs(xy), 99.5))) if xy.size else 3.0


def plot_latent_map(z: np.ndarray, y: np.ndarray | None, path: str | Path, method: str = "auto",
                    kl: Sequence[float] | None = None, title: str | None = None, dpi: int = 100) -> Path:
    """Scatter of posterior means z (N, D) coloured by integer labels y (N,) (grey, and said so in the title, when
    y is None); axes from ``choose_map_axes``. Size 760 x 640 pixels."""
    from matplotlib import rc_context

    z = np.asarray(z, dtype=np.float64)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (z.shape[0],):
            raise ValueError(f"need one label per point: z has {z.shape[0]} rows, labels have shape {y.shape}")
    axes = choose_map_axes(z, method, kl)
    xy = axes.apply(z)
    rgba, legend = _colours(y, z.shape[0])
    with rc_context(FONT):
        fig = new_figure(760, 640, dpi)
        ax = axes_px(fig, 70, 55, 520, 520)
        _draw_map(ax, xy, rgba, legend, axes, _limit(xy))
        what = title or f"Latent map: posterior means of {z.shape[0]} points"
        ax.set_title(f"{what}\n{axes.note}" + ("" if y is not None else " (no labels: points not coloured)"))
        return save_png(fig, path)


def plot_latent_gif(snapshots: dict[str, np.ndarray], path: str | Path, max_frames: int = 60,
                    frame_ms: int = 200, dpi: int = 100) -> Path:
    """Animated GIF of the 2-D latent map over training: one frame per snapshot (at most ``max_frames``, evenly
    chosen, always the last), axes fixed for all frames (the two dimensions, or the PCA of the final snapshot).
    snapshots: {"step": (T,), "z": (T, N, D), optional "y": (N,)}. Size 600 x 540 pixels per frame."""
    from matplotlib import rc_context
    from PIL import Image

    from vaekit.utils import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"output file {str(path)!r} must end in .gif")
    steps, zs = np.asarray(snapshots["step"]), np.asarray(snapshots["z"], dtype=np.float64)
    if zs.ndim != 3 or zs.shape[0] != steps.shape[0] or zs.shape[0] == 0:
        raise ValueError(f"snapshots need z of shape (T, N, D) with T >= 1 matching step (T,), got {zs.shape}")
    y = snapshots.get("y")
    keep = np.unique(np.linspace(0, len(steps) - 1, min(max_frames, len(steps))).round().astype(int))
    axes = choose_map_axes(zs[-1], "pca")
    if zs.shape[2] > 2:
        axes.note += ", fitted on the last snapshot"
    xys = [axes.apply(zs[t]) for t in keep]
    lim = _limit(np.concatenate(xys))
    rgba, legend = _colours(None if y is None else np.asarray(y), zs.shape[1])
    frames = []
    with rc_context(FONT):
        fig = new_figure(600, 540, dpi)
        ax = axes_px(fig, 70, 50, 400, 400)
        sc = _draw_map(ax, xys[0], rgba, legend, axes, lim)
        ax.set_title(f"posterior means of {zs.shape[1]} fixed points\n{axes.note}", fontsize=9)
        label = fig.text(0.5, 0.985, "", ha="center", va="top", fontsize=11)
        sc.set_animated(True)
        label.set_animated(True)
        fig.canvas.draw()  # the static parts once; each frame redraws only the points and the step label
        background = fig.canvas.copy_from_bbox(fig.bbox)
        for t, xy in zip(keep, xys):
            fig.canvas.restore_region(background)
            sc.set_offsets(xy)
            label.set_text(f"Latent map during training: step {int(steps[t])}")
            ax.draw_artist(sc)
            fig.draw_artist(label)
            frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # (H, W, 3) uint8
    # one palette for all frames, from the last (most spread-out) frame: fast and flicker-free
    palette = Image.fromarray(frames[-1]).quantize(colors=255, method=Image.Quantize.FASTOCTREE)
    frames = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return path
