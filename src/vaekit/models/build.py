"""Build a VAE from explicit keyword arguments (what configs and the CLI name)."""

from __future__ import annotations

from typing import Any, Sequence

from vaekit.likelihoods import build_likelihood
from vaekit.models.vae import VAE
from vaekit.nn import MLP, ConvDecoder, ConvEncoder, FlattenInput
from vaekit.posteriors import build_posterior
from vaekit.priors import build_prior

__all__ = ["build_vae"]


def build_vae(
    data_shape: Sequence[int],
    *,
    arch: str = "mlp",
    latent_dim: int = 20,
    hidden: Sequence[int] = (400,),
    act: str = "relu",
    conv_channels: Sequence[int] = (32, 64),
    likelihood: str = "bernoulli",
    likelihood_kwargs: dict[str, Any] | None = None,
    posterior: str = "gaussian",
    posterior_kwargs: dict[str, Any] | None = None,
    dropout: float = 0.0,
    conv_out: str = "conv3x3",
    prior: str = "standard",
    prior_kwargs: dict[str, Any] | None = None,
) -> VAE:
    """A VAE for data of shape ``data_shape`` ((D,) vectors or (C, H, W) images).

    mlp: encoder in -> hidden... (activated) -> posterior head; decoder latent -> reversed(hidden) -> k * in;
        ``hidden=[]`` gives affine maps (the linear VAE of Lucas et al. 2019, whose marginal is probabilistic PCA's).
    conv: stride-2 conv encoder with ``conv_channels`` then a hidden[-1] linear layer; mirrored decoder, whose
        output layer ``conv_out`` is a 3x3 conv ("conv3x3") or the last transposed conv ("deconv", as in
        Higgins et al. 2017 and disentanglement_lib).
    prior: the prior p(z) by name (``vaekit.priors.registry``) with ``prior_kwargs``.
    dropout: rate after each hidden layer of the mlp decoder, a regulariser of p(x|z) against overfitting small
        fixed data such as binarized MNIST (the encoder is left deterministic).
    """
    data_shape = tuple(int(s) for s in data_shape)
    hidden = [int(h) for h in hidden]
    if any(h < 1 for h in hidden):
        raise ValueError(f"model.hidden widths must be positive integers, got {hidden}")
    if latent_dim < 1:
        raise ValueError(f"model.latent_dim must be at least 1, got {latent_dim}")
    lik = build_likelihood(likelihood, data_shape, **(likelihood_kwargs or {}))
    n_in = 1
    for s in data_shape:
        n_in *= s
    n_out = lik.params_per_channel * n_in
    if arch != "conv" and conv_out != "conv3x3":
        raise ValueError(f"model.conv_out applies to model.arch=conv; remove it, or set model.conv_out=conv3x3 (the "
                         f"default) to override a preset's (got arch={arch!r}, conv_out={conv_out!r})")
    if arch == "mlp" and not hidden:  # affine encoder and decoder: the linear VAE (its marginal is pPCA's)
        encoder = FlattenInput(data_shape)
        decoder = MLP(latent_dim, [], n_out)
        features = n_in
    elif arch == "mlp":
        encoder = MLP(data_shape, hidden[:-1], hidden[-1], act=act, final_act=True)
        decoder = MLP(latent_dim, hidden[::-1], n_out, act=act, dropout=dropout)
        features = hidden[-1]
    elif arch == "conv":
        if dropout:
            raise ValueError("model.dropout applies to the mlp decoder only; use model.arch=mlp or model.dropout=0")
        if len(data_shape) != 3:
            raise ValueError(f"model.arch=conv needs image data (C, H, W), got shape {data_shape}; use model.arch=mlp")
        if not hidden:
            raise ValueError("model.arch=conv needs model.hidden with at least one width (the dense layer)")
        encoder = ConvEncoder(data_shape, conv_channels, hidden[-1], act=act)
        features = hidden[-1]
        decoder = ConvDecoder(latent_dim, lik.param_shape, conv_channels, hidden=hidden[-1], act=act,
                              out_layer=conv_out)
    else:
        raise ValueError(f"unknown model.arch {arch!r}; choose 'mlp' or 'conv'")
    post = build_posterior(posterior, features, latent_dim, **(posterior_kwargs or {}))
    return VAE(encoder, post, decoder, lik, build_prior(prior, latent_dim, data_shape, **(prior_kwargs or {})))
