"""`vaekit classify|evaluate|plot|report` on the session's tiny M2 run (tests/conftest.py ``m2_run``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from vaekit.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def m2_test(m2_run):
    """(model, test inputs and labels as `vaekit classify` sees them) of the M2 run."""
    from vaekit.apps import load_inputs
    from vaekit.runs import load_run

    cfg, model, doc = load_run(m2_run[0])
    return model, load_inputs(cfg, doc, None, "test", evaluated=True)


def test_classify_an_m2_run_predicts_argmax_q_y_given_x(m2_run, m2_test, tmp_path, capsys):
    run_dir, summary = m2_run
    model, d = m2_test
    code, out, err = run(capsys, "classify", run_dir, "-o", tmp_path / "p.csv", "--json")
    assert code == 0, err
    res = json.loads(out)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    pred = np.array([int(float(r["pred"])) for r in rows])
    np.testing.assert_array_equal(pred, model.predict(d.x).numpy())
    assert res["score"] == "q" and res["classes"] == list(range(10)) and res["n"] == res["n_scored"] == len(d.x)
    assert res["error"] == pytest.approx(summary["test"]["error"]) == pytest.approx(1 - res["accuracy"])
    conf = np.array(res["confusion"])  # rows: true class, columns: predicted class
    assert conf.shape == (10, 10) and conf.sum() == len(d.x)
    assert np.trace(conf) == round(res["accuracy"] * len(d.x))
    np.testing.assert_array_equal(conf.sum(1), np.bincount(d.y.numpy(), minlength=10))
    # the CSV's log p(class | x) are log q(y|x)
    logq = torch.log_softmax(model.class_logits(d.x[:5]).double(), -1).numpy()
    got = np.array([[float(r[f"log_p_class_{c}"]) for c in range(10)] for r in rows[:5]])
    np.testing.assert_allclose(got, logq, atol=1e-5)
    code, out, _ = run(capsys, "classify", run_dir)
    assert code == 0 and "argmax q(y|x)" in out and f"error {100 * res['error']:.2f} %" in out
    assert "confusion matrix (rows: true class, columns: predicted class)" in out


def test_classify_an_m2_run_by_the_generative_rule(m2_run, capsys):
    code, out, err = run(capsys, "classify", m2_run[0], "--score", "elbo", "--first", "20", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["score"] == "elbo" and res["n"] == 20 and 0.0 <= res["error"] <= 1.0


def test_classify_refuses_to_mix_an_m2_run_with_others(m2_run, capsys):
    for argv, match in (((m2_run[0], m2_run[0]), "has its own classifier q(y|x) (an M2 run): give it alone"),
                        ((m2_run[0], "--score", "bpd"), "--score must be one of loglik, elbo (one run per class) "
                                                        "or q, elbo, loglik (an M2 run)")):
        code, out, err = run(capsys, "classify", *argv)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1 and not out


def test_evaluate_an_m2_run_reports_elbo_log_px_and_the_error(m2_run, m2_test, capsys):
    from vaekit.data import subset_index
    from vaekit.evaluation.metrics import classification_error

    model, d = m2_test
    code, out, err = run(capsys, "evaluate", m2_run[0], "--iw-samples", "3", "--limit", "40", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 40 and np.isfinite(res["elbo"]) and np.isfinite(res["log_px"])
    idx = subset_index(len(d.x), 40)
    assert res["error"] == pytest.approx(classification_error(model, d.x[idx], d.y[idx]))
    code, out, _ = run(capsys, "evaluate", m2_run[0], "--iw-samples", "2", "--first", "10")
    assert code == 0 and "error of q(y|x)" in out and "log p(x), K=2" in out


def test_plot_and_report_an_m2_run(m2_run, tmp_path, capsys):
    code, out, err = run(capsys, "plot", m2_run[0], "--kind", "analogies", "--out", tmp_path)
    assert code == 0 and (tmp_path / "analogies.png").is_file(), err
    code, _, err = run(capsys, "plot", m2_run[0], "--kind", "traversals", "--out", tmp_path)
    assert code == 2 and "needs a model with the capability 'continuous'" in err and "M2 has" in err
    code, out, err = run(capsys, "report", m2_run[0], "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert 'id="fig-analogies"' in page and 'id="fig-class-samples"' in page
    assert "test classification error of q(y|x)" in page
