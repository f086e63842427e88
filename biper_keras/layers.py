"""Quantized Keras 3 layers with Larq's argument names.

`QuantConv2D` and `QuantDense` subclass `keras.layers.Conv2D` / `Dense` and hook into
their two seams rather than rewriting `call`:

- the `kernel` property returns the *quantized* kernel (times the optional per-channel
  scale alpha) during the layer's own forward pass and inside
  `context.quantized_scope(True)`; anywhere else it is the latent real weight (the
  variable in `_kernel`, which trains and is saved), Larq's rule;
- `convolution_op(inputs, kernel)` (conv) / `call` (dense) binarizes the inputs first.

On the TensorFlow backend the inference graph of a binarized conv is exactly what Larq
Compute Engine fuses into `LceBconv2d`: `sign(sign(x) + c)` on the input, an optional
pad with 1.0 (`pad_values=1.0`, the fast path for SAME padding), a VALID conv with a
kernel that constant-folds to +/-alpha per output channel.
"""

import contextlib
import math
import warnings

import keras
from keras import ops

from biper_keras import constraints as _constraints  # noqa: F401 ("weight_clip" resolves)
from biper_keras import context
from biper_keras import quantizers as quantizers_lib
from biper_keras.regularizers import SinSquared

__all__ = [
    "QuantConv1D",
    "QuantConv2D",
    "QuantDense",
    "QuantDepthwiseConv2D",
    "QuantSeparableConv2D",
    "BatchNormalization",
    "quantized_layers",
    "layer_quantizers",
    "QUANTIZER_ATTRIBUTES",
    "QUANTIZATION_CONFIG_KEYS",
]

_KERNEL_SCALES = (None, "channel")


class _QuantizedLayer:
    """What every quantized layer shares: the forward-pass flag that makes its kernels
    read quantized, and saving the variables themselves."""

    @contextlib.contextmanager
    def _quantized_forward(self):
        """Within it the kernels read quantized: Keras's `call`s read `self.kernel`."""
        outer = getattr(self, "_in_forward", False)
        self._in_forward = True
        try:
            yield
        finally:
            self._in_forward = outer

    def _reads_quantized(self):
        return getattr(self, "_in_forward", False) or context.should_quantize()

    # Keras's Conv/Dense save `self.kernel` (to merge LoRA), which in the forward pass is
    # the quantized kernel: save the variables themselves (latent kernel, bias, alpha).
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)


