"""Binarizers for Keras 3: each a small serializable layer with a custom gradient.

Every quantizer here is written once with `keras.ops` and runs on the TensorFlow,
JAX and torch backends. The forward of each binarizer is `sign(sign(x) + 0.1)`:
it maps 0 to +1, and on the TensorFlow backend it is the exact pattern that Larq
Compute Engine's converter fuses into a binary convolution (a plain `sign` is not).

Quantizers are `keras.layers.Layer`s (as in Larq) so that a layer owning one tracks
any state it holds, e.g. an annealed parameter updated by a callback.

Look-ups go through `get`, which accepts an alias (`"biper"`, `"ste_sign"`,
`"approx_sign"`), a class name, a serialized config dict, an instance or a callable.
"""

import math
import numbers

import keras
from keras import ops

__all__ = [
    "Quantizer",
    "BiPer",
    "SteSign",
    "ApproxSign",
    "binary_sign",
    "with_gradient",
    "biper",
    "ste_sign",
    "approx_sign",
    "get",
    "serialize",
    "deserialize",
    "register",
    "ALIASES",
]

# Added to sign(x) before the outer sign so that sign(0) becomes +1; any constant in
# (0, 1) works and LCE matches the pattern for any such constant.
_ZERO_TO_PLUS_ONE = 0.1


def binary_sign(x):
    """`sign(x)` with `sign(0) = +1`, in the form LCE fuses: `sign(sign(x) + 0.1)`."""
    return ops.sign(ops.sign(x) + _ZERO_TO_PLUS_ONE)


