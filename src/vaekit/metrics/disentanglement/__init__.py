"""Disentanglement metrics with disentanglement_lib's definitions and sample sizes (Locatello et al. 2019,
"Challenging Common Assumptions in the Unsupervised Learning of Disentangled Representations").

    scores = disentanglement_scores(DSprites(), lambda x: model.embed(x), seed=0)   # every metric, 10,000 / 5,000

``num_train`` / ``num_eval`` replace the defaults of every metric (10,000 training and 5,000 evaluation points;
the FactorVAE score's 10,000-point variance estimate follows ``num_train``): smaller sizes are for tests and
quick looks, and are recorded in the result.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from vaekit.metrics.disentanglement.common import CodeCache, Representation, Sampler, encode_classes
from vaekit.metrics.disentanglement.scores import beta_vae_score, dci, factor_vae_score, mig, modularity, sap

__all__ = ["METRICS", "HEADLINE", "disentanglement_scores", "observations_drawn", "CodeCache", "Sampler", "beta_vae_score", "factor_vae_score", "mig",
           "sap", "dci", "modularity"]

METRICS = ("beta_vae", "factor_vae", "mig", "sap", "dci", "modularity")
HEADLINE = {"beta_vae": "beta_vae", "factor_vae": "factor_vae", "mig": "mig", "sap": "sap",
            "dci": "dci_disentanglement", "modularity": "modularity"}

FILL_FROM = 1.0  # encode the whole grid up front when the draws are at least this many times its size
FILL_BATCH = 1024

_FNS = {"beta_vae": beta_vae_score, "factor_vae": factor_vae_score, "mig": mig, "sap": sap, "dci": dci,
        "modularity": modularity}


def _sizes(name: str, num_train: int | None, num_eval: int | None) -> dict:
    tr = {} if num_train is None else {"num_train": int(num_train)}
    ev = {} if num_eval is None else ({"num_eval": int(num_eval)} if name in ("beta_vae", "factor_vae")
                                      else {"num_test": int(num_eval)})
    if name == "factor_vae" and num_train is not None:
        tr["num_variance_estimate"] = int(num_train)
    if name == "mig":
        ev = {}
    return {**tr, **ev}


def observations_drawn(name: str, sizes: dict) -> int:
    """How many observations metric ``name`` draws with keyword arguments ``sizes`` (its defaults elsewhere):
    BetaVAE two batches of 64 per point, FactorVAE a variance-estimate set and a batch of 64 per vote."""
    import inspect

    arg = {k: p.default for k, p in inspect.signature(_FNS[name]).parameters.items()} | sizes
    if name == "beta_vae":
        return (arg["num_train"] + arg["num_eval"]) * 2 * arg["batch_size"]
    if name == "factor_vae":
        return arg["num_variance_estimate"] + (arg["num_train"] + arg["num_eval"]) * arg["batch_size"]
    return arg["num_train"] + arg.get("num_test", 0)


def disentanglement_scores(data, represent: Representation, *, seed: int = 0, metrics: Sequence[str] = METRICS,
                           num_train: int | None = None, num_eval: int | None = None,
                           device: str | torch.device = "cpu", batch_size: int = 256,
                           progress: bool = True, workers: int | None = None) -> dict:
    """{metric: {score: value, ..., "seconds": s}} for each named metric, every one from its own seeded
    sampler (the same seed gives the same numbers whichever metrics are asked for). Where the data say their
    observations are a function of the factors (``deterministic_images``), the metrics share one ``CodeCache``:
    each distinct observation is encoded once (the first metric's "seconds" include encoding what later ones
    reuse; ``"encoded"`` says how many observations each encoded). When the metrics will draw at least
    ``FILL_FROM`` times as many observations as the grid holds (dSprites at the default sizes: 2.9 M draws of
    737,280 images), every observation is encoded once first, in batches of ``FILL_BATCH``, with a progress bar;
    the first metric's "seconds" include that. workers: DCI's processes (``scores.dci``; None: one per core)."""
    unknown = [m for m in metrics if m not in _FNS]
    if unknown:
        raise ValueError(f"unknown disentanglement metric(s) {unknown}; choose from {', '.join(METRICS)}")
    drawn = sum(observations_drawn(m, _sizes(m, num_train, num_eval)) for m in metrics)
    prepare = getattr(data, "prepare", None)
    if prepare is not None:  # e.g. dSprites renders every image once before millions are drawn
        prepare(drawn)
    cache = CodeCache(data.factor_sizes) if getattr(data, "deterministic_images", False) else None
    fill = cache is not None and drawn >= cache.size * FILL_FROM
    out = {}
    for name in metrics:
        t0, before = time.perf_counter(), 0 if cache is None else cache.encoded
        if fill:  # counted in the first metric's seconds and "encoded"
            cache.fill(lambda c: encode_classes(data, represent, c, FILL_BATCH), device=device,
                       batch_size=FILL_BATCH, progress=progress)
            fill = False
        s = Sampler(data, represent, seed=seed + 1000 * METRICS.index(name), device=device, batch_size=batch_size,
                    cache=cache)
        res = _FNS[name](s, **_sizes(name, num_train, num_eval), **({"workers": workers} if name == "dci" else {}))
        out[name] = {**res, "seconds": round(time.perf_counter() - t0, 2)}
        if cache is not None:
            out[name]["encoded"] = cache.encoded - before
    return out
