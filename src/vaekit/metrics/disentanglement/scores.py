"""The BetaVAE, FactorVAE, MIG, SAP, DCI and modularity scores with disentanglement_lib's definitions and
default sample sizes (``evaluation/metrics/{beta_vae,factor_vae,mig,sap_score,dci,modularity_explicitness}.py``).

Every function takes a ``Sampler`` (``common.py``) and returns a dict of floats; the headline keys are
``beta_vae``, ``factor_vae``, ``mig``, ``sap``, ``dci_disentanglement``, ``modularity``.
"""

from __future__ import annotations

import warnings

import numpy as np

from vaekit.metrics.disentanglement.common import (Sampler, codes_of, discrete_entropy, discrete_mutual_info,
                                                   histogram_discretize)

__all__ = ["beta_vae_score", "factor_vae_score", "mig", "sap", "dci", "modularity", "dci_from_importance",
           "modularity_from_mi", "standardize_codes"]


def _fixed_factor_pair(s: Sampler, batch_size: int) -> tuple[int, np.ndarray]:
    """Higgins et al. 2017, Sec. 3: two batches sharing one uniformly chosen factor k; the feature is the mean
    absolute difference of their codes, (D,)."""
    k = s.randint(s.num_factors)
    f1, f2 = s.factors(batch_size), s.factors(batch_size)
    f2[:, k] = f1[:, k]
    return k, np.mean(np.abs(s.codes(f1) - s.codes(f2)), axis=0)


def beta_vae_score(s: Sampler, batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000) -> dict:
    """BetaVAE score (Higgins et al. 2017, "β-VAE", Sec. 3 / Appendix A.4): accuracy of a logistic regression
    predicting the fixed factor from the feature, on ``num_eval`` fresh points."""
    from sklearn.linear_model import LogisticRegression

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [_fixed_factor_pair(s, batch_size) for _ in range(n)]
        return np.stack([p[1] for p in pairs]), np.array([p[0] for p in pairs])

    from sklearn.exceptions import ConvergenceWarning

    xtr, ytr = points(num_train)
    xev, yev = points(num_eval)
    with warnings.catch_warnings():  # lbfgs's default 100 iterations, as disentanglement_lib runs it
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(random_state=s.random_state).fit(xtr, ytr)
    return {"beta_vae": float(np.mean(clf.predict(xev) == yev)),
            "beta_vae_train": float(np.mean(clf.predict(xtr) == ytr))}


def factor_vae_score(s: Sampler, batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000, prune_threshold: float = 0.05) -> dict:
    """FactorVAE score (Kim & Mnih 2018, Sec. 4): codes are divided by their global standard deviation
    (dimensions with s.d. < 0.05 dropped); for a batch with one factor fixed, the dimension of least normalised
    variance votes for that factor; a majority-vote classifier maps dimensions to factors; the score is its
    accuracy on ``num_eval`` fresh votes. (disentanglement_lib indexes the vote table with the position among
    the active dimensions; here the table has one column per active dimension, the same classifier.)"""
    codes = s.codes(s.factors(num_variance_estimate))
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"factor_vae": 0.0, "factor_vae_train": 0.0, "factor_vae_active_dims": 0}

    def votes(n: int) -> np.ndarray:
        v = np.zeros((s.num_factors, int(active.sum())), dtype=np.int64)
        for _ in range(n):
            k = s.randint(s.num_factors)
            f = s.factors(batch_size)
            f[:, k] = f[0, k]
            local_var = np.var(s.codes(f), axis=0, ddof=1)
            v[k, np.argmin(local_var[active] / global_var[active])] += 1
        return v

    train, ev = votes(num_train), votes(num_eval)
    classifier = np.argmax(train, axis=0)  # (active D,) the factor each dimension votes for most
    cols = np.arange(train.shape[1])
    return {"factor_vae": float(ev[classifier, cols].sum() / ev.sum()),
            "factor_vae_train": float(train[classifier, cols].sum() / train.sum()),
            "factor_vae_active_dims": int(active.sum())}


