"""The Ladder VAE of Sønderby et al. 2016, "Ladder Variational Autoencoders" (NeurIPS), Sec. 2.

Generative model: p(z_L) = N(0, I), p(z_i|z_{i+1}) = N(mu_{p,i}, sigma^2_{p,i}) from an MLP of z_{i+1}, and
p(x|z_1) any vaekit likelihood. Inference (Sec. 2.2, Eqs. 17-21): a deterministic bottom-up pass
d_i = MLP(d_{i-1}) (d_0 = x) with heads mu_hat_{q,i} = Linear(d_i), sigma_hat^2_{q,i} = Softplus(Linear(d_i));
then a stochastic top-down pass q(z|x) = q(z_L|x) prod_i q(z_i|z_{i+1}, x) with q(z_L|x) = N(mu_hat_L,
sigma_hat^2_L) and, below the top, the precision-weighted merge of the bottom-up parameters with the top-down
prior parameters (Eqs. 18-19, ``precision_merge``). The top-down path shares its parameters with the generative
model. With ``merge=False`` the same nets give q(z_i|x) = N(mu_hat_i, sigma_hat^2_i) (a bottom-up hierarchical
VAE with the same generative model), for the paper's comparison of active units.

KL (computed by ``vaekit.objectives`` from the model's groups): per layer, analytic KL(q(z_i|z_{i+1}, x) || p(z_i|z_{i+1})) at the *sampled* parent z_{i+1}, averaged over
the samples; its expectation is KL(q(z|x) || p(z)) by the chain rule, so the ELBO stays unbiased.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.base import Likelihood
from vaekit.models.arrays import array_io
from vaekit.models.contract import (CONTINUOUS, DISCRETE_DATA, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR, HIERARCHICAL,
                                    GroupLayout, LatentGroup, LatentLayout, ModelOutput)
from vaekit.models.ladder_blocks import ConvStem, DenseBlock, GaussianParams, precision_merge
from vaekit.models.vae import decoder_precision
from vaekit.nn import ConvDecoder
from vaekit.posteriors.gaussian import DiagonalGaussian
from vaekit.objectives.latents import sample_latent
from vaekit.priors import StandardNormal
from vaekit.utils import eval_mode, full_precision

__all__ = ["LadderVAE", "build_ladder"]


class LadderVAE(nn.Module):
    """Ladder VAE with L = len(up) stochastic layers, speaking the model contract (one latent group per layer).

    up[i]: deterministic block d_{i} -> d_{i+1} (up[0] takes x); up_heads[i]: d_{i+1} -> N(mu_hat, sigma_hat^2) of
    layer i+1; top_down[i]: z_{i+2} -> p(z_{i+1} | z_{i+2}) = N(mu_p, sigma^2_p) (L-1 nets); decoder: z_1 (*, D_1) ->
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
        self.prior = StandardNormal(self.layer_dims[-1])

    # -- the contract ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, *, posterior: Distribution | None = None,
                decoder_dtype: torch.dtype | None = None) -> ModelOutput:
        """Stochastic top-down pass: groups "layer1" (bottom) .. "layerL" with q(z_i|z_{i+1}, x) and
        p(z_i|z_{i+1}) at the sampled parent; ``n_samples`` samples of the top layer (lead (S, B)), one of each
        layer below per parent sample."""
        if posterior is not None:
            raise ValueError("a Ladder VAE takes its posterior from its own top-down pass; posterior= is for "
                             "one-latent VAEs (model.family=vae)")
        ups = self.bottom_up(x)
        L = len(ups)
        groups: list[LatentGroup] = [None] * L  # type: ignore[list-item]
        for i in reversed(range(L)):
            p = self.group_prior(f"layer{i + 1}", {g.name: g.z for g in groups[i + 1:]})  # p(z_i | z_{i+1})
            q = ups[i]
            if i < L - 1:  # one posterior per sampled parent: merged (Eqs. 18-19) or the bottom-up one repeated
                q = precision_merge(q, p) if self.merge else q.broadcast_to(p.batch_shape)
            groups[i] = sample_latent(f"layer{i + 1}", q, p, n_samples if i == L - 1 else None)
        z1 = groups[0].z
        with decoder_precision(z1, decoder_dtype):
            h = self.decoder(z1)
        if h.dtype != z1.dtype:
            h = h.to(z1.dtype)
        return ModelOutput(groups, self.likelihood.decoded(full_precision(h), z1.shape[:-1]),
                           0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError on data that does not fit the model (shape, NaN/inf, likelihood support)."""
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    # -- building blocks ---------------------------------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[DiagonalGaussian]:
        """Deterministic pass: the bottom-up Gaussians N(mu_hat_{q,i}, sigma_hat^2_{q,i}), batch (B,), i = 1..L."""
        out, d = [], x
        for block, head in zip(self.up, self.up_heads):
            d = block(d)  # (B, F_i)
            out.append(head(d))
        return out

    def top_prior(self) -> DiagonalGaussian:
        """p(z_L) = N(0, I)."""
        return self.prior()

    def decode(self, z: torch.Tensor | Mapping[str, torch.Tensor]) -> Distribution:
        """p(x|z_1) for z_1 of shape (*lead, D_1) (or the mapping of groups): batch_shape lead."""
        z1 = z["layer1"] if isinstance(z, Mapping) else z
        h = self.decoder(z1).reshape(*z1.shape[:-1], *self.likelihood.param_shape)
        if h.dtype != z1.dtype:
            h = h.to(z1.dtype)
        return self.likelihood(h)

    # -- the uses half of the contract: the one place of the top-down pass -------------------------------
    @property
    def layout(self) -> LatentLayout:
        """layer1 (bottom) .. layerL, each conditioned on the layer above."""
        L = len(self.layer_dims)
        return LatentLayout(tuple(GroupLayout(f"layer{i + 1}", (d,), parent=f"layer{i + 2}" if i < L - 1 else None)
                                  for i, d in enumerate(self.layer_dims)))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {CONTINUOUS, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR}
        if len(self.layer_dims) > 1:
            caps.add(HIERARCHICAL)
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(z_L) = N(0, I); p(z_i | z_{i+1}) from the top-down net at the value of layer i+1 in ``z``."""
        i = int(name.removeprefix("layer")) - 1
        if i == len(self.layer_dims) - 1:
            return self.top_prior()
        return self.top_down[i](z[f"layer{i + 2}"])

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        """The deterministic top-down pass: q(z_i | z_{i+1}, x) (the precision-weighted merge, Eqs. 18-19) at the
        parent's posterior mean, or at its value in ``given``."""
        ups = self.bottom_up(x)
        L = len(ups)
        qs: dict[str, Distribution] = {}
        z: dict[str, torch.Tensor] = {}
        for i in reversed(range(L)):
            name, q = f"layer{i + 1}", ups[i]
            if self.merge and i < L - 1:
                q = precision_merge(q, self.group_prior(name, z))
            qs[name] = q
            z[name] = given[name] if given is not None and name in given else q.loc
        return dict(reversed(list(qs.items())))

    # -- uses (eval mode) ----------------------------------------------------------------------------------
    def _eval_call(self, fn, *args):
        with eval_mode(self), torch.no_grad():
            return fn(*args)

    def _mean_pass(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[(B, D_i)]: the posterior means of the deterministic top-down pass, layer 1 first."""
        return [q.loc for q in self.posteriors(x).values()]

    @array_io
    def posterior_means(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[(B, D_i)] for i = 1..L: posterior means of the deterministic top-down pass, where each layer's
        prior is evaluated at the parent's posterior mean (for per-layer active units)."""
        return self._eval_call(self._mean_pass, x)

    @array_io
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, sum D_i): ``posterior_means`` concatenated, layer 1 first (``layer_slices``)."""
        return torch.cat(self.posterior_means(x), -1)

    @array_io
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z_1) at z_1 = the layer-1 entry of ``posterior_means``."""
        return self._eval_call(lambda: self.decode(self._mean_pass(x)[0]).mean)

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling from the top: z_L ~ N(0, T^2 I), z_i ~ N(mu_{p,i}, (T sigma_{p,i})^2); returns the
        means of p(x|z_1), shape (n, *data_shape)."""
        from vaekit.models.uses import sample_latents

        return self._eval_call(lambda: self.decode(sample_latents(self, n, temperature)).mean)


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
