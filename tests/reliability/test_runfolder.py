"""A run folder is one unit: locked while written, never someone else's files, a failed resume changes nothing,
a run killed before its first checkpoint can be started again."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, snapshot, vaekit_process
from vaekit.runfolder import LOCK, RunFolderError, run_lock


def test_a_second_process_is_refused_while_a_run_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    proc = vaekit_process("train", "--quiet", "--out", run, "train.steps=100000", "train.val_every=50",
                          "model.hidden=[16]", "model.latent_dim=2")
    try:
        deadline = time.time() + 120
        while not (run / "last.safetensors").exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr()
            time.sleep(0.1)
        for argv in (["train", "--quiet", "--out", run, *QUICK], ["train", "--quiet", "--resume", run]):
            code, _, err = cli(capsys, *argv)
            assert_one_line_error(code, err, "in use by process", str(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    # the owner died holding the lock: the next process explains the stale lock and takes over
    assert (run / LOCK).is_file()
    code, out, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=20")
    assert code == 0, err
    assert not (run / LOCK).exists() and not list(run.glob(".*.tmp"))
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one writer: no interleaved records


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with run_lock(tmp_path):
        assert str(__import__("os").getpid()) in (tmp_path / LOCK).read_text()
        with pytest.raises(RunFolderError, match="in use by process"):
            with run_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK).exists()


def test_a_folder_of_the_users_own_files_is_refused(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "samples.png").write_bytes(b"my picture")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "train", "--quiet", "--out", mine, *QUICK)
    assert_one_line_error(code, err, "not a vaekit run")
    code, _, err = cli(capsys, "train", "--quiet", "--resume", mine)
    assert_one_line_error(code, err)
    assert snapshot(tmp_path) == before


def test_an_existing_run_is_not_overwritten(trained, tmp_path, capsys):
    before = snapshot(trained)
    code, _, err = cli(capsys, "train", "--quiet", "--out", trained, *QUICK)
    assert_one_line_error(code, err, "already holds a run", "--resume")
    code, _, err = cli(capsys, "train", "--quiet", "--resume", trained, "--out", tmp_path / "other")
    assert_one_line_error(code, err, "--out")
    assert snapshot(trained) == before and not (tmp_path / "other").exists()


RESUME_CHANGES = ["model.latent_dim=4", "data.name=mnist", "model.hidden=[8]", "seed=3", "model.likelihood=gaussian"]


def test_a_resume_that_changes_the_model_or_data_changes_nothing(trained, tmp_path, capsys):
    """Each refused resume leaves the run byte for byte as it was (so the next one starts from the same run);
    after all of them, a plain resume still works."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    for override in RESUME_CHANGES:
        code, _, err = cli(capsys, "train", "--quiet", "--resume", run, override)
        assert_one_line_error(code, err, "--resume cannot change", override.split("=")[0])
        assert snapshot(run) == before, override
    code, out, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=30")  # a plain resume still works
    assert code == 0 and "30 steps" in out, err


def test_a_resume_from_a_truncated_checkpoint_changes_nothing(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ck = run / "last.safetensors"
    ck.write_bytes(ck.read_bytes()[:1000])
    before = snapshot(run)
    code, _, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=30")
    assert_one_line_error(code, err, "corrupt or truncated")
    assert snapshot(run) == before


def test_a_state_dict_mismatch_names_the_parameter(trained, tmp_path, capsys):
    """A config.yaml edited by hand to another model: the message keeps the useful line of torch's error."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("latent_dim: 2", "latent_dim: 4"))
    code, _, err = cli(capsys, "evaluate", run)
    last = assert_one_line_error(code, err, "size mismatch for")
    assert "Error(s) in loading" not in last


def _killed_before_first_checkpoint(tmp_path, trained):
    run = tmp_path / "run"
    run.mkdir()
    for name in (".vaekit-run", "config.yaml"):
        shutil.copy(trained / name, run / name)
    (run / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    (run / ".last.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")
    return run


@pytest.mark.parametrize("how", ["resume", "out"])
def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(trained, tmp_path, capsys, how):
    run = _killed_before_first_checkpoint(tmp_path, trained)
    argv = ["--resume", run] if how == "resume" else ["--out", run, *QUICK]
    code, out, err = cli(capsys, "train", "--quiet", *argv, "train.steps=20")
    assert code == 0, err
    assert (run / "last.safetensors").is_file() and not list(run.glob(".*.tmp"))
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20]  # the stale record of the killed run is gone


def test_a_lagging_checkpoint_json_is_rewritten_from_the_header(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    header = (run / "last.json").read_text()
    (run / "last.json").write_text('{"step": 10}\n')  # a kill between the two renames of save_checkpoint
    code, _, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=20")
    assert code == 0, err
    assert json.loads((run / "last.json").read_text())["step"] == 20
    assert (run / "last.json").read_text() != header or json.loads(header)["step"] == 20


def test_the_run_folder_records_every_model_constant(tmp_path, capsys):
    """The posterior's log-variance clamp (and every other constructor default) is written into config.yaml,
    and the model is rebuilt from what is written there, not from the current defaults."""
    import yaml

    from vaekit.runs import load_run

    run = tmp_path / "run"
    assert cli(capsys, "train", "--quiet", "--out", run, *QUICK, "model.likelihood=sigma-vae")[0] == 0
    model_cfg = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert model_cfg["posterior_options"] == {"logvar_min": -12.0, "logvar_max": 8.0}
    assert model_cfg["likelihood_options"] == {"init_log_sigma": 0.0, "min_log_sigma": -6.0}
    doc = json.loads((run / "last.json").read_text())
    assert doc["config"]["model"]["posterior_options"]["logvar_max"] == 8.0
    text = (run / "config.yaml").read_text().replace("logvar_max: 8.0", "logvar_max: 3.0")
    (run / "config.yaml").write_text(text)
    _, model, _ = load_run(run)
    assert model.posterior.logvar_max == 3.0


def test_two_trainings_started_at_once_into_one_folder(tmp_path):
    """Both pass their first look at a folder that does not exist yet; the lock decides: one trains, the other
    is refused with one line and exit 2, and the run is a single, consistent one."""
    run = tmp_path / "run"
    argv = ("train", "--quiet", "--out", run, "train.steps=300", "train.val_every=50", "model.hidden=[16]",
            "model.latent_dim=2", "eval.iw_samples=2")
    procs = [vaekit_process(*argv) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    # "in use by process N", or "in use by another process" when the loser looks between the winner's lock and
    # its writing of its pid into the lock file
    assert "Traceback" not in loser and ("is in use by" in loser or "already holds a run" in loser), loser
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [50, 100, 150, 200, 250, 300]
    assert json.loads((run / "last.json").read_text())["step"] == 300


def test_python_fit_keeps_the_run_folder_rules(tmp_path):
    """vaekit.fit(run_dir=...) writes a marked run folder, records the model's constants, and refuses a folder
    of the user's own files and a finished run, as `vaekit train --out` does."""
    import numpy as np

    import vaekit

    x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
    kw = dict(model={"hidden": [8], "latent_dim": 2, "likelihood": "gaussian"}, train={"steps": 5})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a vaekit run"):
        vaekit.fit(x, run_dir=mine, **kw)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    run = tmp_path / "run"
    vaekit.fit(x, run_dir=run, **kw)
    assert (run / ".vaekit-run").is_file() and not (run / LOCK).exists()
    assert "logvar_min" in (run / "config.yaml").read_text()
    with pytest.raises(RunFolderError, match="already holds a run"):
        vaekit.fit(x, run_dir=run, **kw)