def mig(s: Sampler, num_train: int = 10000, num_bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018, Eq. 6): mean over factors of (largest - second largest)
    I(z_j; v_k) / H(v_k), with codes discretised into ``num_bins`` histogram bins."""
    mus, ys = codes_of(s, num_train)
    m = discrete_mutual_info(histogram_discretize(mus, num_bins), ys)  # (D, K)
    if m.shape[0] < 2:
        raise ValueError("MIG needs at least 2 code dimensions")
    top = np.sort(m, axis=0)[::-1]
    return {"mig": float(np.mean((top[0] - top[1]) / discrete_entropy(ys)))}


def sap(s: Sampler, num_train: int = 10000, num_test: int = 5000, continuous_factors: bool = False) -> dict:
    """Separated attribute predictability (Kumar et al. 2018, Sec. 3): for each factor, the gap between the two
    code dimensions that predict it best, alone: a linear SVM's test accuracy (C = 0.01, balanced classes) for
    discrete factors, the squared correlation for continuous ones; averaged over factors."""
    from sklearn.svm import LinearSVC

    mus, ys = codes_of(s, num_train)
    mus_t, ys_t = codes_of(s, num_test)
    score = np.zeros((mus.shape[0], ys.shape[0]))
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            if continuous_factors:
                c = np.cov(mus[i], ys[j], ddof=1)
                score[i, j] = c[0, 1] ** 2 / (c[0, 0] * c[1, 1]) if c[0, 0] > 1e-12 and c[1, 1] > 0 else 0.0
            elif np.ptp(mus[i]) > 0:
                clf = LinearSVC(C=0.01, class_weight="balanced").fit(mus[i][:, None], ys[j])
                score[i, j] = np.mean(clf.predict(mus_t[i][:, None]) == ys_t[j])
            else:  # a constant code predicts no better for one factor than another
                score[i, j] = 0.0
    top = np.sort(score, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2]))}


def dci_from_importance(r: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix r (D codes, K factors) (Eastwood & Williams 2018,
    Sec. 2): 1 - entropy (base K) of each code's importance over factors weighted by the code's share, and
    1 - entropy (base D) of each factor's importance over codes weighted by the factor's share."""
    from scipy.stats import entropy

    d, k = r.shape
    total = r.sum()
    per_code = 1.0 - entropy(r.T + 1e-11, base=k)  # (D,)
    code_w = r.sum(1) / total if total > 0 else np.ones(d) / d
    per_factor = 1.0 - entropy(r + 1e-11, base=d)  # (K,)
    factor_w = r.sum(0) / total if total > 0 else np.ones(k) / k
    return float(np.sum(per_code * code_w)), float(np.sum(per_factor * factor_w))


_MAX_INT = np.iinfo(np.int32).max  # scikit-learn's bound for the one seed each tree draws
_DCI_TREES = 100  # GradientBoostingClassifier's default n_estimators, which disentanglement_lib keeps


def _advanced(state: tuple, draws: int) -> np.random.RandomState:
    """A RandomState at ``state`` after ``draws`` tree seeds: where a shared random state stands when a later
    factor's classifier starts (each tree draws exactly one randint(0, MAX_INT); checked by the tests)."""
    rs = np.random.RandomState()
    rs.set_state(state)
    for _ in range(draws):
        rs.randint(0, _MAX_INT)
    return rs


def _dci_factor(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                rs: np.random.RandomState) -> tuple[np.ndarray, float, float]:
    """One factor's gradient-boosted trees: (|importance| per code (D,), train accuracy, test accuracy)."""
    from sklearn.ensemble import GradientBoostingClassifier

    gb = GradientBoostingClassifier(n_estimators=_DCI_TREES, random_state=rs).fit(x, y)
    return np.abs(gb.feature_importances_), float(np.mean(gb.predict(x) == y)), float(np.mean(gb.predict(x_test) == y_test))


