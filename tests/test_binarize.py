"""binarize(model): which layers change, weights carried over, and LCE fusion."""

import keras
import numpy as np
import pytest
from helpers import randomize_batch_norms

import biper_keras as bk
from biper_keras.binarize import binarize, float_twin
from biper_keras.convert import convert
from larq_compute_engine.tflite.python.interpreter import Interpreter


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


# keras.applications models built offline (weights=None) at 32x32, the smallest input
# they all accept: model -> number of LceBconv2d. Each takes 5-40 s on 2 cores (model
# building, then mostly LCE's converter): MobileNet, the cheapest, stays in the fast tier
# (`-m "not slow"`), the others are `slow` (they run in the full suite). Their BatchNorms use
# axis=3, which LCE could not prepare before the conversion reshaped per-channel constants to 1-D.
APPLICATIONS = {
    "ResNet50": 52,
    "ResNet50V2": 52,
    "MobileNet": 13,
    "MobileNetV2": 34,
    "VGG16": 12,  # plus its two hidden Dense layers, which LCE runs as float
    "DenseNet121": 119,
    "EfficientNetB0": 64,
}


FAST_APPLICATION = "MobileNet"
# Repeats of what another case covers, ~15-20 s each: with -m exhaustive. ResNet50V2 is
# ResNet50's residual blocks with pre-activation; VGG16 is plain 3x3 convs (in every other
# case) and hidden Dense layers, which `small_cnn`'s "fc" covers (binarized, run as float).
EXHAUSTIVE_APPLICATIONS = ("ResNet50V2", "VGG16")


def _application_param(name):
    if name == FAST_APPLICATION:
        return name
    marks = [pytest.mark.slow] + ([pytest.mark.exhaustive] if name in EXHAUSTIVE_APPLICATIONS else [])
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", [_application_param(n) for n in sorted(APPLICATIONS)])
def test_keras_applications_binarize_convert_load_and_agree(name):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)
    candidates = [l.name for l in model.layers if type(l) in (keras.layers.Conv2D, keras.layers.Dense)]
    binary, report = binarize(model)
    assert report.binarized == candidates[1:-1] and set(report.kept) == {candidates[0], candidates[-1]}
    assert all(l.axis in (3, -1) for l in binary.layers if isinstance(l, keras.layers.BatchNormalization))
    rng = np.random.default_rng(1)
    randomize_batch_norms(binary, rng)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    result = convert(binary, data=x)  # strict: raises if a binarized conv did not fuse
    convs = [f for f in result.layers if f.kind == "conv"]
    assert result.ops["LceBconv2d"] == APPLICATIONS[name] == len(convs) and not result.unfused
    assert result.parity.passed and result.parity.top1_agreement == 1.0
    got = Interpreter(result.flatbuffer).predict(x)
    np.testing.assert_allclose(got, np.asarray(binary(x, training=False)), rtol=1e-4, atol=1e-5)


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


@pytest.mark.slow  # a TensorFlow process of its own (the conversion itself is the MobileNet case above)
def test_example_converts_a_keras_application():
    import os
    import pathlib
    import re
    import subprocess
    import sys

    example = pathlib.Path(__file__).parents[1] / "examples" / "convert_keras_applications.py"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(example), "MobileNet", "--samples", "2"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"MobileNet 32x32: binarized 13 layers, 13 LceBconv2d, 0 unfused, [0-9.]+ MiB; loads and "
                     r"runs in LCE's interpreter; on 2 inputs top-1 agreement 1\.00", result.stdout), result.stdout


QUANT_AND_FLOAT = [
    (lambda: bk.layers.QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                   kernel_scale="channel", pad_values=1.0, padding="same"),
     lambda: keras.layers.Conv2D(4, 3, padding="same"), (8, 8, 3)),
    (lambda: bk.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
     lambda: keras.layers.Dense(4), (6,)),
    (lambda: bk.layers.QuantConv1D(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
     lambda: keras.layers.Conv1D(4, 3), (8, 3)),
    (lambda: bk.layers.QuantDepthwiseConv2D(3, input_quantizer="ste_sign", depthwise_quantizer="ste_sign"),
     lambda: keras.layers.DepthwiseConv2D(3), (8, 8, 3)),
    (lambda: bk.layers.QuantSeparableConv2D(4, 3, input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                            pointwise_quantizer="ste_sign"),
     lambda: keras.layers.SeparableConv2D(4, 3), (8, 8, 3)),
]


