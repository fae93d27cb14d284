"""Binarisation (static / dynamic) and uniform dequantisation."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.data import load_data, make_batch_transform
from vaekit.data.transforms import dequantize


def _grey(n: int = 400, d: int = 50, seed: int = 123) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(n, d)  # (N, D) probabilities (seed differs from the samplers: u == p would give all 0s)


def test_dynamic_binarization_fresh_sample_per_call():
    x = _grey()
    fn = make_batch_transform("dynamic", False, 256)
    g = torch.Generator().manual_seed(0)
    a, b = fn(x, g), fn(x, g)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, b)
    # same seed -> same sample
    assert torch.equal(a, fn(x, torch.Generator().manual_seed(0)))
    # E[x_bin] = x: the mean over N*D values matches within 5 standard errors
    se = math.sqrt(float((x * (1 - x)).sum())) / x.numel()
    assert abs(float(a.mean() - x.mean())) < 5 * se
    # per-pixel frequency over many calls follows the grey level
    p = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]])
    freq = torch.stack([fn(p, g) for _ in range(4000)]).mean(0)
    se_p = (p * (1 - p) / 4000).sqrt()
    assert bool(((freq - p).abs() <= 5 * se_p + 1e-12).all()), freq


def test_no_transform_when_nothing_to_do():
    assert make_batch_transform("none", False, 256) is None
    assert make_batch_transform("static", False, 2) is None


def test_bad_options():
    with pytest.raises(ValueError, match="binarize must be one of none, static, dynamic; got 'sometimes'"):
        make_batch_transform("sometimes", False, 256)
    with pytest.raises(ValueError, match="exclude each other"):
        make_batch_transform("dynamic", True, 256)
    with pytest.raises(ValueError, match="real-valued"):
        make_batch_transform("none", True, None)


@pytest.mark.parametrize("n", [256, 2])
def test_dequantize_bins(n):
    k = torch.arange(n, dtype=torch.float32).repeat(2000)  # every level many times
    x = k / (n - 1)
    fn = make_batch_transform("none", True, n)
    g = torch.Generator().manual_seed(1)
    xd = fn(x, g)
    assert float(xd.min()) >= 0.0 and float(xd.max()) < 1.0
    assert torch.equal(torch.floor(xd * n), k)  # x_deq stays in its own bin [k/n, (k+1)/n)
    # u = n x_deq - k ~ U[0, 1): mean 1/2 and variance 1/12 within 5 standard errors
    u = (xd * n - k).double()
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / u.numel())
    assert not torch.equal(xd, fn(x, g))


def test_dequantize_float_rounding_guard(monkeypatch):
    """Even the largest float32 below 1 for u must not push k + u into the next bin."""
    x = torch.arange(256, dtype=torch.float32) / 255
    u_max = 1 - 2.0**-24  # largest float32 below 1, a value torch.rand can return

    def rand(shape, generator=None, **kw):
        return torch.full(shape, u_max, **kw)

    monkeypatch.setattr(torch, "rand", rand)
    assert float(torch.tensor(200.0) + u_max) == 201.0  # the float32 rounding the guard protects against
    xd = dequantize(x, 256)
    assert torch.equal(torch.floor(xd * 256), torch.arange(256, dtype=torch.float32))
    assert float(xd.max()) < 1.0


def test_static_binarization_on_load():
    a = load_data("digits", binarize="static", seed=3)
    b = load_data("digits", binarize="static", seed=3)
    c = load_data("digits", binarize="static", seed=4)
    grey = load_data("digits", seed=3)
    assert a.n_levels == 2 and a.binarize == "static"
    for split in ("train", "val", "test"):
        xa, xb = getattr(a, split).x, getattr(b, split).x
        assert torch.equal(xa, xb)
        assert set(xa.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(getattr(a, split).y, getattr(grey, split).y)
    assert not torch.equal(a.train.x, c.train.x)
    p = grey.train.x
    se = math.sqrt(float((p * (1 - p)).sum())) / p.numel()
    assert abs(float(a.train.x.mean() - p.mean())) < 5 * se
    # pixels that are 0 or 1 in the grey data stay put
    assert bool((a.train.x[p == 0] == 0).all()) and bool((a.train.x[p == 1] == 1).all())


def test_dynamic_binarization_leaves_data():
    d = load_data("digits", binarize="dynamic")
    grey = load_data("digits")
    assert d.binarize == "dynamic" and d.n_levels == 2
    assert torch.equal(d.train.x, grey.train.x)


def test_binarize_needs_unit_interval(tmp_path):
    import numpy as np

    np.save(tmp_path / "r.npy", np.linspace(-3, 3, 200).reshape(100, 2))
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
        load_data("arrays", path=str(tmp_path / "r.npy"), binarize="static")
    with pytest.raises(ValueError, match="binarize must be one of"):
        load_data("digits", binarize="yes")
