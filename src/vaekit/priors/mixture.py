"""Mixture priors: a learned mixture of Gaussians and the VampPrior.

Both are ``GaussianMixture`` distributions, p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2), with no closed-form
KL against a Gaussian posterior: ``vaekit.objectives.group_kl`` then uses the Monte Carlo estimate
log q(z|x) - log p(z) on the posterior's sample.

VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior", Eq. 9): p(z) = 1/K sum_k q(z | u_k), the mixture of
the encoder's posteriors at K learned pseudo-inputs u_k (data-shaped, kept in [0, 1] by a hard tanh as in the
paper's code when ``clamp``); initialised N(init_mean, init_std^2) (the paper's 0.05 and 0.01 for MNIST).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

__all__ = ["GaussianMixture", "MixturePrior", "VampPrior"]


class GaussianMixture(MixtureSameFamily):
    """sum_k pi_k N(mu_k, diag sigma_k^2): logits (K,), loc (K, D), scale (K, D); batch (), event (D,).

    ``sample_at_temperature`` draws a component, then z = mu_k + T sigma_k eps (T = 1: an exact draw).
    """

    temperature_note = "a mixture component k, then μ_k + T σ_k ε (a Gaussian-mixture prior)"

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(Categorical(logits=logits, validate_args=False),
                         Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False),
                         validate_args=False)

    @property
    def loc(self) -> torch.Tensor:  # (K, D)
        return self.component_distribution.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:  # (K, D)
        return self.component_distribution.base_dist.scale

    @property
    def weights(self) -> torch.Tensor:  # (K,)
        return self.mixture_distribution.probs

    def sample_at_temperature(self, sample_shape: torch.Size | tuple = (), temperature: float = 1.0,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """(*sample_shape, D) draws with every component's s.d. scaled by the temperature (no gradient)."""
        n = math.prod(sample_shape)
        dev = generator.device if generator is not None else self.loc.device
        with torch.no_grad():
            k = torch.multinomial(self.weights.to(dev), n, replacement=True, generator=generator)  # (n,)
            eps = torch.randn(n, self.loc.shape[-1], generator=generator, device=dev,
                              dtype=self.loc.dtype).to(self.loc.device)  # (n, D)
            k = k.to(self.loc.device)
            z = self.loc[k] + temperature * self.scale[k] * eps  # (n, D)
        return z.reshape(*sample_shape, self.loc.shape[-1])

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.sample_at_temperature(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log sum_k pi_k N(value; mu_k, diag sigma_k^2): (*lead, D) -> (*lead,).

        The quadratic form sum_d (z_d - mu_kd)^2 / sigma_kd^2 is expanded into two matrix products, (z*z) @
        (1/sigma^2)^T - 2 z @ (mu/sigma^2)^T + sum_d mu^2/sigma^2, so no (*lead, K, D) tensor is built (an
        importance-sampled log p(x) with a 500-component VampPrior otherwise allocates gigabytes per chunk). It is
        computed in float64, where the expansion's cancellation costs ~1e-10 nats, except on devices without float64
        (MPS), which take the elementwise form."""
        if self.batch_shape != torch.Size() or value.device.type == "mps":
            return super().log_prob(value)
        loc, scale = self.loc.double(), self.scale.double()  # (K, D)
        z = value.reshape(-1, value.shape[-1]).double()  # (N, D)
        prec = scale.pow(-2)  # (K, D)
        quad = (z * z) @ prec.T - 2 * z @ (loc * prec).T + (loc * loc * prec).sum(-1)  # (N, K)
        log_comp = -0.5 * quad - scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)  # (N, K)
        log_w = torch.log_softmax(self.mixture_distribution.logits.double(), -1)  # (K,)
        return torch.logsumexp(log_comp + log_w, -1).to(value.dtype).reshape(value.shape[:-1])


class MixturePrior(nn.Module):
    """A learned mixture of K diagonal Gaussians: means mu_k ~ N(0, init_scale^2) at initialisation, unit s.d.s
    and equal weights; all three learned (the weights only with ``learn_weights``). A KL with no closed form:
    the Monte Carlo estimate. ``min_log_scale`` soft-floors log sigma_k."""

    gaussian = False

    def __init__(self, latent_dim: int, data_shape: Sequence[int] | None = None, components: int = 10,
                 init_scale: float = 1.0, learn_weights: bool = True, min_log_scale: float = -6.0) -> None:
        super().__init__()
        if components < 1 or latent_dim < 1:
            raise ValueError(f"a mixture prior needs components >= 1 and latent_dim >= 1, got {components}, "
                             f"{latent_dim}")
        self.latent_dim, self.components = int(latent_dim), int(components)
        self.min_log_scale = float(min_log_scale)
        self.loc = nn.Parameter(float(init_scale) * torch.randn(components, latent_dim))  # (K, D)
        self.raw_log_scale = nn.Parameter(torch.zeros(components, latent_dim))  # (K, D)
        logits = torch.zeros(components)  # (K,)
        if learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits, persistent=False)

    def forward(self) -> GaussianMixture:
        log_scale = self.min_log_scale + F.softplus(self.raw_log_scale - self.min_log_scale)  # (K, D)
        return GaussianMixture(self.logits, self.loc, log_scale.exp())


class VampPrior(nn.Module):
    """p(z) = 1/K sum_k q(z | u_k) with K learned pseudo-inputs u_k of the data's shape (Tomczak & Welling 2018,
    Eq. 9). Called with the model's map x -> q(z|x) (``needs_encoder``), which must give a diagonal Gaussian."""

    gaussian = False
    needs_encoder = True

    def __init__(self, latent_dim: int, data_shape: Sequence[int] | None = None, components: int = 500,
                 init_mean: float = 0.05, init_std: float = 0.01, clamp: bool = True) -> None:
        super().__init__()
        if data_shape is None:
            raise ValueError("a VampPrior needs the data's shape (its pseudo-inputs are data)")
        if components < 1:
            raise ValueError(f"a VampPrior needs components >= 1, got {components}")
        self.latent_dim, self.components, self.clamp = int(latent_dim), int(components), bool(clamp)
        self.pseudo = nn.Parameter(init_mean + init_std * torch.randn(components, *data_shape))  # (K, *data_shape)

    def pseudo_inputs(self) -> torch.Tensor:
        """(K, *data_shape) the pseudo-inputs u_k (in [0, 1] with ``clamp``)."""
        return F.hardtanh(self.pseudo, 0.0, 1.0) if self.clamp else self.pseudo

    def forward(self, encode: Callable[[torch.Tensor], Distribution]) -> GaussianMixture:
        q = encode(self.pseudo_inputs())  # batch (K,), event (D,)
        if not (isinstance(q, Independent) and isinstance(q.base_dist, Normal)):
            raise ValueError(f"a VampPrior mixes diagonal Gaussian posteriors; this encoder gives "
                             f"{type(q).__name__} (use model.posterior=gaussian)")
        logits = torch.zeros(self.components, dtype=q.base_dist.loc.dtype, device=q.base_dist.loc.device)
        return GaussianMixture(logits, q.base_dist.loc, q.base_dist.scale)
