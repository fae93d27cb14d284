"""Embeddings for dimensionality reduction: posterior means (or samples, log-variances) of q(z|x).

The encoder of a VAE maps x to q(z|x) = N(mu(x), diag sigma^2(x)) (Kingma & Welling 2014, Sec. 2.4); the
posterior mean mu(x) is the usual low-dimensional representation, and the decoder mean E[x|z] maps a point of
latent space back to data space (``inverse_transform``). ``VAEEmbedding`` wraps this as a scikit-learn
transformer: it trains a VAE in ``fit`` (through vaekit's one training loop) or loads a trained run folder.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from vaekit.apps._common import require_gaussian_posterior, require_vae
from vaekit.utils import as_data_tensor, batches, evaluation_context, model_device, model_dtype, to_tensor

__all__ = ["EMBED_KINDS", "embed", "VAEEmbedding"]

EMBED_KINDS = ("mean", "sample", "logvar")


def embed(model: nn.Module, x: Any, what: str = "mean", batch_size: int = 500, seed: int | None = None) -> torch.Tensor:
    """(N, D) embedding of ``x`` (N, *data_shape).

    what: "mean" = E_q[z|x] (``model.embed``: mu for a Gaussian posterior, a 64-sample mean for a flow);
        "sample" = one draw z ~ q(z|x) (seeded by ``seed``); "logvar" = log sigma^2(x) of a Gaussian posterior.
    """
    if what not in EMBED_KINDS:
        raise ValueError(f"unknown embedding {what!r}; choose from {', '.join(EMBED_KINDS)}")
    x = as_data_tensor(x)
    model.check_input(x)
    if what != "mean":
        require_vae(model, f"embedding {what}s")
    out = []
    with evaluation_context(model, seed):
        for xb in batches(x, batch_size, model_device(model)):
            if what == "mean":
                out.append(model.embed(xb).cpu())  # (B, D)
            elif what == "sample":
                z, _ = model.encode(xb).rsample_and_log_prob()  # (B, D)
                out.append(z.cpu())
            else:
                out.append((2.0 * require_gaussian_posterior(model, xb, "embedding log-variances").log_scale).cpu())
    return torch.cat(out)


class VAEEmbedding(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: X (n_samples, n_features) -> posterior means (n_samples, latent_dim).

    run_dir: a trained run folder; ``fit`` then loads its ``checkpoint`` instead of training (the run's data
        shape must have ``n_features`` elements). Otherwise ``fit`` trains a new VAE on X:
    latent_dim, hidden, arch, likelihood: the model (``vaekit.registry.build_model``); the default Bernoulli
        likelihood needs X in [0, 1] (use "sigma-vae" for real-valued features).
    data_shape: per-example shape X's rows are reshaped to (e.g. (1, 28, 28) for ``arch="conv"``); None: (n_features,).
    steps, batch_size, lr, seed, threads: training settings (Adam, constant learning rate).
    inverse_transform(Z) returns the decoder mean E[x|z] flattened to (n_samples, n_features).
    """

    def __init__(self, latent_dim: int = 10, hidden: Sequence[int] = (256,), arch: str = "mlp",
                 likelihood: str = "bernoulli", data_shape: Sequence[int] | None = None, steps: int = 2000,
                 batch_size: int = 128, lr: float = 1e-3, seed: int = 0, threads: int | None = None,
                 run_dir: str | None = None, checkpoint: str = "best") -> None:
        self.latent_dim, self.hidden, self.arch, self.likelihood = latent_dim, hidden, arch, likelihood
        self.data_shape, self.steps, self.batch_size, self.lr = data_shape, steps, batch_size, lr
        self.seed, self.threads, self.run_dir, self.checkpoint = seed, threads, run_dir, checkpoint

    # -- helpers -------------------------------------------------------------------------------------------
    def _as_data(self, X: Any, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        x = to_tensor(X, dtype)
        if x.dim() != 2:
            raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {tuple(x.shape)}")
        n_features = math.prod(shape)
        if x.shape[1] != n_features:
            raise ValueError(f"X has {x.shape[1]} features but this VAEEmbedding expects {n_features} "
                             f"(data of shape {tuple(shape)}); pass data with that many columns")
        return x.reshape(x.shape[0], *shape)

    def fit(self, X: Any, y: Any = None) -> "VAEEmbedding":
        """Train a VAE on X (or load ``run_dir``); returns self."""
        if self.run_dir is not None:
            from vaekit.run import load_run

            _, model, doc = load_run(self.run_dir, self.checkpoint)
            shape = tuple(doc["data"]["shape"])
            model.check_input(self._as_data(X, shape, model_dtype(model)))
        else:
            model, shape = self._train(X)
        self.model_, self.data_shape_ = model.eval(), shape
        self.n_features_in_ = math.prod(shape)
        return self

    def _train(self, X: Any) -> tuple[nn.Module, tuple[int, ...]]:
        from vaekit.config import ModelConfig, TrainConfig
        from vaekit.registry import build_model, build_objective
        from vaekit.training.trainer import Trainer

        x = to_tensor(X, torch.float32)
        if x.dim() != 2:
            raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {tuple(x.shape)}")
        shape = tuple(int(s) for s in self.data_shape) if self.data_shape is not None else (x.shape[1],)
        x = self._as_data(x, shape, torch.float32)
        cfg = ModelConfig(latent_dim=int(self.latent_dim), hidden=[int(h) for h in self.hidden], arch=self.arch,
                          likelihood=self.likelihood)
        torch.manual_seed(int(self.seed))
        model = build_model(cfg, shape)
        model.check_input(x)
        settings = TrainConfig(steps=int(self.steps), batch_size=int(self.batch_size), lr=float(self.lr),
                               threads=self.threads, progress=False, val_every=int(self.steps))
        with tempfile.TemporaryDirectory(prefix="vaekit-embed-") as tmp:  # the trainer's checkpoints: discarded
            Trainer(model, build_objective(cfg), x, None, settings=settings, run_dir=tmp, seed=int(self.seed)).fit()
        return model, shape

    # -- transformer API -----------------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E_q[z|x], (n_samples, latent_dim) float32."""
        check_is_fitted(self, "model_")
        x = self._as_data(X, self.data_shape_, model_dtype(self.model_))
        return embed(self.model_, x, "mean").numpy().astype(np.float32)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decoder means E[x|z], (n_samples, n_features) float32."""
        check_is_fitted(self, "model_")
        z = to_tensor(Z, model_dtype(self.model_))
        d = self.model_.latent_dim
        if z.dim() != 2 or z.shape[1] != d:
            raise ValueError(f"Z must have shape (n_samples, {d}) (the latent dimension), got {tuple(z.shape)}")
        with evaluation_context(self.model_):
            xs = [self.model_.decode(zb).mean.cpu() for zb in batches(z, 500, model_device(self.model_))]
        return torch.cat(xs).reshape(z.shape[0], -1).numpy().astype(np.float32)
