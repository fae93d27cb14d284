"""vaekit.fit with labels: a semi-supervised M2 from Python (y with -1 for unlabelled, scikit-learn's convention)."""

import json

import numpy as np
import pytest
import torch

import vaekit

M2 = {"family": "m2", "objective": "m2", "n_classes": 3, "latent_dim": 2, "hidden": [32]}
TRAIN = {"steps": 400, "batch_size": 64, "lr": 3e-3, "val_every": 100, "progress": False}


def _blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 12 binary features: class c switches on block c (4 features) with probability 0.9."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = np.full((n, 12), 0.05)
    for c in range(3):
        p[y == c, 4 * c:4 * c + 4] = 0.9
    return (rng.random((n, 12)) < p).astype("float32"), y


def _partly_labelled(y: np.ndarray, per_class: int) -> np.ndarray:
    out = np.full_like(y, -1)
    for c in range(3):
        out[np.flatnonzero(y == c)[:per_class]] = c
    return out


def test_fit_learns_the_classes_from_a_few_labels_and_follows_them(tmp_path):
    """Nine labels among 600 examples name the classes: q(y|x) is right on fresh data, and relabelling the nine
    (c -> c+1) relabels the predictions: the labels, not luck, pick which cluster is which class (a model that
    ignored them would match both namings with probability 1/36)."""
    x, y = _blocks(600, 0)
    xt, yt = _blocks(300, 1)
    yl = _partly_labelled(y, 3)
    m = vaekit.fit(x, yl, seed=0, model=M2, train=TRAIN)
    assert (m.predict(torch.from_numpy(xt)).numpy() == yt).mean() > 0.9
    shifted = np.where(yl >= 0, (yl + 1) % 3, -1)
    m2 = vaekit.fit(x, shifted, seed=0, model=M2, train=TRAIN)
    assert (m2.predict(torch.from_numpy(xt)).numpy() == (yt + 1) % 3).mean() > 0.9


def test_fit_with_every_label_is_the_conditional_vae_and_loads_back(tmp_path):
    x, y = _blocks(300, 2)
    xv, yv = _blocks(100, 3)
    yv_part = np.where(np.arange(100) % 2 == 0, yv, -1)  # half of val labelled: the accuracy is over that half
    m = vaekit.fit(x, y, val=xv, val_y=yv_part, seed=0, model=M2, train={**TRAIN, "steps": 200},
                   run_dir=tmp_path / "run")
    assert (m.predict(torch.from_numpy(xv)).numpy() == yv).mean() > 0.9
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = [r["val_accuracy"] for r in rows if "val_accuracy" in r]
    assert len(acc) == 2 and max(acc) > 0.9
    on_labelled = float((m.predict(torch.from_numpy(xv[::2])).numpy() == yv[::2]).mean())
    assert max(acc) == pytest.approx(on_labelled)  # the returned (best) weights are those of the best accuracy
    vaekit.save(m, tmp_path / "m2.safetensors")
    back = vaekit.load(tmp_path / "m2.safetensors")
    assert torch.equal(back.predict(torch.from_numpy(xv)), m.predict(torch.from_numpy(xv)))


@pytest.mark.parametrize("y, val_y, match", [
    (np.zeros(50, dtype=int), None, "trains on x alone"),  # y for a plain VAE
])
def test_labels_for_a_plain_vae_are_refused(y, val_y, match):
    x, _ = _blocks(50, 0)
    with pytest.raises(ValueError, match=match):
        vaekit.fit(x, y, model={"latent_dim": 2}, train={"steps": 1})


@pytest.mark.parametrize("y, kw, match", [
    (None, {}, "trains with labels: give y="),
    (np.zeros(49, dtype=int), {}, r"one label per example, shape \(50,\)"),
    (np.full(50, 3), {}, r"holds 3; labels are class ids 0..2"),
    (np.full(50, 0.5), {}, "integer class ids"),
    (np.full(50, -1), {}, "labels no example"),
    (np.zeros(50, dtype=int), {"val_y": np.zeros(10, dtype=int)}, "give val too"),
])
def test_bad_labels_are_one_line_errors(y, kw, match):
    x, _ = _blocks(50, 0)
    with pytest.raises(ValueError, match=match):
        vaekit.fit(x, y, model=M2, train={"steps": 1, "progress": False}, **kw)
