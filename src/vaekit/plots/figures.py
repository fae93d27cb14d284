"""Figures of a trained model's decoder and encoder: reconstructions, prior samples, latent traversals,
interpolations and the decoded 2-D manifold (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Fig. 4),
and for a class-conditional model (M2) analogies and class-conditional samples (Kingma, Rezende, Mohamed &
Welling 2014, "Semi-Supervised Learning with Deep Generative Models", Fig. 1 and 5).

Every function writes one PNG of a pixel size fixed by its arguments (documented per function, ``dpi`` pixels per
inch of text) and returns its path; random draws use a forked RNG seeded with ``seed``, so a figure is a
deterministic function of (model, data, arguments). Image panels show decoder means E[x|z].
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.utils import eval_mode
from vaekit.plots._fig import FONT, axes_px, cell_px, grid_panel, images_only, new_figure, save_png

__all__ = ["plot_reconstructions", "plot_samples", "plot_traversals", "plot_interpolation", "plot_manifold",
           "kl_per_dim", "kl_order", "require_single_latent", "traversal_latents", "manifold_values",
           "manifold_latents", "images_only", "require_class_conditional", "plot_analogies", "plot_class_samples",
           "TOP", "SIDE"]

TOP, SIDE = 60, 20  # pixels above the panels (titles) and at the figure's edges


def require_single_latent(model: Any, what: str) -> None:
    """MissingCapability unless every latent group is continuous: traversal, interpolation and manifold values
    are prior units u (``vaekit.models.uses``), N(0, I) under the prior whatever the family (u = z for a VAE)."""
    from vaekit.models.contract import CONTINUOUS, require

    require(model, CONTINUOUS, what)


def require_class_conditional(model: Any, what: str) -> None:
    """MissingCapability unless the model's decoder takes a class (a discrete group with role "class")."""
    from vaekit.models.contract import CLASS_CONDITIONAL, require

    require(model, CLASS_CONDITIONAL, what)


@torch.no_grad()
def _decode_mean(model: Any, u: torch.Tensor) -> torch.Tensor:
    """E[x|z] (N, *data_shape) at flat prior units u (N, D), in eval mode."""
    from vaekit.models.uses import decode_mean

    with eval_mode(model):
        return decode_mean(model, u)


def _coordinate_names(model: Any) -> list[str]:
    """A name per prior-unit coordinate: z0, z1, ... for one group; layer2[0], ... (group[index]) for several."""
    from vaekit.models.uses import unit_slices

    slices = unit_slices(model.layout)
    if len(slices) == 1:
        return [f"z{i}" for i in range(_latent_size(model))]
    return [f"{name}[{i}]" for name, s in slices.items() for i in range(s.stop - s.start)]


def _latent_size(model: Any) -> int:
    """Coordinates of the flat prior-unit vector: every continuous group, flattened."""
    return int(model.layout.continuous_size)


def kl_per_dim(model: Any, x: torch.Tensor, seed: int = 0, max_points: int = 1000) -> np.ndarray:
    """Mean over (the first ``max_points`` of) x of KL(q(z|x) || p(z)) per latent dimension, in nats: (G,)
    (analytic for Gaussian posteriors; per layer and dimension for a Ladder VAE; Monte Carlo for IAF), from
    ``vaekit.evaluation.kl_per_dimension``."""
    from vaekit.evaluation import kl_per_dimension

    return kl_per_dimension(model, x[:max_points], batch_size=max_points, seed=seed).numpy()  # (G,)


def kl_order(kl: Sequence[float] | np.ndarray) -> np.ndarray:
    """Latent dimensions by decreasing KL (ties keep index order)."""
    return np.argsort(-np.asarray(kl, dtype=np.float64), kind="stable")


def traversal_latents(z0: torch.Tensor, dims: Sequence[int], values: Sequence[float]) -> torch.Tensor:
    """(R, S, D): row r is z0 with dimension dims[r] set to each of the S values (all others kept)."""
    z = z0.reshape(1, 1, -1).repeat(len(dims), len(values), 1)  # (R, S, D)
    v = torch.as_tensor(np.asarray(values), dtype=z0.dtype)
    for r, d in enumerate(dims):
        z[r, :, int(d)] = v
    return z


