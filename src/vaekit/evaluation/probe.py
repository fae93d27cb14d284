"""Do reconstructions keep what the data are about? A k-nearest-neighbour classifier fitted on the original
training inputs labels the test reconstructions; the share that gets its input's label is reported beside the
same classifier's accuracy on the test inputs themselves (the ceiling)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vaekit.utils import batches, evaluation_context, model_device

__all__ = ["reconstruction_knn_accuracy"]


def reconstruction_knn_accuracy(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
                                test_x: torch.Tensor, test_y: torch.Tensor, k: int = 5, max_train: int = 5000,
                                max_test: int = 2000, seed: int = 0) -> dict[str, Any]:
    """{"knn_recon_accuracy", "knn_input_accuracy", "k", "n_train", "n_test"}: a k-NN (scikit-learn, Euclidean)
    on up to ``max_train`` training inputs, applied to the decoder means at the posterior means of up to
    ``max_test`` test inputs and to those inputs (subsets drawn with a fixed seed)."""
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(seed)  # subset indices on the CPU: the same points on every device
    tr = torch.randperm(train_x.shape[0], generator=g)[:max_train]
    te = torch.randperm(test_x.shape[0], generator=g)[:max_test]
    xtr, ytr = train_x[tr].reshape(len(tr), -1).cpu().numpy(), train_y[tr].cpu().numpy()
    xte, yte = test_x[te], test_y[te].cpu().numpy()
    knn = KNeighborsClassifier(n_neighbors=min(k, len(tr))).fit(xtr, ytr)
    with evaluation_context(model, seed):
        rec = torch.cat([model.reconstruct(xb).cpu() for xb in batches(xte, 500, model_device(model))])
    acc_rec = float((knn.predict(rec.reshape(len(te), -1).numpy()) == yte).mean())
    acc_in = float((knn.predict(xte.reshape(len(te), -1).cpu().numpy()) == yte).mean())
    return {"knn_recon_accuracy": acc_rec, "knn_input_accuracy": acc_in, "k": int(k), "n_train": int(len(tr)),
            "n_test": int(len(te))}
