"""Experiment trackers chosen in the config: MLflow (local file store) and Weights & Biases (offline mode), against
the real packages when installed (skipped with the reason otherwise), and their failure modes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vaekit.config import ConfigError, RunConfig, TrainConfig, apply_overrides
from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.training import Trainer
from vaekit.training.callbacks import TensorBoardLogger, run_callbacks
from vaekit.training.trackers import MLflowLogger, TrackerLogger, flat_params

CONFIG = {"seed": 1, "model": {"latent_dim": 3, "likelihood": "bernoulli", "likelihood_options": {}},
          "train": {"lr": 1e-3}}


def _fit(run_dir: Path, callbacks, steps: int = 20) -> Trainer:
    torch.manual_seed(0)
    model = build_vae((1, 4, 4), hidden=(12,), latent_dim=3)
    x = (torch.rand(80, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    s = TrainConfig(steps=steps, batch_size=16, val_every=10, progress=False, malloc_tuning=False)
    t = Trainer(model, ELBO(), x[:60], x[60:], settings=s, run_dir=run_dir, seed=1, callbacks=callbacks,
                doc={"config": CONFIG})
    t.fit()
    return t


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loggers_are_chosen_in_the_config():
    cfg = apply_overrides(RunConfig(), ["train.loggers=[tensorboard, mlflow]"])
    assert cfg.train.loggers == ["tensorboard", "mlflow"]
    assert apply_overrides(RunConfig(), ["train.loggers=wandb"]).train.loggers == ["wandb"]
    with pytest.raises(ConfigError, match="unknown logger 'mlfow'.*did you mean 'mlflow'"):
        run_callbacks(TrainConfig(loggers=["mlfow"]), "r")
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'"):
        run_callbacks(TrainConfig(logger_options={"tensorbord": {}}), "r")
    with pytest.raises(ConfigError, match="bad train.logger_options for tensorboard"):
        run_callbacks(TrainConfig(loggers=["tensorboard"], logger_options={"tensorboard": {"colour": 1}}), "r")


def test_a_missing_tracker_package_names_the_extra(monkeypatch):
    for module, extra in (("mlflow", "mlflow"), ("wandb", "wandb")):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        with pytest.raises(ConfigError, match=rf"pip install 'vaekit\[{extra}\]'"):
            run_callbacks(TrainConfig(loggers=[extra]), "r")


def test_flat_params():
    assert flat_params(CONFIG) == {"seed": "1", "model.latent_dim": "3", "model.likelihood": "bernoulli",
                                   "model.likelihood_options": "{}", "train.lr": "0.001"}


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, caplog):
    class Broken(TrackerLogger):
        name = "broken"
        calls = 0

        def start(self, trainer, config):
            pass

        def log(self, scalars, step):
            Broken.calls += 1
            raise ConnectionError("server gone")

    t = _fit(tmp_path, [Broken(tmp_path)])
    assert t.state.step == 20 and Broken.calls == 1
    assert [r.getMessage() for r in caplog.records if "broken" in r.getMessage()] == [
        "broken logging stopped (ConnectionError: server gone); training goes on without it"]


def test_mlflow_local_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="MLflow not installed (pip install 'vaekit[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    run_dir = tmp_path / "run"
    cbs = run_callbacks(TrainConfig(loggers=["mlflow"], logger_options={"mlflow": {"tracking_uri": uri,
                                                                                   "experiment": "tests"}}), run_dir)
    assert isinstance(cbs[0], MLflowLogger)
    _fit(run_dir, cbs)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].info.run_name == "run"
    run_id = runs[0].info.run_id
    assert runs[0].data.params["model.latent_dim"] == "3" and runs[0].data.tags["vaekit.run_dir"] == str(run_dir)
    recs = _records(run_dir)
    elbo = [(m.step, m.value) for m in client.get_metric_history(run_id, "val/elbo")]
    assert sorted(elbo) == [(r["step"], pytest.approx(r["val_elbo"])) for r in recs]  # metrics.jsonl's numbers
    kl1 = [(m.step, m.value) for m in client.get_metric_history(run_id, "val/kl_dim/1")]
    assert sorted(kl1) == [(r["step"], pytest.approx(r["val_kl_dims"][1])) for r in recs]


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="Weights & Biases not installed (pip install 'vaekit[wandb]')")
    for k, v in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                 "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "WANDB_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(k, v)
    run_dir = tmp_path / "run"
    (cb,) = run_callbacks(TrainConfig(loggers=["wandb"], logger_options={"wandb": {"mode": "offline"}}), run_dir)
    _fit(run_dir, [cb])
    assert cb.run.config["model"]["latent_dim"] == 3 and len(_records(run_dir)) == 2
    (data,) = [p.read_bytes() for p in (run_dir / "wandb").glob("offline-run-*/run-*.wandb")]
    assert b"val/kl_dim/2" in data and b"latent_dim" in data  # written to the offline run file, for `wandb sync`


def test_tensorboard_via_loggers_is_the_same_as_train_tensorboard(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="tensorboard not installed")
    a = run_callbacks(TrainConfig(loggers=["tensorboard"]), tmp_path / "a")
    b = run_callbacks(TrainConfig(tensorboard=True, loggers=["tensorboard"]), tmp_path / "b")
    assert [type(c) for c in a] == [type(c) for c in b] == [TensorBoardLogger]


def test_vaekit_train_logs_to_mlflow_from_the_command_line(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="MLflow not installed (pip install 'vaekit[mlflow]')")
    from mlflow.tracking import MlflowClient

    from vaekit.cli import main

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    run_dir = tmp_path / "run"
    assert main(["train", "--quiet", "--out", str(run_dir), "train.steps=10", "train.val_every=5",
                 "model.hidden=[16]", "model.latent_dim=2", "train.loggers=[mlflow]",
                 f"train.logger_options={{mlflow: {{tracking_uri: '{uri}'}}}}"]) == 0
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vaekit").experiment_id])
    assert run.data.params["train.loggers"] == "['mlflow']" and run.data.params["data.name"] == "digits"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/elbo")] == [5, 10]
