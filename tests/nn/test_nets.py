"""MLP and conv nets: shapes for any image size, flattening, clear errors."""

import pytest
import torch

from vaekit.nn import MLP, ConvDecoder, ConvEncoder, conv_sizes


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 28, 20), (1, 8, 8), (2, 7, 9), (3, 33, 17), (1, 64, 64)])
@pytest.mark.parametrize("out_layer", ["conv3x3", "deconv"])
def test_conv_encoder_decoder_round_trip_shapes(shape, out_layer):
    enc = ConvEncoder(shape, [8, 16], 24)
    dec = ConvDecoder(5, shape, [8, 16], hidden=24, out_layer=out_layer)
    x = torch.rand(3, *shape)
    h = enc(x)
    assert h.shape == (3, 24)
    out = dec(torch.randn(2, 3, 5))  # leading sample dimension kept
    assert out.shape == (2, 3, *shape)


def test_deconv_output_layer_is_disentanglement_libs_decoder():
    """conv_out=deconv is disentanglement_lib's deconv_decoder for 64x64x1, 10 latents (Locatello et al. 2019,
    Table 1): fc 256, fc 4*4*64, transposed convs 64, 32, 32, 1 (4x4, stride 2) and nothing after the last;
    its parameter count, summed by hand from those layers, is 381,313."""
    dec = ConvDecoder(10, (1, 64, 64), [32, 32, 64, 64], hidden=256, out_layer="deconv")
    by_hand = (10 * 256 + 256) + (256 * 1024 + 1024) + (64 * 64 * 16 + 64) + (64 * 32 * 16 + 32) \
        + (32 * 32 * 16 + 32) + (32 * 1 * 16 + 1)
    assert by_hand == 381_313
    assert sum(p.numel() for p in dec.parameters()) == by_hand
    deconvs = [m for m in dec.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in deconvs] == [64, 32, 32, 1]
    assert isinstance(dec.deconv[-1], torch.nn.ConvTranspose2d)  # logits straight from the last deconv
    assert not any(isinstance(m, torch.nn.Conv2d) for m in dec.deconv)
    old = ConvDecoder(10, (1, 64, 64), [32, 32, 64, 64], hidden=256)
    assert isinstance(old.deconv[-1], torch.nn.Conv2d) and old.deconv[-1].kernel_size == (3, 3)
    with pytest.raises(ValueError, match="conv_out"):
        ConvDecoder(10, (1, 8, 8), [4], out_layer="conv1x1")


def test_conv_out_config_reaches_the_vae_decoder_and_is_checked():
    from vaekit.config import ConfigError, ModelConfig
    from vaekit.registry import build_model

    m = build_model(ModelConfig(arch="conv", conv_channels=[4, 8], hidden=[16], conv_out="deconv"), (1, 8, 8))
    assert isinstance(m.decoder.deconv[-1], torch.nn.ConvTranspose2d)
    for bad, match in [(ModelConfig(conv_out="deconv"), "arch=conv"),
                       (ModelConfig(arch="conv", conv_out="nope"), "conv_out"),
                       (ModelConfig(family="ladder", conv_out="deconv"), "model.conv_out")]:
        with pytest.raises(ConfigError, match=match):
            build_model(bad, (1, 8, 8))


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


def test_mlp_dropout_acts_in_training_only_and_keeps_state_dict_keys():
    torch.manual_seed(0)
    plain = MLP(5, [64, 64], 3, act="tanh")
    drop = MLP(5, [64, 64], 3, act="tanh", dropout=0.5)
    assert list(plain.state_dict()) != list(drop.state_dict())  # Dropout modules shift the Sequential indices
    assert list(MLP(5, [64, 64], 3, dropout=0.0).state_dict()) == list(plain.state_dict())
    # same weights, layer by layer: eval-mode output is the plain net's, training output is random
    linears = [m for m in drop.net if isinstance(m, torch.nn.Linear)]
    for src, dst in zip([m for m in plain.net if isinstance(m, torch.nn.Linear)], linears):
        dst.load_state_dict(src.state_dict())
    x = torch.randn(200, 5)
    drop.eval()
    torch.testing.assert_close(drop(x), plain(x))
    drop.train()
    a, b = drop(x), drop(x)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="dropout must be in"):
        MLP(5, [4], 3, dropout=1.0)


def test_model_dropout_config_reaches_the_decoder_only():
    from vaekit.config import ConfigError, ModelConfig
    from vaekit.registry import build_model

    m = build_model(ModelConfig(hidden=[16, 16], latent_dim=2, dropout=0.2), (1, 8, 8))
    assert sum(isinstance(x, torch.nn.Dropout) for x in m.decoder.modules()) == 2
    assert not any(isinstance(x, torch.nn.Dropout) for x in m.encoder.modules())
    with pytest.raises(ValueError, match="mlp decoder only"):
        build_model(ModelConfig(arch="conv", dropout=0.2), (1, 8, 8))
    with pytest.raises(ConfigError, match="model.dropout"):
        build_model(ModelConfig(family="ladder", dropout=0.2), (1, 8, 8))
