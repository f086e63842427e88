"""What every quantized layer shares: the forward-pass flag that makes kernels read
quantized (Larq's rule), quantizer and kernel-scale handling, SAME padding with a
constant, and the helpers that find quantized layers in a model.

Lower than every layer module: it imports none of them.
"""

import contextlib
import inspect
import math
import numbers
import warnings

import keras
from keras import ops

from biper_keras import _compat
from biper_keras import constraints as _constraints  # noqa: F401 ("weight_clip" resolves)
from biper_keras import context
from biper_keras import quantizers as quantizers_lib
from biper_keras.regularizers import SinSquared

_KERNEL_SCALES = (None, "channel")


# The layer arguments that are sizes: an integer > 0 (or, for the tuple ones, a tuple
# of them). Keras compares them with 0 before checking their type, so a string such as
# filters="64" surfaced as "'<=' not supported between instances of 'str' and 'int'".
_SIZE_ARGUMENTS = ("filters", "units", "depth_multiplier", "groups")
_SIZE_TUPLE_ARGUMENTS = ("kernel_size", "strides", "dilation_rate")


def check_size_arguments(keras_class, args, kwargs):
    """Raises TypeError naming the argument, the value and what it takes for a size
    argument of `keras_class.__init__` (given positionally or by name) that is not an
    integer > 0 (or a tuple/list of them, for kernel_size, strides, dilation_rate)."""
    try:
        bound = inspect.signature(keras_class.__init__).bind_partial(None, *args, **kwargs).arguments
    except TypeError:
        return  # a wrong call: Python's own message says it
    for name in _SIZE_ARGUMENTS + _SIZE_TUPLE_ARGUMENTS:
        if name not in bound:
            continue
        value = bound[name]
        values = list(value) if name in _SIZE_TUPLE_ARGUMENTS and isinstance(value, (tuple, list)) else [value]
        takes = "an integer > 0" + (" or a tuple of them" if name in _SIZE_TUPLE_ARGUMENTS else "")
        received = f"Received: {name}={value!r}"
        if not values or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise TypeError(f"Argument `{name}` must be {takes}. {received} (type {type(value).__name__}).")
        if min(values) <= 0:
            raise ValueError(f"Argument `{name}` must be {takes}. {received}.")


class _QuantizedLayer:
    """What every quantized layer shares: its size arguments checked first (one place
    for all of them), the forward-pass flag that makes its kernels read quantized, and
    saving the variables themselves."""

    def __init__(self, *args, **kwargs):
        keras_class = next(c for c in type(self).__mro__ if c.__module__.startswith("keras."))
        check_size_arguments(keras_class, args, kwargs)
        super().__init__(*args, **kwargs)

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
                shape=self._kernel_scale_shape(),
                initializer=self.kernel_scale_initializer,
                trainable=True,
                dtype=self.dtype,
            )

    def _kernel_scale_shape(self):
        """The shape of alpha: one scale per output unit (conv and dense: the last axis)."""
        return (self._kernel.shape[-1],)

    def _alpha_for_kernel(self):
        """alpha, shaped to broadcast against the kernel."""
        return self.alpha

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
            kernel = kernel * ops.cast(self._alpha_for_kernel(), kernel.dtype)
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


class _RefusesKerasQuantization:
    """Keras's own post-training quantization (`quantize("int8")`, float8, int4, GPTQ,
    AWQ) and LoRA replace or wrap the `kernel` these layers quantize: refused, with the
    reason, rather than silently quantizing a quantized kernel. `Model.quantize` skips
    a layer whose `quantize` raises NotImplementedError (with a warning)."""

    def _refuse_keras_quantization(self, kwargs):
        if kwargs.get("lora_rank"):
            raise ValueError(
                f"{type(self).__name__} does not support LoRA: its kernel is the latent weight "
                f"of a quantizer. Received: lora_rank={kwargs['lora_rank']!r}."
            )
        if kwargs.get("quantization_config") is not None:
            raise ValueError(
                f"{type(self).__name__} does not support Keras's `quantization_config`: it "
                "quantizes its kernel with `kernel_quantizer`. Received: "
                f"quantization_config={kwargs['quantization_config']!r}."
            )

    def _check_not_keras_quantized(self):
        if self.quantization_mode is not None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' cannot use Keras's quantized dtype policy "
                f"{self.dtype_policy.name!r}: it quantizes its kernel with `kernel_quantizer`."
            )

    def quantize(self, mode=None, type_check=True, config=None):
        raise NotImplementedError(
            f"{type(self).__name__} '{self.name}' already quantizes its kernel with "
            f"`kernel_quantizer`; Keras's `quantize({mode!r})` is not supported on it. "
            "For int8 weight storage convert it (biper_keras.convert)."
        )

    def enable_lora(self, rank, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} '{self.name}' does not support LoRA: its kernel is the "
            f"latent weight of a quantizer. Received: rank={rank!r}."
        )


