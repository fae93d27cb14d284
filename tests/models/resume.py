"""What the exact-resume tests share: a run killed at a step, then resumed from its last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch


class Kill(Exception):
    """Raised by a callback to stop a run as a crash would."""


def killed_and_resumed(trainer: Callable, tmp_path: Path, kill_at: int, resumed_from: int):
    """(the uninterrupted trainer, the resumed one), both fitted. ``trainer(run_dir, callbacks=None)`` builds a
    Trainer; the second run is killed after step ``kill_at`` and must restart from step ``resumed_from``."""
    full = trainer(tmp_path / "full")
    full.fit()

    def kill(tr, rec):
        if rec["step"] == kill_at:
            raise Kill

    with pytest.raises(Kill):
        trainer(tmp_path / "part", [kill]).fit()
    torch.manual_seed(999)  # the resumed run must not depend on the global RNG
    resumed = trainer(tmp_path / "part")
    resumed.restore(tmp_path / "part" / "last.safetensors")
    assert resumed.state.step == resumed_from
    resumed.fit()
    return full, resumed
