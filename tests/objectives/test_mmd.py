"""MMD estimators and the MMD-regularised autoencoders (``vaekit.objectives.mmd``) against direct computations:
a double loop, the closed-form MMD^2 of two Gaussians under an RBF kernel, and the loss by hand."""

import math

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.model_config import validate_model
from vaekit.models import build_vae
from vaekit.objectives.bounds import single_group_terms
from vaekit.objectives.mmd import kernel_matrix, mmd2
from vaekit.options import ConfigError
from vaekit.registry import build_objective


def _k(a, b, kernel, s, scales):
    d2 = float(((a - b) ** 2).sum())
    if kernel == "rbf":
        return sum(math.exp(-d2 / (2 * s * f)) for f in scales)
    c = [2 * len(a) * s * f for f in scales]
    return sum(ci / (ci + d2) for ci in c)


@pytest.mark.parametrize("kernel,scales", [("rbf", (1.0,)), ("imq", (0.5, 1.0, 2.0)), ("rbf", (0.2, 5.0))])
def test_mmd_estimates_match_a_double_loop(kernel, scales):
    g = torch.Generator().manual_seed(0)
    z, zp = torch.randn(5, 3, generator=g, dtype=torch.float64), 1.5 + torch.randn(4, 3, generator=g, dtype=torch.float64)
    a, b = z.numpy(), zp.numpy()
    kzz = np.array([[_k(u, v, kernel, 0.7, scales) for v in a] for u in a])
    kpp = np.array([[_k(u, v, kernel, 0.7, scales) for v in b] for u in b])
    kzp = np.array([[_k(u, v, kernel, 0.7, scales) for v in b] for u in a])
    np.testing.assert_allclose(kernel_matrix(z, zp, kernel, 0.7, scales).numpy(), kzp, rtol=1e-10)
    u = ((kzz.sum() - np.trace(kzz)) / 20 + (kpp.sum() - np.trace(kpp)) / 12 - 2 * kzp.mean())
    v = kzz.mean() + kpp.mean() - 2 * kzp.mean()
    assert float(mmd2(z, zp, kernel, 0.7, scales, unbiased=True)) == pytest.approx(u, rel=1e-10)
    assert float(mmd2(z, zp, kernel, 0.7, scales, unbiased=False)) == pytest.approx(v, rel=1e-10)


def test_the_u_statistic_is_unbiased_and_the_v_statistic_is_not():
    """Two Gaussians N(0, I) and N(m, s^2 I) in D = 2 under the RBF kernel (bandwidth h^2): E k between
    x, y with x - y ~ N(d, v I) is (h^2 / (h^2 + v))^(D/2) exp(-|d|^2 / (2 (h^2 + v))). 1,500 batches of 8."""
    h2, s2, d = 1.3, 0.5, torch.tensor([0.8, -0.4], dtype=torch.float64)

    def ek(v, dd):
        return (h2 / (h2 + v)) ** 1.0 * math.exp(-float(dd @ dd) / (2 * (h2 + v)))

    exact = ek(2.0, 0 * d) + ek(2 * s2, 0 * d) - 2 * ek(1.0 + s2, d)
    g = torch.Generator().manual_seed(1)
    n, b = 1500, 8
    z = torch.randn(n, b, 2, generator=g, dtype=torch.float64)
    zp = d + math.sqrt(s2) * torch.randn(n, b, 2, generator=g, dtype=torch.float64)
    u = torch.stack([mmd2(z[i], zp[i], "rbf", h2) for i in range(n)])
    v = torch.stack([mmd2(z[i], zp[i], "rbf", h2, unbiased=False) for i in range(n)])
    se = float(u.std()) / math.sqrt(n)
    assert abs(float(u.mean()) - exact) < 4 * se
    assert float(v.mean()) - exact > 10 * se  # the diagonal k(z, z) = 1 terms bias it up by about 2 / b


@pytest.mark.parametrize("objective,options,kl_w,mmd_w", [
    ("info-vae-mmd", {"alpha": 0.0, "lam": 1000.0}, 1.0, 999.0),
    ("info-vae-mmd", {"alpha": 0.5, "lam": 20.0, "kernel": "imq"}, 0.5, 19.5),
    ("wae-mmd", {"lam": 10.0}, 0.0, 10.0),
])
def test_mmd_autoencoder_loss_by_hand(objective, options, kl_w, mmd_w):
    torch.manual_seed(0)
    m = build_vae((10,), hidden=[8], latent_dim=3).double()
    x = torch.bernoulli(torch.full((6, 10), 0.3), generator=torch.Generator().manual_seed(1)).double()
    obj = build_objective(ModelConfig(objective=objective, objective_options=options))
    torch.manual_seed(4)
    r = obj(m, x)
    torch.manual_seed(4)
    g, log_px_z, kl = single_group_terms(m, x, "test")
    zp = torch.randn(6, 3, dtype=torch.float64)  # the prior N(0, I), drawn after the codes
    mmd = mmd2(g.z, zp, obj.kernel, obj.scale, obj.scales, obj.unbiased)
    torch.testing.assert_close(r.loss, (kl_w * kl - log_px_z).mean() + mmd_w * mmd)
    torch.testing.assert_close(r.terms["mmd"], mmd.expand(6))
    r.loss.backward()  # every parameter of the model gets a gradient
    assert all(p.grad is not None for p in m.parameters())


def test_mmd_objectives_need_a_single_vector_model_and_valid_weights():
    with pytest.raises(ConfigError, match="needs a single-vector model") as e:
        validate_model(ModelConfig(family="ladder", objective="wae-mmd"))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="alpha \\+ lam - 1"):
        validate_model(ModelConfig(objective="info-vae-mmd", objective_options={"alpha": 0.0, "lam": 0.5}))
