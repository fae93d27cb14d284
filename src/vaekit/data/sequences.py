"""Sequence datasets: JSB Chorales piano rolls, Moving MNIST, synthetic sines and your own (N, T, D) sequences.

How a sequence dataset is stored (the layout the sequence families read, ``vaekit.models.sequence``): one float32
array (N, T, D + 1) padded to the longest sequence T, whose last feature is the step mask (1 at the observed steps
t < length, 0 at the padding). The mask travels with the values, so a batch carries its lengths and the trainer,
evaluator and apps see an ordinary (B, *shape) tensor. Padded steps hold zeros.

- JSB Chorales (Boulanger-Lewandowski et al. 2012; the split of Allan & Williams 2005) as Pyro's deep Markov
  model example uses it: 88-key piano rolls (column = MIDI note - 21), 229 / 76 / 77 chorales of 25-160 steps.
  The published pickle is read by a restricted unpickler that rebuilds numpy scalars only and refuses anything
  else (it never runs code from the file).
- Moving MNIST (Srivastava et al. 2015, "Unsupervised Learning of Video Representations using LSTMs", Sec. 3):
  two 28x28 MNIST digits bouncing inside a 64x64 frame, 20 frames, generated with a seed from the MNIST files
  (training digits for train/val, test digits for a fixed test set drawn with its own seed).
- sines: noisy sinusoids of variable length, generated (no file): a small sequence set for tests and examples.
- sequences: your .npz / .npy of shape (N, T, D) (optional ``lengths``), or a long-format CSV
  (``sequence,time,<feature>...``).
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaekit.data.base import ArrayData, DataSplits, split_indices

__all__ = ["pack_sequences", "lengths_of", "read_jsb_pickle", "jsb_piano_rolls", "moving_mnist", "read_sequences",
           "load_jsb", "load_moving_mnist", "load_sines", "load_sequences", "JSB_SHA256", "JSB_MD5", "JSB_URLS",
           "LOWEST_NOTE", "N_KEYS"]

LOWEST_NOTE, N_KEYS = 21, 88  # piano roll columns: MIDI notes 21 (A0) .. 108 (C8)
JSB_MD5 = "7a71bc333f9210b9303a34d4769939e1"
JSB_SHA256 = "69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c"
JSB_URLS = ("https://d2hg8soec8ck9v.cloudfront.net/datasets/polyphonic/jsb_chorales.pickle",
            "https://github.com/pyro-ppl/datasets/raw/master/polyphonic/jsb_chorales.pickle")


def pack_sequences(seqs: Sequence[np.ndarray], t_max: int | None = None) -> np.ndarray:
    """(N, T, D + 1) float32 from N arrays (T_i, D): values zero-padded to T (default the longest), the step
    mask (1 for t < T_i) as the last feature."""
    if not seqs:
        raise ValueError("no sequences to pack")
    d = {s.shape[1] for s in seqs}
    if len(d) != 1 or any(s.ndim != 2 for s in seqs):
        raise ValueError(f"every sequence must be (T, D) with the same D, got shapes {sorted({s.shape for s in seqs})}")
    t = max(len(s) for s in seqs) if t_max is None else int(t_max)
    if min(len(s) for s in seqs) < 1 or max(len(s) for s in seqs) > t:
        raise ValueError(f"sequences must have 1..{t} steps")
    out = np.zeros((len(seqs), t, d.pop() + 1), np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s), :-1] = s
        out[i, : len(s), -1] = 1.0
    return out


def lengths_of(x: Any) -> Any:
    """(N,) number of observed steps of packed sequences (N, T, D + 1) (a numpy array or a torch tensor)."""
    return x[..., -1].sum(-1)


# ------------------------------------------------------------------------------------------ JSB Chorales
class _NumpyScalarsOnly(pickle.Unpickler):
    """Rebuilds the numpy integer scalars of the JSB pickle (numpy's ``scalar`` and ``dtype``; ``_codecs.encode``,
    which a protocol-2 pickle written by Python 3 uses for bytes) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: this pickle may hold only lists, "
                                         f"tuples and numpy scalars")
        if name == "dtype":
            return np.dtype
        if name == "encode":
            import codecs

            return codecs.encode
        try:  # the one reconstructor a numpy scalar pickle names (numpy 2 moved it)
            from numpy._core.multiarray import scalar
        except ImportError:  # numpy 1
            from numpy.core.multiarray import scalar
        return scalar


