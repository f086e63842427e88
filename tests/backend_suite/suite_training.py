"""The same layer code trains on real CIFAR-10 images and round-trips through .keras,
on the active backend."""

import keras
import numpy as np
from cifar import cifar_subset
from helpers import randomize_batch_norms

import biper_keras as bk


def small_bnn(omega=20.0):
    keras.utils.set_random_seed(1)
    binary = dict(
        padding="same",
        pad_values=1.0,
        input_quantizer="approx_sign",
        kernel_quantizer=bk.BiPer(omega=omega),
        kernel_scale="channel",
        use_bias=False,
    )
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            bk.QuantConv2D(32, 3, strides=2, **binary),
            keras.layers.BatchNormalization(),
            bk.QuantConv2D(32, 3, **binary),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            bk.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="biper"),
        ]
    )


def test_bnn_trains_on_real_images(tmp_path):
    x, y = cifar_subset(per_class=8)
    model = small_bnn()
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    latent_before = [np.array(layer._kernel) for layer in model.layers if hasattr(layer, "kernel_quantizer")]
    loss_before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=40, epochs=12, verbose=0, shuffle=False)
    loss_after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss_after)
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after)
    latent_after = [np.array(layer._kernel) for layer in model.layers if hasattr(layer, "kernel_quantizer")]
    for before, after in zip(latent_before, latent_after):
        assert np.all(np.isfinite(after)) and not np.allclose(before, after)

    path = tmp_path / "bnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_convert_from_this_backend():
    # On JAX/torch, convert() hands the model to a TensorFlow subprocess.
    from biper_keras.convert import convert

    model = small_bnn()
    randomize_batch_norms(model, np.random.default_rng(0))
    x = cifar_subset(per_class=2)[0]
    result = convert(model, data=x)
    assert result.ops["LceBconv2d"] == 2
    assert [f.fused for f in result.layers] == [True, True, False]  # the dense stays float
    assert result.parity.passed, result.table()
