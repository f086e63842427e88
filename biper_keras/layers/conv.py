"""Quantized convolutions with Larq's argument names.

`QuantConv2D` subclasses `keras.layers.Conv2D` and keeps its two seams:

- the `kernel` property returns the *quantized* kernel (times the optional per-channel
  scale alpha) during the layer's own forward pass and inside
  `context.quantized_scope(True)`; anywhere else it is the latent real weight (the
  variable in `_kernel`, which trains and is saved), Larq's rule;
- `convolution_op(inputs, kernel, training)` binarizes the inputs first; `call` passes
  it `training` (the per-sample normalization and the +1-padding route depend on it).

On the TensorFlow backend the inference graph of a binarized conv is exactly what Larq
Compute Engine fuses into `LceBconv2d`: `sign(sign(x) + c)` on the input, an optional
pad with 1.0 (`pad_values=1.0`, the fast path for SAME padding), a VALID conv with a
kernel that constant-folds to +/-alpha per output channel.
"""


import math

import keras
from keras import ops

from biper_keras import _compat
from biper_keras import quantizers as quantizers_lib
from biper_keras.layers.base import (
    _check_pad_values,
    _kernel_quantizer,
    _PadValues,
    _quantized_weight,
    _QuantizedKernel,
    _QuantizedLayer,
    _serialize,
    tag_precision,
    warn_if_starving,
)

__all__ = ["QuantConv1D", "QuantConv2D", "QuantDepthwiseConv2D", "QuantSeparableConv2D"]


def _per_sample_normalized(x):
    """x / sqrt(unbiased var of each sample over its other axes + 1e-5), as the BiPer
    authors' training code computes it (one moments pass per layer)."""
    axes = list(range(1, len(x.shape)))
    _, var = ops.moments(x, axes=axes, keepdims=True)
    n = math.prod(x.shape[1:])
    return x * ops.rsqrt(var * (n / (n - 1)) + 1e-5)


def _quantized_per_sample_normalized(quantizer, x):
    r"""`quantizer(_per_sample_normalized(x))` for a quantizer whose forward ignores a
    positive scale (`quantizer.scale_invariant`, a sign): the forward pass is
    `quantizer`'s forward of `x` itself, and sigma is computed in the gradient only.

    With u = x / sigma, sigma = sqrt(v + 1e-5), v the unbiased variance of a sample's
    n values, q' the quantizer's backward gradient and h = dL/dq * q'(u), the chain
    rule through u and through sigma (d sigma / dx = (x - mean) / ((n - 1) sigma)) gives

        dL/dx = h / sigma - sum(h * x) * (x - mean) / ((n - 1) * sigma^3),

    sums and means over each sample: the gradient of the authors' x / sigma, exactly.
    """
    mu = quantizer.mu_value(x)
    gradient = _normalized_gradient_of(quantizer)

    @ops.custom_gradient
    def quantize(x):
        def grad(*args, upstream=None):
            if upstream is None:  # TF and JAX pass it positionally, torch by keyword
                (upstream,) = args
            return gradient(x, upstream, mu)

        return quantizer.forward_value(x, mu), grad

    return quantize(x)


def _normalized_gradient_of(quantizer):
    """`_normalized_gradient` of the quantizer's backward gradient, fused: by XLA on
    TensorFlow (one function per quantizer config), in place on torch."""
    if keras.backend.backend() == "torch":
        from biper_keras.layers import _torch_fused

        return _torch_fused.normalized_gradient(quantizer)
    config = {k: v for k, v in quantizer.get_config().items() if k not in ("name", "mu")}
    return _fused_by_xla((type(quantizer), repr(sorted(config.items()))),
                         lambda: _normalized_gradient(type(quantizer).from_config(config).backward_gradient))


def _normalized_gradient(backward_gradient):
    """The gradient function of `_quantized_per_sample_normalized` for a quantizer's
    `backward_gradient`: (x, upstream, mu) -> dL/dx."""

    def gradient(x, upstream, mu):
        axes = tuple(range(1, len(x.shape)))
        n = math.prod(x.shape[1:]) if None not in x.shape[1:] else ops.cast(ops.size(x[0]), x.dtype)
        centered = x - ops.mean(x, axis=axes, keepdims=True)
        inv_sigma = ops.rsqrt(ops.sum(ops.square(centered), axis=axes, keepdims=True) / (n - 1) + 1e-5)
        h = upstream * backward_gradient(x * inv_sigma, mu)
        through_sigma = ops.sum(h * x, axis=axes, keepdims=True) * ops.square(inv_sigma) / (n - 1)
        return inv_sigma * (h - through_sigma * centered)

    return gradient


