"""Silently wrong inputs are refused: impossible config values, option types, counts of zero, tiny datasets,
abbreviated flags; the final line says how many steps were skipped; a huge finite loss is warned about."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, snapshot


@pytest.mark.parametrize("override,needle", [
    ("train.steps=-5", "train.steps"), ("train.steps=0", "train.steps"), ("model.latent_dim=0", "model.latent_dim"),
    ("model.hidden=[-5]", "model.hidden"), ("train.threads=0", "train.threads"), ("train.epochs=0", "train.epochs"),
    ("train.batch_size=0", "train.batch_size"), ("train.lr=-1", "train.lr"), ("train.lr=.nan", "train.lr"),
    ("model.beta=-1", "model.beta"), ("eval.iw_samples=0", "eval.iw_samples"),
    ("model.dropout=1.5", "model.dropout"), ("data.val_fraction=1.0", "data.val_fraction"),
    ("model.likelihood_options={sigma: abc}", "sigma"), ("model.posterior_options={stepz: 2}", "steps"),
])
def test_impossible_values_are_refused_before_anything_is_written(tmp_path, capsys, override, needle):
    extra = ["model.likelihood=gaussian"] if "likelihood_options" in override else []
    extra += ["model.posterior=iaf"] if "posterior_options" in override else []
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, *extra, override)
    last = assert_one_line_error(code, err, needle)
    assert "not supported between" not in last
    assert not (tmp_path / "run").exists()


def test_evaluate_counts_of_zero(trained, capsys):
    for argv, needle in ((["--iw-samples", "0"], "--iw-samples"), (["--threads", "0"], "--threads")):
        code, _, err = cli(capsys, "evaluate", trained, *argv)
        assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("rows", [1, 3])
def test_a_dataset_too_small_to_split_is_refused_up_front(tmp_path, capsys, rows):
    f = tmp_path / "tiny.npy"
    np.save(f, np.random.default_rng(0).random((rows, 4)).astype(np.float32))
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, "data.name=arrays",
                       f"data.path={f}", "model.likelihood=gaussian")
    assert_one_line_error(code, err, "give more examples")
    assert not (tmp_path / "run").exists()


def test_no_prefix_matching_and_inpaint_takes_data(trained, tmp_path, capsys):
    """The README's `vaekit inpaint RUN --denoise --data noisy.npy` reads the user's file (not --data-dir)."""
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32))
    code, out, err = cli(capsys, "inpaint", trained, "--denoise", "--data", noisy, "--steps", "2",
                         "-o", tmp_path / "clean.npy")
    assert code == 0, err
    assert "noisy.npy" in out and np.load(tmp_path / "clean.npy").shape == (3, 1, 8, 8)
    with pytest.raises(SystemExit) as e:  # an abbreviation is an unknown flag now
        cli(capsys, "evaluate", trained, "--iw", "5")
    assert e.value.code == 2
    assert "unrecognized arguments: --iw" in capsys.readouterr().err


def test_done_line_counts_skipped_steps_and_huge_losses_warn(trained_out, tmp_path, capsys):
    import shutil

    from vaekit.cli.train import _warn_huge_loss

    trained, out = trained_out
    assert "0 skipped as non-finite" in out
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 99, "loss": 4e27}) + "\n")
    _warn_huge_loss(run)
    assert "diverged" in capsys.readouterr().err


def test_evaluate_of_a_diverged_run(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--quiet", "--out", run, *QUICK, "train.lr=100000.0",
                       "model.likelihood=gaussian")
    assert code in (0, 1) and "Traceback" not in err
    before = snapshot(run)
    code, _, err = cli(capsys, "evaluate", run, "--iw-samples", "2")
    assert_one_line_error(code, err, "diverged")
    assert snapshot(run) == before


def test_download_without_network_leaves_no_folder(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def no_network(*a, **kw):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    code, _, err = cli(capsys, "datasets", "--download", "mnist", "--data-dir", tmp_path / "data")
    assert_one_line_error(code, err, "could not download", "network")
    assert not (tmp_path / "data").exists()


def test_paired_comparison_of_two_runs(trained, tmp_path, capsys):
    """A run against itself: difference exactly 0 with s.e. 0 (same examples, same noise); a different run's
    paired s.e. is smaller than the spread of either run's own mean."""
    code, out, err = cli(capsys, "compare", trained, trained, "-k", "3", "--limit", "50", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["difference"] == 0.0 and res["difference_stderr"] == 0.0 and res["n"] == 50
    other = tmp_path / "other"
    assert cli(capsys, "train", "--quiet", "--out", other, *QUICK, "train.steps=10", "train.val_every=5")[0] == 0
    code, out, err = cli(capsys, "compare", trained, other, "-k", "3", "--limit", "50", "--json")
    res = json.loads(out)
    assert code == 0 and res["difference_stderr"] < max(res["log_px_a_stderr"], res["log_px_b_stderr"])
    assert abs(res["difference"] - (res["log_px_a"] - res["log_px_b"])) < 1e-6
