"""Mixed precision on the active backend: binary kernels equal float32's bit for bit, and
a mixed model trains a step (the conversion side is tested on TF in test_mixed_precision)."""

import math

import keras
import numpy as np
import pytest
from keras import ops
from test_mixed_precision import POLICIES, hard_weights, kernel_seen_by_the_conv, policy, small_model

import biper_keras as bk


@pytest.mark.parametrize("name", POLICIES)
def test_biper_kernel_equals_float32s_and_a_step_trains(name):
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 32)).astype("float32")
    w = hard_weights((3, 3, 32, 16))
    reference = bk.QuantConv2D(16, 3, kernel_quantizer="biper", use_bias=False, kernel_constraint="weight_clip")
    reference.build(x.shape)
    reference.kernel.assign(w)
    with bk.context.quantized_scope(True):
        expected = ops.convert_to_numpy(ops.stop_gradient(reference.kernel))
    with policy(name):
        layer = bk.QuantConv2D(16, 3, kernel_quantizer="biper", use_bias=False, kernel_constraint="weight_clip")
        layer.build(x.shape)
        layer.kernel.assign(w)
        np.testing.assert_array_equal(kernel_seen_by_the_conv(layer, x), expected)
        model = small_model()
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        loss = model.train_on_batch(rng.normal(size=(8, 16, 16, 3)).astype("float32"), rng.integers(0, 10, 8))
        assert math.isfinite(float(loss)) and all(v.dtype == "float32" for v in model.weights)
