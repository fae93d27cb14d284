"""Every standard figure of a run folder, by name: what `vaekit plot` and the run report call.

Figures are written to ``run_dir/figures/`` (or ``out_dir``). Data figures use the run's test split with the
fixed binarisation/dequantisation evaluation uses (seed + 4), so they show what the model was measured on.
Asking for one kind that does not apply (a traversal of a Ladder VAE or an M2, analogies of a model with no class
input, images of tabular data, a KL heat map of a run without validation) raises ValueError; ``all`` skips those and
says why. The figures of a capability a model lacks (analogies without a class input, code figures without a
quantised latent) are left out of ``all`` silently, and refused naming the capability when asked for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.models.contract import CLASS_CONDITIONAL, QUANTISED, require
from vaekit.models.uses import encode_units, posterior_means
from vaekit.utils import eval_mode

__all__ = ["KINDS", "CAPTIONS", "NEEDS_MODEL", "NEEDS_DATA", "make_figures"]

log = logging.getLogger("vaekit.plots")

KINDS = ("reconstructions", "samples", "traversals", "interpolation", "latent-map", "manifold", "analogies",
         "class-samples", "curves", "kl", "latent-gif", "code-usage", "code-maps")
NEEDS_MODEL = {"reconstructions", "samples", "traversals", "interpolation", "latent-map", "manifold", "analogies",
               "class-samples", "code-usage", "code-maps"}
NEEDS_DATA = {"reconstructions", "traversals", "interpolation", "latent-map", "manifold", "analogies", "code-maps"}
#: the kinds that need a capability: left out of "all" for a model without it, refused naming it when asked for
CAPABILITY_OF = {"analogies": CLASS_CONDITIONAL, "class-samples": CLASS_CONDITIONAL, "code-usage": QUANTISED,
                 "code-maps": QUANTISED}

CAPTIONS = {
    "reconstructions": "Test inputs (left) and their reconstructions (right): the decoder mean at the encoder's point "
                       "estimate of the latent (the posterior's mean or mode; the nearest codes of a VQ-VAE).",
    "samples": "Decoder means at draws from the model's prior at temperature T (named in the figure's title: "
               "N(0, T² I) for a standard-normal prior), one panel per T.",
    "traversals": "One row per latent dimension, sorted by KL: that dimension set to values from −3 to 3, "
                  "the others fixed. Rows with near-zero KL (collapsed dimensions) do not change.",
    "interpolation": "Decoder means along straight lines between the posterior means of two test inputs.",
    "latent-map": "Posterior means of test points, coloured by label (2-D, or the view stated on the plot).",
    "manifold": "Decoder means over an evenly spaced grid of two latent dimensions in [−3, 3].",
    "manifold-ppf": "The same over the inverse-normal-CDF grid (equal prior mass per cell; Kingma & Welling 2014, Fig. 4).",
    "analogies": "Analogies (Kingma et al. 2014, Fig. 1): each row is a test input (first column) and its style "
                 "z = E_q[z | x, y] at its label (at the predicted class for unlabelled data), decoded with every class y (one column per class).",
    "class-samples": "Class-conditional samples: each row decodes one draw z ~ N(0, I) with every class y (one column "
                     "per class), so a row shows one style across the classes.",
    "curves": "Training and validation loss, reconstruction term and KL (nats per example) over training steps.",
    "kl": "Validation KL per latent dimension over training: dark rows are collapsed dimensions.",
    "latent-gif": "The 2-D latent map of a fixed set of validation points at the snapshots taken during training.",
    "code-usage": "Codebook use over training, one row per code map: each code's share of the validation codes at "
                  "each validation (log colour scale, white: unused; codes ordered by final use), and the fraction "
                  "of the K codes used.",
    "code-maps": "Test inputs (top row) and the codes of their code map(s) below, one colour per code.",
}


def _pairs(x: torch.Tensor, y: torch.Tensor | None, p: int = 6) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """p pairs of inputs: with labels, first examples of successive different classes; else consecutive points."""
    if y is not None:
        firsts: dict[int, int] = {}
        for i, c in enumerate(y[:5000].tolist()):
            firsts.setdefault(int(c), i)
        cls = list(firsts)
        if len(cls) >= 2:  # disjoint pairs of classes in order of first appearance
            ab = [(cls[2 * k], cls[2 * k + 1]) for k in range(min(p, len(cls) // 2))]
            ia, ib = [firsts[a] for a, _ in ab], [firsts[b] for _, b in ab]
            return x[ia], x[ib], [f"{a} → {b}" for a, b in ab]
    p = max(1, min(p, x.shape[0] // 2))
    return x[0:2 * p:2], x[1:2 * p:2], [f"{2 * k} → {2 * k + 1}" for k in range(p)]


def _one_per_class(x: torch.Tensor, y: torch.Tensor | None, n: int = 10) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows of the analogies figure: with labels, the first example of each class in class order (at most n);
    else the first n examples (their classes then come from q(y|x))."""
    if y is None:
        return x[:n], None
    firsts: dict[int, int] = {}
    for i, c in enumerate(y[:5000].tolist()):
        firsts.setdefault(int(c), i)
    idx = [firsts[c] for c in sorted(firsts)[:n]]
    return x[idx], y[idx]


