"""MADE (Germain et al. 2015): masks make output d depend exactly on the inputs before d in the order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from vaekit.nn.made import MADE, MaskedLinear, made_degrees


def _jac(made: MADE, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """(n_params, D_out, D_in) Jacobian of the MADE output at one input x (D,)."""
    return jacobian(lambda v: made(v, c), x)


@pytest.mark.parametrize(
    "dim,hidden,order,context",
    [
        (4, [8], None, 0),
        (5, [16, 16], [4, 2, 0, 3, 1], 0),
        (6, [3], [5, 4, 3, 2, 1, 0], 0),  # narrower than D - 1: some degrees are missing
        (5, [12, 7, 9], [1, 3, 0, 4, 2], 3),
        (3, [32, 32], [2, 1, 0], 2),
    ],
)
def test_jacobian_strictly_triangular_in_order(dim, hidden, order, context):
    torch.manual_seed(0)
    made = MADE(dim, hidden, n_params=2, context_features=context, order=order).double()
    c = torch.randn(context, dtype=torch.float64) if context else None
    perm = torch.arange(dim) if order is None else torch.tensor(order)
    for _ in range(3):
        J = _jac(made, torch.randn(dim, dtype=torch.float64), c)  # (2, D, D)
        J_sorted = J[:, perm][:, :, perm]  # rows and columns in the autoregressive order
        for j in range(2):
            assert torch.all(torch.triu(J_sorted[j]) == 0), "output depends on itself or a later input"


@pytest.mark.parametrize("dim,hidden", [(4, [8]), (5, [16, 16]), (7, [6, 6])])
def test_every_allowed_connection_is_used(dim, hidden):
    """With hidden widths >= D - 1 every output d depends on every input before it (not a trivially zero net)."""
    torch.manual_seed(1)
    order = torch.randperm(dim)
    made = MADE(dim, hidden, n_params=2, order=order.tolist()).double()
    J = _jac(made, torch.randn(dim, dtype=torch.float64))[:, order][:, :, order]
    strict_lower = torch.tril(torch.ones(dim, dim, dtype=torch.bool), -1)
    assert torch.all(J.abs()[:, strict_lower] > 1e-12)


def test_context_reaches_every_output_including_the_first():
    torch.manual_seed(2)
    made = MADE(3, [8, 8], n_params=2, context_features=4).double()
    x = torch.randn(3, dtype=torch.float64)
    Jc = jacobian(lambda c: made(x, c), torch.randn(4, dtype=torch.float64))  # (2, 3, 4)
    assert torch.all(Jc.abs().sum(-1) > 1e-12)


def test_dim_one_depends_only_on_context():
    torch.manual_seed(3)
    made = MADE(1, [4], n_params=2, context_features=2).double()
    c = torch.randn(2, dtype=torch.float64)
    assert torch.all(_jac(made, torch.randn(1, dtype=torch.float64), c) == 0)
    assert jacobian(lambda v: made(torch.zeros(1, dtype=torch.float64), v), c).abs().sum() > 0


def test_context_broadcasts_over_sample_dimensions():
    torch.manual_seed(4)
    made = MADE(3, [10], n_params=2, context_features=2)
    x, c = torch.randn(5, 4, 3), torch.randn(4, 2)  # (S, B, D), (B, C)
    out = made(x, c)
    assert out.shape == (5, 4, 2, 3)
    assert torch.allclose(out[2, 1], made(x[2, 1], c[1]))


def test_masked_linear_known_answer():
    torch.manual_seed(5)
    mask = (torch.rand(3, 4) > 0.5)
    layer = MaskedLinear(4, 3, mask)
    x = torch.randn(6, 4)
    expected = x @ (layer.weight * mask).T + layer.bias
    assert torch.allclose(layer(x), expected)
    assert torch.allclose(layer(x), F.linear(x, layer.weight * mask.float(), layer.bias))
    assert "mask" not in layer.state_dict()


def test_degrees():
    deg_in, deg_h = made_degrees(4, [6, 2], order=[2, 0, 3, 1])
    assert deg_in.tolist() == [2, 4, 1, 3]
    assert deg_h[0].tolist() == [1, 2, 3, 1, 2, 3]
    assert deg_h[1].tolist() == [1, 2]
    _, deg_h0 = made_degrees(3, [5], min_hidden_degree=0)
    assert deg_h0[0].tolist() == [0, 1, 2, 0, 1]


def test_bad_input_errors():
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, [4], order=[0, 0, 1])
    with pytest.raises(ValueError, match="hidden layer"):
        MADE(3, [])
    with pytest.raises(ValueError, match="mask must have shape"):
        MaskedLinear(3, 2, torch.ones(3, 2))
    made = MADE(3, [4], context_features=2)
    with pytest.raises(ValueError, match="context"):
        made(torch.randn(3))
    with pytest.raises(ValueError, match="last dimension 3"):
        made(torch.randn(4), torch.randn(2))
