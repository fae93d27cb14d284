"""The uniform prior on the sphere S^{D-1} in R^D and its closed-form KL from a von Mises-Fisher posterior
(Davidson et al. 2018, "Hyperspherical Variational Auto-Encoders", Sec. 3.2 and Appendix B).

    p(z) = 1 / A(S^{D-1}),  A(S^{D-1}) = 2 pi^{D/2} / Gamma(D/2)
    KL(vMF(mu, kappa) || U(S^{D-1})) = kappa A_D(kappa) + log C_D(kappa) + log A(S^{D-1})         (their Eq. 5)

with A_D = I_{D/2} / I_{D/2-1} and C_D the vMF normaliser (``vaekit.posteriors.vmf``); it does not depend on mu.
Computed as kappa (A_D - 1) + (log C_D + kappa) + log A in float64, where the e^{kappa} terms cancel by hand. The
KL does not split over dimensions: ``register_kl_dims`` gives it as one (*batch, 1) unit, on which free bits act.

A draw is a standard normal vector normalised to unit length (its direction is uniform). Sampling "at a
temperature" T, which the Gaussian priors read as the tempered density p(z)^{1/T^2} (N(0, T^2 I) for N(0, I)),
gives the uniform again for every T: the tempered density of a constant is the same constant.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, register_kl

from vaekit.objectives.latents import register_kl_dims
from vaekit.posteriors.vmf import VonMisesFisher, log_sphere_area, sphere

__all__ = ["HypersphericalUniform", "SpherePrior", "vmf_uniform_kl"]


class HypersphericalUniform(Distribution):
    """U(S^{D-1}): batch (), event (D,); tensors follow ``like``'s device and dtype."""

    arg_constraints: dict = {}
    support = sphere
    has_rsample = False
    temperature_note = "uniform on the sphere (the same at every T)"

    def __init__(self, dim: int, like: torch.Tensor) -> None:
        if dim < 2:
            raise ValueError(f"a uniform prior on the sphere S^(D-1) needs D >= 2, got {dim}")
        self.dim, self._like = int(dim), like
        self.log_area = log_sphere_area(self.dim)
        super().__init__(torch.Size(), torch.Size([self.dim]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """-log A(S^{D-1}) for every value (*lead, D) -> (*lead,)."""
        if value.shape[-1:] != self.event_shape:
            raise ValueError(f"the sphere prior expects values of last dimension {self.dim}, got {tuple(value.shape)}")
        return torch.full(value.shape[:-1], -self.log_area, dtype=value.dtype, device=value.device)

    def sample_at_temperature(self, sample_shape: torch.Size | tuple = (), temperature: float = 1.0,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """(*sample_shape, D) uniform draws; the same uniform at every temperature T >= 0 (module docstring)."""
        if not temperature >= 0:
            raise ValueError(f"temperatures must be >= 0, got {temperature}")
        dev = generator.device if generator is not None else self._like.device
        n = torch.randn((*sample_shape, self.dim), generator=generator, device=dev, dtype=self._like.dtype)
        return (n / n.norm(dim=-1, keepdim=True)).to(self._like.device)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.sample_at_temperature(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=self._like.dtype, device=self._like.device)

    def entropy(self) -> torch.Tensor:
        return torch.tensor(self.log_area, dtype=self._like.dtype, device=self._like.device)


def _kl(q: VonMisesFisher, p: HypersphericalUniform) -> torch.Tensor:
    if q.m != p.dim:
        raise ValueError(f"KL between a vMF on S^{q.m - 1} and the uniform on S^{p.dim - 1}: the dimensions differ")
    kappa = q.concentration.to(torch.float64)
    return (kappa * q.mean_resultant_length_minus_1() + q.log_normaliser() + p.log_area).to(q.loc.dtype)  # (*batch,)


@register_kl_dims(VonMisesFisher, HypersphericalUniform)
def vmf_uniform_kl(q: VonMisesFisher, p: HypersphericalUniform) -> torch.Tensor:
    """(*batch, 1) KL(vMF(mu, kappa) || U(S^{D-1})), exact (module docstring): one unit, not per dimension."""
    return _kl(q, p).unsqueeze(-1)


register_kl(VonMisesFisher, HypersphericalUniform)(_kl)


class SpherePrior(nn.Module):
    """p(z) = U(S^{D-1}) over D latent dimensions: no parameters (a buffer follows the module's device and dtype).
    Its z lives on the sphere, not in R^D: no prior-unit coordinates (``euclidean = False``)."""

    gaussian = False
    euclidean = False

    def __init__(self, latent_dim: int, data_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ValueError(f"a uniform prior on the sphere S^(D-1) needs latent_dim >= 2, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.register_buffer("like", torch.zeros(()), persistent=False)

    def forward(self) -> HypersphericalUniform:
        return HypersphericalUniform(self.latent_dim, self.like)

