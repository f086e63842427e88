"""Run by tests/test_larq_plugin.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import numpy as np
import tensorflow as tf
import larq as lq
import larq_compute_engine as lce
from biper_keras import larq_interop
from biper_keras.convert import op_histogram
from cifar import cifar_subset

larq_interop.register()
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.Input((32, 32, 3)),
    tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
    tf.keras.layers.BatchNormalization(),
    lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False,
                          input_quantizer="ste_sign", kernel_quantizer="biper"),
    tf.keras.layers.BatchNormalization(),
    lq.layers.QuantConv2D(32, 3, strides=2, padding="same", pad_values=1.0, use_bias=False,
                          input_quantizer="ste_sign",
                          kernel_quantizer=larq_interop.BiPer(omega=10.0)),
    tf.keras.layers.BatchNormalization(),
    tf.keras.layers.GlobalAveragePooling2D(),
    tf.keras.layers.Dense(10),
])
q = model.layers[2].kernel_quantizer
assert isinstance(q, larq_interop.BiPer) and q.omega == 20.0, q
w = model.layers[2].kernel
with tf.GradientTape() as tape:
    y = q(w)
g = tape.gradient(y, w)
np.testing.assert_array_equal(y.numpy(), np.where(np.sin(20 * w.numpy()) >= 0, 1.0, -1.0))
np.testing.assert_allclose(g.numpy(), 20 * np.cos(20 * w.numpy()), rtol=1e-4, atol=1e-4)

x, labels = cifar_subset(per_class=8)
model.compile(tf.keras.optimizers.Adam(3e-3),
              tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = model.evaluate(x, labels, verbose=0)
model.fit(x, labels, batch_size=40, epochs=12, verbose=0, shuffle=False)
after = model.evaluate(x, labels, verbose=0)
assert after < 0.8 * before, (before, after)

config = model.get_config()
clone = tf.keras.Sequential.from_config(config)
assert clone.layers[4].kernel_quantizer.omega == 10.0

ops = op_histogram(lce.convert_keras_model(model))
assert ops["LceBconv2d"] == 2, ops
print("LARQ-PLUGIN-OK", before, after, dict(ops))
