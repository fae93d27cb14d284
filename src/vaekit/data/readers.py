"""Readers for the on-disk formats of the registered datasets. Each returns numpy arrays; nothing is pickled.

- IDX (LeCun et al., MNIST / Fashion-MNIST): 4-byte magic ``0, 0, dtype code, ndim``, then ``ndim`` big-endian
  int32 sizes, then the values in C order, big-endian. Optionally gzip-compressed.
- ``.amat`` (Larochelle & Murray 2011 binarised MNIST): one example per line, whitespace-separated numbers.
- MATLAB ``.mat`` (Frey Face): read with ``scipy.io.loadmat``.
- CIFAR-10 binary version: records of 1 label byte followed by 3072 pixel bytes (1024 R, 1024 G, 1024 B, each a
  row-major 32x32 plane).
- CIFAR-10 python version: a Python 2 pickle of a dict (``data`` uint8 (N, 3072) in the same plane order,
  ``labels``); read by an unpickler that can only rebuild numpy arrays, so a file cannot run code.
- ``.npz``: ``numpy.load(..., allow_pickle=False)`` with clear errors for corrupt files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx",
    "write_idx",
    "read_amat",
    "read_mat_var",
    "read_cifar_bin",
    "read_cifar_py",
    "read_npz",
    "file_digest",
    "check_digest",
]

# IDX dtype codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path} is a damaged gzip file ({e}); delete it and fetch it again") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a numpy array of its stored dtype (native byte order)."""
    buf = _read_maybe_gzip(Path(path))
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {buf[:4].hex()})")
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: IDX header cut short ({len(buf)} bytes); the file is truncated: fetch it again")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise ValueError(f"{path}: IDX header says shape {dims} ({expected} bytes) but the file has {len(buf)} bytes")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | Path, arr: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``arr`` as an IDX file; gzip-compressed when ``compress`` (default: path ends with ``.gz``)."""
    arr = np.ascontiguousarray(arr)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("=").str)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    data = header + arr.astype(_IDX_DTYPES[code], copy=False).tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        data = gzip.compress(data)
    from vaekit.utils import atomic_write_bytes

    atomic_write_bytes(path, data)


def read_amat(path: str | Path, n_cols: int = 784) -> np.ndarray:
    """Read a binarised-MNIST ``.amat`` text file into a (N, n_cols) uint8 array of 0/1.

    Fast path for files holding only the digits 0/1 and whitespace; anything else is parsed as numbers. Some
    copies circulate as MATLAB files under the .amat name (variable ``X``); those are read with scipy.
    """
    data = Path(path).read_bytes()
    if data.startswith(b"MATLAB"):
        vals = np.asarray(read_mat_var(path, "X"), dtype=np.uint8)
        return vals.reshape(vals.shape[0], -1)
    raw = np.frombuffer(data, dtype=np.uint8)
    digit = (raw == ord("0")) | (raw == ord("1"))
    space = np.isin(raw, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    if np.all(digit | space):
        vals = (raw[digit] == ord("1")).astype(np.uint8)
    else:
        try:
            vals = np.loadtxt(path, dtype=np.float64).reshape(-1)
        except ValueError as e:
            reason = str(e).splitlines()[0]
            raise ValueError(f"{path}: not a table of numbers ({reason}); the file is corrupt") from None
        if not np.all((vals == 0) | (vals == 1)):
            raise ValueError(f"{path}: expected only 0/1 values in a binarised .amat file")
        vals = vals.astype(np.uint8)
    if vals.size % n_cols:
        raise ValueError(f"{path}: {vals.size} values do not form rows of {n_cols}; the file is truncated or corrupt")
    return vals.reshape(-1, n_cols)


def read_mat_var(path: str | Path, var: str) -> np.ndarray:
    """Variable ``var`` of a MATLAB ``.mat`` file (v5 format), via ``scipy.io.loadmat``."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=[var])
    except Exception as e:  # scipy raises several types for a damaged file
        raise ValueError(f"could not read {path} as a MATLAB .mat file ({e}); fetch it again") from None
    if var not in mat:
        raise ValueError(f"{path} holds no variable {var!r}")
    return mat[var]


def read_cifar_bin(path: str | Path, image_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 binary batch: returns images (N, C, H, W) uint8 and labels (N,) uint8."""
    rec = 1 + int(np.prod(image_shape))
    raw = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % rec:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {rec}-byte CIFAR records")
    raw = raw.reshape(-1, rec)
    return raw[:, 1:].reshape(-1, *image_shape), raw[:, 0].copy()


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler whose only globals are numpy's array and dtype reconstructors (and ``_codecs.encode``, with
    which Python 3 writes bytes at protocol 2): any other global (a function or class a crafted pickle would
    call) is refused, so loading a file cannot execute code."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        allowed = {
            "_reconstruct": np.zeros(1).__reduce__()[0],  # numpy's array rebuilder, wherever this numpy keeps it
            "ndarray": np.ndarray,
            "dtype": np.dtype,
        }
        if module.split(".")[0] == "numpy" and name in allowed:
            return allowed[name]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays are)")


def read_cifar_py(path: str | Path, image_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 python-version batch (``data_batch_k``, ``test_batch``) without running code: returns
    images (N, C, H, W) uint8 and labels (N,) int64. ValueError naming the file if it is damaged or not a batch."""
    hint = "the file is damaged or not a CIFAR-10 python batch: delete it and fetch it again"
    try:
        with open(path, "rb") as fh:
            d = _ArraysOnlyUnpickler(io.BufferedReader(fh), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError(f"could not read {path} ({type(e).__name__}: {e}); {hint}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} holds a {type(d).__name__}, not a dict; {hint}")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    data, labels = d.get("data"), d.get("labels", d.get("fine_labels"))
    size = int(np.prod(image_shape))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' is {what}, expected uint8 (N, {size}); {hint}")
    try:
        y = np.asarray(labels if labels is not None else [], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        y = np.zeros(0, np.int64)
    if len(y) != len(data):
        raise ValueError(f"{path}: {len(y)} labels for {len(data)} images; {hint}")
    return data.reshape(-1, *image_shape), y


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, loaded without pickle; ValueError naming the file if it is corrupt."""
    errors = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)
    hint = "the file is corrupt, truncated, not an .npz or holds pickled objects; recreate it"
    try:
        z = np.load(path, allow_pickle=False)
    except errors as e:
        raise ValueError(f"could not read {path} as a .npz archive ({type(e).__name__}: {e}); {hint}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not a .npz archive; rename it to .npy")
    try:
        with z:
            return {k: z[k] for k in z.files}
    except errors as e:
        raise ValueError(f"could not read {path} as a .npz archive ({type(e).__name__}: {e}); {hint}") from None


def file_digest(path: str | Path, algo: str = "md5") -> str:
    """Hex digest of a file (``algo`` is any hashlib name)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(path: str | Path, expected: str, algo: str = "md5") -> None:
    """ValueError if the file's digest differs from ``expected``."""
    got = file_digest(path, algo)
    if got != expected.lower():
        raise ValueError(f"{path} has {algo} {got}, expected {expected}; the file is damaged or a different "
                         f"version: delete it and fetch it again")