class _QuantizedKernel(_QuantizedLayer):
    """What QuantConv2D and QuantDense share: quantizers, kernel scale."""

    def _init_quantization(
        self, input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer
    ):
        self.input_quantizer = quantizers_lib.get(input_quantizer)
        self.kernel_quantizer = _kernel_quantizer(kernel_quantizer)
        if isinstance(self.kernel_regularizer, SinSquared):
            self.kernel_regularizer.bind(self.kernel_quantizer, self.name)
        warn_if_starving(self, self.kernel_quantizer, self.kernel_constraint, "kernel_constraint")
        if kernel_scale not in _KERNEL_SCALES:
            raise ValueError(
                "Argument `kernel_scale` must be None or 'channel' (a learnable "
                f"per-output-channel scale). Received: kernel_scale={kernel_scale!r}."
            )
        self.kernel_scale = kernel_scale
        if kernel_scale_initializer is None:
            # BiPer initializes alpha uniformly on [0, 1).
            kernel_scale_initializer = keras.initializers.RandomUniform(0.0, 1.0)
        self.kernel_scale_initializer = keras.initializers.get(kernel_scale_initializer)
        self.alpha = None

    def build(self, input_shape):
        super().build(input_shape)
        tag_precision(self._kernel, self.kernel_quantizer)
        if self.kernel_scale == "channel":
            self.alpha = self.add_weight(
                name="kernel_scale",
                shape=(self._kernel.shape[-1],),  # output channels, for conv and dense
                initializer=self.kernel_scale_initializer,
                trainable=True,
                dtype=self.dtype,
            )

    @property
    def latent_kernel(self):
        """The latent real kernel (the variable that trains and is saved), whatever
        `quantized_scope` says."""
        return self._kernel

    @property
    def kernel(self):
        """Larq's rule: the latent kernel, except in this layer's forward pass and inside
        `quantized_scope(True)`, where it is the quantized kernel (times alpha)."""
        kernel = super().kernel
        if not self._reads_quantized():
            return kernel
        if self.kernel_quantizer is not None:
            # From the float32 latent weights, whatever the compute dtype: under a mixed
            # policy Keras hands `call` bfloat16/float16 copies, whose rounding moves
            # weights across sin's zero crossings (bfloat16: 3 of 4,608 Laplace weights).
            # The 1-bit result is exact in every float dtype.
            kernel = ops.cast(self.kernel_quantizer(full_precision(kernel)), self.compute_dtype)
        if self.alpha is not None:
            # Scaling the kernel, not the output: it is cheaper (the kernel is small)
            # and LCE folds +/-alpha per output channel into its multiplier.
            kernel = kernel * ops.cast(self.alpha, kernel.dtype)
        return kernel

    def _quantization_config(self):
        def ser(q):
            return None if q is None else keras.saving.serialize_keras_object(q)

        return {
            "input_quantizer": ser(self.input_quantizer),
            "kernel_quantizer": ser(self.kernel_quantizer),
            "kernel_scale": self.kernel_scale,
            "kernel_scale_initializer": keras.initializers.serialize(
                self.kernel_scale_initializer
            ),
        }

def full_precision(value):
    """`value` (a variable, or a tensor read from one) as a tensor in the variable's own
    dtype: inside a layer's `call` under a mixed dtype policy Keras would autocast it to
    the compute dtype. Returns other tensors as they are."""
    if isinstance(value, keras.Variable):
        # Keras has no public switch for this; AutocastScope(None) is its own "no cast".
        from keras.src.backend.common.variables import AutocastScope

        with AutocastScope(None):
            # `.value`, not convert_to_tensor(variable): on TF the latter still casts.
            return ops.convert_to_tensor(value.value)
    return value


def _may_starve(quantizer):
    """Larq's warning rule (a 1-bit quantizer other than NoOp), except for quantizers
    whose gradient never vanishes (BiPer's periodic one, BinaryConnect's identity)."""
    return (
        getattr(quantizer, "precision", None) == 1
        and not isinstance(quantizer, quantizers_lib.NoOp)
        and getattr(quantizer, "starves_latent_weights", True)
    )


def tag_precision(variable, quantizer):
    """Marks a latent kernel with its quantizer's bit width, for optimizers that pick
    binary variables (`Bop.is_binary_variable`) as Larq's quantized variables do."""
    precision = getattr(quantizer, "precision", None)
    if variable is not None and precision is not None:
        variable.precision = precision


def warn_if_starving(layer, quantizer, constraint, constraint_arg):
    """Larq's warning: a clipped binary estimator without a constraint lets latent
    weights drift where their gradient is always zero. The text names the layer's class,
    not the layer, so that Python's filter shows it once per line of code: a model builder
    (18 binary convs in ResNet-20) warns once, not once per layer."""
    if _may_starve(quantizer) and constraint is None:
        warnings.warn(
            f"{type(layer).__name__}: using a binary weight quantizer without setting "
            f"`{constraint_arg}` may result in starved weights (where the gradient is "
            f"always zero); e.g. {constraint_arg}=\"weight_clip\".",
            stacklevel=4,
        )


def _kernel_quantizer(identifier):
    """`quantizers.get`, plus the training metrics of an enclosing `metrics_scope` for a
    quantizer that was not given its own (Larq's `get_kernel_quantizer`)."""
    quantizer = quantizers_lib.get(identifier)
    scoped = context.get_training_metrics()
    if isinstance(quantizer, quantizers_lib.Quantizer) and scoped and not quantizer._custom_metrics:
        quantizer._custom_metrics = sorted(scoped)
    return quantizer