def _group_label(model: Any) -> str:
    """What a row of the KL heat map is, from the model's latent layout (a generic name without the model)."""
    if model is None:
        return "KL unit"
    groups = model.layout.groups
    if len(groups) == 1:
        return "latent dimension"
    return f"KL unit ({', '.join(g.name for g in groups)})"


def make_figures(run_dir: str | Path, kinds: Sequence[str] = ("all",), out_dir: str | Path | None = None, *,
                 model: Any = None, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 snapshots: dict[str, np.ndarray] | None = None, seed: int = 0,
                 temperatures: Sequence[float] = (0.7, 1.0), map_axes: str = "auto", grid: str = "both",
                 around: int | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the figures ``kinds`` (names from KINDS, or "all") of a run; return ({name: path}, {kind: why skipped}).

    Draws what it is handed: model and its test data x/y (the kinds in NEEDS_MODEL / NEEDS_DATA need them;
    ``vaekit.runs.run_figures`` loads them from a run folder), the latent snapshots recorded during training (the
    latent GIF), and the run folder's metrics file for the curves. around: traversals around the posterior mean of test input number ``around`` (None: the origin).
    grid: manifold grid "linear", "ppf" or "both".
    """
    from vaekit.plots import codes, curves, figures, latent

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} not found")
    unknown = [k for k in kinds if k not in KINDS and k != "all"]
    if unknown:
        raise ValueError(f"unknown figure kind {unknown[0]!r}; choose from {', '.join(KINDS)} or all")
    strict = "all" not in kinds
    todo = list(KINDS) if not strict else list(dict.fromkeys(kinds))
    if grid not in ("linear", "ppf", "both"):
        raise ValueError(f"unknown manifold grid {grid!r}; choose linear, ppf or both")
    missing = [k for k in todo if (k in NEEDS_MODEL and model is None) or (k in NEEDS_DATA and x is None)]
    if missing and strict:
        raise ValueError(f"the {missing[0]} figure needs the model and its test data; use vaekit.runs.run_figures")
    todo = [k for k in todo if k not in missing]
    if not strict and model is not None:  # "all": the kinds of the model's capabilities
        todo = [k for k in todo if k not in CAPABILITY_OF or CAPABILITY_OF[k] in model.capabilities]
    recs = curves.load_metrics(run_dir) if ({"curves", "kl", "code-usage"} & set(todo)) else None
    out = Path(out_dir) if out_dir is not None else run_dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.eval()
        dev = next(model.parameters()).device
        x = x.to(dev) if x is not None else None
    x_given = x  # --index refers to the data as given
    if x is not None and x.shape[0] > 1:
        # a seeded shuffle: a test file ordered by class (binarized MNIST's is) still shows every class in the
        # reconstructions, latent map, interpolations and the KL estimate
        # (indices drawn on the CPU on purpose: the same points are shown whatever device the model runs on)
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        x = x[order.to(x.device)]
        y = y[order.to(y.device)] if y is not None else None

    state: dict[str, Any] = {}

    def kl() -> np.ndarray:  # KL per dimension on test data, computed once
        if "kl" not in state:
            state["kl"] = figures.kl_per_dim(model, x, seed=seed)
        return state["kl"]

    def kl_units() -> np.ndarray:  # KL per prior-unit coordinate; NaN where the model's KL does not split so
        d = model.layout.continuous_size
        return kl() if kl().shape == (d,) else np.full(d, np.nan)

    def informative_dims() -> tuple[int, int]:
        d = model.layout.continuous_size
        if d < 2:
            raise ValueError("a manifold figure needs at least 2 latent dimensions")
        o = figures.kl_order(np.nan_to_num(kl_units(), nan=0.0)) if d > 2 else np.arange(2)
        return int(o[0]), int(o[1])

    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for kind in todo:
        try:
            if kind == "reconstructions":
                written[kind] = figures.plot_reconstructions(model, x, out / "reconstructions.png")
            elif kind == "samples":
                written[kind] = figures.plot_samples(model, out / "samples.png", temperatures=temperatures, seed=seed)
            elif kind == "traversals":
                figures.images_only(model, "a traversal figure")
                figures.require_single_latent(model, "a traversal figure")
                z0 = None
                if around is not None:
                    if not 0 <= around < x_given.shape[0]:
                        raise ValueError(f"--index {around} is outside the test split (0..{x_given.shape[0] - 1})")
                    with torch.random.fork_rng(devices=[]), eval_mode(model), torch.no_grad():
                        torch.manual_seed(seed)
                        z0 = encode_units(model, x_given[around:around + 1])[0][0].cpu()
                written[kind] = figures.plot_traversals(model, out / "traversals.png", kl_units(), z0=z0)
            elif kind == "interpolation":
                xa, xb, labels = _pairs(x, y)
                written[kind] = figures.plot_interpolation(model, xa, xb, out / "interpolation.png", row_labels=labels)
            elif kind == "latent-map":
                n = min(5000, x.shape[0])
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    z = torch.cat([model.embed(x[i:i + 1000]) for i in range(0, n, 1000)]).cpu().numpy()
                labels = y[:n].cpu().numpy() if y is not None else None
                written[kind] = latent.plot_latent_map(z, labels, out / "latent-map.png", method=map_axes,
                                                       kl=kl() if map_axes == "kl" else None,
                                                       title=f"Latent map: posterior means of {n} test points")
            elif kind == "manifold":
                figures.images_only(model, "a manifold figure")
                figures.require_single_latent(model, "a manifold figure")
                for g in (("linear", "ppf") if grid == "both" else (grid,)):
                    name = "manifold" if g == "linear" else "manifold-ppf"
                    d = model.layout.continuous_size
                    note = "" if d == 2 else f"the 2 of {d} dims with the largest KL"
                    written[name] = figures.plot_manifold(model, out / f"{name}.png", grid=g, dims=informative_dims(),
                                                          dims_note=note)
            elif kind == "analogies":
                group = model.layout.class_group()
                k = group.shape[0] if group is not None else 0
                fits = y is not None and k and int(y.min()) >= 0 and int(y.max()) < k  # the data's labels are its classes
                xs, ys = _one_per_class(x, y if fits else None)
                written[kind] = figures.plot_analogies(model, xs, out / "analogies.png", y=ys)
            elif kind == "class-samples":
                written[kind] = figures.plot_class_samples(model, out / "class-samples.png", seed=seed)
            elif kind == "curves":
                written[kind] = curves.plot_curves(recs, out / "curves.png")
            elif kind == "kl":
                written[kind] = curves.plot_kl_heatmap(recs, out / "kl.png", group_label=_group_label(model))
            elif kind == "code-usage":
                require(model, QUANTISED, "a code-usage figure")
                written[kind] = codes.plot_code_usage(recs, out / "code-usage.png")
            elif kind == "code-maps":
                require(model, QUANTISED, "a code-maps figure")
                figures.images_only(model, "a code-maps figure")
                with torch.no_grad():
                    maps = {g: z.argmax(-1) for g, z in posterior_means(model, x[:8]).items()}  # (N, h, w) each
                k = model.layout.groups[0].shape[-1]
                written[kind] = codes.plot_code_maps(x[:8], maps if len(maps) > 1 else next(iter(maps.values())), k,
                                                     out / "code-maps.png")
            elif kind == "latent-gif":
                if snapshots is None:
                    raise FileNotFoundError("no latent snapshots were handed over; train with "
                                            "train.snapshot_every=N to record them")
                snaps = snapshots
                written[kind] = latent.plot_latent_gif(snaps, out / "latent-evolution.gif")
        except (ValueError, FileNotFoundError) as e:
            if strict:
                raise
            skipped[kind] = str(e)
    tabular = [k for k, why in skipped.items() if "needs image data" in why]
    if tabular:  # one line for every figure a tabular run cannot have
        log.info("figures skipped for tabular data: %s (they need images)", ", ".join(tabular))
    for kind, why in skipped.items():
        if kind not in tabular:
            log.info("skipped %s: %s", kind, why)
    return written, skipped
