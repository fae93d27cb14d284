"""Generative classifier: Bayes' rule with exact class likelihoods (pPCA), the prior, and bad input; an M2's own
classifier q(y|x) and its generative rule against log p(x|y) by quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.apps import GenerativeClassifier


@pytest.fixture(scope="module")
def two_classes():
    from ppca_vae import PPCA

    a, b = PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=0), PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=1)
    x = torch.cat([a.sample(80, seed=5), b.sample(80, seed=6)])
    y = torch.cat([torch.zeros(80), torch.ones(80)]).long()
    return a, b, x, y


def test_predictions_follow_bayes_rule_with_the_prior(two_classes):
    a, b, x, y = two_classes
    exact = torch.stack([a.log_px(x), b.log_px(x)], 1)  # (N, 2) exact log p(x | c)
    for counts in ([1, 1], [30, 1], [1, 30]):
        clf = GenerativeClassifier([a.vae(), b.vae()], [3, 7], counts)
        prior = torch.tensor(counts, dtype=torch.float64)
        assert torch.allclose(clf.log_prior, (prior / prior.sum()).log())
        ll = clf.log_likelihoods(x, k=4, batch_size=80)  # exact posteriors: the importance-sampled estimate is exact
        assert torch.allclose(ll, exact, atol=1e-8)
        want = torch.tensor([3, 7])[(exact + clf.log_prior).argmax(1)]
        assert torch.equal(clf.predict(x, k=4, batch_size=80), want)
        post = clf.log_posterior(ll)
        assert torch.allclose(post.logsumexp(1), torch.zeros(len(x), dtype=torch.float64), atol=1e-12)
    # the two classes overlap little: the Bayes classifier is right on most points (chance: 0.5)
    uniform = GenerativeClassifier([a.vae(), b.vae()], [0, 1])
    assert float((uniform.predict(x, k=2, batch_size=80) == y).double().mean()) > 0.8
    # the ELBO score gives the same decisions here (the exact posterior makes ELBO = log p(x) in expectation)
    assert float((uniform.predict(x, score="elbo", elbo_samples=200) == uniform.predict(x, k=2, batch_size=80)).double().mean()) > 0.95


def test_a_strong_prior_moves_decisions(two_classes):
    a, b, x, _ = two_classes
    n_b = int((GenerativeClassifier([a.vae(), b.vae()], [0, 1], [1, 1]).predict(x, k=1, batch_size=80) == 1).sum())
    n_b_skewed = int((GenerativeClassifier([a.vae(), b.vae()], [0, 1], [1, math.exp(30)]).predict(x, k=1, batch_size=80) == 1).sum())
    assert n_b_skewed > n_b


def test_bad_input_messages(two_classes, tiny_vae):
    a, b, x, _ = two_classes
    with pytest.raises(ValueError, match="got 2 models for 3 classes"):
        GenerativeClassifier([a.vae(), b.vae()], [0, 1, 2])
    with pytest.raises(ValueError, match="at least two classes"):
        GenerativeClassifier([a.vae()], [0])
    with pytest.raises(ValueError, match="repeat a class"):
        GenerativeClassifier([a.vae(), b.vae()], [4, 4])
    with pytest.raises(ValueError, match="one positive number per class"):
        GenerativeClassifier([a.vae(), b.vae()], [0, 1], [3, 0])
    with pytest.raises(ValueError, match="built for different data shapes"):
        GenerativeClassifier([a.vae(), tiny_vae], [0, 1])
    clf = GenerativeClassifier([a.vae(), b.vae()], [0, 1])
    with pytest.raises(ValueError, match="unknown classifier score 'bits'; choose from loglik, elbo"):
        clf.log_likelihoods(x, score="bits")
    with pytest.raises(ValueError, match=r"does not fit a model built for \(6,\)"):
        clf.predict(x[:, :5])


def test_classification_report():
    from vaekit.apps import classification_report

    pred, y = torch.tensor([0, 1, 1, 3, 3]), torch.tensor([0, 1, 0, 3, 5])  # label 5 is not a modelled class
    r = classification_report(pred, y, [0, 1, 3])
    assert r == {"accuracy": 0.75, "error": 0.25, "n_scored": 4, "per_class": {0: 0.5, 1: 1.0, 3: 1.0},
                 "confusion": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}  # rows: true 0, 1, 3; columns: predicted
    assert classification_report(pred, torch.full((5,), 7), [0, 1])["accuracy"] is None


def test_a_class_latent_model_classifies_by_q_or_by_bayes_rule_on_log_p_x_given_y(tiny_vae):
    from tests.models.test_m2 import data, tiny
    from vaekit.apps import ClassLatentClassifier, has_class_latent

    m, x = tiny(latent_dim=1), data(6)
    clf = ClassLatentClassifier(m)
    assert has_class_latent(m) and clf.classes == [0, 1, 2]
    assert torch.allclose(clf.log_prior, torch.full((3,), -math.log(3), dtype=torch.float64))
    q = clf.log_posterior(x, "q", batch_size=4)  # batches of 4 and 2
    assert torch.allclose(q, torch.log_softmax(m.class_logits(x).double(), -1), atol=1e-6)
    assert torch.equal(clf.predict(x), m.predict(x))
    # log p(x|y) = log int p(x|y,z) N(z; 0, 1) dz on a grid over the 1-D z, against the importance-sampled estimate
    z = torch.linspace(-9, 9, 6001).unsqueeze(-1)  # (G, 1)
    with torch.no_grad():
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).squeeze(-1)  # (G,)
        exact = torch.stack([torch.logsumexp(m.decoded(z.unsqueeze(1).expand(-1, 6, -1), torch.nn.functional.one_hot(
            torch.tensor(c), 3).float()).log_prob(x) + log_pz.unsqueeze(1), 0) for c in range(3)], 1)
    exact = exact + math.log(float(z[1] - z[0]))  # (N, 3)
    ll = clf.log_likelihoods(x, "loglik", k=3000)
    assert torch.allclose(ll, exact.double(), atol=0.03), (ll, exact)
    post = clf.log_posterior(x, "loglik", k=3000)
    want = exact.double() - math.log(3)
    assert torch.allclose(post, want - want.logsumexp(1, keepdim=True), atol=0.05)
    elbo = clf.log_likelihoods(x, "elbo", elbo_samples=200)
    assert bool((elbo < exact + 0.05).all())  # a lower bound on each log p(x|y)
    with pytest.raises(ValueError, match="unknown classifier score 'bits'; choose from q, elbo, loglik"):
        clf.log_posterior(x, "bits")
    with pytest.raises(ValueError, match="capability .classifier.*this VAE has"):
        ClassLatentClassifier(tiny_vae)
