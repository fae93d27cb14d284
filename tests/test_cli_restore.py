"""`vaekit restore` end to end on a tiny digits run (JSON, outputs, figure, bad input) and `refine --init prior`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main

QUICK = ["train.steps=30", "train.val_every=10", "model.hidden=[16]", "model.latent_dim=2", "train.threads=1"]
FAST = ["--steps", "10", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("restore") / "run"
    assert main(["train", "--quiet", "--out", str(out), *QUICK]) == 0
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _bad(capsys, *argv, match: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("loaded ")]
    assert len(lines) == 1 and "Traceback" not in err, lines
    assert match in lines[0], lines


def test_super_resolution_json_outputs_and_figure(run_dir, tmp_path, capsys):
    from vaekit.apps import load_inputs, psnr_ssim
    from vaekit.runs import load_run

    code, out, _ = run(capsys, "restore", run_dir, "--operator", "downsample:2+noise:0.05", "--first", "10",
                       "--samples", "3", "--proposals", "16", *FAST, "--json", "-o", tmp_path / "r.npz",
                       "--figure", tmp_path / "f.png")
    assert code == 0
    res = json.loads(out)  # one JSON document, nothing else on stdout
    assert res["operator"] == "downsample:2+noise:0.05" and res["task"] == "super-resolution" and res["n"] == 10
    assert set(res["methods"]) == {"vae_map", "vae_posterior_mean", "nearest", "bicubic"}
    assert all({"psnr", "psnr_stderr", "ssim", "ssim_stderr"} <= set(m) for m in res["methods"].values())
    assert 1 <= res["ess_min"] <= res["ess_mean"] <= 16 and res["observed_shape"] == [1, 4, 4]
    arrays = np.load(tmp_path / "r.npz")
    assert arrays["restored"].shape == (10, 1, 8, 8) and arrays["samples"].shape == (10, 3, 1, 8, 8)
    assert arrays["observed"].shape == (10, 1, 4, 4) and arrays["z"].shape == (10, 2)
    cfg, _, doc = load_run(run_dir)
    x = load_inputs(cfg, doc, None, "test", first=10).x
    import torch

    psnr, ssim = psnr_ssim(torch.from_numpy(arrays["restored"]), x)
    assert res["methods"]["vae_map"]["psnr"] == pytest.approx(psnr.mean(), abs=1e-4)
    assert res["methods"]["vae_map"]["ssim"] == pytest.approx(ssim.mean(), abs=1e-4)
    from PIL import Image

    w, h = Image.open(tmp_path / "f.png").size  # tiles of 8 x 7 pixels and a 2-pixel border
    assert (w - 2) // 58 == 8 and (h - 2) // 58 == 9  # rows: observed, 2 baselines, MAP, 3 samples, std, original


@pytest.mark.parametrize("spec, names", [("blur:1", {"richardson_lucy", "wiener"}), ("mask:bottom", {"mean_fill"}),
                                         ("noise:0.2", {"observed"})])
def test_every_task_has_its_baselines(run_dir, tmp_path, capsys, spec, names):
    code, out, _ = run(capsys, "restore", run_dir, "--operator", spec, "--first", "6", *FAST, "-o", tmp_path / "r.npy")
    assert code == 0 and all(n in out for n in names | {"vae_map"}) and "PSNR" in out
    assert np.load(tmp_path / "r.npy").shape == (6, 1, 8, 8)


def test_an_exact_baseline_gives_strict_json(run_dir, capsys):
    code, out, err = run(capsys, "restore", run_dir, "--operator", "identity", "--first", "4", *FAST, "--json")
    assert code == 0 and "Warning" not in err
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert res["methods"]["observed"]["psnr"] is None and res["methods"]["observed"]["ssim"] == 1.0


def test_bad_restore_input_gives_one_line_and_exit_2(run_dir, tmp_path, capsys):
    keep = tmp_path / "keep.npy"
    np.save(keep, np.arange(3))
    _bad(capsys, "restore", run_dir, "--operator", "zoom:2", "-o", keep, match="unknown operator 'zoom:2'")
    assert np.load(keep).tolist() == [0, 1, 2]  # a failed command leaves an existing output as it was
    _bad(capsys, "restore", run_dir, "--operator", "downsample:3", match="needs image sides divisible by 3")
    _bad(capsys, "restore", run_dir, "--operator", "blur:0", match="needs a positive number")
    _bad(capsys, "restore", run_dir, "--operator", "mask:top+blur:1", match="the mask must come after")
    _bad(capsys, "restore", run_dir, "--operator", "noise:0.1", "-o", tmp_path / "r.txt", match="must end in .npy or .npz")
    _bad(capsys, "restore", run_dir, "--operator", "noise:0.1", "--figure", keep / "f.png", match="is a file, not a folder")
    _bad(capsys, "restore", run_dir, "--operator", "noise:0.1", "--restarts", "0", match="restarts must be an integer")
    _bad(capsys, "restore", run_dir, "--operator", "blur:1", "--likelihood", "decoder", "--first", "2",
         match="the decoder's likelihood applies only to masks")


def test_refine_from_the_prior(run_dir, capsys):
    code, out, _ = run(capsys, "refine", run_dir, "--limit", "10", "--steps", "20", "--init", "prior", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["init"] == "prior" and res["elbo_refined"] > res["elbo_start"] != res["elbo_amortised"]
    assert res["seconds"] > 0 and res["seconds_amortised"] > 0
    code, out, _ = run(capsys, "refine", run_dir, "--limit", "10", "--steps", "20", "--init", "prior")
    assert code == 0 and "prior start ELBO" in out and "mean-field" in out
