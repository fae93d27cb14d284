"""The command line at its edges: own data named by its path, `train --device`, runs named after their data, clean
likelihood errors, interrupted training, default output files."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from vaekit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _pngs(folder, n=4):
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((8, 8), 30 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_data_path_picks_the_reader_from_what_it_points_at(tmp_path, capsys):
    np.save(tmp_path / "features.npy", np.random.default_rng(0).uniform(0, 1, size=(40, 5)).astype("float32"))
    code, out, err = run(capsys, "train", "--print-config", f"data.path={tmp_path / 'features.npy'}")
    assert code == 0 and yaml.safe_load(out)["data"]["name"] == "arrays"
    assert "data.name=arrays" in err and err.strip().count("\n") == 0
    folder = _pngs(tmp_path / "pngs")
    code, out, err = run(capsys, "train", "--print-config", f"data.path={folder}")
    assert code == 0 and yaml.safe_load(out)["data"]["name"] == "image-folder" and "data.name=image-folder" in err
    # a name given explicitly is kept
    code, out, _ = run(capsys, "train", "--print-config", "data.name=image-folder", f"data.path={folder}")
    assert code == 0 and yaml.safe_load(out)["data"]["name"] == "image-folder"


def test_data_path_that_cannot_be_told_names_the_key_to_add(tmp_path, capsys):
    (tmp_path / "table.txt").write_text("1 2 3\n")
    code, out, err = run(capsys, "train", "--out", str(tmp_path / "r"), f"data.path={tmp_path / 'table.txt'}")
    assert code == 2 and out == "" and err.strip().count("\n") == 0
    assert "data.name=arrays" in err and "data.name=image-folder" in err
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "r"), f"data.path={tmp_path / 'missing'}")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "r").exists()


def test_train_takes_device(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--print-config", "--device", "auto")
    assert code == 0 and yaml.safe_load(out)["train"]["device"] == "auto"
    code, out, _ = run(capsys, "train", "--print-config")
    assert code == 0 and yaml.safe_load(out)["train"]["device"] == "cpu"  # the config's own, when not given
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "r"), "--device", "tpu", "train.steps=2")
    assert code == 2 and "train.device" in err and err.strip().count("\n") == 0 and not (tmp_path / "r").exists()


QUICK = ["train.steps=6", "train.val_every=3", "model.hidden=[16]", "model.latent_dim=2", "eval.iw_samples=4"]


def test_a_run_on_own_data_is_named_after_its_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "features.npy", np.random.default_rng(0).uniform(0, 1, size=(60, 5)).astype("float32"))
    code, out, err = run(capsys, "train", "--quiet", "data.path=features.npy", *QUICK)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("features-")
    assert f"training on features.npy (arrays) into {run_dir.relative_to(tmp_path)}" in err
    assert "digits" not in err and yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "features"
    code, out, err = run(capsys, "train", "--quiet", "--out", "named", "name=mine", "data.path=features.npy", *QUICK)
    assert code == 0 and "training mine on features.npy (arrays) into named" in err


def test_real_valued_csv_gets_one_clean_line_and_a_tabular_run_one_skip_line(tmp_path, capsys, caplog):
    import logging

    x = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
    x[3, 1] = -3.2
    np.savetxt(tmp_path / "table.csv", x, delimiter=",", fmt="%.4f")
    code, out, err = run(capsys, "train", "--out", str(tmp_path / "r"), f"data.path={tmp_path / 'table.csv'}", *QUICK)
    assert code == 2 and not (tmp_path / "r").exists()
    line = err.strip().splitlines()[-1]
    assert line.startswith("vaekit train: error: the bernoulli likelihood needs data in [0, 1], and these data")
    assert "set model.likelihood=sigma-vae" in line and line.count("likelihood ") == 1
    with caplog.at_level(logging.INFO, logger="vaekit"):
        code, out, err = run(capsys, "train", "--out", str(tmp_path / "r"), f"data.path={tmp_path / 'table.csv'}",
                             "model.likelihood=sigma-vae", *QUICK)
    assert code == 0, err
    skips = [r.getMessage() for r in caplog.records if "image" in r.getMessage()]
    assert len(skips) == 1 and skips[0].startswith("figures skipped for tabular data: reconstructions, samples"), skips


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stopped_training_names_its_last_step_and_the_resume_command(tmp_path, sig, code):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import vaekit

    env = {**os.environ, "PYTHONPATH": str(Path(vaekit.__file__).parents[1])}
    run_dir = tmp_path / "run"
    # Ctrl-C as a terminal delivers it: SIGINT at its default in the child, whatever the test process inherited
    # (a SIGINT ignored here would be ignored in the child, which Python then never turns into KeyboardInterrupt)
    p = subprocess.Popen([sys.executable, "-m", "vaekit.cli", "train", "--quiet", "--out", str(run_dir),
                          "train.steps=1000000", "train.val_every=5", "train.checkpoint_every=5", "model.hidden=[8]",
                          "model.latent_dim=2"], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.json").is_file():
            assert p.poll() is None and time.monotonic() < deadline, "the run did not reach its first checkpoint"
            time.sleep(0.2)
        time.sleep(0.5)
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=60)
    finally:
        p.kill() if p.poll() is None else None
    step = json.loads((run_dir / "last.json").read_text())["step"]
    assert p.returncode == code, err
    line = err.strip().splitlines()[-1]
    assert f"the last checkpoint is at step {step}; continue with `vaekit train --resume {run_dir}`" in line
    assert "Traceback" not in err and not list(run_dir.glob(".*lock*"))


def test_train_and_evaluate_print_the_same_test_elbo_and_say_what_it_is_on(tmp_path, capsys):
    import json
    import re

    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--quiet", "--out", str(run_dir), *QUICK)
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    n = summary["test"]["n"]
    m = re.search(r"test ELBO (-?\d+\.\d+) nats \(the best checkpoint on the (\d+) test examples, one sample each, "
                  r"seed 0\)", out)
    assert m and int(m.group(2)) == n, out
    knn = next(line for line in out.splitlines() if "NN fitted" in line)
    t = summary["test"]
    assert (f"a 5-NN fitted on {t['n_train']} training inputs labels" in knn
            and f"% of {t['n_test']} test reconstructions correctly (those {t['n_test']} test inputs themselves: "
            in knn), knn
    code, out, err = run(capsys, "evaluate", str(run_dir), "--iw-samples", "2")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith("ELBO"))
    assert line.split()[1] == m.group(1) and "one sample per example, seed 0" in line, (line, m.group(1))
    assert f"(n = {n})" in out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("edges") / "run"
    assert main(["train", "--quiet", "--out", str(run_dir), *QUICK]) == 0
    return run_dir


def test_a_long_evaluation_says_how_long_before_it_starts(digits_run, capsys, monkeypatch):
    import sys

    import vaekit.cli.evaluate as cli_main
    monkeypatch.setattr(cli_main, "ESTIMATE_ABOVE_S", 0.0)  # every evaluation counts as long here
    code, out, err = run(capsys, "evaluate", str(digits_run), "--iw-samples", "3")
    assert code == 0, err
    n = int(out.split("(n = ")[1].split(")")[0])
    assert f"evaluating {n} examples with K=3 importance samples: about " in err and "--limit N" in err
    monkeypatch.setattr(cli_main, "ESTIMATE_ABOVE_S", 1e9)  # a short one says nothing
    code, out, err = run(capsys, "evaluate", str(digits_run), "--iw-samples", "3")
    assert code == 0 and "about" not in err


def test_sample_and_reconstruct_default_to_a_file_in_the_run_folder(digits_run, capsys):
    from PIL import Image

    before = {p.name for p in digits_run.iterdir()}
    code, out, err = run(capsys, "sample", str(digits_run), "-n", "4", "--temperature", "0.5", "--seed", "3")
    path = digits_run / "samples-T0.5-seed3.png"
    assert code == 0, err
    assert out.strip().endswith(f"to {path}") and Image.open(path).size[0] > 0
    code, out, err = run(capsys, "reconstruct", str(digits_run), "-n", "8")
    path = digits_run / "reconstructions-test-n8.png"
    assert code == 0 and out.strip().endswith(f"to {path}") and path.is_file(), err
    after = {p.name for p in digits_run.iterdir()}
    assert after - before == {"samples-T0.5-seed3.png", "reconstructions-test-n8.png"}  # no temporary or lock left
