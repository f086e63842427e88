"""Run by tests/test_larq_parity_differences.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import logging
import warnings
import numpy as np
import tensorflow as tf
import keras
import larq as lq
import biper_keras as bk
from biper_keras import larq_interop

out = {}

# 1. `kernel` is the latent weight, quantized only inside quantized_scope(True);
#    the forward pass is quantized either way.
latent = np.array([[0.3, -0.2, 0.7], [-0.5, 0.1, 1.5]], "float32")
x = np.array([[1.0, 2.0]], "float32")
def facts(layer, scope, read):
    layer.build((None, 2))
    layer.set_weights([latent, np.zeros(3, "float32")])
    with scope(True):
        quantized = read(layer.kernel).tolist()
    return [read(layer.kernel).tolist(), quantized, np.array(layer(x)).tolist()]
# (np.array of a Larq QuantizedVariable bypasses the scope: read it with .numpy())
out["1"] = [facts(lq.layers.QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
                  lq.context.quantized_scope, lambda k: k.numpy()),
            facts(bk.QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
                  bk.context.quantized_scope, keras.ops.convert_to_numpy)]

# 2. from_larq keeps kernel_constraint="weight_clip" (and its clip value) and to_larq
#    gives it back; a constraint with no counterpart is refused by name.
larq_model = tf.keras.Sequential([
    tf.keras.Input((6,)),
    lq.layers.QuantDense(4, kernel_quantizer="ste_sign", kernel_constraint=lq.constraints.WeightClip(0.5),
                         input_quantizer="ste_tern", name="qd"),
    lq.layers.QuantDense(3, kernel_quantizer="swish_sign", kernel_constraint="weight_clip", name="qd2")])
back = larq_interop.from_larq(larq_model)
there = larq_interop.to_larq(back)
class Custom(tf.keras.constraints.Constraint):
    def __call__(self, w):
        return w
odd = tf.keras.Sequential([tf.keras.Input((6,)), lq.layers.QuantDense(2, kernel_constraint=Custom(), name="odd")])
try:
    larq_interop.from_larq(odd)
    refused = None
except ValueError as err:
    refused = str(err)
xs = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
def clip_of(model, name, cls):
    c = model.get_layer(name).kernel_constraint
    return [isinstance(c, cls), float(c.clip_value)]
out["2"] = [clip_of(m, n, cls) for m, cls in ((larq_model, lq.constraints.WeightClip), (back, bk.WeightClip),
                                              (there, lq.constraints.WeightClip)) for n in ("qd", "qd2")]
out["2_refused"] = refused
out["2_outputs"] = [np.abs(back.predict(xs, verbose=0) - larq_model.predict(xs, verbose=0)).max().item(),
                    np.abs(there.predict(xs, verbose=0) - larq_model.predict(xs, verbose=0)).max().item()]
w = np.array([[-2.0, 0.3], [0.7, 3.0]], "float32")
out["2_clip"] = [np.array(lq.constraints.WeightClip(0.5)(tf.constant(w))).tolist(),
                 np.array(bk.WeightClip(0.5)(w)).tolist(),
                 np.array(keras.constraints.get("weight_clip")(w)).tolist()]

# 3. A float64 input keeps its dtype.
v64 = np.linspace(-1, 1, 6).reshape(2, 3)
out["3"] = [[q(tf.Variable(v64)).dtype.name, keras.backend.standardize_dtype(b(keras.Variable(v64, dtype="float64")).dtype)]
            for q, b in ((lq.quantizers.SteSign(), bk.SteSign()), (lq.quantizers.DoReFa(mode="weights"), bk.DoReFa(mode="weights")),
                         (lq.quantizers.SteTern(), bk.SteTern()))]
# Larq casts a float64 *tensor* (not a variable) to float32; ours keeps it too.
out["3_tensor"] = keras.backend.standardize_dtype(bk.SteSign()(tf.constant(v64)).dtype)

# 4. The starving-latent-weights warning: same layers warn on both sides.
class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []
    def emit(self, record):
        self.messages.append(record.getMessage())
handler = Records()
logging.getLogger("larq").addHandler(handler)
cases = [("ste_sign", None), ("ste_sign", "weight_clip"), ("approx_sign", None), ("swish_sign", None),
         ("magnitude_aware_sign", None), ("ste_heaviside", None), ("ste_tern", None), ("dorefa_quantizer", None),
         ("noop", None), (None, None)]
rows = []
for name, constraint in cases:
    handler.messages.clear()
    lq_q = lq.quantizers.NoOp(precision=1) if name == "noop" else name
    bk_q = bk.NoOp(precision=1) if name == "noop" else name
    lq.layers.QuantDense(5, kernel_quantizer=lq_q, kernel_constraint=constraint)
    larq_warned = any("starved weights" in m for m in handler.messages)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bk.QuantDense(5, kernel_quantizer=bk_q, kernel_constraint=constraint)
    rows.append([name, constraint, larq_warned, any("starved weights" in str(c.message) for c in caught)])
out["4"] = rows

# 5. metrics=["flip_ratio"] is accepted and counts the flipped binary weights.
def flip_run(make_layer, q):
    tf.keras.utils.set_random_seed(3) if q is lq else keras.utils.set_random_seed(3)
    ks = tf.keras if q is lq else keras
    layer = make_layer()
    model = ks.Sequential([ks.Input((8,)), layer])
    rng = np.random.default_rng(1)
    model.layers[0].set_weights([rng.normal(0, 0.05, (8, 4)).astype("float32"), np.zeros(4, "float32")])
    xs, ys = rng.normal(size=(32, 8)).astype("float32"), rng.normal(size=(32, 4)).astype("float32")
    model.compile(ks.optimizers.SGD(0.5), "mse")
    signs = []
    def record(*args, **kwargs):
        return signs.append(np.sign(np.sign(model.layers[0].get_weights()[0]) + 0.1))
    model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[ks.callbacks.LambdaCallback(on_train_batch_begin=record)])
    # The metric sees the kernel of each of the 4 steps: 3 changes.
    hand = np.mean([np.mean(a != b) for a, b in zip(signs[:-1], signs[1:])])
    quantizer = model.layers[0].kernel_quantizer
    metric = quantizer.flip_ratio
    return [float(np.array(metric.result())), float(hand), len(quantizer._metrics) if q is lq else len(quantizer.metrics)]
out["5"] = [flip_run(lambda: lq.layers.QuantDense(4, kernel_quantizer=lq.quantizers.SteSign(metrics=["flip_ratio"])), lq),
            flip_run(lambda: bk.QuantDense(4, kernel_quantizer=bk.SteSign(metrics=["flip_ratio"])), bk)]

# 6. summary of a model nesting a Sequential counts its binary kernels and MACs.
def nested(L, Q):
    inner = L.Sequential([L.layers.InputLayer((32, 32, 16)) if L is tf.keras else keras.Input((32, 32, 16)),
                          Q(32, 3, padding="same", use_bias=False, input_quantizer="ste_sign",
                            kernel_quantizer="ste_sign", kernel_constraint="weight_clip")], name="block")
    return L.Sequential([L.Input((32, 32, 16)), inner, L.layers.GlobalAveragePooling2D(name="gap")])
profile = lq.models.ModelProfile(nested(tf.keras, lq.layers.QuantConv2D))
row = profile.layer_profiles[0]
stats = bk.summary(nested(keras, bk.QuantConv2D), print_fn=None)
out["6"] = [[row.weight_count(1), row.weight_count(32), row.op_count("mac", 1) or 0, row.op_count("mac", 32) or 0],
            [stats.layers[0].params_1bit, stats.layers[0].params_32bit, stats.layers[0].macs_1bit, stats.layers[0].macs_32bit]]

# 7. summary of an empty, unbuilt model raises ValueError.
def raises(fn):
    try:
        fn()
    except ValueError:
        return True
    return False
out["7"] = [raises(lambda: lq.models.summary(tf.keras.Model())), raises(lambda: bk.summary(keras.Model(), print_fn=None))]

print("RESULT " + json.dumps(out))
