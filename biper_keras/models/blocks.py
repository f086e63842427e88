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


# PyTorch's `kaiming_normal_` (what the BiPer authors initialize convs with): normal,
# not truncated, std sqrt(2 / fan_in). Keras's "he_normal" is truncated at 2 std.
KAIMING_NORMAL = {"class_name": "VarianceScaling",
                  "config": {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"}}


def conv_initializer(identifier):
    """A new initializer for a conv kernel: `"kaiming_normal"` (PyTorch's), or anything
    `keras.initializers.get` accepts (default Keras's "glorot_uniform")."""
    if identifier == "kaiming_normal":
        identifier = KAIMING_NORMAL
    if isinstance(identifier, dict):
        return keras.initializers.deserialize(identifier)  # a new instance per layer
    return keras.initializers.get(identifier)


def conv3x3(filters, strides, quant, name, initializer="glorot_uniform", symmetric_padding=False):
    """A 3x3 conv: `QuantConv2D` with `quant` (a dict of its quantization arguments),
    or a plain float `keras.layers.Conv2D` when `quant` is None. `symmetric_padding`
    pads (1, 1) as PyTorch's `padding=1` does (Keras's SAME pads (0, 1) at stride 2)."""
    kernel_initializer = conv_initializer(initializer)
    if quant is None:
        if symmetric_padding and strides != 1:
            pad = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")
            conv = keras.layers.Conv2D(filters, 3, strides=strides, use_bias=False, name=name,
                                       kernel_initializer=kernel_initializer)
            return lambda x: conv(pad(x))
        return keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name,
                                   kernel_initializer=kernel_initializer)
    quant = {k: _own_copy(v) for k, v in quant.items()}
    return QuantConv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name,
                       kernel_initializer=kernel_initializer, symmetric_padding=symmetric_padding and strides != 1, **quant)