_XLA_FUNCTIONS = {}


def _fused_by_xla(key, make):
    """The function `make()` returns, compiled by XLA into a few fused loops on the
    TensorFlow backend, where Keras runs a CPU step op by op (one pass over memory per
    elementwise op); one function per `key`, shared by every layer. On JAX the whole
    step is compiled by XLA already, and torch runs op by op: `make()` as it is."""
    if keras.backend.backend() != "tensorflow":
        return make()
    if key not in _XLA_FUNCTIONS:
        import tensorflow as tf

        # reduce_retracing: one trace for every input shape (XLA still compiles per shape).
        _XLA_FUNCTIONS[key] = tf.function(make(), jit_compile=True, reduce_retracing=True)
    return _XLA_FUNCTIONS[key]


def _border_term_pays():
    """Whether a +1-padded conv trains faster as a zero-padded conv plus a border term
    than as an explicit pad and a VALID conv: measured on TensorFlow op by op only. XLA
    (JAX, TF with jit_compile) fuses the pad into the conv's input, and torch was
    slower (benchmarks/train_step.py --ablate, docs/results.md)."""
    return keras.backend.backend() == "tensorflow" and not _compat.tracing_for_xla()


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantConv2D(_QuantizedKernel, _PadValues, keras.layers.Conv2D):
    """2D convolution with quantized inputs and kernel (Larq's `QuantConv2D`).

    Args:
        input_quantizer: quantizer for the inputs (name, config, instance, callable,
            or None for full precision), e.g. `"ste_sign"` or `"approx_sign"`.
        kernel_quantizer: quantizer for the kernel, e.g. `"biper"` or `BiPer(omega=20)`.
        pad_values: 0.0 or 1.0, the value SAME padding pads with. 1.0 keeps a binary
            conv's input binary (+1) and is LCE's fast path.
        kernel_scale: None, or `"channel"` for a learnable per-output-channel scale
            alpha multiplying the quantized kernel (BiPer's), folded by LCE.
        kernel_scale_initializer: initializer for alpha (BiPer: uniform on [0, 1)).
        normalize_inputs: the BiPer authors' per-sample activation normalization, in
            training only: each sample's input is divided by
            `sqrt(var + 1e-5)`, var the unbiased variance over all its non-batch axes,
            before the input quantizer, with the gradient through the std. The sign
            is unchanged, so it changes only the gradients: with a sign-like input
            quantizer (`scale_invariant`) the forward pass skips it, and the gradient
            computes sigma and its exact contribution. The inference graph (and LCE's
            fusion) is the same as without it.
        symmetric_padding: with `padding="same"`, compute what PyTorch's
            `padding=k // 2` computes: `(extent - 1) // 2` before each spatial axis
            (and after it, as much as the last window reads). Differs from Keras's
            SAME only for strides > 1, where TF puts the single pad row and column at
            the bottom/right. Odd kernel sizes, static spatial sizes at stride > 1.
            With `pad_values=1.0` it converts to a fused `LceBconv2d` behind a float
            pad; with 0.0, at stride > 1, it does not fuse.
        **kwargs: everything `keras.layers.Conv2D` accepts.

    SAME padding with 1.0 takes routes that compute the same values (tests:
    `test_conv_with_pad_values_one_matches_explicit_computation` in both modes,
    `test_symmetric_padding_is_pytorchs_padding_1`, tests/backend_suite/suite_binary_conv.py
    against plain PyTorch): at inference an explicit pad and a VALID conv, the graph LCE
    fuses; in training on TensorFlow op by op, where it is faster, a zero-padded conv plus
    the border's contribution (`_ones_padded_conv_by_border`); under XLA the explicit pad,
    which XLA fuses, with the input gradient of the interior only on TensorFlow
    (`_tf_fused`); on torch one in-place route (`_torch_fused`).

    Input shape:
        4-D tensor with shape `(batch_size, height, width, channels)`
        (`data_format="channels_last"`, the layout LCE converts), or
        `(batch_size, channels, height, width)` with `"channels_first"`.

    Output shape:
        4-D tensor with shape `(batch_size, new_height, new_width, filters)`
        (`channels_last`), the spatial sizes as `keras.layers.Conv2D` computes them.

    Example:

    >>> layer = bk.QuantConv2D(64, 3, padding="same", pad_values=1.0, use_bias=False,
    ...                        input_quantizer="approx_sign", kernel_quantizer=bk.BiPer(omega=20),
    ...                        kernel_scale="channel")
    >>> tuple(layer(np.ones((2, 32, 32, 16), "float32")).shape)
    (2, 32, 32, 64)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        pad_values=0.0,
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_scale=None,
        kernel_scale_initializer=None,
        normalize_inputs=False,
        symmetric_padding=False,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            activation=activation,
            use_bias=use_bias,
            **kwargs,
        )
        self.pad_values = _check_pad_values(pad_values)
        for name, value in (("normalize_inputs", normalize_inputs), ("symmetric_padding", symmetric_padding)):
            if not isinstance(value, bool):
                raise ValueError(f"Argument `{name}` must be True or False. Received: {name}={value!r}.")
        if symmetric_padding and (self.padding != "same" or any(k % 2 == 0 for k in self.kernel_size)):
            raise ValueError(
                "Argument `symmetric_padding=True` needs padding='same' and odd kernel sizes. "
                f"Received: padding={self.padding!r}, kernel_size={self.kernel_size}."
            )
        self.normalize_inputs, self.symmetric_padding = normalize_inputs, symmetric_padding
        self._init_quantization(
            input_quantizer,
            kernel_quantizer,
            kernel_scale,
            kernel_scale_initializer,
        )

    def call(self, inputs, training=None):
        with self._quantized_forward():
            outputs = self.convolution_op(inputs, self.kernel, training=bool(training))
        return self._bias_and_activation(outputs)

    def convolution_op(self, inputs, kernel, training=False):
        """The binary convolution: (in training, the per-sample normalization,) the input
        quantizer, SAME padding with `pad_values`, the convolution with `kernel`."""
        # Keras's own SAME is symmetric at stride 1; at stride > 1 the pads are explicit.
        keras_same = not (self.symmetric_padding and any(s > 1 for s in self.strides))
        if self.padding != "same" or (self.pad_values == 0.0 and keras_same):
            return super().convolution_op(self._quantized_inputs(inputs, training), kernel)
        pad_width = self._same_pad_width(inputs.shape)
        if self.pad_values == 1.0 and not keras_same and not training:
            # Inference: pad with +1 before the binarizer (the same values, sign(1) = +1).
            # LCE then fuses a VALID LceBconv2d; a pad after the binarizer it fuses as
            # its own SAME, which pads (0, 1) at stride 2: silently wrong.
            inputs = ops.pad(inputs, pad_width, constant_values=1.0)
            return self._conv(self._quantized_inputs(inputs, training), kernel, "valid")
        if self.pad_values == 1.0 and training and keras.backend.backend() == "torch":
            outputs = self._torch_fused_conv(inputs, kernel, pad_width)
            if outputs is not None:
                return outputs
        inputs = self._quantized_inputs(inputs, training)
        if (self.pad_values == 1.0 and training and _compat.tracing_for_xla()
                and self.data_format == "channels_last" and self.groups == 1):
            # TensorFlow under XLA: the input gradient of the interior only (_tf_fused).
            from biper_keras.layers import _tf_fused

            return _tf_fused.ones_padded_conv2d(inputs, kernel, pad_width, self.strides, self.dilation_rate)
        if self.pad_values == 1.0 and keras_same and training and _border_term_pays():
            return self._ones_padded_conv_by_border(inputs, kernel, pad_width)
        return self._conv(ops.pad(inputs, pad_width, constant_values=self.pad_values), kernel, "valid")

    def _torch_fused_conv(self, inputs, kernel, pad_width):
        """Training on torch: the conv of the input quantizer's output padded with +1,
        the same values and gradients as `_quantized_inputs`, a pad and `_conv`, in a few
        in-place passes (`_torch_fused`); None where that route does not apply (a
        quantizer that is not a forward/backward pair, with training metrics, or with a
        normalization its forward would see)."""
        from biper_keras.layers import _torch_fused

        quantizer = self.input_quantizer
        if not isinstance(quantizer, quantizers_lib.ForwardBackwardQuantizer) or quantizer._custom_metrics:
            return None
        if self.normalize_inputs and not quantizer.scale_invariant:
            return None
        mu = quantizer.mu_value(inputs)
        if type(quantizer).forward_value is quantizers_lib.core._Sign.forward_value:
            forward = _torch_fused.binary_sign_into
        else:
            def forward(x, out):
                out.copy_(quantizer.forward_value(x, mu))
        if self.normalize_inputs:
            normalized = _normalized_gradient_of(quantizer)

            def gradient(x, upstream):
                return normalized(x, upstream, mu)
        else:
            def gradient(x, upstream):
                return _torch_fused.upstream_times_derivative(quantizer, x, 1.0, upstream, mu)
        if self.data_format == "channels_last":
            # A Keras variable (no kernel quantizer) as the tensor autograd tracks.
            kernel = ops.convert_to_tensor(kernel)
            return _torch_fused.quantized_padded_conv2d(inputs, kernel, forward, gradient, pad_width, 1.0,
                                                        self.strides, self.dilation_rate, self.groups)
        return self._conv(_torch_fused.quantized_padded(inputs, forward, gradient, pad_width, 1.0), kernel, "valid")

    def _quantized_inputs(self, inputs, training):
        quantizer = self.input_quantizer
        if not (self.normalize_inputs and training):
            return inputs if quantizer is None else quantizer(inputs)
        if getattr(quantizer, "scale_invariant", False) and not quantizer._custom_metrics:
            return _quantized_per_sample_normalized(quantizer, inputs)
        # A quantizer whose forward sees the scale (or none: the conv does), or one
        # with training metrics (variables, which a custom gradient cannot update).
        inputs = _per_sample_normalized(inputs)
        return inputs if quantizer is None else quantizer(inputs)

    def _conv(self, inputs, kernel, padding):
        return ops.conv(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )

    def _ones_padded_conv_by_border(self, inputs, kernel, pad_width):
        """conv(pad(x, 1)) computed as conv_SAME(x) (zero padding, done inside the
        conv kernel) + conv(pad(0, 1)): the second term is the border's contribution, the
        same for every sample, so it is computed on one zero image and broadcast.

        Equal to the explicit pad + VALID conv up to float rounding; on TensorFlow the
        pad and its gradient (a slice) cost more than the one-sample conv and the add
        (ResNet-20 step: see benchmarks/train_step.py). Training only: the inference
        graph keeps the explicit pad, the pattern LCE fuses.
        """
        border = ops.pad(ops.zeros_like(inputs[:1]), pad_width, constant_values=self.pad_values)
        return self._conv(inputs, kernel, "same") + self._conv(border, kernel, "valid")

    def get_config(self):
        return {
            **super().get_config(),
            "pad_values": self.pad_values,
            "normalize_inputs": self.normalize_inputs,
            "symmetric_padding": self.symmetric_padding,
            **self._quantization_config(),
        }



# Larq's other convolutions. # (re-exported by `biper_keras.layers`), with Larq's argument names.
#
# Their `call`s are written out here rather than hooked into Keras's: Keras 3's
# `Conv1D.call` does not go through `convolution_op` (a hook there would silently skip
# the input quantizer), and the depthwise/separable layers have no such seam at all.
# As in `QuantConv2D`, kernels read as latent variables except in the forward pass and
# inside `quantized_scope(True)`.
#
# LCE fuses binary 2-D convolutions only: a binary `QuantDepthwiseConv2D` (and the
# depthwise half of `QuantSeparableConv2D`) converts to a float depthwise convolution.


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantConv1D(_QuantizedKernel, _PadValues, keras.layers.Conv1D):
    """1D convolution with quantized inputs and kernel (Larq's `QuantConv1D`).

    Args:
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantConv2D`.
        pad_values: 0.0 or 1.0, the value SAME padding pads with (CAUSAL padding pads
            with zeros only, as in Larq).
        **kwargs: everything `keras.layers.Conv1D` accepts.

    Input shape:
        3-D tensor with shape `(batch_size, steps, channels)` (`channels_last`).

    Output shape:
        3-D tensor with shape `(batch_size, new_steps, filters)`.

    Example:

    >>> layer = bk.QuantConv1D(8, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
    ...                        kernel_constraint="weight_clip")
    >>> tuple(layer(np.ones((2, 20, 4), "float32")).shape)
    (2, 18, 8)
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

    Input shape:
        4-D tensor with shape `(batch_size, height, width, channels)` (`channels_last`).

    Output shape:
        4-D tensor with shape `(batch_size, new_height, new_width, channels *
        depth_multiplier)`.

    Example:

    >>> layer = bk.QuantDepthwiseConv2D(3, padding="same", input_quantizer="ste_sign",
    ...                                 depthwise_quantizer="ste_sign", depthwise_constraint="weight_clip")
    >>> tuple(layer(np.ones((2, 8, 8, 4), "float32")).shape)
    (2, 8, 8, 4)
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

    Input shape:
        4-D tensor with shape `(batch_size, height, width, channels)` (`channels_last`).

    Output shape:
        4-D tensor with shape `(batch_size, new_height, new_width, filters)`.

    Example:

    >>> layer = bk.QuantSeparableConv2D(16, 3, input_quantizer="ste_sign",
    ...                                 depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign",
    ...                                 depthwise_constraint="weight_clip", pointwise_constraint="weight_clip")
    >>> tuple(layer(np.ones((2, 8, 8, 4), "float32")).shape)
    (2, 6, 6, 16)
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
