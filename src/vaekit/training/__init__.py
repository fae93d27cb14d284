"""The training loop, its callbacks' events and checkpoints (runs built from a config live in ``vaekit.run``)."""

from vaekit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaekit.training.events import Callback
from vaekit.training.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "Callback", "CheckpointError", "save_checkpoint", "load_checkpoint"]
