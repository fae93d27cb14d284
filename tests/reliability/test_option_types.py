"""Values of the wrong type are refused by name: labels that are not class ids in ``vaekit.fit``, dataset
options that are not whole numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli

M2 = {"family": "m2", "objective": "m2", "n_classes": 3, "hidden": [8], "latent_dim": 2, "likelihood": "gaussian"}


@pytest.mark.parametrize("labels", [
    lambda: np.array(["cat", "dog", "owl"] * 10),
    lambda: ["cat", "dog", "owl"] * 10,
    lambda: [[1], [2, 3]] + [0] * 28,
])
def test_fit_with_labels_that_are_not_class_ids(labels):
    import vaekit

    x = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^y must hold integer class ids 0\.\.2 .*LabelEncoder"):
        vaekit.fit(x, y=labels(), model=M2, train={"steps": 2}, progress=False)


def test_fit_with_string_labels_from_pandas():
    pd = pytest.importorskip("pandas")
    import vaekit

    x = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^y must hold integer class ids .* got str values"):
        vaekit.fit(x, y=pd.Series(["a", "b", "c"] * 10), model=M2, train={"steps": 2}, progress=False)


@pytest.mark.parametrize("options,shown", [
    ("{n_train: abc}", "'abc'"),
    ("{n_train: 1.5, n_val: 10, n_test: 10}", "1.5"),
    ("{n_train: true}", "True"),
    ("{n_test: .inf}", "inf"),
])
def test_dsprites_options_must_be_whole_numbers(tmp_path, capsys, options, shown):
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, "data.name=dsprites",
                       f"data.dataset_options={options}")
    key = options[1:].split(":")[0]
    assert_one_line_error(code, err, f"data.dataset_options {key}", "whole number", shown)
    assert not (tmp_path / "run").exists()


def test_dataset_options_in_scientific_notation_are_whole_numbers():
    from vaekit.data.api import _options
    from vaekit.data.registry import DATASETS

    opts = _options(DATASETS["dsprites"], {"n_train": 1e3, "n_val": 100})
    assert opts["n_train"] == 1000 and isinstance(opts["n_train"], int) and opts["n_test"] == 5000