def dci(s: Sampler, num_train: int = 10000, num_test: int = 5000, workers: int | None = None) -> dict:
    """DCI (Eastwood & Williams 2018): gradient-boosted trees predict each factor from the codes; R_jk =
    |feature importance| of code j for factor k. Disentanglement: sum_j rho_j (1 - H_K(P_j.)) with rho_j code j's
    share of importance; completeness: sum_k rho_k (1 - H_D(P_.k)); informativeness: the trees' accuracy.

    disentanglement_lib fits the factors one after another on one shared random state. Each tree draws exactly
    one seed from it, so factor k's classifier starts from that state advanced by the earlier factors' trees
    (100 per class, or 100 for two classes): the factors are fitted in ``workers`` processes (default: one per
    available core, at most one per factor), largest first, with the values of the one-process loop, and the
    shared state is left where that loop leaves it."""
    import os

    mus, ys = codes_of(s, num_train)
    mus_t, ys_t = codes_of(s, num_test)
    d, k = mus.shape[0], ys.shape[0]
    trees = [_DCI_TREES * (n if n > 2 else 1) for n in (len(np.unique(ys[j])) for j in range(k))]
    states = [s.random_state.get_state()]  # where the one-process loop starts factor j, then where it ends
    for n in trees:
        states.append(_advanced(states[-1], n).get_state())
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(int(workers), k))
    args = [(mus.T, ys[j], mus_t.T, ys_t[j], _advanced(states[j], 0)) for j in range(k)]
    if workers == 1:
        out = [_dci_factor(*a) for a in args]
    else:  # fresh processes, shut down before returning; forked where the platform can (as a DataLoader's
        # workers are), so a caller's script without a __main__ guard is not run again in each of them
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        fork = "fork" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if fork else None)
        order = sorted(range(k), key=lambda j: -trees[j])  # the largest first: the workers finish together
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {j: pool.submit(_dci_factor, *args[j]) for j in order}
            out = [futures[j].result() for j in range(k)]
    s.random_state.set_state(states[k])
    r = np.stack([o[0] for o in out], axis=1)  # (D, K)
    dis, comp = dci_from_importance(r)
    return {"dci_disentanglement": dis, "dci_completeness": comp,
            "dci_informativeness_train": float(np.mean([o[1] for o in out])),
            "dci_informativeness_test": float(np.mean([o[2] for o in out]))}


def modularity_from_mi(mi: np.ndarray) -> float:
    """Modularity of a (D codes, K factors) mutual-information matrix (Ridgeway & Mozer 2018, Sec. 3)."""
    sq = np.square(mi)
    mx = sq.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (sq.sum(1) - mx) / (mx * (sq.shape[1] - 1.0))
    score[mx == 0] = 0.0
    return float(np.mean(score))


def standardize_codes(mus: np.ndarray, mus_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) training and test codes from (D, n) ones, both standardised with the training codes' mean and
    standard deviation per code (disentanglement_lib's ``normalize_data``, population s.d.). A code of zero
    variance becomes 0 everywhere: it has no influence (instead of a division by zero)."""
    mean = mus.mean(1, keepdims=True)  # (D, 1)
    sd = mus.std(1, keepdims=True)
    scale = np.where(sd > 0, sd, np.inf)
    return ((mus - mean) / scale).T, ((mus_test - mean) / scale).T


def modularity(s: Sampler, num_train: int = 10000, num_test: int = 5000, num_bins: int = 20) -> dict:
    """Modularity (Ridgeway & Mozer 2018, Sec. 3): per code dimension 1 - sum_{k != k*} m_k^2 / (m_k*^2 (K - 1))
    over its mutual informations m_k with the factors (0 for a code with none), averaged; explicitness: the
    one-vs-rest ROC AUC of a logistic regression from all codes, standardised by the training codes' mean and
    s.d. (``standardize_codes``), per factor (macro average over the classes present in the test points),
    averaged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    mus, ys = codes_of(s, num_train)
    mus_t, ys_t = codes_of(s, num_test)
    mod = modularity_from_mi(discrete_mutual_info(histogram_discretize(mus, num_bins), ys))
    x, x_t = standardize_codes(mus, mus_t)  # (n, D) each
    aucs = []
    for j in range(ys.shape[0]):
        classes = np.unique(ys[j])
        with warnings.catch_warnings():  # lbfgs's default iteration cap, as disentanglement_lib runs it
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(random_state=s.random_state).fit(x, ys[j])
        prob = clf.predict_proba(x_t)  # (n, classes)
        onehot = label_binarize(ys_t[j], classes=classes)
        if len(classes) == 2:
            onehot, prob = onehot, prob[:, 1:]
        ok = (onehot.min(0) == 0) & (onehot.max(0) == 1)  # classes with both outcomes in the test points
        aucs.append(np.mean([roc_auc_score(onehot[:, c], prob[:, c]) for c in np.flatnonzero(ok)]) if ok.any()
                    else 0.5)
    return {"modularity": mod, "explicitness": float(np.mean(aucs))}
