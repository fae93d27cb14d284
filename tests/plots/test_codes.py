"""The code figures draw what they are handed: usage counts per validation, images with their code maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.plots.codes import code_usage_matrix, plot_code_maps, plot_code_usage


def test_code_usage_matrix_and_figures(tmp_path):
    recs = [{"step": 10, "loss": 1.0}, {"step": 20, "val_code_counts": [5, 0, 1, 0]},
            {"step": 40, "val_code_counts": [3, 2, 1, 0]}]
    steps, counts = code_usage_matrix(recs)
    assert steps.tolist() == [20, 40] and counts.tolist() == [[5, 3], [0, 2], [1, 1], [0, 0]]
    assert plot_code_usage(recs, tmp_path / "u.png").stat().st_size > 0
    codes = torch.tensor([[[0, 1], [2, 3]], [[3, 3], [0, 0]]])
    assert plot_code_maps(torch.rand(2, 1, 8, 8), codes, 4, tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(ValueError, match="val_code_counts"):
        code_usage_matrix([{"step": 1}])


def test_the_code_figures_of_a_quantised_run_and_their_refusal_for_a_plain_vae(tmp_path, tiny_model, png_size):
    """`vaekit plot`'s code-usage / code-maps kinds: drawn from the validation records for a model with the
    'quantised' capability (one row per code map), refused naming the capability for a VAE, left out of its 'all'."""
    import json

    from vaekit.models.contract import MissingCapability
    from vaekit.models.vqvae import build_vqvae
    from vaekit.plots.run_figures import make_figures

    run = tmp_path / "run"
    run.mkdir()
    recs = [{"step": 5, "loss": 1.0},
            {"step": 10, "val_code_counts_bottom": [4, 0, 2], "val_code_counts_top": [1, 0, 0]},
            {"step": 20, "val_code_counts_bottom": [3, 1, 2], "val_code_counts_top": [0, 1, 0]}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    torch.manual_seed(0)
    vq = build_vqvae((1, 8, 8), conv_channels=(4,), codebook_size=3, code_dim=2, levels=2).eval()
    x = torch.rand(10, 1, 8, 8)
    written, skipped = make_figures(run, ["code-usage", "code-maps"], tmp_path / "f", model=vq, x=x)
    assert set(written) == {"code-usage", "code-maps"} and not skipped
    assert png_size(written["code-usage"]) == (1000, 60 + 380 * 2)  # a row per code map
    assert png_size(written["code-maps"])[1] == 60 + 85 * 3  # images, bottom codes, top codes
    for kind in ("code-usage", "code-maps"):
        with pytest.raises(MissingCapability, match=f"a {kind} figure needs a model with the capability 'quantised'"):
            make_figures(run, [kind], tmp_path / "v", model=tiny_model, x=x)
    written, skipped = make_figures(run, ["all"], tmp_path / "a", model=tiny_model, x=x)
    assert not {"code-usage", "code-maps"} & (set(written) | set(skipped))
    written, _ = make_figures(run, ["all"], tmp_path / "q", model=vq, x=x)
    assert {"code-usage", "code-maps", "reconstructions", "samples"} <= set(written)
