"""ResNets for CIFAR in the BiPer authors' layout."""

import keras

from biper_keras.layers import BatchNormalization
from biper_keras.models.blocks import HardTanh, OptionAShortcut, conv3x3
from biper_keras.models.registry import register_model


def quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer=None):
    """The QuantConv2D arguments of a binary conv, or None for a float network."""
    if kernel_quantizer is None and input_quantizer is None:
        return None
    return dict(
        kernel_quantizer=kernel_quantizer,
        input_quantizer=input_quantizer,
        kernel_scale=kernel_scale,
        pad_values=pad_values,
        kernel_regularizer=kernel_regularizer,
    )


def batch_norm_factory(momentum):
    """`bn(name)` -> the package's (fused on TF) BatchNormalization with `momentum`."""
    return lambda name: BatchNormalization(momentum=momentum, name=name)


def cifar_stem(input_shape, filters, bn):
    """Input, float 3x3 conv, BN, hard tanh: (inputs, x)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    return inputs, HardTanh(name="stem_act")(bn("stem_bn")(x))


@register_model("resnet20")
def resnet20(
    input_shape=(32, 32, 3),
    num_classes=10,
    kernel_quantizer="biper",
    input_quantizer="approx_sign",
    kernel_scale="channel",
    pad_values=1.0,
    bn_momentum=0.9,
    blocks_per_stage=3,
    kernel_regularizer=None,
    name="resnet20",
):
    """CIFAR ResNet-20 (~0.27M parameters) with a shortcut around every binary conv.

    Stem conv and classifier stay full precision; each basic block is twice
    `x = hardtanh(BN(binary_conv(x)) + shortcut(x))`, the shortcut being the identity
    or, where the resolution halves, an option-A shortcut (average pool + zero channel
    padding). With `kernel_quantizer=None, input_quantizer=None` every conv is a plain
    float `keras.layers.Conv2D`: the float twin of the same network.
    """
    quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer)

    bn = batch_norm_factory(bn_momentum)
    inputs, x = cifar_stem(input_shape, 16, bn)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            for conv in range(2):
                tag = f"s{stage}b{block}c{conv}"
                strides = 2 if stage > 0 and block == 0 and conv == 0 else 1
                y = bn(f"{tag}_bn")(conv3x3(filters, strides, quant, f"{tag}_conv")(x))
                shortcut = x if strides == 1 else OptionAShortcut(filters, name=f"{tag}_down")(x)
                x = HardTanh(name=f"{tag}_act")(keras.layers.Add(name=f"{tag}_add")([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def _bireal_resnet(blocks, input_shape, num_classes, quant, bn_momentum, name):
    """ImageNet ResNet in Bi-Real style: a shortcut around every binary 3x3 conv; where
    the resolution halves, the shortcut is average pool + real 1x1 conv + BN."""

    bn = batch_norm_factory(bn_momentum)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(bn("stem_bn")(x))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (n_blocks, filters) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for block in range(n_blocks):
            for conv in range(2):
                tag = f"s{stage}b{block}c{conv}"
                strides = 2 if stage > 0 and block == 0 and conv == 0 else 1
                y = bn(f"{tag}_bn")(conv3x3(filters, strides, quant, f"{tag}_conv")(x))
                shortcut = x
                if strides == 2:
                    shortcut = keras.layers.AveragePooling2D(2, name=f"{tag}_down_pool")(x)
                    shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{tag}_down_conv")(shortcut)
                    shortcut = bn(f"{tag}_down_bn")(shortcut)
                x = keras.layers.Add(name=f"{tag}_add")([y, shortcut])
    x = keras.layers.ReLU(name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def _register_imagenet_resnet(depth, blocks, params):
    name = f"resnet{depth}_imagenet"

    def build(input_shape=(224, 224, 3), num_classes=1000, kernel_quantizer="biper",
              input_quantizer="approx_sign", kernel_scale="channel", pad_values=1.0,
              bn_momentum=0.9, kernel_regularizer=None, name=name):
        quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer)
        return _bireal_resnet(blocks, input_shape, num_classes, quant, bn_momentum, name)

    build.__name__ = name
    build.__doc__ = f"ImageNet ResNet-{depth} (~{params} parameters), Bi-Real style; float stem and classifier."
    return register_model(name)(build)


resnet18_imagenet = _register_imagenet_resnet(18, (2, 2, 2, 2), "11.7M")
resnet34_imagenet = _register_imagenet_resnet(34, (3, 4, 6, 3), "21.8M")


@register_model("resnet18")
def resnet18(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper",
             input_quantizer="approx_sign", kernel_scale="channel", pad_values=1.0,
             bn_momentum=0.9, kernel_regularizer=None, name="resnet18"):
    """CIFAR ResNet-18 (~11.2M parameters) with standard basic blocks: a float 3x3 stem,
    two binary 3x3 convs per block with one shortcut (a real 1x1 conv + BN where the
    shape changes), hard tanh after each add, a float classifier."""
    quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer)

    bn = batch_norm_factory(bn_momentum)
    inputs, x = cifar_stem(input_shape, 64, bn)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            tag = f"s{stage}b{block}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = HardTanh(name=f"{tag}_act0")(bn(f"{tag}_bn0")(conv3x3(filters, strides, quant, f"{tag}_conv0")(x)))
            y = bn(f"{tag}_bn1")(conv3x3(filters, 1, quant, f"{tag}_conv1")(y))
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{tag}_down_conv")(x)
                shortcut = bn(f"{tag}_down_bn")(shortcut)
            x = HardTanh(name=f"{tag}_act1")(keras.layers.Add(name=f"{tag}_add")([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)
