"""Chunked logsumexp, bits/dim, active units, KL per dimension, evaluate(), bf16/fp16 paths and error messages."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaekit.models.contract import ModelOutput
from ppca_vae import DT, PPCA

from vaekit.evaluation import (
    active_units,
    auto_chunk_size,
    bits_per_dim,
    cpu_supports_fp16,
    decoder_dtype_for,
    elbo_dataset,
    estimate_log_likelihood,
    evaluate,
    iw_log_likelihood,
    kl_per_dimension,
)


class _Rows(torch.distributions.Distribution):
    """A stand-in p(x|z) whose log_prob is a given (n, B) table of log-weights."""

    arg_constraints: dict = {}

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows
        super().__init__(rows.shape, validate_args=False)

    def log_prob(self, value):
        return self.rows


class TableModel(torch.nn.Module):
    """A contract model with no latent group whose log-weights are served from a fixed (K_total, N) table in draw
    order, so every chunking sees the same w."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table, self.cursor = table, 0
        self.offset = 0  # first data row of the current batch

    def check_input(self, x):
        pass

    def rows(self, x, n):
        rows = self.table[self.cursor : self.cursor + n, x[:, 0].long()]  # (n, B): x holds row indices
        self.cursor += n
        if self.cursor >= self.table.shape[0]:
            self.cursor = 0
        return rows

    def forward(self, x, n_samples=1, **options):
        return ModelOutput([], _Rows(self.rows(x, n_samples)), 1)


# -- chunking ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 7, 64, 100, None])
def test_chunked_running_logsumexp_equals_unchunked(chunk):
    g = torch.Generator().manual_seed(0)
    table = 300.0 * torch.randn(100, 4, generator=g, dtype=DT) - 1000.0  # huge spread: needs a stable merge
    x = torch.arange(4, dtype=DT).unsqueeze(1)  # (4, 1): row ids
    expected = torch.logsumexp(table, 0) - math.log(100)
    res = estimate_log_likelihood(TableModel(table), x, k=100, batch_size=4, chunk_size=chunk)
    torch.testing.assert_close(res.per_example, expected, rtol=0, atol=1e-9)


def test_chunked_equals_unchunked_on_ppca_for_exact_q_and_seed_reproducible():
    p = PPCA()
    x = p.sample(9)
    a = estimate_log_likelihood(p.vae(), x, k=50, batch_size=4, chunk_size=50, seed=3)
    b = estimate_log_likelihood(p.vae(), x, k=50, batch_size=4, chunk_size=6, seed=3)
    torch.testing.assert_close(a.per_example, b.per_example, rtol=0, atol=1e-9)
    m = p.perturbed_vae()
    c1 = estimate_log_likelihood(m, x, k=50, batch_size=2, chunk_size=6, seed=3)
    c2 = estimate_log_likelihood(m, x, k=50, batch_size=2, chunk_size=6, seed=3)
    assert torch.equal(c1.per_example, c2.per_example)


def test_auto_chunk_size_bounds_the_decoded_batch():
    assert auto_chunk_size(5000, 1, 784) == 1250  # 5000 * 784 > 2**20: four equal chunks
    assert auto_chunk_size(100, 1, 784) == 100
    assert auto_chunk_size(5000, 64, 3072) == 5  # 2**20 // (64 * 3072)
    assert auto_chunk_size(5000, 1024, 3072) == 1  # never below one sample
    c = auto_chunk_size(5000, 8, 784)
    assert c * 8 * 784 <= 1 << 20 and math.ceil(5000 / c) * c - 5000 < math.ceil(5000 / c)


def test_seed_leaves_global_rng_and_training_mode_untouched():
    p = PPCA()
    m = p.perturbed_vae().train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    estimate_log_likelihood(m, p.sample(5), k=10, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert m.training


# -- bits per dimension -----------------------------------------------------------------------------------
def test_bits_per_dim_known_cases():
    D = 3 * 32 * 32
    assert bits_per_dim(-D * math.log(256), D, n_levels=256) == pytest.approx(8.0)  # uniform over 256 levels
    assert bits_per_dim(0.0, D, n_levels=256, dequantized=True) == pytest.approx(8.0)  # uniform density on [0,1)^D
    assert bits_per_dim(-784 * math.log(2), 784, n_levels=2) == pytest.approx(1.0)  # fair coin per pixel
    t = bits_per_dim(torch.tensor([-2 * math.log(2.0), 0.0]), 2)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([1.0, 0.0]))


