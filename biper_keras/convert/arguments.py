"""`convert`'s arguments checked before any work: a `TypeError` or `ValueError` that names
the argument, what it got and what it takes."""

import numbers
import os

import numpy as np

TARGETS = ("arm", "xcore")
MISMATCH = ("raise", "report")
WEIGHTS = ("float", "int8")


def _got(value):
    return f"{value!r} ({type(value).__name__})"


def check_options(*, target, input_shape, verify, strict, min_top1, on_mismatch, weights):
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    for name, value in (("verify", verify), ("strict", strict)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"Argument `{name}` must be True or False. Received: {_got(value)}.")
    if isinstance(min_top1, (bool, np.bool_)) or not isinstance(min_top1, numbers.Real):
        raise TypeError(f"Argument `min_top1` must be a number between 0 and 1. Received: {_got(min_top1)}.")
    if not 0.0 <= float(min_top1) <= 1.0:  # NaN fails this too
        raise ValueError(f"Argument `min_top1` must be a number between 0 and 1. Received: {min_top1!r}.")
    if on_mismatch is not None and on_mismatch not in MISMATCH:
        raise ValueError(f"Argument `on_mismatch` must be None, 'raise' or 'report'. Received: {on_mismatch!r}.")
    if weights not in WEIGHTS:
        raise ValueError(f"Argument `weights` must be 'float' or 'int8'. Received: {weights!r}.")
    if input_shape is not None:
        check_input_shape(input_shape)


def check_input_shape(input_shape):
    what = "a tuple of sizes > 0, e.g. (1, 224, 224, 3) or (224, 224, 3)"
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"Argument `input_shape` must be {what}. Received: {_got(input_shape)}.")
    sizes = tuple(input_shape)
    if not sizes or not all(isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)) for d in sizes):
        raise TypeError(f"Argument `input_shape` must be {what}. Received: {_got(input_shape)}.")
    if any(d <= 0 for d in sizes):
        raise ValueError(f"Argument `input_shape` must be {what}. Received: {sizes}.")


def check_model(model):
    """`model` as a model object: a path is loaded (`load_model`); anything else that is
    not a Keras 3 or tf_keras model is a `TypeError`."""
    from .prepare import is_tf_keras

    if isinstance(model, (str, os.PathLike)):
        from .loading import load_model

        path = os.fspath(model)
        if path.endswith(".tflite"):
            raise ValueError(f"Argument `model` must be a Keras model or the path of a .keras file. Received: "
                             f"{path!r}, a TFLite flatbuffer (already converted: load it with LCE's Interpreter)")
        if not os.path.exists(path):
            raise FileNotFoundError(f"Argument `model` must be a Keras model or the path of a .keras file. "
                                    f"Received: {path!r}, and there is no such file")
        return load_model(path)
    if is_tf_keras(model):
        return model
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a Keras model (Keras 3 or tf_keras) or the path of a .keras "
                        f"file. Received: an object of type {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"Argument `model`: model {model.name!r} is not built (no input shape): build it, e.g. "
                         "on a keras.Input, or call it once on data, before converting.")
    return model


def check_input_shape_fits(input_shape, model_shape):
    """`input_shape` (with or without the batch size) against the model's input shape
    (batch size first, None where any size goes)."""
    rank = len(model_shape)
    if len(input_shape) not in (rank - 1, rank):
        raise ValueError(f"Argument `input_shape` {tuple(input_shape)} does not fit the model's input "
                         f"{tuple(model_shape)}: it takes {rank - 1} sizes (or {rank} with the batch size).")
    sizes = tuple(input_shape[-(rank - 1):]) if rank > 1 else ()
    clash = [(i, m, s) for i, (m, s) in enumerate(zip(model_shape[1:], sizes), 1) if m is not None and m != s]
    if clash:
        i, m, s = clash[0]
        raise ValueError(f"Argument `input_shape` {tuple(input_shape)} does not fit the model's input "
                         f"{tuple(model_shape)}: dimension {i} is {s}, the model fixes it to {m}.")
    return sizes


def check_data(data, input_shape):
    """Parity data: a float array of shape (n, *input_shape), n >= 1, all finite."""
    try:
        x = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"Argument `data` must be a numeric array of inputs. Received: {type(data).__name__} "
                        f"({err})") from None
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"Argument `data` must have shape (samples, {', '.join(map(str, input_shape))}) for this "
                         f"model's input. Received: shape {x.shape}.")
    if len(x) == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"Parity data must hold at least one sample, all finite. Received: shape {x.shape}, "
                         f"{int(np.sum(~np.isfinite(x)))} non-finite values.")
    return x

