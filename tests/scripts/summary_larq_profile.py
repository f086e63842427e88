"""Run by tests/test_summary.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import tensorflow as tf
import larq as lq
from larq.models import ModelProfile

q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
model = tf.keras.Sequential([
    tf.keras.Input((16, 16, 3)),
    tf.keras.layers.Conv2D(16, 3, padding="same", name="c0"),
    tf.keras.layers.BatchNormalization(name="bn0"),
    lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False, name="c1", **q),
    tf.keras.layers.BatchNormalization(name="bn1"),
    tf.keras.layers.MaxPooling2D(name="pool"),
    lq.layers.QuantConv2D(64, 3, strides=2, use_bias=False, name="c2", **q),
    tf.keras.layers.BatchNormalization(name="bn2"),
    tf.keras.layers.Flatten(name="flat"),
    lq.layers.QuantDense(32, name="d1", **q),
    tf.keras.layers.Dense(10, name="head"),
])
p = ModelProfile(model)
rows = {lp.name: [lp.weight_count(1), lp.weight_count(32), lp.memory,
                  lp.op_count("mac", 1) or 0, lp.op_count("mac", 32) or 0] for lp in p.layer_profiles}
print(json.dumps({"rows": rows, "memory": p.memory, "fp": p.fp_equivalent_memory,
                  "macs1": p.op_count("mac", 1), "macs32": p.op_count("mac", 32)}))
