"""File-format readers: IDX round trip, .amat text, CIFAR-10 binary records, .npz and .mat errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.io

from vaekit.data.readers import check_digest, read_amat, read_cifar_bin, read_idx, read_mat_var, read_npz, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((5, 3, 4)) * 50).astype(dtype)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == (5, 3, 4)
    np.testing.assert_array_equal(back, arr)


def test_idx_known_bytes(tmp_path):
    """The header layout of LeCun's spec: 0, 0, type 0x08, ndim, big-endian sizes, then the bytes."""
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), [[1, 2, 3], [4, 5, 255]])
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9])
    (tmp_path / "y").write_bytes(labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "y"), [7, 0, 9])
    # big-endian int32 payload
    (tmp_path / "z").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2]))
    assert read_idx(tmp_path / "z").tolist() == [258]


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        read_idx(tmp_path / "short")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 9]))[:-6])
    with pytest.raises(ValueError, match="damaged gzip"):
        read_idx(tmp_path / "trunc.gz")
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "c", np.zeros(3, dtype=np.complex64))


def test_amat_text_and_mat(tmp_path):
    rng = np.random.default_rng(1)
    arr = (rng.random((6, 784)) < 0.3).astype(np.uint8)
    (tmp_path / "a.amat").write_text("\n".join(" ".join(map(str, r)) for r in arr) + "\n")
    np.testing.assert_array_equal(read_amat(tmp_path / "a.amat"), arr)
    # a float-formatted copy takes the slow path and gives the same array
    (tmp_path / "f.amat").write_text("\n".join(" ".join(f"{v:.1f}" for v in r) for r in arr))
    np.testing.assert_array_equal(read_amat(tmp_path / "f.amat"), arr)
    # MATLAB files circulating under the .amat name (variable X)
    scipy.io.savemat(tmp_path / "m.mat", {"X": arr}, do_compression=True)
    (tmp_path / "m.amat").write_bytes((tmp_path / "m.mat").read_bytes())
    np.testing.assert_array_equal(read_amat(tmp_path / "m.amat"), arr)
    (tmp_path / "t.amat").write_text(" ".join(["1"] * 785))
    with pytest.raises(ValueError, match="rows of 784"):
        read_amat(tmp_path / "t.amat")


def test_cifar_bin_synthetic(tmp_path):
    """Records are 1 label byte then R, G, B planes of 32x32 bytes each, rows first."""
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    labels = np.array([3, 0, 9, 5], dtype=np.uint8)
    recs = b"".join(bytes([labels[i]]) + imgs[i].tobytes() for i in range(4))
    (tmp_path / "b.bin").write_bytes(recs)
    x, y = read_cifar_bin(tmp_path / "b.bin")
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, labels)
    assert x[1, 2, 0, 5] == recs[3073 + 1 + 2 * 1024 + 5]  # example 1 (after its label), blue plane, row 0, col 5
    (tmp_path / "c.bin").write_bytes(recs[:-1])
    with pytest.raises(ValueError, match="3073-byte CIFAR records"):
        read_cifar_bin(tmp_path / "c.bin")


def test_npz_errors(tmp_path):
    np.savez_compressed(tmp_path / "ok.npz", a=np.arange(3))
    assert read_npz(tmp_path / "ok.npz")["a"].tolist() == [0, 1, 2]
    good = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip archive at all")
    for name in ("trunc.npz", "junk.npz"):
        with pytest.raises(ValueError, match=rf"could not read .*{name} as a \.npz archive"):
            read_npz(tmp_path / name)
    np.savez(tmp_path / "obj.npz", a=np.array([{"k": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        read_npz(tmp_path / "obj.npz")


def test_mat_var_and_digest(tmp_path):
    scipy.io.savemat(tmp_path / "f.mat", {"ff": np.arange(6, dtype=np.uint8).reshape(2, 3)})
    np.testing.assert_array_equal(read_mat_var(tmp_path / "f.mat", "ff"), [[0, 1, 2], [3, 4, 5]])
    with pytest.raises(ValueError, match="no variable 'zz'"):
        read_mat_var(tmp_path / "f.mat", "zz")
    (tmp_path / "g.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="MATLAB"):
        read_mat_var(tmp_path / "g.mat", "ff")
    (tmp_path / "h").write_bytes(b"abc")
    check_digest(tmp_path / "h", "900150983cd24fb0d6963f7d28e17f72")  # md5("abc"), RFC 1321 test suite
    with pytest.raises(ValueError, match="damaged or a different version"):
        check_digest(tmp_path / "h", "0" * 32)
