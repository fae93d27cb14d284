"""What the trainer tells its callbacks, and when.

A callback is a ``Callback`` (override the events it needs) or a plain function ``fn(trainer, step_record)``
(called as ``on_step``). After every optimisation step, once the step's metrics record and checkpoints are
written, the trainer calls each callback in order:

- ``on_step(trainer, {"step": int, "loss": float})``: the step just taken and its loss;
- ``on_validation(trainer, record)``: on the steps that validate and record (every ``val_every`` steps and the
  last), the metrics record itself, in memory: the dict written as that step's line of metrics.jsonl (keys
  step, epoch, loss, rec, kl, beta, lr, ..., val_elbo, val_kl_dims, ...). A callback must not modify it.

``on_end(trainer)`` follows once the loop ends (the step budget, early stopping, the time limit, or too many
non-finite steps, before that error is raised; not when a callback or the objective raises). A callback must be
cheap on the steps where it does nothing and must not disturb training: every draw it makes runs under a forked
RNG, and the model's train/eval mode is restored.

This module imports nothing else from ``vaekit.training``: the trainer, the callbacks and the trackers all
import it, and none of them imports another's module for these shared pieces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    from vaekit.training.trainer import Trainer

__all__ = ["Callback", "CallbackLike", "is_final_step", "metric_scalars", "SCALARS"]


class Callback:
    """Base class of trainer callbacks (see the module docstring for the order of the events)."""

    def on_step(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        """After every step: record = {"step": the number of steps taken, "loss": that step's loss}."""

    def on_validation(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        """After each validation step: the metrics record the trainer just made (read-only)."""

    def on_end(self, trainer: "Trainer") -> None:
        """Once, when the training loop ends (``trainer.state.stopped`` says why it stopped early)."""


#: what ``Trainer(callbacks=[...])`` takes: Callback objects, or functions fn(trainer, {"step", "loss"})
CallbackLike = Union[Callback, Callable[["Trainer", dict], None]]


def is_final_step(trainer: "Trainer") -> bool:
    """True on the last step of the loop: the step budget is spent or the run is stopping early."""
    return bool(trainer.state.stopped) or trainer.state.step >= trainer.total_steps


#: metrics-record keys sent to loggers, as "train/<key>" or "val/<key without val_>"
SCALARS = ("loss", "rec", "kl", "beta", "lr", "sigma", "samples_per_s", "val_elbo", "val_rec", "val_kl")


def metric_scalars(rec: dict[str, Any]) -> dict[str, float]:
    """{"train/loss": .., "val/elbo": .., "val/kl_dim/0": .., ...} from a metrics record: the same numbers as
    metrics.jsonl, with the validation KL of each latent dimension (or group) as its own series."""
    out = {}
    for k in SCALARS:
        if isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool):
            out[f"val/{k.removeprefix('val_')}" if k.startswith("val_") else f"train/{k}"] = float(rec[k])
    for i, v in enumerate(rec.get("val_kl_dims") or []):
        out[f"val/kl_dim/{i}"] = float(v)
    return out
