"""The Gaussian-latent VAE: wiring of encoder net, posterior head, decoder net, likelihood head and prior.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes": one latent vector z with prior p(z), posterior
q(z|x) from the encoder and p(x|z) from the decoder. It speaks the contract of ``vaekit.models.contract``: for a
batch it returns its one latent group and p(x|z); ``vaekit.objectives`` computes the bounds.
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.likelihoods.base import Likelihood
from vaekit.models.arrays import array_io
from vaekit.models.contract import (CONTINUOUS, DISCRETE_DATA, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR, SINGLE_VECTOR,
                                    GroupLayout, LatentLayout, ModelOutput)
from vaekit.models.uses import sample_latents
from vaekit.objectives.latents import sample_latent
from vaekit.utils import full_precision

__all__ = ["VAE", "decoder_precision"]


def decoder_precision(z: torch.Tensor, dtype: torch.dtype | None):
    """Autocast to ``dtype`` for a decoder net on z's device (a no-op context for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(z.device.type, dtype=dtype)


class VAE(nn.Module):
    """A VAE with one latent vector z of ``latent_dim`` dimensions.

    encoder: net x (B, *data_shape) -> h (B, F); posterior: module h -> q(z|x);
    decoder: net z (*, D) -> (*, *likelihood.param_shape) (or anything that reshapes to it);
    likelihood: module -> p(x|z); prior: module () -> p(z), or (x -> q(z|x)) -> p(z) when it has
    ``needs_encoder`` (the VampPrior mixes the encoder's posteriors at its pseudo-inputs).
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: nn.Module,
    ) -> None:
        super().__init__()
        self.encoder, self.posterior = encoder, posterior
        self.decoder, self.likelihood, self.prior = decoder, likelihood, prior
        self.data_shape = likelihood.data_shape
        self.latent_dim = int(prior.latent_dim)

    # -- the contract ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, *, posterior: Distribution | None = None,
                decoder_dtype: torch.dtype | None = None) -> ModelOutput:
        """The latent group "z" (q(z|x), p(z), samples) and p(x|z) for the batch x (see the contract)."""
        q = self.encode(x) if posterior is None else posterior
        g = sample_latent("z", q, self.prior_distribution(), n_samples)
        return ModelOutput([g], self.decoded(g.z, decoder_dtype), 0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError on data that does not fit the model (shape, NaN/inf, likelihood support)."""
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        """What the likelihood reports about itself (a learned or batch-optimal sigma)."""
        return self.likelihood.stats()

    # -- building blocks ---------------------------------------------------------------------------------
    def prior_distribution(self) -> Distribution:
        """p(z): the prior module's distribution (given the encoder's q(z|x) map where it needs one)."""
        if getattr(self.prior, "needs_encoder", False):
            return self.prior(self.encode)
        return self.prior()

    @array_io
    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): batch_shape (B,), event_shape (D,)."""
        return self.posterior(self.encoder(x))

    def decoded(self, z: torch.Tensor, decoder_dtype: torch.dtype | None = None) -> Distribution:
        """p(x|z) for z of shape (*lead, D) as the likelihood's lazy Distribution (direct log_prob)."""
        with decoder_precision(z, decoder_dtype):
            h = self.decoder(z)
        if h.dtype != z.dtype:  # e.g. a bf16 decoder under autocast: the log-density stays in float32
            h = h.to(z.dtype)
        return self.likelihood.decoded(full_precision(h), z.shape[:-1])

    def decode(self, z: torch.Tensor | Mapping[str, torch.Tensor]) -> Distribution:
        """p(x|z) for z of shape (*lead, D) (or {"z": z}): the likelihood's full Distribution (batch_shape lead)."""
        return self.decoded(z["z"] if isinstance(z, Mapping) else z).full

    # -- the uses half of the contract -----------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        """One continuous group "z" of ``latent_dim`` dimensions."""
        return LatentLayout((GroupLayout("z", (self.latent_dim,)),))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {SINGLE_VECTOR}
        if getattr(self.prior, "euclidean", True):  # z ranges over R^D (not a sphere): coordinates move freely
            caps.add(CONTINUOUS)
        if getattr(self.posterior, "gaussian", True):  # a head whose q(z|x) is a diagonal Gaussian (not a flow)
            caps.add(GAUSSIAN_POSTERIOR)
        if getattr(self.prior, "gaussian", False):  # prior units u = (z - mu_p) / sigma_p are N(0, I)
            caps.add(GAUSSIAN_PRIOR)
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None) -> dict[str, Distribution]:
        """{"z": q(z|x)} (``given`` has nothing to fix in a one-group model)."""
        return {"z": self.encode(x)}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(z): the fixed prior."""
        return self.prior_distribution()

    # -- uses ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Means of p(x|z) for n draws from the prior at temperature T (``vaekit.models.uses.sample_latents``)."""
        return self.decode(sample_latents(self, n, temperature)["z"]).mean

    @array_io
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) at the posterior's mode: the mean of a Gaussian, the mean direction mu of a von
        Mises-Fisher posterior (whose mean A(kappa) mu lies inside the sphere, off the prior's support); the
        posterior mean where there is no mode in closed form (a flow: a sample mean)."""
        q = self.encode(x)
        try:
            z = q.mode
        except NotImplementedError:
            z = self.embed(x)
        return self.decode(z).mean

    @array_io
    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean E_q[z] of shape (B, D) (for a flow posterior, a sample mean; for a von Mises-Fisher
        posterior A(kappa) mu, inside the sphere)."""
        q = self.encode(x)
        try:
            return q.mean
        except NotImplementedError:
            z, _ = q.rsample_and_log_prob((64,))
            return z.mean(0)