def with_gradient(forward, derivative):
    """Returns `f` with `f(x) = forward(x)` and `df/dx := derivative(x)` (elementwise).

    The gradient function takes `upstream` by keyword as well as positionally, since
    the torch backend passes it as `upstream=` and TF/JAX positionally.
    """

    @ops.custom_gradient
    def f(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream * derivative(x)

        return forward(x), grad

    return f


# The math, as functions of tensors (the classes below hold their parameters).


def biper(w, omega=20.0, binarize=True):
    """`sign(sin(omega*w))` with gradient `omega*cos(omega*w)`; `sin(omega*w)` if not
    `binarize`. See `BiPer`."""
    if not binarize:
        return ops.sin(omega * w)
    return with_gradient(
        lambda v: binary_sign(ops.sin(omega * v)),
        lambda v: omega * ops.cos(omega * v),
    )(w)


def ste_sign(x, clip_value=1.0):
    """`sign(x)` with gradient 1 where `|x| <= clip_value` (everywhere if None)."""
    if clip_value is None:
        return with_gradient(binary_sign, ops.ones_like)(x)
    return with_gradient(
        binary_sign,
        lambda v: ops.cast(ops.less_equal(ops.abs(v), clip_value), v.dtype),
    )(x)


def approx_sign(x):
    """`sign(x)` with Bi-Real's gradient `max(0, 2 - 2|x|)`."""
    return with_gradient(binary_sign, lambda v: ops.maximum(2.0 - 2.0 * ops.abs(v), 0.0))(x)


def check_positive_number(name, value):
    """Raises a ValueError naming `name` unless `value` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"Argument `{name}` must be a finite number > 0. "
            f"Received: {name}={value!r} (type {type(value).__name__})."
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a finite number > 0. Received: {name}={value!r}."
        )
    return float(value)


class Quantizer(keras.layers.Layer):
    """Base class: a stateless-by-default layer mapping a tensor to its quantized value.

    Subclasses implement `quantize_tensor(x)`, a tensor in, a tensor out (not
    `quantize`: Keras layers already use that name for int8 quantization).
    `precision` is the number of bits of the output (1 for binarizers, 32 for a
    real-valued forward).
    """

    precision = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True

    def call(self, inputs):
        if isinstance(inputs, keras.Variable):
            # A custom gradient needs a tensor read from the variable: torch's autograd
            # does not track the Keras variable itself, and TF would ask the gradient
            # function for `variables=` in eager mode.
            inputs = ops.copy(inputs)
        return self.quantize_tensor(inputs)

    def quantize_tensor(self, x):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="biper_keras")
class BiPer(Quantizer):
    r"""BiPer: binary periodic weights (Vargas et al., CVPR 2024).

    Forward, `binarize=True` (stage 2): `q(w) = sign(sin(omega * w))`, sign(0) = +1.
    Backward: the square wave is replaced by the sine it binarizes,

        dq/dw := omega * cos(omega * w).

    Forward, `binarize=False` (stage 1): `q(w) = sin(omega * w)`, with its true
    derivative `omega * cos(omega * w)`, so the network trains with real sine weights.

    The frequency `omega` (the paper's omega_0) sets the quantization error: for
    Laplace(0, b) weights it depends on `b * omega` only (see `biper_keras.analysis`).

    Args:
        omega: frequency, a finite number > 0 (paper: 20).
        binarize: True for the square wave (stage 2), False for the sine (stage 1).
    """

    def __init__(self, omega=20.0, binarize=True, **kwargs):
        super().__init__(**kwargs)
        self.omega = check_positive_number("omega", omega)
        if not isinstance(binarize, bool):
            raise ValueError(
                f"Argument `binarize` must be True or False. Received: binarize={binarize!r}."
            )
        self.binarize = binarize
        self.precision = 1 if binarize else 32

    def quantize_tensor(self, x):
        return biper(x, self.omega, self.binarize)

    def get_config(self):
        return {**super().get_config(), "omega": self.omega, "binarize": self.binarize}


@keras.saving.register_keras_serializable(package="biper_keras")
class SteSign(Quantizer):
    r"""Sign with the straight-through estimator (Courbariaux/Hubara et al., 2016).

    Forward: `q(x) = sign(x)`, sign(0) = +1.
    Backward: `dq/dx := 1 if |x| <= clip_value else 0`; with `clip_value=None` the
    gradient is the identity everywhere.

    Args:
        clip_value: gradient cut-off, a finite number > 0, or None for no clipping.
    """

    def __init__(self, clip_value=1.0, **kwargs):
        super().__init__(**kwargs)
        if clip_value is not None:
            clip_value = check_positive_number("clip_value", clip_value)
        self.clip_value = clip_value

    def quantize_tensor(self, x):
        return ste_sign(x, self.clip_value)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package="biper_keras")
class ApproxSign(Quantizer):
    r"""Sign with Bi-Real Net's piecewise-polynomial gradient (Liu et al., 2018).

    Forward: `q(x) = sign(x)`, sign(0) = +1.
    Backward: `dq/dx := max(0, 2 - 2|x|)`, the derivative of the approximation
    `2x + x|x|` (|x| <= 1) of the sign.
    """

    def quantize_tensor(self, x):
        return approx_sign(x)


# Aliases, larq style. Class names (e.g. "BiPer") are accepted too.
ALIASES = {
    "biper": BiPer,
    "ste_sign": SteSign,
    "approx_sign": ApproxSign,
}


def register(alias, cls):
    """Makes `get(alias)` return `cls()`. `cls` must be a Keras-serializable Quantizer."""
    if not (isinstance(cls, type) and issubclass(cls, Quantizer)):
        raise TypeError(f"`cls` must be a Quantizer subclass. Received: {cls!r}.")
    ALIASES[alias] = cls
    return cls


def _known_names():
    return sorted(set(ALIASES) | {c.__name__ for c in ALIASES.values()})


def serialize(quantizer):
    return keras.saving.serialize_keras_object(quantizer)


def deserialize(config, custom_objects=None):
    objects = {c.__name__: c for c in ALIASES.values()}
    objects.update(ALIASES)
    objects.update(custom_objects or {})
    return keras.saving.deserialize_keras_object(config, custom_objects=objects)


def get(identifier):
    """Returns a quantizer for `identifier`.

    Args:
        identifier: None; an alias (`"biper"`, `"ste_sign"`, `"approx_sign"`, or any
            added with `register`) or class name; a dict from `serialize`; a
            `Quantizer` instance; or any callable tensor -> tensor.

    Raises:
        ValueError: for an unknown name, naming the known ones.
    """
    if identifier is None or isinstance(identifier, Quantizer):
        return identifier
    if isinstance(identifier, str):
        by_class_name = {c.__name__: c for c in ALIASES.values()}
        cls = ALIASES.get(identifier) or by_class_name.get(identifier)
        if cls is None:
            raise ValueError(
                f"Unknown quantizer {identifier!r}. Known quantizers: "
                f"{', '.join(_known_names())}."
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        "Could not interpret quantizer identifier: expected None, a name, a config "
        f"dict, a Quantizer or a callable. Received: {identifier!r}."
    )