def read_jsb_pickle(path: str | Path) -> dict[str, list[list[tuple[int, ...]]]]:
    """{split: [sequence: [step: (MIDI notes,)]]} from the published JSB Chorales pickle, read without running code
    (a file naming anything but numpy scalars is refused with ``pickle.UnpicklingError``)."""
    raw = _NumpyScalarsOnly(io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    if not isinstance(raw, dict) or not {"train", "valid", "test"} <= set(raw):
        raise ValueError(f"{path}: expected a dict with train / valid / test, got {type(raw).__name__}")
    return {k: [[tuple(int(n) for n in step) for step in seq] for seq in raw[k]] for k in ("train", "valid", "test")}


def jsb_piano_rolls(seqs: list[list[tuple[int, ...]]]) -> list[np.ndarray]:
    """One (T, 88) 0/1 piano roll per sequence: column n - 21 is on when MIDI note n sounds at that step."""
    rolls = []
    for seq in seqs:
        r = np.zeros((len(seq), N_KEYS), np.float32)
        for t, notes in enumerate(seq):
            for n in notes:
                if not LOWEST_NOTE <= n < LOWEST_NOTE + N_KEYS:
                    raise ValueError(f"MIDI note {n} is outside the piano's 88 keys")
                r[t, n - LOWEST_NOTE] = 1.0
        rolls.append(r)
    return rolls


def _splits(parts: dict[str, np.ndarray], n_levels: int | None, source: str,
            y: dict[str, np.ndarray] | None = None) -> DataSplits:
    import torch

    data = [ArrayData(torch.from_numpy(np.ascontiguousarray(parts[k], np.float32)),
                      None if y is None else torch.from_numpy(y[k].astype(np.int64))) for k in ("train", "val", "test")]
    return DataSplits(*data, tuple(data[0].x.shape[1:]), n_levels, name="", source=source)


def load_jsb(req: Any) -> DataSplits:
    """JSB Chorales as packed piano rolls (N, 160, 89): the published train / valid / test split."""
    seqs = read_jsb_pickle(req.files["pickle"])
    rolls = {k: jsb_piano_rolls(seqs[k]) for k in ("train", "valid", "test")}
    t = max(len(r) for v in rolls.values() for r in v)
    parts = {"train": pack_sequences(rolls["train"], t), "val": pack_sequences(rolls["valid"], t),
             "test": pack_sequences(rolls["test"], t)}
    return _splits(parts, 2, str(req.files["pickle"]))


# ------------------------------------------------------------------------------------------ Moving MNIST
def moving_mnist(digits: np.ndarray, n: int, seed: int, frames: int = 20, size: int = 64, n_digits: int = 2,
                 step: float = 0.1) -> np.ndarray:
    """(n, frames, size, size) float32 in [0, 1]: Srivastava et al. (2015)'s bouncing digits.

    Each of ``n_digits`` digits (drawn from ``digits`` (M, 28, 28) uint8) starts at a uniform position in the
    (size - 28)^2 square of top-left corners and moves in a uniform direction at ``step`` (a fraction of that
    square) per frame, reflecting off the edges; overlapping digits are combined by the pixel-wise maximum.
    """
    rng = np.random.default_rng(seed)
    d = digits.shape[-1]
    span = size - d
    out = np.zeros((n, frames, size, size), np.float32)
    for i in range(n):
        for _ in range(n_digits):
            img = digits[rng.integers(len(digits))].astype(np.float32) / 255.0
            pos = rng.random(2)  # (y, x) in [0, 1]
            theta = rng.random() * 2 * math.pi
            vel = np.array([math.sin(theta), math.cos(theta)]) * step
            for t in range(frames):
                top, left = (pos * span).astype(int)
                window = out[i, t, top : top + d, left : left + d]
                np.maximum(window, img, out=window)
                pos = pos + vel
                for a in range(2):  # reflect off the edges
                    if pos[a] < 0:
                        pos[a], vel[a] = -pos[a], -vel[a]
                    elif pos[a] > 1:
                        pos[a], vel[a] = 2 - pos[a], -vel[a]
    return out


MOVING_MNIST_TEST_SEED = 20150101  # the fixed test set does not depend on the run's seed


def load_moving_mnist(req: Any) -> DataSplits:
    """Moving MNIST as packed flat frames (N, 20, 64 * 64 + 1); sizes from ``data.dataset_options``."""
    from vaekit.data.readers import read_idx

    o = req.options
    n_train, n_val, n_test = int(o["n_train"]), int(o["n_val"]), int(o["n_test"])
    if n_train < 1 or n_val < 0 or n_test < 1:
        raise ValueError(f"moving-mnist dataset_options n_train={n_train}, n_val={n_val}, n_test={n_test}: "
                         f"n_train and n_test must be >= 1, n_val >= 0")
    train_digits, test_digits = read_idx(req.files["train_x"]), read_idx(req.files["test_x"])

    def flat(v: np.ndarray) -> np.ndarray:
        return pack_sequences(list(v.reshape(len(v), v.shape[1], -1)), v.shape[1]) if len(v) else \
            np.zeros((0, v.shape[1], v.shape[2] * v.shape[3] + 1), np.float32)

    pool = moving_mnist(train_digits, n_train + n_val, seed=req.seed)
    parts = {"train": flat(pool[:n_train]), "val": flat(pool[n_train:]),
             "test": flat(moving_mnist(test_digits, n_test, seed=MOVING_MNIST_TEST_SEED))}
    return _splits(parts, 256, f"generated from {req.files['train_x']} and {req.files['test_x']}")


# ------------------------------------------------------------------------------------------ synthetic sines
def load_sines(req: Any) -> DataSplits:
    """n sequences of 3 noisy sinusoids in [0, 1] (random frequency and phase), lengths uniform in
    [t_max // 2, t_max]: variable-length data that needs no file. Label: the frequency bin (0-3)."""
    o = req.options
    n, t_max = int(o["n"]), int(o["t_max"])
    if n < 3 or t_max < 2:
        raise ValueError(f"sines dataset_options n={n} (>= 3) and t_max={t_max} (>= 2)")
    rng = np.random.default_rng(req.seed)
    freq = rng.uniform(0.1, 0.5, n)
    seqs = []
    for i in range(n):
        t = np.arange(rng.integers(t_max // 2, t_max + 1))[:, None]  # (T, 1)
        phase = rng.uniform(0, 2 * math.pi, 3)
        s = 0.5 + 0.4 * np.sin(freq[i] * t + phase) + 0.05 * rng.standard_normal((len(t), 3))
        seqs.append(np.clip(s, 0.0, 1.0))
    x, y = pack_sequences(seqs, t_max), np.digitize(freq, [0.2, 0.3, 0.4])
    idx = split_indices(n, test_fraction=0.2, val_fraction=req.val_fraction, seed=req.seed)
    return _splits({k: x[i] for k, i in zip(("train", "val", "test"), idx)}, None, "generated sines",
                   {k: y[i] for k, i in zip(("train", "val", "test"), idx)})


# ------------------------------------------------------------------------------------------ your sequences
def read_sequences(path: str | Path) -> dict[str, list[np.ndarray]]:
    """{split: [(T_i, D) arrays]} from a user's file.

    .npy: (N, T, D) all of length T. .npz: ``x`` (N, T, D) with optional ``lengths`` (N,), or the splits
    ``train`` / ``val`` / ``test`` each with optional ``<split>_lengths``. .csv: long format with a header,
    the first column the sequence id, the second the time step, then one column per feature (rows in any order).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; give data.path=<file.npz|.npy|.csv> of sequences")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return {"all": _read_long_csv(p)}
    if suffix == ".npy":
        return {"all": _cut(np.load(p, allow_pickle=False), None, str(p))}
    if suffix != ".npz":
        raise ValueError(f"{p}: sequences are read from .npz, .npy or .csv files, not {suffix or 'no suffix'}")
    with np.load(p, allow_pickle=False) as z:
        keys = set(z.files)
        if "x" in keys:
            return {"all": _cut(z["x"], z["lengths"] if "lengths" in keys else None, f"{p} [x]")}
        if not {"train", "test"} <= keys:
            raise ValueError(f"{p}: expected an array 'x' (N, T, D) or arrays 'train' and 'test' (and 'val'); "
                             f"found {sorted(keys)}")
        return {k: _cut(z[k], z[f"{k}_lengths"] if f"{k}_lengths" in keys else None, f"{p} [{k}]")
                for k in ("train", "val", "test") if k in keys}


def _cut(x: np.ndarray, lengths: np.ndarray | None, what: str) -> list[np.ndarray]:
    if x.ndim != 3:
        raise ValueError(f"{what}: sequences must be an array (N, T, D), got shape {x.shape}")
    if x.dtype.kind not in "biuf" or not np.isfinite(x).all():
        raise ValueError(f"{what}: values must be finite numbers (dtype {x.dtype}); clean or impute them")
    if lengths is None:
        lengths = np.full(len(x), x.shape[1])
    lengths = np.asarray(lengths).reshape(-1)
    if len(lengths) != len(x) or lengths.min(initial=1) < 1 or lengths.max(initial=1) > x.shape[1]:
        raise ValueError(f"{what}: lengths must be {len(x)} whole numbers in 1..{x.shape[1]}")
    return [x[i, : int(lengths[i])].astype(np.float32) for i in range(len(x))]


def _read_long_csv(p: Path) -> list[np.ndarray]:
    import csv

    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 3:
        raise ValueError(f"{p}: a long-format CSV needs a header 'sequence,time,<feature>...' and rows")
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{p}: every value after the header must be a number ({e})") from None
    if table.shape[1] != len(rows[0]) or not np.isfinite(table).all():
        raise ValueError(f"{p}: every row needs {len(rows[0])} finite numbers")
    seqs = []
    for sid in np.unique(table[:, 0]):
        part = table[table[:, 0] == sid]
        part = part[np.argsort(part[:, 1], kind="stable")]
        if len(np.unique(part[:, 1])) != len(part):
            raise ValueError(f"{p}: sequence {sid:g} has a time step twice")
        seqs.append(part[:, 2:].astype(np.float32))
    return seqs


def load_sequences(req: Any) -> DataSplits:
    """Your sequences (``read_sequences``): one pool split with a seeded test fraction, or the file's splits."""
    raw = read_sequences(req.path)
    t = max(len(s) for v in raw.values() for s in v)
    values = np.concatenate([np.concatenate(v) for v in raw.values()])
    n_levels = 2 if np.isin(values, (0.0, 1.0)).all() else None
    if "all" in raw:
        x = pack_sequences(raw["all"], t)
        idx = split_indices(len(x), test_fraction=0.1, val_fraction=req.val_fraction, seed=req.seed)
        return _splits({k: x[i] for k, i in zip(("train", "val", "test"), idx)}, n_levels, str(req.path))
    d = raw["train"][0].shape[1]
    parts = {k: pack_sequences(raw[k], t) if raw.get(k) else np.zeros((0, t, d + 1), np.float32)
             for k in ("train", "val", "test")}
    return _splits(parts, n_levels, str(req.path))
