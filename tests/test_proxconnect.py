"""PC++ family on TensorFlow: registry, serialization, hard binarization and LCE."""

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras import quantizers
from biper_keras.convert import convert_keras_model, op_histogram
from biper_keras.training import MuSchedule, annealed_quantizers, harden


@pytest.mark.parametrize(
    "alias,cls",
    [("bc", quantizers.BinaryConnect), ("bnn", quantizers.BNN),
     ("bnn_plus", quantizers.BNNPlus), ("bnn_pp", quantizers.BNNPlusPlus)],
)
def test_aliases_and_config_round_trip(alias, cls):
    q = quantizers.get(alias)
    assert type(q) is cls and isinstance(q, quantizers.ForwardBackwardQuantizer)
    restored = quantizers.get(quantizers.serialize(q))
    assert type(restored) is cls and restored.get_config() == q.get_config()


def test_mu_lives_in_a_saved_non_trainable_variable(tmp_path):
    q = quantizers.BNNPlusPlus(mu=2.0)
    model = keras.Sequential([keras.Input((4,)), bk.QuantDense(3, kernel_quantizer=q)])
    assert any(v is q.mu for v in model.non_trainable_variables)
    q.mu.assign(7.5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert float(np.array(loaded.layers[0].kernel_quantizer.mu)) == 7.5


def _bnn_pp_cnn():
    binary = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="ste_sign")
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(x)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(16, 3, kernel_quantizer=quantizers.BNNPlusPlus(mu=4.0), **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(16, 3, strides=2, kernel_quantizer="bnn_pp", **binary)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10)(h))


def test_harden_leaves_only_plus_minus_one_and_fuses_to_lce():
    model = _bnn_pp_cnn()
    soft_ops = op_histogram(convert_keras_model(model))
    assert soft_ops["LceBconv2d"] == 0  # sign-Swish weights are not binary

    hard = harden(model)
    binary_layers = [l for l in hard.layers if isinstance(l, bk.QuantConv2D)]
    assert all(l.kernel_quantizer.hard for l in binary_layers)
    for layer in binary_layers:
        with bk.context.quantized_scope(True):
            kernel = np.array(layer.kernel)
        assert set(np.unique(kernel)) == {-1.0, 1.0}
        np.testing.assert_array_equal(kernel, np.where(np.array(layer._kernel) >= 0, 1.0, -1.0))
    for a, b in zip(model.weights, hard.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    assert op_histogram(convert_keras_model(hard))["LceBconv2d"] == 2


def test_annealed_quantizers_are_found():
    assert len(annealed_quantizers(_bnn_pp_cnn())) == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(start=0.0, end=1.0, epochs=3), "`start` must be a finite number > 0"),
        (dict(start=2.0, end=1.0, epochs=3), "`end` must be >= `start`"),
        (dict(start=1.0, end=2.0, epochs=0), "`epochs` must be an integer > 0"),
        (dict(start=1.0, end=2.0, epochs=3, schedule="cosine"), "`schedule` must be one of linear, exponential"),
    ],
)
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MuSchedule(**kwargs)


@pytest.mark.parametrize("mu", [0.0, -1.0, float("nan"), "5"])
def test_bad_mu(mu):
    with pytest.raises(ValueError, match="`mu` must be a finite number > 0"):
        quantizers.BNNPlusPlus(mu=mu)
    with pytest.raises(ValueError, match="`mu`"):
        quantizers.BNNPlus(mu=mu)


def test_schedule_without_annealed_quantizers_says_so():
    model = keras.Sequential([keras.Input((4,)), bk.QuantDense(2, kernel_quantizer="bnn")])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no quantizer with an annealed parameter mu"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), epochs=1, verbose=0,
                  callbacks=[MuSchedule(1.0, 2.0, epochs=1)])


def test_harden_rejects_non_models():
    with pytest.raises(TypeError, match="must be a keras.Model"):
        harden("model.keras")


def test_harden_copes_with_a_quantizer_shared_by_layers():
    shared = quantizers.BNNPlusPlus(mu=3.0)
    binary = dict(kernel_quantizer=shared, input_quantizer="ste_sign", use_bias=False)
    model = keras.Sequential([keras.Input((8, 8, 3)), bk.QuantConv2D(4, 3, **binary),
                              bk.QuantConv2D(4, 3, **binary)])
    hard = harden(model)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    for a, b in zip(model.layers, hard.layers):
        np.testing.assert_array_equal(np.array(a._kernel), np.array(b._kernel))
        assert b.kernel_quantizer.hard and float(np.array(b.kernel_quantizer.mu)) == 3.0
    assert np.all(np.isfinite(np.array(hard(x))))


def test_model_builder_gives_each_layer_its_own_quantizer():
    from biper_keras.models import get_model

    model = get_model("resnet20", kernel_quantizer=quantizers.BNNPlusPlus(mu=2.0))
    assert len(annealed_quantizers(model)) == 18
