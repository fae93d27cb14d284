"""Training curves and the KL-per-dimension heat map, from a run's metrics.jsonl (one record per validation).

Units are nats per example (sums over pixels and latents, mean over the batch). A latent dimension whose KL
stays near zero carries no information about x: the heat map shows posterior collapse as dark rows
(Bowman et al. 2016; Sønderby et al. 2016 Sec. 3 for the Ladder VAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaekit.plots._fig import FONT, axes_px, new_figure, save_png

__all__ = ["load_metrics", "plot_curves", "plot_kl_heatmap", "kl_matrix"]


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``; FileNotFoundError / ValueError when absent or empty."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {str(run_dir)!r}: not a run folder written by `vaekit train`")
    from vaekit.utils import read_jsonl

    recs = [r for r in read_jsonl(path) if isinstance(r, dict)]
    if not recs:
        raise ValueError(f"{str(path)!r} is empty: the run has not reached its first validation yet")
    return recs


def _series(recs: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


def _robust_ylim(ax: Any, values: list[np.ndarray]) -> None:
    """Y range of everything after the first record (the first average includes the random-init steps)."""
    v = np.concatenate([x[1:] if x.size > 2 else x for x in values if x.size]) if any(x.size for x in values) else None
    if v is not None and v.size and np.all(np.isfinite(v)):
        lo, hi = float(v.min()), float(v.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
        ax.set_ylim(lo - pad, hi + pad)


def plot_curves(recs: Sequence[dict[str, Any]], path: str | Path, dpi: int = 100) -> Path:
    """Four panels over training steps: loss and validation −ELBO; reconstruction −log p(x|z) (train, val);
    KL (train, val; β on a second axis when it changes); learned σ (sigma-VAE) or else the learning rate.
    Train values average the steps since the previous record. Size 1000 x 720 pixels."""
    from matplotlib import rc_context

    panels = [
        ("loss (nats per example)", [("loss", "train loss (β-weighted)", 1.0), ("val_elbo", "validation −ELBO", -1.0)]),
        ("reconstruction −log p(x|z) (nats)", [("rec", "train", 1.0), ("val_rec", "validation", 1.0)]),
        ("KL(q(z|x) ‖ p(z)) (nats)", [("kl", "train", 1.0), ("val_kl", "validation", 1.0)]),
    ]
    has_sigma = any(isinstance(r.get("sigma"), (int, float)) for r in recs)
    panels.append(("learned σ (sigma-VAE)", [("sigma", "σ", 1.0)]) if has_sigma
                  else ("learning rate", [("lr", "learning rate", 1.0)]))
    with rc_context(FONT):
        fig = new_figure(1000, 720, dpi)
        for k, (ylabel, lines) in enumerate(panels):
            r, c = divmod(k, 2)
            ax = axes_px(fig, 80 + c * 525, 390 - r * 330, 380, 260)  # room for the β twin axis between columns
            vals = []
            for key, label, sign in lines:
                x, v = _series(recs, key)
                if x.size:
                    ax.plot(x, sign * v, marker="." if x.size < 30 else None, lw=1.4, label=label)
                    vals.append(sign * v)
            if k == 2:  # β on a twin axis when a warm-up changes it
                x, b = _series(recs, "beta")
                if b.size and b.min() != b.max():
                    tw = ax.twinx()
                    tw.plot(x, b, color="0.5", ls=":", lw=1.2)
                    tw.set_ylabel("β (dotted)")
            if vals:
                _robust_ylim(ax, vals)
                ax.legend(fontsize=8, frameon=False)
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        fig.text(0.5, 0.985, f"Training curves ({len(recs)} records, last at step {recs[-1]['step']})",
                 ha="center", va="top", fontsize=12)
        return save_png(fig, path)


def kl_matrix(recs: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), KL (G, T)) from the records that carry ``val_kl_dims``; ValueError when none do."""
    rows = [(r["step"], r["val_kl_dims"]) for r in recs if r.get("val_kl_dims")]
    if not rows:
        raise ValueError("metrics.jsonl has no val_kl_dims (a run without validation data, or from an older vaekit); "
                         "the KL heat map needs them")
    g = len(rows[-1][1])
    rows = [(s, k) for s, k in rows if len(k) == g]
    return np.array([s for s, _ in rows], dtype=np.float64), np.array([k for _, k in rows], dtype=np.float64).T


def plot_kl_heatmap(recs: Sequence[dict[str, Any]], path: str | Path, group_label: str = "latent dimension",
                    dpi: int = 100) -> Path:
    """Heat map of the validation KL per latent dimension (rows) at each validation (columns, by step), in nats.
    Size 900 x (150 + clip(14 G, 200, 700)) pixels for G dimensions (or KL groups)."""
    from matplotlib import rc_context

    steps, kl = kl_matrix(recs)  # (T,), (G, T)
    g = kl.shape[0]
    ph = int(np.clip(14 * g, 200, 700))
    # column edges halfway between validations, so uneven spacing (a final partial interval) is drawn truly
    mids = (steps[1:] + steps[:-1]) / 2
    first = steps[0] - (steps[1] - steps[0]) / 2 if len(steps) > 1 else steps[0] - 0.5
    last = steps[-1] + (steps[-1] - steps[-2]) / 2 if len(steps) > 1 else steps[0] + 0.5
    xe = np.concatenate([[max(first, 0.0)], mids, [last]])
    ye = np.arange(g + 1) - 0.5
    with rc_context(FONT):
        fig = new_figure(900, 150 + ph, dpi)
        ax = axes_px(fig, 80, 55, 680, ph)
        mesh = ax.pcolormesh(xe, ye, kl, cmap="viridis", vmin=0.0, shading="flat")
        ax.set_ylim(g - 0.5, -0.5)
        if g <= 40:
            ax.set_yticks(range(g))
        ax.set_xlabel("training step")
        ax.set_ylabel(group_label)
        cax = axes_px(fig, 775, 55, 18, ph)
        fig.colorbar(mesh, cax=cax).set_label("KL (nats)")
        active = int((kl[:, -1] > 0.01).sum())
        ax.set_title(f"Validation KL per {group_label} over training\n{active} of {g} carry more than 0.01 nats at "
                     f"the last validation (near-zero rows: collapsed dimensions)")
        return save_png(fig, path)
