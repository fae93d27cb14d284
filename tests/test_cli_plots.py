"""`vaekit plot` and `vaekit report` end to end on a tiny digits run, and their bad-input paths (one line, exit 2)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main

QUICK = ["train.steps=20", "train.val_every=10", "model.hidden=[16]", "model.latent_dim=2", "train.threads=1"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_out(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cliplots") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", "--quiet", "--out", str(run_dir), *QUICK]) == 0
    return run_dir, buf.getvalue()


@pytest.fixture
def trained(trained_out):
    return trained_out[0]


def test_train_prints_the_report_path(trained_out):
    run_dir, out = trained_out
    line = [ln for ln in out.splitlines() if ln.startswith("report: ")]
    assert line and Path(line[0][8:]) == run_dir / "report.html" and Path(line[0][8:]).is_file()


def test_plot_one_kind_and_all(trained, tmp_path, capsys):
    code, out, _ = run(capsys, "plot", str(trained), "--kind", "samples", "--out", str(tmp_path / "a"),
                       "--temperature", "0.5", "1.0", "1.5")
    assert code == 0 and (tmp_path / "a" / "samples.png").is_file() and "samples" in out
    from PIL import Image

    with Image.open(tmp_path / "a" / "samples.png") as im:
        assert im.size == (2 * 20 + 3 * 320 + 2 * 30, 60 + 20 + 8 * 40)  # three temperature panels
    code, out, _ = run(capsys, "plot", str(trained), "--kind", "all", "--out", str(tmp_path / "b"), "--grid", "ppf")
    assert code == 0
    names = {p.name for p in (tmp_path / "b").iterdir()}
    assert {"reconstructions.png", "samples.png", "traversals.png", "interpolation.png", "latent-map.png",
            "manifold-ppf.png", "curves.png", "kl.png"} <= names and "manifold.png" not in names
    assert "latent-gif" in out and "not drawn" in out and "snapshot_every" in out  # trained without snapshots


def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["plot", str(trained), "--kind", "histogram"])
    assert e.value.code == 2 and "invalid choice: 'histogram'" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(trained, bare, ignore=shutil.ignore_patterns("metrics.jsonl"))
    for argv, msg in [
        (("plot", str(bare), "--kind", "curves"), "no metrics.jsonl"),
        (("report", str(bare)), "no metrics.jsonl"),
        (("plot", str(tmp_path / "none"), "--kind", "samples"), "not found"),
        (("plot", str(trained), "--kind", "latent-gif"), "train.snapshot_every"),
        (("plot", str(trained), "--kind", "samples", "--temperature", "0"), "must be positive"),
        (("report", str(trained), "-o", str(tmp_path / "r.txt")), "must end in .html"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and msg in err, (argv, err)


def test_unlabelled_tabular_run_gets_an_uncoloured_latent_map_and_a_clear_no_images_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((120, 6)).astype(np.float32))  # no labels
    run_dir = tmp_path / "tab"
    code, out, err = run(capsys, "train", "--quiet", "--out", str(run_dir), "data.name=arrays",
                         f"data.path={tmp_path / 'x.npy'}", *QUICK)
    assert code == 0, err
    code, out, _ = run(capsys, "plot", str(run_dir), "--kind", "latent-map")
    assert code == 0 and (run_dir / "figures" / "latent-map.png").is_file()
    code, _, err = run(capsys, "plot", str(run_dir), "--kind", "samples")
    assert code == 2 and "needs image data" in err
    code, out, _ = run(capsys, "report", str(run_dir), "-o", str(tmp_path / "rep.html"))
    assert code == 0 and out.strip() == f"report: {tmp_path / 'rep.html'}"
    html = (tmp_path / "rep.html").read_text()
    assert "Not drawn" in html and "needs image data" in html and html.count("<img ") == 3  # latent map, curves, kl


def test_kind_names_match_the_library():
    from vaekit.cli.plots import KINDS as CLI
    from vaekit.plots.run_figures import KINDS

    assert CLI == (*KINDS, "all")
