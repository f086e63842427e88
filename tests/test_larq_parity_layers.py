"""Larq's QuantConv1D, QuantDepthwiseConv2D, QuantSeparableConv2D (and QuantConv2D,
QuantDense with the newer quantizers) against Larq 0.14 itself: same arguments, same
weights, same outputs and gradients; Larq's own profile model (larq/models_test.py)
summarized alike; the bridge both ways; training and `.keras` round trips on every
backend."""

import json
import textwrap

import numpy as np
import pytest

import biper_keras as bk
from larq_parity_cases import LAYER_CASES, built_layer, tf_value_and_grads
from shared_processes import BACKEND_SCRIPTS, LARQ_SCRIPTS, script_output

LARQ_LAYERS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import larq as lq
    from larq_parity_cases import LAYER_CASES, built_layer, tf_value_and_grads

    out = {}
    for i in range(len(LAYER_CASES)):
        layer, x, rng = built_layer(lq.layers, i)
        draw = lambda shape: rng.normal(size=shape).astype("float32")
        y, up, grads = tf_value_and_grads(layer, x, draw)
        out[f"layer{i}_y"], out[f"layer{i}_up"], out[f"layer{i}_gx"] = y, up, grads[0]
        for j, g in enumerate(grads[1:]):
            out[f"layer{i}_gw{j}"] = g
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


BACKEND_SCRIPTS["layer_parity"] = (OTHER_BACKEND, ("jax", "torch"))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_outputs_and_input_gradients_equal_larq_on(backend, larq_layers, backend_results):
    out = script_output(backend_results(backend), "layer_parity")
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


BRIDGE = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    import larq as lq
    import biper_keras as bk
    from biper_keras import larq_interop

    clip = lq.constraints.WeightClip(0.8)
    two_d = tf.keras.Sequential([
        tf.keras.Input((9, 9, 3)),
        tf.keras.layers.Conv2D(8, 3, padding="same", name="stem", kernel_regularizer=tf.keras.regularizers.L2(1e-4)),
        tf.keras.layers.BatchNormalization(name="bn0"),
        lq.layers.QuantDepthwiseConv2D(3, padding="same", pad_values=1.0, depth_multiplier=2, name="dw",
                                       input_quantizer="ste_sign", depthwise_quantizer="magnitude_aware_sign",
                                       depthwise_constraint=clip),
        tf.keras.layers.BatchNormalization(name="bn1"),
        lq.layers.QuantSeparableConv2D(8, 3, strides=2, padding="same", pad_values=1.0, name="sep",
                                       input_quantizer=lq.quantizers.SteTern(threshold_value=0.1),
                                       depthwise_quantizer="ste_sign", pointwise_quantizer=lq.quantizers.DoReFa(3, "weights"),
                                       depthwise_constraint="weight_clip", pointwise_constraint="weight_clip"),
        tf.keras.layers.BatchNormalization(name="bn2"),
        lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, name="qc", input_quantizer="swish_sign",
                              kernel_quantizer=lq.quantizers.SteHeaviside(clip_value=0.5), kernel_constraint="weight_clip"),
        tf.keras.layers.GlobalAveragePooling2D(name="gap"),
        lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer=lq.quantizers.NoOp(precision=1), name="qd"),
    ])
    one_d = tf.keras.Sequential([
        tf.keras.Input((12, 3)),
        lq.layers.QuantConv1D(6, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                              kernel_quantizer="ste_sign", kernel_constraint="weight_clip", name="c1"),
        lq.layers.QuantConv1D(6, 3, strides=2, input_quantizer="approx_sign", kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip", name="c2"),
        tf.keras.layers.Flatten(name="flat"),
    ])
    rng = np.random.default_rng(0)
    for model in (two_d, one_d):
        model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") if "variance" not in w.name
                           else rng.uniform(0.5, 2, w.shape).astype("float32") for w in model.weights])
        xs = rng.normal(size=(4,) + tuple(model.input_shape[1:])).astype("float32")
        expected = model.predict(xs, verbose=0)
        ours = larq_interop.from_larq(model)
        np.testing.assert_allclose(ours.predict(xs, verbose=0), expected, atol=1e-4)
        back = larq_interop.to_larq(ours)
        np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-4)
        for a in model.layers:
            b, c = ours.get_layer(a.name), back.get_layer(a.name)
            assert type(a) is type(c), (a, c)
            assert type(b).__name__ == type(a).__name__ or type(b).__module__.startswith("keras"), (a, b)
            for arg in ("kernel_quantizer", "input_quantizer", "depthwise_quantizer", "pointwise_quantizer"):
                qa, qb = getattr(a, arg, None), getattr(b, arg, None)
                assert (qa is None) == (qb is None), (a.name, arg)
                if qa is not None:
                    assert type(qa).__name__ == type(qb).__name__ == type(getattr(c, arg)).__name__, (a.name, arg)
            for arg in ("kernel_constraint", "depthwise_constraint", "pointwise_constraint"):
                ca, cb = getattr(a, arg, None), getattr(b, arg, None)
                assert (ca is None) == (cb is None), (a.name, arg)
                if ca is not None:
                    assert isinstance(cb, bk.WeightClip) and cb.clip_value == float(ca.clip_value), (a.name, arg)
                    assert isinstance(getattr(c, arg), lq.constraints.WeightClip), (a.name, arg)
        if model is two_d:
            assert ours.get_layer("stem").kernel_regularizer.get_config() == {"l2": 1e-4} or \\
                abs(ours.get_layer("stem").kernel_regularizer.l2 - 1e-4) < 1e-9
            assert ours.get_layer("sep").pointwise_quantizer.precision == 3
            assert ours.get_layer("sep").input_quantizer.threshold_value == 0.1
    print("BRIDGE-NEW-OK")
    """
)


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
