"""NVAE's spectral regularisation (model.spectral_reg of the hvae family): power iteration against the exact
largest singular value and its gradient (torch.linalg.svd), and the trainer adding the model's penalty."""

from __future__ import annotations

import torch

from vaekit.config import ModelConfig, TrainConfig
from vaekit.models.registry import build_family
from vaekit.nn.spectral import SpectralNorms
from vaekit.objectives import ELBO
from vaekit.training.trainer import Trainer

TINY = dict(family="hvae", width=8, enc_blocks=[1, 1], dec_groups=[1, 2], latent_channels=2)
IMAGE = (1, 6, 6)


def _images(b: int = 16) -> torch.Tensor:
    return (torch.rand(b, *IMAGE, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def test_power_iteration_gives_the_largest_singular_value_and_its_gradient():
    torch.manual_seed(0)
    ws = [torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True),
          torch.randn(5, 7, dtype=torch.float64, requires_grad=True)]
    sn = SpectralNorms([w.shape for w in ws]).double()
    s = sn(ws, iterations=200)
    for w, si in zip(ws, s):
        torch.testing.assert_close(si, torch.linalg.matrix_norm(w.detach().flatten(1), ord=2))
    s.sum().backward()
    for w in ws:  # d sigma_max / dW = u_1 v_1^T
        u, _, vh = torch.linalg.svd(w.detach().flatten(1))
        torch.testing.assert_close(w.grad.flatten(1), torch.outer(u[:, 0], vh[0]))
    u0 = sn.u0.clone()
    sn(ws, iterations=1)  # the vectors persist between calls (converged: unchanged up to rounding)
    torch.testing.assert_close(sn.u0, u0)


def test_the_option_is_off_by_default_and_the_penalty_is_lambda_times_the_sum():
    torch.manual_seed(0)
    plain = build_family(ModelConfig(**TINY), IMAGE)
    torch.manual_seed(0)
    reg = build_family(ModelConfig(**TINY, spectral_reg=0.5), IMAGE)
    assert plain.training_penalty() is None and not any(k.startswith("spectral.") for k in plain.state_dict())
    assert {k for k in reg.state_dict() if not k.startswith("spectral.")} == set(plain.state_dict())
    assert "spectral.u0" in reg.state_dict()  # checkpointed with the weights: a resume continues the iteration
    for _ in range(300):
        pen = reg.training_penalty()
    exact = sum(torch.linalg.matrix_norm(w.detach().flatten(1), ord=2) for w in reg._conv_weights())
    torch.testing.assert_close(pen.detach(), 0.5 * exact, rtol=1e-4, atol=1e-5)


def test_the_trainer_adds_the_penalty_and_it_shrinks_the_singular_values():
    def run(lam: float) -> tuple[Trainer, float]:
        torch.manual_seed(0)
        model = build_family(ModelConfig(**TINY, spectral_reg=lam), IMAGE)
        s = TrainConfig(steps=20, batch_size=8, lr=1e-2, progress=False)
        tr = Trainer(model, ELBO(), _images(), None, settings=s, run_dir=None, seed=0)
        out = tr.train_step(_images(8))
        assert ("penalty" in out["stats"]) == (lam > 0)
        tr.fit()
        return tr, sum(float(torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)) for w in model._conv_weights())

    _, plain = run(0.0)
    _, strong = run(10.0)
    assert strong < 0.8 * plain
