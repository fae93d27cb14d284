"""The von Mises-Fisher distribution on the sphere S^{m-1} in R^m, and a posterior head giving it (Davidson et al.
2018, "Hyperspherical Variational Auto-Encoders", Sec. 3).

    q(z | mu, kappa) = C_m(kappa) exp(kappa mu^T z),  C_m(kappa) = kappa^{m/2-1} / ((2 pi)^{m/2} I_{m/2-1}(kappa))
                                                                                                 (their Eq. 3-4)

with |mu| = 1 and kappa > 0; I_v from ``vaekit.posteriors.bessel`` (log space, float64). E[z] = A_m(kappa) mu with
A_m = I_{m/2} / I_{m/2-1}; the entropy is -kappa A_m(kappa) - log C_m(kappa).

Sampling (Wood 1994, "Simulation of the von Mises Fisher distribution"; Davidson et al. Algorithm 1-2): the
component w = mu^T z, whose density on [-1, 1] is proportional to e^{kappa w} (1 - w^2)^{(m-3)/2}, is drawn by
rejection from the proposal w = h(eps, kappa) = (1 - (1 + b) eps) / (1 - (1 - b) eps), eps ~ Beta((m-1)/2, (m-1)/2):

    b = (m - 1) / (2 kappa + sqrt(4 kappa^2 + (m - 1)^2)),  a = (m - 1 + 2 kappa + sqrt(4 kappa^2 + (m - 1)^2)) / 4,
    d = 4 a b / (1 + b) - (m - 1) log(m - 1),  t = 2 a b / (1 - (1 - b) eps),  u ~ U(0, 1):
    accept when (m - 1) log t - t + d >= log u.

Then v is uniform on S^{m-2}, z' = (w, sqrt(1 - w^2) v), and z = Q z' with Q the Householder reflection sending e1
to mu (times -1 where that keeps the reflection's vector away from 0, any orthogonal map with Q e1 = mu giving the
same distribution). 1 - w = 2 b eps / (1 - (1 - b) eps) and 1 - w^2 = 4 b eps (1 - eps) / (1 - (1 - b) eps)^2 are
computed in those forms (no cancellation as kappa grows and w -> 1), and log q at a sample is
-kappa (1 - w) + log C_m(kappa) + kappa. eps ~ Beta(k, k) with k = (m-1)/2 is X / (X + Y) for X, Y two sums of
m - 1 squared standard normals (chi-square = 2 Gamma(k)), so every draw takes an optional ``generator``.

Reparameterisation (Davidson et al. Sec. 3.3, after Naesseth et al. 2017): the accepted eps, u and v are held
fixed and z is differentiated through w = h(eps, kappa) and Q(mu). The exact gradient adds a correction term,
g_cor = E[f(z) d/dkappa log(g(h(eps, kappa)) / r(h(eps, kappa)))] (g the density of w, r the proposal's), which
Davidson et al. leave out in their experiments and so does this implementation: the gradient in mu is exact (the
acceptance does not depend on mu), the gradient in kappa misses g_cor (tests/posteriors/test_vmf.py computes it
by Monte Carlo and checks that the two terms together give d/dkappa E[mu^T z] = A_m'(kappa)). How much of
d/dkappa E[mu^T z] the pathwise term misses (200,000 draws each): on S^2, 31 % at kappa = 2 and 5 % at kappa = 20;
on S^9, 0.7 % at kappa = 1, 6 % at kappa = 15, 1.2 % at kappa = 100, 0.4 % at kappa = 1000.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit.posteriors.bessel import log_ive, log_ive_pair
from vaekit.utils import full_precision

__all__ = ["VonMisesFisher", "VMFPosterior", "sphere", "log_normaliser", "accepted_eps", "w_of_eps",
           "log_sphere_area"]

_MAX_ROUNDS = 1000  # rejection rounds; the acceptance rate of Wood's proposal stays above ~0.68
_PROPOSALS = 4  # proposals per element and round (the first accepted one is kept): most draws take one round
_BUDGET = 1 << 21  # standard normals per round at most (large batches: fewer proposals per element)


class _Sphere(constraints.Constraint):
    """Unit vectors along the last dimension."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value.norm(dim=-1) - 1).abs() < 1e-4

    def __repr__(self) -> str:
        return "Sphere()"


sphere = _Sphere()


