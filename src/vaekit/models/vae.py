"""The Gaussian-latent VAE: wiring of encoder net, posterior head, decoder net, likelihood head and prior.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes": ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))
(their Eq. 3, estimated with L reparameterised samples as in Eq. 7); Burda et al. 2016 importance weights
log w = log p(x|z) + log p(z) - log q(z|x) for the IWAE bound and the log p(x) estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaekit.likelihoods.base import Likelihood
from vaekit.posteriors.gaussian import DiagonalGaussian, GaussianPosterior, kl_per_dim

__all__ = ["VAE", "ELBOTerms"]


@dataclass
class ELBOTerms:
    """Per-example terms of the ELBO, in nats.

    log_px_z: (B,) Monte Carlo mean over the L samples of log p(x|z).
    kl: (B,) KL(q(z|x) || p(z)), analytic where a closed form exists, else the mean of log q - log p.
    kl_groups: (B, G) the KL split into the groups free bits acts on (one per latent dimension for a diagonal
        Gaussian posterior or a flow with ``rsample_and_log_prob_dims`` such as IAF, else G = 1; sum over G
        equals ``kl``).
    analytic_kl: whether ``kl`` is the closed form.
    """

    log_px_z: torch.Tensor
    kl: torch.Tensor
    kl_groups: torch.Tensor
    analytic_kl: bool

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_px_z - self.kl


def _is_diag_normal(d: Distribution) -> bool:
    return isinstance(d, Independent) and isinstance(d.base_dist, Normal) and d.reinterpreted_batch_ndims == 1


class VAE(nn.Module):
    """A VAE with one latent vector z of ``latent_dim`` dimensions.

    encoder: net x (B, *data_shape) -> h (B, F); posterior: module h -> q(z|x);
    decoder: net z (*, D) -> (*, *likelihood.param_shape) (or anything that reshapes to it);
    likelihood: module -> p(x|z); prior: module () -> p(z).
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

    # -- building blocks ---------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError on data that does not fit the model (shape, NaN/inf, likelihood support)."""
        self.likelihood.check_batch(x)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): batch_shape (B,), event_shape (D,)."""
        return self.posterior(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for z of shape (*lead, D): batch_shape lead, event_shape data_shape."""
        h = self.decoder(z)
        h = h.reshape(*z.shape[:-1], *self.likelihood.param_shape)
        if h.dtype != z.dtype:  # e.g. a bf16 decoder under autocast: the log-density stays in float32
            h = h.to(z.dtype)
        return self.likelihood(h)

    def log_px_z(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) of shape z.shape[:-1]: ``decode(z).log_prob(x)`` through the likelihood's direct form."""
        h = self.decoder(z)
        if h.dtype != z.dtype:
            h = h.to(z.dtype)
        return self.likelihood.log_prob(h, x, z.shape[:-1])

    # -- objectives ----------------------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, n_samples: int = 1, check: bool = True) -> ELBOTerms:
        """ELBO terms with L = n_samples reparameterised samples per example."""
        if check:
            self.check_input(x)
        p = self.prior()
        if isinstance(self.posterior, GaussianPosterior) and getattr(p, "standard", False):
            # one sample: z (B, D) without the sample axis (the same draw), so no reshapes on the hot path
            z, kl_groups = self.posterior.sample_and_kl(self.encoder(x), None if n_samples == 1 else n_samples)
            return self._closed_form_terms(x, z, kl_groups)
        q = self.encode(x)
        if isinstance(q, DiagonalGaussian) and isinstance(p, DiagonalGaussian):
            z = q.rsample(() if n_samples == 1 else (n_samples,))  # log q is not needed with the closed-form KL
            return self._closed_form_terms(x, z, kl_per_dim(q, p))
        # a flow posterior whose log q splits over dimensions (IAF) gives per-dimension MC KL groups
        per_dim = hasattr(q, "rsample_and_log_prob_dims") and _is_diag_normal(p)
        if per_dim:
            z, log_q_dims = q.rsample_and_log_prob_dims((n_samples,))  # (L, B, D), (L, B, D)
            log_q = log_q_dims.sum(-1)  # (L, B)
        else:
            z, log_q = q.rsample_and_log_prob((n_samples,))  # (L, B, D), (L, B)
        log_px_z = self.decode(z).log_prob(x).mean(0)  # (B,)
        if _is_diag_normal(q) and _is_diag_normal(p):  # other Independent(Normal) posteriors
            kl_groups = kl_divergence(q.base_dist, p.base_dist)  # (B, D) closed form
            return ELBOTerms(log_px_z, kl_groups.sum(-1), kl_groups, True)
        if per_dim:  # free bits per latent dimension (Kingma et al. 2016, Eq. 15) with a Monte Carlo KL
            kl_groups = (log_q_dims - p.base_dist.log_prob(z)).mean(0)  # (B, D)
            return ELBOTerms(log_px_z, kl_groups.sum(-1), kl_groups, False)
        kl = (log_q - p.log_prob(z)).mean(0)  # (B,) Monte Carlo on the same samples
        return ELBOTerms(log_px_z, kl, kl.unsqueeze(-1), False)

    def _closed_form_terms(self, x: torch.Tensor, z: torch.Tensor, kl_groups: torch.Tensor) -> ELBOTerms:
        """Terms from samples z, (L, B, D) or one sample (B, D), and the closed-form KL per dimension (B, D)."""
        log_px_z = self.log_px_z(z, x)  # (L, B) or (B,)
        if log_px_z.dim() > 1:
            log_px_z = log_px_z.mean(0)  # (B,)
        return ELBOTerms(log_px_z, kl_groups.sum(-1), kl_groups, True)

    def log_weights(self, x: torch.Tensor, n_samples: int) -> torch.Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x): shape (K, B)."""
        q = self.encode(x)
        z, log_q = q.rsample_and_log_prob((n_samples,))  # (K, B, D), (K, B)
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - log_q

    # -- uses ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Means of p(x|z) for n draws z ~ N(0, T^2 I) (the prior scaled by the temperature T)."""
        p = self.prior()
        z = p.loc + temperature * p.scale * torch.randn(n, self.latent_dim, device=p.loc.device)
        return self.decode(z).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) at z = the posterior mean."""
        return self.decode(self.embed(x)).mean

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean E_q[z] of shape (B, D) (for a flow posterior, a sample mean)."""
        q = self.encode(x)
        try:
            return q.mean
        except NotImplementedError:
            z, _ = q.rsample_and_log_prob((64,))
            return z.mean(0)
