"""Run by tests/test_lce_conversion.py in the shared Larq process (tests/shared_processes.py):
a tf_keras/Larq model takes convert()'s steps; from_larq gives the same result."""
import numpy as np
import tensorflow as tf
import larq as lq
from larq_compute_engine.tflite.python.interpreter import Interpreter
from biper_keras import larq_interop
from biper_keras.convert import ConversionError, convert

tf.keras.utils.set_random_seed(0)
q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
         padding="same", pad_values=1.0)
larq_model = tf.keras.Sequential([
    tf.keras.Input((16, 16, 3)),
    tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
    tf.keras.layers.BatchNormalization(),
    lq.layers.QuantConv2D(32, 3, name="q1", **q),
    tf.keras.layers.BatchNormalization(),
    lq.layers.QuantConv2D(32, 3, strides=2, name="q2", **q),
    tf.keras.layers.BatchNormalization(),
    tf.keras.layers.GlobalAveragePooling2D(),
    tf.keras.layers.Dense(10),
])
rng = np.random.default_rng(0)
for layer in larq_model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        assert layer.get_config()["axis"] == [3], layer.get_config()["axis"]
        n = layer.gamma.shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                           rng.normal(0, 0.3, n), rng.uniform(0.5, 2.0, n)])
x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
expected = larq_model.predict(x, verbose=0)

# The tf_keras model itself takes convert()'s steps: report, strict, parity, data, input_shape.
direct = convert(larq_model, data=x)
assert direct.ops["LceBconv2d"] == 2, direct.ops
assert [(f.layer, f.fused) for f in direct.layers] == [("q1", True), ("q2", True)], direct.layers
assert direct.parity.passed and direct.parity.samples == 4 and direct.parity.top1_agreement == 1.0
np.testing.assert_allclose(Interpreter(direct.flatbuffer).predict(x), expected, rtol=1e-3, atol=1e-3)
assert convert(larq_model, verify=False).parity is None
free = tf.keras.Sequential([tf.keras.Input((None, None, 3)),
                            lq.layers.QuantConv2D(8, 3, kernel_quantizer="ste_sign", name="float_input")])
try:
    convert(free)
    raise AssertionError("unknown input sizes converted")
except ConversionError as err:
    assert "has unknown sizes: pass `input_shape`" in str(err), err
try:
    convert(free, input_shape=(12, 12, 3))
    raise AssertionError("strict mode let an unfused Larq conv pass")
except ConversionError as err:
    assert "float_input (input not binarized" in str(err), err
fixed = convert(free, input_shape=(12, 12, 3), strict=False)
assert Interpreter(fixed.flatbuffer).input_shapes[0] == (1, 12, 12, 3) and fixed.parity.passed

back = larq_interop.from_larq(larq_model)
axes = [l.axis for l in back.layers if "BatchNormalization" in type(l).__name__]
assert axes == [3, 3, 3], axes
result = convert(back, data=x)
assert result.ops["LceBconv2d"] == 2 and not result.unfused and result.parity.passed, result.table()
np.testing.assert_allclose(Interpreter(result.flatbuffer).predict(x), expected, rtol=1e-3, atol=1e-3)
print("FROM-LARQ-OK", dict(result.ops))
