"""Run by tests/test_larq_plugin.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import numpy as np
import keras
import biper_keras as bk
from biper_keras import larq_interop
from helpers import randomize_batch_norms

q = dict(input_quantizer="ste_sign", kernel_quantizer=bk.BiPer(omega=10.0), padding="same",
         pad_values=1.0, use_bias=False)
x = keras.Input((16, 16, 3), name="image")
h = keras.layers.Conv2D(16, 3, padding="same", name="stem")(x)
h = keras.layers.BatchNormalization(name="bn0")(h)
for i in range(2):  # a shortcut around every binary conv
    y = bk.BatchNormalization(name=f"bnq{i}")(bk.QuantConv2D(16, 3, name=f"q{i}", **q)(h))
    h = keras.layers.Add(name=f"add{i}")([h, y])
h = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.MaxPooling2D(name="pool")(h))
h = bk.QuantDense(16, input_quantizer="approx_sign", kernel_quantizer="ste_sign", name="qd")(h)
model = keras.Model(x, keras.layers.Dense(10, name="head")(keras.layers.ReLU(name="relu")(h)))
randomize_batch_norms(model, np.random.default_rng(0))
xs = np.random.default_rng(1).normal(size=(8, 16, 16, 3)).astype("float32")
expected = model.predict(xs, verbose=0)

larq_model = larq_interop.to_larq(model)
assert type(larq_model).__module__.startswith("tf_keras")
assert type(larq_model.get_layer("q0").kernel_quantizer).__name__ == "BiPer"
np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-5)
back = larq_interop.from_larq(larq_model)
assert isinstance(back.get_layer("q1"), bk.QuantConv2D) and back.get_layer("q1").kernel_quantizer.omega == 10.0
np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-5)

for bad, name in [(bk.QuantConv2D(4, 3, kernel_quantizer="biper", kernel_scale="channel", name="scaled"), "scaled"),
                  (bk.QuantConv2D(4, 3, padding="same", kernel_quantizer="biper", symmetric_padding=True,
                                  name="symmetric"), "symmetric")]:
    m = keras.Sequential([keras.Input((8, 8, 3)), bad])
    try:
        larq_interop.to_larq(m)
    except ValueError as err:
        assert repr(name) in str(err), err
    else:
        raise AssertionError("no error for " + name)

# binarize() adds BiPer's alpha: to_larq folds it into the following BatchNorm.
x = keras.Input((16, 16, 3))
h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(x))
for _ in range(2):
    h = keras.layers.Add()([h, keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(h))])
h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 1)(h))
out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
binary, _ = bk.binarize(keras.Model(x, out))
randomize_batch_norms(binary, np.random.default_rng(3))
expected = binary.predict(xs, verbose=0)
larq_model = larq_interop.to_larq(binary)
np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-4)
np.testing.assert_allclose(larq_interop.from_larq(larq_model).predict(xs, verbose=0), expected, atol=1e-4)
print("BRIDGE-OK")
