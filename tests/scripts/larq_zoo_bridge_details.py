"""Run by tests/test_larq_zoo.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import warnings
import numpy as np
import tensorflow as tf
import larq as lq
from biper_keras import larq_interop

out = {}
x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")

def refusal(model):
    try:
        larq_interop.from_larq(model)
    except ValueError as err:
        return str(err)

# A grouped conv, a frozen layer, weight_clip, LeakyReLU (alpha -> negative_slope),
# and the TF ops tf_keras records for x + y, x * y, x - y.
i = tf.keras.Input((8, 8, 4), name="image")
a = tf.keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(i)
b = lq.layers.QuantConv2D(8, 1, kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                          kernel_constraint="weight_clip", trainable=False, name="frozen")(i)
h = tf.keras.layers.LeakyReLU(0.2, name="leaky")((a + b) * a - b)
h = tf.keras.layers.Concatenate(name="cat")([h, tf.keras.layers.Reshape((8, 8, 4), name="re")(
    tf.keras.layers.Flatten(name="flat")(i))])
model = tf.keras.Model(i, tf.keras.layers.PReLU(name="prelu")(h))
model.get_layer("prelu").set_weights([np.random.default_rng(1).normal(size=(8, 8, 12))])
moved = larq_interop.from_larq(model)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y = np.asarray(moved(x))
out["warnings"] = [str(w.message) for w in caught]
out["diff"] = float(np.abs(y - model(x).numpy()).max())
out["scale"] = float(np.abs(y).max())
out["groups"] = moved.get_layer("grouped").groups
out["trainable"] = moved.get_layer("frozen").trainable
out["frozen_weights"] = len(moved.get_layer("frozen").trainable_weights)
out["clip"] = moved.get_layer("frozen").kernel_constraint.clip_value
out["slope"] = moved.get_layer("leaky").negative_slope
out["merges"] = sorted(type(l).__name__ for l in moved.layers if type(l).__name__ in ("Add", "Multiply", "Subtract"))
back = larq_interop.to_larq(moved)
out["back_diff"] = float(np.abs(back(x).numpy() - model(x).numpy()).max())
out["back_groups"] = back.get_layer("grouped").groups
out["back_trainable"] = back.get_layer("frozen").trainable
out["back_slope"] = float(back.get_layer("leaky").alpha)

# What cannot move: a TF op without a mapping, a Python Lambda, a function quantizer.
i = tf.keras.Input((8, 8, 4))
out["tf_op"] = refusal(tf.keras.Model(i, tf.pad(i, [[0, 0], [1, 1], [1, 1], [0, 0]])))
def halve(t):
    return t / 2
out["lambda"] = refusal(tf.keras.Model(i, tf.keras.layers.Lambda(halve, name="half")(i)))
def my_sign(t):
    return lq.quantizers.ste_sign(t)
out["function_quantizer"] = refusal(tf.keras.Sequential(
    [i, lq.layers.QuantConv2D(4, 3, kernel_quantizer=my_sign, name="fq")]))
out["grouped_quant"] = refusal(tf.keras.Sequential(
    [i, lq.layers.QuantConv2D(4, 3, groups=2, kernel_quantizer="ste_sign", name="gq")]))
out["slicing"] = refusal(tf.keras.Model(i, i[:, 1:]))
mixed = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, dtype="mixed_bfloat16", name="mixed")])
moved_mixed = larq_interop.from_larq(mixed)
out["policy"] = moved_mixed.get_layer("mixed").dtype_policy.name
out["back_policy"] = larq_interop.to_larq(moved_mixed).get_layer("mixed").dtype_policy.name
print("@@ZOO " + json.dumps(out))
