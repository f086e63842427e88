"""QuickNet (Bannink et al., "Larq Compute Engine", MLSys 2021): Larq Zoo's binary
ImageNet network, the model LCE's own benchmarks are built on, in Keras 3.

The layout and widths are Larq Zoo's (`larq_zoo.sota.QuickNet`, v1.0), rebuilt here:

- stem: float 3x3/2 conv (filters/4) -> BN -> ReLU -> float 3x3/2 depthwise conv ->
  BN (no scale/offset) -> float 1x1 conv (filters) -> BN;
- per section, `blocks` residual blocks `x + BN(ReLU(bconv3x3(x)))` (binary input and
  kernel, `SteSign(clip_value=1.25)`, `WeightClip(1.25)`, SAME padding with +1);
- between sections a transition: ReLU -> 2x2/1 max pool -> fixed 3x3/2 blur-pool
  depthwise conv -> float 1x1 conv to the new width -> BN;
- head: ReLU -> global average pool -> float dense -> softmax.

`quicknet` has 4 sections of 4 blocks at widths 64-128-256-512 (13,234,088 parameters,
as Larq Zoo's), `quicknet_small` widths 32-64-256-512, `quicknet_large` 6-8-12-6 blocks.
Every binary conv converts to LCE's `LceBconv2d`. With `kernel_quantizer=None,
input_quantizer=None` the residual convs are float: the float twin.
"""

import keras
import numpy as np

from biper_keras import quantizers as quantizers_lib
from biper_keras.constraints import WeightClip
from biper_keras.layers import BatchNormalization, QuantConv2D
from biper_keras.models.registry import register_model

__all__ = ["quicknet", "quicknet_small", "quicknet_large", "BlurPool"]

# Larq Zoo's QuickNet binarizes inputs and kernels with SteSign(clip_value=1.25) and
# clips latent weights to the same range.
_CLIP = 1.25


@keras.saving.register_keras_serializable(package="biper_keras")
class BlurPool(keras.initializers.Initializer):
    """Depthwise-kernel initializer of anti-aliased pooling (Zhang, ICML 2019): the
    normalized outer product of a binomial filter ([1,1], [1,2,1] or [1,4,6,4,1]), the
    same for every channel. QuickNet's transitions keep it fixed (not trainable)."""

    _TAPS = {2: [1, 1], 3: [1, 2, 1], 5: [1, 4, 6, 4, 1]}

    def __call__(self, shape, dtype=None):
        size, channels = shape[0], shape[2]
        if size not in self._TAPS or shape[1] != size:
            raise ValueError(f"BlurPool needs a square 2x2, 3x3 or 5x5 kernel. Received shape {tuple(shape)}.")
        taps = np.array(self._TAPS[size], dtype="float64")
        kernel = np.outer(taps, taps) / np.sum(taps) ** 2
        kernel = np.broadcast_to(kernel[:, :, None, None], (size, size, channels, shape[3]))
        return keras.ops.convert_to_tensor(np.ascontiguousarray(kernel), dtype=dtype or "float32")

    def get_config(self):
        return {}


def _fresh(quantizer):
    """A quantizer of its own for each layer (a shared instance would tie their state)."""
    if quantizer is None or isinstance(quantizer, str):
        return quantizer
    return quantizers_lib.deserialize(quantizers_lib.serialize(quantizers_lib.get(quantizer)))


def _stem(x, filters):
    x = keras.layers.Conv2D(filters // 4, 3, strides=2, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name="stem_conv")(x)
    x = BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="stem_depthwise")(x)
    x = BatchNormalization(scale=False, center=False, name="stem_depthwise_bn")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal", name="stem_pointwise")(x)
    return BatchNormalization(name="stem_pointwise_bn")(x)


def _transition(x, filters, name):
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.MaxPooling2D(pool_size=2, strides=1, name=f"{name}_pool")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, trainable=False,
                                     depthwise_initializer=BlurPool(), name=f"{name}_blurpool")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="glorot_normal",
                            name=f"{name}_conv")(x)
    return BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)


def _residual(x, name, input_quantizer, kernel_quantizer, kernel_constraint):
    binary = kernel_quantizer is not None or input_quantizer is not None
    conv_args = dict(padding="same", use_bias=False, activation="relu",
                     kernel_initializer="glorot_normal", name=f"{name}_conv")
    if binary:
        y = QuantConv2D(x.shape[-1], 3, pad_values=1.0, input_quantizer=_fresh(input_quantizer),
                        kernel_quantizer=_fresh(kernel_quantizer), kernel_constraint=kernel_constraint,
                        **conv_args)(x)
    else:
        y = keras.layers.Conv2D(x.shape[-1], 3, **conv_args)(x)
    y = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(y)
    return keras.layers.Add(name=f"{name}_add")([y, x])


def _quicknet(section_blocks, section_filters, input_shape, num_classes, include_top,
              input_quantizer, kernel_quantizer, clip_value, name):
    if len(section_blocks) != len(section_filters):
        raise ValueError(
            "`section_blocks` and `section_filters` must have the same length. Received: "
            f"section_blocks={section_blocks!r}, section_filters={section_filters!r}."
        )
    default = quantizers_lib.SteSign(clip_value=_CLIP)
    input_quantizer = default if input_quantizer == "default" else input_quantizer
    kernel_quantizer = default if kernel_quantizer == "default" else kernel_quantizer
    inputs = keras.Input(input_shape, name="image")
    x = _stem(inputs, section_filters[0])
    for section, (blocks, filters) in enumerate(zip(section_blocks, section_filters)):
        for block in range(blocks):
            if filters != x.shape[-1]:
                x = _transition(x, filters, name=f"section{section}_transition")
            constraint = None if clip_value is None else WeightClip(clip_value)
            x = _residual(x, f"section{section}_block{block}", input_quantizer, kernel_quantizer, constraint)
    if include_top:
        x = keras.layers.Activation("relu", name="head_relu")(x)
        # Larq Zoo pools with a full-size average pool (faster than a global pool in LCE).
        if None in x.shape[1:3]:
            x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        else:
            x = keras.layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="head_pool")(x)
            x = keras.layers.Flatten(name="head_flatten")(x)
        x = keras.layers.Dense(num_classes, kernel_initializer="glorot_normal", name="head_dense")(x)
        x = keras.layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
    return keras.Model(inputs, x, name=name)


def _builder(name, section_blocks, section_filters):
    def build(input_shape=(224, 224, 3), num_classes=1000, include_top=True,
              input_quantizer="default", kernel_quantizer="default", clip_value=_CLIP,
              section_blocks=section_blocks, section_filters=section_filters, name=name):
        """Larq Zoo's QuickNet layout (module docstring). `input_quantizer` /
        `kernel_quantizer`: "default" (Larq Zoo's `SteSign(clip_value=1.25)`), any
        quantizer identifier (e.g. "biper"), or None for both: the float twin.
        `clip_value`: the binary kernels' `WeightClip` (None: no constraint)."""
        return _quicknet(tuple(section_blocks), tuple(section_filters), input_shape, num_classes,
                         include_top, input_quantizer, kernel_quantizer, clip_value, name)

    build.__name__ = name
    return register_model(name)(build)


quicknet = _builder("quicknet", (4, 4, 4, 4), (64, 128, 256, 512))
quicknet_small = _builder("quicknet_small", (4, 4, 4, 4), (32, 64, 256, 512))
quicknet_large = _builder("quicknet_large", (6, 8, 12, 6), (64, 128, 256, 512))
