"""Run by tests/test_optimizers.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import numpy as np
import tensorflow as tf
import larq as lq

rng = np.random.default_rng(5)
w0 = rng.normal(size=(7, 3)).astype("float32")  # real values: Bop binarizes on its first step
grads = [rng.normal(0, 0.1, size=w0.shape).astype("float32") for _ in range(5)]
v = tf.Variable(w0)
opt = lq.optimizers.Bop(threshold=0.01, gamma=0.3)
states = []
for g in grads:
    opt.apply_gradients([(tf.constant(g), v)])
    states.append(v.numpy().tolist())
print("LARQ " + json.dumps({"w0": w0.tolist(), "grads": [g.tolist() for g in grads], "states": states}))
