"""Embeddings for dimensionality reduction: posterior means (or samples, log-variances) of q(z|x).

The encoder of a VAE maps x to q(z|x) = N(mu(x), diag sigma^2(x)) (Kingma & Welling 2014, Sec. 2.4); the
posterior mean mu(x) is the usual low-dimensional representation, and the decoder mean E[x|z] maps a point of
latent space back to data space (``inverse_transform``). ``VAEEmbedding`` wraps this as a scikit-learn
transformer: it trains a VAE in ``fit`` (through vaekit's one training loop) or loads a trained run folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn

from vaekit.apps._common import require, require_latent_units
from vaekit.models.contract import GAUSSIAN_POSTERIOR
from vaekit.models.uses import flatten
from vaekit.process_state import preserve_process_state
from vaekit.utils import as_data_tensor, batches, evaluation_context, model_device, model_dtype

__all__ = ["EMBED_KINDS", "embed", "VAEEmbedding", "UNIT_INTERVAL_LIKELIHOODS"]

EMBED_KINDS = ("mean", "sample", "logvar")


def embed(model: nn.Module, x: Any, what: str = "mean", batch_size: int = 500, seed: int | None = None) -> torch.Tensor:
    """(N, D) embedding of ``x`` (N, *data_shape).

    what: "mean" = E_q[z|x] (``model.embed``: mu for a Gaussian posterior, a 64-sample mean for a flow);
        "sample" = one draw z ~ q(z|x) (seeded by ``seed``); "logvar" = log sigma^2(x) of a Gaussian posterior.
        For a hierarchy, each continuous group along the mean pass, flattened in layout order.
    """
    if what not in EMBED_KINDS:
        raise ValueError(f"unknown embedding {what!r}; choose from {', '.join(EMBED_KINDS)}")
    x = as_data_tensor(x)
    model.check_input(x)
    if what != "mean":
        require_latent_units(model, f"embedding {what}s")
    if what == "logvar":
        require(model, GAUSSIAN_POSTERIOR, "embedding log-variances")
    out = []
    with evaluation_context(model, seed):
        for xb in batches(x, batch_size, model_device(model)):
            if what == "mean":
                out.append(model.embed(xb).cpu())  # (B, D)
                continue
            qs = model.posteriors(xb)
            if what == "sample":
                z = {name: q.rsample_and_log_prob()[0] if hasattr(q, "rsample_and_log_prob") else q.rsample()
                     for name, q in qs.items()}
            else:
                z = {name: 2.0 * (q.log_scale if hasattr(q, "log_scale") else q.stddev.log()) for name, q in qs.items()}
            out.append(flatten(model.layout, z).cpu())  # (B, D)
    return torch.cat(out)


#: likelihoods whose data live in [0, 1]: scikit-learn's generic checks feed other values, which fit refuses
UNIT_INTERVAL_LIKELIHOODS = ("bernoulli", "continuous-bernoulli")

#: the checks of ``sklearn.utils.estimator_checks`` a [0, 1] likelihood cannot pass: they fit on data outside
#: [0, 1] (random normals, shifted or scaled copies), which the likelihood has no density for
UNIT_INTERVAL_XFAIL = {name: "the likelihood needs X in [0, 1]; this check fits on values outside it" for name in (
    "check_estimators_dtypes", "check_estimators_fit_returns_self", "check_readonly_memmap_input",
    "check_pipeline_consistency", "check_estimators_overwrite_params", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_general", "check_transformer_preserve_dtypes",
    "check_transformer_data_not_an_array", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in", "check_n_features_in_after_fitting",
    "check_fit2d_predict1d",
)}


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """The trainer's INFO lines hidden for the block (the ``vaekit.train`` logger's level restored after)."""
    logger = logging.getLogger("vaekit.train")
    old = logger.level
    if enabled:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def _validate_data(est: Any, X: Any, reset: bool) -> np.ndarray:
    """scikit-learn's input validation (2-D, finite, numeric, dense, at least one sample) as float32; it sets /
    checks ``n_features_in_`` and ``feature_names_in_``. ``validate_data`` from sklearn 1.6, the method before."""
    kw = dict(reset=reset, dtype=np.float32, accept_sparse=False, ensure_2d=True)
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # sklearn < 1.6
        return est._validate_data(X, **kw)
    return validate_data(est, X, **kw)


class VAEEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """scikit-learn transformer: X (n_samples, n_features) -> posterior means (n_samples, latent_dim).

    run_dir: a trained run folder; ``fit`` then loads its ``checkpoint`` instead of training (the run's data
        shape must have ``n_features`` elements). Otherwise ``fit`` trains a new VAE on X:
    latent_dim, hidden, arch, likelihood: the model (``vaekit.registry.build_model``); the default Bernoulli
        likelihood needs X in [0, 1] (use "sigma-vae" or "gaussian" for real-valued features); the requirement
        is declared in scikit-learn's tags (``positive_only``; the generic checks it cannot pass are listed by
        ``expected_failed_checks``).
    data_shape: per-example shape X's rows are reshaped to (e.g. (1, 28, 28) for ``arch="conv"``); None: (n_features,).
    steps, batch_size, lr, seed, threads: training settings (Adam, constant learning rate).
    verbose: show the trainer's log lines (at each validation); by default fit logs only warnings.
    device: where the model is trained and run (cpu, cuda, cuda:N, mps, auto); outputs are numpy on the CPU.

    Output: float32 (tag ``preserves_dtype=["float32"]``), feature names ``vaeembedding0..`` (so
    ``set_output(transform="pandas")`` works). ``inverse_transform(Z)`` returns the decoder mean E[x|z] flattened
    to (n_samples, n_features). No process-wide side effects: fit and transform leave torch's thread count, the
    torch and numpy global RNGs, the denormal flag and glibc's malloc settings as they found them.
    """

    def __init__(self, latent_dim: int = 10, hidden: Sequence[int] = (256,), arch: str = "mlp",
                 likelihood: str = "bernoulli", data_shape: Sequence[int] | None = None, steps: int = 2000,
                 batch_size: int = 128, lr: float = 1e-3, seed: int = 0, threads: int | None = None,
                 run_dir: str | None = None, checkpoint: str = "best", verbose: bool = False,
                 device: str = "cpu") -> None:
        self.latent_dim, self.hidden, self.arch, self.likelihood = latent_dim, hidden, arch, likelihood
        self.data_shape, self.steps, self.batch_size, self.lr = data_shape, steps, batch_size, lr
        self.seed, self.threads, self.run_dir, self.checkpoint = seed, threads, run_dir, checkpoint
        self.verbose, self.device = verbose, device

    # -- scikit-learn metadata -------------------------------------------------------------------------------
    def _unit_interval(self) -> bool:
        return self.run_dir is None and self.likelihood in UNIT_INTERVAL_LIKELIHOODS

    def __sklearn_tags__(self) -> Any:  # sklearn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._unit_interval()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags

    def _more_tags(self) -> dict[str, Any]:  # sklearn < 1.6
        return {"preserves_dtype": [np.float32], "requires_positive_X": self._unit_interval(),
                "_xfail_checks": self.expected_failed_checks()}

    def expected_failed_checks(self) -> dict[str, str]:
        """{check name: reason} of scikit-learn's estimator checks this configuration cannot pass (for
        ``check_estimator(est, expected_failed_checks=est.expected_failed_checks())``): none for real-valued
        likelihoods; for a [0, 1] likelihood, the checks that fit on values outside [0, 1]."""
        return dict(UNIT_INTERVAL_XFAIL) if self._unit_interval() else {}

    # -- helpers -------------------------------------------------------------------------------------------
    def _as_data(self, x: np.ndarray, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        n_features = math.prod(shape)
        if x.shape[1] != n_features:
            raise ValueError(f"X has {x.shape[1]} features, but {type(self).__name__} is expecting {n_features} "
                             f"features as input (data of shape {tuple(shape)})")
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).reshape(x.shape[0], *shape)

    def fit(self, X: Any, y: Any = None) -> "VAEEmbedding":
        """Train a VAE on X (or load ``run_dir``); returns self."""
        x = _validate_data(self, X, reset=True)
        if self._unit_interval() and (x < 0).any():  # the wording scikit-learn's positive_only checks expect
            raise ValueError(f"Negative values in data passed to {type(self).__name__}: the {self.likelihood} "
                             f"likelihood needs X in [0, 1]; rescale X or choose likelihood='sigma-vae'")
        with preserve_process_state(), _quiet(not self.verbose):
            if self.run_dir is not None:
                from vaekit.runs import load_run

                _, model, doc = load_run(self.run_dir, self.checkpoint, self.device)
                shape = tuple(doc["data"]["shape"])
                model.check_input(self._as_data(x, shape, model_dtype(model)))
            else:
                model, shape = self._train(x)
        self.model_, self.data_shape_ = model.eval(), shape
        self._n_features_out = int(model.latent_dim)
        return self

    def _train(self, x: np.ndarray) -> tuple[nn.Module, tuple[int, ...]]:
        from vaekit.config import RunConfig, validate
        from vaekit.runs import train_arrays

        shape = tuple(int(s) for s in self.data_shape) if self.data_shape is not None else (x.shape[1],)
        data = self._as_data(x, shape, torch.float32)
        cfg = RunConfig(name="VAEEmbedding", seed=int(self.seed))
        cfg.model.latent_dim, cfg.model.hidden = int(self.latent_dim), [int(h) for h in self.hidden]
        cfg.model.arch, cfg.model.likelihood = self.arch, self.likelihood
        t = cfg.train
        t.steps, t.batch_size, t.lr, t.threads = int(self.steps), int(self.batch_size), float(self.lr), self.threads
        t.progress, t.val_every, t.malloc_tuning, t.device = False, int(self.steps), False, str(self.device)
        _, model, _ = train_arrays(validate(cfg), data, None, None, files=False)
        return model, shape

    # -- transformer API -----------------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E_q[z|x], (n_samples, latent_dim) float32."""
        check_is_fitted(self, "model_")
        x = self._as_data(_validate_data(self, X, reset=False), self.data_shape_, model_dtype(self.model_))
        with preserve_process_state():
            return embed(self.model_, x, "mean", seed=int(self.seed)).numpy().astype(np.float32)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decoder means E[x|z], (n_samples, n_features) float32."""
        check_is_fitted(self, "model_")
        z = check_array(Z, dtype=np.float32)
        d = self.model_.latent_dim
        if z.shape[1] != d:
            raise ValueError(f"Z must have shape (n_samples, {d}) (the latent dimension), got {tuple(z.shape)}")
        z = torch.from_numpy(z).to(model_dtype(self.model_))
        with preserve_process_state(), evaluation_context(self.model_):
            xs = [self.model_.decode(zb).mean.cpu() for zb in batches(z, 500, model_device(self.model_))]
        return torch.cat(xs).reshape(z.shape[0], -1).numpy().astype(np.float32)
