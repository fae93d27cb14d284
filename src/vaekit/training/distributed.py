"""Data-parallel training and evaluation under ``torchrun`` (PyTorch's own launcher and DistributedDataParallel).

``torchrun --nproc_per_node=N vaekit train ...`` starts N processes with RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT in their environment; ``init_from_env`` joins them into one process group (gloo on CPU,
NCCL on CUDA, where rank r uses cuda:LOCAL_RANK). Every rank computes; rank 0 alone writes files.

Sharding: every rank draws the same seeded permutation of the epoch, and each global batch of B examples is cut
into ``world`` contiguous parts (``shard``); rank r trains on part r. DDP averages the gradients over ranks, and the
loss of each rank is weighted by ``world * n_r / B`` so that the average is the gradient of the global batch mean
even when the last batch does not divide evenly.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "DistributedError", "init_from_env", "launched", "shard", "all_reduce_sum", "gather_rows", "barrier",
           "leave"]


class DistributedError(ValueError):
    """The torchrun process group could not be joined (a one-line reason; the CLI exits with code 2)."""


@dataclass(frozen=True)
class DistInfo:
    """rank, world size and local rank of this process (0, 1, 0 for a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched() -> bool:
    """True inside a ``torchrun`` with more than one process (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device, timeout_s: float | None = None) -> DistInfo:
    """Join the torchrun process group (once per process); a single process gets DistInfo() and no group.

    timeout_s: how long to wait for the other ranks (default $VAEKIT_DIST_TIMEOUT or 120 s).
    Raises DistributedError with a one-line reason when the rendezvous fails (no peers, a bad MASTER_ADDR, a
    timeout).
    """
    if not launched():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if dist.is_initialized():
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if timeout_s is None:
        timeout_s = float(os.environ.get("VAEKIT_DIST_TIMEOUT", "120"))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    # torch.distributed.nn.functional binds group.WORLD into its functions' default arguments when it is first
    # imported. DistributedDataParallel's constructor imports it (through torch._dynamo); imported after the group
    # exists, those defaults keep the group alive past destroy_process_group, so gloo's threads meet interpreter
    # shutdown, which can abort a finished rank. Imported first, the defaults hold None.
    importlib.import_module("torch.distributed.nn.functional")
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as e:  # noqa: BLE001 - the store and the backends raise several types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(f"could not join the torchrun process group ({backend}, rank {info.rank} of "
                           f"{info.world}): {reason}; check MASTER_ADDR/MASTER_PORT and that every rank started") from None
    return info


def shard(idx: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rank ``info.rank``'s contiguous part of a global batch of indices (parts differ by at most one)."""
    if not info.active:
        return idx
    return idx.tensor_split(info.world)[info.rank]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums over ranks of a list of floats (float64); the list itself on a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Concatenate every rank's (n_r, ...) tensor in rank order, without padding rows (n_r may differ)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], device=device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=device)
    parts = [torch.zeros((m, *t.shape[1:]), dtype=t.dtype, device=device) for _ in range(world)]
    dist.all_gather(parts, torch.cat([t.to(device), pad]))
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).cpu()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def leave(wait: bool = True) -> None:
    """Destroy the default process group, if there is one, while the interpreter is still whole.

    A gloo group left for interpreter shutdown can abort the process after its work is done ("terminate called
    without an active exception": pytorch/pytorch#190489 and #179291). wait: every rank reaches this point first
    (a barrier), so no rank tears down a connection its peers still use; give False after an error, when the
    other ranks may never arrive. A rank that failed and left closes its connections, so its peers' barrier fails at
    once (measured with gloo: 0.0 s) rather than waiting for the group's timeout; torchrun stops the rest.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()  # the trainer's DDP wrapper sits in reference cycles and holds the group: freed now, not at exit
    if wait:
        try:
            barrier()
        except RuntimeError:  # a peer has already gone (torchrun reports its failure): nothing left to wait for
            pass
    dist.destroy_process_group()
