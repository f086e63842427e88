"""A Keras 3 model of these layers converts to one LceBconv2d per binarized conv, and the
LCE interpreter agrees with Keras."""

import keras
import numpy as np
import pytest
from larq_compute_engine.tflite.python.interpreter import Interpreter

import biper_keras as bk
from biper_keras.convert import convert_keras_model, op_histogram


def _randomize_batch_norms(model, rng):
    # Default BN statistics create exact zeros at binarizer inputs whose sign then
    # depends on float rounding; random statistics make the comparison meaningful.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def _model(kernel_quantizer, padding="same", pad_values=1.0):
    binary = dict(input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer,
                  kernel_scale="channel", use_bias=False)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(16, 3, padding=padding, pad_values=pad_values, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(32, 3, strides=2, padding=padding, pad_values=pad_values, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(32, 3, padding="valid", **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10)(h))


@pytest.mark.parametrize("kernel_quantizer", ["biper", "ste_sign"])
def test_every_binarized_conv_fuses_and_outputs_match(kernel_quantizer):
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    model = _model(kernel_quantizer)
    _randomize_batch_norms(model, rng)
    flatbuffer = convert_keras_model(model)
    ops = op_histogram(flatbuffer)
    assert ops["LceBconv2d"] == 3, ops
    assert ops["CONV_2D"] == 1, ops  # only the full-precision first conv

    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    got = Interpreter(flatbuffer).predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_zero_padding_on_arm_target_converts_too():
    model = _model("biper", pad_values=0.0)
    ops = op_histogram(convert_keras_model(model, target="arm"))
    assert ops["LceBconv2d"] == 3, ops


def test_conversion_refuses_other_targets():
    with pytest.raises(ValueError, match="`target` must be 'arm' or 'xcore'"):
        convert_keras_model(_model("biper"), target="riscv")
