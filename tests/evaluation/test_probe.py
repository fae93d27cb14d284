"""The reconstruction probe: a k-NN on training inputs labels the test reconstructions."""

import torch
from torch import nn

from vaekit.evaluation.probe import reconstruction_knn_accuracy


class Fake(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.w = fn, nn.Parameter(torch.zeros(()))

    def reconstruct(self, x):
        return self.fn(x)


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, 2, 2, generator=g) * 0.3 + y.float().view(-1, 1, 1, 1) * 2.0
    return x, y


def test_perfect_reconstructions_score_the_inputs_accuracy_and_a_constant_scores_chance():
    xtr, ytr = _blobs(300, 0)
    xte, yte = _blobs(90, 1)
    ident = reconstruction_knn_accuracy(Fake(lambda x: x), xtr, ytr, xte, yte)
    assert ident["knn_recon_accuracy"] == ident["knn_input_accuracy"] > 0.95
    const = reconstruction_knn_accuracy(Fake(lambda x: torch.zeros_like(x)), xtr, ytr, xte, yte)
    assert abs(const["knn_recon_accuracy"] - 1 / 3) < 0.01  # every reconstruction gets the same label
    assert ident["n_train"] == 300 and ident["n_test"] == 90