def manifold_values(n: int, grid: str = "linear") -> np.ndarray:
    """n grid values per axis: "linear" = equally spaced in [-3, 3]; "ppf" = Phi^{-1}((k + 1/2) / n), k = 0..n-1,
    the inverse normal CDF of an even grid on the unit square (Kingma & Welling 2014, Fig. 4), so each cell holds
    the same prior mass."""
    if n < 2:
        raise ValueError(f"the manifold grid needs at least 2 values per axis, got {n}")
    if grid == "linear":
        return np.linspace(-3.0, 3.0, n)
    if grid == "ppf":
        nd = NormalDist()
        return np.array([nd.inv_cdf((k + 0.5) / n) for k in range(n)])
    raise ValueError(f"unknown manifold grid {grid!r}; choose linear or ppf")


def manifold_latents(values: np.ndarray, dims: tuple[int, int], latent_dim: int,
                     base: torch.Tensor | None = None) -> torch.Tensor:
    """(n*n, D) latents in reading order: row i (top first) has z[dims[1]] = values[n-1-i], column k has
    z[dims[0]] = values[k]; other dimensions from ``base`` (default 0, the prior mean)."""
    n = len(values)
    z = torch.zeros(n, n, latent_dim) if base is None else base.reshape(1, 1, -1).repeat(n, n, 1).float()
    v = torch.as_tensor(values, dtype=z.dtype)
    z[:, :, dims[0]] = v.reshape(1, n)
    z[:, :, dims[1]] = v.flip(0).reshape(n, 1)
    return z.reshape(n * n, latent_dim)


def _title(fig: Any, text: str, sub: str | None = None) -> None:
    """The figure's title 12 px from the top; ``sub``, if given, a smaller line under it (above the panels')."""
    h = fig.get_size_inches()[1] * fig.dpi
    fig.text(0.5, 1 - 12 / h, text, ha="center", va="top", fontsize=11)
    if sub:
        fig.text(0.5, 1 - 29 / h, sub, ha="center", va="top", fontsize=8)


def plot_reconstructions(model: Any, x: torch.Tensor, path: str | Path, n: int = 32, ncol: int = 8,
                         dpi: int = 100) -> Path:
    """Inputs (left panel) and their reconstructions E[x|z = E_q[z|x]] (right panel, same positions).

    Size: width 2*SIDE + 2*ncol*cw + 30, height TOP + SIDE + ceil(n/ncol)*ch pixels, (ch, cw) = cell_px(data_shape)."""
    from matplotlib import rc_context

    images_only(model, "a reconstruction figure")
    xs = x[: min(n, x.shape[0])]
    with torch.random.fork_rng(devices=[]):  # a flow posterior's mean is a seeded sample mean
        torch.manual_seed(0)
        rec = model.reconstruct(xs)
    rows, (ch, cw) = math.ceil(xs.shape[0] / ncol), cell_px(model.data_shape)
    pw, ph = ncol * cw, rows * ch
    with rc_context(FONT):
        fig = new_figure(2 * SIDE + 2 * pw + 30, TOP + SIDE + ph, dpi)
        for k, (imgs, name) in enumerate(((xs, "inputs"), (rec, "reconstructions"))):
            ax = axes_px(fig, SIDE + k * (pw + 30), SIDE, pw, ph)
            grid_panel(ax, imgs, ncol)
            ax.set_title(name)
        _title(fig, f"{xs.shape[0]} inputs and their reconstructions (decoder mean at the encoder's point estimate)")
        return save_png(fig, path)


def plot_samples(model: Any, path: str | Path, n: int = 64, ncol: int = 8,
                 temperatures: Sequence[float] = (1.0,), seed: int = 0, dpi: int = 100) -> Path:
    """Decoder means of n prior draws at temperature T (z ~ N(0, T^2 I) for a standard-normal prior; the title says
    what the model draws, ``vaekit.models.uses.describe_prior_draws``), one panel per T, the same seed in each.

    Size: width 2*SIDE + P*ncol*cw + (P-1)*30, height TOP + SIDE + ceil(n/ncol)*ch pixels (P temperatures)."""
    from matplotlib import rc_context

    images_only(model, "a samples figure")
    if not temperatures or any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be positive numbers, got {list(temperatures)}")
    rows, (ch, cw) = math.ceil(n / ncol), cell_px(model.data_shape)
    pw, ph = ncol * cw, rows * ch
    with rc_context(FONT):
        fig = new_figure(2 * SIDE + len(temperatures) * pw + (len(temperatures) - 1) * 30, TOP + SIDE + ph, dpi)
        for k, t in enumerate(temperatures):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                imgs = model.sample(n, temperature=float(t))
            ax = axes_px(fig, SIDE + k * (pw + 30), SIDE, pw, ph)
            grid_panel(ax, imgs, ncol)
            ax.set_title(f"temperature T = {t:g}")
        from vaekit.models.uses import describe_prior_draws

        _title(fig, "Samples from the prior: decoder means", describe_prior_draws(model))
        return save_png(fig, path)


