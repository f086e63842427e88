"""VGG-Small for CIFAR in the BiPer authors' layout."""

import keras

from biper_keras.models.blocks import HardTanh, conv3x3, conv_initializer
from biper_keras.models.registry import register_model
from biper_keras.models.resnet import _CIFAR_OPTIONS_DOC, _cifar_options, batch_norm_factory, quantization_args


@register_model("vgg_small")
def vgg_small(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper",
              input_quantizer="approx_sign", kernel_scale="channel", pad_values=1.0,
              bn_momentum=0.9, kernel_regularizer=None, name="vgg_small", **options):
    """VGG-Small (128-128-256-256-512-512, ~4.66M parameters): a float first conv, five
    binary convs, each block conv -> (pool) -> BN -> hard tanh, and a float classifier.
    The authors' VGG-Small has no batch norm before the classifier: `head_batch_norm`
    defaults to False here."""
    opt = _cifar_options({"head_batch_norm": False, **options}, "vgg_small")
    quant = quantization_args(kernel_quantizer, input_quantizer, kernel_scale, pad_values, kernel_regularizer,
                              opt["normalize_inputs"])
    bn = batch_norm_factory(bn_momentum, opt["bn_epsilon"])
    init = opt["conv_initializer"]
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(128, 3, padding="same", use_bias=False, name="conv0",
                            kernel_initializer=conv_initializer(init))(inputs)
    x = HardTanh(name="act0")(bn("bn0")(x))
    for i, (filters, pool) in enumerate(((128, True), (256, False), (256, True), (512, False), (512, True)), 1):
        x = conv3x3(filters, 1, quant, f"conv{i}", init)(x)
        if pool:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
        x = HardTanh(name=f"act{i}")(bn(f"bn{i}")(x))
    x = keras.layers.Flatten(name="flatten")(x)
    if opt["head_batch_norm"]:
        x = bn("head_bn")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


vgg_small.__doc__ += _CIFAR_OPTIONS_DOC
