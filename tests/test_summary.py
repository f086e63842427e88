"""biper_keras.summary against Larq's own summary for the same architecture."""

import json

import keras
from shared_processes import script, LARQ_SCRIPTS, script_output

import biper_keras as bk
from biper_keras.summary import summary

LARQ_PROFILE = script("summary_larq_profile.py")


def ours():
    q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(16, 3, padding="same", name="c0"),
        bk.BatchNormalization(name="bn0"),
        bk.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False, name="c1", **q),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.MaxPooling2D(name="pool"),
        bk.QuantConv2D(64, 3, strides=2, use_bias=False, name="c2", **q),
        keras.layers.BatchNormalization(name="bn2"),
        keras.layers.Flatten(name="flat"),
        bk.QuantDense(32, name="d1", **q),
        keras.layers.Dense(10, name="head"),
    ])


LARQ_SCRIPTS["summary_profile"] = LARQ_PROFILE


def test_same_numbers_as_larq(larq_results):
    larq = json.loads(script_output(larq_results[1], "summary_profile").strip().splitlines()[-1])
    stats = summary(ours(), print_fn=None)
    for layer in stats.layers:
        assert [layer.params_1bit, layer.params_32bit, layer.memory_bits, layer.macs_1bit, layer.macs_32bit] \
            == larq["rows"][layer.name], layer.name
    assert stats.total("memory_bits") == larq["memory"]
    assert stats.float32_bytes * 8 == larq["fp"]
    assert (stats.total("macs_1bit"), stats.total("macs_32bit")) == (larq["macs1"], larq["macs32"])


def test_table_and_alpha_is_a_parameter_not_a_mac():
    model = keras.Sequential([keras.Input((8, 8, 4)),
                              bk.QuantConv2D(8, 3, input_quantizer="ste_sign", kernel_quantizer="biper",
                                             kernel_scale="channel", use_bias=False, name="b")])
    lines = []
    stats = summary(model, print_fn=lines.append)
    layer = stats.layers[0]
    assert (layer.params_1bit, layer.params_32bit) == (3 * 3 * 4 * 8, 8)
    assert layer.macs_1bit == 3 * 3 * 4 * 8 * 6 * 6 and layer.macs_32bit == 0
    assert stats.binary_mac_ratio == 1.0
    assert "binarized MACs: 1.0000" in lines[0] and "b " in lines[0]