def test_quantization_config_keys_are_what_the_quantized_layers_add():
    """float_twin drops exactly these keys: a new layer option must be listed."""
    import warnings

    added = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the starving-weights warning
        for make_quant, make_float, _ in QUANT_AND_FLOAT:
            extra = set(make_quant().get_config()) - set(make_float().get_config())
            assert extra <= set(bk.layers.QUANTIZATION_CONFIG_KEYS), extra
            added |= extra
    assert added == set(bk.layers.QUANTIZATION_CONFIG_KEYS)


@pytest.mark.parametrize("case", range(len(QUANT_AND_FLOAT)))
def test_float_twin_of_every_quantized_layer_carries_the_latent_weights(case):
    make_quant, make_float, shape = QUANT_AND_FLOAT[case]
    x = keras.Input(shape)
    model = keras.Model(x, make_quant()(x))
    twin = float_twin(model)
    (layer,), (twin_layer,) = bk.layers.quantized_layers(model), twin.layers[1:]
    assert type(twin_layer) is type(make_float())
    alpha = getattr(layer, "alpha", None)
    latent = [np.asarray(w) for w in layer.weights if w is not alpha]
    for got, want in zip(twin_layer.get_weights(), latent, strict=True):
        np.testing.assert_array_equal(got, want)
    data = np.random.default_rng(case).normal(size=(2, *shape)).astype("float32")
    reference = make_float()
    reference.build((None, *shape))
    reference.set_weights(latent)
    np.testing.assert_allclose(np.asarray(twin(data)), np.asarray(reference(data)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("relu", [lambda: keras.layers.ReLU(), lambda: keras.layers.Activation("relu"), None])
def test_binarize_warns_when_a_binarized_input_follows_a_relu(relu):
    import warnings

    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu" if relu is None else None, name="first")(x)
    if relu is not None:
        h = relu()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="middle")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="after_bn")(h)
    out = keras.layers.Conv2D(4, 1, name="last")(h)
    with pytest.warns(UserWarning, match=r"input of middle comes from a ReLU") as caught:
        binarize(keras.Model(x, out))
    assert not any("after_bn" in str(w.message) for w in caught)
    x = keras.Input((8, 8, 3))
    h = keras.layers.LeakyReLU(0.1)(keras.layers.Conv2D(8, 3, name="first")(x))
    out = keras.layers.Conv2D(4, 1, name="last")(keras.layers.Conv2D(8, 3, name="middle")(h))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaky ReLU passes negatives: no warning
        binarize(keras.Model(x, out))


def test_fold_kernel_scale_is_exact_at_inference_on_a_binarized_model_with_shortcuts():
    from biper_keras.larq_interop import fold_kernel_scale

    x = keras.Input((16, 16, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(x))
    for _ in range(2):
        y = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(h))
        h = keras.layers.Add()([h, y])  # a shortcut around each conv + BN
    h = keras.layers.BatchNormalization(scale=False)(keras.layers.Conv2D(8, 3, padding="same")(h))
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
    binary, report = binarize(keras.Model(x, out))
    assert len(report.binarized) == 3
    rng = np.random.default_rng(0)
    randomize_batch_norms(binary, rng)
    layer = bk.layers.quantized_layers(binary)[0]
    layer.alpha.assign(np.r_[-0.7, 0.0, rng.uniform(0.1, 2.0, 6)])  # a negative and a dead channel too
    folded = fold_kernel_scale(binary)
    assert all(getattr(l, "alpha", None) is None for l in bk.layers.quantized_layers(folded))
    data = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(folded(data, training=False)), np.asarray(binary(data, training=False)),
                               rtol=1e-4, atol=1e-4)
    lone = keras.Sequential([keras.Input((8, 8, 3)), bk.QuantConv2D(4, 3, kernel_quantizer="biper",
                                                                    kernel_scale="channel", name="lone")])
    with pytest.raises(ValueError, match="'lone': kernel_scale='channel' has no Larq counterpart"):
        fold_kernel_scale(lone)
