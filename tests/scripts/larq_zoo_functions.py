"""Run by tests/test_larq_zoo.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import numpy as np
import tensorflow as tf
from biper_keras import larq_interop
from biper_keras.larq_interop import zoo

rng = np.random.default_rng(0)
x = rng.normal(0.0, 0.8, size=(3, 3, 4, 5)).astype("float32")
x[0, 0, 0, :3] = [1.0, -1.0, 0.0]  # the clip bounds and sign(0)
upstream = rng.normal(size=x.shape).astype("float32")
out = {}
pairs = [(tf.keras.utils.get_custom_objects()[name], cls()) for name, cls in larq_interop.FUNCTION_QUANTIZERS.items()]
pairs += [(tf.keras.utils.get_custom_objects()[name], fn) for name, (_, fn) in zoo.FUNCTION_ACTIVATIONS.items()]
for original, ours in pairs:
    values = {}
    for side, f in (("larq_zoo", original), ("ours", ours)):
        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = f(v)
        values[side] = (y.numpy(), tape.gradient(y, v, output_gradients=tf.constant(upstream)).numpy())
    out[original.__name__] = {
        "y": float(np.abs(values["larq_zoo"][0] - values["ours"][0]).max()),
        "g": float(np.abs(values["larq_zoo"][1] - values["ours"][1]).max()),
        "g_scale": float(np.abs(values["larq_zoo"][1]).max()),
        "y_scale": float(np.abs(values["larq_zoo"][0]).max()),
    }
print("@@ZOO " + json.dumps(out))
