"""The two-level VQ-VAE (``model.levels=2``; Razavi et al. 2019, VQ-VAE-2) against hand computations: one level is
the model without the option, the shapes of both maps, the bound with the uniform prior and with the joint code
prior by hand, per-level usage metrics, an exact resume, and train / evaluate / sample / report / a second-stage
prior through the CLI."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from vaekit.models.vqvae import build_vqvae
from vaekit.objectives import elbo_terms
from vaekit.objectives.bounds import log_weights
from vaekit.objectives.vq import VQObjective

from tests.models.resume import killed_and_resumed

# the state-dict keys of a one-level conv VQ-VAE before the option existed
ONE_LEVEL_KEYS = sorted(
    [f"{part}.net.{i}.{w}" for part, idx in (("encoder", (0, 3)), ("decoder", (0, 3, 5))) for i in idx
     for w in ("weight", "bias")]
    + [f"{part}.net.1.net.{i}.{w}" for part in ("encoder", "decoder") for i in (1, 3) for w in ("weight", "bias")]
    + [f"quantiser.{b}" for b in ("codebook", "ema_count", "ema_sum", "initted", "restarts", "unused_steps")])


def _binary(n: int, shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) > 0.5).double()


def test_one_level_is_the_model_without_the_option():
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    x = _binary(3).float()
    outs = []
    for extra in ({}, {"levels": 1}):
        torch.manual_seed(0)
        cfg = ModelConfig(family="vqvae", objective="vq", arch="conv", conv_channels=[4], codebook_size=4,
                          code_dim=2, kmeans_init=False, **extra)
        m = build_model(cfg, (1, 8, 8)).eval()
        with torch.no_grad():
            outs.append((m.state_dict(), m(x, None).px.log_prob(x), m.layout, m.capabilities))
    (a, lpa, la, ca), (b, lpb, lb, cb) = outs
    assert sorted(a) == sorted(b) == ONE_LEVEL_KEYS
    assert all(torch.equal(a[k], b[k]) for k in a) and torch.equal(lpa, lpb)
    assert la == lb and la.names == ["codes"] and ca == cb and "hierarchical" not in ca


def test_two_levels_shapes_groups_and_state():
    torch.manual_seed(0)
    m = build_vqvae((1, 28, 28), conv_channels=(4, 4), codebook_size=6, code_dim=3, levels=2).eval()
    assert m.map_shapes == {"bottom": (7, 7), "top": (3, 3)}  # odd sizes: 7 -> 3 -> 7 restored exactly
    assert [(g.name, g.shape, g.parent) for g in m.layout.groups] == [("bottom", (7, 7, 6), "top"),
                                                                      ("top", (3, 3, 6), None)]
    assert {"quantised", "hierarchical", "discrete"} <= m.capabilities and m.latent_dim == (49 + 9) * 3
    sd = m.state_dict()
    assert "quantiser.codebook" in sd and "top_quantiser.codebook" in sd and "top_quantiser.unused_steps" in sd
    x = _binary(2, (1, 28, 28)).float()
    with torch.no_grad():
        out = m(x, 3)
        assert [g.z.shape for g in out.groups] == [(3, 2, 7, 7, 6), (3, 2, 3, 3, 6)]
        assert out.px.batch_shape == (3, 2) and out.extras["commitment"].shape == (2,)
        maps = m.code_maps(x)
        assert maps["bottom"].shape == (2, 7, 7) and maps["top"].shape == (2, 3, 3)
        assert torch.equal(m.codes(x), maps["bottom"])
        assert m.reconstruct(x).shape == x.shape and m.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="needs model.arch=conv"):
        build_vqvae((6,), arch="mlp", levels=2)
    with pytest.raises(ValueError, match="too small"):
        build_vqvae((1, 4, 4), conv_channels=(4, 4), levels=2)


@pytest.mark.parametrize("options", [dict(quantiser="fsq", fsq_levels=(3, 2)), dict(codebook_update="gradient"),
                                     dict(cosine=True, restart_after=1)])
def test_every_quantiser_option_applies_to_both_levels(options):
    from vaekit.models.quantiser import FiniteScalarQuantiser

    torch.manual_seed(0)
    m = build_vqvae((1, 8, 8), conv_channels=(4,), codebook_size=6, code_dim=2, levels=2, **options).train()
    bottom, top = m.quantiser, m.top_quantiser
    assert bottom is not top and type(bottom) is type(top) and top.codebook_size == bottom.codebook_size == 6
    x = _binary(4).float()
    with torch.enable_grad():
        VQObjective()(m, x).loss.backward()
    if isinstance(top, FiniteScalarQuantiser):
        assert top.levels == bottom.levels == [3, 2]
    elif options.get("codebook_update") == "gradient":  # the codebook term reaches both codebooks
        assert top.codebook.grad is not None and bottom.codebook.grad is not None
        assert top.codebook.grad.abs().sum() > 0 and bottom.codebook.grad.abs().sum() > 0
    else:  # cosine codes on the unit sphere, restarts counted per level
        assert top.cosine and bottom.cosine and bool(top.initted) and bool(bottom.initted)
        torch.testing.assert_close(top.vectors().norm(dim=-1), torch.ones(6))
        assert top.restart_after == bottom.restart_after == 1


def _by_hand(m, x: torch.Tensor):
    """(log p(x | z_q) (B,), top codes (B, h w), bottom codes (B, H W)) from the modules, with nearest codes by
    brute force and the Bernoulli log-probability written out."""
    feats = m.encoder(x)  # (B, C, H, W)

    def nearest(z_e, book):  # (B, D, h, w) -> codes (B, h w), vectors (B, D, h, w)
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(b, h * w, d)
        idx = ((flat.unsqueeze(2) - book) ** 2).sum(-1).argmin(-1)  # (B, h w)
        return idx, book[idx].reshape(b, h, w, d).permute(0, 3, 1, 2)

    ct, zt = nearest(m.top_encoder(feats), m.top_quantiser.codebook)
    cb, zb = nearest(m.bottom_in(torch.cat([feats, m.top_decoder(zt)], 1)), m.quantiser.codebook)
    logits = m.decoder(torch.cat([m.top_upsample(zt), zb], 1)).flatten(1)  # (B, C H W)
    xf = x.flatten(1)
    log_px = (xf * F.logsigmoid(logits) + (1 - xf) * F.logsigmoid(-logits)).sum(-1)
    return log_px, ct, cb


def test_two_level_bound_by_hand_uniform_and_joint_prior():
    torch.manual_seed(0)
    m = build_vqvae((1, 8, 8), conv_channels=(4, 4), codebook_size=2, code_dim=2, levels=2,
                    kmeans_init=False).double().eval()
    with torch.no_grad():  # a spread-out codebook, so both codes of each level are in use
        m.quantiser.codebook.copy_(torch.tensor([[0.2, -0.1], [-0.3, 0.2]], dtype=torch.float64))
        m.top_quantiser.codebook.copy_(torch.tensor([[0.1, 0.1], [-0.1, -0.2]], dtype=torch.float64))
    x = _binary(5)
    with torch.no_grad():
        log_px, ct, cb = _by_hand(m, x)
        t = elbo_terms(m, x)
        torch.testing.assert_close(t.log_px_z, log_px)
        # uniform prior: log p(x | z_q) - (H W + H/2 W/2) log K, H = W = 2, K = 2
        torch.testing.assert_close(t.elbo, log_px - (4 + 1) * math.log(2))
        torch.testing.assert_close(log_weights(m, x, 2), (log_px - 5 * math.log(2)).expand(2, 5))

        m.set_prior(width=8, layers=1, heads=2)
        m.double().eval()
        seq = torch.cat([ct, cb], 1)  # (B, 1 + 4): top first
        log_pz = torch.zeros(5, dtype=torch.float64)
        for i in range(5):  # p(z_i | z_<i) from the prefix alone: the chain rule over [top, bottom]
            logits = m.prior(seq[:, :i + 1])[:, i]
            log_pz += torch.log_softmax(logits, -1).gather(-1, seq[:, i:i + 1]).squeeze(-1)
        t = elbo_terms(m, x)
        torch.testing.assert_close(t.elbo, log_px + log_pz)
        assert t.groups["top"].shape == (5, 1) and t.groups["bottom"].shape == (5, 1)
        # p(top) p(bottom | top) is a distribution over the 2^5 pairs of maps
        pairs = torch.tensor(list(itertools.product(range(2), repeat=5)))  # (32, 5)
        top = F.one_hot(pairs[:, :1], 2).double().reshape(32, 1, 1, 2)
        bottom = F.one_hot(pairs[:, 1:], 2).double().reshape(32, 2, 2, 2)
        joint = m.group_prior("top", {}).log_prob(top) + m.group_prior("bottom", {"top": top}).log_prob(bottom)
        torch.testing.assert_close(joint.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        with pytest.raises(ValueError, match="conditioned on the top map"):
            m.code_prior("bottom")


def test_per_level_usage_metrics_by_hand():
    torch.manual_seed(1)
    m = build_vqvae((1, 8, 8), conv_channels=(4,), codebook_size=5, code_dim=2, levels=2).double()
    x = _binary(6, seed=2)
    m.train()
    with torch.enable_grad():
        VQObjective()(m, x).loss.backward()  # the k-means start of both codebooks
    m.eval()
    metrics = VQObjective().validation_metrics(m, x)
    with torch.no_grad():
        maps = m.code_maps(x)
        log_px = _by_hand(m, x)[0]
    for name in ("bottom", "top"):
        counts = torch.bincount(maps[name].flatten(), minlength=5)
        assert metrics[f"val_code_counts_{name}"] == counts.tolist()
        assert metrics[f"val_codes_used_{name}"] == float((counts > 0).sum()) / 5
        assert metrics[f"val_dead_codes_{name}"] == int((counts == 0).sum())
        p = counts.double() / counts.sum()
        assert metrics[f"val_perplexity_{name}"] == pytest.approx(math.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    assert "val_code_counts" not in metrics
    assert metrics["val_uniform_bound"] == pytest.approx(float(log_px.mean()) - (16 + 4) * math.log(5))


def test_a_killed_and_resumed_two_level_run_ends_with_the_same_weights_and_codebooks(tmp_path):
    from vaekit.config import TrainConfig
    from vaekit.training import Trainer

    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float()
    x = torch.bernoulli(protos[torch.randint(0, 4, (60,), generator=g)] * 0.9 + 0.05, generator=g)

    def trainer(d, callbacks=None):
        torch.manual_seed(0)
        model = build_vqvae((1, 8, 8), conv_channels=(4,), codebook_size=8, code_dim=2, levels=2, restart_after=2)
        s = TrainConfig(steps=16, batch_size=10, lr=3e-3, val_every=6, checkpoint_every=5, progress=False)
        return Trainer(model, VQObjective(), x[:50], x[50:], settings=s, run_dir=d, seed=3, callbacks=callbacks)

    full, resumed = killed_and_resumed(trainer, tmp_path, kill_at=12, resumed_from=10)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert "top_quantiser.codebook" in a and "top_quantiser.unused_steps" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(full.model.quantiser.restarts) > 0 and int(full.model.top_quantiser.restarts) > 0
    recs = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_code_counts_top" in r and "val_codes_used_bottom" in r for r in recs)


def test_two_levels_through_the_cli_with_a_second_stage_prior(tmp_path, capsys):
    from vaekit.cli import main
    from vaekit.process_state import preserve_process_state

    def run(*argv):
        with preserve_process_state():
            code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    tiny = ["data.name=digits", "data.binarize=none", "model.conv_channels=[8]", "model.codebook_size=16",
            "model.code_dim=4", "train.steps=4", "train.val_every=2", "train.batch_size=32", "train.time_limit=null"]
    first = tmp_path / "vq2"
    run("train", "--quiet", "--preset", "cifar10-vqvae2", "--out", str(first), *tiny, "model.likelihood=bernoulli")
    recs = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    assert any("val_code_counts_bottom" in r and "val_code_counts_top" in r for r in recs)
    page = (first / "report.html").read_text()
    assert 'id="fig-code-usage"' in page and 'id="fig-code-maps"' in page
    assert (first / "figures" / "code-usage.png").stat().st_size > 0
    run("evaluate", str(first), "--iw-samples", "1", "--limit", "40")
    run("sample", str(first), "-n", "3", "-o", str(tmp_path / "s.png"))
    run("report", str(first), "-o", str(tmp_path / "r.html"))
    # the second stage: one transformer over [top, bottom] codes of the frozen two-level model
    second = tmp_path / "prior"
    run("train", "--quiet", "--preset", "vqvae-prior", "--out", str(second), f"model.prior_of={first}",
        "data.name=digits", "data.binarize=none", "model.prior_width=16", "model.prior_layers=1", "train.steps=3",
        "train.val_every=3", "train.batch_size=32", "train.time_limit=null")
    import yaml

    model_cfg = yaml.safe_load((second / "config.yaml").read_text())["model"]
    assert model_cfg["levels"] == 2 and model_cfg["code_prior"] == "transformer"
    run("sample", str(second), "-n", "2", "-o", str(tmp_path / "s2.png"))
    assert (tmp_path / "s2.png").stat().st_size > 0
