"""binarize(model): which layers change, weights carried over, and LCE fusion."""

import keras
import numpy as np
import pytest
from helpers import randomize_batch_norms

import biper_keras as bk
from biper_keras.binarize import binarize
from biper_keras.convert import convert


def small_cnn():
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", name="first")(x)
    h = keras.layers.BatchNormalization(name="bn0")(h)
    h = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="mid")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="valid")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.Conv2D(32, 3, groups=2, padding="same", name="grouped")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(16, name="fc")(h)
    return keras.Model(x, keras.layers.Dense(10, name="last")(h))


def test_small_functional_cnn():
    model = small_cnn()
    binary, report = binarize(model)
    assert report.binarized == ["mid", "valid", "fc"]
    assert report.kept == {"first": "first layer (keep_first)",
                           "grouped": "grouped convolution (groups=2) has no binary LCE kernel",
                           "last": "last layer (keep_last)"}
    float_layers = {l.name for l in binary.layers if type(l) in (keras.layers.Conv2D, keras.layers.Dense)}
    assert float_layers == set(report.kept)
    mid = binary.get_layer("mid")
    assert isinstance(mid, bk.QuantConv2D) and mid.pad_values == 1.0 and binary.get_layer("valid").pad_values == 0.0
    np.testing.assert_array_equal(np.array(mid._kernel), np.array(model.get_layer("mid").kernel))
    np.testing.assert_allclose(np.array(mid.alpha), np.abs(np.array(model.get_layer("mid").kernel)).mean(axis=(0, 1, 2)), rtol=1e-6)
    randomize_batch_norms(binary, np.random.default_rng(0))
    result = convert(binary)
    assert result.ops["LceBconv2d"] == 2 and [f.layer for f in result.layers if f.fused] == ["mid", "valid"]


def test_resnet50_all_binarized_convs_fuse():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    binary, report = binarize(model, quantizer="ste_sign")
    convs = [l for l in binary.layers if isinstance(l, bk.QuantConv2D)]
    assert len(convs) == 52 and report.binarized[0] == "conv2_block1_1_conv"
    assert set(report.kept) == {"conv1_conv", "predictions"}
    result = convert(binary, verify=False)
    assert result.ops["LceBconv2d"] == 52 and not result.unfused


def test_bad_input():
    with pytest.raises(TypeError, match="must be a Keras 3 model"):
        binarize("resnet50")
    with pytest.raises(ValueError, match="Unknown quantizer 'sine'"):
        binarize(small_cnn(), quantizer="sine")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    sub = Sub()
    sub(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed and cannot be rebuilt"):
        binarize(sub)
