"""Conversion to TFLite with Larq Compute Engine, with a per-layer fusion report and a
parity check (TensorFlow only; TensorFlow and LCE are imported inside the functions).

    from biper_keras.convert import convert
    result = convert(model)            # strict: raises if a binarized conv did not fuse
    print(result.table())              # ops, per-layer fusion, sizes, parity
    result.save("model.tflite")

`convert` runs six steps, each a function of the previous one's output:

1. `prepare.prepare`: the model in float32, its weights checked, its input shape fixed;
2. `graph.freeze`: `model(x, training=False)` traced and frozen, channel constants
   flattened (a `graph.FrozenGraph`);
3. `flatbuffer.to_flatbuffer`: LCE's graph converter, in a child process (a native
   crash is a `ConversionError`); with `weights="int8"`, `weights.int8_weights` then
   stores binary weights of float ops as int8;
4. `fusion.inspect`: the flatbuffer's ops, and which quantized layer became what;
5. `interpreter.run_once`: loaded and run once in LCE's interpreter (a file that does
   not prepare is a `ConversionError` naming the op, its node and the Keras layer);
6. `parity.check_parity`: LCE's interpreter against Keras.

Keras 3 models (TensorFlow backend) and tf_keras (Larq) models take the same steps. A
model that lives on the JAX or torch backend is saved to a temporary `.keras` file and
converted by a TensorFlow-backend subprocess (`biper_keras.convert._worker`; `.keras`
weights load across backends): its errors arrive as the same types, its warnings are
re-issued. Every flatbuffer, whatever the target ("arm" and "xcore" files both run in
LCE's x86 interpreter), is loaded and run before it is returned.
"""

import collections
import warnings

import numpy as np

from . import graph, prepare
from .arguments import TARGETS, check_data, check_model, check_options  # noqa: F401  (TARGETS: the CLI's choices)
from .flatbuffer import start as _start_converter
from .flatbuffer import to_flatbuffer
from .fusion import _quantized_layers, inspect, op_histogram
from .interpreter import run_once
from .loading import load_model
from .parity import check_parity, randomize_batch_norms
from .prepare import float32_size, is_tf_keras
from .weights import int8_weights
from .results import ConversionError, ConversionResult, LayerFusion, Parity, ParityError, count_text

__all__ = [
    "convert",
    "convert_keras_model",
    "op_histogram",
    "ConversionResult",
    "ConversionError",
    "ParityError",
    "LayerFusion",
    "Parity",
    "check_parity",
    "randomize_batch_norms",
    "load_model",
]

def _keras3_backend():
    import keras

    return keras.backend.backend()


def convert_keras_model(model, *, target="arm"):
    """Converts a Keras 3 model (TF backend) or a tf_keras model to an LCE TFLite
    flatbuffer (bytes), with no report; the flatbuffer has been loaded and run once in
    LCE's interpreter (a `ConversionError` names the op and layer that would not prepare)."""
    check_options(target=target, input_shape=None, verify=True, strict=True, min_top1=0.0, on_mismatch=None,
                  weights="float")
    model = check_model(model)
    _check_tensorflow_backend(model)
    prepared = prepare.prepare(model)
    flatbuffer = to_flatbuffer(graph.freeze(prepared), target)
    _, layers = inspect(flatbuffer, prepared.model, target)
    run_once(flatbuffer, prepared.model, layers)
    return flatbuffer


def _check_tensorflow_backend(model):
    if not is_tf_keras(model) and _keras3_backend() != "tensorflow":
        raise ValueError(
            "Conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {_keras3_backend()!r}. Use `convert`, which converts "
            "in a TensorFlow subprocess."
        )


