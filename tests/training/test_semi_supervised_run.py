"""Semi-supervised runs end to end on scikit-learn's digits: labelled subset, checkpoint by validation accuracy,
test error, the classifier-alone baseline, the configuration errors, and a CPU-time budget."""

from __future__ import annotations

import json

import pytest
import torch

from vaekit.config import ConfigError, apply_overrides
from vaekit.registry import load_preset
from vaekit.runs import train_run

M2 = ["model.family=m2", "model.objective=m2", "model.warmup_steps=0", "model.free_bits=0", "model.hidden=[64]",
      "model.latent_dim=4", "train.steps=300", "train.val_every=50", "train.progress=false"]


def _cfg(*extra: str):
    return apply_overrides(load_preset("digits-quick"), [*M2, *extra])


def test_m2_run_learns_from_the_labels_and_keeps_the_most_accurate_checkpoint(m2_run):
    run_dir, summary = m2_run  # tests/conftest.py: digits, 100 labels, 200 steps
    assert summary["best_val_elbo"] is None and 0.5 < summary["best_val_accuracy"] <= 1.0
    assert summary["test"]["error"] < 0.45  # chance is 0.9
    vals = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    accs = [(r["val_accuracy"], r["step"]) for r in vals if "val_accuracy" in r]
    assert len(accs) >= 2
    best = max(a for a, _ in accs)
    assert summary["best_val_accuracy"] == best
    assert summary["best_step"] == min(s for a, s in accs if a == best)  # the first step reaching it is kept


def test_the_baseline_trains_the_classifier_alone(tmp_path):
    summary = train_run(_cfg("data.labels=50", "model.objective_options={generative: false}", "train.steps=100"),
                        tmp_path / "run")
    assert summary["test"]["error"] < 0.6


@pytest.mark.parametrize("overrides, message", [
    (["data.labels=15"], "multiple of 10"),
    (["data.labels=abc"], "data.labels must be"),
    (["model.objective=elbo", "model.family=vae", "model.hidden=[64]", "data.labels=50"],
     "data.labels labels training examples for a supervised objective"),
])
def test_bad_label_settings_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_run(apply_overrides(_cfg(), overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_m2_objective_without_labels_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="data.labels=N"):
        train_run(_cfg(), tmp_path / "run")


def test_cpu_time_budget_stops_the_run(tmp_path):
    from vaekit.config import TrainConfig, validate
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    x = (torch.rand(256, 64, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    s = TrainConfig(steps=10**6, batch_size=32, time_limit=0.5, time_clock="cpu", progress=False, threads=1)
    summary = Trainer(build_vae((64,), latent_dim=2, hidden=[16]), ELBO(), x, None, settings=s, run_dir=None).fit()
    assert summary["stopped"] == "time limit" and 0.5 <= summary["train_cpu_seconds"] < 2.0
    assert summary["steps"] < 10**6
    with pytest.raises(ConfigError, match="time_clock"):
        validate(apply_overrides(load_preset("digits-quick"), ["train.time_clock=gpu"]))
