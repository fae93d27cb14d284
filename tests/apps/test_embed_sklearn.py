"""VAEEmbedding against scikit-learn's own estimator checks, its output API, and no process-wide side effects."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from vaekit.apps import VAEEmbedding
from vaekit.process_state import flush_denormal_enabled

TINY = dict(latent_dim=2, hidden=(8,), steps=2, batch_size=16)


def _check(est: VAEEmbedding) -> dict[str, int]:
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, expected_failed_checks=est.expected_failed_checks(), on_skip=None,
                                  on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def test_a_real_valued_likelihood_passes_every_estimator_check():
    est = VAEEmbedding(likelihood="gaussian", **TINY)
    assert est.expected_failed_checks() == {}
    counts = _check(est)
    assert counts.get("passed", 0) >= 40 and "xfail" not in counts


def test_bernoulli_declares_its_unit_interval_input_and_fails_only_as_expected():
    est = VAEEmbedding(likelihood="bernoulli", **TINY)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.positive_only and tags.transformer_tags.preserves_dtype == ["float32"]
    counts = _check(est)  # every check outside the declared list passes, and nothing crashes
    assert counts.get("xfail", 0) > 0 and counts.get("passed", 0) >= 20
    with pytest.raises(ValueError, match="Negative values in data passed to VAEEmbedding"):
        VAEEmbedding(**TINY).fit(-np.ones((4, 3)))


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 4)), columns=list("abcd"))
    est = VAEEmbedding(likelihood="gaussian", **TINY).fit(X)
    assert list(est.get_feature_names_out()) == ["vaeembedding0", "vaeembedding1"]
    frame = est.set_output(transform="pandas").transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["vaeembedding0", "vaeembedding1"]
    assert list(est.feature_names_in_) == list("abcd")


def _record_malloc_tuning(monkeypatch) -> list:
    """Replace every tune_malloc a vaekit module holds by a recorder of its calls."""
    calls: list = []
    for name, mod in list(sys.modules.items()):
        if name.startswith("vaekit") and hasattr(mod, "tune_malloc"):
            monkeypatch.setattr(mod, "tune_malloc", lambda: calls.append(1) or True)
    return calls


def test_fit_and_transform_leave_the_process_as_they_found_it(monkeypatch):
    import vaekit.tuning  # noqa: F401 - loaded, so its tune_malloc is recorded too

    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    calls = _record_malloc_tuning(monkeypatch)
    for flush in (True, False):
        torch.set_flush_denormal(flush)
        torch.set_num_threads(1)
        torch.manual_seed(5)
        np.random.seed(5)
        rng_t, rng_n = torch.get_rng_state(), np.random.get_state()[1].copy()
        est = VAEEmbedding(likelihood="gaussian", threads=2, **TINY).fit(X)
        est.inverse_transform(est.transform(X))
        assert torch.get_num_threads() == 1  # the estimator trained with 2
        assert torch.equal(torch.get_rng_state(), rng_t) and np.array_equal(np.random.get_state()[1], rng_n)
        assert flush_denormal_enabled() is flush
    torch.set_flush_denormal(False)
    assert calls == []


def test_the_malloc_recorder_would_see_a_tune_malloc_call(monkeypatch):
    """The control for the test above: a call of the CLI's start-up tuning is recorded."""
    import vaekit.tuning

    calls = _record_malloc_tuning(monkeypatch)
    vaekit.tuning.tune_malloc()
    assert calls == [1]
