"""Quantized Keras 3 layers with Larq's argument names (Larq's `larq.layers`).

The quantized layers subclass their Keras layer and hook into its seams rather than
rewriting `call`:

- the `kernel` property returns the *quantized* kernel (times the optional per-channel
  scale alpha) during the layer's own forward pass and inside
  `context.quantized_scope(True)`; anywhere else it is the latent real weight (the
  variable that trains and is saved), Larq's rule;
- the convolution (`convolution_op`) or `call` binarizes the inputs first.

Modules: `base` (what every quantized layer shares), `conv` (QuantConv1D/2D,
QuantDepthwiseConv2D, QuantSeparableConv2D), `dense` (QuantDense), `einsum_dense`
(QuantEinsumDense), `attention` (QuantMultiHeadAttention, whose projections are
QuantEinsumDense layers), `normalization` (BatchNormalization with TensorFlow's fused
kernel).
"""

from biper_keras.layers.base import (
    QUANTIZATION_CONFIG_KEYS,
    QUANTIZER_ATTRIBUTES,
    layer_quantizers,
    quantized_layers,
    runs_as_tokenwise_conv,
)
from biper_keras.layers.conv import QuantConv1D, QuantConv2D, QuantDepthwiseConv2D, QuantSeparableConv2D
from biper_keras.layers.dense import QuantDense
from biper_keras.layers.einsum_dense import QuantEinsumDense
from biper_keras.layers.attention import QuantMultiHeadAttention
from biper_keras.layers.normalization import BatchNormalization

__all__ = [
    "QuantConv1D",
    "QuantConv2D",
    "QuantDense",
    "QuantEinsumDense",
    "QuantMultiHeadAttention",
    "QuantDepthwiseConv2D",
    "QuantSeparableConv2D",
    "BatchNormalization",
    "quantized_layers",
    "layer_quantizers",
    "runs_as_tokenwise_conv",
    "QUANTIZER_ATTRIBUTES",
    "QUANTIZATION_CONFIG_KEYS",
]