def test_dequantized_histogram_density_matches_its_discrete_distribution():
    # p(x) = n * P(k) on [k/n, (k+1)/n) per dim: log p(x) - D log n = log P(k) exactly, so both paths agree
    n, D = 4, 5
    P = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    k = torch.randint(0, n, (20, D), generator=torch.Generator().manual_seed(0))
    log_P = P.log()[k].sum(-1)  # (20,) discrete
    u = torch.rand(20, D, generator=torch.Generator().manual_seed(1), dtype=DT)
    x = (k + u) / n  # dequantised to [0, 1)
    log_density = (n * P)[(x * n).floor().long()].log().sum(-1)  # (20,) continuous histogram density
    torch.testing.assert_close(bits_per_dim(log_density, D, n_levels=n, dequantized=True), bits_per_dim(log_P, D))


def test_bits_per_dim_errors():
    with pytest.raises(ValueError, match="pass log p\\(x\\)"):
        bits_per_dim(500.0, 784, n_levels=2)
    with pytest.raises(ValueError, match="needs n_levels"):
        bits_per_dim(-5.0, 10, dequantized=True)
    with pytest.raises(ValueError, match="n_dims"):
        bits_per_dim(-5.0, 0)


# -- active units and KL per dimension ---------------------------------------------------------------------
def test_active_units_counts_exactly_the_live_dimensions():
    p = PPCA(x_dim=8, z_dim=5)
    A = p.A.clone()
    A[1] = 0.0  # dead: the encoder mean ignores x
    A[3] = 0.0
    A[4] *= 0.05  # nearly dead: variance of its mean below 0.01
    x = p.sample(500)
    res = active_units(p.vae(A=A), x, threshold=0.01, batch_size=64)
    var = (x.to(DT) @ A.T).var(0)  # exact variance of the linear posterior mean over this data
    torch.testing.assert_close(res.variance, var)
    assert res.count == 2 and res.per_layer_count == [2]
    assert float(res.variance[4]) < 0.01 < float(res.variance[0])


def test_active_units_per_layer_via_posterior_means():
    from torch.distributions import Independent, Normal

    from vaekit.models.contract import GroupLayout, LatentLayout

    class TwoLayer(torch.nn.Module):  # the uses half of the contract, as much as active units read
        layout = LatentLayout((GroupLayout("low", (3,), parent="top"), GroupLayout("top", (2,))))

        def posteriors(self, x, given=None):
            means = {"low": x[:, :3] * torch.tensor([1.0, 0.0, 1.0]), "top": x[:, 3:] * 0.01}
            return {k: Independent(Normal(m, torch.ones_like(m)), 1) for k, m in means.items()}

    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    res = active_units(TwoLayer(), x, batch_size=50)
    assert res.per_layer_count == [2, 0] and res.count == 2 and res.variance.shape == (5,)


def test_kl_per_dimension_closed_form_and_sums_to_mean_kl():
    p = PPCA()
    m = p.perturbed_vae()
    x = p.sample(40)
    kl = kl_per_dimension(m, x, batch_size=16)
    with torch.no_grad():
        q = m.encode(x)
    mu, s = q.loc, q.scale  # (N, D)
    expected = (0.5 * (mu**2 + s**2 - 1) - s.log()).mean(0)  # KL(N(mu, s^2) || N(0, 1)) per dimension
    torch.testing.assert_close(kl, expected)
    assert float(kl.sum()) == pytest.approx(elbo_dataset(m, x, batch_size=16)["kl"], abs=1e-9)


# -- evaluate() and errors ---------------------------------------------------------------------------------
def test_evaluate_returns_json_friendly_known_values():
    p = PPCA()
    x = p.sample(30)
    res = evaluate(p.vae(), x, k=20, batch_size=16, seed=0)
    json.dumps(res)
    assert res["log_px"] == pytest.approx(float(p.log_px(x).mean()), abs=1e-4)
    assert res["bits_per_dim"] is None  # real-valued data
    assert res["active_units"] == 3 and len(res["kl_per_dim"]) == 3 and res["n"] == 30 and res["k"] == 20
    assert sum(res["kl_per_dim"]) == pytest.approx(res["kl"], abs=1e-9)
    assert res["log_px_stderr"] == pytest.approx(float(p.log_px(x).std() / math.sqrt(30)), abs=1e-4)


def test_bad_arguments_and_broken_models_raise_clear_errors():
    p = PPCA()
    x = p.sample(4)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        estimate_log_likelihood(p.vae(), x, k=0)
    with pytest.raises(ValueError, match="batch_size"):
        estimate_log_likelihood(p.vae(), x, k=5, batch_size=0)
    with pytest.raises(ValueError, match="data tensor"):
        estimate_log_likelihood(p.vae(), [1, 2], k=5)

    class WrongShape(TableModel):
        def rows(self, x, n):
            return torch.zeros(n, x.shape[0], x.shape[0])

    with pytest.raises(RuntimeError, match="expected \\(5, 4\\)"):
        iw_log_likelihood(WrongShape(torch.zeros(1, 1)), x, 5)
    table = torch.zeros(10, 4, dtype=DT)
    table[:, 2] = float("nan")
    with pytest.raises(RuntimeError, match="1 of 4 log p\\(x\\) estimates are NaN"):
        estimate_log_likelihood(TableModel(table), torch.arange(4.0).unsqueeze(1), k=10)


