import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras.convert import convert_keras_model, op_histogram
from biper_keras.models import available_models, get_model
from biper_keras.models.blocks import HardTanh, OptionAShortcut


def test_resnet20_size_and_every_binary_conv_fuses():
    model = get_model("resnet20")
    # ResNet-20: 0.27M parameters (+ one alpha per output channel of the 18 binary convs).
    assert 0.265e6 < model.count_params() < 0.275e6
    binary = [l for l in model.layers if isinstance(l, bk.QuantConv2D)]
    assert len(binary) == 18
    ops = op_histogram(convert_keras_model(model))
    assert ops["LceBconv2d"] == 18 and ops["CONV_2D"] == 1, ops


def test_float_twin_has_the_same_graph_with_plain_convs():
    twin = get_model("resnet20", kernel_quantizer=None, input_quantizer=None)
    assert not any(isinstance(l, bk.QuantConv2D) for l in twin.layers)
    assert sum(isinstance(l, keras.layers.Conv2D) for l in twin.layers) == 19


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet21'. Known models: .*resnet20"):
        get_model("resnet21")
    assert "resnet20" in available_models()


def test_hard_tanh_training_and_inference_paths_agree():
    x = np.linspace(-3, 3, 101).astype("float32")
    layer = HardTanh()
    expected = np.clip(x, -1, 1)
    np.testing.assert_array_equal(np.array(layer(x, training=True)), expected)
    np.testing.assert_array_equal(np.array(layer(x, training=False)), expected)


def test_option_a_shortcut_pools_and_zero_pads_channels():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    y = np.array(OptionAShortcut(32)(x))
    pooled = x.reshape(2, 4, 2, 4, 2, 16).mean(axis=(2, 4))
    assert y.shape == (2, 4, 4, 32)
    np.testing.assert_allclose(y[..., 8:24], pooled, atol=1e-6)
    assert not y[..., :8].any() and not y[..., 24:].any()
