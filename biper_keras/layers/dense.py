"""Larq's `QuantDense` for Keras 3."""

import keras

from biper_keras.layers.base import (
    _QuantizedKernel,
    _RefusesKerasQuantization,
    lowers_to_conv,
    tokenwise_conv,
)

__all__ = ["QuantDense"]


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantDense(_RefusesKerasQuantization, _QuantizedKernel, keras.layers.Dense):
    """Densely connected layer with quantized inputs and kernel (Larq's `QuantDense`).

    On a token sequence (rank-3 input, or rank 4) with a binary input quantizer, the
    TensorFlow inference graph is the 1x1 convolution over the tokens that LCE fuses
    into `LceBconv2d` (see `QuantEinsumDense`); the result is the matmul's up to float
    rounding. Keras's own `quantize()` and LoRA are refused (they act on the kernel
    this layer quantizes).

    Args:
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantConv2D`.
        **kwargs: everything `keras.layers.Dense` accepts.

    Input shape:
        N-D tensor with shape: `(batch_size, ..., input_dim)`; most often
        `(batch_size, input_dim)`.

    Output shape:
        N-D tensor with shape: `(batch_size, ..., units)`.

    Example:

    >>> layer = bk.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
    ...                       kernel_constraint="weight_clip")
    >>> tuple(layer(np.ones((2, 64), "float32")).shape)
    (2, 10)
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_scale=None,
        kernel_scale_initializer=None,
        **kwargs,
    ):
        self._refuse_keras_quantization(kwargs)
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self._check_not_keras_quantized()
        self._init_quantization(
            input_quantizer,
            kernel_quantizer,
            kernel_scale,
            kernel_scale_initializer,
        )

    def call(self, inputs, training=None):
        with self._quantized_forward():
            if len(inputs.shape) in (3, 4) and lowers_to_conv(self, training):
                outputs = tokenwise_conv(inputs, self.kernel, (self.kernel.shape[0],), self.input_quantizer,
                                         self.bias)
                if outputs is not None:
                    return outputs if self.activation is None else self.activation(outputs)
            if self.input_quantizer is not None:
                inputs = self.input_quantizer(inputs)
            return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), **self._quantization_config()}
