"""Run by tests/test_larq_parity_layers.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import numpy as np
import tensorflow as tf
import larq as lq
import biper_keras as bk
from biper_keras import larq_interop

clip = lq.constraints.WeightClip(0.8)
two_d = tf.keras.Sequential([
    tf.keras.Input((9, 9, 3)),
    tf.keras.layers.Conv2D(8, 3, padding="same", name="stem", kernel_regularizer=tf.keras.regularizers.L2(1e-4)),
    tf.keras.layers.BatchNormalization(name="bn0"),
    lq.layers.QuantDepthwiseConv2D(3, padding="same", pad_values=1.0, depth_multiplier=2, name="dw",
                                   input_quantizer="ste_sign", depthwise_quantizer="magnitude_aware_sign",
                                   depthwise_constraint=clip),
    tf.keras.layers.BatchNormalization(name="bn1"),
    lq.layers.QuantSeparableConv2D(8, 3, strides=2, padding="same", pad_values=1.0, name="sep",
                                   input_quantizer=lq.quantizers.SteTern(threshold_value=0.1),
                                   depthwise_quantizer="ste_sign", pointwise_quantizer=lq.quantizers.DoReFa(3, "weights"),
                                   depthwise_constraint="weight_clip", pointwise_constraint="weight_clip"),
    tf.keras.layers.BatchNormalization(name="bn2"),
    lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, name="qc", input_quantizer="swish_sign",
                          kernel_quantizer=lq.quantizers.SteHeaviside(clip_value=0.5), kernel_constraint="weight_clip"),
    tf.keras.layers.GlobalAveragePooling2D(name="gap"),
    lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer=lq.quantizers.NoOp(precision=1), name="qd"),
])
one_d = tf.keras.Sequential([
    tf.keras.Input((12, 3)),
    lq.layers.QuantConv1D(6, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                          kernel_quantizer="ste_sign", kernel_constraint="weight_clip", name="c1"),
    lq.layers.QuantConv1D(6, 3, strides=2, input_quantizer="approx_sign", kernel_quantizer="ste_sign",
                          kernel_constraint="weight_clip", name="c2"),
    tf.keras.layers.Flatten(name="flat"),
])
rng = np.random.default_rng(0)
for model in (two_d, one_d):
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") if "variance" not in w.name
                       else rng.uniform(0.5, 2, w.shape).astype("float32") for w in model.weights])
    xs = rng.normal(size=(4,) + tuple(model.input_shape[1:])).astype("float32")
    expected = model.predict(xs, verbose=0)
    ours = larq_interop.from_larq(model)
    np.testing.assert_allclose(ours.predict(xs, verbose=0), expected, atol=1e-4)
    back = larq_interop.to_larq(ours)
    np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-4)
    for a in model.layers:
        b, c = ours.get_layer(a.name), back.get_layer(a.name)
        assert type(a) is type(c), (a, c)
        assert type(b).__name__ == type(a).__name__ or type(b).__module__.startswith("keras"), (a, b)
        for arg in ("kernel_quantizer", "input_quantizer", "depthwise_quantizer", "pointwise_quantizer"):
            qa, qb = getattr(a, arg, None), getattr(b, arg, None)
            assert (qa is None) == (qb is None), (a.name, arg)
            if qa is not None:
                assert type(qa).__name__ == type(qb).__name__ == type(getattr(c, arg)).__name__, (a.name, arg)
        for arg in ("kernel_constraint", "depthwise_constraint", "pointwise_constraint"):
            ca, cb = getattr(a, arg, None), getattr(b, arg, None)
            assert (ca is None) == (cb is None), (a.name, arg)
            if ca is not None:
                assert isinstance(cb, bk.WeightClip) and cb.clip_value == float(ca.clip_value), (a.name, arg)
                assert isinstance(getattr(c, arg), lq.constraints.WeightClip), (a.name, arg)
    if model is two_d:
        assert ours.get_layer("stem").kernel_regularizer.get_config() == {"l2": 1e-4} or \
            abs(ours.get_layer("stem").kernel_regularizer.l2 - 1e-4) < 1e-9
        assert ours.get_layer("sep").pointwise_quantizer.precision == 3
        assert ours.get_layer("sep").input_quantizer.threshold_value == 0.1
print("BRIDGE-NEW-OK")
