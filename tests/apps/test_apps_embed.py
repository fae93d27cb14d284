"""Embeddings: posterior means / samples / log-variances, and the scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from vaekit.apps import VAEEmbedding, embed


def test_embed_mean_and_logvar_are_the_posterior_parameters(tiny_vae, digits_x):
    q = tiny_vae.encode(digits_x)
    assert torch.allclose(embed(tiny_vae, digits_x, "mean", batch_size=64), q.loc, atol=1e-6)
    assert torch.allclose(embed(tiny_vae, digits_x, "logvar"), 2 * q.log_scale, atol=1e-6)


def test_embed_samples_follow_the_posterior(tiny_vae, digits_x):
    with torch.no_grad():
        q = tiny_vae.encode(digits_x)
    z = embed(tiny_vae, digits_x, "sample", seed=3)
    assert torch.equal(z, embed(tiny_vae, digits_x, "sample", seed=3))  # seeded
    u = ((z - q.loc) / q.scale).flatten()  # 900 standard normal draws if z ~ q: s.e. 1/30 (mean), 1/sqrt(1800) (std)
    assert abs(float(u.mean())) < 4 / 30 and abs(float(u.std()) - 1) < 4 / 1800**0.5


def test_a_ladder_vae_gives_means_samples_and_log_variances_of_every_layer(digits_x):
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    torch.manual_seed(0)
    ladder = build_model(ModelConfig(family="ladder", latent_dims=[3, 2], hidden=[8, 8]), (1, 8, 8)).eval()
    assert torch.allclose(embed(ladder, digits_x[:5]), ladder.embed(digits_x[:5]))
    qs = ladder.posteriors(digits_x[:5])  # layer 1 (3 dims) first, as embed's means
    assert torch.allclose(embed(ladder, digits_x[:5], "logvar"),
                          torch.cat([2 * qs["layer1"].scale.log(), 2 * qs["layer2"].scale.log()], -1), atol=1e-6)
    assert embed(ladder, digits_x[:5], "sample", seed=0).shape == (5, 5)


def test_embed_bad_input(tiny_vae, digits_x):
    with pytest.raises(ValueError, match="unknown embedding 'median'; choose from mean, sample, logvar"):
        embed(tiny_vae, digits_x, "median")
    with pytest.raises(ValueError, match=r"does not fit a model built for \(1, 8, 8\)"):
        embed(tiny_vae, digits_x.reshape(-1, 64))


@pytest.fixture(scope="module")
def digits_xy():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[:400] / 16.0).astype(np.float32), y[:400]


def test_estimator_transform_is_the_posterior_mean_and_inverse_the_decoder_mean(digits_xy):
    X, _ = digits_xy
    est = VAEEmbedding(latent_dim=4, hidden=(32,), steps=40, data_shape=(1, 8, 8))
    Z = est.fit_transform(X)
    assert Z.shape == (400, 4) and Z.dtype == np.float32
    q = est.model_.encode(torch.tensor(X).reshape(-1, 1, 8, 8))
    np.testing.assert_allclose(Z, q.loc.detach().numpy(), atol=1e-6)
    Xr = est.inverse_transform(Z[:5])
    want = est.model_.decode(torch.tensor(Z[:5])).mean.detach().reshape(5, 64).numpy()
    np.testing.assert_allclose(Xr, want, atol=1e-6)
    with pytest.raises(ValueError, match=r"X has 63 features, but VAEEmbedding is expecting 64 features"):
        est.transform(X[:, :63])
    with pytest.raises(ValueError, match=r"Z must have shape \(n_samples, 4\)"):
        est.inverse_transform(Z[:, :3])
    with pytest.raises(NotFittedError):
        VAEEmbedding().transform(X)


def test_estimator_in_a_pipeline_with_clone(digits_xy):
    X, y = digits_xy
    pipe = Pipeline([("vae", VAEEmbedding(latent_dim=4, hidden=(32,), steps=60, lr=3e-3)),
                     ("clf", LogisticRegression(max_iter=500))])
    twin = clone(pipe)
    assert twin.get_params()["vae__latent_dim"] == 4 and not hasattr(twin.named_steps["vae"], "model_")
    pipe.fit(X, y)
    twin.fit(X, y)
    # the same seed gives the same model: a cloned pipeline reproduces the fitted one exactly
    np.testing.assert_array_equal(pipe.named_steps["vae"].transform(X), twin.named_steps["vae"].transform(X))
    assert pipe.score(X, y) > 0.3  # 10 classes: chance is 0.1
