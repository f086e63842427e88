"""Larq's `QuantConv1D`, `QuantDepthwiseConv2D` and `QuantSeparableConv2D` for Keras 3
(re-exported by `biper_keras.layers`), with Larq's argument names.

Their `call`s are written out here rather than hooked into Keras's: Keras 3's
`Conv1D.call` does not go through `convolution_op` (a hook there would silently skip
the input quantizer), and the depthwise/separable layers have no such seam at all.
As in `QuantConv2D`, kernels read as latent variables except in the forward pass and
inside `quantized_scope(True)`.

LCE fuses binary 2-D convolutions only: a binary `QuantDepthwiseConv2D` (and the
depthwise half of `QuantSeparableConv2D`) converts to a float depthwise convolution.
"""

import keras
from keras import ops

from biper_keras.layers import (
    full_precision,
    _check_pad_values,
    _kernel_quantizer,
    _PadValues,
    _QuantizedKernel,
    _QuantizedLayer,
    tag_precision,
    warn_if_starving,
)
from biper_keras import quantizers as quantizers_lib

__all__ = ["QuantConv1D", "QuantDepthwiseConv2D", "QuantSeparableConv2D"]


def _quantized_weight(name, quantizer_attr):
    """A layer attribute for the latent variable `name` that reads quantized (by the
    layer's `quantizer_attr`) in the forward pass and in `quantized_scope(True)`."""
    store = f"_latent_{name}"

    def read(self):
        latent = getattr(self, store, None)
        quantizer = getattr(self, quantizer_attr, None)
        if latent is None or quantizer is None or not self._reads_quantized():
            return latent
        return ops.cast(quantizer(full_precision(latent)), self.compute_dtype)  # see _QuantizedKernel.kernel

    def write(self, value):
        setattr(self, store, value)

    return property(read, write, doc=f"The latent `{name}`; quantized by `{quantizer_attr}` "
                                     "in the forward pass and in `quantized_scope(True)`.")


