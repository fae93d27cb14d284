"""The run report: written at the end of training, every figure embedded as a data: URI, metrics table, config;
`make_figures` skips what does not apply and refuses it when asked for by name."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.plots.report import metrics_rows
from vaekit.plots.run_figures import KINDS, make_figures
from vaekit.runs import build_report, run_figures
from vaekit.registry import build_model


def test_training_ends_with_a_report_that_embeds_every_figure(tiny_run):
    run_dir, summary = tiny_run
    report = run_dir / "report.html"
    assert summary["report"] == str(report) and report.is_file()
    html = report.read_text()
    figs = sorted((run_dir / "figures").iterdir())
    names = {p.name for p in figs}
    assert names == {"reconstructions.png", "samples.png", "traversals.png", "interpolation.png", "latent-map.png",
                     "manifold.png", "manifold-ppf.png", "curves.png", "kl.png", "latent-evolution.gif"}
    for p in figs:
        mime = "image/gif" if p.suffix == ".gif" else "image/png"
        assert f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode()}" in html, p.name
    srcs = re.findall(r'<img src="([^"]{0,30})', html)
    assert len(srcs) == len(figs) and all(s.startswith("data:image/") for s in srcs)  # nothing external
    assert '<table id="metrics">' in html and "test ELBO" in html and "<script" not in html
    assert "latent_dim: 3" in html  # the config
    test_elbo = json.loads((run_dir / "summary.json").read_text())["test"]["elbo"]
    assert f"{test_elbo:.3f}" in html


def test_metrics_rows_come_from_the_summary_and_the_last_record(tiny_run):
    run_dir, summary = tiny_run
    rows = dict(metrics_rows(run_dir))
    assert rows["training steps"] == "30" and rows["ended by"] == "completed"
    assert rows["latent dims with KL > 0.01 nats"].endswith("of 3")
    assert rows["last record: step"] == "30"


def test_figures_from_the_run_folder_alone(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("figures", "report.html"))
    written, skipped = run_figures(copy, ["samples", "curves"], tmp_path / "f", temperatures=(0.5,))
    assert set(written) == {"samples", "curves"} and not skipped
    a = run_figures(copy, ["traversals"], tmp_path / "g", around=3)[0]["traversals"].read_bytes()
    b = run_figures(copy, ["traversals"], tmp_path / "h", around=3)[0]["traversals"].read_bytes()
    assert a == b


def test_bad_input(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    with pytest.raises(ValueError, match="unknown figure kind 'histogram'"):
        run_figures(run_dir, ["histogram"])
    with pytest.raises(FileNotFoundError, match="not found"):
        run_figures(tmp_path / "nowhere", ["samples"])
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("metrics.jsonl", "figures", "report.html"))
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        run_figures(bare, ["curves"])
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        build_report(bare)
    with pytest.raises(ValueError, match="must end in .html"):
        build_report(run_dir, tmp_path / "r.txt")
    with pytest.raises(ValueError, match="outside the test split"):
        run_figures(run_dir, ["traversals"], tmp_path / "t", around=10**6)


def test_all_skips_what_a_ladder_cannot_draw_and_says_why(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    torch.manual_seed(0)
    ladder = build_model(ModelConfig(family="ladder", latent_dims=[3, 2], hidden=[16, 8]), (1, 8, 8)).eval()
    x, y = torch.rand(50, 1, 8, 8), torch.arange(50) % 5
    written, skipped = run_figures(run_dir, ["all"], tmp_path, model=ladder, x=x, y=y)  # snapshots from the run
    # the class figures are not attempted for a model without classes ("all"); asked for, they say why not;
    # the latent figures of a hierarchy are drawn in prior units
    assert skipped == {}
    with pytest.raises(ValueError, match="capability 'class-conditional'.*LadderVAE has: continuous"):
        make_figures(run_dir, ["analogies"], tmp_path, model=ladder, x=x, y=y)
    assert {"reconstructions", "samples", "latent-map", "curves", "kl", "latent-gif", "traversals", "interpolation",
            "manifold"} <= set(written)
    assert set(KINDS) >= set(skipped)
    # make_figures draws what it is handed: without the snapshots it skips the GIF and says why
    _, skipped = make_figures(run_dir, ["all"], tmp_path / "h", model=ladder, x=x, y=y)
    assert "train.snapshot_every" in skipped["latent-gif"]
