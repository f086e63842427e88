"""Larq's remaining quantizers, computing what `larq.quantizers` computes (forward and
gradient), in the forward/backward frame of `core.py`, on every Keras 3 backend.

Clipped straight-through gradients are written as masks (`ste_gradient`), never as the
gradient of `ops.clip`: JAX passes half the gradient at exactly the clip bounds, Larq
(TensorFlow) all of it.
"""

import numbers

import keras
from keras import ops

from biper_keras.quantizers.core import (
    ForwardBackwardQuantizer,
    _Sign,
    binary_sign,
    check_positive_number,
    sign_swish_derivative,
    ste_gradient,
)

__all__ = [
    "SwishSign",
    "MagnitudeAwareSign",
    "SteHeaviside",
    "SteTern",
    "DoReFa",
    "DoReFaQuantizer",
    "NoOp",
    "NoOpQuantizer",
]


def _check_clip_value(clip_value):
    return None if clip_value is None else check_positive_number("clip_value", clip_value)


class _ClippedSte(ForwardBackwardQuantizer):
    """Backward: the straight-through gradient, 1 where |x| <= clip_value."""

    def __init__(self, clip_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.clip_value = _check_clip_value(clip_value)

    def backward_gradient(self, x, mu):
        return ste_gradient(x, self.clip_value)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package="biper_keras")
