"""Run by tests/test_reliability_inputs.py in the shared Larq process
(tests/shared_processes.py): the bridge's argument checks on Larq's side."""
import json
import larq as lq
import tensorflow as tf
from biper_keras import larq_interop

larq_model = tf.keras.Sequential([tf.keras.Input((8, 8, 3)), lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign"),
                                  tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)], name="from_zoo")
unbuilt = tf.keras.Sequential([lq.layers.QuantConv2D(4, 3), tf.keras.layers.Dense(2)], name="unbuilt")
cases = {"to_larq(larq model)": lambda: larq_interop.to_larq(larq_model),
         "from_larq(unbuilt)": lambda: larq_interop.from_larq(unbuilt),
         "from_larq(str)": lambda: larq_interop.from_larq("zoo.h5")}
found = {}
for name, call in cases.items():
    try:
        call()
        found[name] = "no error"
    except Exception as err:
        found[name] = [type(err).__name__, str(err)]
unbuilt.build((None, 8, 8, 3))  # what the message says to do
found["built"] = type(larq_interop.from_larq(unbuilt)).__module__.split(".")[0]
print(json.dumps(found))
