"""biper-keras: binary neural networks (BiPer, ProxConnect++) for Keras 3, deployable
with Larq Compute Engine. The public API, module by module: docs/api.md."""

# Importing the package registers every serializable class (layers, quantizers, model
# blocks, the learning-rate schedule), so keras.models.load_model reads our .keras files.
from biper_keras import constraints, context, layers, metrics, models, optimizers, quantizers, regularizers, training
from biper_keras.layers import (
    BatchNormalization,
    QuantConv1D,
    QuantConv2D,
    QuantDense,
    QuantDepthwiseConv2D,
    QuantEinsumDense,
    QuantMultiHeadAttention,
    QuantSeparableConv2D,
)
from biper_keras.constraints import WeightClip
from biper_keras.metrics import FlipRatio
from biper_keras.quantizers import (
    BNN,
    ApproxSign,
    BinaryConnect,
    BiPer,
    BNNPlus,
    BNNPlusPlus,
    DoReFa,
    MagnitudeAwareSign,
    NoOp,
    SteHeaviside,
    SteSign,
    SteTern,
    SwishSign,
)
from biper_keras.regularizers import SinSquared

# `bk.summary(model)` and `bk.binarize(model)` are the functions (Larq's
# `lq.models.summary(model)` is `bk.summary(model)`); the other names of their modules
# import by their full path: `from biper_keras.summary import ModelStats`,
# `from biper_keras.binarize import BinarizeReport, float_twin`.
from biper_keras.summary import summary
from biper_keras.binarize import binarize
from biper_keras import convert  # TensorFlow and LCE are imported only when it converts

__version__ = "0.1.0"

__all__ = [
    # modules
    "constraints",
    "context",
    "convert",
    "layers",
    "metrics",
    "models",
    "optimizers",
    "quantizers",
    "regularizers",
    "training",
    # layers
    "QuantConv1D",
    "QuantConv2D",
    "QuantDense",
    "QuantDepthwiseConv2D",
    "QuantEinsumDense",
    "QuantMultiHeadAttention",
    "QuantSeparableConv2D",
    "BatchNormalization",
    # quantizers: BiPer, Larq's family, ProxConnect++'s family
    "BiPer",
    "SteSign",
    "ApproxSign",
    "SwishSign",
    "MagnitudeAwareSign",
    "SteHeaviside",
    "SteTern",
    "DoReFa",
    "NoOp",
    "BinaryConnect",
    "BNN",
    "BNNPlus",
    "BNNPlusPlus",
    # training helpers
    "FlipRatio",
    "WeightClip",
    "SinSquared",
    # functions
    "summary",
    "binarize",
]
