"""Quantizer cases shared by the Larq reference process and the Keras 3 side of
tests/test_larq_parity.py: the same class names and arguments on both sides."""

import numpy as np

CASES = [
    ("SteSign", {}),
    ("SteSign", {"clip_value": None}),
    ("SteSign", {"clip_value": 0.5}),
    ("ApproxSign", {}),
    ("SwishSign", {}),
    ("SwishSign", {"beta": 10.0}),
    ("MagnitudeAwareSign", {}),
    ("MagnitudeAwareSign", {"clip_value": None}),
    ("SteHeaviside", {}),
    ("SteHeaviside", {"clip_value": None}),
    ("SteTern", {}),
    ("SteTern", {"threshold_value": 0.3}),
    ("SteTern", {"ternary_weight_networks": True}),
    ("SteTern", {"clip_value": None}),
    *[("DoReFa", {"k_bit": k, "mode": m}) for k in (1, 2, 4, 8) for m in ("activations", "weights")],
    ("NoOp", {"precision": 1}),
]

# Larq's aliases (and class names) that `get` must resolve to the same quantizer.
ALIASES = ["ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign", "ste_heaviside",
           "ste_tern", "dorefa_quantizer", "SteSign", "DoReFa"]

# Arguments every Keras layer config has; the rest must agree with Larq's config.
LAYER_KEYS = {"name", "trainable", "dtype", "metrics"}


def key(i):
    return f"case{i}"


def inputs():
    """A conv-kernel-shaped tensor with the values where the estimators change: exact
    zeros, the clip bounds +-1 and +-0.5, the ternary thresholds +-0.05 and +-0.3."""
    rng = np.random.default_rng(21)
    x = rng.normal(0.0, 0.8, size=(3, 3, 4, 8)).astype("float32")
    special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.05, -0.05, 0.3, -0.3, 2.0, -2.0]
    x.reshape(-1)[: len(special)] = special
    upstream = rng.normal(size=x.shape).astype("float32")
    return x, upstream


def mismatches(reference, value_and_vjp, quantizers):
    """Every case whose forward or gradient (for the same upstream gradient) differs
    from Larq's in `reference` (a dict of arrays), as readable lines; [] when all agree."""
    x, upstream = inputs()
    found = []
    for i, (cls, kwargs) in enumerate(CASES):
        quantizer = getattr(quantizers, cls)(**kwargs)
        y, g = value_and_vjp(quantizer, x, upstream)
        for what, ours, theirs, tol in (("forward", y, reference[key(i) + "_y"], 1e-6),
                                        ("gradient", g, reference[key(i) + "_g"], 1e-5)):
            if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=tol, atol=tol):
                bad = np.flatnonzero(~np.isclose(ours, theirs, rtol=tol, atol=tol))[:3]
                found.append(f"{cls}({kwargs}) {what}: at x={x.reshape(-1)[bad]} ours "
                             f"{ours.reshape(-1)[bad]}, Larq {theirs.reshape(-1)[bad]}")
        if quantizer.precision != int(reference[key(i) + "_precision"]):
            found.append(f"{cls}({kwargs}) precision {quantizer.precision}")
    return found


# Layers built with the same class name and arguments in Larq and here, on inputs of
# the given shape (batch included): pad_values=1 with strides, causal and dilated 1-D
# convs, depth multipliers, every weight quantizer family.
LAYER_CASES = [
    ("QuantConv1D", dict(filters=4, kernel_size=3, padding="same", pad_values=1.0,
                         input_quantizer="ste_sign", kernel_quantizer="ste_sign"), (2, 9, 3)),
    ("QuantConv1D", dict(filters=4, kernel_size=3, strides=2, input_quantizer="approx_sign",
                         kernel_quantizer="magnitude_aware_sign"), (2, 10, 3)),
    ("QuantConv1D", dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2,
                         input_quantizer="ste_sign", kernel_quantizer="ste_sign"), (2, 9, 3)),
    ("QuantDepthwiseConv2D", dict(kernel_size=3, padding="same", pad_values=1.0, depth_multiplier=2,
                                  input_quantizer="ste_sign", depthwise_quantizer="ste_sign"), (2, 7, 7, 3)),
    ("QuantDepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same", pad_values=1.0,
                                  input_quantizer="ste_tern", depthwise_quantizer="ste_tern"), (2, 8, 8, 3)),
    ("QuantSeparableConv2D", dict(filters=5, kernel_size=3, padding="same", pad_values=1.0,
                                  input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                  pointwise_quantizer="ste_sign"), (2, 7, 7, 3)),
    ("QuantSeparableConv2D", dict(filters=5, kernel_size=3, strides=2, depth_multiplier=2,
                                  input_quantizer="swish_sign", depthwise_quantizer="dorefa_quantizer",
                                  pointwise_quantizer="ste_heaviside"), (2, 9, 9, 3)),
    ("QuantConv2D", dict(filters=4, kernel_size=3, strides=2, padding="same", pad_values=1.0,
                         input_quantizer="ste_sign", kernel_quantizer="ste_heaviside"), (2, 8, 8, 3)),
    ("QuantDense", dict(units=4, input_quantizer="ste_sign", kernel_quantizer="swish_sign"), (2, 6)),
]


def layer_inputs(i, shape, weight_shapes):
    """Input, upstream gradient and weights of layer case `i`."""
    rng = np.random.default_rng(100 + i)
    x = rng.normal(size=shape).astype("float32")
    weights = [rng.normal(0.0, 0.5, size=s).astype("float32") for s in weight_shapes]
    return x, weights, rng


def built_layer(layers_module, i):
    """Layer case `i` built from `layers_module` (Larq's or ours) with its weights set:
    (layer, input, rng for anything drawn next)."""
    cls, kwargs, shape = LAYER_CASES[i]
    layer = getattr(layers_module, cls)(**kwargs)
    layer.build(shape)
    x, weights, rng = layer_inputs(i, shape, [tuple(w.shape) for w in layer.get_weights()])
    layer.set_weights(weights)
    return layer, x, rng


def tf_value_and_grads(layer, x, upstream):
    """TensorFlow: (output, [d/d input, d/d each trainable weight]) for `upstream`."""
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
    if callable(upstream):
        upstream = upstream(y.shape)
    grads = tape.gradient(y, [xt] + list(layer.trainable_weights), output_gradients=tf.constant(upstream))
    return y.numpy(), upstream, [g.numpy() for g in grads]


def layer_mismatches(reference, layers_module, value_and_vjp):
    """Cases whose output or input gradient differ from Larq's."""
    found = []
    for i, (cls, kwargs, _) in enumerate(LAYER_CASES):
        layer, x, _ = built_layer(layers_module, i)
        y, g = value_and_vjp(layer, x, reference[f"layer{i}_up"])
        if not np.allclose(y, reference[f"layer{i}_y"], atol=1e-5):
            found.append(f"{cls}({kwargs}) output")
        if not np.allclose(g, reference[f"layer{i}_gx"], atol=1e-5):
            found.append(f"{cls}({kwargs}) input gradient")
    return found
