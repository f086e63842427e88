"""Binarizers for Keras 3: each a small serializable layer with a custom gradient.

Every quantizer here is written once with `keras.ops` and runs on the TensorFlow,
JAX and torch backends. The forward of each binarizer is `sign(sign(x) + 0.1)`:
it maps 0 to +1, and on the TensorFlow backend it is the exact pattern that Larq
Compute Engine's converter fuses into a binary convolution (a plain `sign` is not).

Quantizers are `keras.layers.Layer`s (as in Larq) so that a layer owning one tracks
any state it holds, e.g. an annealed parameter updated by a callback.

Every quantizer is a forward/backward pair in the ProxConnect++ frame
(`ForwardBackwardQuantizer`), so BiPer and the PC++ family share one harness.
Larq's other quantizers live in `larq_family.py`; aliases and `get` in `__init__.py`.
"""

import math
import numbers
import warnings

import keras
from keras import ops

from biper_keras import _compat

__all__ = [
    "DEFAULT_OMEGA",
    "Quantizer",
    "BiPer",
    "SteSign",
    "ApproxSign",
    "binary_sign",
    "with_gradient",
    "ste_gradient",
    "sign_swish",
    "sign_swish_derivative",
    "ForwardBackwardQuantizer",
    "BinaryConnect",
    "BNN",
    "BNNPlus",
    "BNNPlusPlus",
    "check_positive_number",
]

# BiPer's frequency omega_0 in the authors' published scripts (CIFAR-10 and ImageNet):
# the one default every other place (recipe, CLI) takes.
DEFAULT_OMEGA = 20.0

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


def ste_gradient(x, clip_value):
    """The straight-through gradient: 1 where |x| <= clip_value (bounds included, as
    Larq; JAX's gradient of `ops.clip` passes only half at the bounds), else 0; 1
    everywhere for `clip_value=None`."""
    if clip_value is None:
        return ops.ones_like(x)
    return ops.cast(ops.less_equal(ops.abs(x), clip_value), x.dtype)


def sign_swish(x, beta):
    """Sign-Swish SS_b(x) = 2*sigmoid(b*x)*(1 + b*x*(1 - sigmoid(b*x))) - 1, a smooth
    sign: it tends to sign(x) as b grows (Darabi et al., BNN+)."""
    bx = beta * x
    s = ops.sigmoid(bx)
    return 2.0 * s * (1.0 + bx * (1.0 - s)) - 1.0


def sign_swish_derivative(x, beta):
    """dSS_b/dx = b*(2 - b*x*tanh(b*x/2)) / (1 + cosh(b*x)); 0 where cosh overflows."""
    bx = beta * x
    return beta * (2.0 - bx * ops.tanh(0.5 * bx)) / (1.0 + ops.cosh(bx))


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


# The largest BiPer frequency: 2**24. float32 has a 24-bit significand, so from
# |omega * w| = 2**24 on, consecutive float32 products are 2 apart (a third of sin's
# period 2*pi): sign(sin(omega * w)) no longer follows w but the product's rounding, for
# any weight |w| >= 1. Below the bound, omega * w overflows float32 (3.4e38, where sin
# gives NaN) only for |w| > 3.4e38 / 2**24 = 2.0e31, far beyond any trained weight, so the
# forward pass is exactly +/-1 without a guard in it.
MAX_OMEGA = 2.0**24


def check_omega(value):
    """BiPer's `omega`: a finite number in (0, MAX_OMEGA]; ValueError naming it otherwise."""
    omega = check_positive_number("omega", value)
    if omega > MAX_OMEGA:
        raise ValueError(
            f"Argument `omega` must be at most 2**24 = {MAX_OMEGA:.0f}: past it float32 cannot resolve "
            "sin(omega * w) (products 2 apart, a third of its period, for |w| >= 1) and omega * w "
            f"overflows to inf (sin: NaN, not +/-1) for |w| > {3.4028234663852886e38 / omega:.1e}. "
            f"Received: omega={value!r}."
        )
    return omega


