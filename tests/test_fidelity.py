"""Fidelity to the BiPer authors' PyTorch code: the training-time options of QuantConv2D
and the CIFAR builders, their conversion, and a step-by-step parity test of ResNet-20
and the recipe's SGD against a plain PyTorch re-implementation (tests/authors_reference.py)."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from larq_compute_engine.tflite.python.interpreter import Interpreter

import biper_keras as bk
from authors_reference import BinaryConv
from biper_keras.convert import convert_keras_model, op_histogram
from biper_keras.models import get_model
from helpers import randomize_batch_norms

HERE = pathlib.Path(__file__).parent


def _conv(**kw):
    layer = bk.QuantConv2D(4, 3, padding="same", use_bias=False, input_quantizer="approx_sign",
                           kernel_quantizer=bk.BiPer(omega=20.0), kernel_scale="channel", dtype="float64", **kw)
    layer.build((None, 8, 8, 3))
    return layer


# The quantizers are Keras layers of the global (float32) policy, so they round their
# float64 inputs: float32 tolerances here (tests/parity_worker.py runs all in float64).
ATOL = 1e-5


def _reference(layer, stride):
    return BinaryConv(np.asarray(layer._kernel), np.asarray(layer.alpha), stride, 20.0, binarize=True)


@pytest.mark.parametrize("stride", [1, 2])
def test_symmetric_padding_is_pytorchs_padding_1(stride):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
    layer = _conv(strides=stride, symmetric_padding=True, pad_values=0.0)
    reference = _reference(layer, stride).eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, atol=ATOL)
    keras_layer = _conv(strides=stride, pad_values=0.0)
    keras_layer.set_weights(layer.get_weights())
    keras_same = np.asarray(keras_layer(x))
    assert (np.abs(keras_same - expected).max() > 1e-3) == (stride == 2)  # Keras's SAME pads (0, 1) at stride 2
    # pad_values=1.0 pads the binarized input with +1 on both sides.
    ones = _conv(strides=stride, symmetric_padding=True, pad_values=1.0)
    ones.set_weights(layer.get_weights())
    padded = F.pad(torch.sign(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), (1, 1, 1, 1), value=1.0)
    kernel = torch.sign(torch.sin(20.0 * reference.weight.detach()))
    expected = (F.conv2d(padded, kernel, stride=stride) * reference.alpha.detach()).numpy().transpose(0, 2, 3, 1)
    for training in (False, True):
        np.testing.assert_allclose(np.asarray(ones(x, training=training)), expected, atol=ATOL)


def test_per_sample_normalization_matches_the_authors_gradient_and_only_in_training():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(0.2, 0.7, size=(3, 8, 8, 3))
    upstream = rng.normal(size=(3, 8, 8, 4))
    layer = _conv(normalize_inputs=True, symmetric_padding=True)
    plain = _conv(symmetric_padding=True)
    plain.set_weights(layer.get_weights())
    reference = _reference(layer, 1)

    import tensorflow as tf

    def keras_grad(conv, training):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = conv(xt, training=training)
            loss = tf.reduce_sum(y * upstream)
        return y.numpy(), tape.gradient(loss, xt).numpy()

    def torch_grad(training):
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
        reference.train(training)
        y = reference(xt)
        (y * torch.from_numpy(upstream.transpose(0, 3, 1, 2).copy())).sum().backward()
        return y.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1)

    y, g = keras_grad(layer, True)
    y_ref, g_ref = torch_grad(True)
    np.testing.assert_allclose(y, y_ref, atol=ATOL)
    np.testing.assert_allclose(g, g_ref, atol=ATOL)
    # The sign of a / std is the sign of a: same output as without it, other gradients.
    y_plain, g_plain = keras_grad(plain, True)
    np.testing.assert_array_equal(y, y_plain)
    assert np.abs(g - g_plain).max() > 1e-2
    # At inference it is off: the layer computes exactly what the plain one does.
    y_inf, g_inf = keras_grad(layer, False)
    y_plain_inf, g_plain_inf = keras_grad(plain, False)
    np.testing.assert_array_equal(y_inf, y_plain_inf)
    np.testing.assert_array_equal(g_inf, g_plain_inf)


def test_options_round_trip_and_bad_values():
    layer = bk.QuantConv2D(4, 3, padding="same", normalize_inputs=True, symmetric_padding=True)
    again = bk.QuantConv2D.from_config(layer.get_config())
    assert (again.normalize_inputs, again.symmetric_padding) == (True, True)
    with pytest.raises(ValueError, match="`normalize_inputs` must be True or False. Received: normalize_inputs=1"):
        bk.QuantConv2D(4, 3, normalize_inputs=1)
    with pytest.raises(ValueError, match="symmetric_padding=True` needs padding='same' and odd kernel sizes"):
        bk.QuantConv2D(4, 2, padding="same", symmetric_padding=True)
    with pytest.raises(TypeError, match="unexpected arguments: head_bn"):
        get_model("resnet20", head_bn=True)


def test_normalized_symmetric_resnet20_converts_fused_with_the_inference_graph_unchanged():
    # Every binary conv fused, the same ops with and without the (training-only)
    # normalization; symmetric +1 padding also fuses.
    histograms = []
    for normalize in (True, False):
        keras.utils.set_random_seed(0)
        model = get_model("resnet20", normalize_inputs=normalize, symmetric_padding=True)
        histograms.append(op_histogram(convert_keras_model(model)))
    assert histograms[0]["LceBconv2d"] == 18 and histograms[0] == histograms[1], histograms


def test_normalized_symmetric_binary_convs_match_lce():
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    binary = dict(input_quantizer="approx_sign", kernel_quantizer="biper", kernel_scale="channel", use_bias=False,
                  padding="same", pad_values=1.0, normalize_inputs=True, symmetric_padding=True)
    x = keras.Input((16, 16, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x))
    h = keras.layers.BatchNormalization()(bk.QuantConv2D(32, 3, strides=2, **binary)(h))
    h = keras.layers.BatchNormalization()(bk.QuantConv2D(32, 3, strides=2, **binary)(h))
    h = keras.layers.BatchNormalization()(bk.QuantConv2D(32, 3, **binary)(h))
    model = keras.Model(x, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
    randomize_batch_norms(model, rng)
    flatbuffer = convert_keras_model(model)
    ops = op_histogram(flatbuffer)
    # The stride-2 convs' inference graph pads with +1 before the binarizer: one float
    # PADV2 each, then a fused VALID LceBconv2d (LCE fuses a pad after the binarizer
    # as TF's SAME, (0, 1) at stride 2, which would be wrong).
    assert ops["LceBconv2d"] == 3 and ops["CONV_2D"] == 1 and ops["PADV2"] == 2, ops
    images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(Interpreter(flatbuffer).predict(images), model.predict(images, verbose=0),
                               rtol=1e-3, atol=1e-3)


def _parity(backend, steps):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_USE_LEGACY_KERAS", None)
    done = subprocess.run([sys.executable, str(HERE / "parity_worker.py"), str(steps)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Keras's BatchNormalization computes in float32 on the torch backend even for float64
# inputs (keras 3.15: result_type(torch.float64, "float32") is float32 there), so the
# torch run is float32-limited: fewer steps, looser bounds. TF runs in float64 throughout.
TOLERANCES = {"tensorflow": dict(steps=6, forward=1e-12, loss=1e-11, weight=1e-8),
              "torch": dict(steps=3, forward=1e-5, loss=1e-5, weight=3e-3)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_resnet20_and_the_recipes_sgd_match_the_authors_step_by_step(backend):
    tol = TOLERANCES[backend]
    result = _parity(backend, tol["steps"])
    for stage in ("stage1", "stage2"):
        r = result[stage]
        assert r["dtype"] == "float64"
        for mode in ("forward_train", "forward_inference"):  # layer by layer, in float64
            worst = max(r[mode], key=r[mode].get)
            assert r[mode][worst] < tol["forward"], (stage, mode, worst, r[mode][worst])
        # Keras's SAME at stride 2 parts from PyTorch at the first stride-2 conv.
        assert r["asymmetric_first_divergence"] == "s1b0c0_act"
        assert len(set(r["lrs"])) >= tol["steps"] - 1  # warm-up + cosine: the lr moves
        for k, (ours, theirs) in enumerate(r["losses"]):
            assert abs(ours - theirs) < tol["loss"] * max(1.0, abs(theirs)), (stage, k, ours, theirs)
        for name, diff in r["weights"].items():
            moved = r["moved"][name]
            assert moved > 0 and diff < tol["weight"] * max(moved, 1e-3), (stage, name, diff, moved)
