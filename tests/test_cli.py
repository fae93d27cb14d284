"""The command line end to end on bundled data, and every bad-input path: one line, exit 2, nothing damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main

QUICK = ["train.steps=30", "train.val_every=10", "model.hidden=[32]", "model.latent_dim=3", "eval.iw_samples=20"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--quiet", "--out", str(run_dir), *QUICK]) == 0
    return run_dir


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_train_writes_a_complete_run_folder(trained):
    for name in ("config.yaml", "metrics.jsonl", "best.safetensors", "last.safetensors", "best.json",
                 "samples.png", "reconstructions.png", "summary.json"):
        assert (trained / name).is_file(), name
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["steps"] == 30 and np.isfinite(summary["test"]["elbo"])
    doc = json.loads((trained / "last.json").read_text())
    assert doc["step"] == 30 and doc["config"]["model"]["latent_dim"] == 3 and "torch" in doc["versions"]


def test_evaluate_sample_reconstruct(trained, tmp_path, capsys):
    code, out, _ = run(capsys, "evaluate", str(trained), "--iw-samples", "50", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["k"] == 50 and res["n"] > 100
    assert res["log_px"] >= res["elbo"] - 0.5 and res["log_px_stderr"] > 0
    assert 0 <= res["active_units"] <= 3
    code, out, _ = run(capsys, "evaluate", str(trained), "--iw-samples", "10", "--limit", "20")
    assert code == 0 and "log p(x)" in out and "bits/dim" in out and "(n = 20)" in out
    code, out, _ = run(capsys, "sample", str(trained), "-n", "16", "-o", str(tmp_path / "s.png"), "--temperature", "0.5")
    assert code == 0 and _png_size(tmp_path / "s.png")[0] > 8
    code, out, _ = run(capsys, "reconstruct", str(trained), "-n", "8", "-o", str(tmp_path / "r.png"))
    assert code == 0 and (tmp_path / "r.png").is_file()


def test_evaluate_precision_options(trained, capsys):
    """--precision fp32|bf16|fp16 (--bf16 the older spelling of bf16): bf16 close to fp32 on the same samples;
    fp16 on a CPU without native fp16 is one line and exit 2; an unknown name is argparse's error."""
    from vaekit.evaluation import cpu_supports_fp16

    def ev(*extra):
        code, out, err = run(capsys, "evaluate", str(trained), "--iw-samples", "10", "--limit", "40", "--json",
                             *extra)
        assert code == 0, err
        return json.loads(out)

    fp32, bf16, alias = ev(), ev("--precision", "bf16"), ev("--bf16")
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16" and bf16["bf16"] is True
    assert alias == {**bf16, "seconds": alias["seconds"]}  # --bf16 is --precision bf16
    assert 0 < abs(bf16["log_px"] - fp32["log_px"]) < 0.2 and bf16["elbo"] == fp32["elbo"]  # only the IW decoder
    code, out, _ = run(capsys, "evaluate", str(trained), "--iw-samples", "5", "--limit", "10", "--bf16")
    assert code == 0 and "bf16 decoder" in out
    if cpu_supports_fp16():
        assert abs(ev("--precision", "fp16")["log_px"] - fp32["log_px"]) < 0.2
    else:
        _bad(capsys, "evaluate", str(trained), "--precision", "fp16", match="precision fp16 needs a GPU")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(trained), "--precision", "fp8"])
    assert e.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_resume_continues_a_run(trained, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    code, out, _ = run(capsys, "train", "--quiet", "--resume", str(copy), "train.steps=40")
    assert code == 0 and "40 steps" in out
    steps = [json.loads(l)["step"] for l in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_presets_and_datasets_list(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    for name in ("digits-quick", "mnist-mlp", "mnist-conv", "binarized-mnist-vae", "frey-sigma-vae"):
        assert name in out
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "digits" in out and "binarized-mnist" in out


def _bad(capsys, *argv, match: str):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert lines and "Traceback" not in err
    assert match in lines[-1], lines
    assert len([l for l in lines if "error" in l]) == 1
    return lines[-1]


def test_bad_inputs_give_one_line_and_exit_2(trained, tmp_path, capsys):
    _bad(capsys, "train", "--preset", "mnist-mpl", match="did you mean 'mnist-mlp'")
    _bad(capsys, "train", "--out", str(tmp_path / "a"), "model.latnt_dim=3", match="did you mean 'model.latent_dim'")
    _bad(capsys, "train", "--out", str(tmp_path / "b"), "data.name=mnist", f"data.dir={tmp_path / 'nowhere'}",
         match="nowhere")
    np.save(tmp_path / "wide.npy", np.random.default_rng(0).uniform(0, 5, size=(50, 6)).astype("float32"))
    _bad(capsys, "train", "--out", str(tmp_path / "c"), "data.name=arrays", f"data.path={tmp_path / 'wide.npy'}",
         match="needs data in [0, 1]")
    np.save(tmp_path / "five.npy", np.random.default_rng(0).uniform(0, 1, size=(50, 5)).astype("float32"))
    _bad(capsys, "evaluate", str(trained), "data.name=arrays", f"data.path={tmp_path / 'five.npy'}",
         match="does not fit a model built for")
    _bad(capsys, "evaluate", str(tmp_path / "no-such-run"), match="not found")
    _bad(capsys, "sample", str(trained), "-n", "4", "-o", str(tmp_path / "x.jpg"), match="must end in .png")


def test_existing_run_folder_is_not_touched(trained, capsys):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}  # run files and figures/
    _bad(capsys, "train", "--out", str(trained), *QUICK, match="already holds a run")
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("damage", ["truncate", "junk"])
def test_corrupt_checkpoint_is_reported_and_left_alone(trained, tmp_path, capsys, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    ck = copy / "best.safetensors"
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x00garbage" * 10)
    damaged = ck.read_bytes()
    _bad(capsys, "evaluate", str(copy), match="corrupt or truncated")
    _bad(capsys, "sample", str(copy), "-o", str(tmp_path / "s.png"), match="corrupt or truncated")
    assert ck.read_bytes() == damaged and not (tmp_path / "s.png").exists()


def test_real_process_exit_code_and_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "vaekit.cli", "train", "--preset", "nope"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown preset" in p.stderr and "Traceback" not in p.stderr


def _preset_names():
    from vaekit.registry import list_presets

    return sorted(list_presets())


@pytest.fixture
def smoke_sized_splits(monkeypatch):
    """`vaekit train` loads the preset's data as usual (every file read and checked), then keeps 256 training
    (the largest preset batch) and 64 validation and test examples, drawn across each split: the validation,
    test ELBO and k-NN probe at the end of a 3-step run then take a second on MNIST-sized data, not a minute."""
    import dataclasses

    import vaekit.runs.train
    from vaekit.data import subset_index

    def cut(a, n):
        if a is None or len(a) <= n:
            return a
        return a.take(subset_index(len(a), n, None))  # held as it was (uint8 rows too)

    real = vaekit.runs.train.prepare
    sizes = {"train": 256, "val": 64, "test": 64}  # a test may shrink them further

    def prepare(cfg, **kw):
        p = real(cfg, **kw)
        s = p.splits
        small = dataclasses.replace(s, **{k: cut(getattr(s, k), n) for k, n in sizes.items()})
        return dataclasses.replace(p, splits=small)

    monkeypatch.setattr(vaekit.runs.train, "prepare", prepare)  # the name train_run calls
    return sizes


def _one_step(cfg) -> None:
    """A GPU-sized preset's data, model and objective fit together: its config validates, its data load, its
    model builds and one step of its objective on two training examples gives a finite loss and gradients."""
    import torch

    import vaekit.runs
    from vaekit.objectives.registry import make_objective

    p = vaekit.runs.prepare(cfg)
    x = p.splits.train.values()[:2].to(p.device)
    x = p.transform(x) if p.transform is not None else x
    loss = make_objective(p.cfg.model)(p.model, x, step=0).loss
    loss.backward()
    assert torch.isfinite(loss) and all(q.grad is not None for q in p.model.parameters() if q.requires_grad)


@pytest.mark.parametrize("preset", _preset_names())
def test_every_preset_builds_and_trains_a_few_steps(preset, tmp_path, capsys, smoke_sized_splits):
    """Each preset's data, model and objective fit together, through the whole `vaekit train` (3 steps on a
    few hundred examples of the preset's data, the final log p(x) estimate with 4 importance samples instead of
    the preset's 100-5,000; skipped when its data files are absent)."""
    from vaekit.data import dataset_status
    from vaekit.registry import load_preset

    name = load_preset(preset).data.name
    status = next(r for r in dataset_status() if r["name"] == name)  # the files' presence, without loading them
    if not status["available"]:
        pytest.skip(f"data for {preset} not available: {name} looked for in {status['where']}"[:160])
    short = ["train.steps=3", "train.val_every=3", "train.time_limit=null", "eval.iw_samples=4"]
    extra = []
    if load_preset(preset).model.m1_run:  # M1+M2 names the M1 run it stacks on: train that preset first
        code, _, err = run(capsys, "train", "--quiet", "--preset", "mnist-m1", "--out", str(tmp_path / "m1"), *short)
        assert code == 0, err
        extra = [f"model.m1_run={tmp_path / 'm1'}"]
        if load_preset(preset).model.m1_units == "active":  # a 3-step M1 has no active unit yet (a clear error)
            code, _, err = run(capsys, "train", "--quiet", "--preset", preset, "--out", str(tmp_path / "none"),
                               *short, *extra)
            assert code == 2 and "has no active unit" in err and not (tmp_path / "none" / "config.yaml").exists()
            extra.append("model.m1_units=null")
    if preset.endswith("-large"):  # a paper-sized preset for a GPU (minutes per CPU step, and per figure)
        _one_step(load_preset(preset))
        return
    code, out, err = run(capsys, "train", "--quiet", "--preset", preset, "--out", str(tmp_path / "r"), *short, *extra)
    assert code == 0, err
    # a preset that trains on train + val (data.merge_val) validates nothing: its 'best' is 'last'
    best = "last" if load_preset(preset).data.merge_val else "best"
    assert (tmp_path / "r" / f"{best}.safetensors").exists()


def test_evaluate_subsets_spread_or_first():
    import torch

    from vaekit.data import subset_index

    def _subset(x, limit, first):
        return x[subset_index(len(x), limit, first)]

    x = torch.arange(1000)
    a = _subset(x, 100, None)
    assert torch.equal(a, _subset(x, 100, None))  # the same points for every run
    assert len(a.unique()) == 100 and torch.equal(a, a.sort().values)
    assert a.min() < 50 and a.max() > 950  # drawn across the file, not its head (ordered-by-digit test sets)
    assert torch.equal(_subset(x, None, 30), x[:30]) and torch.equal(_subset(x, 5000, None), x)
    with pytest.raises(ValueError, match="not both"):
        _subset(x, 3, 3)


def test_merge_val_trains_on_train_plus_val(tmp_path, capsys):
    from vaekit.data import load_data

    splits = load_data("digits")
    merged = splits.merge_val()
    assert len(merged.train) == len(splits.train) + len(splits.val) and len(merged.val) == 0
    assert torch_equal(merged.train.x[len(splits.train):], splits.val.x)
    assert torch_equal(merged.train.y[:len(splits.train)], splits.train.y)
    assert torch_equal(merged.test.x, splits.test.x)
    run_dir = tmp_path / "merged"
    assert run(capsys, "train", "--quiet", "--out", str(run_dir), *QUICK, "data.merge_val=true")[0] == 0
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and not any("val_elbo" in r for r in rows)  # nothing to validate on
    assert np.isfinite(json.loads((run_dir / "summary.json").read_text())["test"]["elbo"])
    code, out, _ = run(capsys, "evaluate", str(run_dir), "--iw-samples", "5", "--json")
    assert code == 0 and json.loads(out)["n"] == len(splits.test)  # 'best' falls back to the last weights
    _bad(capsys, "evaluate", str(run_dir), "--split", "val", match="folds val into training")


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
