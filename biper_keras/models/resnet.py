"""ResNets for CIFAR in the BiPer authors' layout."""

import keras

from biper_keras.layers import BatchNormalization
from biper_keras.models.blocks import HardTanh, OptionAShortcut, conv3x3, conv_initializer
from biper_keras.models.registry import register_model

# The training-time details of the authors' CIFAR code, as builder options. Defaults
# from the ablation in docs/results.md ("Fidelity"): their per-sample activation
# normalization and the batch norm before the classifier help; PyTorch's He-normal
# init and zero padding of binary convs did not. Epsilon and the stride-2 padding are
# Keras's until measured (the parity test sets them to PyTorch's: 1e-5, symmetric).
CIFAR_DEFAULTS = dict(normalize_inputs=True, head_batch_norm=True, bn_epsilon=1e-3,
                      symmetric_padding=False, conv_initializer="glorot_uniform")
# What the authors' PyTorch model computes (zero padding, PyTorch's stride-2 padding
# and BN epsilon; tests/test_fidelity.py checks it step by step against their code).
AUTHORS_OPTIONS = dict(pad_values=0.0, symmetric_padding=True, bn_epsilon=1e-5, normalize_inputs=True,
                       head_batch_norm=True)


def quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer=None,
                      normalize_inputs=False):
    """The QuantConv2D arguments of a binary conv, or None for a float network."""
    if kernel_quantizer is None and input_quantizer is None:
        return None
    return dict(
        kernel_quantizer=kernel_quantizer,
        input_quantizer=input_quantizer,
        kernel_scale=kernel_scale,
        pad_values=pad_values,
        kernel_regularizer=kernel_regularizer,
        normalize_inputs=normalize_inputs,
    )


def batch_norm_factory(momentum, epsilon=1e-3):
    """`bn(name)` -> the package's (fused on TF) BatchNormalization with `momentum`
    (Keras's sense: PyTorch's momentum 0.1 is 0.9 here) and `epsilon` (TF's fused
    kernel needs >= 1.001e-5; below that the layer runs Keras's unfused code)."""
    return lambda name: BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def cifar_stem(input_shape, filters, bn, initializer="glorot_uniform"):
    """Input, float 3x3 conv, BN, hard tanh: (inputs, x)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem_conv",
                            kernel_initializer=conv_initializer(initializer))(inputs)
    return inputs, HardTanh(name="stem_act")(bn("stem_bn")(x))


def cifar_head(x, num_classes, bn, head_batch_norm):
    """Global average pool, (the authors' `bn2`,) float classifier."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head_batch_norm:
        x = bn("head_bn")(x)
    return keras.layers.Dense(num_classes, name="classifier")(x)


_CIFAR_OPTIONS_DOC = """
    The authors' training-time details (defaults: `CIFAR_DEFAULTS`):
        normalize_inputs: their per-sample activation normalization at every binary
            conv's input, training only (`QuantConv2D(normalize_inputs=True)`).
        head_batch_norm: a BatchNormalization between the pooling and the classifier.
        bn_epsilon: every BatchNormalization's epsilon (PyTorch's is 1e-5).
        symmetric_padding: pad stride-2 3x3 convs (1, 1) as PyTorch does (Keras: (0, 1)).
        conv_initializer: stem and binary conv kernels' initializer; "kaiming_normal"
            is PyTorch's `kaiming_normal_` (theirs), else any Keras initializer.
"""


def _cifar_options(options, builder):
    unknown = set(options) - set(CIFAR_DEFAULTS)
    if unknown:
        raise TypeError(f"{builder}() got unexpected arguments: {', '.join(sorted(unknown))}. "
                        f"Known model options: {', '.join(CIFAR_DEFAULTS)}.")
    return {**CIFAR_DEFAULTS, **options}


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
    **options,
):
    """CIFAR ResNet-20 (~0.27M parameters) with a shortcut around every binary conv.

    Stem conv and classifier stay full precision; each basic block is twice
    `x = hardtanh(BN(binary_conv(x)) + shortcut(x))`, the shortcut being the identity
    or, where the resolution halves, an option-A shortcut (average pool + zero channel
    padding). With `kernel_quantizer=None, input_quantizer=None` every conv is a plain
    float `keras.layers.Conv2D`: the float twin of the same network.
    """
    opt = _cifar_options(options, "resnet20")
    quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer,
                              opt["normalize_inputs"])

    bn = batch_norm_factory(bn_momentum, opt["bn_epsilon"])
    inputs, x = cifar_stem(input_shape, 16, bn, opt["conv_initializer"])
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            for conv in range(2):
                tag = f"s{stage}b{block}c{conv}"
                strides = 2 if stage > 0 and block == 0 and conv == 0 else 1
                y = conv3x3(filters, strides, quant, f"{tag}_conv", opt["conv_initializer"], opt["symmetric_padding"])(x)
                y = bn(f"{tag}_bn")(y)
                shortcut = x if strides == 1 else OptionAShortcut(filters, name=f"{tag}_down")(x)
                x = HardTanh(name=f"{tag}_act")(keras.layers.Add(name=f"{tag}_add")([y, shortcut]))
    outputs = cifar_head(x, num_classes, bn, opt["head_batch_norm"])
    return keras.Model(inputs, outputs, name=name)


resnet20.__doc__ += _CIFAR_OPTIONS_DOC


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
             bn_momentum=0.9, kernel_regularizer=None, name="resnet18", **options):
    """CIFAR ResNet-18 (~11.2M parameters) with standard basic blocks: a float 3x3 stem,
    two binary 3x3 convs per block with one shortcut (a real 1x1 conv + BN where the
    shape changes), hard tanh after each add, a float classifier."""
    opt = _cifar_options(options, "resnet18")
    quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer,
                              opt["normalize_inputs"])

    bn = batch_norm_factory(bn_momentum, opt["bn_epsilon"])
    init, symmetric = opt["conv_initializer"], opt["symmetric_padding"]
    inputs, x = cifar_stem(input_shape, 64, bn, init)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            tag = f"s{stage}b{block}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv3x3(filters, strides, quant, f"{tag}_conv0", init, symmetric)(x)
            y = HardTanh(name=f"{tag}_act0")(bn(f"{tag}_bn0")(y))
            y = bn(f"{tag}_bn1")(conv3x3(filters, 1, quant, f"{tag}_conv1", init)(y))
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{tag}_down_conv")(x)
                shortcut = bn(f"{tag}_down_bn")(shortcut)
            x = HardTanh(name=f"{tag}_act1")(keras.layers.Add(name=f"{tag}_add")([y, shortcut]))
    outputs = cifar_head(x, num_classes, bn, opt["head_batch_norm"])
    return keras.Model(inputs, outputs, name=name)


resnet18.__doc__ += _CIFAR_OPTIONS_DOC
