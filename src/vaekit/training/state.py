"""The training state a checkpoint holds besides the weights, packed for safetensors + JSON and restored.

- ``TrainState``: the trainer's counters (JSON);
- optimizers: the trainer's Adam and an objective's own optimizers (``Objective.optimizers()``): their tensors
  as ``optim.<i>.<name>`` / ``aux.<key>.optim.<i>.<name>``, the rest (param groups, scalars) as JSON;
- RNG streams: the model's noise (``NoiseStream``: ``rng.torch``, ``rng.cuda``, with ``.rank<r>`` for the ranks
  after the first), the data order and the batch transform (``rng.data``, ``rng.aug``), the epoch's
  permutation (``data.perm``).

Loading is device-agnostic. A generator state is restored as saved when this machine's generator is of the same
kind; a CUDA checkpoint resumed on a CPU-only machine (or the reverse) holds states of another kind (a CUDA
generator's 16-byte Philox seed and offset; a CPU generator's 5,056-byte Mersenne Twister state): those
generators are then seeded from a hash of the saved state and a warning says so. The resumed run is
reproducible, the current epoch's batches are the saved permutation's, but later data orders and noise differ
from a continuation on the original kind of device. A CUDA noise state is applied only where the trainer runs on
CUDA, and is restored exactly there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

import torch

__all__ = ["TrainState", "pack_optimizer", "unpack_optimizer", "pack_optimizers", "unpack_optimizers",
           "NoiseStream", "pack_rng", "unpack_rng"]

log = logging.getLogger("vaekit.train")


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved in the checkpoint's JSON document)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0                  # index of the next batch within the epoch
    best_val: float = -math.inf     # best value of the selection metric (higher is better)
    best_step: int = 0
    stale_vals: int = 0             # validations since the best one
    bad_in_row: int = 0
    bad_total: int = 0
    skipped_total: int = 0          # updates skipped for a gradient norm above train.skip_threshold
    stopped: str = ""               # why the run ended early ("" while running)
    elapsed: float = 0.0            # training seconds before the current process (for time budgets)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "TrainState":
        """From a checkpoint's ``trainer`` entry; keys a newer vaekit may add are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


# -- optimizers ----------------------------------------------------------------------------------------------
def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach()  # written out at once: no copy needed
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Load what ``pack_optimizer`` wrote (tensors may hold other keys; only ``optim.*`` are read). The state
    moves to the parameters' device (``Optimizer.load_state_dict``), wherever it was saved."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def pack_optimizers(opt: torch.optim.Optimizer, aux: dict[str, torch.optim.Optimizer]
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON entries {"optimizer": .., "aux_optimizers": {key: ..}}) of the trainer's optimizer and an
    objective's own ones."""
    tensors, meta = pack_optimizer(opt)
    aux_meta = {}
    for key, o in aux.items():
        t, aux_meta[key] = pack_optimizer(o)
        tensors.update({f"aux.{key}.{k}": v for k, v in t.items()})
    return tensors, {"optimizer": meta, "aux_optimizers": aux_meta}


