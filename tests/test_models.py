import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras.convert import convert_keras_model, op_histogram
from biper_keras.models import available_models, get_model
from biper_keras.models.blocks import HardTanh, OptionAShortcut


@pytest.mark.parametrize(
    "name,params,binary_convs,kwargs",
    [
        ("resnet20", 0.27e6, 18, {}),
        ("resnet18", 11.17e6, 16, {}),
        ("vgg_small", 4.66e6, 5, {}),
        ("resnet18_imagenet", 11.69e6, 16, {}),
        ("resnet34_imagenet", 21.8e6, 32, {}),
    ],
)
def test_parameter_counts_match_the_papers(name, params, binary_convs, kwargs):
    model = get_model(name, **kwargs)
    # Within 1.5%: alpha (one per output channel) and BatchNorm add a little.
    assert abs(model.count_params() - params) / params < 0.015, model.count_params()
    assert sum(isinstance(l, bk.QuantConv2D) for l in model.layers) == binary_convs


@pytest.mark.parametrize(
    "name,kwargs",
    [("resnet20", {}), ("resnet18", {}), ("vgg_small", {}),
     ("resnet18_imagenet", {"input_shape": (64, 64, 3)}),
     # ResNet-34 is ResNet-18's blocks, more of them (~11 s): with -m exhaustive.
     pytest.param("resnet34_imagenet", {"input_shape": (64, 64, 3)}, marks=[pytest.mark.slow, pytest.mark.exhaustive])],
)
def test_every_binary_conv_fuses(name, kwargs):
    model = get_model(name, **kwargs)
    binary = [l.name for l in model.layers if isinstance(l, bk.QuantConv2D)]
    ops = op_histogram(convert_keras_model(model))
    assert ops["LceBconv2d"] == len(binary), ops


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


def test_cifar_builders_training_time_options():
    from biper_keras.layers import QuantConv2D
    from biper_keras.models.resnet import CIFAR_DEFAULTS

    model = get_model("resnet20")
    convs = [l for l in model.layers if isinstance(l, QuantConv2D)]
    assert CIFAR_DEFAULTS["normalize_inputs"] and all(c.normalize_inputs for c in convs)
    assert model.get_layer("head_bn").epsilon == 1e-3
    assert isinstance(model.get_layer("classifier").input._keras_history.operation, keras.layers.BatchNormalization)
    bare = get_model("resnet20", head_batch_norm=False, normalize_inputs=False, bn_epsilon=1.001e-5)
    assert "head_bn" not in [l.name for l in bare.layers]
    assert all(l.epsilon == 1.001e-5 for l in bare.layers if isinstance(l, keras.layers.BatchNormalization))
    assert not any(l.normalize_inputs for l in bare.layers if isinstance(l, QuantConv2D))
    # The authors' VGG-Small has no batch norm before its classifier.
    assert "head_bn" not in [l.name for l in get_model("vgg_small", input_shape=(16, 16, 3)).layers]


def test_kaiming_normal_is_pytorchs_untruncated_fan_in_normal():
    keras.utils.set_random_seed(0)
    model = get_model("resnet18", conv_initializer="kaiming_normal")
    kernel = np.asarray(model.get_layer("s3b1_conv1")._kernel).ravel()  # 3*3*512 fan-in
    std = np.sqrt(2.0 / (9 * 512))
    assert abs(kernel.std() / std - 1) < 0.01
    assert np.abs(kernel).max() > 3 * std  # not truncated at 2 std like Keras's he_normal
    stem = np.asarray(model.get_layer("stem_conv").kernel).ravel()
    assert abs(stem.std() / np.sqrt(2.0 / 27) - 1) < 0.1


def test_symmetric_padding_reaches_stride_2_convs_only():
    from biper_keras.layers import QuantConv2D

    model = get_model("resnet20", symmetric_padding=True)
    flags = {l.name: (l.strides, l.symmetric_padding) for l in model.layers if isinstance(l, QuantConv2D)}
    assert all(sym == (strides == (2, 2)) for strides, sym in flags.values()), flags
    twin = get_model("resnet20", kernel_quantizer=None, input_quantizer=None, symmetric_padding=True)
    assert [l.padding for l in twin.layers if isinstance(l, keras.layers.ZeroPadding2D)] == [((1, 1), (1, 1))] * 2


def test_a_builder_warns_once_about_starving_weights_not_once_per_layer():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own rule for a UserWarning
        get_model("resnet20", kernel_quantizer="bnn")
    starving = [w for w in caught if "starved weights" in str(w.message)]
    assert len(starving) == 1, [str(w.message) for w in caught]
    assert str(starving[0].message).startswith("QuantConv2D: using a binary weight quantizer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        get_model("resnet20")  # BiPer's gradient never vanishes: no warning
    assert not [w for w in caught if "starved weights" in str(w.message)]
