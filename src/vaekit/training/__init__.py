"""The training loop, checkpoints and runs."""

from vaekit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaekit.training.run import load_run, prepare, train_run
from vaekit.training.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "CheckpointError", "save_checkpoint", "load_checkpoint", "train_run",
           "load_run", "prepare"]
