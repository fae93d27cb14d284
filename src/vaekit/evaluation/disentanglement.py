"""Disentanglement of a trained run on data with known factors: the metrics of
``vaekit.metrics.disentanglement`` on the model's posterior means, the code-factor mutual-information matrix,
and the traversal figures. Used by ``vaekit disentanglement RUN``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vaekit.metrics.disentanglement import METRICS, Sampler, disentanglement_scores
from vaekit.metrics.disentanglement.common import (codes_of, discrete_entropy, discrete_mutual_info,
                                                   histogram_discretize)
from vaekit.utils import eval_mode, model_device

__all__ = ["evaluate_disentanglement", "factor_dimensions", "draw_disentanglement_figures"]


def _represent(model: nn.Module):
    dev = model_device(model)

    def represent(x: torch.Tensor) -> torch.Tensor:
        with eval_mode(model):
            return model.embed(x.to(dev, torch.float32))  # (B, D) posterior means

    return represent


def factor_dimensions(model: nn.Module, truth, n: int = 10000, seed: int = 0) -> dict[str, Any]:
    """The (D, K) normalised mutual information I(z_j; v_k) / H(v_k) (20-bin histograms, as MIG) and, for each
    factor, the dimension that carries most of it; for each dimension, the factor it tracks most."""
    s = Sampler(truth, _represent(model), seed=seed, device=model_device(model))
    mus, ys = codes_of(s, n)
    nmi = discrete_mutual_info(histogram_discretize(mus), ys) / discrete_entropy(ys)  # (D, K)
    names = list(truth.factor_names)
    return {"nmi": nmi.round(4).tolist(), "factors": names,
            "factor_to_dim": {f: int(np.argmax(nmi[:, k])) for k, f in enumerate(names)},
            "dim_to_factor": [names[int(np.argmax(row))] for row in nmi]}


def evaluate_disentanglement(model: nn.Module, truth, *, seed: int = 0, metrics: Sequence[str] = METRICS,
                             num_train: int | None = None, num_eval: int | None = None,
                             workers: int | None = None) -> dict[str, Any]:
    """Every metric's numbers plus the code-factor matrix (``factor_dimensions``); workers: DCI's processes
    (None: one per core)."""
    scores = disentanglement_scores(truth, _represent(model), seed=seed, metrics=metrics, num_train=num_train,
                                    num_eval=num_eval, device=model_device(model), workers=workers)
    return {"metrics": scores, "sizes": {"num_train": num_train or 10000, "num_eval": num_eval or 5000},
            "seed": seed, "codes": factor_dimensions(model, truth, n=min(num_train or 10000, 10000), seed=seed)}


@torch.no_grad()
def draw_disentanglement_figures(model: nn.Module, truth, codes: dict[str, Any], out_dir: str | Path,
                                 seed: int = 0, steps: int = 9) -> dict[str, Path]:
    """``disentanglement-<factor>.png`` for each factor (its ground-truth sweep above the traversal of the
    dimension that tracks it most) and ``disentanglement-traversals.png`` (every dimension, labelled)."""
    from vaekit.plots.disentanglement import plot_factor_traversal, plot_labelled_traversals

    out_dir, dev = Path(out_dir), model_device(model)
    from vaekit.models.contract import CONTINUOUS, require
    from vaekit.models.uses import decode_mean, encode_units

    require(model, CONTINUOUS, "disentanglement traversals")
    g = torch.Generator(device=dev).manual_seed(seed)
    base = truth.sample_factors(1, g)  # (1, K) the point every sweep starts from
    with eval_mode(model):
        z0 = encode_units(model, truth.images(base).to(dev, torch.float32))[0][0]  # (D,) prior units
    values = np.linspace(-2.5, 2.5, steps)
    nmi = np.asarray(codes["nmi"])
    written = {}
    with eval_mode(model):
        def traverse(j: int) -> torch.Tensor:
            z = z0.repeat(steps, 1)
            z[:, j] = torch.as_tensor(values, dtype=z.dtype, device=dev)
            return decode_mean(model, z).cpu()

        for k, name in enumerate(codes["factors"]):
            size = truth.factor_sizes[k]
            cls = base.repeat(min(size, steps), 1)
            cls[:, k] = torch.linspace(0, size - 1, len(cls), device=dev).round().long()
            j = codes["factor_to_dim"][name]
            written[name] = plot_factor_traversal(truth.images(cls).cpu(), traverse(j),
                                                  out_dir / f"disentanglement-{name}.png", factor=name, dim=j,
                                                  score=float(nmi[j, k]), values=values)
        order = np.argsort(-nmi.max(1))
        imgs = torch.cat([traverse(int(j)) for j in order])
        labels = [f"z{j} {codes['dim_to_factor'][j]} ({nmi[j].max():.2f})" for j in order]
        written["traversals"] = plot_labelled_traversals(imgs, out_dir / "disentanglement-traversals.png", labels,
                                                         values)
    return written
