"""Post-hoc latent samplers for a trained model: draw z from a density fitted to the aggregate posterior, then
decode. The prior p(z) and the aggregate posterior q(z) = E_x q(z|x) rarely agree; sampling from a fit of the
latter gives sharper, more typical samples (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders",
Sec. 4 "ex-post density estimation"; Dai & Wipf 2019, "Diagnosing and Enhancing VAE Models", Sec. 4).

Each sampler is fitted to the posterior means of (up to ``fit_examples``) training examples, flattened over the
continuous groups (``vaekit.models.uses.flatten``), standardised per coordinate:

- ``gmm``: a K-component full-covariance Gaussian mixture by expectation-maximisation (Bishop 2006, Sec. 9.2.2);
- ``flow``: a masked autoregressive flow (``vaekit.priors.FlowPrior``) by maximum likelihood;
- ``two-stage``: a second, small VAE on the latents whose decoder has one learned scale (Dai & Wipf 2019, Sec. 4:
  u ~ N(0, I) -> second decoder's mean -> z).

A fitted sampler is saved in the run folder (``samplers/<kind>.safetensors`` + ``.json``, written temp-then-rename)
with what it was fitted on, and reused while that matches. Temperature T: the mixture's covariances scaled by T^2,
the flow's and the second stage's base noise by T.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaekit.models.contract import CONTINUOUS, require
from vaekit.models.uses import flatten, posterior_means, sample_latents, unflatten
from vaekit.utils import eval_mode, model_device, model_dtype

__all__ = ["SAMPLERS", "GMMSampler", "FlowSampler", "TwoStageSampler", "fit_gmm", "latent_means",
           "fitted_sampler", "sample_images"]

SAMPLERS = ("prior", "gmm", "flow", "two-stage")


class _Standardised(nn.Module):
    """z = mean + std * v for the standardised coordinates v a subclass models."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.register_buffer("shift", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("spread", torch.ones(dim, dtype=torch.float64))

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        self.shift.copy_(z.mean(0))
        self.spread.copy_(z.std(0).clamp_min(1e-6))
        return (z - self.shift) / self.spread

    def unstandardise(self, v: torch.Tensor) -> torch.Tensor:
        return self.shift + self.spread * v


