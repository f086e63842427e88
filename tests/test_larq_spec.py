"""Larq's own unit tests (larq/{metrics,constraints,context,quantizers}_test.py),
rewritten for Keras 3 against this package; in-process, TensorFlow backend."""

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras import context, quantizers
from biper_keras.metrics import FlipRatio


def _np(x):
    return keras.ops.convert_to_numpy(x)


# --- metrics_test -------------------------------------------------------------------


def test_flip_ratio_config():
    m = FlipRatio(values_dtype="int16", name="mcv", dtype="float16")
    clone = FlipRatio.from_config(m.get_config())
    for metric in (m, clone):
        assert (metric.name, metric.dtype, metric.values_dtype) == ("mcv", "float16", "int16")


@pytest.mark.parametrize("explicit_build", [True, False])
def test_flip_ratio_counts_changed_entries(explicit_build):
    m = FlipRatio()
    if explicit_build:
        m.build((2,))
        assert _np(m.result()) == 0 and _np(m.total) == 0 and _np(m.count) == 0
    steps = [([1, 1], 0.0, 1, 0.0), ([2, 2], 1.0, 2, 1.0), ([1, 2], 1.5, 3, 0.75)]
    for values, total, count, result in steps:
        m.update_state(np.array(values))
        np.testing.assert_array_equal(_np(m._previous_values), values)
        assert (_np(m.total), _np(m.count), _np(m.result())) == (total, count, result)
    m.reset_state()
    assert _np(m.result()) == 0
    np.testing.assert_array_equal(_np(m._previous_values), [1, 2])


def test_flip_ratio_wrong_shape():
    m = FlipRatio()
    m.build((3,))
    with pytest.raises(Exception):
        m.update_state(np.array([1, 1]))


# --- constraints_test ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["weight_clip", "WeightClip"])
def test_weight_clip_by_name_and_serialization(name):
    fn = keras.constraints.get(name)
    assert isinstance(fn, bk.WeightClip) and fn.clip_value == 1.0
    again = keras.constraints.deserialize(keras.constraints.serialize(bk.WeightClip(0.75)))
    assert isinstance(again, bk.WeightClip) and again.clip_value == 0.75
    layer = keras.layers.Dense(3, kernel_constraint=name)  # a plain Keras layer too
    assert isinstance(layer.kernel_constraint, bk.WeightClip)


def test_weight_clip_clips():
    x = np.random.default_rng(0).normal(0, 1, 100).astype("float32")
    x[:3] = [0.0, 0.75, -0.75]
    np.testing.assert_allclose(_np(bk.WeightClip(clip_value=0.75)(x)), np.clip(x, -0.75, 0.75))
    with pytest.raises(ValueError, match="clip_value"):
        bk.WeightClip(0)


def test_weight_clip_acts_in_fit():
    model = keras.Sequential([keras.Input((4,)), bk.QuantDense(2, kernel_quantizer="ste_sign",
                                                                kernel_constraint="weight_clip")])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    model.fit(np.ones((8, 4)), 100 * np.ones((8, 2)), epochs=2, verbose=0)
    kernel = _np(model.layers[0].kernel)
    assert np.max(np.abs(kernel)) == 1.0


# --- context_test -------------------------------------------------------------------


def test_metrics_scope():
    assert context.get_training_metrics() == set()
    with context.metrics_scope(["flip_ratio"]):
        assert context.get_training_metrics() == {"flip_ratio"}
        layer = bk.QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    assert context.get_training_metrics() == set()
    assert layer.kernel_quantizer._custom_metrics == ["flip_ratio"]
    assert bk.QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip").kernel_quantizer._custom_metrics == []
    with pytest.raises(ValueError, match="unknown_metric"):
        with context.metrics_scope(["flip_ratio", "unknown_metric"]):
            pass


def test_quantized_scope_nests_and_restores():
    assert context.should_quantize() is False
    with context.quantized_scope(True):
        assert context.should_quantize() is True
        with context.quantized_scope(False):
            assert context.should_quantize() is False
        assert context.should_quantize() is True
    assert context.should_quantize() is False
    with pytest.raises(ValueError, match="quantize"):
        with context.quantized_scope("yes"):
            pass


def test_depthwise_and_separable_kernels_follow_quantized_scope():
    layer = bk.layers.QuantSeparableConv2D(4, 3, depthwise_quantizer="ste_sign", pointwise_quantizer="ste_tern")
    layer.build((None, 8, 8, 2))
    latent = [_np(layer.depthwise_kernel), _np(layer.pointwise_kernel)]
    assert not np.all(np.isin(latent[0], [-1.0, 1.0]))
    with context.quantized_scope(True):
        np.testing.assert_array_equal(_np(layer.depthwise_kernel), np.where(latent[0] >= 0, 1.0, -1.0))
        assert set(np.unique(_np(layer.pointwise_kernel))) <= {-1.0, 0.0, 1.0}
    depthwise = bk.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign")
    depthwise.build((None, 8, 8, 2))
    with context.quantized_scope(True):
        assert set(np.unique(_np(depthwise.depthwise_kernel))) == {-1.0, 1.0}
    assert not np.all(np.isin(_np(depthwise.kernel), [-1.0, 1.0]))


# --- quantizers_test ----------------------------------------------------------------

NEW = ["swish_sign", "magnitude_aware_sign", "ste_heaviside", "ste_tern", "dorefa_quantizer"]


@pytest.mark.parametrize("name", NEW + ["ste_sign", "approx_sign"])
def test_quantizer_serialization_and_keras_file(name, tmp_path):
    q = quantizers.get(name)
    again = quantizers.deserialize(quantizers.serialize(q))
    assert type(again) is type(q) and again.get_config() == q.get_config()
    model = keras.Sequential([keras.Input((5,)),
                              bk.QuantDense(3, input_quantizer=name, kernel_quantizer=name,
                                            kernel_constraint="weight_clip", name="d")])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("d").kernel_quantizer) is type(q)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_noop_needs_a_precision_and_backwards_compatible_names():
    assert quantizers.DoReFaQuantizer is quantizers.DoReFa
    assert quantizers.NoOpQuantizer is quantizers.NoOp
    q = quantizers.NoOp(precision=1)
    assert quantizers.deserialize(quantizers.serialize(q)).precision == 1
    with pytest.raises(ValueError, match="precision"):
        quantizers.NoOp(precision=0)


@pytest.mark.parametrize("kwargs, name", [
    ({"k_bit": 0}, "k_bit"), ({"mode": "kernel"}, "mode"),
])
def test_dorefa_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        quantizers.DoReFa(**kwargs)


@pytest.mark.parametrize("metrics", [["unknown"], "flip_ratio", [1]])
def test_quantizer_metrics_argument_is_checked(metrics):
    with pytest.raises(ValueError, match="metric"):
        quantizers.SteSign(metrics=metrics)


def test_metrics_argument_adds_one_metric_that_fit_reports():
    q = quantizers.SteSign(metrics=["flip_ratio"])
    model = keras.Sequential([keras.Input((6,)), bk.QuantDense(3, kernel_quantizer=q, kernel_constraint="weight_clip")])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    history = model.fit(np.ones((8, 6)), np.ones((8, 3)), epochs=1, batch_size=4, verbose=0)
    assert len(q.metrics) == 1 and f"flip_ratio/{q.name}" in history.history
    assert quantizers.get(quantizers.serialize(q))._custom_metrics == ["flip_ratio"]
