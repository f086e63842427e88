"""Rebuilding a Keras 3 model from its edited config, with its weights carried over."""

import keras
import numpy as np

from biper_keras import _compat

__all__ = ["rebuild", "weighted_layers", "own_variables"]


def _visit(node, edit):
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            edit(node)
        for value in node.values():
            _visit(value, edit)
    elif isinstance(node, list):
        for value in node:
            _visit(value, edit)


def own_variables(layer):
    """The variables `layer` creates itself, not those of the layers it holds, in
    Keras's order (trainable first)."""
    held = {id(w) for inner in _compat.flatten_layers(layer) for w in inner.weights}
    return [w for w in layer.weights if id(w) not in held]


def weighted_layers(layer):
    """`layer` and every layer nested in it that creates variables, quantizers aside
    (they hold only the annealed mu), depth first: the layers whose weights a rebuild
    pairs between a model and its copy."""
    from biper_keras.quantizers import Quantizer

    return [inner for inner in _compat.flatten_layers(layer, include_self=True)
            if not isinstance(inner, Quantizer) and own_variables(inner)]


def _kind(layer):
    name = type(layer).__name__
    return name[len("Quant"):] if name.startswith("Quant") else name


def _carry(source, target, pair_weights):
    """Copies the weights of `source` (a top-level layer) into its rebuilt `target`,
    pairing the weighted layers nested in them in order."""
    sources, targets = weighted_layers(source), weighted_layers(target)
    # Layers a custom layer creates in its own code get new automatic names in the
    # copy: they pair by position and kind.
    if len(sources) != len(targets) or any(
            s.name != t.name and _kind(s) != _kind(t) for s, t in zip(sources, targets)):
        raise ValueError(
            f"Layer {source.name!r}: the rebuilt layer does not hold the same weighted layers "
            f"({[s.name for s in sources]} vs {[t.name for t in targets]}), so its weights cannot be carried over.")
    for s, t in zip(sources, targets):
        values = pair_weights(s, t)
        variables = own_variables(t)
        if len(values) != len(variables):
            raise ValueError(f"Layer {t.name!r}: {len(values)} weights for {len(variables)} variables.")
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value))


def rebuild(model, edit, weights_of=None, pair_weights=None):
    """A new model built from `model`'s serialized config after `edit(node)` has been
    called on every serialized object in it (a dict with "class_name" and "config").

    Weights are copied layer by layer, by name (a quantizer shared by several layers is
    one variable in `model` but one per layer in the copy): `weights_of(layer)` gives
    the list to copy, default `layer.get_weights()`. With `pair_weights(source, target)`
    instead, the copy may differ inside its layers (a float `MultiHeadAttention` and a
    quantized one): the weighted layers nested in each top-level layer are paired in
    order (by name), and `pair_weights` gives the values of `target`'s own variables
    from `source` (see `own_variables`). Sequential and functional models only; a
    subclassed model that cannot be rebuilt raises ValueError.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}.")
    config = keras.saving.serialize_keras_object(model)
    _visit(config, edit)
    try:
        copy = keras.saving.deserialize_keras_object(config)
    except Exception as err:
        raise ValueError(f"Could not rebuild model {model.name!r} from its config: {err}") from err
    if pair_weights is not None:
        for layer in model.layers:
            _carry(layer, copy.get_layer(layer.name), pair_weights)
        return copy
    weights_of = weights_of or (lambda layer: layer.get_weights())
    for layer in model.layers:
        copy.get_layer(layer.name).set_weights([np.array(w) for w in weights_of(layer)])
    return copy
