"""Dataset-level diagnostics: ELBO with standard errors, bits/dim, active units, KL per latent dimension.

Units: nats per example (sums over data dimensions and latents), averaged over data points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vaekit.objectives.bounds import elbo_terms
from vaekit.utils import as_data_tensor, batches, evaluation_context, mean_and_stderr, model_device

__all__ = ["per_example_terms", "per_position_terms", "observed_units", "elbo_dataset", "bits_per_dim",
           "active_units", "ActiveUnits", "kl_per_dimension", "posterior_means", "classification_error"]


def per_example_terms(
    model: nn.Module,
    x: Any,
    batch_size: int = 100,
    n_samples: int = 1,
    seed: int | None = None,
    check: bool = True,
) -> dict[str, torch.Tensor]:
    """The one dataset-wide ELBO loop: per-example terms of ``vaekit.objectives.elbo_terms`` over all of x.

    Returns float64 CPU tensors: "elbo", "log_px_z", "kl" of shape (N,) (nats), and "kl_units" (G,), the mean
    over the data of the KL per unit (latent dimension, or layer and dimension; see ``ELBOTerms.kl_groups``).
    seed: a private RNG stream (the caller's RNG is untouched); eval mode and no_grad for the loop.
    """
    x = as_data_tensor(x)
    if check:
        model.check_input(x)
    parts: dict[str, list[torch.Tensor]] = {"elbo": [], "log_px_z": [], "kl": []}
    units = None
    with evaluation_context(model, seed):
        for xb in batches(x, batch_size, model_device(model)):
            t = elbo_terms(model, xb, n_samples, check=False)
            parts["log_px_z"].append(t.log_px_z.double().cpu())  # (B,)
            parts["kl"].append(t.kl.double().cpu())  # (B,)
            parts["elbo"].append((t.log_px_z - t.kl).double().cpu())  # (B,)
            g = t.kl_groups.double().sum(0).cpu()  # (G,)
            units = g if units is None else units + g
    out = {name: torch.cat(vals) for name, vals in parts.items()}
    out["kl_units"] = units / x.shape[0]
    return out


def per_position_terms(
    model: nn.Module,
    x: Any,
    batch_size: int = 100,
    n_samples: int = 1,
    seed: int | None = None,
) -> torch.Tensor | None:
    """(N, P) float64 CPU: the negative ELBO of each example split over its positions (the time steps of a
    sequence) by the model's optional ``position_terms`` hook (``vaekit.models.contract``), the Monte Carlo mean
    over ``n_samples`` samples; NaN at positions that are not observed. None when the model has no such hook.

    The loop, batches and draws are those of ``per_example_terms`` with the same arguments (one forward pass per
    batch), so with the same seed the observed positions of an example sum to its -ELBO there."""
    hook = getattr(model, "position_terms", None)
    if hook is None:
        return None
    x = as_data_tensor(x)
    parts = []
    with evaluation_context(model, seed):
        for xb in batches(x, batch_size, model_device(model)):
            out = model(xb, None if n_samples == 1 else int(n_samples))
            t = hook(xb, out)  # (*S, B, P)
            parts.append((t.mean(0) if out.sample_dims else t).double().cpu())
    return torch.cat(parts)


def observed_units(model: nn.Module, x: torch.Tensor) -> tuple[int, int] | None:
    """(observed positions, observed data values) summed over x from the model's optional ``observed_units``
    hook (a sequence's steps and their values, padding excluded); None when the model has none (every value of
    every example counts)."""
    hook = getattr(model, "observed_units", None)
    if hook is None:
        return None
    positions, values = hook(x)  # (N,), (N,)
    return int(positions.sum()), int(values.sum())


def elbo_dataset(
    model: nn.Module,
    x: Any,
    batch_size: int = 100,
    n_samples: int = 1,
    seed: int | None = None,
    check: bool = True,
) -> dict[str, float]:
    """Mean ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) over a dataset (Kingma & Welling 2014, Eq. 3) with
    ``n_samples`` reparameterised samples per example (``per_example_terms``).

    Returns plain floats: elbo, log_px_z, kl (means in nats per example), each with ``<name>_stderr`` =
    std over examples / sqrt(N), and n.
    """
    terms = per_example_terms(model, x, batch_size, n_samples, seed, check)
    out: dict[str, float] = {}
    for name in ("elbo", "log_px_z", "kl"):
        out[name], out[f"{name}_stderr"] = mean_and_stderr(terms[name])
    out["n"] = int(terms["elbo"].numel())
    return out


def bits_per_dim(
    nats_per_example: float | torch.Tensor,
    n_dims: int,
    n_levels: int | None = None,
    dequantized: bool = False,
) -> float | torch.Tensor:
    """Bits per dimension of a log-likelihood ``nats_per_example`` = log p(x) in nats (not its negative).

    Discrete data under a discrete likelihood (Bernoulli, discretised logistic, a softmax over levels):
        bits/dim = -log P(x) / (D ln 2).
    Continuous density p on data dequantised to [0, 1)^D as x = (k + u) / n_levels, u ~ U[0, 1)^D
    (``dequantized=True``, needs ``n_levels``): scaling [0, n_levels)^D onto [0, 1)^D has Jacobian
    n_levels^D, so P(k) >= exp(E_u[log p(x)] - D log n_levels) (Theis et al. 2016, "A note on the evaluation of
    generative models", Sec. 3.1; Papamakarios et al. 2017, "Masked Autoregressive Flow", Sec. 4.3) and
        bits/dim = -(log p(x) - D ln n_levels) / (D ln 2) = -log p(x) / (D ln 2) + log2(n_levels).
    A uniform density on [0, 1)^D (log p = 0) thus scores exactly log2(256) = 8 bits/dim for 8-bit data, as
    does a uniform distribution over the 256 levels (log P = -D ln 256) in the discrete case.
    Returns a float for a float input, else a tensor of the same shape.
    """
    if int(n_dims) != n_dims or n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer (dimensions per example), got {n_dims!r}")
    if n_levels is not None and (int(n_levels) != n_levels or n_levels < 2):
        raise ValueError(f"n_levels must be an integer >= 2 (e.g. 256 for 8-bit data), got {n_levels!r}")
    if dequantized and n_levels is None:
        raise ValueError("dequantized=True needs n_levels (e.g. 256 for 8-bit data) for the log n_levels correction")
    lp = torch.as_tensor(nats_per_example, dtype=torch.float64)
    if not dequantized and bool((lp > 1e-6).any()):
        raise ValueError(
            f"a discrete log-probability cannot be positive, got {float(lp.max()):g} nats; pass log p(x) "
            "(not -log p(x)), or dequantized=True with n_levels for a continuous density on dequantised data"
        )
    correction = n_dims * math.log(n_levels) if dequantized else 0.0
    bpd = -(lp - correction) / (n_dims * math.log(2.0))
    return float(bpd) if not isinstance(nats_per_example, torch.Tensor) else bpd.to(nats_per_example.dtype)


def posterior_means(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Posterior means E_q[z_g|x] of each continuous latent group along the mean pass (``vaekit.models.uses``),
    flattened, layout order (layer 1 first for a hierarchy): a list of (B, D_g) tensors."""
    from vaekit.models.uses import posterior_means as means

    z = means(model, x)
    return [z[g.name].reshape(x.shape[0], g.size) for g in model.layout.continuous]


@dataclass
class ActiveUnits:
    """count: active dimensions in all layers; variance: (sum D_i,) Var_x(E_q[u|x]) per dimension, layer 1
    first; per_layer_count / per_layer_variance: the same per stochastic layer; threshold: the cut-off used."""

    count: int
    variance: torch.Tensor
    threshold: float
    per_layer_count: list[int] = field(default_factory=list)
    per_layer_variance: list[torch.Tensor] = field(default_factory=list)


def active_units(
    model: nn.Module, x: Any, threshold: float = 0.01, batch_size: int = 500, seed: int | None = None
) -> ActiveUnits:
    """Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5.2: unit u is active when
    A_u = Cov_x(E_{u ~ q(u|x)}[u]) > threshold (0.01 in the paper), the variance over the data of the
    posterior mean (sample variance, N - 1). Posterior means come from ``posterior_means`` (per layer when the
    model provides ``posterior_means``). seed: for models whose posterior mean is itself a sample average."""
    x = as_data_tensor(x)
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if x.shape[0] < 2:
        raise ValueError("active units need at least 2 examples (a variance over the data)")
    layers: list[list[torch.Tensor]] = []
    with evaluation_context(model, seed):
        for xb in batches(x, batch_size, model_device(model)):
            means = posterior_means(model, xb)
            if not layers:
                layers = [[] for _ in means]
            for acc, m in zip(layers, means):
                acc.append(m.double().cpu())  # (B, D_i)
    variances = [torch.cat(ms).var(0, correction=1) for ms in layers]  # [(D_i,)]
    counts = [int((v > threshold).sum()) for v in variances]
    flat = torch.cat(variances) if variances else torch.zeros(0, dtype=torch.float64)  # none: no continuous group
    return ActiveUnits(sum(counts), flat, float(threshold), counts, variances)


def kl_per_dimension(
    model: nn.Module, x: Any, batch_size: int = 100, n_samples: int = 1, seed: int | None = None
) -> torch.Tensor:
    """(G,) mean over the data of ``elbo_terms(x).kl_groups``: KL(q(z|x) || p(z)) in nats per latent
    dimension (or per unit: per layer and dimension for a Ladder VAE). With an IAF posterior the units are
    the per-variable Monte Carlo terms log q_d - log p_d, which only sum to a KL (one term can be negative);
    G = 1 for other Monte Carlo KLs. Sums to the mean KL. float64 on CPU."""
    return per_example_terms(model, x, batch_size, n_samples, seed, check=False)["kl_units"]


def classification_error(model: nn.Module, x: Any, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of x whose ``model.predict`` (argmax q(y|x) for M2) differs from the labels y."""
    x = as_data_tensor(x)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} examples but {y.shape[0]} labels; give one label per example")
    wrong = 0
    with evaluation_context(model, 0):
        for i, xb in enumerate(batches(x, batch_size, model_device(model))):
            wrong += int((model.predict(xb).cpu() != y[i * batch_size:(i + 1) * batch_size].cpu()).sum())
    return wrong / x.shape[0]
