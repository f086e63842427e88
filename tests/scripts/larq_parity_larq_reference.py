"""Run by tests/test_larq_parity.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import sys
import numpy as np
import tensorflow as tf
import larq as lq
from larq_parity_cases import ALIASES, CASES, LAYER_KEYS, inputs, key

x, upstream = inputs()
out = {}
for i, (cls, kwargs) in enumerate(CASES):
    q = getattr(lq.quantizers, cls)(**kwargs)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = q(xt)
    out[key(i) + "_y"] = y.numpy()
    out[key(i) + "_g"] = tape.gradient(y, xt, output_gradients=tf.constant(upstream)).numpy()
    out[key(i) + "_precision"] = q.precision
np.savez(sys.argv[1] + "/reference.npz", **out)
configs = {}
for alias in ALIASES:
    q = lq.quantizers.get(alias)
    configs[alias] = [type(q).__name__, q.precision,
                      {k: v for k, v in q.get_config().items() if k not in LAYER_KEYS}]
json.dump(configs, open(sys.argv[1] + "/configs.json", "w"))
