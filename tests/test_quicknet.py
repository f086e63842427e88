"""QuickNet against Larq Zoo's (layer by layer: parameters and output shapes, all three
sizes), converted with every binary conv fused and the flatbuffer run, and trainable."""

import json

import keras
import numpy as np
import pytest

from biper_keras.convert import convert
from biper_keras.models import get_model
from shared_processes import script, LARQ_SCRIPTS, script_output

NAMES = ["quicknet", "quicknet_small", "quicknet_large"]

LARQ_ZOO = script("quicknet_larq_zoo.py")

# Larq Zoo's class -> ours (float convs are plain Keras layers here).
SAME_KIND = {"QuantConv2D": ("QuantConv2D", "Conv2D"), "QuantDepthwiseConv2D": ("DepthwiseConv2D",),
             "DepthwiseConv2D": ("DepthwiseConv2D",), "BatchNormalization": ("BatchNormalization",),
             "QuantDense": ("Dense",)}


LARQ_SCRIPTS["larq_zoo"] = LARQ_ZOO


@pytest.fixture
def zoo(larq_results):
    out = script_output(larq_results[1], "larq_zoo")
    return json.loads([l for l in out.splitlines() if l.startswith("ZOO ")][-1][4:])


@pytest.mark.parametrize("name", NAMES)
def test_layout_and_parameter_count_equal_larq_zoo(zoo, name):
    model = get_model(name)
    ours = [[type(l).__name__, l.count_params(), list(l.output.shape[1:])] for l in model.layers if l.count_params()]
    theirs = zoo[name]["layers"]
    assert len(ours) == len(theirs)
    for (our_class, our_count, our_shape), (their_class, their_count, their_shape) in zip(ours, theirs):
        assert our_class in SAME_KIND[their_class] and (our_count, our_shape) == (their_count, their_shape)
    assert model.count_params() == zoo[name]["params"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == zoo[name]["trainable"]
    binary = [l for l in model.layers if type(l).__name__ == "QuantConv2D"]
    blocks = {"quicknet": 16, "quicknet_small": 16, "quicknet_large": 32}[name]
    assert len(binary) == blocks and all(l.kernel_quantizer.clip_value == 1.25 for l in binary)


@pytest.mark.slow
def test_quicknet_converts_with_every_binary_conv_fused_and_runs():
    keras.utils.set_random_seed(0)
    model = get_model("quicknet", input_shape=(64, 64, 3), num_classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # random statistics: no exact zeros at the binarizers
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
                layer.beta.assign(rng.normal(0.0, 0.3, n))
    result = convert(model)
    convs = [f for f in result.layers if f.kind == "conv"]
    assert len(convs) == 16 and all(f.fused for f in convs), result.table()
    assert result.ops["LceBconv2d"] == 16, result.ops
    assert result.parity.passed, result.parity
    assert result.size < result.float32_size / 4


@pytest.mark.slow
def test_quicknet_trains_and_its_float_twin_builds():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = get_model("quicknet_small", input_shape=(32, 32, 3), num_classes=4)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 4, 16)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.9 * before
    twin = get_model("quicknet_small", input_shape=(32, 32, 3), num_classes=4,
                     input_quantizer=None, kernel_quantizer=None)
    assert twin.count_params() == model.count_params()
    assert not any(type(l).__name__ == "QuantConv2D" for l in twin.layers)
