"""Larq's QuantConv1D, QuantDepthwiseConv2D, QuantSeparableConv2D (and QuantConv2D,
QuantDense with the newer quantizers) against Larq 0.14 itself: same arguments, same
weights, same outputs and gradients; Larq's own profile model (larq/models_test.py)
summarized alike; the bridge both ways; training and `.keras` round trips on every
backend."""

import json

import numpy as np
import pytest

import biper_keras as bk
from larq_parity_cases import LAYER_CASES, built_layer, tf_value_and_grads
from shared_processes import script, AFTER_LARQ_SCRIPTS, LARQ_SCRIPTS, script_output

LARQ_LAYERS = script("larq_parity_layers_larq_layers.py")


LARQ_SCRIPTS["layer_reference"] = LARQ_LAYERS


@pytest.fixture
def larq_layers(larq_results):
    folder, results = larq_results
    script_output(results, "layer_reference")
    return folder


def test_outputs_and_all_gradients_equal_larq_on_tensorflow(larq_layers):
    reference = dict(np.load(larq_layers / "layers.npz"))
    for i, (cls, _, _) in enumerate(LAYER_CASES):
        layer, x, _ = built_layer(bk.layers, i)
        y, _, grads = tf_value_and_grads(layer, x, reference[f"layer{i}_up"])
        np.testing.assert_allclose(y, reference[f"layer{i}_y"], atol=1e-5, err_msg=cls)
        np.testing.assert_allclose(grads[0], reference[f"layer{i}_gx"], atol=1e-5, err_msg=cls)
        assert len(grads) - 1 == sum(k.startswith(f"layer{i}_gw") for k in reference), cls
        for j, g in enumerate(grads[1:]):
            np.testing.assert_allclose(g, reference[f"layer{i}_gw{j}"], atol=1e-4, err_msg=f"{cls} weight {j}")


OTHER_BACKEND = script("larq_parity_layers_other_backend.py")


AFTER_LARQ_SCRIPTS["layer_parity"] = (OTHER_BACKEND, ("jax", "torch"))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_outputs_and_input_gradients_equal_larq_on(backend, larq_layers, after_larq_results):
    out = script_output(after_larq_results(backend), "layer_parity")
    assert out.strip().splitlines()[-1] == "LAYERS-OK", out


def test_larq_profile_model_summarized_as_larq_does(larq_layers):
    import keras

    larq_rows = json.loads((larq_layers / "profile.json").read_text())
    model = keras.Sequential([
        keras.Input((64, 64, 1)),
        bk.QuantConv2D(32, (3, 3), kernel_quantizer="ste_sign", padding="same"),
        keras.layers.MaxPooling2D((2, 2)),
        bk.layers.QuantDepthwiseConv2D(3, strides=(3, 3), input_quantizer=bk.SteTern(),
                                       depthwise_quantizer=bk.SteTern(), padding="same", pad_values=1.0,
                                       use_bias=False),
        keras.layers.BatchNormalization(scale=False),
        bk.layers.QuantSeparableConv2D(32, (3, 3), input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                       pointwise_quantizer="ste_sign", padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, trainable=False),
    ])
    rows = [[l.params_1bit + l.params_32bit, l.memory_bits, l.macs_1bit + l.macs_32bit, l.macs_1bit]
            for l in bk.summary(model, print_fn=None).layers]
    assert rows == larq_rows


BRIDGE = script("larq_parity_layers_bridge.py")


LARQ_SCRIPTS["bridge_new_layers"] = BRIDGE


def test_bridge_carries_the_new_layers_quantizers_and_constraints_both_ways(larq_results):
    out = script_output(larq_results[1], "bridge_new_layers")
    assert "BRIDGE-NEW-OK" in out, out


def test_what_lce_fuses_of_the_new_layers_and_the_flatbuffer_runs():
    """LCE fuses binary 2-D convolutions only: a binary QuantDepthwiseConv2D stays a
    float DEPTHWISE_CONV_2D, the separable conv's pointwise half a float CONV_2D (its
    input is the depthwise output, not binary), QuantConv1D a float CONV_2D."""
    import keras
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    from biper_keras.convert import convert_keras_model, op_histogram

    q = dict(input_quantizer="ste_sign", padding="same", pad_values=1.0, use_bias=False)
    clip = "weight_clip"
    two_d = keras.Sequential([
        keras.Input((12, 12, 8)),
        bk.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign", depthwise_constraint=clip, **q),
        keras.layers.BatchNormalization(),
        bk.layers.QuantSeparableConv2D(8, 3, depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign",
                                       depthwise_constraint=clip, pointwise_constraint=clip, **q),
        keras.layers.BatchNormalization(),
        bk.QuantConv2D(8, 3, kernel_quantizer="ste_sign", kernel_constraint=clip, **q),
    ])
    one_d = keras.Sequential([keras.Input((12, 8)),
                              bk.layers.QuantConv1D(8, 3, kernel_quantizer="ste_sign", kernel_constraint=clip, **q)])
    rng = np.random.default_rng(0)
    for model, expected_ops in ((two_d, {"LceBconv2d": 1, "DEPTHWISE_CONV_2D": 2, "CONV_2D": 1}),
                                (one_d, {"CONV_2D": 1})):
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(rng.normal(0, 0.3, 8))
                layer.moving_variance.assign(rng.uniform(0.5, 2, 8))
        flatbuffer = convert_keras_model(model)
        ops = op_histogram(flatbuffer)
        assert {k: ops.get(k, 0) for k in ("LceBconv2d", "DEPTHWISE_CONV_2D", "CONV_2D")} == \
            {"LceBconv2d": 0, "DEPTHWISE_CONV_2D": 0, "CONV_2D": 0, **expected_ops}, ops
        x = rng.normal(size=(4,) + tuple(model.input_shape[1:])).astype("float32")
        np.testing.assert_allclose(Interpreter(flatbuffer).predict(x), model.predict(x, verbose=0), atol=1e-3)
