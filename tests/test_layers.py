"""QuantConv2D / QuantDense on the TensorFlow backend: values against an independent
computation, configs, saving, and bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import biper_keras as bk
from biper_keras import quantizers

RNG = np.random.default_rng(0)


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0).astype("float32")


CONV_GEOMETRIES = [(9, 3, 1, 1), (9, 3, 2, 1), (8, 3, 2, 1), (10, 5, 3, 1), (9, 3, 1, 2), (7, 1, 2, 1)]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("size,kernel,strides,dilation", CONV_GEOMETRIES)
def test_conv_with_pad_values_one_matches_explicit_computation(size, kernel, strides, dilation, training):
    layer = bk.QuantConv2D(
        6, kernel, strides=strides, dilation_rate=dilation, padding="same", pad_values=1.0,
        input_quantizer="ste_sign", kernel_quantizer=bk.BiPer(omega=7.0),
        kernel_scale="channel", use_bias=True, bias_initializer="random_normal",
    )
    x = RNG.normal(size=(2, size, size, 3)).astype("float32")
    y = np.array(layer(x, training=training))  # training: conv_SAME + border term

    # Independent: numpy binarization, SAME pad amounts from the output size, pad with +1.
    w = np.array(layer._kernel)
    k = _sign(np.sin(7.0 * w)) * np.array(layer.alpha)
    out = math.ceil(size / strides)
    extent = (kernel - 1) * dilation + 1
    total = max((out - 1) * strides + extent - size, 0)
    pads = ((0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2), (0, 0))
    xb = np.pad(_sign(x), pads, constant_values=1.0)
    expected = tf.nn.conv2d(xb, k, strides, "VALID", dilations=dilation).numpy() + np.array(layer.bias)

    assert y.shape == (2, out, out, 6)
    assert y.shape == keras.layers.Conv2D(6, kernel, strides=strides, dilation_rate=dilation, padding="same").compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size,kernel,strides,dilation", CONV_GEOMETRIES)
def test_training_path_gradients_equal_the_explicit_pad_gradients(size, kernel, strides, dilation):
    layer = bk.QuantConv2D(
        5, kernel, strides=strides, dilation_rate=dilation, padding="same", pad_values=1.0,
        input_quantizer="approx_sign", kernel_quantizer=bk.BiPer(omega=3.0), kernel_scale="channel",
    )
    x = tf.constant(RNG.normal(size=(3, size, size, 4)).astype("float32"))
    layer(x)
    grads = {}
    for training in (True, False):  # False: the explicit pad + VALID conv
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.sin(tf.reshape(tf.range(tf.size(y), dtype=y.dtype), y.shape) * 0.37))
        grads[training] = tape.gradient(loss, [x, layer._kernel, layer.alpha])
    for fast, reference in zip(grads[True], grads[False]):
        scale = float(tf.reduce_max(tf.abs(reference)))
        assert scale > 0
        np.testing.assert_allclose(fast.numpy(), reference.numpy(), atol=1e-5 * scale)


def test_the_xla_compiled_training_path_equals_the_op_by_op_one():
    # Under XLA (Keras's jit_compile on TF) the +1 padding is an explicit pad that XLA
    # fuses, not the border term: the same values and gradients either way.
    layer = bk.QuantConv2D(5, 3, strides=2, padding="same", pad_values=1.0, input_quantizer="approx_sign",
                           kernel_quantizer=bk.BiPer(omega=3.0), kernel_scale="channel", normalize_inputs=True)
    x = tf.constant(RNG.normal(size=(3, 9, 9, 4)).astype("float32"))
    layer(x)
    routes = []

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(tf.reshape(tf.range(tf.size(y), dtype=y.dtype), y.shape) * 0.37))
        return [y, *tape.gradient(loss, [x, layer._kernel, layer.alpha])]

    original = layer._ones_padded_conv_by_border
    layer._ones_padded_conv_by_border = lambda *a: routes.append("border") or original(*a)
    eager, xla = tf.function(step)(x), tf.function(step, jit_compile=True)(x)
    assert routes == ["border"]  # traced twice, the border term once: not under XLA
    for a, b in zip(xla, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * float(tf.reduce_max(tf.abs(b))))


def test_zero_padding_equals_keras_conv_on_binarized_operands():
    layer = bk.QuantConv2D(4, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
    x = RNG.normal(size=(1, 6, 6, 2)).astype("float32")
    y = np.array(layer(x))
    expected = tf.nn.conv2d(_sign(x), _sign(np.array(layer._kernel)), 1, "SAME").numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_kernel_is_plus_minus_alpha_in_quantized_scope_and_latent_outside():
    layer = bk.QuantConv2D(5, 3, kernel_quantizer="biper", kernel_scale="channel")
    layer.build((None, 8, 8, 4))
    alpha = np.array(layer.alpha)
    assert np.all((alpha >= 0) & (alpha < 1))
    with bk.context.quantized_scope(True):
        q = np.array(layer.kernel)
        with bk.context.quantized_scope(False):
            np.testing.assert_array_equal(np.array(layer.kernel), np.array(layer._kernel))
        np.testing.assert_array_equal(np.array(layer.kernel), q)
    np.testing.assert_allclose(np.abs(q), np.broadcast_to(alpha, q.shape), rtol=1e-6)
    assert not np.all(np.isin(np.array(layer._kernel), [-1.0, 1.0]))
    np.testing.assert_array_equal(np.array(layer.kernel), np.array(layer._kernel))


def test_dense_matches_explicit_computation():
    layer = bk.QuantDense(7, input_quantizer="approx_sign", kernel_quantizer=bk.BiPer(omega=3.0), kernel_scale="channel")
    x = RNG.normal(size=(4, 11)).astype("float32")
    y = np.array(layer(x))
    k = _sign(np.sin(3.0 * np.array(layer._kernel))) * np.array(layer.alpha)
    np.testing.assert_allclose(y, _sign(x) @ k + np.array(layer.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: bk.QuantConv2D(8, (3, 5), strides=2, padding="same", pad_values=1.0,
                               input_quantizer="approx_sign", kernel_quantizer=bk.BiPer(omega=12.5, binarize=False),
                               kernel_scale="channel", kernel_regularizer=bk.SinSquared(0.05, 12.5), name="c"),
        lambda: bk.QuantDense(3, input_quantizer=bk.SteSign(clip_value=None), kernel_quantizer="ste_sign", name="d"),
    ],
)
def test_config_round_trip_is_exact(layer):
    layer = layer()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config


def test_keras_file_round_trip_keeps_latent_weights(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        bk.QuantConv2D(4, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                       kernel_quantizer="biper", kernel_scale="channel"),
        keras.layers.Flatten(),
        bk.QuantDense(2, input_quantizer="ste_sign", kernel_quantizer="biper", kernel_scale="channel"),
    ])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # The saved kernel is the latent real weight, not its binarized value.
    assert not np.all(np.isin(np.abs(np.array(loaded.layers[0]._kernel)), [1.0]))
    x = RNG.normal(size=(3, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_sin_squared_regularizer_value_and_config():
    reg = bk.SinSquared(tau=0.037, omega=20.0)
    w = RNG.normal(scale=0.1, size=(3, 3, 4, 8)).astype("float32")
    np.testing.assert_allclose(float(reg(w)), 0.037 * np.mean(np.sin(20.0 * w.astype("float64")) ** 2), rtol=1e-5)
    assert bk.SinSquared.from_config(reg.get_config()).get_config() == reg.get_config()
    layer = bk.QuantDense(2, kernel_quantizer="biper", kernel_regularizer=reg)
    layer.build((None, 5))
    np.testing.assert_allclose(float(layer.losses[0]), float(reg(layer._kernel)), rtol=1e-6)


# --- the quantizer registry ------------------------------------------------------


def test_get_accepts_every_identifier_form():
    assert isinstance(quantizers.get("biper"), bk.BiPer)
    assert isinstance(quantizers.get("BiPer"), bk.BiPer)
    assert isinstance(quantizers.get("ste_sign"), bk.SteSign)
    assert isinstance(quantizers.get("approx_sign"), bk.ApproxSign)
    assert quantizers.get(None) is None
    q = bk.BiPer(omega=4.0)
    assert quantizers.get(q) is q
    assert quantizers.get(quantizers.serialize(q)).omega == 4.0
    assert quantizers.get({"class_name": "biper", "config": {"omega": 3.0}}).omega == 3.0
    fn = keras.ops.tanh
    assert quantizers.get(fn) is fn


def test_precision():
    assert bk.BiPer().precision == 1 and bk.BiPer(binarize=False).precision == 32
    assert bk.SteSign().precision == 1 and bk.ApproxSign().precision == 1


# --- bad input: one ValueError naming the argument and what is allowed ---------------


@pytest.mark.parametrize("omega", [0, -1.0, float("nan"), float("inf"), "20", None, True])
def test_biper_rejects_bad_omega(omega):
    with pytest.raises(ValueError, match=r"`omega` must be a finite number > 0.*omega="):
        bk.BiPer(omega=omega)


def test_biper_rejects_non_bool_binarize():
    with pytest.raises(ValueError, match="`binarize` must be True or False"):
        bk.BiPer(binarize="yes")


@pytest.mark.parametrize("clip", [0, -0.5, float("nan")])
def test_ste_sign_rejects_bad_clip(clip):
    with pytest.raises(ValueError, match="`clip_value`"):
        bk.SteSign(clip_value=clip)


@pytest.mark.parametrize("name", ["bipper", "sign", ""])
def test_unknown_quantizer_names_list_the_known_ones(name):
    with pytest.raises(ValueError, match=r"Unknown quantizer .*Known quantizers: .*approx_sign.*biper.*ste_sign"):
        quantizers.get(name)
    with pytest.raises(ValueError, match="Unknown quantizer"):
        bk.QuantConv2D(4, 3, kernel_quantizer=name)


@pytest.mark.parametrize("pad_values", [0.5, -1, 2, "1", True])
def test_pad_values_other_than_zero_or_one(pad_values):
    with pytest.raises(ValueError, match=r"`pad_values` must be 0.0 or 1.0.*pad_values="):
        bk.QuantConv2D(4, 3, padding="same", pad_values=pad_values)


def test_kernel_scale_values():
    with pytest.raises(ValueError, match=r"`kernel_scale` must be None or 'channel'"):
        bk.QuantDense(4, kernel_scale="tensor")


def test_regularizer_rejects_bad_tau():
    with pytest.raises(ValueError, match="`tau`"):
        bk.SinSquared(tau=-1.0)


def test_same_pad_with_stride_needs_static_sizes():
    layer = bk.QuantConv2D(4, 3, strides=2, padding="same", pad_values=1.0, name="strided")
    with pytest.raises(ValueError, match="strided.*static spatial input sizes"):
        layer._same_pad_width((None, None, None, 3))


# --- the fused batch norm ------------------------------------------------------------


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_fused_batch_norm_matches_keras(center, scale):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(2.0, 3.0, size=(8, 5, 7, 6)).astype("float32"))
    up = tf.constant(rng.normal(size=x.shape).astype("float32"))
    ref = keras.layers.BatchNormalization(momentum=0.9, center=center, scale=scale)
    ours = bk.BatchNormalization(momentum=0.9, center=center, scale=scale)
    for layer in (ref, ours):
        layer.build(x.shape)
    if scale:
        ref.gamma.assign(rng.uniform(0.5, 1.5, 6))
        ours.gamma.assign(ref.gamma)
    if center:
        ref.beta.assign(rng.normal(size=6))
        ours.beta.assign(ref.beta)
    assert ours._can_fuse(x, True, None)
    results = []
    for layer in (ref, ours):
        for _ in range(3):  # moving statistics accumulate over steps
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * up)
            grads = tape.gradient(loss, [x] + layer.trainable_weights)
        results.append((y.numpy(), [g.numpy() for g in grads], layer.moving_mean.numpy(),
                        layer.moving_variance.numpy(), layer(x, training=False).numpy()))
    (y0, g0, m0, v0, i0), (y1, g1, m1, v1, i1) = results
    np.testing.assert_allclose(y1, y0, atol=2e-6)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(m1, m0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    np.testing.assert_allclose(i1, i0, atol=2e-6)


def test_fused_batch_norm_falls_back_where_it_cannot_fuse():
    layer = bk.BatchNormalization()
    x2d = tf.ones((4, 3))
    layer.build(x2d.shape)
    assert not layer._can_fuse(x2d, True, None)
    assert not layer._can_fuse(tf.ones((2, 4, 4, 3)), False, None)
    np.testing.assert_allclose(layer(x2d, training=True).numpy(), keras.layers.BatchNormalization()(x2d, training=True).numpy())
    assert type(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))) is bk.BatchNormalization


def test_sin_squared_takes_omega_from_the_quantizer_it_regularizes():
    layer = bk.QuantConv2D(4, 3, kernel_quantizer=bk.BiPer(omega=12.5), kernel_regularizer=bk.SinSquared(0.05))
    assert layer.kernel_regularizer.omega == 12.5
    layer.build((None, 8, 8, 3))
    w = np.asarray(layer.latent_kernel, dtype=np.float64)
    np.testing.assert_allclose(float(layer.losses[0]), 0.05 * np.mean(np.sin(12.5 * w) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match=r"SinSquared\(omega=20\) regularizes a kernel quantized with BiPer\(omega=12.5\)"):
        bk.QuantDense(2, kernel_quantizer=bk.BiPer(omega=12.5), kernel_regularizer=bk.SinSquared(0.05, omega=20.0))
    with pytest.raises(ValueError, match="without omega takes it from a BiPer"):
        bk.QuantDense(2, kernel_quantizer="ste_sign", kernel_regularizer=bk.SinSquared(0.05))
    with pytest.raises(ValueError, match="has no omega"):
        bk.SinSquared(0.05)(np.zeros(3, "float32"))
