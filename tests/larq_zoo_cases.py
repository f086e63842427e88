"""Larq Zoo models through the bridge, run in a TF_USE_LEGACY_KERAS=1 process: each
`check_model` result is a JSON-able dict that tests/test_larq_zoo.py asserts on."""

import numpy as np

SOTA = ("QuickNet", "QuickNetSmall", "QuickNetLarge")
# Models whose stride-32 trunk and 6x6 head need more than 64x64.
INPUT_SIZE = {"XNORNet": 224, "XNORNetNarrow": 224}


def xnornet_narrow(input_shape, num_classes, width=16):
    """Larq Zoo's XNOR-Net (larq_zoo/literature/xnornet.py) layer for layer, with its
    quantizers (ste_sign inputs, xnor_weight_scale kernels), weight_clip, l2 regularizer and
    6x6 valid head, at 1/`width` of its widths: XNORNet itself spends ~80 s of the test on
    its 54 M-parameter head (it runs with `-m exhaustive`)."""
    import larq as lq
    import tensorflow as tf
    from larq_zoo.literature.xnornet import xnor_weight_scale

    layers, reg = tf.keras.layers, tf.keras.regularizers.l2(5e-7)
    quant = dict(kernel_quantizer=xnor_weight_scale, input_quantizer="ste_sign", kernel_constraint="weight_clip",
                 use_bias=False, kernel_regularizer=reg)

    def bn(x, epsilon=1e-4):
        return layers.BatchNormalization(momentum=0.9, scale=False, epsilon=epsilon)(x)

    inputs = layers.Input(input_shape)
    x = layers.Conv2D(96 // width, 11, strides=4, padding="same", use_bias=False, kernel_regularizer=reg)(inputs)
    x = layers.MaxPool2D(3, 2)(layers.Activation("relu")(bn(x, 1e-5)))
    x = lq.layers.QuantConv2D(256 // width, 5, padding="same", **quant)(bn(x))
    x = lq.layers.QuantConv2D(384 // width, 3, padding="same", **quant)(bn(layers.MaxPool2D(3, 2)(x)))
    x = lq.layers.QuantConv2D(384 // width, 3, padding="same", **quant)(bn(x))
    x = lq.layers.QuantConv2D(256 // width, 3, padding="same", **quant)(bn(x))
    x = lq.layers.QuantConv2D(4096 // width, 6, padding="valid", **quant)(bn(layers.MaxPool2D(3, 2)(x)))
    x = bn(lq.layers.QuantConv2D(4096 // width, 1, padding="valid", **quant)(bn(x)), 1e-3)
    x = layers.Flatten()(layers.Activation("relu")(x))
    x = layers.Dense(num_classes, use_bias=False, kernel_regularizer=reg)(x)
    return tf.keras.models.Model(inputs, layers.Activation("softmax", dtype="float32")(x), name="xnornet_narrow")


def build(name):
    import larq_zoo

    if name == "XNORNetNarrow":
        size = INPUT_SIZE[name]
        return xnornet_narrow((size, size, 3), num_classes=10)
    module = larq_zoo.sota if name in SOTA else larq_zoo.literature
    size = INPUT_SIZE.get(name, 64)
    return getattr(module, name)(weights=None, input_shape=(size, size, 3), num_classes=10)


def _logits(model, x):
    """The output before the final softmax (an Activation layer in every Zoo model)."""
    last = model.layers[-1]
    assert type(last).__name__ == "Activation" and last.get_config()["activation"] == "softmax", last
    inner = type(model)(model.input, model.layers[-2].output)
    return np.asarray(inner(x, training=False))


def _tflite(flatbuffer, x):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return np.asarray(Interpreter(flatbuffer).predict(x))


def check_model(name, samples=2):
    """from_larq, logits, convert() vs LCE's conversion of the original, to_larq back."""
    import larq_compute_engine as lce

    from biper_keras import larq_interop
    from biper_keras.convert import convert, op_histogram, randomize_batch_norms

    original = build(name)
    randomize_batch_norms(original, np.random.default_rng(0))  # tf_keras's batch norms too
    size = INPUT_SIZE.get(name, 64)
    x = np.random.default_rng(1).normal(size=(samples, size, size, 3)).astype("float32")
    moved = larq_interop.from_larq(original)
    logits = _logits(original, x)
    back = larq_interop.to_larq(moved)
    report = {
        "name": name,
        "single_input": type(moved.input).__name__ == "KerasTensor",
        "logit_scale": float(np.abs(logits).max()),
        "logit_diff": float(np.abs(_logits(moved, x) - logits).max()),
        "keras_vs_original": float(np.abs(np.asarray(moved(x)) - original(x).numpy()).max()),
        "back_diff": float(np.abs(back(x).numpy() - original(x).numpy()).max()),
        "back_logit_diff": float(np.abs(_logits(back, x) - logits).max()),
        "frozen": [[l.name for l in m.layers if not l.trainable] for m in (original, moved, back)],
        "clips": [_clips(m) for m in (original, moved, back)],
    }
    reference = lce.convert_keras_model(original)
    # convert() loads and runs the file whatever `verify` says; Keras parity is skipped because deep
    # Zoo nets amplify sign flips: the check is against LCE's conversion of the original, below.
    result = convert(moved, verify=False, strict=False)
    ours, theirs = _tflite(result.flatbuffer, x), _tflite(reference, x)
    report.update(
        bconv_ours=int(result.ops.get("LceBconv2d", 0)),
        bconv_lce=int(op_histogram(reference).get("LceBconv2d", 0)),
        unfused=[f.layer for f in result.unfused],
        tflite_vs_lce=float(np.abs(ours - theirs).max()),
        argmax_same=bool((ours.argmax(-1) == theirs.argmax(-1)).all()),
    )
    return report


def _clips(model):
    """(layer, clip value) of every kernel constraint, the value None if not a WeightClip."""
    return [[l.name, getattr(l.kernel_constraint, "clip_value", None)] for l in model.layers
            if getattr(l, "kernel_constraint", None) is not None]


def refusal(name):
    """The error from_larq gives for a model it cannot move (None if it moved)."""
    from biper_keras import larq_interop

    try:
        larq_interop.from_larq(build(name))
    except ValueError as err:
        return str(err)
    return None
