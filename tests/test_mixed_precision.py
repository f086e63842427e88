"""Mixed precision: the binary decisions are float32's bit for bit, a mixed model trains
and converts to the same fused LCE graph."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import biper_keras as bk
from biper_keras.convert import convert, op_histogram
from biper_keras.training import dtype_policy
from helpers import accuracy_of

POLICIES = ["mixed_bfloat16", "mixed_float16"]


policy = dtype_policy  # Keras's global policy inside the block, restored after it


def hard_weights(shape, omega=20.0, seed=0):
    """Laplace(0, 0.05) weights, a third of them within 1e-4 of a zero crossing of
    sin(omega * w): where a 16-bit copy of the weight lands on the wrong side."""
    rng = np.random.default_rng(seed)
    w = rng.laplace(0.0, 0.05, size=shape)
    near = rng.random(shape) < 1 / 3
    k = rng.integers(-3, 4, size=shape)
    w = np.where(near, k * math.pi / omega + rng.uniform(-1e-4, 1e-4, size=shape), w)
    return w.astype("float32")


def kernel_seen_by_the_conv(layer, x):
    seen = []
    original = layer.convolution_op
    layer.convolution_op = lambda inputs, kernel, **kw: (seen.append(kernel), original(inputs, kernel, **kw))[1]
    layer(x)
    layer.convolution_op = original
    return ops.convert_to_numpy(ops.cast(ops.stop_gradient(seen[0]), "float32"))


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("quantizer", sorted(bk.quantizers.ALIASES))  # BiPer, Larq's family, PC++'s
def test_quantized_kernel_equals_float32s_bit_for_bit(name, quantizer):
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 32)).astype("float32")
    w = hard_weights((3, 3, 32, 16))
    make = lambda: bk.QuantConv2D(16, 3, kernel_quantizer=quantizer, use_bias=False,  # noqa: E731
                                  kernel_constraint="weight_clip")
    reference = make()
    reference.build(x.shape)
    reference.kernel.assign(w)
    with bk.context.quantized_scope(True):
        expected = ops.convert_to_numpy(ops.stop_gradient(reference.kernel))
    with policy(name):
        layer = make()
        layer.build(x.shape)
        layer.kernel.assign(w)
        assert layer.compute_dtype != "float32" and layer.latent_kernel.dtype == "float32"
        got = kernel_seen_by_the_conv(layer, x)
    # Binary kernels (+-1, or +-alpha) are float32's bit for bit; the continuous ones
    # (BNN++'s soft sign in training, DoReFa's levels) are float32's rounded once.
    np.testing.assert_array_equal(got, np.asarray(ops.cast(ops.cast(expected, layer.compute_dtype), "float32")))
    # The test has teeth: quantizing the 16-bit copy Keras hands `call` flips signs.
    copy = ops.cast(ops.cast(w, layer.compute_dtype), "float32")
    flipped = np.sum(np.asarray(bk.quantizers.get(quantizer)(copy)) != expected)
    assert flipped > 0 or quantizer != "biper"


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("quantizer", ["approx_sign", "ste_sign", "swish_sign", "bnn_plus"])
def test_activation_quantizer_under_a_mixed_policy(name, quantizer):
    """Activations are 16-bit under a mixed policy (Keras casts the layer's input): the
    binarized input is the sign of that 16-bit value, in the compute dtype, and its
    gradient is the float32 gradient of the same values, rounded once."""
    import tensorflow as tf

    x16 = ops.cast(np.random.default_rng(2).normal(scale=0.8, size=(4, 64)).astype("float32"),
                   name.split("_")[1])  # bfloat16 or float16
    x32 = ops.cast(x16, "float32")
    q = bk.quantizers.get(quantizer)

    def value_and_gradient(x):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = q(x)
        return y, tape.gradient(y, x)

    y16, g16 = value_and_gradient(x16)
    y32, g32 = value_and_gradient(x32)
    assert y16.dtype == x16.dtype and g16.dtype == x16.dtype
    np.testing.assert_array_equal(np.asarray(ops.cast(y16, "float32")), np.asarray(y32))
    assert set(np.unique(np.asarray(y32))) <= {-1.0, 1.0}
    tolerance = 2 ** -7 if name == "mixed_bfloat16" else 2 ** -10  # one rounding of the 16-bit format
    np.testing.assert_allclose(np.asarray(ops.cast(g16, "float32")), np.asarray(g32), rtol=2 * tolerance,
                               atol=2 * tolerance)
    assert np.any(np.asarray(g32) != 0) and np.all(np.isfinite(np.asarray(g32)))


@pytest.mark.parametrize("name", POLICIES)
def test_batch_norm_under_a_mixed_policy_equals_keras(name):
    """bk's BatchNormalization (fused on TensorFlow for float32 inputs) falls back to
    Keras's own code for 16-bit inputs: same outputs and moving statistics as Keras's."""
    x = np.random.default_rng(3).normal(1.0, 2.0, size=(8, 6, 6, 16)).astype("float32")
    with policy(name):
        ours, theirs = bk.layers.BatchNormalization(), keras.layers.BatchNormalization()
        y_ours, y_theirs = ours(x, training=True), theirs(x, training=True)
        assert y_ours.dtype == y_theirs.dtype != "float32"
    np.testing.assert_array_equal(np.asarray(ops.cast(y_ours, "float32")), np.asarray(ops.cast(y_theirs, "float32")))
    np.testing.assert_array_equal(np.asarray(ours.moving_mean), np.asarray(theirs.moving_mean))
    np.testing.assert_array_equal(np.asarray(ours.moving_variance), np.asarray(theirs.moving_variance))


def small_model():
    binary = dict(padding="same", pad_values=1.0, input_quantizer="approx_sign", kernel_quantizer="biper",
                  kernel_scale="channel", use_bias=False)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(16, 3, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(32, 3, strides=2, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10, dtype="float32")(h))  # float32 logits


@pytest.mark.parametrize("name", POLICIES)
def test_mixed_model_trains_and_converts_to_the_float32_graph(name):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 16, 16, 3)).astype("float32"), rng.integers(0, 10, 16)
    with policy(name):
        keras.utils.set_random_seed(0)
        model = small_model()
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert type(model.optimizer).__name__ == ("LossScaleOptimizer" if name == "mixed_float16" else "SGD")
        before = [np.array(w) for w in model.trainable_weights]
        loss = model.train_on_batch(x, y)
        assert math.isfinite(float(loss))
        assert all(w.dtype == "float32" for w in model.weights)
        assert any(not np.array_equal(a, np.array(b)) for a, b in zip(before, model.trainable_weights))
    bk.convert.randomize_batch_norms(model, 0)
    result = convert(model)  # strict: every binary conv fused, parity checked
    keras.utils.set_random_seed(0)
    twin = small_model()  # the same model in float32
    twin.set_weights(model.get_weights())
    reference = convert(twin)
    assert op_histogram(result.flatbuffer) == op_histogram(reference.flatbuffer)
    assert op_histogram(result.flatbuffer)["LceBconv2d"] == 2 and result.parity.passed


def test_recipe_precision_is_validated():
    from biper_keras.training import Recipe

    with pytest.raises(ValueError, match="`precision` must be one of float32, mixed_bfloat16, mixed_float16"):
        Recipe(precision="bfloat16").validate()


@pytest.mark.slow
def test_train_under_a_mixed_recipe_keeps_float32_weights_and_restores_the_policy(tmp_path):
    import pathlib

    from biper_keras import data as data_lib
    from biper_keras.training import Recipe, Stage, train

    sample = pathlib.Path(data_lib.__file__).parent / "sample_data" / "cifar10"
    data = data_lib.image_datasets(sample, batch_size=25, limit_per_split=50)
    import tiny_model  # a small BiPer CNN: the check is the policy's, not ResNet-20's

    recipe = Recipe(model=tiny_model.NAME, kernel_quantizer="ste_sign", stage2=Stage(1, 0.004, 0.00016, 0.0),
                    batch_size=25, warmup_epochs=0, precision="mixed_bfloat16")
    summary = train(recipe, data, tmp_path / "run", verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # restored
    model = keras.models.load_model(tmp_path / "run" / "stage2" / "model.keras")
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)
    assert all(w.dtype == "float32" for w in model.weights)
    assert summary["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(model, data.test), abs=1e-6)
    assert op_histogram(convert(model).flatbuffer)["LceBconv2d"] == 2  # the tiny CNN's binary convs, fused
