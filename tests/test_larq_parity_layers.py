"""Larq's QuantConv1D, QuantDepthwiseConv2D, QuantSeparableConv2D (and QuantConv2D,
QuantDense with the newer quantizers) against Larq 0.14 itself: same arguments, same
weights, same outputs and gradients; Larq's own profile model (larq/models_test.py)
summarized alike; the bridge both ways; training and `.keras` round trips on every
backend."""

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import biper_keras as bk
from backend_suite.autodiff import value_and_vjp
from larq_parity_cases import LAYER_CASES, layer_inputs, layer_mismatches
from test_larq_parity import run_python

LARQ_LAYERS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import larq as lq
    from larq_parity_cases import LAYER_CASES, layer_inputs

    out = {}
    for i, (cls, kwargs, shape) in enumerate(LAYER_CASES):
        layer = getattr(lq.layers, cls)(**kwargs)
        layer.build(shape)
        x, weights, rng = layer_inputs(i, shape, [tuple(w.shape) for w in layer.get_weights()])
        layer.set_weights(weights)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
        up = rng.normal(size=y.shape).astype("float32")
        grads = tape.gradient(y, [xt] + layer.trainable_weights, output_gradients=tf.constant(up))
        out[f"layer{i}_y"], out[f"layer{i}_up"], out[f"layer{i}_gx"] = y.numpy(), up, grads[0].numpy()
        for j, g in enumerate(grads[1:]):
            out[f"layer{i}_gw{j}"] = g.numpy()
    np.savez(sys.argv[1] + "/layers.npz", **out)

    # Larq's own profile model (larq/models_test.py: get_profile_model).
    model = tf.keras.models.Sequential([
        lq.layers.QuantConv2D(32, (3, 3), kernel_quantizer="ste_sign", input_shape=(64, 64, 1), padding="same"),
        tf.keras.layers.MaxPooling2D((2, 2)),
        lq.layers.QuantDepthwiseConv2D(3, strides=(3, 3), input_quantizer=lq.quantizers.SteTern(),
                                       depthwise_quantizer=lq.quantizers.SteTern(), padding="same",
                                       pad_values=1.0, use_bias=False),
        tf.keras.layers.BatchNormalization(scale=False),
        lq.layers.QuantSeparableConv2D(32, (3, 3), input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                       pointwise_quantizer="ste_sign", padding="same"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, trainable=False),
    ])
    rows = [[lp.weight_count(), lp.memory, lp.op_count("mac") or 0, lp.op_count("mac", 1) or 0]
            for lp in lq.models.ModelProfile(model).layer_profiles]
    json.dump(rows, open(sys.argv[1] + "/profile.json", "w"))
    """
)


@pytest.fixture(scope="module")
def larq_layers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("larq_layers")
    run_python(LARQ_LAYERS, folder, legacy=True)
    return folder


def test_outputs_and_all_gradients_equal_larq_on_tensorflow(larq_layers):
    reference = dict(np.load(larq_layers / "layers.npz"))
    for i, (cls, kwargs, shape) in enumerate(LAYER_CASES):
        layer = getattr(bk.layers, cls)(**kwargs)
        layer.build(shape)
        x, weights, _ = layer_inputs(i, shape, [tuple(w.shape) for w in layer.get_weights()])
        layer.set_weights(weights)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
        grads = tape.gradient(y, [xt] + layer.trainable_weights,
                              output_gradients=tf.constant(reference[f"layer{i}_up"]))
        np.testing.assert_allclose(y.numpy(), reference[f"layer{i}_y"], atol=1e-5, err_msg=cls)
        np.testing.assert_allclose(grads[0].numpy(), reference[f"layer{i}_gx"], atol=1e-5, err_msg=cls)
        assert len(grads) - 1 == sum(k.startswith(f"layer{i}_gw") for k in reference), cls
        for j, g in enumerate(grads[1:]):
            np.testing.assert_allclose(g.numpy(), reference[f"layer{i}_gw{j}"], atol=1e-4, err_msg=f"{cls} weight {j}")


OTHER_BACKEND = textwrap.dedent(
    """
    import sys
    import numpy as np
    from biper_keras import layers
    from backend_suite.autodiff import value_and_vjp
    from larq_parity_cases import layer_mismatches

    found = layer_mismatches(dict(np.load(sys.argv[1] + "/layers.npz")), layers, value_and_vjp)
    print("\\n".join(found) if found else "LAYERS-OK")
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_outputs_and_input_gradients_equal_larq_on(backend, larq_layers):
    out = run_python(OTHER_BACKEND, larq_layers, backend=backend)
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