def plot_traversals(model: Any, path: str | Path, kl: Sequence[float] | np.ndarray,
                    z0: torch.Tensor | None = None, values: Sequence[float] | None = None,
                    dpi: int = 100, max_rows: int = 64) -> Path:
    """One row per latent coordinate in prior units (a dimension of z for a VAE), sorted by decreasing KL (nats;
    NaN where the model's KL does not split per coordinate, then in layout order); each row sets that coordinate
    to the values (default 11 equally spaced in [-3, 3]) with the others at z0 (an input's posterior mean in
    prior units, or the origin when None). At most ``max_rows`` rows (the largest KL first).

    Size: width 110 + SIDE + S*cw, height TOP + 45 + R*ch pixels (S values, R rows)."""
    from matplotlib import rc_context

    images_only(model, "a traversal figure")
    require_single_latent(model, "a traversal figure")
    d = _latent_size(model)
    kl = np.asarray(kl, dtype=np.float64)
    if kl.shape != (d,):
        raise ValueError(f"need one KL value per latent dimension ({d}), got shape {kl.shape}")
    values = np.linspace(-3, 3, 11) if values is None else np.asarray(values, dtype=np.float64)
    order = kl_order(np.nan_to_num(kl, nan=0.0))[:max_rows]
    where = "the origin" if z0 is None else "a chosen input's posterior mean"
    z0 = torch.zeros(d) if z0 is None else z0.reshape(d).float().cpu()
    names = _coordinate_names(model)
    z = traversal_latents(z0, order, values)  # (R, S, D)
    imgs = _decode_mean(model, z.reshape(-1, d).to(next(model.parameters()).device))
    ch, cw = cell_px(model.data_shape)
    pw, ph = len(values) * cw, len(order) * ch
    with rc_context(FONT):
        fig = new_figure(110 + SIDE + pw, TOP + 45 + ph, dpi)
        ax = axes_px(fig, 110, 45, pw, ph)
        grid_panel(ax, imgs, len(values), col_labels=[f"{v:.1f}" for v in values],
                   row_labels=[f"{names[j]}  KL {kl[j]:.2f}" if np.isfinite(kl[j]) else names[j] for j in order])
        ax.set_xlabel("value of the traversed dimension (the others fixed)")
        ax.set_title(f"rows sorted by KL (nats); the others at {where}", fontsize=9)
        _title(fig, "Latent traversals, one row per dimension")
        return save_png(fig, path)


def plot_interpolation(model: Any, xa: torch.Tensor, xb: torch.Tensor, path: str | Path, steps: int = 8,
                       row_labels: Sequence[str] | None = None, dpi: int = 100) -> Path:
    """Rows of input A, decoder means at z = (1 - t) m_A + t m_B for ``steps`` values t in [0, 1] (m: posterior
    means), input B. xa, xb: (P, *data_shape) pairs.

    Size: width 80 + SIDE + (steps+2)*cw, height TOP + 45 + P*ch pixels."""
    from matplotlib import rc_context

    images_only(model, "an interpolation figure")
    require_single_latent(model, "an interpolation figure")
    if xa.shape != xb.shape or xa.shape[0] < 1:
        raise ValueError(f"interpolation needs two equal batches of inputs, got {tuple(xa.shape)} and {tuple(xb.shape)}")
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    p = xa.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from vaekit.models.uses import encode_units

        with eval_mode(model):
            ma, mb = encode_units(model, xa)[0], encode_units(model, xb)[0]  # (P, D) prior units
    t = torch.linspace(0, 1, steps, device=ma.device).reshape(1, steps, 1)
    z = (1 - t) * ma.unsqueeze(1) + t * mb.unsqueeze(1)  # (P, steps, D)
    mid = _decode_mean(model, z.reshape(p * steps, -1)).reshape(p, steps, *model.data_shape).cpu()
    imgs = torch.cat([xa.cpu().unsqueeze(1), mid, xb.cpu().unsqueeze(1)], 1).reshape(-1, *model.data_shape)
    ch, cw = cell_px(model.data_shape)
    pw, ph = (steps + 2) * cw, p * ch
    labels = ["A"] + [f"{v:.2f}" for v in t.flatten().tolist()] + ["B"]
    with rc_context(FONT):
        fig = new_figure(80 + SIDE + pw, TOP + 45 + ph, dpi)
        ax = axes_px(fig, 80, 45, pw, ph)
        grid_panel(ax, imgs, steps + 2, col_labels=labels,
                   row_labels=list(row_labels) if row_labels else [f"pair {i + 1}" for i in range(p)])
        ax.set_xlabel("t, decoding (1 − t)·m_A + t·m_B;  A, B: the inputs")
        _title(fig, "Linear interpolation between posterior means of two inputs")
        return save_png(fig, path)