def _is_binary(quantizer):
    return quantizer is not None and getattr(quantizer, "precision", 32) == 1


def lowers_to_conv(layer, training):
    """Whether `layer`'s call runs its projection as LCE's fusable 1x1 convolution:
    TensorFlow backend, inference, a binary input quantizer."""
    return (
        keras.backend.backend() == "tensorflow"
        and not training
        and _is_binary(layer.input_quantizer)
    )


def runs_as_tokenwise_conv(layer):
    """Whether the built `layer` (a QuantDense or QuantEinsumDense) computes, in its
    TensorFlow inference graph, the 1x1 convolution over tokens that LCE fuses into
    `LceBconv2d` when its kernel is binary too: a binary input quantizer, a token-wise
    projection, one or two position axes of static size (see `tokenwise_conv`)."""
    shape = _compat.built_input_shape(layer)
    if not layer.built or shape is None or not _is_binary(getattr(layer, "input_quantizer", None)):
        return False
    if getattr(layer, "_contracted", None) is not None:  # QuantEinsumDense
        if not layer._tokenwise:
            return False
        contracted = len(layer._contracted)
    elif isinstance(layer, keras.layers.Dense):
        contracted = 1
    else:
        return False
    positions = tuple(shape)[1:len(shape) - contracted]
    return len(positions) in (1, 2) and None not in positions


def tokenwise_conv(inputs, kernel, contracted, input_quantizer=None, bias=None):
    """A token-wise projection as the 1x1 convolution LCE fuses into `LceBconv2d`.

    `inputs` has shape (batch, *positions, *contracted), `kernel` (*contracted, *units):
    the result is `tensordot(inputs, kernel, len(contracted))`, of shape
    (batch, *positions, *units), computed as a VALID 1x1 `conv2d` over the positions as
    pixels ((batch, 1, N, C) for one position axis, (batch, H, W, C) for two). The input
    quantizer runs on the conv's own input, so that the binarizer feeds the convolution
    directly, the pattern LCE matches. Returns None when the shapes do not fit (more
    than two position axes, or a non-static position size).
    """
    positions = tuple(inputs.shape[1:len(inputs.shape) - len(contracted)])
    if len(positions) not in (1, 2) or any(d is None for d in positions):
        return None
    channels = math.prod(contracted)
    units = tuple(kernel.shape[len(contracted):])
    pixels = (1,) + positions if len(positions) == 1 else positions
    x = ops.reshape(inputs, (-1, *pixels, channels))
    if input_quantizer is not None:
        x = input_quantizer(x)
    w = ops.reshape(kernel, (1, 1, channels, math.prod(units)))
    y = ops.conv(x, w, strides=1, padding="valid", data_format="channels_last")
    if bias is not None:
        y = ops.add(y, ops.reshape(bias, (-1,)))
    return ops.reshape(y, (-1, *positions, *units))


def full_precision(value):
    """`value` (a variable, or a tensor read from one) as a tensor in the variable's own
    dtype: inside a layer's `call` under a mixed dtype policy Keras would autocast it to
    the compute dtype. Returns other tensors as they are."""
    if isinstance(value, keras.Variable):
        with _compat.no_autocast():
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


QUANTIZER_ATTRIBUTES = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")
# What the quantized layers add to their float Keras layer's config (float_twin drops
# these; a test checks the list against every layer's config).
QUANTIZATION_CONFIG_KEYS = QUANTIZER_ATTRIBUTES + (
    "kernel_scale", "kernel_scale_initializer", "pad_values", "normalize_inputs", "symmetric_padding")


def quantized_layers(model):
    """The quantized layers of `model`, nested models included, in graph order."""
    return [layer for layer in _compat.flatten_layers(model) if isinstance(layer, _QuantizedLayer)]


def layer_quantizers(layer):
    """{attribute: quantizer} of the quantizers `layer` has set (any layer: {} if none)."""
    found = {}
    for attr in QUANTIZER_ATTRIBUTES:
        quantizer = getattr(layer, attr, None)
        if quantizer is not None:
            found[attr] = quantizer
    return found
