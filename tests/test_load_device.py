"""A run is loaded onto the device a command asks for, whatever ``train.device`` it was trained with: a run
trained on a GPU is evaluated, sampled, drawn and loaded on a machine without one."""

from __future__ import annotations

import pytest
import torch
import yaml

import vaekit
from vaekit.cli import main
from vaekit.process_state import preserve_process_state


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """A tiny digits run whose config.yaml says it was trained with train.device=cuda."""
    from vaekit.config import apply_overrides
    from vaekit.registry import load_preset
    from vaekit.runs import train_run

    run_dir = tmp_path_factory.mktemp("gpu") / "run"
    cfg = apply_overrides(load_preset("digits-quick"), ["train.steps=20", "train.val_every=10", "model.hidden=[16]",
                                                        "model.latent_dim=2", "train.threads=1"])
    cfg.train.progress = False
    train_run(cfg, run_dir)
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    doc["train"]["device"] = "cuda"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return run_dir


def run(capsys, *argv):
    with preserve_process_state():
        code = main([str(a) for a in argv])
    return code, *capsys.readouterr()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_run_trained_on_cuda_is_used_on_a_machine_without_one(cuda_run, tmp_path, capsys):
    for argv in (["evaluate", cuda_run, "--iw-samples", 5, "--limit", 20, "--json"],
                 ["evaluate", cuda_run, "--iw-samples", 5, "--limit", 20, "--device", "cpu", "--json"],
                 ["sample", cuda_run, "-n", 4, "-o", tmp_path / "s.png"],
                 ["plot", cuda_run, "--kind", "reconstructions", "--out", tmp_path],
                 ["embed", cuda_run, "--limit", 5, "-o", tmp_path / "z.npy"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv[0], err)
    model = vaekit.load(cuda_run)
    assert next(model.parameters()).device.type == "cpu"
    # training on needs the device it names: the one-line error says which key to change
    code, out, err = run(capsys, "train", "--resume", cuda_run, "train.steps=30")
    assert code == 2 and "train.device=cuda" in err and "train.device=cpu" in err
    code, out, err = run(capsys, "train", "--resume", cuda_run, "train.steps=30", "train.device=cpu", "--quiet")
    assert code == 0, err