def plot_manifold(model: Any, path: str | Path, n: int = 15, grid: str = "linear",
                  dims: tuple[int, int] = (0, 1), base: torch.Tensor | None = None, dims_note: str = "",
                  dpi: int = 100) -> Path:
    """Decoder means over an n x n grid of two latent dimensions (others from ``base``, default 0): grid "linear"
    (equally spaced in [-3, 3]) or "ppf" (Kingma & Welling's inverse-CDF grid, ``manifold_values``).
    dims_note: why these two dimensions (shown in the title), e.g. "the two with the largest KL".

    Size: width 75 + SIDE + n*cw, height TOP + 60 + n*ch pixels."""
    from matplotlib import rc_context

    images_only(model, "a manifold figure")
    require_single_latent(model, "a manifold figure")
    d = _latent_size(model)
    if d < 2:
        raise ValueError("a manifold figure needs at least 2 latent dimensions")
    if len(set(dims)) != 2 or not all(0 <= k < d for k in dims):
        raise ValueError(f"manifold dims must be two different dimensions in 0..{d - 1}, got {tuple(dims)}")
    values = manifold_values(n, grid)
    z = manifold_latents(values, (int(dims[0]), int(dims[1])), d, base)
    imgs = _decode_mean(model, z.to(next(model.parameters()).device))
    ch, cw = cell_px(model.data_shape)
    with rc_context(FONT):
        fig = new_figure(75 + SIDE + n * cw, TOP + 60 + n * ch, dpi)
        ax = axes_px(fig, 75, 60, n * cw, n * ch)
        grid_panel(ax, imgs, n, col_labels=[f"{v:.2f}" for v in values],
                   row_labels=[f"{v:.2f}" for v in values[::-1]])
        ax.tick_params(axis="x", labelrotation=90)
        ax.set_xlabel(f"z{dims[0]}")
        ax.set_ylabel(f"z{dims[1]}")
        how = ("equally spaced in [−3, 3]" if grid == "linear"
               else "Φ⁻¹((k + ½)/n): equal prior mass per cell (Kingma & Welling 2014)")
        rest = "" if d == 2 else (", other dims 0" if base is None else ", other dims fixed")
        ax.set_title(f"grid {how}{rest}", fontsize=9)
        _title(fig, f"Decoded manifold over (z{dims[0]}, z{dims[1]})" + (f": {dims_note}" if dims_note else ""))
        return save_png(fig, path)


