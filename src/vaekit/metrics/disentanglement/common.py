"""What every disentanglement metric shares (Locatello et al. 2019, disentanglement_lib ``evaluation/metrics/
utils.py``): codes of sampled ground-truth points, the 20-bin histogram discretisation and discrete mutual
information with ``sklearn.metrics.mutual_info_score`` (nats).

A representation is a function from a batch of observations (B, *shape) to codes (B, D) (a VAE's posterior
means); ground-truth data offer ``factor_sizes``, ``sample_factors(n, generator)`` and ``images(classes)``
(``vaekit.data.dsprites.GroundTruthData``). Factors are sampled with a torch generator on ``device`` seeded by
the metric's seed; scikit-learn models get a numpy RandomState of the same seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["Representation", "encode_classes", "CodeCache", "Sampler", "codes_of", "histogram_discretize", "discrete_mutual_info",
           "discrete_entropy"]

Representation = Callable[[torch.Tensor], torch.Tensor]


def encode_classes(data, represent: Representation, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(n, K) factor classes -> (n, D) float64 CPU codes of their observations, ``batch_size`` at a time."""
    out = []
    for i in range(0, classes.shape[0], batch_size):
        with torch.no_grad():
            out.append(torch.as_tensor(represent(data.images(classes[i:i + batch_size])))
                       .detach().to("cpu", torch.float64))
    return torch.cat(out)


class CodeCache:
    """Codes already computed, by the observation's index in the grid of factor classes.

    For data whose observation is a function of its factor classes (``deterministic_images``, as dSprites),
    an observation drawn again need not be encoded again, and the metrics of one evaluation can share what they
    encoded: at disentanglement_lib's default sizes the BetaVAE score alone draws 1.92 M observations, about
    0.68 M of them distinct among dSprites' 737,280. Codes are kept as float64 (N, D), allocated at first use.
    """

    def __init__(self, factor_sizes: tuple[int, ...]) -> None:
        sizes = [int(k) for k in factor_sizes]
        strides = [1] * len(sizes)
        for i in range(len(sizes) - 2, -1, -1):
            strides[i] = strides[i + 1] * sizes[i + 1]
        self.sizes, self.strides = torch.tensor(sizes), torch.tensor(strides)
        self.known = torch.zeros(strides[0] * sizes[0], dtype=torch.bool)
        self.codes: torch.Tensor | None = None
        self.encoded = 0  # observations encoded so far

    @property
    def size(self) -> int:
        """Observations in the grid of factor classes."""
        return self.known.numel()

    def classes_of(self, flat: torch.Tensor) -> torch.Tensor:
        """(m,) grid indices -> (m, K) factor classes."""
        return (flat[:, None] // self.strides) % self.sizes

    def _store(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        if self.codes is None:
            self.codes = torch.zeros(self.size, codes.shape[1], dtype=torch.float64)
        self.codes[flat] = codes.to(torch.float64)
        self.known[flat] = True
        self.encoded += int(flat.numel())

    def lookup(self, classes: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        """(n, K) classes -> (n, D) float64 codes; ``encode`` is called on the classes not seen before."""
        flat = (classes.cpu() * self.strides).sum(1)  # (n,)
        new = torch.unique(flat[~self.known[flat]])  # sorted, distinct
        if new.numel():
            self._store(new, encode(self.classes_of(new).to(classes.device)))
        return self.codes[flat].numpy()

    def fill(self, encode: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device = "cpu",
             batch_size: int = 1024, progress: bool = True) -> None:
        """Encode every observation not yet known, in index order and large batches (when most of the grid is
        about to be drawn, this is cheaper than encoding them as they come), with a progress bar."""
        from vaekit.progress import Progress

        todo = torch.nonzero(~self.known).flatten()
        with Progress(len(todo), desc="encoding every observation once", unit="image", enabled=progress) as bar:
            for chunk in todo.split(batch_size):
                self._store(chunk, encode(self.classes_of(chunk).to(device)))
                bar.update(len(chunk))


class Sampler:
    """Seeded draws of factors and their codes for one metric computation (``cache``: a ``CodeCache`` shared
    by the metrics of one evaluation, for data with deterministic observations)."""

    def __init__(self, data, represent: Representation, seed: int = 0, device: str | torch.device = "cpu",
                 batch_size: int = 256, cache: CodeCache | None = None) -> None:
        self.data, self.represent, self.batch_size, self.cache = data, represent, int(batch_size), cache
        self.generator = torch.Generator(device=device).manual_seed(int(seed))
        self.random_state = np.random.RandomState(int(seed))
        self.num_factors = len(data.factor_sizes)

    def factors(self, n: int) -> torch.Tensor:
        """(n, K) int64 factor classes, uniform and independent."""
        return self.data.sample_factors(int(n), self.generator)

    def codes(self, classes: torch.Tensor) -> np.ndarray:
        """(n, D) float64 codes of the observations of the given factor classes."""
        def encode(c: torch.Tensor) -> torch.Tensor:
            return encode_classes(self.data, self.represent, c, self.batch_size)

        return self.cache.lookup(classes, encode) if self.cache is not None else encode(classes).numpy()

    def randint(self, high: int) -> int:
        """A factor index in [0, high) (the metric's own choice of which factor to fix)."""
        return int(torch.randint(0, high, (1,), generator=self.generator, device=self.generator.device))


def codes_of(s: Sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
    """disentanglement_lib's ``generate_batch_factor_code``: codes (D, n) and factor classes (K, n)."""
    y = s.factors(n)
    return s.codes(y).T, y.cpu().numpy().T


def histogram_discretize(target: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """(D, n) -> (D, n) int: each row binned into ``num_bins`` equal-width bins over its range (np.histogram
    edges, ``np.digitize`` on all but the last edge, as disentanglement_lib does)."""
    out = np.zeros_like(target, dtype=np.int64)
    for i in range(target.shape[0]):
        out[i] = np.digitize(target[i], np.histogram(target[i], num_bins)[1][:-1])
    return out


def discrete_mutual_info(mus: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(D, n) discrete codes, (K, n) factors -> (D, K) mutual information in nats."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(ys[j], mus[i]) for j in range(ys.shape[0])] for i in range(mus.shape[0])])


def discrete_entropy(ys: np.ndarray) -> np.ndarray:
    """(K, n) -> (K,) entropy of each factor's empirical distribution in nats (I(y; y))."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(ys[j], ys[j]) for j in range(ys.shape[0])])
