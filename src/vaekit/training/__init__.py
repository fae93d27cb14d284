"""The training loop and checkpoints (runs built from a config live in ``vaekit.run``)."""

from vaekit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaekit.training.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "CheckpointError", "save_checkpoint", "load_checkpoint"]
