"""Scientific notation is a number everywhere a number is expected: key=value overrides and YAML files."""

from __future__ import annotations

import pytest

from vaekit.cli import main
from vaekit.config import RunConfig, apply_overrides, load_config, parse_yaml


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("2E-3", 2e-3), ("1e3", 1000.0), ("-1.5e-4", -1.5e-4),
                                          ("+3e+2", 300.0), (".5e-2", 5e-3), ("1.0e-3", 1e-3), ("0.25", 0.25)])
def test_scientific_notation_reads_as_a_float(text, value):
    assert parse_yaml(text) == value and isinstance(parse_yaml(text), float)


@pytest.mark.parametrize("text, value", [("3", 3), ("1_000", 1000), ("true", True), ("1e", "1e"), ("e3", "e3"),
                                          ("1.2.3", "1.2.3"), ("null", None), ("digits", "digits")])
def test_everything_else_reads_as_before(text, value):
    assert parse_yaml(text) == value and type(parse_yaml(text)) is type(value)


def test_the_loader_leaves_pyyaml_alone():
    import yaml

    assert yaml.safe_load("1e-3") == "1e-3"  # our resolver is on a subclass, not patched into SafeLoader


def test_overrides_take_scientific_notation():
    cfg = apply_overrides(RunConfig(), ["train.lr=2e-3", "train.steps=1e3", "model.free_bits=5E-1",
                                        "train.weight_decay=1e-5"])
    assert cfg.train.lr == 2e-3 and cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    assert cfg.model.free_bits == 0.5 and cfg.train.weight_decay == 1e-5


def test_yaml_files_take_scientific_notation(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  lr: 1e-3\n  steps: 2e3\n  min_lr: 1e-6\nmodel:\n  hidden: [1e2, 50]\n")
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.steps, cfg.train.min_lr, cfg.model.hidden) == (1e-3, 2000, 1e-6, [100, 50])


def test_print_config_shows_the_resolved_config_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model:\n  latent_dim: 7\n")
    assert main(["train", "--print-config", "--config", str(cfg_file), "--out", "runs/x", "train.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    printed = parse_yaml(out)
    assert printed["train"]["lr"] == 1e-3 and printed["model"]["latent_dim"] == 7 and printed["name"] == "digits-quick"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no run folder, nothing else
