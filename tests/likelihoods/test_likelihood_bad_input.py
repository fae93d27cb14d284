"""Bad input reaches the user as one clear ValueError."""

import pytest
import torch

from vaekit.likelihoods import LIKELIHOODS, build_likelihood
from vaekit.models import build_vae
from vaekit.objectives import ELBO

BOUNDED = ["bernoulli", "continuous-bernoulli", "discretized-logistic"]


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("bad", [1.5, -0.2, 255.0])
def test_data_outside_support(name, bad):
    lik = build_likelihood(name, (2, 3))
    x = torch.zeros(4, 2, 3)
    x[1, 0, 2] = bad
    with pytest.raises(ValueError) as e:
        lik.check(x)
    msg = str(e.value)
    assert msg.startswith(f"the {name} likelihood needs data in [0, 1], and these data reach {bad:.3g}; set "
                          f"model.likelihood=sigma-vae (real values) or rescale them")
    assert msg.count("likelihood ") == 1 and "\n" not in msg


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_data(name, bad):
    lik = build_likelihood(name, (5,))
    x = torch.full((3, 5), 0.5)
    x[2, 4] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        lik.check(x)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_wrong_data_shape(name):
    lik = build_likelihood(name, (1, 4, 4))
    with pytest.raises(ValueError, match=r"does not fit a model built for \(1, 4, 4\)"):
        lik.check(torch.zeros(2, 1, 4, 5))


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_wrong_decoder_output_shape(name):
    lik = build_likelihood(name, (3,))
    with pytest.raises(ValueError, match="expects decoder output of trailing shape"):
        lik(torch.zeros(2, 3 * lik.params_per_channel + 1))


def test_discretized_logistic_rejects_off_grid_data():
    lik = build_likelihood("discretized-logistic", (4,))
    lik.check(torch.tensor([[0.0, 1 / 255, 128 / 255, 1.0]]))  # on the grid: fine
    with pytest.raises(ValueError, match=r"256 levels .*quantise the data"):
        lik.check(torch.tensor([[0.0, 0.5, 0.25, 1.0]]))  # 0.5 = 127.5 / 255


def test_elbo_surfaces_the_support_error():
    torch.manual_seed(0)
    model = build_vae((6,), latent_dim=2, hidden=(8,), likelihood="continuous-bernoulli")
    with pytest.raises(ValueError, match=r"^the continuous-bernoulli likelihood needs data in \[0, 1\], and these data reach 2; set model\.likelihood="):
        ELBO()(model, torch.full((2, 6), 2.0))


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("sigma-vae", {"init_log_sigma": -7.0, "min_log_sigma": -6.0}, "above the floor"),
        ("gaussian-perpixel", {"min_sigma": 0.0}, "min_sigma must be positive"),
        ("discretized-logistic", {"n_bins": 1}, "n_bins must be at least 2"),
        ("gaussian", {"sigma": -1.0}, "sigma must be positive"),
    ],
)
def test_bad_constructor_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_likelihood(name, (3,), **kwargs)


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ValueError, match="did you mean 'continuous-bernoulli'"):
        build_likelihood("continuous_bernoulli", (3,))