def test_bf16_decoder_is_close_and_restores_decode():
    p = PPCA(dtype=torch.float32)
    m = p.perturbed_vae().float()
    x = p.sample(20)
    a = estimate_log_likelihood(m, x, k=200, batch_size=20, seed=0)
    b = estimate_log_likelihood(m, x, k=200, batch_size=20, seed=0, bf16=True)
    assert "decode" not in m.__dict__  # nothing patched on the instance: a decoder-precision argument
    diff = (a.per_example - b.per_example).abs()
    assert 0 < float(diff.max()) < 0.2  # same samples; only the bf16 decoder differs (~3 significant digits)
    assert m(x[:2], 3, decoder_dtype=torch.bfloat16).px.log_prob(x[:2]).dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_decoder_is_close_to_fp32_or_refused(device, precision):
    """precision= bf16 / fp16 decode the same samples in lower precision: per-example log p(x) within a few
    significant digits of fp32, reported by evaluate(). fp16 on a CPU without native fp16 is refused, by both
    functions, with one clear line (run with --device cuda to test fp16's numbers)."""
    p = PPCA(dtype=torch.float32)
    m = p.perturbed_vae().float().to(device)
    x = p.sample(20)
    if precision == "fp16" and device.type == "cpu" and not cpu_supports_fp16():
        for call in (lambda: estimate_log_likelihood(m, x, k=200, batch_size=20, seed=0, precision="fp16"),
                     lambda: evaluate(m, x, k=5, seed=0, precision="fp16")):
            with pytest.raises(ValueError, match="precision fp16 needs a GPU") as e:
                call()
            assert "\n" not in str(e.value)
        return
    a = estimate_log_likelihood(m, x, k=200, batch_size=20, seed=0)
    b = estimate_log_likelihood(m, x, k=200, batch_size=20, seed=0, precision=precision)
    diff = (a.per_example - b.per_example).abs()
    assert 0 < float(diff.max()) < 0.2  # same samples; only the low-precision decoder differs
    res = evaluate(m, x, k=20, seed=0, precision=precision)
    assert res["precision"] == precision and res["bf16"] == (precision == "bf16")


def test_precision_names_and_the_bf16_flag():
    cpu = torch.device("cpu")
    assert decoder_dtype_for(None, cpu) is None and decoder_dtype_for("fp32", cpu) is None
    assert decoder_dtype_for("bf16", cpu) == decoder_dtype_for(None, cpu, bf16=True) == torch.bfloat16
    assert decoder_dtype_for("fp16", "cuda") == torch.float16  # names only: no GPU needed to resolve it
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose fp32, bf16, fp16"):
        decoder_dtype_for("fp8", cpu)
    with pytest.raises(ValueError, match="disagree"):
        decoder_dtype_for("fp32", cpu, bf16=True)
    p = PPCA(dtype=torch.float32)
    m, x = p.perturbed_vae().float(), p.sample(5)
    old = estimate_log_likelihood(m, x, k=20, seed=0, bf16=True)  # the older flag still means bf16
    new = estimate_log_likelihood(m, x, k=20, seed=0, precision="bf16")
    assert torch.equal(old.per_example, new.per_example)
    assert evaluate(m, x, k=5, seed=0)["precision"] == "fp32"


def test_evaluate_bits_per_dim_paths():
    from vaekit.models import build_vae

    torch.manual_seed(0)
    m = build_vae((6,), hidden=(8,), latent_dim=2)  # Bernoulli: a discrete likelihood
    x = (torch.rand(10, 6) < 0.5).float()
    res = evaluate(m, x, k=10, batch_size=5, n_levels=2, seed=0)
    assert res["bits_per_dim"] == pytest.approx(-res["log_px"] / (6 * math.log(2)))
    p = PPCA()
    res = evaluate(p.vae(), p.sample(8), k=5, n_levels=256, seed=0)  # continuous density, not dequantised
    assert res["bits_per_dim"] is None
    res = evaluate(p.vae(), p.sample(8), k=5, n_levels=256, dequantized=True, seed=0)
    assert res["bits_per_dim"] == pytest.approx(-res["log_px"] / (6 * math.log(2)) + 8)
