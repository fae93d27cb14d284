"""The metrics records of a run: running sums between records, and run_dir/metrics.jsonl (one JSON record per
line, appended by rank 0; on resume the records after the checkpoint's step are dropped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from vaekit.training.distributed import DistInfo, all_reduce_sum
from vaekit.utils import atomic_write_text

__all__ = ["StepSums", "append_record", "truncate_records", "METRICS_FILE"]

METRICS_FILE = "metrics.jsonl"


class StepSums:
    """Sums of the loss and the statistics of the good steps since the last record, and the time they took.

    Statistics stay tensors (detached batch means): they are read once per record, not once per step.
    ``t0``: when the first interval starts (``time.perf_counter()``).
    """

    def __init__(self, t0: float) -> None:
        self.t_last = t0
        self.n, self.loss, self.stats = 0, 0.0, {}
        self._local_n = 0

    def add(self, loss: float, stats: dict[str, Any]) -> None:
        self.n += 1
        self.loss += loss
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0.0) + v

    def means(self, dist: DistInfo, device: torch.device) -> dict[str, float]:
        """{"loss", <statistics>..., "rec", "kl"}: means over the good steps of every rank; resets the sums."""
        self._local_n = self.n
        acc = {"loss": self.loss, "n": self.n, **self.stats}
        if dist.active:  # the record is over all ranks, not this one's
            keys = sorted(acc)
            acc = dict(zip(keys, all_reduce_sum([float(acc[k]) for k in keys], device)))
        n = max(acc["n"], 1)
        out = {"loss": acc["loss"] / n}
        out.update({k: float(v) / n for k, v in acc.items() if k not in ("loss", "n")})
        out.setdefault("rec", 0.0)
        out.setdefault("kl", 0.0)
        self.n, self.loss, self.stats = 0, 0.0, {}
        return out

    def rate(self, batch_size: int) -> float:
        """This rank's samples per second over the interval the last ``means`` closed."""
        return self._local_n * batch_size / max(time.perf_counter() - self.t_last, 1e-9)

    def restart(self) -> None:
        """Start the next interval now (after the record is written: validation time is not training time)."""
        self.t_last = time.perf_counter()


def append_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record as a line of run_dir/metrics.jsonl."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_records(run_dir: Path, step: int) -> None:
    """Drop the records after ``step`` (and a line cut short by a kill), rewriting the file atomically."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    keep = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            if json.loads(ln).get("step", 0) <= step:
                keep.append(ln)
        except (ValueError, AttributeError):
            continue
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
