"""Step 6 of a conversion: does the flatbuffer compute what the Keras model computes?"""

import numpy as np

from biper_keras import _compat

from . import interpreter
from .fusion import _binary, _quantized_layers
from .prepare import is_tf_keras
from .results import Parity


def randomize_batch_norms(model, rng=0):
    """Gives every BatchNormalization in `model` (nested models included) random
    statistics (gamma U[0.5, 1.5], beta N(0, 0.3), moving mean N(0, 0.3), moving variance
    U[0.5, 2]), as training would; `rng` is a `numpy.random.Generator` or a seed.
    Returns `model`.

    For parity checks and benchmarks of untrained models: with the defaults (gamma 1,
    beta 0, mean 0, variance 1) a binary conv's integer-valued output passes through the
    BatchNorm almost unchanged, so the next binarizer sees exact zeros, whose sign then
    depends on float rounding: Keras and LCE may legitimately disagree, and a deep network
    turns each such flip into a large output difference.
    """
    import keras

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    for layer in _compat.flatten_layers(model):
        # tf_keras's BatchNormalization too (a Larq model): the same variables by name.
        tf_keras_bn = type(layer).__module__.startswith("tf_keras") and "BatchNormalization" in type(layer).__name__
        if isinstance(layer, keras.layers.BatchNormalization) or tf_keras_bn:
            n = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    return model


def _keras_outputs(model, x, eps=1e-5, batch_size=64):
    """Keras's output on `x` (inference mode) and the number of input-binarizer inputs
    within eps * (their std) of 0, from one probe model called eagerly in batches (a
    `predict` would first trace the whole model again: 10 s on a ResNet50). Subclassed
    models have no symbolic graph to probe: their count is None."""
    if is_tf_keras(model):
        from tf_keras import Model
    else:
        from keras import Model

    layers = [l for l in _quantized_layers(model) if _binary(getattr(l, "input_quantizer", None))]
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = Model(inputs, [model.outputs[0], *[l.input for l in layers]])
    except (AttributeError, TypeError, ValueError):
        probe, layers = None, []
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        values = probe(chunk, training=False) if probe is not None else model(chunk, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]  # one output comes unlisted
        parts.append([np.asarray(v) for v in values])
    columns = [np.concatenate(c) for c in zip(*parts)]
    if probe is None and _quantized_layers(model):
        return columns[0], None
    near_zero = sum(int(np.sum(np.abs(v) <= eps * (np.std(v) + 1e-12))) for v in columns[1:])
    return columns[0], near_zero


def check_parity(flatbuffer, model, x, *, min_top1=0.98, atol=1e-3, rtol=1e-3):
    """Runs the LCE interpreter and Keras on `x` and compares.

    Class-score outputs (2D, more than one column) pass when the top-1 predictions agree
    on at least `min_top1` of the inputs (a deep BNN turns a rounding-level sign flip into
    a large logit change, so max |diff| alone is too strict); other outputs pass when
    max |diff| <= atol + rtol * max |output|. Returns a `Parity`.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or len(x) == 0 or not np.all(np.isfinite(x)):  # a check on them would mean nothing
        raise ValueError(f"Parity data must hold at least one sample, all finite. Received: shape {x.shape}, "
                         f"{int(np.sum(~np.isfinite(x)))} non-finite values.")
    expected, near_zero = _keras_outputs(model, x)
    got = np.asarray(interpreter._interpreter(flatbuffer).predict(x)).reshape(expected.shape)
    diff = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected)))
    top1 = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        top1 = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
        passed, criterion = top1 >= min_top1, f"top-1 agreement >= {min_top1}"
    else:
        passed = diff <= atol + rtol * scale
        criterion = f"max |diff| <= {atol} + {rtol} * max |output|"
    return Parity(len(x), diff, scale, top1, near_zero, bool(passed), criterion)
