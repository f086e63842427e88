"""Old import path: the convolutions live in `biper_keras.layers.conv`."""

from biper_keras.layers.conv import QuantConv1D, QuantDepthwiseConv2D, QuantSeparableConv2D

__all__ = ["QuantConv1D", "QuantDepthwiseConv2D", "QuantSeparableConv2D"]