def unpack_optimizers(opt: torch.optim.Optimizer, aux: dict[str, torch.optim.Optimizer],
                      tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> None:
    """Restore what ``pack_optimizers`` wrote into ``opt`` and ``aux``."""
    unpack_optimizer(opt, tensors, doc["optimizer"])
    for key, o in aux.items():
        prefix = f"aux.{key}."
        unpack_optimizer(o, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                         doc["aux_optimizers"][key])


# -- RNG streams ---------------------------------------------------------------------------------------------
def _cuda_index(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _derived_seed(state: torch.Tensor) -> int:
    """A seed that is a function of a saved generator state alone (the same on every resume)."""
    data = state.detach().cpu().contiguous().to(torch.uint8).numpy().tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


def _fits(state: torch.Tensor, own: torch.Tensor) -> bool:
    return state.dtype == own.dtype and state.shape == own.shape


class NoiseStream:
    """The model's noise: the process-wide CPU generator and, on CUDA, the device's generator, holding a state of
    the trainer's own while ``active()`` (the caller's global RNG is forked around it and left as it was).

    ``state()``: {"cpu": .., "cuda": .. (on CUDA)}: the live generators' state while active, else the saved one.
    """

    def __init__(self, device: torch.device, seed: int) -> None:
        self.device, self.cuda = device, _cuda_index(device)
        self._saved = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self.cuda is not None:
            self._saved["cuda"] = torch.Generator(device=device).manual_seed(seed).get_state()
        self._live = False

    def state(self) -> dict[str, torch.Tensor]:
        if not self._live:
            return self._saved
        state = {"cpu": torch.get_rng_state()}
        if self.cuda is not None:
            state["cuda"] = torch.cuda.get_rng_state(self.cuda)
        return state

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Take a state (from ``state()`` or a checkpoint); it is installed at once while active."""
        self._saved = dict(state)
        if self._live:
            self._install()

    def _install(self) -> None:
        torch.set_rng_state(self._saved["cpu"])
        if self.cuda is not None and "cuda" in self._saved:
            torch.cuda.set_rng_state(self._saved["cuda"], self.cuda)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=[self.cuda] if self.cuda is not None else []):
            self._install()
            self._live = True
            try:
                yield
            finally:
                self._saved = self.state()
                self._live = False


def _noise_key(device: str, rank: int) -> str:
    return ("rng.torch" if device == "cpu" else f"rng.{device}") + (f".rank{rank}" if rank else "")


def pack_rng(noise: list[dict[str, torch.Tensor]], data_gen: torch.Generator, aug_gen: torch.Generator,
             perm: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The RNG tensors of a checkpoint: every rank's noise state (``noise[r]``), the data and transform generators
    and the current epoch's permutation (N,) when one is drawn."""
    t = {_noise_key(dev, r): st for r, states in enumerate(noise) for dev, st in states.items()}
    t["rng.data"] = data_gen.get_state()
    t["rng.aug"] = aug_gen.get_state()
    if perm is not None:
        t["data.perm"] = perm
    return t


def _restore_generator(gen: torch.Generator, state: torch.Tensor, what: str, notes: list[str]) -> None:
    own = gen.get_state()
    if _fits(state, own):
        gen.set_state(state.to(own.device))
    else:
        gen.manual_seed(_derived_seed(state))
        notes.append(what)


def unpack_rng(tensors: dict[str, torch.Tensor], rank: int, noise: NoiseStream, data_gen: torch.Generator,
               aug_gen: torch.Generator, source: str = "the checkpoint") -> torch.Tensor | None:
    """Restore what ``pack_rng`` wrote for this ``rank`` into the noise stream and the generators; return the
    saved permutation (None when there is none). States of another kind of device: see the module docstring."""
    notes: list[str] = []
    state = {"cpu": tensors[_noise_key("cpu", rank)]}
    if noise.cuda is not None:
        own = torch.cuda.get_rng_state(noise.cuda)
        saved = tensors.get(_noise_key("cuda", rank))
        if saved is not None and _fits(saved, own):
            state["cuda"] = saved
        else:
            seed = _derived_seed(saved if saved is not None else state["cpu"])
            state["cuda"] = torch.Generator(device=noise.device).manual_seed(seed).get_state()
            notes.append("the model's CUDA noise")
    noise.load(state)
    _restore_generator(data_gen, tensors["rng.data"], "the data order", notes)
    _restore_generator(aug_gen, tensors["rng.aug"], "the batch transform", notes)
    if notes:
        log.warning("%s holds random-number states of another kind of device (%s); resuming with seeds derived "
                    "from them: the current epoch's batches are as saved, later draws differ from a continuation "
                    "on the device it was written on", source, ", ".join(notes))
    return tensors.get("data.perm")
