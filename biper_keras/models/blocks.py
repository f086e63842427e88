"""Building blocks shared by the model builders."""

import keras
from keras import ops

from biper_keras import quantizers
from biper_keras.layers import QuantConv2D
from biper_keras.quantizers import Quantizer


@keras.saving.register_keras_serializable(package="biper_keras")
class HardTanh(keras.layers.Layer):
    """`clip(x, -1, 1)`. In training it is written with `where`: under XLA (JAX, TF
    jit) a clip-based hard tanh makes the step several times slower. At inference it
    is a clip, which TFLite runs as one op (`where` becomes SELECT/GREATER/LESS)."""

    def call(self, inputs, training=None):
        if not training:
            return ops.clip(inputs, -1.0, 1.0)
        one = ops.ones_like(inputs)
        return ops.where(inputs > 1.0, one, ops.where(inputs < -1.0, -one, inputs))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="biper_keras")
class OptionAShortcut(keras.layers.Layer):
    """ResNet "option A" shortcut: 2x2 average pool, then zero-pad the channels to
    `filters` (no parameters)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def call(self, inputs):
        x = ops.average_pool(inputs, 2, strides=2, padding="valid")
        extra = self.filters - inputs.shape[-1]
        return ops.pad(x, [(0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)])

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else h // 2, None if w is None else w // 2, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def _own_copy(quantizer):
    # Each layer gets its own quantizer, so state such as an annealed mu is per layer
    # (and a model rebuilt from its config has the same variables).
    if isinstance(quantizer, Quantizer):
        return quantizers.deserialize(quantizers.serialize(quantizer))
    return quantizer


def conv3x3(filters, strides, quant, name):
    """A 3x3 conv: `QuantConv2D` with `quant` (a dict of its quantization arguments),
    or a plain float `keras.layers.Conv2D` when `quant` is None."""
    if quant is None:
        return keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)
    quant = {k: _own_copy(v) for k, v in quant.items()}
    return QuantConv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name, **quant)