def _serialize(q):
    return None if q is None else keras.saving.serialize_keras_object(q)


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantConv1D(_QuantizedKernel, _PadValues, keras.layers.Conv1D):
    """1D convolution with quantized inputs and kernel (Larq's `QuantConv1D`).

    Args:
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantConv2D`.
        pad_values: 0.0 or 1.0, the value SAME padding pads with (CAUSAL padding pads
            with zeros only, as in Larq).
        **kwargs: everything `keras.layers.Conv1D` accepts.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", pad_values=0.0,
                 data_format="channels_last", dilation_rate=1, groups=1, activation=None,
                 use_bias=True, input_quantizer=None, kernel_quantizer=None, kernel_scale=None,
                 kernel_scale_initializer=None, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, groups=groups,
                         activation=activation, use_bias=use_bias, **kwargs)
        self.pad_values = _check_pad_values(pad_values)
        if self.padding == "causal" and self.pad_values != 0.0:
            raise ValueError(
                "Argument `pad_values` must be 0.0 with padding='causal' (causal padding "
                f"pads with zeros). Received: pad_values={pad_values!r}."
            )
        self._init_quantization(input_quantizer, kernel_quantizer, kernel_scale,
                                kernel_scale_initializer)

    def call(self, inputs, training=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        with self._quantized_forward():
            if self.padding != "same" or self.pad_values == 0.0:
                return super().call(inputs)  # Keras's, for valid, same and causal
            padded, padding = self._padded(inputs)
            outputs = ops.conv(padded, self.kernel, strides=list(self.strides), padding=padding,
                               dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._bias_and_activation(outputs)

    def get_config(self):
        return {**super().get_config(), "pad_values": self.pad_values, **self._quantization_config()}


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantDepthwiseConv2D(_QuantizedLayer, _PadValues, keras.layers.DepthwiseConv2D):
    """Depthwise 2D convolution with quantized inputs and kernel (Larq's
    `QuantDepthwiseConv2D`). The latent depthwise kernel is `kernel` (Keras 3's name;
    `depthwise_kernel`, tf_keras's name, reads the same).

    Args:
        input_quantizer: quantizer for the inputs, e.g. `"ste_sign"`.
        depthwise_quantizer: quantizer for the depthwise kernel.
        pad_values: 0.0 or 1.0, the value SAME padding pads with.
        **kwargs: everything `keras.layers.DepthwiseConv2D` accepts
            (`depthwise_constraint="weight_clip"`, ...).
    """

    kernel = _quantized_weight("kernel", "depthwise_quantizer")

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", pad_values=0.0,
                 depth_multiplier=1, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, input_quantizer=None, depthwise_quantizer=None, **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding,
                         depth_multiplier=depth_multiplier, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         **kwargs)
        self.pad_values = _check_pad_values(pad_values)
        self.input_quantizer = quantizers_lib.get(input_quantizer)
        self.depthwise_quantizer = _kernel_quantizer(depthwise_quantizer)
        warn_if_starving(self, self.depthwise_quantizer, self.depthwise_constraint, "depthwise_constraint")

    @property
    def depthwise_kernel(self):
        return self.kernel

    def build(self, input_shape):
        super().build(input_shape)
        tag_precision(self._latent_kernel, self.depthwise_quantizer)

    def call(self, inputs):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        inputs, padding = self._padded(inputs)
        with self._quantized_forward():
            outputs = ops.depthwise_conv(inputs, self.kernel, strides=self.strides, padding=padding,
                                         dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._bias_and_activation(outputs)

    def get_config(self):
        return {**super().get_config(), "pad_values": self.pad_values,
                "input_quantizer": _serialize(self.input_quantizer),
                "depthwise_quantizer": _serialize(self.depthwise_quantizer)}


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantSeparableConv2D(_QuantizedLayer, _PadValues, keras.layers.SeparableConv2D):
    """Depthwise-separable 2D convolution with quantized inputs and kernels (Larq's
    `QuantSeparableConv2D`).

    Args:
        input_quantizer: quantizer for the inputs, e.g. `"ste_sign"`.
        depthwise_quantizer: quantizer for the depthwise kernel.
        pointwise_quantizer: quantizer for the pointwise (1x1) kernel.
        pad_values: 0.0 or 1.0, the value SAME padding pads with.
        **kwargs: everything `keras.layers.SeparableConv2D` accepts.
    """

    depthwise_kernel = _quantized_weight("depthwise_kernel", "depthwise_quantizer")
    pointwise_kernel = _quantized_weight("pointwise_kernel", "pointwise_quantizer")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", pad_values=0.0,
                 data_format=None, dilation_rate=(1, 1), depth_multiplier=1, activation=None,
                 use_bias=True, input_quantizer=None, depthwise_quantizer=None,
                 pointwise_quantizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         depth_multiplier=depth_multiplier, activation=activation,
                         use_bias=use_bias, **kwargs)
        self.pad_values = _check_pad_values(pad_values)
        self.input_quantizer = quantizers_lib.get(input_quantizer)
        self.depthwise_quantizer = _kernel_quantizer(depthwise_quantizer)
        self.pointwise_quantizer = _kernel_quantizer(pointwise_quantizer)
        warn_if_starving(self, self.depthwise_quantizer, self.depthwise_constraint, "depthwise_constraint")
        warn_if_starving(self, self.pointwise_quantizer, self.pointwise_constraint, "pointwise_constraint")

    def build(self, input_shape):
        super().build(input_shape)
        tag_precision(self._latent_depthwise_kernel, self.depthwise_quantizer)
        tag_precision(self._latent_pointwise_kernel, self.pointwise_quantizer)

    def call(self, inputs):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        inputs, padding = self._padded(inputs)
        with self._quantized_forward():
            outputs = ops.separable_conv(inputs, self.depthwise_kernel, self.pointwise_kernel,
                                         strides=self.strides, padding=padding,
                                         dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._bias_and_activation(outputs)

    def get_config(self):
        return {**super().get_config(), "pad_values": self.pad_values,
                "input_quantizer": _serialize(self.input_quantizer),
                "depthwise_quantizer": _serialize(self.depthwise_quantizer),
                "pointwise_quantizer": _serialize(self.pointwise_quantizer)}