_TRAINING_METRICS = ("flip_ratio",)


def check_metrics(metrics):
    """Larq's quantizer `metrics` argument: None or a list of known metric names."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise ValueError(
            f"Argument `metrics` must be a list of metric names ({', '.join(_TRAINING_METRICS)}). "
            f"Received: metrics={metrics!r}."
        )
    for m in metrics:
        if m not in _TRAINING_METRICS:
            raise ValueError(
                f"Unknown training metric {m!r} in `metrics`. Available metrics: "
                f"{', '.join(_TRAINING_METRICS)}."
            )
    return list(metrics)


def _stateless():
    """True while Keras traces shapes or runs a stateless (JAX) step: variable updates
    there are either impossible (tracers) or dropped."""
    return _compat.in_stateless_or_symbolic_scope()


class Quantizer(keras.layers.Layer):
    """Base class: a layer mapping a tensor to its quantized value.

    Subclasses implement `quantize_tensor(x)`, a tensor in, a tensor out (not
    `quantize`: Keras layers already use that name for int8 quantization).
    `precision` is the number of bits of the output (1 for binarizers, 32 for a
    real-valued forward).

    The output keeps the input's dtype (a float64 tensor quantizes to float64), as in
    Larq. `metrics=["flip_ratio"]` (Larq's argument) attaches a `FlipRatio` metric fed
    with every quantized output; Keras reports it in `fit`'s logs on the TensorFlow and
    torch backends (JAX's stateless train step drops metric updates made inside a layer:
    there a warning says so).

    Args:
        metrics: None or a list of training metric names (`"flip_ratio"`).
    """

    precision = 1
    # Whether the gradient vanishes for large |x|, so that latent weights can drift
    # where they never get a gradient again (layers warn without a kernel_constraint).
    starves_latent_weights = True

    def __init__(self, metrics=None, **kwargs):
        super().__init__(**kwargs)
        # Keras would cast floating inputs to the layer's float32 compute dtype.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._custom_metrics = check_metrics(metrics)
        if self._custom_metrics and keras.backend.backend() == "jax":
            warnings.warn(
                f"Quantizer {self.name!r}: metrics={self._custom_metrics} are updated in eager "
                "calls only on the JAX backend; JAX's stateless train step (model.fit) drops "
                "updates made inside a layer, so fit's logs would show 0. Use the TensorFlow "
                "or torch backend to follow them during training.",
                stacklevel=3,
            )
        self.flip_ratio = None
        self.built = True

    def _track_flips(self, outputs):
        if self.flip_ratio is None:
            from biper_keras.metrics import FlipRatio

            self.flip_ratio = FlipRatio(name=f"flip_ratio/{self.name}")
            self.flip_ratio.build(outputs.shape)
        if not isinstance(outputs, keras.KerasTensor) and not _stateless():
            self.flip_ratio.update_state(ops.stop_gradient(outputs))

    def call(self, inputs):
        if isinstance(inputs, keras.Variable):
            # A custom gradient needs a tensor read from the variable: torch's autograd
            # does not track the Keras variable itself, and TF would ask the gradient
            # function for `variables=` in eager mode.
            inputs = ops.copy(inputs)
        elif not ops.is_tensor(inputs) and not isinstance(inputs, keras.KerasTensor):
            inputs = ops.convert_to_tensor(inputs)
            if not keras.backend.is_float_dtype(inputs.dtype):
                inputs = ops.cast(inputs, keras.backend.floatx())
        outputs = self.quantize_tensor(inputs)
        if "flip_ratio" in self._custom_metrics:
            self._track_flips(outputs)
        return outputs

    def quantize_tensor(self, x):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        if self._custom_metrics:
            config["metrics"] = list(self._custom_metrics)
        return config


class ForwardBackwardQuantizer(Quantizer):
    r"""A forward quantizer F and a backward quantizer B, as in ProxConnect++ (Lu et al.,
    NeurIPS 2023): the network computes with `F(x)`, the gradient is taken through B,

        q(x) = F(x),    dq/dx := B'(x).

    Subclasses implement `forward_value(x, mu)` (F) and `backward_gradient(x, mu)` (B',
    the derivative of the backward quantizer); not `forward`/`backward`, which torch
    modules (Keras layers on the torch backend) already use. `mu` is an optional parameter held in a non-trainable
    Keras variable, so that a callback (`biper_keras.training.MuSchedule`) can anneal
    it during training on every backend; it is None for members without one.

    Args:
        mu: initial value of the annealed parameter (a finite number > 0), or None.
    """

    # True when F(c * x) = F(x) for every c > 0 (a sign): a layer may then leave a
    # positive per-sample scale of the input out of the forward pass and apply it in
    # the gradient only (`QuantConv2D(normalize_inputs=True)`).
    scale_invariant = False

    def __init__(self, mu=None, **kwargs):
        super().__init__(**kwargs)
        self.mu = None
        if mu is not None:
            self.mu = self.add_weight(
                name="mu",
                shape=(),
                initializer=keras.initializers.Constant(check_positive_number("mu", mu)),
                trainable=False,
            )

    def forward_value(self, x, mu):
        raise NotImplementedError

    def backward_gradient(self, x, mu):
        raise NotImplementedError

    def mu_value(self, x):
        """mu as a tensor of x's dtype, or None: read once, outside a custom gradient,
        which then closes over a tensor."""
        return None if self.mu is None else ops.cast(ops.copy(self.mu), x.dtype)

    def quantize_tensor(self, x):
        mu = self.mu_value(x)
        return with_gradient(lambda v: self.forward_value(v, mu), lambda v: self.backward_gradient(v, mu))(x)

    def get_config(self):
        config = super().get_config()
        if self.mu is not None:
            config["mu"] = float(ops.convert_to_numpy(self.mu))
        return config


@keras.saving.register_keras_serializable(package="biper_keras")
class BiPer(ForwardBackwardQuantizer):
    r"""BiPer: binary periodic weights (Vargas et al., CVPR 2024).

    Forward, `binarize=True` (stage 2): `q(w) = sign(sin(omega * w))`, sign(0) = +1.
    Backward: the square wave is replaced by the sine it binarizes,

        dq/dw := omega * cos(omega * w).

    Forward, `binarize=False` (stage 1): `q(w) = sin(omega * w)`, with its true
    derivative `omega * cos(omega * w)`, so the network trains with real sine weights.

    The frequency `omega` (the paper's omega_0) sets the quantization error: for
    Laplace(0, b) weights it depends on `b * omega` only (see `biper_keras.analysis`).

    Args:
        omega: frequency, a finite number in (0, 2**24] (paper: 20; see `MAX_OMEGA`).
        binarize: True for the square wave (stage 2), False for the sine (stage 1).
    """

    # omega * cos(omega * w) is periodic: no weight is ever out of the gradient's reach.
    starves_latent_weights = False

    def __init__(self, omega=DEFAULT_OMEGA, binarize=True, **kwargs):
        super().__init__(**kwargs)
        self.omega = check_omega(omega)
        if not isinstance(binarize, bool):
            raise ValueError(
                f"Argument `binarize` must be True or False. Received: binarize={binarize!r}."
            )
        self.binarize = binarize
        self.precision = 1 if binarize else 32

    def forward_value(self, w, mu):
        s = ops.sin(self.omega * w)
        return binary_sign(s) if self.binarize else s

    def backward_gradient(self, w, mu):
        return self.omega * ops.cos(self.omega * w)

    def get_config(self):
        return {**super().get_config(), "omega": self.omega, "binarize": self.binarize}


class _Sign(ForwardBackwardQuantizer):
    """Forward: sign(x) with sign(0) = +1, the LCE-fusable form."""

    scale_invariant = True

    def forward_value(self, x, mu):
        return binary_sign(x)


@keras.saving.register_keras_serializable(package="biper_keras")
class SteSign(_Sign):
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

    def backward_gradient(self, x, mu):
        return ste_gradient(x, self.clip_value)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package="biper_keras")
class ApproxSign(_Sign):
    r"""Sign with Bi-Real Net's piecewise-polynomial gradient (Liu et al., 2018).

    Forward: `q(x) = sign(x)`, sign(0) = +1.
    Backward: `dq/dx := max(0, 2 - 2|x|)`, the derivative of the approximation
    `2x + x|x|` (|x| <= 1) of the sign.
    """

    def backward_gradient(self, x, mu):
        return ops.maximum(2.0 - 2.0 * ops.abs(x), 0.0)


# --- ProxConnect++ (Lu, Yu, Li, Partovi Nia, NeurIPS 2023) ---------------------------


@keras.saving.register_keras_serializable(package="biper_keras")
class BinaryConnect(_Sign):
    r"""BC (Courbariaux et al., 2015) in PC++ form: F = sign, B = identity.

    Forward `sign(x)`; backward `dq/dx := 1` everywhere (no clipping).
    """

    starves_latent_weights = False

    def backward_gradient(self, x, mu):
        return ops.ones_like(x)


@keras.saving.register_keras_serializable(package="biper_keras")
class BNN(_Sign):
    r"""BNN (Hubara et al., 2016) in PC++ form: F = sign, B = clip(x, -1, 1).

    Forward `sign(x)`; backward `dq/dx := 1 if |x| <= 1 else 0`.
    """

    def backward_gradient(self, x, mu):
        return ste_gradient(x, 1.0)


@keras.saving.register_keras_serializable(package="biper_keras")
class BNNPlus(_Sign):
    r"""BNN+ (Darabi et al., 2018) in PC++ form: F = sign, B = sign-Swish SS_mu.

    Forward `sign(x)`; backward the derivative of the sign-Swish,

        SS_mu(x)  = 2 sigma(mu x) [1 + mu x (1 - sigma(mu x))] - 1,
        SS_mu'(x) = mu [2 - mu x tanh(mu x / 2)] / [1 + cosh(mu x)].

    Args:
        mu: the sign-Swish sharpness beta (a finite number > 0), annealable.
    """

    def __init__(self, mu=5.0, **kwargs):
        super().__init__(mu=mu, **kwargs)

    def backward_gradient(self, x, mu):
        return sign_swish_derivative(x, mu)


@keras.saving.register_keras_serializable(package="biper_keras")
class BNNPlusPlus(ForwardBackwardQuantizer):
    r"""BNN++ (Lu et al., 2023): F = B = sign-Swish SS_mu, mu annealed upward.

    Forward `SS_mu(x)` (a smooth sign, see `BNNPlus`), backward its derivative
    `SS_mu'(x)`. As mu grows, SS_mu tends to sign; at the end of training the weights
    are hard-binarized (`hard=True`, or `biper_keras.training.harden(model)`): the
    forward becomes `sign(x)` exactly, so the deployed network is binary and fuses to
    LCE's binary convolution.

    Args:
        mu: initial sharpness (a finite number > 0), annealed by `MuSchedule`.
        hard: if True the forward is `sign(x)` (gradient still SS_mu').
    """

    def __init__(self, mu=1.0, hard=False, **kwargs):
        super().__init__(mu=mu, **kwargs)
        if not isinstance(hard, bool):
            raise ValueError(f"Argument `hard` must be True or False. Received: hard={hard!r}.")
        self.hard = hard
        self.precision = 1 if hard else 32
        self.scale_invariant = hard

    def forward_value(self, x, mu):
        return binary_sign(x) if self.hard else sign_swish(x, mu)

    def backward_gradient(self, x, mu):
        return sign_swish_derivative(x, mu)

    def get_config(self):
        return {**super().get_config(), "hard": self.hard}
