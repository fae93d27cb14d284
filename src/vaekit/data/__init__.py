"""Datasets as in-memory tensors: registry, local files with verified downloads, binarisation, dequantisation.

    data = load_data("mnist", binarize="dynamic")        # DataSplits of (N, 1, 28, 28) float32 in [0, 1]
    fn = make_batch_transform("dynamic", False, data.n_levels)   # fresh Bernoulli sample per batch

See ``vaekit.data.api`` for where files are looked for, ``vaekit.data.transforms`` for the bits/dim correction
that dequantisation implies, and ``vaekit.data.registry`` for the datasets.
"""

from vaekit.data.api import ENV_VAR, dataset_status, download, get_spec, ground_truth, load_data, resolve_data_dir
from vaekit.data.base import ArrayData, DataNotFoundError, DataSplits, subset_index
from vaekit.data.registry import DATASETS, DatasetSpec
from vaekit.data.transforms import BINARIZE_MODES, dequantize, make_batch_transform

__all__ = [
    "ArrayData",
    "DataSplits",
    "DataNotFoundError",
    "subset_index",
    "DATASETS",
    "DatasetSpec",
    "BINARIZE_MODES",
    "ENV_VAR",
    "load_data",
    "ground_truth",
    "make_batch_transform",
    "dequantize",
    "dataset_status",
    "download",
    "get_spec",
    "resolve_data_dir",
]
