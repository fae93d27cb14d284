"""The code figures draw what they are handed: usage counts per validation, images with their code maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.plots.codes import code_usage_matrix, plot_code_maps, plot_code_usage


def test_code_usage_matrix_and_figures(tmp_path):
    recs = [{"step": 10, "loss": 1.0}, {"step": 20, "val_code_counts": [5, 0, 1, 0]},
            {"step": 40, "val_code_counts": [3, 2, 1, 0]}]
    steps, counts = code_usage_matrix(recs)
    assert steps.tolist() == [20, 40] and counts.tolist() == [[5, 3], [0, 2], [1, 1], [0, 0]]
    assert plot_code_usage(recs, tmp_path / "u.png").stat().st_size > 0
    codes = torch.tensor([[[0, 1], [2, 3]], [[3, 3], [0, 0]]])
    assert plot_code_maps(torch.rand(2, 1, 8, 8), codes, 4, tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(ValueError, match="val_code_counts"):
        code_usage_matrix([{"step": 1}])
