"""Run by tests/test_quant_layers_backends.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import os
import tempfile
import numpy as np
import keras
import biper_keras as bk
from biper_keras import layers as bl

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
clip = dict(kernel_constraint="weight_clip")
x2 = rng.normal(size=(64, 8, 8, 3)).astype("float32")
y2 = (x2[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
two_d = keras.Sequential([
    keras.Input((8, 8, 3)),
    keras.layers.Conv2D(8, 3, padding="same", name="stem"),
    keras.layers.BatchNormalization(),
    bl.QuantDepthwiseConv2D(3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                            depthwise_quantizer=bk.SteSign(metrics=["flip_ratio"]),
                            depthwise_constraint="weight_clip", use_bias=False, name="dw"),
    keras.layers.BatchNormalization(),
    bl.QuantSeparableConv2D(8, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                            depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign",
                            depthwise_constraint="weight_clip", pointwise_constraint="weight_clip", name="sep"),
    keras.layers.BatchNormalization(),
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(2),
])
x1 = rng.normal(size=(64, 12, 3)).astype("float32")
y1 = (x1[..., 1].mean(axis=1) > 0).astype("int32")
one_d = keras.Sequential([
    keras.Input((12, 3)),
    keras.layers.Conv1D(8, 3, padding="same"),
    keras.layers.BatchNormalization(),
    bl.QuantConv1D(8, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                   kernel_quantizer="ste_sign", name="q1", **clip),
    keras.layers.BatchNormalization(),
    bl.QuantConv1D(8, 3, padding="causal", input_quantizer="ste_sign", kernel_quantizer="ste_sign", **clip),
    keras.layers.GlobalAveragePooling1D(),
    keras.layers.Dense(2),
])
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    bk.SteSign(metrics=["flip_ratio"])
print("\n".join(str(c.message) for c in caught))
folder = tempfile.mkdtemp()
for name, model, x, y in (("2d", two_d, x2, y2), ("1d", one_d, x1, y1)):
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert after < 0.8 * before, (name, before, after)
    for layer in model.layers:
        for w in layer.trainable_weights:
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(w))), (name, w.path)
    path = os.path.join(folder, name + ".keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    if name == "2d":
        assert type(loaded.get_layer("sep")).__name__ == "QuantSeparableConv2D"
        assert loaded.get_layer("dw").depthwise_quantizer._custom_metrics == ["flip_ratio"]
        flips = history.history.get("flip_ratio/" + model.get_layer("dw").depthwise_quantizer.name)
        print("FLIPS", keras.backend.backend(), flips and flips[-1])
print("TRAIN-OK", keras.backend.backend())
