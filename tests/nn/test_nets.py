"""MLP and conv nets: shapes for any image size, flattening, clear errors."""

import pytest
import torch

from vaekit.nn import MLP, ConvDecoder, ConvEncoder, conv_sizes


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 28, 20), (1, 8, 8), (2, 7, 9), (3, 33, 17), (1, 64, 64)])
def test_conv_encoder_decoder_round_trip_shapes(shape):
    enc = ConvEncoder(shape, [8, 16], 24)
    dec = ConvDecoder(5, shape, [8, 16], hidden=24)
    x = torch.rand(3, *shape)
    h = enc(x)
    assert h.shape == (3, 24)
    out = dec(torch.randn(2, 3, 5))  # leading sample dimension kept
    assert out.shape == (2, 3, *shape)


def test_conv_too_small_image_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        ConvEncoder((1, 3, 3), [8, 16, 32], 10)
    assert conv_sizes(28, 20, 2) == [(28, 20), (14, 10), (7, 5)]


def test_conv_encoder_rejects_wrong_image_shape():
    enc = ConvEncoder((1, 8, 8), [4], 6)
    with pytest.raises(ValueError, match="expects images of shape"):
        enc(torch.rand(2, 1, 9, 8))


def test_mlp_flattens_trailing_dims_and_keeps_leading():
    net = MLP((1, 3, 4), [7], 3)
    assert net(torch.rand(5, 1, 3, 4)).shape == (5, 3)
    assert net(torch.rand(2, 5, 1, 3, 4)).shape == (2, 5, 3)
    flat = MLP(12, [7], 3)
    assert flat(torch.rand(2, 5, 12)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="trailing shape"):
        net(torch.rand(5, 3, 4))


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(3, [4], 2, act="swishy")
