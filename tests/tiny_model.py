"""`get_model("tiny_cnn")`: a small BiPer CNN (a float stem, two binarized convs with batch
norms, a float head) for the tests whose checks are about a training run itself
(interrupts, resume, checkpoints, a full disk), not about ResNet-20: its run takes ~5 s
where ResNet-20's takes ~30 s on 2 cores. Importing this module registers it; a CLI
subprocess imports it before running `biper_keras.cli` (see `cli_command`)."""

import os

from biper_keras.models import register_model

NAME = "tiny_cnn"


@register_model(NAME)
def tiny_cnn(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper", input_quantizer="ste_sign",
             kernel_regularizer=None, filters=8):
    import keras

    import biper_keras as bk

    def binary(h, strides):
        h = bk.QuantConv2D(filters, 3, strides=strides, padding="same", use_bias=False, pad_values=1.0,
                           input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                           kernel_regularizer=kernel_regularizer)(h)
        return keras.layers.BatchNormalization()(h)

    x = keras.Input(input_shape)
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
    h = binary(binary(h, 1), 2)
    return keras.Model(x, keras.layers.Dense(num_classes)(keras.layers.GlobalAveragePooling2D()(h)))


def cli_command():
    """argv prefix running `python -m biper_keras.cli` (as runpy runs it for `-m`) with
    this model registered."""
    here = os.path.dirname(os.path.abspath(__file__))
    return ["-c", f"import sys, runpy; sys.path.insert(0, {here!r}); import tiny_model; "
                  "runpy.run_module('biper_keras.cli', run_name='__main__', alter_sys=True)"]
