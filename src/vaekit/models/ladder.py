"""The Ladder VAE of Sønderby et al. 2016, "Ladder Variational Autoencoders" (NeurIPS), Sec. 2.

Generative model: p(z_L) = N(0, I), p(z_i|z_{i+1}) = N(mu_{p,i}, sigma^2_{p,i}) from an MLP of z_{i+1}, and
p(x|z_1) any vaekit likelihood. Inference (Sec. 2.2, Eqs. 17-21): a deterministic bottom-up pass
d_i = MLP(d_{i-1}) (d_0 = x) with heads mu_hat_{q,i} = Linear(d_i), sigma_hat^2_{q,i} = Softplus(Linear(d_i));
then a stochastic top-down pass q(z|x) = q(z_L|x) prod_i q(z_i|z_{i+1}, x) with q(z_L|x) = N(mu_hat_L,
sigma_hat^2_L) and, below the top, the precision-weighted merge of the bottom-up parameters with the top-down
prior parameters (Eqs. 18-19, ``precision_merge``). The top-down path shares its parameters with the generative
model. With ``merge=False`` the same nets give q(z_i|x) = N(mu_hat_i, sigma_hat^2_i) (a bottom-up hierarchical
VAE with the same generative model), for the paper's comparison of active units.

KL: per layer, analytic KL(q(z_i|z_{i+1}, x) || p(z_i|z_{i+1})) at the *sampled* parent z_{i+1}, averaged over
the samples; its expectation is KL(q(z|x) || p(z)) by the chain rule, so the ELBO stays unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.base import Likelihood
from vaekit.models.ladder_blocks import ConvStem, DenseBlock, GaussianParams, precision_merge
from vaekit.models.vae import ELBOTerms
from vaekit.nn import ConvDecoder
from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["LadderVAE", "LadderPass", "build_ladder"]


@dataclass
class LadderPass:
    """One top-down pass; every list is ordered layer 1 (bottom) first, tensors have lead shape (*S, B).

    z: samples (or means) z_i (*S, B, D_i); q, p: q(z_i|.) and p(z_i|z_{i+1}) (p(z_L) = N(0, I)) at the sampled
    parents; log_q: (*S, B) log q(z|x) summed over layers (None for a mean pass).
    """

    z: list[torch.Tensor]
    q: list[DiagonalGaussian]
    p: list[DiagonalGaussian]
    log_q: torch.Tensor | None


class LadderVAE(nn.Module):
    """Ladder VAE with L = len(up) stochastic layers; same duck-typed interface as ``vaekit.models.VAE``.

    up[i]: deterministic block d_{i} -> d_{i+1} (up[0] takes x); up_heads[i]: d_{i+1} -> (mu_hat, sigma_hat^2) of
    layer i+1; top_down[i]: z_{i+2} -> (mu_p, sigma^2_p) of layer i+1 (L-1 nets); decoder: z_1 (*, D_1) ->
    (*, *likelihood.param_shape). Latent vectors concatenate the layers, layer 1 first (``layer_slices``).

    The "uses" (sample, reconstruct, embed, posterior_means) run the nets in eval mode and restore the previous
    mode, so BatchNorm uses running statistics there and they never update them.
    """

    def __init__(
        self,
        up: Sequence[nn.Module],
        up_heads: Sequence[nn.Module],
        top_down: Sequence[nn.Module],
        decoder: nn.Module,
        likelihood: Likelihood,
        merge: bool = True,
    ) -> None:
        super().__init__()
        if not (len(up) == len(up_heads) == len(top_down) + 1 >= 1):
            raise ValueError("LadderVAE needs L bottom-up blocks, L heads and L-1 top-down nets (L >= 1)")
        self.up, self.up_heads = nn.ModuleList(up), nn.ModuleList(up_heads)
        self.top_down, self.decoder, self.likelihood = nn.ModuleList(top_down), decoder, likelihood
        self.merge = bool(merge)
        self.data_shape = likelihood.data_shape
        self.layer_dims = [int(h.latent_dim) for h in up_heads]
        self.latent_dim = sum(self.layer_dims)
        ends = torch.tensor(self.layer_dims).cumsum(0).tolist()
        self.layer_slices = [slice(e - d, e) for d, e in zip(self.layer_dims, ends)]

    # -- building blocks ---------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError on data that does not fit the model (shape, NaN/inf, likelihood support)."""
        self.likelihood.check_batch(x)

    def bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Deterministic pass: [(mu_hat_{q,i}, sigma_hat^2_{q,i}) each (B, D_i)] for i = 1..L."""
        out, d = [], x
        for block, head in zip(self.up, self.up_heads):
            d = block(d)  # (B, F_i)
            out.append(head(d))
        return out

    def decode(self, z1: torch.Tensor) -> Distribution:
        """p(x|z_1) for z_1 of shape (*lead, D_1): batch_shape lead, event_shape data_shape."""
        h = self.decoder(z1).reshape(*z1.shape[:-1], *self.likelihood.param_shape)
        if h.dtype != z1.dtype:  # e.g. a bf16 decoder under autocast: the log-density stays in float32
            h = h.to(z1.dtype)
        return self.likelihood(h)

    def top_down_pass(self, x: torch.Tensor, n_samples: int | None = 1) -> LadderPass:
        """Stochastic top-down pass with ``n_samples`` reparameterised samples (lead (S, B)); with None, the
        deterministic pass that feeds each layer's posterior mean to the layer below (lead (B,))."""
        lead = (x.shape[0],) if n_samples is None else (int(n_samples), x.shape[0])
        params = self.bottom_up(x)
        L = len(params)
        zs: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
        qs: list[DiagonalGaussian] = [None] * L  # type: ignore[list-item]
        ps: list[DiagonalGaussian] = [None] * L  # type: ignore[list-item]
        log_q = None
        for i in reversed(range(L)):
            mu_hat, var_hat = (t.expand(*lead, t.shape[-1]) for t in params[i])  # (*S, B, D_i)
            if i == L - 1:
                mu_p, var_p = torch.zeros_like(mu_hat), torch.ones_like(var_hat)  # p(z_L) = N(0, I)
            else:
                mu_p, var_p = self.top_down[i](zs[i + 1])  # p(z_i | z_{i+1})
            if self.merge and i < L - 1:
                mu_q, var_q = precision_merge(mu_hat, var_hat, mu_p, var_p)  # Eqs. 18-19
            else:
                mu_q, var_q = mu_hat, var_hat
            qs[i], ps[i] = DiagonalGaussian(mu_q, var_q.sqrt()), DiagonalGaussian(mu_p, var_p.sqrt())
            if n_samples is None:
                zs[i] = mu_q
            else:
                zs[i], lq = qs[i].rsample_and_log_prob()  # (S, B, D_i), (S, B)
                log_q = lq if log_q is None else log_q + lq
        return LadderPass(zs, qs, ps, log_q)

    # -- objectives ----------------------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, n_samples: int = 1, check: bool = True) -> ELBOTerms:
        """ELBO terms with L = n_samples top-down samples; kl_groups (B, sum D_i) is analytic per layer and
        dimension at the sampled parents (layer 1 first, see ``layer_slices``), averaged over the samples."""
        if check:
            self.check_input(x)
        tp = self.top_down_pass(x, n_samples)
        log_px_z = self.decode(tp.z[0]).log_prob(x).mean(0)  # (B,)
        kl_groups = torch.cat([kl_divergence(q.base_dist, p.base_dist) for q, p in zip(tp.q, tp.p)], -1)  # (S,B,G)
        kl_groups = kl_groups.mean(0)  # (B, G)
        return ELBOTerms(log_px_z, kl_groups.sum(-1), kl_groups, True)

    def log_weights(self, x: torch.Tensor, n_samples: int) -> torch.Tensor:
        """log w_k = log p(x|z_1) + sum_{i<L} log p(z_i|z_{i+1}) + log p(z_L) - log q(z|x), z ~ q: shape (K, B)."""
        tp = self.top_down_pass(x, n_samples)
        log_p = sum(p.log_prob(z) for p, z in zip(tp.p, tp.z))  # (K, B)
        return self.decode(tp.z[0]).log_prob(x) + log_p - tp.log_q

    # -- uses (eval mode) ----------------------------------------------------------------------------------
    def _eval_call(self, fn, *args):
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                return fn(*args)
        finally:
            self.train(was)

    def posterior_means(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[(B, D_i)] for i = 1..L: posterior means of the deterministic top-down pass, where each layer's
        prior is evaluated at the parent's posterior mean (for per-layer active units)."""
        return self._eval_call(lambda: self.top_down_pass(x, None).z)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, sum D_i): ``posterior_means`` concatenated, layer 1 first (``layer_slices``)."""
        return torch.cat(self.posterior_means(x), -1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z_1) at z_1 = the layer-1 entry of ``posterior_means``."""
        return self._eval_call(lambda: self.decode(self.top_down_pass(x, None).z[0]).mean)

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling from the top: z_L ~ N(0, T^2 I), z_i ~ N(mu_{p,i}, (T sigma_{p,i})^2); returns the
        means of p(x|z_1), shape (n, *data_shape)."""

        def draw() -> torch.Tensor:
            ref = next(self.parameters())
            z = temperature * torch.randn(n, self.layer_dims[-1], device=ref.device, dtype=ref.dtype)
            for net in reversed(self.top_down):
                mu_p, var_p = net(z)
                z = mu_p + temperature * var_p.sqrt() * torch.randn_like(mu_p)
            return self.decode(z).mean

        return self._eval_call(draw)


def build_ladder(
    data_shape: Sequence[int],
    *,
    arch: str = "mlp",
    latent_dims: Sequence[int] = (64, 32),
    hidden: Sequence[int] = (512, 256),
    act: str = "leaky_relu",
    conv_channels: Sequence[int] = (32, 64),
    likelihood: str = "bernoulli",
    likelihood_kwargs: dict[str, Any] | None = None,
    batch_norm: bool = False,
    merge: bool = True,
    block_layers: int = 2,
    var_floor: float = 1e-4,
) -> LadderVAE:
    """A Ladder VAE for data of shape ``data_shape`` ((D,) vectors or (C, H, W) images).

    latent_dims / hidden: per stochastic layer, bottom to top (paper MNIST: [64, 32, 16, 8, 4] and
    [512, 256, 128, 64, 32]). Every deterministic block (bottom-up d_i, top-down z_{i+1} -> p(z_i), decoder
    z_1 -> x) is ``block_layers`` x [Linear -> BatchNorm if ``batch_norm`` -> act] of width hidden[i].
    arch="conv": the first bottom-up block is a strided conv stem (``conv_channels``) and p(x|z_1) uses
    vaekit.nn.ConvDecoder (which has no BatchNorm); the rest are MLPs.
    """
    data_shape = tuple(int(s) for s in data_shape)
    dims, widths = [int(d) for d in latent_dims], [int(h) for h in hidden]
    if not dims or min(dims) < 1:
        raise ValueError(f"model.latent_dims needs at least one positive layer size, got {list(latent_dims)}")
    if len(widths) != len(dims) or min(widths) < 1:
        raise ValueError(
            f"model.hidden needs one positive width per stochastic layer: got {widths} for latent_dims {dims}"
        )
    lik = build_likelihood(likelihood, data_shape, **(likelihood_kwargs or {}))
    kw = dict(n_layers=block_layers, act=act, batch_norm=batch_norm)
    if arch == "mlp":
        first: nn.Module = DenseBlock(data_shape, widths[0], **kw)
        n_out = lik.params_per_channel
        for s in data_shape:
            n_out *= s
        decoder: nn.Module = nn.Sequential(DenseBlock(dims[0], widths[0], **kw), nn.Linear(widths[0], n_out))
    elif arch == "conv":
        if len(data_shape) != 3:
            raise ValueError(f"model.arch=conv needs image data (C, H, W), got shape {data_shape}; use model.arch=mlp")
        first = ConvStem(data_shape, conv_channels, widths[0], act=act, batch_norm=batch_norm)
        decoder = ConvDecoder(dims[0], lik.param_shape, conv_channels, hidden=widths[0], act=act)
    else:
        raise ValueError(f"unknown model.arch {arch!r}; choose 'mlp' or 'conv'")
    up = [first] + [DenseBlock(widths[i - 1], widths[i], **kw) for i in range(1, len(dims))]
    heads = [GaussianParams(w, d, var_floor) for w, d in zip(widths, dims)]
    top_down = [
        nn.Sequential(DenseBlock(dims[i + 1], widths[i], **kw), GaussianParams(widths[i], dims[i], var_floor))
        for i in range(len(dims) - 1)
    ]
    return LadderVAE(up, heads, top_down, decoder, lik, merge=merge)
