"""Step 1 of a conversion: the model as LCE will convert it (TensorFlow imported lazily).

`prepare(model, input_shape)` returns a `Prepared`: the model in float32 (a model trained
under a mixed policy is rebuilt with the same weights), its weights checked (float32, all
finite), and the input signature to trace it with, every size but the batch known.
"""

import dataclasses

import numpy as np

from biper_keras import _compat

from .arguments import check_input_shape_fits
from .results import ConversionError


@dataclasses.dataclass
class Prepared:
    model: object  # the float32 model: what is traced, and what parity compares against
    signature: list  # the call's arguments as `tf.TensorSpec`s, batch size None, other sizes known

    @property
    def inputs(self):
        import tensorflow as tf

        return tf.nest.flatten(self.signature)

    @property
    def input_shape(self):
        """The first input's shape without the batch size."""
        return tuple(self.inputs[0].shape.as_list()[1:])


def is_tf_keras(model):
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)


def prepare(model, input_shape=None):
    """`model` (Keras 3 on the TensorFlow backend, or tf_keras) ready to be traced."""
    if not is_tf_keras(model):
        model = _float32_model(model)
    _check_weights(model)
    signature = input_signature(model)
    if input_shape is not None:
        signature = _fixed(signature, input_shape)
    import tensorflow as tf

    for spec in tf.nest.flatten(signature):
        if None in spec.shape.as_list()[1:]:
            # LCE's converter would make them 1: a file that runs on 1x1 images only.
            raise ConversionError(f"input shape {tuple(spec.shape.as_list())} has unknown sizes: "
                                  "pass `input_shape` (CLI: --input-shape)")
    return Prepared(model, signature)


def input_signature(model):
    """`model`'s call arguments as `tf.TensorSpec`s (as `model.export` traces it), batch
    size None."""
    import tensorflow as tf

    if is_tf_keras(model):
        if not getattr(model, "inputs", None):
            raise ConversionError(f"tf_keras model {model.name!r} has no known inputs: build it on a "
                                  "`tf.keras.Input`")
        inputs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
        signature = inputs if len(inputs) == 1 else [inputs]
    else:
        signature = _compat.input_signature(model)
    return tf.nest.map_structure(lambda s: tf.TensorSpec([None, *list(s.shape)[1:]], s.dtype), signature)


def _fixed(signature, input_shape):
    """The signature with the first input's sizes fixed to `input_shape` (with or
    without the batch size; the batch stays None)."""
    import tensorflow as tf

    flat = tf.nest.flatten(signature)
    first = flat[0]
    sizes = list(check_input_shape_fits(input_shape, first.shape.as_list()))
    return tf.nest.pack_sequence_as(signature, [tf.TensorSpec([None, *sizes], first.dtype), *flat[1:]])


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


def _check_weights(model):
    for w in model.weights:
        path = getattr(w, "path", None) or w.name
        dtype = w.dtype if isinstance(w.dtype, str) else w.dtype.name
        if dtype not in ("float32", "int32", "int64", "bool"):
            raise ConversionError(
                f"variable {path!r} is {dtype}: the TFLite converter needs float32 "
                "models; cast it (e.g. keras.config.set_dtype_policy('float32') and rebuild)."
            )
        if "float" in dtype and not np.all(np.isfinite(np.asarray(w))):
            # Bad input, not a converter failure: nothing could convert it.
            raise ValueError(f"Argument `model`: variable {path!r} contains NaN or infinite values (did its "
                             "training diverge?); there is nothing meaningful to convert.")


def float32_size(model):
    """Bytes the model's parameters take as float32."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights)) * 4
