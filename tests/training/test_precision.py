"""Mixed precision: bf16 autocast on CPU trains with float32 densities; fp16 on CPU and unknown names are refused."""

import pytest
import torch

from vaekit.config import TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO, elbo_terms
from vaekit.training import Trainer


def _model():
    torch.manual_seed(0)
    return build_vae((12,), latent_dim=3, hidden=(16,))


def test_bf16_autocast_keeps_densities_and_kl_in_float32_and_is_close_to_fp32():
    m = _model()
    x = (torch.rand(64, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    torch.manual_seed(2)
    with torch.no_grad():
        ref = elbo_terms(m, x)
    torch.manual_seed(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = elbo_terms(m, x)
        assert m.decoder(torch.zeros(1, 3)).dtype == torch.bfloat16  # the nets do run in bf16
    assert low.log_px_z.dtype == low.kl.dtype == torch.float32
    assert float((low.elbo - ref.elbo).abs().max()) < 0.5  # bf16 nets: about 3 significant digits
    assert not torch.equal(low.elbo, ref.elbo)


def test_bf16_training_runs_and_learns(device):
    x = (torch.rand(128, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float().to(device)
    losses = []
    s = TrainConfig(steps=30, batch_size=32, lr=1e-2, progress=False, precision="bf16")
    tr = Trainer(_model().to(device), ELBO(), x, None, settings=s, run_dir=None,
                 callbacks=[lambda t, r: losses.append(r["loss"])])
    tr.fit()
    assert tr.state.bad_total == 0 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())  # master weights stay float32


@pytest.mark.parametrize("precision,msg", [("fp16", "needs a GPU"), ("half", "unknown train.precision")])
def test_unsupported_precision_is_a_clear_error(precision, msg):
    with pytest.raises(ValueError, match=msg):
        Trainer(_model(), ELBO(), torch.rand(8, 12), None,
                settings=TrainConfig(steps=1, progress=False, precision=precision), run_dir=None)