class SwishSign(_Sign):
    r"""Sign with the SignSwish gradient (Darabi et al., BNN+), Larq's `swish_sign`.

    Forward `sign(x)` (sign(0) = +1); backward
    `dq/dx := beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))`.
    (`BNNPlus` is the same estimator with an annealable beta.)

    Args:
        beta: sharpness, a finite number > 0 (Larq's default 5).
    """

    def __init__(self, beta=5.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = check_positive_number("beta", beta)

    def backward_gradient(self, x, mu):
        return sign_swish_derivative(x, self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


def _channel_mean_abs(x):
    """mean |x| over every axis but the last (one value per output channel), held
    constant in the backward pass as Larq does."""
    axes = tuple(range(len(x.shape) - 1))
    return ops.stop_gradient(ops.mean(ops.abs(x), axis=axes) if axes else ops.abs(x))


@keras.saving.register_keras_serializable(package="biper_keras")
class MagnitudeAwareSign(_ClippedSte):
    r"""Bi-Real Net's magnitude-aware sign (Liu et al., 2018, Sec. 3.3), Larq's
    `magnitude_aware_sign`.

    Forward `s * sign(x)` with `s` the mean |x| per last-axis channel; backward
    `s * 1{|x| <= clip_value}` (the scale is a constant for the gradient).
    On the kernel of a conv or dense layer the last axis is the output channel.

    Args:
        clip_value: gradient cut-off (> 0), or None for no clipping.
    """

    def forward_value(self, x, mu):
        return _channel_mean_abs(x) * binary_sign(x)

    def backward_gradient(self, x, mu):
        return _channel_mean_abs(x) * ste_gradient(x, self.clip_value)


@keras.saving.register_keras_serializable(package="biper_keras")
class SteHeaviside(_ClippedSte):
    r"""Heaviside step with the straight-through gradient, Larq's `ste_heaviside`.

    Forward `1 if x > 0 else 0`; backward `1{|x| <= clip_value}`.

    Args:
        clip_value: gradient cut-off (> 0), or None for no clipping.
    """

    scale_invariant = True

    def forward_value(self, x, mu):
        return ops.sign(ops.relu(x))


@keras.saving.register_keras_serializable(package="biper_keras")
class SteTern(_ClippedSte):
    r"""Ternarization with the straight-through gradient, Larq's `ste_tern`.

    Forward `+1 if x > t, 0 if |x| < t, -1 if x < -t` (computed as Larq does,
    `sign(sign(x + t) + sign(x - t))`, so +-t maps to +-1); backward
    `1{|x| <= clip_value}`. The threshold t is `threshold_value`, or with
    `ternary_weight_networks=True` the Ternary Weight Networks rule `0.7 * mean |x|`
    over the whole tensor (Li et al., 2016).

    Args:
        threshold_value: the fixed threshold t (Larq's default 0.05).
        ternary_weight_networks: compute t from the tensor instead.
        clip_value: gradient cut-off (> 0), or None for no clipping.
    """

    precision = 2

    def __init__(self, threshold_value=0.05, ternary_weight_networks=False, clip_value=1.0, **kwargs):
        super().__init__(clip_value=clip_value, **kwargs)
        self.threshold_value = check_positive_number("threshold_value", threshold_value)
        if not isinstance(ternary_weight_networks, bool):
            raise ValueError(
                "Argument `ternary_weight_networks` must be True or False. "
                f"Received: ternary_weight_networks={ternary_weight_networks!r}."
            )
        self.ternary_weight_networks = ternary_weight_networks

    def forward_value(self, x, mu):
        if self.ternary_weight_networks:
            t = ops.stop_gradient(0.7 * ops.mean(ops.abs(x)))
        else:
            t = self.threshold_value
        return ops.sign(ops.sign(x + t) + ops.sign(x - t))

    def get_config(self):
        return {
            **super().get_config(),
            "threshold_value": self.threshold_value,
            "ternary_weight_networks": self.ternary_weight_networks,
        }


_DOREFA_MODES = ("activations", "weights")


@keras.saving.register_keras_serializable(package="biper_keras")
class DoReFa(ForwardBackwardQuantizer):
    r"""k-bit quantizer of DoReFa-Net (Zhou et al., 2016), Larq's `dorefa_quantizer`.

    With n = 2^k - 1 and `quantize_k(y) = round(n y) / n`:

    - `mode="activations"`: `q(x) = quantize_k(clip(x, 0, 1))`, gradient
      `1{0 <= x <= 1}`;
    - `mode="weights"`: `q(w) = 2 quantize_k(tanh(w) / (2 m) + 1/2) - 1` with
      `m = max |tanh(w)|` over the tensor (a constant for the gradient), gradient
      `(1 - tanh(w)^2) / m` (0 for an all-zero tensor).

    Rounding is half-to-even on every backend, as `tf.round`.

    Args:
        k_bit: number of bits, an integer >= 1 (Larq's default 2).
        mode: "activations" or "weights".
    """

    def __init__(self, k_bit=2, mode="activations", **kwargs):
        super().__init__(**kwargs)
        if isinstance(k_bit, bool) or not isinstance(k_bit, numbers.Integral) or k_bit < 1:
            raise ValueError(f"Argument `k_bit` must be an integer >= 1. Received: k_bit={k_bit!r}.")
        if mode not in _DOREFA_MODES:
            raise ValueError(
                f"Argument `mode` must be 'activations' or 'weights'. Received: mode={mode!r}."
            )
        self.precision = int(k_bit)
        self.mode = mode

    def _levels(self):
        return float(2**self.precision - 1)

    @staticmethod
    def _tanh_and_max(w):
        limited = ops.tanh(w)
        return limited, ops.stop_gradient(ops.max(ops.abs(limited)))

    def forward_value(self, x, mu):
        n = self._levels()
        if self.mode == "activations":
            return ops.round(ops.clip(x, 0.0, 1.0) * n) / n
        limited, m = self._tanh_and_max(x)
        # Larq's divide_no_nan: an all-zero tensor maps to 0.5, then to 0.
        y = ops.where(m > 0, limited / (2.0 * ops.where(m > 0, m, 1.0)), 0.0) + 0.5
        return 2.0 * (ops.round(y * n) / n) - 1.0

    def backward_gradient(self, x, mu):
        if self.mode == "activations":
            inside = ops.logical_and(ops.greater_equal(x, 0.0), ops.less_equal(x, 1.0))
            return ops.cast(inside, x.dtype)
        limited, m = self._tanh_and_max(x)
        return ops.where(m > 0, (1.0 - ops.square(limited)) / ops.where(m > 0, m, 1.0), 0.0)

    def get_config(self):
        return {**super().get_config(), "k_bit": self.precision, "mode": self.mode}


@keras.saving.register_keras_serializable(package="biper_keras")
class NoOp(ForwardBackwardQuantizer):
    r"""Identity quantizer that only tags a precision (Larq's `NoOp`): `q(x) = x`,
    gradient 1. Used to mark weights as binary for `summary`, optimizers such as
    `Bop`, and `metrics=["flip_ratio"]`.

    Args:
        precision: the number of bits the tagged values have.
    """

    precision = None

    def __init__(self, precision, **kwargs):
        super().__init__(**kwargs)
        if isinstance(precision, bool) or not isinstance(precision, numbers.Integral) or precision < 1:
            raise ValueError(
                f"Argument `precision` must be an integer >= 1. Received: precision={precision!r}."
            )
        self.precision = int(precision)

    def forward_value(self, x, mu):
        return x

    def backward_gradient(self, x, mu):
        return ops.ones_like(x)

    def get_config(self):
        return {**super().get_config(), "precision": self.precision}


# Larq's backwards-compatible names.
DoReFaQuantizer = DoReFa
NoOpQuantizer = NoOp
