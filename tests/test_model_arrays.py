"""A model's user-facing methods take what ``vaekit.fit`` takes (numpy arrays, tensors of any float dtype) and give
back what they were given: numpy in -> numpy out, a tensor in -> a tensor of its dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.config import config_from_dict
from vaekit.registry import build_model

SHAPE = (6,)
FAMILIES = {
    "vae": {"latent_dim": 2, "hidden": [8], "likelihood": "sigma-vae"},
    "ladder": {"family": "ladder", "latent_dims": [3, 2], "hidden": [8, 8], "likelihood": "sigma-vae"},
    "m2": {"family": "m2", "objective": "m2", "n_classes": 3, "latent_dim": 2, "hidden": [8]},
    "vqvae": {"family": "vqvae", "objective": "vq", "codebook_size": 4, "code_dim": 2, "hidden": [8]},
}


def _model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config_from_dict({"model": FAMILIES[family]}).model, SHAPE).eval()


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, *SHAPE)).astype(np.float32)  # in [0, 1]: every likelihood's support


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("method", ["embed", "reconstruct"])
def test_numpy_in_numpy_out_and_tensors_keep_their_dtype(family, method):
    model, x = _model(family), _x()
    ref = getattr(model, method)(torch.from_numpy(x))  # the model's own dtype: the fast path
    for dtype in (np.float32, np.float64):
        out = getattr(model, method)(x.astype(dtype))
        assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == tuple(ref.shape)
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)
    out = getattr(model, method)(torch.from_numpy(x).double())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out.float(), ref, rtol=1e-5, atol=1e-6)


def test_m2_predicts_and_scores_numpy():
    model, x = _model("m2"), _x()
    pred = model.predict(x)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, model.predict(torch.from_numpy(x)).numpy())
    logits = model.class_logits(x.astype(np.float64))
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float64 and logits.shape == (5, 3)
    assert model.predict(torch.from_numpy(x).double()).dtype == torch.int64
    style = model.style(x, np.array([0, 1, 2, 0, 1]))
    assert isinstance(style, np.ndarray) and style.shape == (5, 2)
    gen = model.generate(np.zeros((2, 2)), np.array([0, 2]))
    assert isinstance(gen, np.ndarray) and gen.dtype == np.float64 and gen.shape == (2, *SHAPE)


def test_encode_takes_numpy_and_returns_the_posterior():
    model, x = _model("vae"), _x()
    q = model.encode(x.astype(np.float64))
    assert isinstance(q, torch.distributions.Distribution) and q.mean.dtype == torch.float32
    torch.testing.assert_close(q.mean, model.encode(torch.from_numpy(x)).mean)


def test_the_fast_path_keeps_the_tensor_and_its_gradient():
    model, x = _model("vae"), torch.from_numpy(_x()).requires_grad_()
    model.encode(x).mean.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    z = model.embed(x)
    assert z.dtype == torch.float32 and z.device == x.device


def test_ladder_posterior_means_come_back_as_numpy():
    means = _model("ladder").posterior_means(_x())
    assert [type(m) for m in means] == [np.ndarray, np.ndarray] and [m.shape for m in means] == [(5, 3), (5, 2)]


def test_what_is_not_numbers_is_refused_clearly():
    model = _model("vae")
    with pytest.raises(TypeError, match="x must be a numpy array or tensor of numbers, got array of dtype <U1"):
        model.embed(np.array([["a"] * 6]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_move_to_the_models_device_and_results_come_back_to_the_callers():
    x = _x()
    cpu_model = _model("vae")
    ref = cpu_model.embed(torch.from_numpy(x))
    on_gpu = cpu_model.embed(torch.from_numpy(x).cuda().double())  # a GPU tensor into a CPU model
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float64
    gpu_model = _model("m2").cuda()
    assert gpu_model.embed(torch.from_numpy(x)).device.type == "cpu"  # a CPU tensor into a GPU model
    assert isinstance(gpu_model.predict(x), np.ndarray)
    torch.testing.assert_close(on_gpu.cpu().float(), ref)