def plot_analogies(model: Any, x: torch.Tensor, path: str | Path, y: torch.Tensor | None = None,
                   dpi: int = 100) -> Path:
    """Analogies (Kingma et al. 2014, Fig. 1 and 5): row r shows the input x_r, then for each class k = 0..K-1
    the decoder mean at (z_r, k) with x_r's style z_r = E_q[z | x_r, y_r] (``posterior_means`` given y_r): the
    style held fixed, the class varied. y: (R,) the classes y_r the style is inferred at (None: argmax q(y|x)).

    Size: width 60 + SIDE + (K+1)*cw, height TOP + 45 + R*ch pixels (R inputs, K classes)."""
    from matplotlib import rc_context

    require_class_conditional(model, "an analogies figure")
    images_only(model, "an analogies figure")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"an analogies figure needs a batch of inputs, got shape {tuple(x.shape)}")
    if y is not None and tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"need one class per input ({x.shape[0]}), got labels of shape {tuple(y.shape)}")
    from vaekit.models.uses import posterior_means

    group = model.layout.class_group()
    k, r, shape = group.shape[0], x.shape[0], tuple(model.data_shape)
    if y is not None and bool(((y < 0) | (y >= k)).any()):
        raise ValueError(f"labels must be class ids in 0..{k - 1}, got {y.tolist()}")
    dev = next(model.parameters()).device
    with eval_mode(model), torch.no_grad():
        xd = x.to(dev)
        given = None if y is None else {group.name: torch.nn.functional.one_hot(y.to(dev).long(), k).float()}
        z = posterior_means(model, xd, given)  # each group at x_r, the class at y_r (or the predicted one)
        yr = z[group.name].argmax(-1)  # (R,)
        rows = {n: v.repeat_interleave(k, 0) for n, v in z.items()}  # (R*K, ...)
        rows[group.name] = torch.eye(k, device=dev).repeat(r, 1)  # (R*K, K) classes 0..K-1 per row
        gen = model.decode(rows).mean.reshape(r, k, *shape).cpu()  # (R, K, C, H, W)
    imgs = torch.cat([x.cpu().reshape(r, 1, *shape).to(gen.dtype), gen], 1).reshape(-1, *shape)  # (R*(K+1), ...)
    ch, cw = cell_px(shape)
    pw, ph = (k + 1) * cw, r * ch
    where = "the class q(y|x) predicts" if y is None else "each input's label"
    with rc_context(FONT):
        fig = new_figure(60 + SIDE + pw, TOP + 45 + ph, dpi)
        ax = axes_px(fig, 60, 45, pw, ph)
        grid_panel(ax, imgs, k + 1, col_labels=["input"] + [str(c) for c in range(k)],
                   row_labels=[f"y={int(c)}" for c in yr.tolist()])
        ax.set_xlabel("class y given to the decoder (the style z fixed per row)")
        ax.set_title(f"style z = E_q[z | x, y] at {where}", fontsize=9)
        _title(fig, "Analogies: each input's style with every class")
        return save_png(fig, path)


def plot_class_samples(model: Any, path: str | Path, n: int = 8, temperature: float = 1.0, seed: int = 0,
                       dpi: int = 100) -> Path:
    """Class-conditional samples: row i decodes one draw z_i ~ N(0, T^2 I) with each class k = 0..K-1 (one column
    per class), the decoder mean at (z_i, k): a row is one style across the classes.

    Size: width 60 + SIDE + K*cw, height TOP + 45 + n*ch pixels."""
    from matplotlib import rc_context

    require_class_conditional(model, "a class-samples figure")
    images_only(model, "a class-samples figure")
    if n < 1:
        raise ValueError(f"a class-samples figure needs at least one row, got n={n}")
    if not temperature > 0:
        raise ValueError(f"the temperature must be a positive number, got {temperature}")
    from vaekit.models.uses import from_prior_units, unflatten

    group = model.layout.class_group()
    k, shape = group.shape[0], tuple(model.data_shape)
    dev = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # on the CPU: the same draws everywhere
        u = float(temperature) * torch.randn(n, _latent_size(model))  # (n, D) prior units
    with eval_mode(model), torch.no_grad():
        units = {name: v.repeat_interleave(k, 0) for name, v in unflatten(model.layout, u.to(dev)).items()}
        units[group.name] = torch.eye(k, device=dev).repeat(n, 1)  # (n*K, K)
        imgs = model.decode(from_prior_units(model, units)).mean.cpu()  # (n*K, C, H, W), row-major
    ch, cw = cell_px(shape)
    pw, ph = k * cw, n * ch
    with rc_context(FONT):
        fig = new_figure(60 + SIDE + pw, TOP + 45 + ph, dpi)
        ax = axes_px(fig, 60, 45, pw, ph)
        grid_panel(ax, imgs, k, col_labels=[str(c) for c in range(k)],
                   row_labels=[f"z{i + 1}" for i in range(n)])
        ax.set_xlabel("class y given to the decoder")
        ax.set_title(f"one z ~ N(0, T² I) per row (T = {temperature:g}), one class per column", fontsize=9)
        _title(fig, "Class-conditional samples")
        return save_png(fig, path)
