"""Run by tests/test_larq_plugin.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import numpy as np
import keras
import tensorflow as tf
import biper_keras as bk
from biper_keras import larq_interop
from biper_keras.models import blocks, get_model
from helpers import randomize_batch_norms

# The package's own ResNet-20 (hard tanh, option-A shortcuts, the authors' per-sample
# activation normalization, BiPer with alpha) goes to Larq and back.
model = get_model("resnet20", input_shape=(32, 32, 3), num_classes=10)
randomize_batch_norms(model, np.random.default_rng(0))
xs = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
expected = model.predict(xs, verbose=0)
larq_model = larq_interop.to_larq(model)
kinds = {type(l) for l in larq_model.layers}
assert {larq_interop.OptionAShortcut, larq_interop.NormalizedQuantConv2D} <= kinds, kinds
import larq as lq
assert larq_model.get_layer("stem_act").activation is lq.activations.hard_tanh
np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-4)

# The Larq model saves and loads (the twins are registered with tf_keras).
import pathlib
import tempfile
path = pathlib.Path(tempfile.mkdtemp()) / "r20.keras"
larq_model.save(path)
loaded = tf.keras.models.load_model(path)
np.testing.assert_allclose(loaded.predict(xs, verbose=0), expected, atol=1e-4)

back = larq_interop.from_larq(loaded)
assert isinstance(back.get_layer("s1b0c0_down"), blocks.OptionAShortcut), [l.name for l in back.layers][:40]
assert back.get_layer("s0b0c0_conv").normalize_inputs is True
assert isinstance(back.get_layer("stem_act"), blocks.HardTanh)
np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-4)

# NormalizedQuantConv2D computes what QuantConv2D(normalize_inputs=True) computes, in
# training (value and the gradient through the per-sample std) and at inference.
args = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="approx_sign",
            kernel_quantizer="biper")
ours = keras.Sequential([keras.Input((8, 8, 4)), bk.QuantConv2D(6, 3, normalize_inputs=True, name="c", **args)])
theirs = larq_interop.to_larq(ours)
x = tf.constant(np.random.default_rng(2).normal(scale=0.3, size=(3, 8, 8, 4)).astype("float32"))
for training in (True, False):
    grads = []
    for m in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = m(x, training=training)
            loss = tf.reduce_sum(y * tf.range(1.0, 7.0))
        grads.append((y.numpy(), tape.gradient(loss, x).numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-5)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-5)
    if training:
        training_gradient = grads[0][1]
# The normalization acts: without it the training gradient differs.
plain = larq_interop.to_larq(keras.Sequential([keras.Input((8, 8, 4)), bk.QuantConv2D(6, 3, name="c", **args)]))
plain.set_weights(theirs.get_weights())
with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(plain(x, training=True) * tf.range(1.0, 7.0))
assert not np.allclose(tape.gradient(loss, x).numpy(), training_gradient, atol=1e-3)
print("PACKAGE-MODELS-OK")
