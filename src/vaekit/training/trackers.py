"""Experiment trackers as trainer callbacks: MLflow and Weights & Biases (optional extras).

    vaekit train train.loggers=[tensorboard,mlflow] train.logger_options='{mlflow: {experiment: digits}}'
    pip install 'vaekit[mlflow]'   # or 'vaekit[wandb]'

Each logs the run's config once (flattened to ``model.latent_dim``-style parameters) at the first step and, at
every validation, the numbers of the metrics record the trainer hands to its callbacks in memory
(``events.metric_scalars``: train loss, rec, kl, lr, ..., validation ELBO and the KL of each latent dimension:
the numbers of metrics.jsonl, which is never read back), and closes its tracker run when training ends. A
tracker that fails mid-run (a server gone) logs one warning and is switched off: training goes on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from vaekit.config import ConfigError
from vaekit.training.events import Callback, metric_scalars

__all__ = ["TrackerLogger", "MLflowLogger", "WandbLogger", "flat_params"]

log = logging.getLogger("vaekit.train")


def flat_params(config: dict[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """{"model.latent_dim": "8", ...}: a nested config as one level of string parameters."""
    out: dict[str, str] = {}
    for k, v in (config or {}).items():
        if isinstance(v, dict) and v and not str(k).endswith("_options"):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"train.loggers={extra} needs the {extra} package: pip install 'vaekit[{extra}]'") from None


class TrackerLogger(Callback):
    """Base of the trackers: ``start(trainer, config)`` at the first step, ``log(scalars, step)`` at each
    validation, ``finish(failed)`` when training ends; any exception inside them disables the tracker with a
    warning."""

    name = "tracker"

    def __init__(self, run_dir: str | Path, config: dict[str, Any] | None = None) -> None:
        self.run_dir, self.config = Path(run_dir), config
        self.started = self.disabled = False

    def on_step(self, trainer: Any, record: dict[str, Any]) -> None:
        if not self.started and not self.disabled:
            self.started = True
            config = self.config if self.config is not None else trainer.doc.get("config")
            self._safely(self.start, trainer, config)

    def on_validation(self, trainer: Any, record: dict[str, Any]) -> None:
        scalars = metric_scalars(record)
        if scalars and self.started and not self.disabled:
            self._safely(self.log, scalars, record["step"])

    def on_end(self, trainer: Any) -> None:
        if self.started and not self.disabled:
            self._safely(self.finish, failed=trainer.state.stopped == "non-finite")
            self.disabled = True  # finished: later events (none are expected) do nothing

    def _safely(self, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
        try:
            fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - a tracker must never stop the training it watches
            self.disabled = True
            log.warning("%s logging stopped (%s: %s); training goes on without it", self.name, type(e).__name__, e)

    def start(self, trainer: Any, config: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def log(self, scalars: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, failed: bool) -> None:
        raise NotImplementedError


class MLflowLogger(TrackerLogger):
    """Log to MLflow through an ``MlflowClient`` (no global active run is set): one MLflow run per training run.

    tracking_uri: where (None: MLflow's default, e.g. $MLFLOW_TRACKING_URI); a local file store is
        ``file:/path/mlruns`` (MLflow 3 asks for MLFLOW_ALLOW_FILE_STORE=true to use one) or e.g.
        ``sqlite:///mlflow.db``. experiment: its name (created if absent); run_name: default the run folder's name.
    The run gets the tag ``vaekit.run_dir``; its status is FINISHED, or FAILED when training stopped on
    non-finite losses. client_factory(tracking_uri) -> client: for tests.
    """

    name = "mlflow"

    def __init__(self, run_dir: str | Path, config: dict[str, Any] | None = None, *, tracking_uri: str | None = None,
                 experiment: str = "vaekit", run_name: str | None = None,
                 client_factory: Callable[[str | None], Any] | None = None) -> None:
        super().__init__(run_dir, config)
        if client_factory is None:
            _need("mlflow", "mlflow")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.client_factory = client_factory
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, trainer: Any, config: dict[str, Any] | None) -> None:
        if self.client_factory is not None:
            self.client = self.client_factory(self.tracking_uri)
        else:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=self.run_name or self.run_dir.name,
                                     tags={"vaekit.run_dir": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars.items()])

    def finish(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class WandbLogger(TrackerLogger):
    """Log to Weights & Biases: ``wandb.init(project=, dir=run_dir, config=, name=, mode=, **init)`` at the first
    step, ``run.log(scalars, step=)`` at each validation, ``run.finish()`` at the end.

    mode: "online", "offline" (files under run_dir/wandb, ``wandb sync`` later) or "disabled"; None: wandb's
    default ($WANDB_MODE, else online). name: default the run folder's name. init: further ``wandb.init``
    arguments (entity, group, tags, ...).
    """

    name = "wandb"

    def __init__(self, run_dir: str | Path, config: dict[str, Any] | None = None, *, project: str = "vaekit",
                 mode: str | None = None, name: str | None = None, **init: Any) -> None:
        super().__init__(run_dir, config)
        self.wandb = _need("wandb", "wandb")
        self.init = {"project": project, "mode": mode, "name": name, **init}
        self.run: Any = None

    def start(self, trainer: Any, config: dict[str, Any] | None) -> None:
        kw = {k: v for k, v in self.init.items() if v is not None}
        kw.setdefault("name", self.run_dir.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(dir=str(self.run_dir), config=config or {}, **kw)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def finish(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)
