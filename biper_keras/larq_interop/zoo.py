"""Larq Zoo's plain-function quantizers as Keras 3 quantizers, and the registry through
which the bridge maps them: a tf_keras function, by the name it is registered under as a
Keras custom object, <-> the Keras 3 quantizer class that computes the same (forward and
gradient)."""

import keras
from keras import ops

from biper_keras.quantizers import SteSign
from biper_keras.quantizers.core import Quantizer, binary_sign, with_gradient


@keras.saving.register_keras_serializable(package="biper_keras")
class XnorWeightScale(Quantizer):
    r"""Larq Zoo's `xnor_weight_scale` (XNOR-Net's weights, Rastegari et al., 2016):
    `x_c = clip(x, -1, 1)`, `q(x) = mean|x_c| * ste_sign(x_c)`, the mean taken per output
    channel (every axis but the last). As in Larq Zoo the gradient also flows through
    the scale; it is 0 where |x| > 1.
    """

    def quantize_tensor(self, x):
        # Larq Zoo's clip_by_value, whose gradient on TensorFlow is 1 inside the bounds,
        # bounds included (JAX passes half at exactly +-1). A where-based mask would be
        # exact everywhere but keeps the converter from folding the 4096-wide kernels.
        clipped = ops.clip(x, -1.0, 1.0)
        axes = tuple(range(len(x.shape) - 1))
        scale = ops.mean(ops.abs(clipped), axis=axes, keepdims=True)
        return scale * SteSign(clip_value=1.0).quantize_tensor(clipped)


@keras.saving.register_keras_serializable(package="biper_keras")
class MagnitudeAwareSignUnclipped(Quantizer):
    r"""Larq Zoo's `magnitude_aware_sign_unclipped` (DoReFa-Net's weights, Zhou et al.,
    2016): forward `mean|x| * sign(x)` with one scale for the whole tensor, held constant
    for the gradient; backward the identity."""

    starves_latent_weights = False

    def quantize_tensor(self, x):
        scale = ops.stop_gradient(ops.mean(ops.abs(x)))
        return with_gradient(lambda v: scale * binary_sign(v), ops.ones_like)(x)


@keras.saving.register_keras_serializable(package="biper_keras")
def clip_by_value_activation(x):
    """Larq Zoo's `clip_by_value_activation` (DoReFa-Net): `clip(x, 0, 1)`, gradient 1
    inside the bounds, included (TensorFlow's clip_by_value)."""
    inside = ops.logical_and(ops.greater_equal(x, 0.0), ops.less_equal(x, 1.0))
    return ops.where(inside, x, ops.stop_gradient(ops.clip(x, 0.0, 1.0)))


# tf_keras activation name -> (Keras 3 serialized name, Keras 3 function).
FUNCTION_ACTIVATIONS = {
    "clip_by_value_activation": ("biper_keras>clip_by_value_activation", clip_by_value_activation),
}

FUNCTION_QUANTIZERS = {
    "xnor_weight_scale": XnorWeightScale,
    "magnitude_aware_sign_unclipped": MagnitudeAwareSignUnclipped,
}


def activation_from_larq(name):
    """The Keras 3 activation (a name or function) for a tf_keras activation name."""
    return FUNCTION_ACTIVATIONS[name][1] if name in FUNCTION_ACTIVATIONS else name


def activation_to_larq(name):
    back = {keras3: larq for larq, (keras3, _) in FUNCTION_ACTIVATIONS.items()}
    if name in back and _registered(back[name]) is None:
        function_quantizer_to_larq(None, back[name])
    return back.get(name, name)


def _registered(name):
    import tensorflow as tf

    return tf.keras.utils.get_custom_objects().get(name)


def function_quantizer_from_larq(q):
    """The Keras 3 quantizer for the tf_keras function `q`, or None if it is not the
    function registered under a name in FUNCTION_QUANTIZERS."""
    name = getattr(q, "__name__", None)
    if name in FUNCTION_QUANTIZERS and _registered(name) is q:
        return FUNCTION_QUANTIZERS[name]()
    return None


def function_quantizer_to_larq(q, name=None):
    """The tf_keras function for a quantizer of FUNCTION_QUANTIZERS' classes (or the
    one registered as `name`), or None. Larq Zoo registers them when imported; the
    bridge imports it."""
    name = name or next((n for n, cls in FUNCTION_QUANTIZERS.items() if type(q) is cls), None)
    if name is None:
        return None
    if _registered(name) is None:
        try:
            import larq_zoo  # noqa: F401  (registers its functions)
        except ImportError as err:
            raise ValueError(f"{name} is Larq Zoo's, which needs larq_zoo: "
                             f"pip install --no-deps larq-zoo==2.4.0 ({err})") from err
    return _registered(name)
