"""A Keras 3 model of these layers converts to one LceBconv2d per binarized conv, and the
LCE interpreter agrees with Keras."""

import keras
import numpy as np
import pytest
from larq_compute_engine.tflite.python.interpreter import Interpreter

import biper_keras as bk
from helpers import randomize_batch_norms
from biper_keras.convert import convert_keras_model, op_histogram


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
    randomize_batch_norms(model, rng)
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


# --- convert(): report, strict mode, parity ------------------------------------------

from biper_keras.convert import ConversionError, check_parity, convert  # noqa: E402


def test_report_names_every_fused_layer():
    rng = np.random.default_rng(4)
    model = _model("biper")
    randomize_batch_norms(model, rng)
    result = convert(model)
    convs = [f for f in result.layers if f.kind == "conv"]
    assert [f.layer for f in convs] == [l.name for l in model.layers if isinstance(l, bk.QuantConv2D)]
    assert all(f.fused for f in convs) and not result.unfused
    assert result.parity.passed and result.parity.top1_agreement >= 0.98
    assert result.size < result.float32_size
    text = result.table()
    assert "LceBconv2d" in text and "parity on 8 inputs" in text


def _model_with_a_float_kernel_conv():
    binary = dict(input_quantizer="ste_sign", use_bias=False, padding="same", pad_values=1.0)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(x)
    h = bk.QuantConv2D(8, 3, kernel_quantizer="biper", name="good", **binary)(h)
    h = bk.QuantConv2D(8, 3, kernel_quantizer=bk.BiPer(binarize=False), name="stage1_conv", **binary)(h)
    h = bk.QuantConv2D(8, 3, kernel_quantizer="biper", input_quantizer=None, name="float_input",
                       padding="same", pad_values=1.0)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4)(h))


def test_strict_mode_names_each_unfused_layer_and_why():
    model = _model_with_a_float_kernel_conv()
    with pytest.raises(ConversionError, match=r"stage1_conv \(float kernel.*float_input \(input not binarized"):
        convert(model, verify=False)
    result = convert(model, strict=False, verify=False)
    by_name = {f.layer: f for f in result.layers}
    assert by_name["good"].fused
    assert not by_name["stage1_conv"].fused and "float kernel" in by_name["stage1_conv"].reason
    assert not by_name["float_input"].fused and "input not binarized" in by_name["float_input"].reason
    assert result.ops["LceBconv2d"] == 1


def test_zero_padding_on_xcore_is_reported():
    model = _model("biper", pad_values=0.0)
    result = convert(model, target="xcore", strict=False, verify=False)
    reasons = [f.reason for f in result.unfused]
    assert reasons and all("zero padding is only supported for target='arm'" in r for r in reasons)


def test_parity_check_catches_a_planted_mismatch():
    rng = np.random.default_rng(5)
    model = _model("biper")
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    flatbuffer = convert(model, data=x).flatbuffer
    head = model.layers[-1]
    head.kernel.assign(-np.array(head.kernel))  # the Keras model now disagrees
    parity = check_parity(flatbuffer, model, x)
    assert not parity.passed and parity.top1_agreement < 0.5


def test_mixed_precision_and_non_finite_weights_are_refused():
    model = _model("biper")
    model.layers[1].kernel.assign(np.full(model.layers[1].kernel.shape, np.nan, "float32"))
    with pytest.raises(ConversionError, match="NaN or infinite"):
        convert(model)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = _model("biper")
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ConversionError, match="float16: the TFLite converter needs float32"):
        convert(half)


def test_fixed_input_shape_for_models_with_unknown_sizes():
    x = keras.Input((None, None, 3))
    h = bk.QuantConv2D(8, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign", kernel_quantizer="biper")(x)
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D()(h))
    result = convert(model, input_shape=(1, 12, 12, 3))
    assert result.ops["LceBconv2d"] == 1 and result.layers[0].fused and result.parity.passed


def test_save_is_atomic_and_complete(tmp_path):
    result = convert(_model("biper"), verify=False)
    path = tmp_path / "m.tflite"
    result.save(path)
    assert path.read_bytes() == result.flatbuffer
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]
