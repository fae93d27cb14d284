"""Networks with no probabilistic meaning: MLPs, convolutional encoders and decoders."""

from vaekit.nn.conv import ConvDecoder, ConvEncoder, conv_sizes
from vaekit.nn.mlp import MLP, activation

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation", "conv_sizes"]