def log_sphere_area(m: int) -> float:
    """log of the surface area of S^{m-1} in R^m: log(2 pi^{m/2} / Gamma(m/2))."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def log_normaliser(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """log C_m(kappa) + kappa = (m/2 - 1) log kappa - (m/2) log(2 pi) - log ive(m/2 - 1, kappa): the normaliser
    with the e^{kappa} that log q = kappa (mu^T z - 1) + this value leaves (no cancellation at large kappa)."""
    v = 0.5 * m - 1.0
    return v * kappa.log() - 0.5 * m * math.log(2 * math.pi) - log_ive(v, kappa)


def _coefficients(kappa: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(b, a, d) of Wood's proposal (module docstring), elementwise in kappa."""
    n = m - 1.0
    root = torch.sqrt(4 * kappa.square() + n * n)
    b = n / (2 * kappa + root)
    a = (n + 2 * kappa + root) / 4
    d = 4 * a * b / (1 + b) - (n * math.log(n) if n > 1 else 0.0)
    return b, a, d


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def accepted_eps(kappa: torch.Tensor, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """eps of the same shape as kappa: for each element a Beta((m-1)/2, (m-1)/2) proposal accepted by Wood's test
    at that kappa (no gradient; float64; NaN where kappa is not finite and positive, so that a diverged step gives
    NaN values for the trainer's guard). Loops over rejection rounds only, each over the elements still pending
    with up to ``_PROPOSALS`` proposals per element (the first accepted one is the draw, as one at a time)."""
    k = kappa.detach().to(torch.float64).reshape(-1)  # (N,)
    eps = torch.full_like(k, math.nan)  # NaN for a concentration that is not finite and positive: z is NaN too
    pending = torch.nonzero(torch.isfinite(k) & (k > 0)).flatten()  # (P,) the elements still to accept
    dev = generator.device if generator is not None else k.device
    for _ in range(_MAX_ROUNDS):
        p = pending.numel()
        r = max(1, min(_PROPOSALS, _BUDGET // max(1, 2 * p * (m - 1))))  # proposals per element this round
        b, a, d = (c.unsqueeze(-1) for c in _coefficients(k[pending], m))  # (P, 1) each
        chi = _randn((2, p, r, m - 1), generator, k).square().sum(-1)  # (2, P, R) two chi-square(m - 1)
        e = chi[0] / (chi[0] + chi[1])  # (P, R) Beta((m-1)/2, (m-1)/2)
        t = 2 * a * b / (1 - (1 - b) * e)
        u = torch.rand((p, r), generator=generator, device=dev, dtype=k.dtype).to(k.device)
        ok = (m - 1) * torch.log(t) - t + d >= torch.log(u)  # (P, R)
        done = ok.any(-1)  # (P,) the first accepted proposal of each element is its draw
        first = ok.to(torch.int8).argmax(-1, keepdim=True)  # (P, 1)
        eps[pending[done]] = e.gather(-1, first).squeeze(-1)[done]
        pending = pending[~done]
        if pending.numel() == 0:
            return eps.reshape(kappa.shape)
    raise RuntimeError(f"von Mises-Fisher sampling: {pending.numel()} draws still rejected after {_MAX_ROUNDS} "
                       f"rounds (concentrations {k[pending][:3].tolist()}...); are they finite and positive?")


def w_of_eps(eps: torch.Tensor, kappa: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w, 1 - w, sqrt(1 - w^2)) for w = h(eps, kappa), differentiable in kappa (eps held fixed)."""
    b = _coefficients(kappa, m)[0]
    den = 1 - (1 - b) * eps
    one_minus_w = 2 * b * eps / den
    sin = 2 * torch.sqrt(b * eps * (1 - eps)) / den
    return 1 - one_minus_w, one_minus_w, sin


class VonMisesFisher(Distribution):
    """vMF(mu, kappa) on S^{m-1}: loc (*batch, m) unit vectors, concentration (*batch,) > 0; event_shape (m,).

    ``rsample`` / ``rsample_and_log_prob`` draw by Wood's rejection sampler with the reparameterised gradient of
    Davidson et al. (module docstring: the correction term is omitted); the Bessel terms are float64 and the
    results in loc's dtype. ``mode`` is mu, ``mean`` A_m(kappa) mu (inside the ball, off the sphere).
    """

    arg_constraints = {"loc": constraints.real_vector, "concentration": constraints.positive}
    support = sphere
    has_rsample = True

    def __init__(self, loc: torch.Tensor, concentration: torch.Tensor, validate_args: bool = False) -> None:
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"a von Mises-Fisher distribution needs loc of shape (..., m) with m >= 2, got "
                             f"{tuple(loc.shape)}")
        if concentration.shape != loc.shape[:-1]:
            raise ValueError(f"concentration must have loc's batch shape {tuple(loc.shape[:-1])}, got "
                             f"{tuple(concentration.shape)}")
        self.loc, self.concentration = loc, concentration
        self.m = int(loc.shape[-1])
        self._bessel: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def _kappa64(self) -> torch.Tensor:
        return self.concentration.to(torch.float64)  # (*batch,) differentiable cast: the Bessel terms in float64

    def log_ive_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log ive(m/2 - 1, kappa), log ive(m/2, kappa)), (*batch,) float64, computed once per distribution (the
        sampler's log q, the KL, the mean and the entropy share them)."""
        grad = torch.is_grad_enabled() and self.concentration.requires_grad
        if self._bessel is None or (grad and not self._bessel[0].requires_grad):  # no graph kept from a no-grad call
            self._bessel = log_ive_pair(0.5 * self.m - 1.0, self._kappa64())
        return self._bessel

    def log_normaliser(self) -> torch.Tensor:
        """(*batch,) log C_m(kappa) + kappa in float64 (``log_normaliser``)."""
        kappa, v = self._kappa64(), 0.5 * self.m - 1.0
        return v * kappa.log() - 0.5 * self.m * math.log(2 * math.pi) - self.log_ive_pair()[0]

    def mean_resultant_length_minus_1(self) -> torch.Tensor:
        """(*batch,) A_m(kappa) - 1 in float64, without cancellation as A_m -> 1."""
        l0, l1 = self.log_ive_pair()
        return torch.expm1(l1 - l0)

    # -- sampling ------------------------------------------------------------------------------------------------
    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = (),
                             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z (*S, *batch, m) and log q(z) (*S, *batch), both from the accepted w (no dot product recomputed)."""
        shape = torch.Size(sample_shape) + self.batch_shape
        kappa = self._kappa64().expand(shape)  # (*S, *batch)
        eps = accepted_eps(kappa, self.m, generator)
        w, one_minus_w, sin = w_of_eps(eps, kappa, self.m)  # (*S, *batch) each, float64
        n = _randn((*shape, self.m - 1), generator, self.loc)  # (*S, *batch, m - 1)
        v = n / n.norm(dim=-1, keepdim=True)  # uniform on S^{m-2}
        dt = self.loc.dtype
        z0 = torch.cat([w.to(dt).unsqueeze(-1), sin.to(dt).unsqueeze(-1) * v], -1)  # (*S, *batch, m) around e1
        z = self._rotate(z0)
        log_q = (-kappa * one_minus_w + self.log_normaliser()).to(dt)
        return z, log_q

    def _rotate(self, z0: torch.Tensor) -> torch.Tensor:
        """Q z0 with Q e1 = mu: c (I - 2 u u^T / |u|^2) with u = e1 - c mu, c = 1 if mu_1 < 0 else -1 (|u|^2 =
        2 (1 + |mu_1|) >= 2)."""
        mu = self.loc  # (*batch, m)
        c = torch.where(mu[..., :1] < 0, 1.0, -1.0).to(mu.dtype)  # (*batch, 1)
        u = -c * mu
        u = torch.cat([u[..., :1] + 1, u[..., 1:]], -1)  # (*batch, m)
        coef = 2 * (u * z0).sum(-1, keepdim=True) / u.square().sum(-1, keepdim=True)  # (*S, *batch, 1)
        return c * (z0 - coef * u)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size(),
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.rsample_and_log_prob(sample_shape, generator)[0]

    # -- densities and moments -----------------------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log C_m(kappa) + kappa mu^T z for z (*S, *batch, m) -> (*S, *batch)."""
        if value.shape[-1:] != self.event_shape:
            raise ValueError(f"a von Mises-Fisher log_prob expects values of last dimension {self.m}, got "
                             f"{tuple(value.shape)}")
        dot = (self.loc.to(torch.float64) * value.to(torch.float64)).sum(-1)  # (*S, *batch)
        return (self._kappa64() * (dot - 1) + self.log_normaliser()).to(value.dtype)

    def mean_resultant_length(self) -> torch.Tensor:
        """(*batch,) A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa) = |E[z]|, in float64."""
        return self.mean_resultant_length_minus_1() + 1.0

    @property
    def mean(self) -> torch.Tensor:
        return self.mean_resultant_length().to(self.loc.dtype).unsqueeze(-1) * self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def entropy(self) -> torch.Tensor:
        """-kappa A_m(kappa) - log C_m(kappa) = -kappa (A_m(kappa) - 1) - (log C_m(kappa) + kappa)."""
        kappa = self._kappa64()
        return (-kappa * self.mean_resultant_length_minus_1() - self.log_normaliser()).to(self.loc.dtype)


class VMFPosterior(nn.Module):
    """Linear head h (B, F) -> vMF(mu, kappa) on S^{D-1}: mu the normalised first D outputs, kappa = softplus(last
    output) + ``kappa_min`` (Davidson et al. 2018 add 1, against a collapse towards the uniform)."""

    gaussian = False  # q(z|x) is not a diagonal Gaussian (see ``LatentUses.capabilities``)

    def __init__(self, in_features: int, latent_dim: int, kappa_min: float = 1.0) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ValueError(f"a von Mises-Fisher posterior needs latent_dim >= 2 (z on the sphere S^(D-1)), got "
                             f"{latent_dim}")
        if not kappa_min > 0 or not math.isfinite(kappa_min):
            raise ValueError(f"a von Mises-Fisher posterior needs kappa_min > 0, got {kappa_min}")
        self.in_features, self.latent_dim, self.kappa_min = int(in_features), int(latent_dim), float(kappa_min)
        self.linear = nn.Linear(in_features, latent_dim + 1)

    def forward(self, h: torch.Tensor) -> VonMisesFisher:
        out = full_precision(self.linear(h))  # (B, D + 1), float32 under autocast
        mu = F.normalize(out[..., :-1], dim=-1)  # (B, D)
        kappa = F.softplus(out[..., -1]) + self.kappa_min  # (B,)
        return VonMisesFisher(mu, kappa)
