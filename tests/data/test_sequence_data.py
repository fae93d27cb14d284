"""Sequence datasets: the JSB pickle read without running code, packing with the step mask, your own files,
Moving MNIST's bouncing digits."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import load_data
from vaekit.data.sequences import lengths_of, moving_mnist, pack_sequences, read_jsb_pickle, read_sequences


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling it would create the file


def test_the_jsb_reader_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "jsb.pickle"
    bad.write_bytes(pickle.dumps({"train": [[_RunsCode(marker)]], "valid": [], "test": []}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (io|builtins)\.open"):
        read_jsb_pickle(bad)
    assert not marker.exists()
    good = tmp_path / "ok.pickle"  # the published layout: lists of steps, each a tuple of numpy int64 notes
    good.write_bytes(pickle.dumps({k: [[(np.int64(60), np.int64(64)), ()]] for k in ("train", "valid", "test")},
                                  protocol=2))
    assert read_jsb_pickle(good)["train"] == [[(60, 64), ()]]


def test_pack_sequences_pads_and_marks_the_steps():
    x = pack_sequences([np.ones((3, 2)), 2 * np.ones((1, 2))], 4)
    assert x.shape == (2, 4, 3) and x.dtype == np.float32
    assert lengths_of(x).tolist() == [3, 1]
    assert x[1, 1:].sum() == 0 and x[0, :3, :2].sum() == 6
    with pytest.raises(ValueError, match="1..2 steps"):
        pack_sequences([np.ones((3, 2))], 2)


def test_your_sequences_from_npz_with_lengths_and_from_long_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((20, 6, 2)).astype(np.float32)
    lengths = rng.integers(1, 7, 20)
    np.savez(tmp_path / "s.npz", x=x, lengths=lengths)
    seqs = read_sequences(tmp_path / "s.npz")["all"]
    assert [len(s) for s in seqs] == lengths.tolist() and np.array_equal(seqs[3], x[3, : lengths[3]])
    d = load_data("sequences", path=str(tmp_path / "s.npz"))
    assert d.shape == (6, 3) and len(d.train) + len(d.val) + len(d.test) == 20 and d.n_levels is None
    rows = ["sequence,time,a,b", "7,1,0.5,0.25", "7,0,0.1,0.2", "3,0,1,1"]  # rows in any order
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    seqs = read_sequences(tmp_path / "s.csv")["all"]
    assert len(seqs) == 2 and np.array_equal(seqs[0], [[1.0, 1.0]])  # sequence 3, then 7 in time order
    np.testing.assert_allclose(seqs[1], [[0.1, 0.2], [0.5, 0.25]], rtol=1e-6)
    (tmp_path / "bad.csv").write_text("sequence,time,a\n1,0,0.5\n1,0,0.6\n")
    with pytest.raises(ValueError, match="sequence 1 has a time step twice"):
        read_sequences(tmp_path / "bad.csv")


def test_moving_mnist_two_digits_bounce_inside_the_frame():
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 10:18] = 255  # an 8x8 square per digit
    a = moving_mnist(digits, 4, seed=1)
    assert a.shape == (4, 20, 64, 64) and np.array_equal(a, moving_mnist(digits, 4, seed=1))
    mass = a.sum((2, 3))  # two squares of 64 pixels, fewer where they overlap
    assert mass.max() == 128 and mass.min() >= 64
    # each square moves by at most 0.1 * 36 = 3.6 pixels (rounded: 4) per frame
    ys = [np.nonzero(a[0, t].max(1))[0] for t in range(20)]
    assert all(abs(int(ys[t + 1].min()) - int(ys[t].min())) <= 4 for t in range(19))


@pytest.mark.skipif(not os.environ.get("VAEKIT_DATA_DIR") or not (
    Path(os.environ.get("VAEKIT_DATA_DIR", ".")) / "jsb_chorales" / "jsb_chorales.pickle").is_file(),
                    reason="jsb_chorales.pickle not found: set VAEKIT_DATA_DIR to a folder holding it")
def test_jsb_chorales_as_pyro_uses_them():
    d = load_data("jsb-chorales")
    assert d.shape == (160, 89) and [len(p) for p in d.splits().values()] == [229, 76, 77]
    steps = [int(lengths_of(p.x).sum()) for p in d.splits().values()]
    assert steps == [13807, 4602, 4725]
    assert int(d.train.x[..., :-1].sum()) == 53824  # notes in the training split
    on = d.train.x[..., :-1].sum((0, 1)).nonzero().flatten()
    assert int(on.min()) + 21 >= 43 and int(on.max()) + 21 <= 96