def fit_gmm(z: torch.Tensor, components: int, iters: int = 200, tol: float = 1e-6, reg: float = 1e-6,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights (K,), means (K, D), Cholesky factors (K, D, D)) of a full-covariance Gaussian mixture fitted to
    z (N, D) by EM (Bishop 2006, Eq. 9.23-9.28): means start at K distinct data points, covariances at the
    data's; ``reg`` is added to every covariance's diagonal; stops when the mean log-likelihood gains < tol."""
    n, d = z.shape
    if n < components:
        raise ValueError(f"a {components}-component mixture needs at least {components} points, got {n}")
    z = z.double()
    idx = torch.randperm(n, generator=generator)[:components]
    means = z[idx].clone()  # (K, D)
    cov = torch.cov(z.T).reshape(d, d) + reg * torch.eye(d, dtype=z.dtype)
    covs = cov.expand(components, d, d).clone()  # (K, D, D)
    log_w = torch.full((components,), -math.log(components), dtype=z.dtype)
    last = -math.inf
    for _ in range(iters):
        tril = torch.linalg.cholesky(covs)
        log_r = log_w + MultivariateNormal(means, scale_tril=tril).log_prob(z[:, None, :])  # (N, K)
        ll = torch.logsumexp(log_r, 1)  # (N,)
        r = (log_r - ll[:, None]).exp()  # (N, K) responsibilities
        nk = r.sum(0) + 1e-12  # (K,)
        log_w = (nk / n).log()
        means = (r.T @ z) / nk[:, None]  # (K, D)
        diff = z[:, None, :] - means  # (N, K, D)
        covs = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + reg * torch.eye(d, dtype=z.dtype)
        if float(ll.mean()) - last < tol:
            break
        last = float(ll.mean())
    return log_w.exp(), means, torch.linalg.cholesky(covs)


class GMMSampler(_Standardised):
    """A full-covariance Gaussian mixture over the standardised latents."""

    kind = "gmm"

    def __init__(self, dim: int, components: int = 10) -> None:
        super().__init__(dim)
        self.components = int(components)
        self.register_buffer("weights", torch.full((components,), 1.0 / components, dtype=torch.float64))
        self.register_buffer("means", torch.zeros(components, dim, dtype=torch.float64))
        self.register_buffer("tril", torch.eye(dim, dtype=torch.float64).expand(components, dim, dim).clone())

    def options(self) -> dict[str, Any]:
        return {"components": self.components}

    def fit(self, z: torch.Tensor, generator: torch.Generator, steps: int) -> None:
        w, m, t = fit_gmm(self.standardise(z.double()), self.components, generator=generator)
        self.weights.copy_(w), self.means.copy_(m), self.tril.copy_(t)

    def distribution(self, temperature: float = 1.0) -> MixtureSameFamily:
        """The fitted mixture in the standardised coordinates (covariances scaled by T^2)."""
        return MixtureSameFamily(Categorical(probs=self.weights),
                                 MultivariateNormal(self.means, scale_tril=temperature * self.tril))

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        return self.unstandardise(self.distribution(temperature).sample((n,)))  # (n, D)


class FlowSampler(_Standardised):
    """A masked autoregressive flow over the standardised latents, fitted by maximum likelihood (Adam)."""

    kind = "flow"

    def __init__(self, dim: int, steps: int = 4, hidden: tuple[int, ...] = (128, 128)) -> None:
        from vaekit.priors import FlowPrior

        super().__init__(dim)
        self.flow_steps, self.hidden = int(steps), [int(h) for h in hidden]
        self.flow = FlowPrior(dim, steps=steps, hidden=hidden).double()

    def options(self) -> dict[str, Any]:
        return {"steps": self.flow_steps, "hidden": self.hidden}

    def fit(self, z: torch.Tensor, generator: torch.Generator, steps: int, batch: int = 256) -> None:
        v = self.standardise(z.double())
        opt = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
        for t in range(steps):
            idx = torch.randint(0, v.shape[0], (min(batch, v.shape[0]),), generator=generator)
            loss = -self.flow().log_prob(v[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        return self.unstandardise(self.flow().sample_at_temperature((n,), temperature))


class TwoStageSampler(_Standardised):
    """The second stage of Dai & Wipf 2019: a VAE on the standardised latents (latent size D, a Gaussian decoder
    with one learned scale), trained on the ELBO with Adam; samples are its decoder's means at u ~ N(0, T^2 I)."""

    kind = "two-stage"

    def __init__(self, dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        from vaekit.models.build import build_vae

        super().__init__(dim)
        self.hidden = [int(h) for h in hidden]
        self.vae = build_vae((dim,), arch="mlp", latent_dim=dim, hidden=self.hidden, act="relu",
                             likelihood="sigma-vae").double()

    def options(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def fit(self, z: torch.Tensor, generator: torch.Generator, steps: int, batch: int = 128) -> None:
        from vaekit.objectives import ELBO

        v = self.standardise(z.double())
        objective = ELBO()
        opt = torch.optim.Adam(self.vae.parameters(), lr=1e-3)
        self.vae.train()
        for t in range(steps):
            idx = torch.randint(0, v.shape[0], (min(batch, v.shape[0]),), generator=generator)
            loss = objective(self.vae, v[idx], check=False).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.vae.eval()

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        return self.unstandardise(self.vae.sample(n, temperature))


_CLASSES = {c.kind: c for c in (GMMSampler, FlowSampler, TwoStageSampler)}


@torch.no_grad()
def latent_means(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, D) float64 posterior means of x, the continuous groups flattened in layout order."""
    dev = model_device(model)
    with eval_mode(model):
        parts = [flatten(model.layout, posterior_means(model, x[i:i + batch_size].to(dev))).double().cpu()
                 for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts)


def fitted_sampler(model: nn.Module, kind: str, x: torch.Tensor, *, run_dir: str | Path | None = None,
                   fitted_on: dict[str, Any] | None = None, fit_steps: int = 2000, seed: int = 0,
                   **options: Any) -> tuple[nn.Module, bool]:
    """(the sampler ``kind`` for ``model`` fitted to the posterior means of x, whether it was reused): read from
    ``run_dir/samplers/<kind>.safetensors`` when its record matches (the options, the fitting steps and seed, and
    ``fitted_on``: the checkpoint and data it describes), else fitted, and saved there when ``run_dir`` is given
    (the caller holds the run folder's lock)."""
    from vaekit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    require(model, CONTINUOUS, f"a fitted latent sampler ({kind})")
    if kind not in _CLASSES:
        raise ValueError(f"unknown sampler {kind!r}; choose from {', '.join(SAMPLERS)}")
    dim = model.layout.continuous_size
    sampler = _CLASSES[kind](dim, **options)
    record = {"sampler": kind, "dim": dim, "options": sampler.options(), "fit_steps": int(fit_steps),
              "seed": int(seed), "fitted_on": fitted_on or {}}
    path = Path(run_dir) / "samplers" / f"{kind}.safetensors" if run_dir is not None else None
    if path is not None and path.is_file():
        try:
            tensors, doc = load_checkpoint(path)
            if {k: doc.get(k) for k in record} == record:
                sampler.load_state_dict(tensors)
                return sampler.eval(), True
        except (CheckpointError, RuntimeError):
            pass  # unreadable or another shape: fitted anew below
    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sampler.fit(latent_means(model, x), g, int(fit_steps))
    if path is not None:
        save_checkpoint(path, sampler.state_dict(), record)
    return sampler.eval(), False


@torch.no_grad()
def sample_images(model: nn.Module, sampler: nn.Module | None, n: int, temperature: float = 1.0) -> torch.Tensor:
    """Means of p(x|z) (n, *data_shape) at n latents from ``sampler`` (None: the model's prior)."""
    with eval_mode(model):
        if sampler is None:
            z = sample_latents(model, n, temperature)
        else:
            v = sampler.sample(n, temperature).to(model_device(model), model_dtype(model))  # (n, D)
            z = unflatten(model.layout, v)
        return model.decode(z).mean
