"""`vaekit disentanglement RUN` end to end on a tiny dSprites run (JSON, table, figures) and its bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from vaekit.cli import main

QUICK = ["data.name=dsprites", "data.dataset_options={n_train: 256, n_val: 64, n_test: 64}", "train.steps=4",
         "train.val_every=4", "model.hidden=[16]", "model.latent_dim=3", "train.threads=1", "train.batch_size=64",
         "model.objective=beta-tcvae", "model.beta=6", "model.warmup_steps=0", "model.free_bits=0"]
SMALL = ["--num-train", "200", "--num-eval", "100", "--metrics", "mig", "modularity"]  # (few renders)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clidis") / "run"
    assert main(["train", "--quiet", "--out", str(d), *QUICK]) == 0
    return d


def test_json_document_figures_and_table(run_dir, capsys):
    capsys.readouterr()
    assert main(["disentanglement", str(run_dir), "--json", *SMALL]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["metrics"]) == {"mig", "modularity"}
    assert 0.0 <= doc["metrics"]["mig"]["mig"] <= 1.0 and doc["sizes"] == {"num_train": 200, "num_eval": 100}
    codes = doc["codes"]
    assert codes["factors"] == ["shape", "scale", "orientation", "pos_x", "pos_y"] and len(codes["nmi"]) == 3
    assert set(doc["figures"]) == {*codes["factors"], "traversals"}
    for path in doc["figures"].values():
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "disentanglement.json").read_text())["metrics"] == doc["metrics"]
    assert main(["disentanglement", str(run_dir), "--no-figures", "--metrics", "mig", "--num-train", "100"]) == 0
    out = capsys.readouterr().out
    assert "mig" in out and "dimension -> factor" in out


def test_a_run_without_known_factors_is_refused(run_dir, tmp_path, capsys):
    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    cfg = other / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: dsprites", "name: digits"))
    capsys.readouterr()
    assert main(["disentanglement", str(other), "--metrics", "mig"]) == 2
    err = capsys.readouterr().err
    assert "no known generative factors" in err and len(err.strip().splitlines()) == 1


def test_threads_sets_dcis_processes_with_the_same_values_and_bad_values_are_refused(run_dir, capsys):
    docs = []
    for threads in ("1", "2"):
        capsys.readouterr()
        assert main(["disentanglement", str(run_dir), "--json", "--no-figures", "--metrics", "dci",
                     "--num-train", "200", "--num-eval", "100", "--threads", threads]) == 0
        docs.append(json.loads(capsys.readouterr().out)["metrics"]["dci"])
    assert {k: v for k, v in docs[0].items() if k != "seconds"} == {k: v for k, v in docs[1].items() if k != "seconds"}
    assert main(["disentanglement", str(run_dir), "--metrics", "mig", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
