"""Networks with no probabilistic meaning: MLPs, convolutional encoders and decoders."""

from vaekit.nn.conv import ConvDecoder, ConvEncoder, conv_sizes
from vaekit.nn.mlp import MLP, FlattenInput, activation

__all__ = ["MLP", "FlattenInput", "ConvEncoder", "ConvDecoder", "activation", "conv_sizes"]
