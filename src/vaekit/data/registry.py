"""The dataset registry: one ``DatasetSpec`` per name, holding everything dataset-specific (files, checksums,
mirrors, scaling, splits). The rest of ``vaekit.data`` is generic and never branches on a dataset's name.

Splits: official test sets are used where they exist (MNIST, Fashion-MNIST, CIFAR-10, binarised MNIST); the
other datasets get a seeded test split (``TEST_FRACTION``, 20 % for digits). Validation data are carved out of
the training pool with ``val_fraction`` (binarised MNIST uses its given valid split).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from vaekit.data.base import ArrayData, DataSplits, split_indices, to_labels
from vaekit.data.download import DownloadItem
from vaekit.data.files import read_arrays, read_image_folder
from vaekit.data import sequences as seq
from vaekit.data.rows import ArrayRows, TensorRows, npy_shards
from vaekit.data.faces_chars import CELEBA_DIR, git_blob_check, load_celeba, load_omniglot
from vaekit.data.stream import archive_kind, stream_rows
from vaekit.data.readers import read_amat, read_cifar_bin, read_cifar_py, read_idx, read_mat_var, read_npz

if TYPE_CHECKING:  # torch is imported where it is used, so `vaekit datasets` starts without it
    import torch

__all__ = ["LoadRequest", "DatasetSpec", "DATASETS", "TEST_FRACTION"]

TEST_FRACTION = 0.1  # seeded test split for datasets without an official one
LABELS_FILE = "labels.npy"  # beside .npy shards: their labels (int), in shard order


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: ``files`` maps the roles of the layout found to paths; ``path`` is the user's path."""

    files: Mapping[str, Path]
    path: Path | None
    val_fraction: float
    seed: int
    image_size: tuple[int, int] | None = None
    grayscale: bool | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # data.dataset_options, checked against the spec's
    storage: str = "memory"  # see vaekit.data.api.STORAGE_MODES
    memory_limit_mb: float = 2048.0  # storage="auto": larger user data are memory-mapped / streamed
    workers: int = 2  # streamed files: decoding worker processes
    on_error: str = "skip"  # streamed files: an unreadable file is skipped (counted in the log) or an error


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry.

    folder: sub-folder of the data dir holding the files. layouts: alternative complete sets of files, each
    mapping a role to a path relative to the folder (empty for bundled or user-path datasets). md5: digests
    checked at every load (published ones only). downloads: files ``download`` fetches into the folder.
    needs_path: the data come from the user's ``path``. reads_path: an own dataset that reads the user's ``path``
    instead when one is given (dSprites' published file). image_options: accepts image_size / grayscale.
    options: the ``data.dataset_options`` keys it accepts with their defaults. ground_truth: for data with known
    generative factors, the ``GroundTruthData`` sampler the disentanglement metrics draw from.
    folder_aliases: other names of the folder, looked in when ``folder`` lacks the files (older spellings).
    """

    name: str
    description: str
    load: Callable[[LoadRequest], DataSplits]
    folder: str | None = None
    folder_aliases: tuple[str, ...] = ()
    layouts: tuple[Mapping[str, str], ...] = ()
    md5: Mapping[str, str] = field(default_factory=dict)
    downloads: tuple[DownloadItem, ...] = ()
    needs_path: bool = False
    reads_path: bool = False
    image_options: bool = False
    how_to_get: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    ground_truth: Callable[[LoadRequest], Any] | None = None


def _part(x: np.ndarray, y: np.ndarray | None, scale: float, what: str) -> ArrayData:
    """x / scale and int64 labels: 8-bit data kept as uint8 (``TensorRows``, converted per batch or by
    ``load_data`` for float32 storage), anything else as a float32 tensor (one conversion, after splitting)."""
    import torch

    t = torch.from_numpy(np.require(x, requirements=["C", "W"]))
    if t.dtype == torch.uint8:
        return ArrayData(TensorRows(t, scale), to_labels(y, what))
    return ArrayData(t.to(torch.float32).div_(scale), to_labels(y, what))


def _splits(parts: list[ArrayData], n_levels: int | None, source: str) -> DataSplits:
    train, val, test = parts
    return DataSplits(train, val, test, tuple(train.x.shape[1:]), n_levels, name="", source=source)


def _pool_split(x: np.ndarray, y, scale: float, req: LoadRequest, n_levels, source: str,
                test_fraction: float = TEST_FRACTION) -> DataSplits:
    """Seeded train/val/test split of one pool of examples x (N, ...)."""
    idx = split_indices(len(x), test_fraction=test_fraction, val_fraction=req.val_fraction, seed=req.seed)
    return _splits([_part(x[i], None if y is None else y[i], scale, source) for i in idx], n_levels, source)


def _carve_val(train: tuple, test: tuple, scale: float, req: LoadRequest, n_levels, source: str) -> DataSplits:
    """Official test set kept; val carved from the official train set (x, y) with ``req.val_fraction``."""
    (x, y), (xt, yt) = train, test
    tr, va, _ = split_indices(len(x), test_fraction=0.0, val_fraction=req.val_fraction, seed=req.seed)
    parts = [_part(x[i], None if y is None else y[i], scale, source) for i in (tr, va)]
    return _splits([*parts, _part(xt, yt, scale, source)], n_levels, source)


def _is_binary(a: np.ndarray) -> bool:
    return bool(a.max() <= 1) if a.dtype in (np.uint8, np.bool_) else bool(np.isin(a, (0, 1)).all())


def _source(req: LoadRequest) -> str:
    return ", ".join(str(p) for p in req.files.values()) if req.files else str(req.path)


# ---------------------------------------------------------------------------------------------- loaders
def _load_idx(req: LoadRequest) -> DataSplits:
    def part(split: str) -> tuple[np.ndarray, np.ndarray]:
        return read_idx(req.files[f"{split}_x"])[:, None], read_idx(req.files[f"{split}_y"])  # (N, 1, H, W), (N,)

    return _carve_val(part("train"), part("test"), 255.0, req, 256, _source(req))


def _load_binarized(req: LoadRequest) -> DataSplits:
    arrays = read_npz(req.files["npz"]) if "npz" in req.files else {k: read_amat(p) for k, p in req.files.items()}
    missing = [k for k in ("train", "valid", "test") if k not in arrays]
    if missing:
        raise ValueError(f"{_source(req)} lacks the split(s) {missing}; expected train, valid, test")
    for k in ("train", "valid", "test"):
        if arrays[k].size % 784 or not _is_binary(arrays[k]):
            raise ValueError(f"binarized-mnist {k} split is not 0/1 data of 784 pixels per row; the file is wrong")
    parts = [_part(arrays[k].reshape(-1, 1, 28, 28), None, 1.0, k) for k in ("train", "valid", "test")]
    return _splits(parts, 2, _source(req))


def _load_frey(req: LoadRequest) -> DataSplits:
    ff = read_mat_var(req.files["mat"], "ff")  # (560, N) uint8, one column per 28x20 face
    if ff.shape[0] != 560:
        raise ValueError(f"{req.files['mat']}: variable 'ff' has shape {ff.shape}, expected (560, N)")
    return _pool_split(ff.T.reshape(-1, 1, 28, 20), None, 255.0, req, 256, _source(req))


def _load_cifar(req: LoadRequest) -> DataSplits:
    """CIFAR-10 from the python batches (pickles read without running code) or the binary ``.bin`` batches."""
    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar_bin(path) if path.suffix == ".bin" else read_cifar_py(path)

    def part(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = zip(*(read(req.files[k]) for k in keys))  # (N, 3, 32, 32), (N,)
        return np.concatenate(xs), np.concatenate(ys)

    return _carve_val(part(_CIFAR_BIN[:5]), part(_CIFAR_BIN[5:]), 255.0, req, 256, _source(req))


def _load_digits(req: LoadRequest) -> DataSplits:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)  # (1797, 64) float64 in 0..16
    return _pool_split(x.reshape(-1, 1, 8, 8), y, 16.0, req, 17, "sklearn.datasets.load_digits (bundled)",
                       test_fraction=0.2)


def _load_image_folder(req: LoadRequest) -> DataSplits:
    if req.storage == "mmap":
        raise ValueError("data.storage=mmap reads .npy arrays; an image folder is read with storage=stream or "
                         "memory (or convert it once: vaekit datasets --prepare PATH)")
    archive = archive_kind(req.path) is not None
    if req.storage in ("stream", "auto") or archive:
        rows, y = stream_rows(req.path, image_size=req.image_size, grayscale=req.grayscale, workers=req.workers,
                              on_error=req.on_error)
        if req.storage == "stream" or (req.storage == "auto" and
                                       len(rows) * int(np.prod(rows.shape[1:])) > req.memory_limit_mb * 2**20):
            return _rows_split(rows, y, req, str(req.path))
    if archive:  # a .zip or .tar held in memory: decoded once by the stream's workers
        parts = list(rows.iter_uint8(1024))
        x = np.concatenate([xb for xb, _, _ in parts]) if parts else np.zeros((0, *rows.shape[1:]), np.uint8)
        if y is not None:
            y = y[np.concatenate([np.asarray(k, dtype=np.int64) for _, k, _ in parts])]
        return _pool_split(x, y, 255.0, req, 256, str(req.path))
    x, y, _ = read_image_folder(req.path, image_size=req.image_size, grayscale=req.grayscale)
    return _pool_split(x, y, 255.0, req, 256, str(req.path))


def _rows_split(rows, y: np.ndarray | None, req: LoadRequest, source: str, n_levels: int | None = 256,
                test_fraction: float = TEST_FRACTION) -> DataSplits:
    """Seeded train/val/test split of examples held as Rows (memory-mapped or streamed)."""
    idx = split_indices(len(rows), test_fraction=test_fraction, val_fraction=req.val_fraction, seed=req.seed)
    parts = [ArrayData(rows.subset(i), None if y is None else to_labels(y[i], source)) for i in idx]
    return _splits(parts, n_levels, source)


def _npy_rows(req: LoadRequest) -> tuple[ArrayRows, np.ndarray | None] | None:
    """The .npy file or folder of .npy shards at the user's path as memory-mapped rows (with the labels of a
    ``labels.npy`` beside the shards), when storage asks for it; None to read it into memory."""
    p = req.path
    is_npy = p.is_file() and p.suffix.lower() == ".npy"
    if req.storage == "mmap" and not (is_npy or p.is_dir()):
        raise ValueError(f"data.storage=mmap reads a .npy file or a folder of .npy shards, not {p}")
    if req.storage not in ("mmap", "auto") or not (is_npy or p.is_dir()):
        return None
    files = [f for f in npy_shards(p) if f.name != LABELS_FILE]
    size = sum(f.stat().st_size for f in files)
    if req.storage == "auto" and size <= req.memory_limit_mb * 2**20 and is_npy:
        return None
    rows = ArrayRows(files)
    rows = ArrayRows(files, 255.0 if rows.dtype == np.uint8 else 1.0)
    labels = p / LABELS_FILE if p.is_dir() else None
    return rows, (np.load(labels, allow_pickle=False) if labels is not None and labels.is_file() else None)


def _load_arrays(req: LoadRequest) -> DataSplits:
    if req.storage == "stream":
        raise ValueError("data.storage=stream reads image folders; arrays are read with storage=mmap or memory")
    mapped = _npy_rows(req)
    if mapped is not None:  # no scan of the data: 8-bit when uint8, else real-valued
        rows, y = mapped
        if y is not None and len(y) != len(rows):
            raise ValueError(f"{req.path / LABELS_FILE} holds {len(y)} labels for {len(rows)} examples")
        return _rows_split(rows, y, req, str(req.path), 256 if rows.dtype == np.uint8 else None)
    if req.path.is_dir():  # a folder of .npy shards, read into memory
        files = [f for f in npy_shards(req.path) if f.name != LABELS_FILE]
        labels = req.path / LABELS_FILE
        rows = ArrayRows(files)
        found = {"all": (rows.read(np.arange(len(rows))),
                         np.load(labels, allow_pickle=False) if labels.is_file() else None)}
    else:
        found = read_arrays(req.path)
    raw = {k: (np.asarray(x), y) for k, (x, y) in found.items()}
    is_u8 = all(x.dtype == np.uint8 for x, _ in raw.values())  # uint8 arrays are taken to be 8-bit images
    raw = {k: (x[:, None] if x.ndim == 1 else x, y) for k, (x, y) in raw.items()}
    shapes = {k: x.shape[1:] for k, (x, _) in raw.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{req.path}: the splits have different per-example shapes {shapes}")
    for k, (x, _) in raw.items():
        if x.dtype.kind not in "biuf" or not np.isfinite(x).all():
            raise ValueError(f"{req.path} [{k}]: values must be finite numbers (dtype {x.dtype}); clean or impute")
    binary = all(_is_binary(x) for x, _ in raw.values())
    n_levels, scale = (256, 255.0) if is_u8 else (2 if binary else None, 1.0)
    if "all" in raw:
        return _pool_split(*raw["all"], scale, req, n_levels, str(req.path))
    parts = [_part(*raw[k], scale, f"{req.path} [{k}]") for k in ("train", "val", "test")]
    return _splits(parts, n_levels, str(req.path))


_DSPRITES_MEMO: dict = {}


def _dsprites_truth(req: LoadRequest):
    """The published file when given as path, else rendering (from the cache in the data dir when it is there)."""
    from vaekit.data import dsprites

    if req.path is not None:
        return dsprites.load_original(req.path)
    return dsprites.DSprites(cache=req.files.get("cache"))


def _load_dsprites(req: LoadRequest) -> DataSplits:
    """dSprites: seeded disjoint train / val / test subsets of the 737,280 images (sizes from dataset_options),
    rendered (or read from the published .npz given as path); labels are the shape, ``factors`` the classes."""
    import torch

    from vaekit.data import dsprites

    sizes = [int(req.options[k]) for k in ("n_train", "n_val", "n_test")]
    if min(sizes) < 0 or sizes[0] < 1 or sum(sizes) > dsprites.N_IMAGES:
        raise ValueError(f"dsprites dataset_options n_train/n_val/n_test = {sizes} must be >= 0 (n_train >= 1) "
                         f"and sum to at most {dsprites.N_IMAGES}")
    key = (req.seed, tuple(sizes), str(req.path))
    if key not in _DSPRITES_MEMO:  # the last small split rendered, kept for a second load in the same process
        perm = torch.randperm(dsprites.N_IMAGES, generator=torch.Generator().manual_seed(req.seed))  # CPU: one split
        truth = _dsprites_truth(req)
        made, start = [], 0
        for n in sizes:
            idx = perm[start:start + n].sort().values
            start += n
            classes = dsprites.index_to_classes(idx)  # (n, 5)
            made.append((truth.images(classes), classes))
        _DSPRITES_MEMO.clear()
        if sum(sizes) > 20_000:  # large splits are not kept (memory)
            return _splits([ArrayData(x, c[:, 0].clone(), factors=c) for x, c in made], 2, _dsprites_source(req))
        _DSPRITES_MEMO[key] = made
    parts = [ArrayData(x.clone(), c[:, 0].clone(), factors=c.clone()) for x, c in _DSPRITES_MEMO[key]]
    return _splits(parts, 2, _dsprites_source(req))


def _dsprites_source(req: LoadRequest) -> str:
    return str(req.path) if req.path is not None else "rendered by vaekit.data.dsprites"


# ------------------------------------------------------------------------------------------ checksums
_MNIST_FILES = {  # role -> (file, published md5, sha256)
    "train_x": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_y": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_x": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_y": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
_FASHION_MD5 = {"train_x": "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "train_y": "25c81989df183df01b3e8a0aad5dffbe",
                "test_x": "bef4ecab320f06d8554ea6380940ec79", "test_y": "bb300cfdad3c16e7a12a480ee83cd310"}
# sha256 of the uint8 0/1 array bytes of each split (the .amat files have no published file hash)
_BINARIZED_SHA256 = {
    "train": "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a",
    "valid": "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e",
    "test": "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86",
}
_FREY_CONTENT_SHA256 = "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78"  # of ff.T, C order
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_LAROCHELLE = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_CIFAR_BIN = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_UDACITY_CELEBA = "https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip"  # the same file (md5)
_IWAE_OMNIGLOT = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
_OMNIGLOT_BLOB = "016a3536ffe5e1d38e42563a18d7a78bfaf643ec"  # its git blob id in yburda/iwae


def _gdrive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


_CIFAR_PY_MD5 = {  # the published md5 of each python-version batch
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}


def _content_check(expected: str, read: Callable[[Path], np.ndarray]) -> Callable[[Path], None]:
    def verify(path: Path) -> None:
        got = hashlib.sha256(np.ascontiguousarray(read(path)).tobytes()).hexdigest()
        if got != expected:
            raise ValueError(f"{path.name}: content sha256 {got} != expected {expected}")

    return verify


_IDX_HOW = "or copy the four IDX .gz files into the folder"
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("digits", "scikit-learn 8x8 handwritten digits (1,797 images, grey levels 0..16, n_levels 17)",
                _load_digits, how_to_get="bundled with scikit-learn; nothing to fetch"),
    DatasetSpec("mnist", "MNIST handwritten digits, 28x28 8-bit grey, 60k train / 10k test (LeCun et al. 1998)",
                _load_idx, folder="mnist", layouts=({r: f for r, (f, _, _) in _MNIST_FILES.items()},),
                md5={f: m for f, m, _ in _MNIST_FILES.values()}, how_to_get=_IDX_HOW,
                downloads=tuple(DownloadItem(f, tuple(u + f for u in _MNIST_MIRRORS), md5=m, sha256=s)
                                for f, m, s in _MNIST_FILES.values())),
    DatasetSpec("fashion-mnist", "Fashion-MNIST clothing images, 28x28 8-bit grey, 60k train / 10k test "
                "(Xiao et al. 2017)", _load_idx, folder="fashion_mnist", folder_aliases=("fashion-mnist",),
                layouts=({r: f for r, (f, _, _) in _MNIST_FILES.items()},), how_to_get=_IDX_HOW,
                md5={_MNIST_FILES[r][0]: m for r, m in _FASHION_MD5.items()},
                downloads=tuple(DownloadItem(_MNIST_FILES[r][0], tuple(u + _MNIST_FILES[r][0] for u in
                                                                       _FASHION_MIRRORS), md5=m)
                                for r, m in _FASHION_MD5.items())),
    DatasetSpec("binarized-mnist", "MNIST with the fixed binarisation of Larochelle & Murray (2011), "
                "50k train / 10k valid / 10k test", _load_binarized, folder="binarized_mnist",
                layouts=({"npz": "binarized_mnist.npz"},
                         {k: f"binarized_mnist_{k}.amat" for k in ("train", "valid", "test")}),
                how_to_get="or put binarized_mnist.npz (uint8 arrays train/valid/test) in the folder",
                downloads=tuple(DownloadItem(f"binarized_mnist_{k}.amat", (f"{_LAROCHELLE}binarized_mnist_{k}.amat",),
                                             verify=_content_check(h, read_amat))
                                for k, h in _BINARIZED_SHA256.items())),
    DatasetSpec("frey-face", "Frey Face: 1,965 frames of one face, 28x20 8-bit grey (Roweis' data page)",
                _load_frey, folder="frey_face", layouts=({"mat": "frey_rawface.mat"},),
                how_to_get="or copy frey_rawface.mat into the folder",
                downloads=(DownloadItem("frey_rawface.mat", ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",),
                                        verify=_content_check(_FREY_CONTENT_SHA256,
                                                              lambda p: read_mat_var(p, "ff").T)),)),
    DatasetSpec("cifar10", "CIFAR-10 colour images, 3x32x32 8-bit, 50k train / 10k test (Krizhevsky 2009), "
                "python or binary version", _load_cifar, folder="cifar10",
                layouts=({k: f"cifar-10-batches-py/{k}" for k in _CIFAR_BIN},
                         {k: f"cifar-10-batches-bin/{k}.bin" for k in _CIFAR_BIN}),
                md5=_CIFAR_PY_MD5,
                how_to_get="or extract cifar-10-python.tar.gz (or cifar-10-binary.tar.gz) into the folder",
                downloads=(DownloadItem("cifar-10-python.tar.gz",
                                        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                                        md5="c58f30108f718f92721af3b95e74349a", unpack_tar=True),)),
    DatasetSpec("celeba", "CelebA aligned faces (Liu et al. 2015), 202,599 images, official split; a centred "
                "crop resized to size x size (dataset_options size 64 or 128, crop 148), streamed from the zip",
                load_celeba, folder="celeba", options={"size": 64, "crop": 148},
                layouts=({"zip": "img_align_celeba.zip", "partition": "list_eval_partition.txt"},
                         {"first": f"{CELEBA_DIR}/000001.jpg", "partition": "list_eval_partition.txt"}),
                md5={"img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
                     "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668"},
                how_to_get="or copy img_align_celeba.zip and list_eval_partition.txt (from the CelebA page) into "
                "the folder",
                downloads=(DownloadItem("img_align_celeba.zip", (_gdrive("0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
                                                                 _UDACITY_CELEBA),
                                        md5="00d2c5bc6d35e252742224ab0c1e8fcb"),
                           DownloadItem("list_eval_partition.txt", (_gdrive("0B7EVK8r0v71pY0NSMzRuSXJEVkk"),),
                                        md5="d32c9cbf5e040fd4025c592c306e6668"))),
    DatasetSpec("omniglot", "Omniglot characters, 28x28 grey levels in [0, 1], 24,345 train / 8,070 test, the "
                "IWAE split (Burda et al. 2016; Lake et al. 2015)", load_omniglot, folder="omniglot",
                layouts=({"mat": "chardata.mat"},), how_to_get="or copy chardata.mat (yburda/iwae) into the folder",
                downloads=(DownloadItem("chardata.mat", (_IWAE_OMNIGLOT,), verify=git_blob_check(_OMNIGLOT_BLOB)),)),
    DatasetSpec("dsprites", "dSprites: 64x64 binary shapes with 5 known factors (Matthey et al. 2017), 737,280 "
                "images generated on the fly; seeded subsets (dataset_options n_train/n_val/n_test)",
                _load_dsprites, how_to_get="generated, nothing to fetch; data.path=dsprites_ndarray_...npz reads "
                "the published file instead (md5-checked)", ground_truth=_dsprites_truth, reads_path=True,
                options={"n_train": 100_000, "n_val": 5_000, "n_test": 5_000}),
    DatasetSpec("image-folder", "your folder (or .zip / .tar) of PNG/JPEG images (class sub-folders give labels), 8-bit",
                _load_image_folder, needs_path=True, image_options=True,
                how_to_get="pass path=<folder, .zip or .tar> (--path); resize with image_size=(H, W)"),
    DatasetSpec("arrays", "your tabular or array data from .npy / .npz / .csv (real-valued unless in [0, 1])",
                _load_arrays, needs_path=True, how_to_get="pass path=<file.npy|.npz|.csv> (--path)"),
    # sequences (vaekit.data.sequences): (N, T, D + 1) with the step mask as the last feature
    DatasetSpec("jsb-chorales", "JSB Chorales 88-key piano rolls, 229 / 76 / 77 chorales of 25-160 steps "
                "(Boulanger-Lewandowski et al. 2012), as Pyro's deep Markov model uses them", seq.load_jsb,
                folder="jsb_chorales", layouts=({"pickle": "jsb_chorales.pickle"},), md5={"jsb_chorales.pickle":
                seq.JSB_MD5}, how_to_get="or copy jsb_chorales.pickle into the folder",
                downloads=(DownloadItem("jsb_chorales.pickle", seq.JSB_URLS, md5=seq.JSB_MD5,
                                        sha256=seq.JSB_SHA256),)),
    DatasetSpec("moving-mnist", "Moving MNIST: two digits bouncing in 64x64, 20 frames (Srivastava et al. 2015), "
                "generated from the MNIST files with a seed; a fixed test set", seq.load_moving_mnist,
                folder="mnist", layouts=({r: f for r, (f, _, _) in _MNIST_FILES.items()},),
                md5={f: m for f, m, _ in _MNIST_FILES.values()}, how_to_get="vaekit datasets --download mnist",
                options={"n_train": 1000, "n_val": 100, "n_test": 1000}),
    DatasetSpec("sines", "noisy sinusoids in [0, 1] of variable length (3 channels), generated: a small "
                "sequence set", seq.load_sines, how_to_get="generated, nothing to fetch",
                options={"n": 200, "t_max": 24}),
    DatasetSpec("sequences", "your sequences: .npz / .npy (N, T, D) with optional lengths, or a long-format CSV "
                "(sequence,time,features...)", seq.load_sequences, needs_path=True,
                how_to_get="pass path=<file.npz|.npy|.csv> (--path)"),
]}
