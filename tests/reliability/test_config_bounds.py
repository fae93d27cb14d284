"""Config input is bounded before it is used: YAML alias bombs, deep nesting, huge files and absurd sizes are
refused in one line (exit 2) within a second or two, from a --config file and from key=value alike."""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, snapshot


def _bomb(indent: str) -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded, 300 characters as text."""
    rows = [f"{indent}a: &a [x, x, x, x, x, x, x, x, x]"]
    rows += [f"{indent}{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    return "\n".join(rows) + "\n"


def _deep(levels: int) -> str:
    return "{a: " * levels + "1" + "}" * levels


def _train(tmp_path, capsys, *argv: str) -> tuple[int, str, float]:
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, *argv)
    seconds = time.perf_counter() - t0
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()
    return code, err, seconds


@pytest.mark.parametrize("where", ["top", "likelihood_options"])
def test_an_alias_bomb_is_refused(tmp_path, capsys, where):
    text = _bomb("") if where == "top" else ("model:\n  likelihood: gaussian\n  likelihood_options:\n"
                                             + _bomb("    "))
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(text)
    code, err, seconds = _train(tmp_path, capsys, "--config", str(cfg))
    assert_one_line_error(code, err, "bomb.yaml", "aliases")
    assert seconds < 5
    flow = "{a: &a [x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")) + "}"
    code, err, seconds = _train(tmp_path, capsys, "model.likelihood=gaussian", f"model.likelihood_options={flow}")
    assert_one_line_error(code, err, "model.likelihood_options", "aliases")
    assert seconds < 5


def test_a_1000_deep_option_from_the_command_line_and_from_a_file(tmp_path, capsys):
    code, err, _ = _train(tmp_path, capsys, f"model.likelihood_options={_deep(1000)}")
    assert_one_line_error(code, err, "model.likelihood_options", "32 levels")
    cfg = tmp_path / "deep.yaml"
    cfg.write_text(f"model:\n  likelihood_options: {_deep(1000)}\n")
    code, err, _ = _train(tmp_path, capsys, "--config", str(cfg))
    assert_one_line_error(code, err, "deep.yaml", "32 levels")
    block = "model:\n likelihood_options:\n" + "".join(" " * (i + 2) + "a:\n" for i in range(200)) + " " * 202 + "b: 1\n"
    cfg.write_text(block)
    code, err, _ = _train(tmp_path, capsys, "--config", str(cfg))
    assert_one_line_error(code, err, "deep.yaml", "32 levels")


def test_a_10_mb_config_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    cfg = tmp_path / "big.yaml"
    with open(cfg, "w") as f:
        f.write("model:\n  hidden: [")
        f.write("1," * 5_000_000)
        f.write("1]\n")
    read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda p, *a, **k: pytest.fail("read") if p == cfg else read(p, *a, **k))
    code, err, seconds = _train(tmp_path, capsys, "--config", str(cfg))
    assert_one_line_error(code, err, "big.yaml", "bytes", "limit")
    assert seconds < 5


def test_many_values_in_a_small_file_are_refused_quickly(tmp_path, capsys):
    cfg = tmp_path / "many.yaml"
    cfg.write_text("model:\n  hidden: [" + ",".join(["1"] * 60_000) + "]\n")  # 120 kB, 60,000 values
    code, err, seconds = _train(tmp_path, capsys, "--config", str(cfg))
    assert_one_line_error(code, err, "many.yaml", "10000 values")
    assert seconds < 5


@pytest.mark.parametrize("override,needle", [
    ("model.latent_dim=1e9", "model.latent_dim = 1000000000"),
    ("model.hidden=[65536, 65536]", "2**30"),
    ("model.hidden=[100000]", "model.hidden = 100000"),
    ("model.hidden=[" + ",".join(["4"] * 65) + "]", "model.hidden lists 65 entries"),
    ("model.conv_channels=[70000]", "model.conv_channels"),
    ("data.image_size=[100000, 100000]", "data.image_size"),
])
def test_sizes_above_the_limits_are_refused(tmp_path, capsys, override, needle):
    code, err, _ = _train(tmp_path, capsys, override)
    assert_one_line_error(code, err, needle, "limit")


def test_option_sizes_are_bounded(tmp_path, capsys):
    code, err, _ = _train(tmp_path, capsys, "model.posterior=iaf", "model.posterior_options={steps: 1e9}")
    assert_one_line_error(code, err, "model.posterior_options.steps", "65536")
    code, err, _ = _train(tmp_path, capsys, "model.objective=factor-vae", "model.objective_options={hidden: [1e7]}")
    assert_one_line_error(code, err, "model.objective_options.hidden", "65536")


def test_ordinary_configs_pass(tmp_path):
    from vaekit.config import apply_overrides, load_config
    from vaekit.registry import load_preset

    cfg = tmp_path / "ok.yaml"
    cfg.write_text("model:\n  likelihood: gaussian\n  likelihood_options: {sigma: 0.1}\n  hidden: &h [512, 256]\n"
                   "  conv_channels: *h\ntrain:\n  logger_options: {mlflow: {tracking_uri: 'file:/tmp/x'}}\n")
    c = load_config(cfg, load_preset("digits-quick"))
    c = apply_overrides(c, ["model.latent_dim=64", "model.posterior=iaf",
                            "model.posterior_options={steps: 4, hidden: [320, 320], context: 64}"])
    assert c.model.hidden == c.model.conv_channels == [512, 256] and c.model.likelihood_options == {"sigma": 0.1}
