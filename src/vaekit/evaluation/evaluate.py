"""One call that measures a trained model on a dataset (what ``vaekit evaluate`` prints)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from vaekit.models.contract import DISCRETE_DATA
from vaekit.utils import as_data_tensor, model_device
from vaekit.evaluation.loglik import decoder_dtype_for, estimate_log_likelihood
from vaekit.evaluation.metrics import active_units, bits_per_dim, elbo_dataset, kl_per_dimension, observed_units

__all__ = ["evaluate"]

log = logging.getLogger(__name__)


def evaluate(
    model: nn.Module,
    x: Any,
    k: int = 5000,
    batch_size: int = 100,
    iw_batch_size: int = 1,
    chunk_size: int | None = None,
    n_levels: int | None = None,
    dequantized: bool = False,
    bf16: bool = False,
    seed: int | None = None,
    threshold: float = 0.01,
    num_threads: int | None = None,
    compiled: bool = False,
    shard: Any = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """ELBO, importance-sampled log p(x) (K = ``k``) with its standard error, bits/dim, active units and KL per
    latent dimension of ``model`` on ``x`` ((N, *shape) tensor or ``ArrayData``), as a JSON-friendly dict:

    elbo, elbo_stderr, log_px_z, kl (nats per example, ``elbo_dataset``); log_px, log_px_stderr
    (``estimate_log_likelihood``); bits_per_dim (``bits_per_dim`` of log_px; None for real-valued data
    (n_levels None) or a continuous likelihood on non-dequantised discrete data, where it has no meaning);
    active_units (int), active_units_per_layer (list); kl_per_dim (list of floats); k; n; precision (of the
    importance samples' decoder: fp32, bf16 or fp16); bf16 (precision == "bf16").
    For a model with the ``observed_units`` hook (sequences: padded steps and the step mask are not data), also
    observed_steps, observed_values (totals over x), neg_elbo_per_step and neg_log_px_per_step (-sum of the
    bound / observed steps, nats), and bits_per_dim is over the observed values only.
    n_levels / dequantized: as in ``DataSplits.n_levels`` and ``bits_per_dim``. seed: a private RNG stream
    (None: the caller's global RNG). batch_size is for the ELBO / diagnostics, iw_batch_size and chunk_size
    for the importance sampling; precision (bf16 the older flag for it), compiled, num_threads and shard
    (torchrun: the importance sampling split across ranks, the per-example values gathered) as in
    ``estimate_log_likelihood``.
    """
    dtype = decoder_dtype_for(precision, model_device(model), bf16)  # a bad precision fails before any work
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    x = as_data_tensor(x)
    model.check_input(x)
    elbo = elbo_dataset(model, x, batch_size=batch_size, seed=seed, check=False)
    ll = estimate_log_likelihood(model, x, k=k, batch_size=iw_batch_size, chunk_size=chunk_size, precision=precision,
                                 seed=None if seed is None else seed + 1, num_threads=num_threads, compiled=compiled,
                                 check=False, shard=shard)
    au = active_units(model, x, threshold=threshold, batch_size=batch_size, seed=seed)
    kl_dims = kl_per_dimension(model, x, batch_size=batch_size, seed=seed)
    n_dims, log_px, per_step = x[0].numel(), ll.mean, {}
    units = observed_units(model, x)
    if units is not None:  # bits/dim over the observed values: log p per value, one "dimension" at a time
        n = int(x.shape[0])
        n_dims, log_px = 1, ll.mean * n / units[1]
        per_step = {"observed_steps": units[0], "observed_values": units[1],
                    "neg_elbo_per_step": -elbo["elbo"] * n / units[0], "neg_log_px_per_step": -ll.mean * n / units[0]}
    bpd = None
    discrete_lik = DISCRETE_DATA in getattr(model, "capabilities", frozenset())
    if n_levels is not None and (dequantized or discrete_lik):
        try:
            bpd = bits_per_dim(log_px, n_dims, n_levels=n_levels, dequantized=dequantized)
        except ValueError as e:  # e.g. a positive estimate of a discrete log-probability (Monte Carlo noise)
            log.warning("bits/dim not reported: %s", e)
    elif n_levels is not None:
        log.info("bits/dim not reported: a continuous likelihood on discrete data that were not dequantised")
    return {
        "elbo": elbo["elbo"],
        "elbo_stderr": elbo["elbo_stderr"],
        "log_px_z": elbo["log_px_z"],
        "kl": elbo["kl"],
        "log_px": ll.mean,
        "log_px_stderr": ll.stderr,
        "log_px_mc_stderr": ll.mc_stderr,
        "bits_per_dim": bpd,
        **per_step,
        "active_units": au.count,
        "active_units_per_layer": au.per_layer_count,
        "kl_per_dim": [float(v) for v in kl_dims],
        "k": ll.k,
        "n": int(x.shape[0]),
        "precision": precision,
        "bf16": precision == "bf16",
    }
