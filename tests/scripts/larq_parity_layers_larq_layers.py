"""Run by tests/test_larq_parity_layers.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import sys
import numpy as np
import tensorflow as tf
import larq as lq
from larq_parity_cases import LAYER_CASES, built_layer, tf_value_and_grads

out = {}
for i in range(len(LAYER_CASES)):
    layer, x, rng = built_layer(lq.layers, i)
    def draw(shape):
        return rng.normal(size=shape).astype("float32")
    y, up, grads = tf_value_and_grads(layer, x, draw)
    out[f"layer{i}_y"], out[f"layer{i}_up"], out[f"layer{i}_gx"] = y, up, grads[0]
    for j, g in enumerate(grads[1:]):
        out[f"layer{i}_gw{j}"] = g
np.savez(sys.argv[1] + "/layers.npz", **out)

# Larq's own profile model (larq/models_test.py: get_profile_model).
model = tf.keras.models.Sequential([
    lq.layers.QuantConv2D(32, (3, 3), kernel_quantizer="ste_sign", input_shape=(64, 64, 1), padding="same"),
    tf.keras.layers.MaxPooling2D((2, 2)),
    lq.layers.QuantDepthwiseConv2D(3, strides=(3, 3), input_quantizer=lq.quantizers.SteTern(),
                                   depthwise_quantizer=lq.quantizers.SteTern(), padding="same",
                                   pad_values=1.0, use_bias=False),
    tf.keras.layers.BatchNormalization(scale=False),
    lq.layers.QuantSeparableConv2D(32, (3, 3), input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                   pointwise_quantizer="ste_sign", padding="same"),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(10, trainable=False),
])
rows = [[lp.weight_count(), lp.memory, lp.op_count("mac") or 0, lp.op_count("mac", 1) or 0]
        for lp in lq.models.ModelProfile(model).layer_profiles]
json.dump(rows, open(sys.argv[1] + "/profile.json", "w"))
