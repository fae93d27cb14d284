"""Evaluation: importance-sampled log p(x) with standard error, ELBO, bits/dim, active units, KL per dimension.

Works on any model with ``log_weights(x, K) -> (K, B)`` and ``elbo_terms(x, n_samples, check)``; active units
use ``posterior_means(x)`` (per layer) when a model offers it, else ``embed(x)`` / ``encode(x).mean``.
"""

from vaekit.evaluation.evaluate import evaluate
from vaekit.evaluation.loglik import (
    LogLikelihoodResult,
    auto_chunk_size,
    cpu_supports_bf16,
    estimate_log_likelihood,
    iw_log_likelihood,
)
from vaekit.evaluation.metrics import (
    ActiveUnits,
    active_units,
    bits_per_dim,
    elbo_dataset,
    kl_per_dimension,
    posterior_means,
)

__all__ = [
    "evaluate",
    "LogLikelihoodResult",
    "estimate_log_likelihood",
    "iw_log_likelihood",
    "auto_chunk_size",
    "cpu_supports_bf16",
    "ActiveUnits",
    "active_units",
    "bits_per_dim",
    "elbo_dataset",
    "kl_per_dimension",
    "posterior_means",
]
