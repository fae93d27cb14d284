"""DReG against IWAE's encoder gradient: the variance of each coordinate of the gradient w.r.t. q's mean and
log-scale, from N independent estimates, on the small float64 VAE of tests/objectives/test_iw_bounds.py (10
binary pixels, 3 latent dimensions, one example), at three posteriors: q fitted to the example (100 Adam steps
on the ELBO), q = N(0, I), and a q far from the posterior (mean 0.3 N(0, I), sigma 0.5).

    python bench/dreg_variance.py [--n 8000]

Prints, per k, DReG's variance over IWAE's per coordinate and the largest difference of the two means in
combined standard errors (equal in expectation: Tucker et al. 2019).
"""

from __future__ import annotations

import argparse

import torch
from torch.distributions import Independent, Normal

from vaekit.models import build_vae
from vaekit.objectives.iw_bounds import MultiSampleBound

__all__ = ["main"]


class _AtPosterior(torch.nn.Module):
    def __init__(self, model, q):
        super().__init__()
        self.model, self.q = model, q

    def check_input(self, x):
        self.model.check_input(x)

    def forward(self, x, n_samples=1):
        return self.model(x, n_samples, posterior=self.q)


def _grads(m, x, n, dreg, k, seed, mu0, ls0):
    mu, ls = mu0.repeat(n, 1).requires_grad_(True), ls0.repeat(n, 1).requires_grad_(True)  # (n, D) each
    q = Independent(Normal(mu, ls.exp()), 1)
    torch.manual_seed(seed)
    loss = MultiSampleBound(k=k, dreg=dreg)(_AtPosterior(m, q), x.repeat(n, 1)).loss
    return torch.cat(torch.autograd.grad(loss, [mu, ls]), 1) * n  # (n, 2D)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8000)
    n = ap.parse_args(argv).n
    torch.manual_seed(0)
    m = build_vae((10,), hidden=[8], latent_dim=3).double()
    x = torch.bernoulli(torch.full((6, 10), 0.3), generator=torch.Generator().manual_seed(1)).double()[:1]
    mu, ls = torch.zeros(1, 3, dtype=x.dtype, requires_grad=True), torch.zeros(1, 3, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.Adam([mu, ls], lr=0.05)
    for _ in range(100):
        q = Independent(Normal(mu.expand(64, 3), ls.exp().expand(64, 3)), 1)
        loss = MultiSampleBound(k=1)(_AtPosterior(m, q), x.repeat(64, 1)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    z3 = torch.zeros(1, 3, dtype=x.dtype)
    far = (0.3 * torch.randn(1, 3, generator=torch.Generator().manual_seed(0), dtype=x.dtype),
           torch.full((1, 3), -0.7, dtype=x.dtype))
    print("| q | k | DReG var / IWAE var (mean; log-scale coordinates) | max |mean diff| / s.e. |")
    print("|---|---|---|---|")
    for name, (a, b) in {"fitted": (mu.detach(), ls.detach()), "N(0, I)": (z3, z3), "far": far}.items():
        for k in (4, 16, 64):
            gi, gd = _grads(m, x, n, False, k, 1, a, b), _grads(m, x, n, True, k, 2, a, b)
            ratio = (gd.var(0) / gi.var(0)).tolist()
            z = ((gi.mean(0) - gd.mean(0)).abs() / (gi.var(0) / n + gd.var(0) / n).sqrt()).max()
            print(f"| {name} | {k} | {', '.join(f'{r:.3g}' for r in ratio)} | {float(z):.2f} |")


if __name__ == "__main__":
    main()
