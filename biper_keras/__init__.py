"""biper-keras: binary neural networks (BiPer, ProxConnect++) for Keras 3, deployable
with Larq Compute Engine."""

# Importing the package registers every serializable class (layers, quantizers, model
# blocks, the learning-rate schedule), so keras.models.load_model reads our .keras files.
from biper_keras import constraints, context, layers, metrics, models, optimizers, quantizers, regularizers, training
from biper_keras.layers import BatchNormalization, QuantConv2D, QuantDense
from biper_keras.constraints import WeightClip
from biper_keras.metrics import FlipRatio
from biper_keras.quantizers import (
    ApproxSign,
    BiPer,
    DoReFa,
    MagnitudeAwareSign,
    NoOp,
    SteHeaviside,
    SteSign,
    SteTern,
    SwishSign,
)
from biper_keras.regularizers import SinSquared
from biper_keras.summary import summary
from biper_keras.binarize import binarize
from biper_keras import convert  # TensorFlow and LCE are imported only when it converts

__version__ = "0.1.0"

__all__ = [
    "layers",
    "models",
    "quantizers",
    "training",
    "convert",
    "regularizers",
    "QuantConv2D",
    "QuantDense",
    "BatchNormalization",
    "BiPer",
    "SteSign",
    "ApproxSign",
    "SwishSign",
    "MagnitudeAwareSign",
    "SteHeaviside",
    "SteTern",
    "DoReFa",
    "NoOp",
    "FlipRatio",
    "WeightClip",
    "constraints",
    "optimizers",
    "context",
    "metrics",
    "SinSquared",
    "summary",
    "binarize",
]