def _per_sample_normalized(x):
    """x / sqrt(unbiased var of each sample over its other axes + 1e-5), as the BiPer
    authors' training code computes it (one moments pass per layer)."""
    axes = list(range(1, len(x.shape)))
    _, var = ops.moments(x, axes=axes, keepdims=True)
    n = math.prod(x.shape[1:])
    return x * ops.rsqrt(var * (n / (n - 1)) + 1e-5)


def _check_pad_values(pad_values):
    if isinstance(pad_values, bool) or pad_values not in (0, 1):
        raise ValueError(
            "Argument `pad_values` must be 0.0 or 1.0 (1.0 is LCE's fast path for "
            f"binary convs with SAME padding). Received: pad_values={pad_values!r}."
        )
    return float(pad_values)


class _PadValues:
    """SAME padding with a constant (Larq's `pad_values`) as an explicit pad + VALID."""

    def _padded(self, inputs):
        """(inputs, padding) for the convolution: explicitly padded for pad_values=1."""
        if self.padding != "same" or self.pad_values == 0.0:
            return inputs, self.padding
        return ops.pad(inputs, self._same_pad_width(inputs.shape), constant_values=self.pad_values), "valid"

    def _bias_and_activation(self, outputs):
        if self.use_bias:
            rank = len(outputs.shape) - 2
            channels = self.bias.shape[0]
            shape = ((1,) * (rank + 1) + (channels,) if self.data_format == "channels_last"
                     else (1, channels) + (1,) * rank)
            outputs = ops.add(outputs, ops.reshape(self.bias, shape))
        return outputs if self.activation is None else self.activation(outputs)

    def _same_pad_width(self, shape):
        """The (before, after) pads that make a VALID conv equal a SAME one."""
        first = 1 if self.data_format == "channels_last" else 2
        spatial = [(0, 0)] * len(shape)
        for i, (k, s, d) in enumerate(
            zip(self.kernel_size, self.strides, self.dilation_rate)
        ):
            extent = (k - 1) * d + 1
            size = shape[first + i]
            if s == 1:
                total = extent - 1
            elif size is None:
                raise ValueError(
                    f"Layer '{self.name}': SAME padding with pad_values=1.0 or symmetric_padding and "
                    f"strides={self.strides} needs static spatial input sizes; "
                    f"received input shape {tuple(shape)}."
                )
            else:
                total = max((math.ceil(size / s) - 1) * s + extent - size, 0)
            before = total // 2
            if getattr(self, "symmetric_padding", False):
                # PyTorch's pad before; of its pad after, only what the last window
                # reads (at stride 2 on an even size: none).
                before = (extent - 1) // 2
            spatial[first + i] = (before, max(total - before, 0))
        return spatial


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
            is unchanged, so it changes only the gradients; the inference graph
            (and LCE's fusion) is the same as without it.
        symmetric_padding: with `padding="same"`, compute what PyTorch's
            `padding=k // 2` computes: `(extent - 1) // 2` before each spatial axis
            (and after it, as much as the last window reads). Differs from Keras's
            SAME only for strides > 1, where TF puts the single pad row and column at
            the bottom/right. Odd kernel sizes, static spatial sizes at stride > 1.
            With `pad_values=1.0` it converts to a fused `LceBconv2d` behind a float
            pad; with 0.0, at stride > 1, it does not fuse.
        **kwargs: everything `keras.layers.Conv2D` accepts.
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
        # Conv's `call` has no `training`; `convolution_op` reads this flag to pick the
        # training-only fast path for pad_values=1.0 (a Python bool at trace time).
        self._training_call = bool(training)
        with self._quantized_forward():
            return super().call(inputs)

    def convolution_op(self, inputs, kernel):
        training = getattr(self, "_training_call", False)
        if self.normalize_inputs and training:
            inputs = _per_sample_normalized(inputs)
        # Keras's own SAME is symmetric at stride 1; at stride > 1 the pads are explicit.
        own_pads = not (self.symmetric_padding and any(s > 1 for s in self.strides))
        if not own_pads and self.pad_values == 1.0 and not training:
            # Inference: pad with +1 before the binarizer (the same values, sign(1) = +1).
            # LCE then fuses a VALID LceBconv2d; a pad after the binarizer it fuses as
            # its own SAME, which pads (0, 1) at stride 2: silently wrong.
            inputs = ops.pad(inputs, self._same_pad_width(inputs.shape), constant_values=1.0)
            if self.input_quantizer is not None:
                inputs = self.input_quantizer(inputs)
            return self._conv(inputs, kernel, "valid")
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        if self.padding != "same" or (self.pad_values == 0.0 and own_pads):
            return super().convolution_op(inputs, kernel)
        pad_width = self._same_pad_width(inputs.shape)
        # Measured on the ResNet-20 step: 8% faster on TF, no gain on JAX (XLA fuses the
        # pad), 5x slower on torch; so TF only.
        if training and own_pads and keras.backend.backend() == "tensorflow":
            return self._ones_padded_conv_by_border(inputs, kernel, pad_width)
        padded = ops.pad(inputs, pad_width, constant_values=self.pad_values)
        return self._conv(padded, kernel, "valid")

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


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantDense(_QuantizedKernel, keras.layers.Dense):
    """Densely connected layer with quantized inputs and kernel (Larq's `QuantDense`).

    Args:
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantConv2D`.
        **kwargs: everything `keras.layers.Dense` accepts.
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
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self._init_quantization(
            input_quantizer,
            kernel_quantizer,
            kernel_scale,
            kernel_scale_initializer,
        )

    def call(self, inputs, training=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        with self._quantized_forward():
            return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), **self._quantization_config()}


@keras.saving.register_keras_serializable(package="biper_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, with one fused kernel in training on TensorFlow.

    Keras 3 computes training-mode batch norm on the TF backend from separate ops
    (moments, then the affine map), about 3x the time of TensorFlow's fused kernel that
    tf_keras (and so Larq) uses. On the TF backend, for 4-D channels-last inputs without
    mask or renorm, this layer runs `FusedBatchNormV3` in training and updates the
    moving statistics exactly as Keras does (with the biased batch variance). Everything
    else (inference, other backends, other inputs) is Keras's own code, so weights,
    serialization and the inference graph that LCE folds are unchanged.
    """

    def _can_fuse(self, inputs, training, mask):
        return (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.dtype == "float32"
            and self.epsilon >= 1.001e-5  # the fused kernel's lower bound
        )

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), inputs.dtype)
        beta = self.beta if self.center else tf.zeros((channels,), inputs.dtype)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The fused kernel returns the Bessel-corrected batch variance; Keras keeps the
        # biased one in its moving average.
        n = tf.cast(tf.size(inputs) // channels, variance.dtype)
        variance = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return outputs


# Larq's other convolutions; they build on the helpers above.
from biper_keras.conv_layers import QuantConv1D, QuantDepthwiseConv2D, QuantSeparableConv2D  # noqa: E402

QUANTIZER_ATTRIBUTES = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")
# What the quantized layers add to their float Keras layer's config (float_twin drops
# these; a test checks the list against every layer's config).
QUANTIZATION_CONFIG_KEYS = QUANTIZER_ATTRIBUTES + (
    "kernel_scale", "kernel_scale_initializer", "pad_values", "normalize_inputs", "symmetric_padding")


def quantized_layers(model):
    """The quantized layers of `model`, nested models included, in graph order."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, _QuantizedLayer)]


def layer_quantizers(layer):
    """{attribute: quantizer} of the quantizers `layer` has set (any layer: {} if none)."""
    found = {}
    for attr in QUANTIZER_ATTRIBUTES:
        quantizer = getattr(layer, attr, None)
        if quantizer is not None:
            found[attr] = quantizer
    return found
