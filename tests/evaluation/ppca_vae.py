"""A linear-Gaussian VAE (probabilistic PCA) built from vaekit pieces, with its exact log p(x) and posterior.

p(z) = N(0, I_D), p(x|z) = N(Wz + b, sigma^2 I_X)  =>  p(x) = N(b, W W^T + sigma^2 I)  (Tipping & Bishop 1999).
Exact posterior: q*(z|x) = N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I, diagonal when W has
orthogonal columns, so a DiagonalGaussian head can represent it exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from vaekit.likelihoods import FixedGaussianLikelihood
from vaekit.models import VAE
from vaekit.posteriors import DiagonalGaussian
from vaekit.priors import StandardNormal

DT = torch.float64


class LinearGaussianHead(nn.Module):
    """q(z|x) = N(A x + c, diag(scale^2)) with fixed A (D, X), c (D,), scale (D,)."""

    def __init__(self, A: torch.Tensor, c: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A.clone())
        self.register_buffer("c", c.clone())
        self.register_buffer("scale", scale.clone())
        self.latent_dim = A.shape[0]

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        loc = h @ self.A.T + self.c  # (B, D)
        return DiagonalGaussian(loc, self.scale.expand_as(loc))


class PPCA:
    """Parameters of a pPCA model with orthogonal-column W, its exact quantities, and VAE builders."""

    def __init__(self, x_dim: int = 6, z_dim: int = 3, sigma: float = 0.5, seed: int = 0, dtype=DT) -> None:
        g = torch.Generator().manual_seed(seed)
        Q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=g, dtype=DT))  # orthonormal columns
        col_norms = torch.linspace(2.0, 0.8, z_dim, dtype=DT)
        self.W = Q * col_norms  # (X, D) orthogonal columns
        self.b = 0.3 * torch.randn(x_dim, generator=g, dtype=DT)  # (X,)
        self.sigma, self.x_dim, self.z_dim, self.dtype = sigma, x_dim, z_dim, dtype
        M = self.W.T @ self.W + sigma**2 * torch.eye(z_dim, dtype=DT)  # diagonal
        assert torch.allclose(M, torch.diag(torch.diag(M)), atol=1e-12)
        m = torch.diag(M)
        self.A = self.W.T / m[:, None]  # M^-1 W^T  (D, X)
        self.c = -self.A @ self.b  # (D,)
        self.post_scale = sigma / m.sqrt()  # (D,)

    def marginal(self) -> MultivariateNormal:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.x_dim, dtype=DT)
        return MultivariateNormal(self.b, covariance_matrix=cov)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) exact log p(x)."""
        return self.marginal().log_prob(x.to(DT))

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g, dtype=DT)
        x = z @ self.W.T + self.b + self.sigma * torch.randn(n, self.x_dim, generator=g, dtype=DT)
        return x.to(self.dtype)

    def vae(self, A=None, c=None, scale=None) -> VAE:
        """The VAE with the exact posterior, or with the given (perturbed) head parameters."""
        head = LinearGaussianHead(self.A if A is None else A, self.c if c is None else c,
                                  self.post_scale if scale is None else scale)
        dec = nn.Linear(self.z_dim, self.x_dim, dtype=DT)
        with torch.no_grad():
            dec.weight.copy_(self.W)
            dec.bias.copy_(self.b)
        lik = FixedGaussianLikelihood((self.x_dim,), sigma=self.sigma)
        model = VAE(nn.Identity(), head, dec, lik, StandardNormal(self.z_dim))
        return model.to(self.dtype)

    def perturbed_vae(self, loc_shift: float = 0.4, scale_factor: float = 1.6) -> VAE:
        """A VAE whose q is the exact posterior with its mean shifted and its scale inflated."""
        shift = loc_shift * torch.linspace(-1.0, 1.0, self.z_dim, dtype=DT)
        return self.vae(c=self.c + shift, scale=self.post_scale * scale_factor)
