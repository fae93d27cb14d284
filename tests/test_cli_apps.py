"""`vaekit embed|anomaly|classify|inpaint|refine` end to end on tiny digits runs, and every bad-input path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.cli import main

QUICK = ["train.steps=30", "train.val_every=10", "model.hidden=[16]", "model.latent_dim=2", "train.threads=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("apps")
    out = {}
    for name, extra in (("all", []), ("c0", ["data.classes=[0]"]), ("c1", ["data.classes=[1]"])):
        out[name] = root / name
        assert main(["train", "--quiet", "--out", str(out[name]), *QUICK, *extra]) == 0
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _test_split(run_dir):
    from vaekit.apps import load_inputs
    from vaekit.runs import load_run

    cfg, model, doc = load_run(run_dir)
    return model, load_inputs(cfg, doc, None, "test")


def test_embed_writes_posterior_means(runs, tmp_path, capsys):
    code, out, _ = run(capsys, "embed", runs["all"], "-o", tmp_path / "z.csv")
    assert code == 0 and "posterior means of digits/test" in out
    model, d = _test_split(runs["all"])
    rows = _rows(tmp_path / "z.csv")
    assert list(rows[0]) == ["z0", "z1", "label"] and len(rows) == len(d.x)
    got = np.array([[r["z0"], r["z1"]] for r in rows])
    np.testing.assert_allclose(got, model.embed(d.x).numpy(), rtol=1e-5, atol=1e-6)
    assert [r["label"] for r in rows] == d.y.tolist()
    assert run(capsys, "embed", runs["all"], "-o", tmp_path / "v.npy", "--what", "logvar", "--limit", "7")[0] == 0
    assert np.load(tmp_path / "v.npy").shape == (7, 2)


def test_embedding_estimator_loads_a_run(runs):
    from vaekit.apps import VAEEmbedding

    model, d = _test_split(runs["all"])
    X = d.x.reshape(len(d.x), -1).numpy()
    np.testing.assert_allclose(VAEEmbedding(run_dir=str(runs["all"])).fit(X).transform(X), model.embed(d.x).numpy(),
                               atol=1e-6)
    with pytest.raises(ValueError, match="X has 10 features, but VAEEmbedding is expecting 64 features"):
        VAEEmbedding(run_dir=str(runs["all"])).fit(X[:, :10])


def test_anomaly_scores_flags_and_auroc(runs, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    code, out, _ = run(capsys, "anomaly", runs["c0"], "-o", tmp_path / "a.csv", "-k", "5", "--fpr", "0.1", "--json",
                       "--error-maps", tmp_path / "m.npy")
    assert code == 0
    res = json.loads(out)
    rows = _rows(tmp_path / "a.csv")
    assert len(rows) == res["n"] and res["n_anomalies"] == sum(r["label"] != 0 for r in rows)
    assert all(r["anomaly"] == (r["label"] != 0) for r in rows)  # the run models digit 0: the rest are anomalies
    assert np.load(tmp_path / "m.npy").shape == (len(rows), 1, 8, 8)
    for s in res["scores"]:
        name = s["score"]
        assert s["fpr_calibration"] <= 0.1  # calibrated on the run's own validation digits 0
        assert all(r[f"flag_{name}"] == (r[name] > s["threshold"]) for r in rows)
        y, v = [r["anomaly"] for r in rows], [r[name] for r in rows]
        assert s["auroc"] == pytest.approx(roc_auc_score(y, v), abs=1e-3)  # CSV values have 6 digits
    code, out, _ = run(capsys, "anomaly", runs["all"], "-o", tmp_path / "b.csv", "-k", "2", "--scores", "recon_error")
    assert code == 0 and "no anomaly labels" in out


def test_classify_reports_accuracy(runs, tmp_path, capsys):
    code, out, _ = run(capsys, "classify", runs["c0"], runs["c1"], "-k", "5", "-o", tmp_path / "p.csv", "--json")
    assert code == 0
    res = json.loads(out)
    rows = _rows(tmp_path / "p.csv")
    scored = [r for r in rows if r["label"] in (0, 1)]
    assert res["n_scored"] == len(scored) > 0
    assert res["accuracy"] == pytest.approx(np.mean([r["pred"] == r["label"] for r in scored]))
    assert res["accuracy"] > 0.5  # 0 and 1 differ a lot, even after 30 steps
    assert list(rows[0])[-2:] == ["log_p_class_0", "log_p_class_1"]
    code, out, _ = run(capsys, "classify", runs["c1"], runs["c0"], "--score", "elbo", "--uniform-prior")
    assert code == 0 and "accuracy" in out


def test_inpaint_and_denoise(runs, tmp_path, capsys):
    code, out, _ = run(capsys, "inpaint", runs["all"], "--mask", "bottom", "--first", "12", "--steps", "20",
                       "-o", tmp_path / "o.npy", "--figure", tmp_path / "f.png")
    assert code == 0 and "completion" in out and (tmp_path / "f.png").is_file()
    _, d = _test_split(runs["all"])
    got = torch.from_numpy(np.load(tmp_path / "o.npy"))
    assert got.shape == (12, 1, 8, 8) and torch.equal(got[:, :, :4], d.x[:12, :, :4])  # the observed top half
    np.save(tmp_path / "mask.npy", np.eye(8, dtype=np.uint8))
    code, out, _ = run(capsys, "inpaint", runs["all"], "--mask", tmp_path / "mask.npy", "--limit", "3", "--fill", "0.5")
    assert code == 0 and "0.5 fill" in out
    code, out, _ = run(capsys, "inpaint", runs["all"], "--denoise", "--limit", "3", "--steps", "5", "-o", tmp_path / "d.npy")
    assert code == 0 and np.load(tmp_path / "d.npy").shape == (3, 1, 8, 8)


def test_refine_reports_a_nonnegative_gap(runs, tmp_path, capsys):
    code, out, _ = run(capsys, "refine", runs["all"], "--limit", "20", "--steps", "10", "-k", "10", "--json",
                       "-o", tmp_path / "r.csv")
    assert code == 0
    res = json.loads(out)
    assert res["n"] == 20 and res["gap_min"] >= 0 and res["elbo_refined"] >= res["elbo_amortised"]
    rows = _rows(tmp_path / "r.csv")
    assert all(r["elbo_refined"] >= r["elbo_amortised"] for r in rows) and "log_px" in rows[0]


def test_data_files(runs, tmp_path, capsys):
    _, d = _test_split(runs["all"])
    np.save(tmp_path / "flat.npy", d.x[:5].reshape(5, 64).numpy())  # rows of 64 values: reshaped to (1, 8, 8)
    code, out, _ = run(capsys, "embed", runs["all"], "--data", tmp_path / "flat.npy", "-o", tmp_path / "z.npy")
    assert code == 0 and np.load(tmp_path / "z.npy").shape == (5, 2)
    from PIL import Image

    Image.fromarray((d.x[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "one.png")
    assert run(capsys, "embed", runs["all"], "--data", tmp_path / "one.png", "-o", tmp_path / "z1.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "z1.npy"), np.load(tmp_path / "z.npy")[:1], atol=0.05)
    Image.open(tmp_path / "one.png").convert("RGB").save(tmp_path / "rgb.png")  # a grey model reads it as grey
    assert run(capsys, "embed", runs["all"], "--data", tmp_path / "rgb.png", "-o", tmp_path / "z2.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "z2.npy"), np.load(tmp_path / "z1.npy"), atol=1e-6)


def _bad(capsys, *argv, match: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("loaded ")]
    assert len(lines) == 1 and "Traceback" not in err, lines
    assert match in lines[0], lines


def test_bad_inputs_give_one_line_and_exit_2(runs, tmp_path, capsys):
    np.save(tmp_path / "five.npy", np.random.default_rng(0).uniform(0, 1, size=(4, 5)).astype("float32"))
    _bad(capsys, "embed", runs["all"], "--data", tmp_path / "five.npy", "-o", tmp_path / "z.npy",
         match="data of shape (5,) per example does not fit a model built for (1, 8, 8)")
    _bad(capsys, "embed", runs["all"], "-o", tmp_path / "z.txt", match="must end in .npy or .csv")
    _bad(capsys, "embed", runs["all"], "--data", "mnst", "-o", tmp_path / "z.npy",
         match="is neither a dataset name")
    _bad(capsys, "embed", tmp_path / "nope", "-o", tmp_path / "z.npy", match="not found")
    _bad(capsys, "embed", runs["all"], "--data", "arrays", "-o", tmp_path / "z.npy",
         match="give the file or folder itself as --data")
    np.save(tmp_path / "m.npy", np.ones((3, 3), dtype=np.uint8))
    _bad(capsys, "inpaint", runs["all"], "--mask", tmp_path / "m.npy", "--limit", "2",
         match="a mask of shape (3, 3) does not fit inputs of shape (2, 1, 8, 8)")
    _bad(capsys, "inpaint", runs["all"], "--limit", "2", match="give either --mask")
    _bad(capsys, "inpaint", runs["all"], "--mask", "top", "--fill", "grey", match="--fill must be 'mean' or a number")
    _bad(capsys, "inpaint", runs["all"], "--mask", "diag", "--limit", "2", match="neither a file")
    _bad(capsys, "classify", runs["c0"], runs["all"], match="trained without data.classes, so it models no single class")
    _bad(capsys, "classify", runs["c0"], match="one run folder per class (at least two)")
    _bad(capsys, "classify", runs["c0"], runs["c0"], match="several runs model class 0")
    _bad(capsys, "classify", runs["c0"], runs["c1"], "--score", "bpd", match="--score must be one of loglik, elbo")
    _bad(capsys, "classify", runs["c0"], runs["c1"], "--score", "q", match="--score q is an M2 run's own classifier")
    _bad(capsys, "anomaly", runs["c0"], "-o", tmp_path / "a.csv", "--fpr", "1.5", match="--fpr must be in (0, 1)")
    _bad(capsys, "anomaly", runs["c0"], "-o", tmp_path / "a.csv", "--scores", "nll", match="unknown score 'nll'")
    _bad(capsys, "refine", runs["all"], "--steps", "-3", match="steps must be a non-negative integer")