def convert(
    model,
    *,
    target="arm",
    input_shape=None,
    verify=True,
    strict=True,
    data=None,
    min_top1=0.98,
    on_mismatch=None,
    weights="float",
):
    """Converts `model` to an LCE flatbuffer and reports on every quantized layer.

    Args:
        model: a Keras 3 model (any backend), a tf_keras/Larq model, or the path of a
            `.keras` file (read with `load_model`, whose errors say what is wrong with it).
        target: "arm" (Raspberry Pi, Android) or "xcore".
        input_shape: fix the input shape (e.g. `(1, 224, 224, 3)`) when the model's
            spatial dimensions are None.
        verify: run the parity check (LCE interpreter vs Keras). Without it the
            flatbuffer is still loaded and run once in LCE's interpreter.
        strict: raise `ConversionError` naming every quantized conv that did not become
            `LceBconv2d` (with False: only reported), and by default `ParityError` when
            parity fails. A flatbuffer that LCE's interpreter cannot prepare or run is a
            `ConversionError` in both modes.
        data: inputs for the parity check, shape (samples, *input shape) (default: 8
            standard-normal samples).
        min_top1: parity: the top-1 agreement class-score outputs need, in [0, 1].
        on_mismatch: when parity fails: "raise" a `ParityError`, or "report" it in the
            result only; None (default) follows `strict`.
        weights: "float" (default) keeps the weights of float ops (dense layers, binary
            weights with float inputs) as float32; "int8" stores every weight tensor that
            is +-alpha per output channel (binary weights, W1A32) as int8 +-1 with scale
            alpha, dequantized when the file loads: the same outputs, a quarter of the
            bytes (`weights.int8_weights`). Binary convolutions (`LceBconv2d`) are
            bit-packed either way.

    Bad arguments are a `TypeError` or `ValueError` before any work, as is a model whose
    weights hold NaN or infinite values.

    Returns:
        a `ConversionResult`.
    """
    check_options(target=target, input_shape=input_shape, verify=verify, strict=strict, min_top1=min_top1,
                  on_mismatch=on_mismatch, weights=weights)
    if data is not None and not verify:
        raise ValueError("Argument `data` is only used by the parity check, and verify=False turns it off: "
                         "pass verify=True, or no data.")
    model = check_model(model)
    if not is_tf_keras(model) and _keras3_backend() != "tensorflow":
        from ._worker import convert_in_subprocess

        return convert_in_subprocess(model, target=target, input_shape=input_shape, verify=verify, strict=strict,
                                     data=data, min_top1=min_top1, on_mismatch=on_mismatch,
                                     weights=weights)
    _start_converter()  # the converter process's start-up overlaps the tracing
    prepared = prepare.prepare(model, input_shape)
    if verify and data is not None:
        data = check_data(data, prepared.input_shape)
    if not _quantized_layers(prepared.model):
        warnings.warn(f"Model {model.name!r} has no quantized layers: it converts to a float model.")
    flatbuffer = to_flatbuffer(graph.freeze(prepared), target)
    if weights == "int8":
        flatbuffer = int8_weights(flatbuffer).flatbuffer
    ops, layers = inspect(flatbuffer, prepared.model, target)
    run_once(flatbuffer, prepared.model, layers)
    result = ConversionResult(flatbuffer, target, dict(collections.Counter(n for n, _ in ops)), layers,
                              float32_size(prepared.model))
    if strict and result.unfused:
        raise ConversionError(
            "quantized convolutions not converted to LceBconv2d: "
            + "; ".join(f"{f.layer} ({f.reason})" for f in result.unfused)
            + ". Fix them, or pass strict=False to convert anyway."
        )
    if verify:
        if data is None:
            data = np.random.default_rng(0).normal(size=(8, *prepared.input_shape)).astype("float32")
        result.parity = check_parity(flatbuffer, prepared.model, data, min_top1=min_top1)
        if (on_mismatch or ("raise" if strict else "report")) == "raise" and not result.parity.passed:
            p = result.parity
            raise ParityError(
                f"LCE and Keras disagree on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g}, "
                f"top-1 agreement {p.top1_agreement}, needed {p.criterion}; "
                f"{count_text(p.near_zero_binarizer_inputs)} binarizer inputs are ~0 and may flip sign "
                "(untrained BatchNorm statistics cause exact zeros: see `randomize_batch_norms`). "
                "Pass on_mismatch='report' (CLI: --allow-mismatch) to keep the result anyway."
            )
    return result
