"""bk.BatchNormalization(synchronized=True) under a MirroredStrategy on two logical CPUs
(tests/test_review_fixes.py): prints the moving statistics and each replica's mean |output|."""

import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import biper_keras as bk
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# replica 0 sees zeros, replica 1 fours: the global batch has mean 2 and variance 4
x = np.concatenate([np.zeros((2, 2, 2, 3)), np.full((2, 2, 2, 3), 4.0)]).astype("float32")
with strategy.scope():
    layer = bk.BatchNormalization(synchronized=True, momentum=0.0)
    layer.build(x.shape)
step = tf.function(lambda batch: strategy.run(lambda b: layer(b, training=True), args=(batch,)))
for batch in strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4)):
    outputs = strategy.experimental_local_results(step(batch))
print("MEAN", layer.moving_mean.numpy().tolist(), "VAR", layer.moving_variance.numpy().tolist(),
      "OUT", [float(np.abs(o.numpy()).mean().round(3)) for o in outputs])
