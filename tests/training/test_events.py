"""The trainer's events: what a callback receives and when; loggers take the metrics record from memory and never
read metrics.jsonl back."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path

import pytest
import torch

from vaekit.config import TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.training import Trainer
from vaekit.training.callbacks import TensorBoardLogger
from vaekit.training.events import Callback
from vaekit.training.trackers import TrackerLogger


def _trainer(run_dir, callbacks, steps=20, **kw) -> Trainer:
    torch.manual_seed(0)
    model = build_vae((1, 4, 4), hidden=(12,), latent_dim=3)
    x = (torch.rand(80, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    s = TrainConfig(steps=steps, batch_size=16, val_every=10, progress=False, **kw)
    return Trainer(model, ELBO(), x[:60], x[60:], settings=s, run_dir=run_dir, seed=1, callbacks=callbacks,
                   doc={"config": {"seed": 1}})


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.records: list[dict] = []

    def on_step(self, trainer, record):
        self.events.append(("step", record["step"]))
        assert record["step"] == trainer.state.step and isinstance(record["loss"], float)

    def on_validation(self, trainer, record):
        self.events.append(("validation", record["step"]))
        self.records.append(json.loads(json.dumps(record)))  # a copy, as written

    def on_end(self, trainer):
        self.events.append(("end", trainer.state.step))


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_callback_receives_every_step_each_metrics_record_in_memory_and_the_end(tmp_path):
    rec, calls = Recorder(), []
    _trainer(tmp_path, [lambda t, r: calls.append(dict(r)), rec]).fit()
    assert calls == [{"step": s, "loss": pytest.approx(calls[s - 1]["loss"])} for s in range(1, 21)]  # plain fn
    steps = [("step", s) for s in range(1, 21)]
    assert rec.events == steps[:10] + [("validation", 10)] + steps[10:] + [("validation", 20), ("end", 20)]
    assert rec.records == _lines(tmp_path)  # the very records of metrics.jsonl, every key
    assert {"loss", "rec", "kl", "lr", "val_elbo", "val_kl_dims"} <= set(rec.records[0])


def test_records_reach_callbacks_without_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = Recorder()
    _trainer(None, [rec]).fit()
    assert [r["step"] for r in rec.records] == [10, 20] and all("val_elbo" in r for r in rec.records)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_end_event_comes_once_also_when_training_stops_on_non_finite_losses(tmp_path):
    from vaekit.training import TrainingError

    rec = Recorder()
    tr = _trainer(tmp_path, [rec], max_bad_steps=2)
    tr.train_x = tr.train_x * float("nan")  # every loss is NaN
    with pytest.raises(TrainingError):
        tr.fit()
    assert rec.events[-1] == ("end", 2) and [e for e, _ in rec.events].count("end") == 1


class _Writer:
    def __init__(self, log_dir):
        self.scalars, self.closed = [], 0

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def add_text(self, *a):
        pass

    def add_image(self, *a, **k):
        pass

    def flush(self):
        pass

    def close(self):
        self.closed += 1


class _Tracker(TrackerLogger):
    name = "recording"

    def start(self, trainer, config):
        self.logged, self.finished, self.config_seen = [], [], config

    def log(self, scalars, step):
        self.logged.append((step, scalars))

    def finish(self, failed):
        self.finished.append(failed)


def test_loggers_never_read_metrics_jsonl(tmp_path, monkeypatch):
    """The file is poisoned after every step (a callback ahead of the loggers rewrites it with wrong numbers),
    and reading it is an error: the loggers still log the trainer's records."""
    path = tmp_path / "metrics.jsonl"

    def poison(trainer, record):
        path.write_text(json.dumps({"step": trainer.state.step, "val_elbo": -1e9, "loss": 1e9}) + "\n")

    real_open = builtins.open

    def guarded_open(file, mode="r", *a, **k):
        if Path(str(file)).name == "metrics.jsonl" and not any(c in mode for c in "wax"):
            raise AssertionError(f"metrics.jsonl opened for reading ({mode!r})")
        return real_open(file, mode, *a, **k)

    writers: list[_Writer] = []
    tb = TensorBoardLogger(tmp_path, writer_factory=lambda d: writers.append(_Writer(d)) or writers[-1],
                           images=False)
    tracker, rec = _Tracker(tmp_path), Recorder()
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    _trainer(tmp_path, [poison, tb, tracker, rec]).fit()
    monkeypatch.undo()
    truth = [(r["step"], r["val_elbo"]) for r in rec.records]
    assert len(truth) == 2 and all(v > -1e8 for _, v in truth)
    assert [(s, v) for tag, v, s in writers[0].scalars if tag == "val/elbo"] == [(s, pytest.approx(v))
                                                                                for s, v in truth]
    assert [(s, sc["val/elbo"]) for s, sc in tracker.logged] == [(s, pytest.approx(v)) for s, v in truth]
    assert [s for s, sc in tracker.logged if sc["train/loss"] > 1e8] == []
    assert tracker.finished == [False] and tracker.config_seen == {"seed": 1} and writers[0].closed == 1


def test_a_tracker_sees_a_finished_run_resumed_start_nothing(tmp_path):
    """fit() on a run that has nothing left to train calls no tracker: no empty tracker run is created."""
    first = _trainer(tmp_path, [])
    first.fit()
    tracker = _Tracker(tmp_path)
    again = _trainer(tmp_path, [tracker])
    again.restore(tmp_path / "last.safetensors")
    again.fit()
    assert not tracker.started and not hasattr(tracker, "finished")
