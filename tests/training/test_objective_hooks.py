"""The objective's hooks, declared on the ``Objective`` base class, as the trainer uses them: joint parameters,
own optimizers, validation metrics and the metric that picks 'best'; a plain function is still an objective."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaekit.config import TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO, FactorVAE, Objective, ObjectiveResult
from vaekit.training import Trainer, load_checkpoint


def _data(n=64, d=12, seed=0):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _model():
    torch.manual_seed(0)
    return build_vae((12,), latent_dim=3, hidden=(16,))


def test_the_base_class_declares_every_hook_with_a_default():
    obj = ELBO()
    assert obj.selection == "val_elbo" and obj.joint_parameters() == [] and obj.optimizers() == {}
    assert obj.validation_metrics(_model(), _data()) == {}
    assert obj.auxiliary_step(_model(), _data(), None, 0) == {}


def test_joint_parameters_leave_out_what_the_objectives_own_optimizers_update():
    fv = FactorVAE(latent_dim=3, hidden=(4,))
    assert len(list(fv.parameters())) == 4 and fv.joint_parameters() == []  # the discriminator has its own Adam
    tr = Trainer(_model(), fv, _data(), None, settings=TrainConfig(steps=1, progress=False), run_dir=None)
    disc = {id(p) for p in fv.discriminator.parameters()}
    assert not disc & {id(p) for g in tr.opt.param_groups for p in g["params"]}
    assert tr.aux_opts == {"discriminator": fv.disc_opt}


class Scored(Objective):
    """An ELBO with a learned offset (trained jointly) and a validation score that only gets worse, which picks
    the checkpoint."""

    selection = "val_score"

    def __init__(self) -> None:
        super().__init__()
        self.elbo = ELBO()
        self.offset = nn.Parameter(torch.tensor(1.0))
        self.validations = 0

    def forward(self, model, x, step=None, check=True) -> ObjectiveResult:
        res = self.elbo(model, x, step=step, check=check)
        res.loss = res.loss + self.offset.square()
        return res

    def validation_metrics(self, model, val_x):
        assert not model.training and not torch.is_grad_enabled()
        self.validations += 1
        return {"val_score": -float(self.validations)}


def test_the_trainer_uses_the_objectives_validation_metrics_and_selection(tmp_path):
    obj = Scored()
    s = TrainConfig(steps=12, batch_size=16, lr=0.05, val_every=4, progress=False)
    summary = Trainer(_model(), obj, _data(), _data(seed=1), settings=s, run_dir=tmp_path).fit()
    assert float(obj.offset.detach()) < 1.0  # the joint parameter was trained
    assert summary["best_val_score"] == -1.0 and summary["best_step"] == 4 and summary["best_val_elbo"] is None
    _, doc = load_checkpoint(tmp_path / "best.safetensors")
    assert doc["step"] == 4 and doc["metrics"]["val_score"] == -1.0


def test_a_plain_function_is_an_objective_and_a_module_that_is_not_one_is_refused():
    elbo, calls = ELBO(), []

    def fn(model, x, step=None, check=True):
        calls.append(step)
        return elbo(model, x, step=step, check=check)

    tr = Trainer(_model(), fn, _data(), _data(seed=1), settings=TrainConfig(steps=3, progress=False), run_dir=None)
    assert tr.fit()["steps"] == 3 and calls == [0, 1, 2]

    class Bare(nn.Module):
        def forward(self, model, x, step=None, check=True):
            return elbo(model, x, step=step, check=check)

    with pytest.raises(TypeError, match="derive it from Objective"):
        Trainer(_model(), Bare(), _data(), None, settings=TrainConfig(steps=1, progress=False), run_dir=None)
