"""Conversion to TFLite with Larq Compute Engine, with a per-layer fusion report and a
parity check (TensorFlow only; TensorFlow and LCE are imported inside the functions).

    from biper_keras.convert import convert
    result = convert(model)            # strict: raises if a binarized conv did not fuse
    print(result.table())              # ops, per-layer fusion, sizes, parity
    result.save("model.tflite")

Keras 3 models are traced (`model(x, training=False)`), frozen, given 1-D per-channel
constants (see `biper_keras.convert.graph`) and converted by LCE's graph converter; tf_keras
(Larq) models go through `larq_compute_engine.convert_keras_model`. A model that lives on
the JAX or torch backend is saved to a temporary `.keras` file and converted by a
TensorFlow-backend subprocess (`biper_keras.convert._worker`; `.keras` weights load
across backends): its errors arrive as the same types, its warnings are re-issued.

Every flatbuffer, whatever the target ("arm" and "xcore" files both run in LCE's x86
interpreter), is loaded in LCE's interpreter and run once before it is returned: one that
does not prepare is a `ConversionError` naming the op, its node and the Keras layer.
"""

import collections
import os
import warnings

import numpy as np

from biper_keras import _compat
from .flatbuffer import _is_tf_keras, _ops_with_output_shapes, _run_once, op_histogram
from .fusion import _fusion_report, _quantized_layers
from .loading import load_model
from .parity import check_parity, randomize_batch_norms
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

TARGETS = ("arm", "xcore")


def _keras3_backend():
    import keras

    return keras.backend.backend()


def convert_keras_model(model, *, target="arm"):
    """Converts a Keras 3 model (TF backend) to an LCE TFLite flatbuffer (bytes), with no
    report; the flatbuffer has been loaded and run once in LCE's interpreter (a
    `ConversionError` names the op and layer that would not prepare)."""
    flatbuffer = _flatbuffer(model, target)
    _run_once(flatbuffer, model, target)
    return flatbuffer


def _flatbuffer(model, target):
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    if _keras3_backend() != "tensorflow":
        raise ValueError(
            "Conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {_keras3_backend()!r}. Use `convert`, which converts "
            "in a TensorFlow subprocess."
        )
    import tensorflow as tf

    from . import graph

    for spec in tf.nest.flatten(graph.input_signature(model)):
        if None in spec.shape.as_list()[1:]:
            # LCE's converter would make them 1: a file that runs on 1x1 images only.
            raise ConversionError(f"input shape {tuple(spec.shape.as_list())} has unknown sizes: "
                                  "pass `input_shape` (CLI: --input-shape)")
    return graph.to_flatbuffer(model, target)


def _float32_size(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights)) * 4


def _input_shape(model):
    """The first input's shape, batch size None (also for subclassed models)."""
    import tensorflow as tf

    from . import graph

    return tuple(tf.nest.flatten(graph.input_signature(model))[0].shape.as_list())


def _fixed_input_model(model, input_shape):
    import keras

    rank = len(_input_shape(model))
    inputs = keras.Input(tuple(input_shape[1:]) if len(input_shape) == rank else tuple(input_shape))
    return keras.Model(inputs, model(inputs), name=model.name)


def _float32_model(model):
    """`model` itself when every layer computes in float32, else a float32 rebuild with
    the same weights: a model trained under a mixed policy keeps float32 variables
    (so nothing is lost) and its binary kernels were computed from them, so the
    rebuilt model is the one it trained, and TFLite converts float32 graphs."""
    mixed = [layer for layer in _compat.flatten_layers(model, include_self=True)
             if getattr(layer.dtype_policy, "compute_dtype", "float32") != "float32"]
    if not mixed:
        return model
    from biper_keras.rebuild import rebuild

    def to_float32(node):
        if node["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
            node["config"]["name"] = "float32"

    try:
        return rebuild(model, to_float32)
    except ValueError as err:
        raise ConversionError(
            f"layer {mixed[0].name!r} computes in {mixed[0].dtype_policy.compute_dtype}: the TFLite "
            "converter needs float32 models, and this model cannot be rebuilt in float32 from its "
            "config; rebuild it under keras.config.set_dtype_policy('float32') and load the weights."
        ) from err


def _check_convertible(model):
    weights = model.weights
    for w in weights:
        if w.dtype not in ("float32", "int32", "int64", "bool"):
            raise ConversionError(
                f"variable {w.path!r} is {w.dtype}: the TFLite converter needs float32 "
                "models; cast it (e.g. keras.config.set_dtype_policy('float32') and rebuild)."
            )
        if "float" in str(w.dtype) and not np.all(np.isfinite(np.asarray(w))):
            raise ConversionError(f"variable {w.path!r} contains NaN or infinite values")


def convert(
    model,
    *,
    target="arm",
    input_shape=None,
    verify=True,
    strict=True,
    data=None,
    min_top1=0.98,
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
            `LceBconv2d`, and `ParityError` when parity fails. With False, both are only
            reported. A flatbuffer that LCE's interpreter cannot prepare or run is a
            `ConversionError` in both modes.
        data: inputs for the parity check (default: 8 standard-normal samples).

    Returns:
        a `ConversionResult`.
    """
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if _is_tf_keras(model):
        return _convert_tf_keras(model, target)
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras model. Received: {type(model).__name__}.")
    if _keras3_backend() != "tensorflow":
        from ._worker import convert_in_subprocess

        return convert_in_subprocess(model, target=target, input_shape=input_shape, verify=verify,
                                     strict=strict, data=data, min_top1=min_top1)
    model = _float32_model(model)
    _check_convertible(model)
    if not _quantized_layers(model):
        warnings.warn(f"Model {model.name!r} has no quantized layers: it converts to a float model.")
    exported = model if input_shape is None else _fixed_input_model(model, input_shape)
    flatbuffer = _flatbuffer(exported, target)
    ops = _ops_with_output_shapes(flatbuffer)
    result = ConversionResult(flatbuffer, target, dict(collections.Counter(n for n, _ in ops)),
                              _fusion_report(model, ops, target), _float32_size(model))
    _run_once(flatbuffer, model, target, result.layers)
    if strict and result.unfused:
        raise ConversionError(
            "quantized convolutions not converted to LceBconv2d: "
            + "; ".join(f"{f.layer} ({f.reason})" for f in result.unfused)
            + ". Fix them, or pass strict=False to convert anyway."
        )
    if verify:
        if data is None:
            shape = _input_shape(exported)[1:]
            if None in shape:
                raise ConversionError(f"input shape {shape} has unknown sizes: pass `input_shape`")
            data = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
        result.parity = check_parity(flatbuffer, model, data, min_top1=min_top1)
        if strict and not result.parity.passed:
            p = result.parity
            raise ParityError(
                f"LCE and Keras disagree on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g}, "
                f"top-1 agreement {p.top1_agreement}, needed {p.criterion}; "
                f"{count_text(p.near_zero_binarizer_inputs)} binarizer inputs are ~0 and may flip sign "
                "(untrained BatchNorm statistics cause exact zeros: see `randomize_batch_norms`). "
                "Pass strict=False "
                "(CLI: --allow-unfused) to keep the result anyway."
            )
    return result


def _convert_tf_keras(model, target):
    import larq_compute_engine as lce

    flatbuffer = lce.convert_keras_model(model, target=target)
    _run_once(flatbuffer, model, target)
    return ConversionResult(flatbuffer, target, dict(op_histogram(flatbuffer)), [], _float32_size(model))
