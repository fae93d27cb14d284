"""Evaluation: importance-sampled log p(x) with standard error, ELBO, bits/dim, active units, KL per dimension.

Works on any model that speaks the contract (``vaekit.models.contract``): the bounds come from
``vaekit.objectives``; active units use ``posterior_means(x)`` (per layer) when a model offers it, else ``embed(x)``.
"""

from vaekit.evaluation.evaluate import evaluate
from vaekit.evaluation.loglik import (
    EVAL_PRECISIONS,
    LogLikelihoodResult,
    NonFiniteModelError,
    auto_chunk_size,
    cpu_supports_bf16,
    cpu_supports_fp16,
    decoder_dtype_for,
    estimate_log_likelihood,
    iw_log_likelihood,
)
from vaekit.evaluation.metrics import (
    ActiveUnits,
    active_units,
    bits_per_dim,
    elbo_dataset,
    per_example_terms,
    per_position_terms,
    observed_units,
    kl_per_dimension,
    posterior_means,
)

__all__ = [
    "evaluate",
    "LogLikelihoodResult",
    "NonFiniteModelError",
    "estimate_log_likelihood",
    "iw_log_likelihood",
    "auto_chunk_size",
    "cpu_supports_bf16",
    "cpu_supports_fp16",
    "decoder_dtype_for",
    "EVAL_PRECISIONS",
    "ActiveUnits",
    "active_units",
    "bits_per_dim",
    "elbo_dataset",
    "per_example_terms",
    "per_position_terms",
    "observed_units",
    "kl_per_dimension",
    "posterior_means",
]
