"""M1+M2 on some of M1's units (``model.m1_units``): ``active`` picks the units whose posterior mean varies
(s.d. > 0.1, Kingma et al.'s learn_yz_x_ss.py), the run folder records the indices, M2 models those units and
decodes through M1 with the others at 0."""

from __future__ import annotations

import pytest
import torch

from vaekit.config import ConfigError, ModelConfig, apply_overrides, validate
from vaekit.models.registry import build_family
from vaekit.registry import load_preset
from vaekit.runs import load_run, prepare, prepare_family, train_run
from vaekit.training.checkpoint import load_checkpoint, save_checkpoint

M1M2 = ["model.family=m2", "model.objective=m2", "model.warmup_steps=0", "model.free_bits=0", "model.hidden=[16]",
        "model.latent_dim=2", "model.likelihood=gaussian-perpixel", "data.labels=50", "train.steps=20",
        "train.progress=false"]


@pytest.fixture(scope="module")
def m1_dir(tmp_path_factory):
    """An M1 run with 4 units whose posterior means are made, by hand: 0 and 3 varying strongly, 1 constant,
    2 varying with an s.d. far below 0.1."""
    d = tmp_path_factory.mktemp("m1")
    train_run(apply_overrides(load_preset("digits-quick"), ["train.steps=20", "train.progress=false",
                                                             "model.latent_dim=4", "model.hidden=[32]"]), d)
    for name in ("best.safetensors", "last.safetensors"):
        if (d / name).is_file():
            tensors, doc = load_checkpoint(d / name)
            w = tensors["model.posterior.linear.weight"]  # (2D, H): rows 0..D-1 give the means
            w[0] *= 20.0
            w[3] *= 20.0
            w[1] = 0.0
            w[2] *= 1e-4
            save_checkpoint(d / name, tensors, doc)
    return d


def test_active_units_are_the_ones_whose_posterior_mean_varies(m1_dir):
    cfg = apply_overrides(load_preset("digits-quick"), M1M2 + [f"model.m1_run={m1_dir}", "model.m1_units=active"])
    x = prepare(cfg, build=False).splits.train.x
    _, m1, _ = load_run(m1_dir)
    sd = m1.embed(x).std(0)  # (4,) over all training digits
    assert sd[0] > 0.1 and sd[3] > 0.1 and sd[1] < 1e-6 and sd[2] < 0.01
    resolved = prepare_family(cfg, x)
    assert resolved.model.m1_units == [0, 3] and cfg.model.m1_units == "active"  # the given config is unchanged
    plain = apply_overrides(load_preset("digits-quick"), M1M2 + [f"model.m1_run={m1_dir}"])
    assert prepare_family(plain, x) is plain


def test_m1m2_on_the_active_units_trains_records_them_and_decodes_through_m1(m1_dir, tmp_path):
    cfg = apply_overrides(load_preset("digits-quick"), M1M2 + [f"model.m1_run={m1_dir}", "model.m1_units=active"])
    train_run(cfg, tmp_path / "m1m2")
    saved, m, _ = load_run(tmp_path / "m1m2")  # saved: the run folder's config.yaml
    assert saved.model.m1_units == [0, 3] and m.likelihood.data_shape == (2,)
    _, m1, _ = load_run(m1_dir)
    x = torch.rand(5, 1, 8, 8).round()
    assert torch.allclose(m.features(x), m1.embed(x)[:, [0, 3]])
    z, y = torch.randn(5, 2), torch.arange(5) % 10
    whole = m.m1
    m.m1 = None
    feat = m.generate(z, y)  # (5, 2): the mean of p(z1 | y, z2) over the two units
    m.m1 = whole
    full = torch.zeros(5, 4)
    full[:, [0, 3]] = feat
    assert torch.allclose(m.generate(z, y), m1.decode(full).mean)
    assert m.sample(3).shape == (3, 1, 8, 8) and m.predict(x).shape == (5,)


def test_bad_unit_choices_are_config_errors(m1_dir):
    base = load_preset("digits-quick")
    for over, msg in ((["model.m1_units=[0]"], "set model.m1_run"),
                      ([f"model.m1_run={m1_dir}", "model.m1_units=some"], "a list of integers, 'active' or null"),
                      ([f"model.m1_run={m1_dir}", "model.m1_units=[1, 1]"], "distinct")):
        with pytest.raises(ConfigError, match=msg):
            validate(apply_overrides(base, M1M2 + over))
    with pytest.raises(ConfigError, match="beyond the M1 run's 4"):
        build_family(ModelConfig(family="m2", m1_run=str(m1_dir), m1_units=[0, 4]), (1, 8, 8))
    with pytest.raises(ConfigError, match="resolved from the training data"):
        build_family(ModelConfig(family="m2", m1_run=str(m1_dir), m1_units="active"), (1, 8, 8))
