"""Rebuilding a Keras 3 model from its edited config, with its weights carried over."""

import keras
import numpy as np

__all__ = ["rebuild"]


def _visit(node, edit):
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            edit(node)
        for value in node.values():
            _visit(value, edit)
    elif isinstance(node, list):
        for value in node:
            _visit(value, edit)


def rebuild(model, edit, weights_of=None):
    """A new model built from `model`'s serialized config after `edit(node)` has been
    called on every serialized object in it (a dict with "class_name" and "config").

    Weights are copied layer by layer, by name (a quantizer shared by several layers is
    one variable in `model` but one per layer in the copy): `weights_of(layer)` gives
    the list to copy, default `layer.get_weights()`. Sequential and functional models
    only; a subclassed model that cannot be rebuilt raises ValueError.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}.")
    config = keras.saving.serialize_keras_object(model)
    _visit(config, edit)
    try:
        copy = keras.saving.deserialize_keras_object(config)
    except Exception as err:
        raise ValueError(f"Could not rebuild model {model.name!r} from its config: {err}") from err
    weights_of = weights_of or (lambda layer: layer.get_weights())
    for layer in model.layers:
        copy.get_layer(layer.name).set_weights([np.array(w) for w in weights_of(layer)])
    return copy
