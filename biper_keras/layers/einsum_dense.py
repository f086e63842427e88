"""Larq-style quantized `EinsumDense`: the projection layer of attention and of
transformer MLPs written as einsums.

As in `QuantDense`, the `kernel` property reads quantized (times the optional scale
alpha) in the layer's forward pass and inside `context.quantized_scope(True)`, and the
latent real weight anywhere else.

On the TensorFlow backend at inference, a *token-wise* projection with a binary input
quantizer (one whose equation contracts the trailing input axes against the leading
kernel axes and keeps every other input axis in order, e.g. attention's
`abc,cde->abde` and `abcd,cde->abe`) runs as the 1x1 convolution over the tokens that
Larq Compute Engine fuses into its binary `LceBconv2d` (LCE has no binary dense op).
The result is the einsum's, up to float rounding.
"""

import keras
from keras import ops

from biper_keras.layers.base import (
    _QuantizedKernel,
    _RefusesKerasQuantization,
    lowers_to_conv,
    tokenwise_conv,
)

__all__ = ["QuantEinsumDense"]

_LABELS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _split_equation(equation, input_rank):
    """(input, kernel, output) labels of an EinsumDense equation, with an ellipsis in
    the input and output replaced by labels for an input of rank `input_rank`."""
    try:
        operands, output = equation.split("->")
        inputs, kernel = operands.split(",")
    except ValueError:
        raise ValueError(
            "Argument `equation` must have the form 'input,kernel->output' (e.g. "
            f"'abc,cd->abd'). Received: equation={equation!r}."
        ) from None
    if "..." in inputs:
        spare = [c for c in _LABELS if c not in equation]
        fill = "".join(spare[: input_rank - (len(inputs) - 3)])
        inputs, output = inputs.replace("...", fill), output.replace("...", fill)
    return inputs, kernel, output


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantEinsumDense(_RefusesKerasQuantization, _QuantizedKernel, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with quantized inputs and kernel.

    `y = einsum(equation, q_in(x), q_k(W) * alpha) + b`, where alpha (with
    `kernel_scale="channel"`) holds one learnable scale per output unit: the kernel's
    axes that appear in the output (for attention's query projection `abc,cde->abde`,
    a (heads, head_dim) scale; for its output projection `abcd,cde->abe`, (dim,)).

    Keras's own post-training quantization (`quantize("int8")`, ...) and LoRA act on the
    same kernel and are refused (NotImplementedError / ValueError).

    Args:
        equation, output_shape, activation, bias_axes: as `keras.layers.EinsumDense`.
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantConv2D`.
        **kwargs: everything else `keras.layers.EinsumDense` accepts.
    """

    def __init__(
        self,
        equation,
        output_shape,
        activation=None,
        bias_axes=None,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_scale=None,
        kernel_scale_initializer=None,
        **kwargs,
    ):
        self._refuse_keras_quantization(kwargs)
        super().__init__(equation, output_shape, activation=activation, bias_axes=bias_axes, **kwargs)
        self._check_not_keras_quantized()
        self._init_quantization(input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer)
        self._unit_axes = self._contracted = None
        self._tokenwise = False

    def build(self, input_shape):
        inputs, kernel, output = _split_equation(self.equation, len(input_shape))
        self._unit_axes = tuple(i for i, c in enumerate(kernel) if c in output)
        n = len(kernel) - len(self._unit_axes)
        # Token-wise: input = (kept..., contracted...), kernel = (contracted..., units...),
        # output = (kept..., units...), the units being no input axis.
        self._tokenwise = (
            0 < n < len(inputs)
            and kernel[:n] == inputs[-n:]
            and output == inputs[:-n] + kernel[n:]
            and not set(kernel[n:]) & set(inputs)
        )
        self._bias_is_per_unit = self.bias_axes is not None and self.bias_axes == kernel[n:]
        super().build(input_shape)
        self._contracted = tuple(self._kernel.shape[:n])

    def _kernel_scale_shape(self):
        return tuple(self._kernel.shape[i] for i in self._unit_axes)

    def _alpha_for_kernel(self):
        shape = [d if i in self._unit_axes else 1 for i, d in enumerate(self._kernel.shape)]
        return ops.reshape(self.alpha, shape)

    def call(self, inputs, training=None):
        with self._quantized_forward():
            if self._tokenwise and lowers_to_conv(self, training):
                bias = self.bias if self._bias_is_per_unit else None
                outputs = tokenwise_conv(inputs, self.kernel, self._contracted, self.input_quantizer, bias)
                if outputs is not None:
                    if self.bias is not None and bias is None:
                        outputs = ops.add(outputs, self.bias)
                    return outputs if self.activation is None else self.activation(outputs)
            if self.input_quantizer is not None:
                inputs = self.input_quantizer(inputs)
            return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), **self._quantization_config()}
