"""biper-keras: binary neural networks (BiPer, ProxConnect++) for Keras 3, deployable
with Larq Compute Engine."""

from biper_keras import layers, quantizers, regularizers
from biper_keras.layers import BatchNormalization, QuantConv2D, QuantDense
from biper_keras.quantizers import ApproxSign, BiPer, SteSign
from biper_keras.regularizers import SinSquared
from biper_keras.summary import summary
from biper_keras.binarize import binarize

__version__ = "0.1.0"

__all__ = [
    "layers",
    "quantizers",
    "regularizers",
    "QuantConv2D",
    "QuantDense",
    "BatchNormalization",
    "BiPer",
    "SteSign",
    "ApproxSign",
    "SinSquared",
    "summary",
    "binarize",
]
