"""The private Keras, Larq and LCE internals this package relies on, in one place.

Each function here wraps one thing that has no public API (checked against Keras 3.15,
Larq 0.14, LCE 0.16); tests/test_compat.py checks each one, so that an upgrade that
moves or changes one fails there, by name, and nowhere else. Code elsewhere in the
package calls these functions, never the internals.
"""

__all__ = []  # internal: nothing here is public API


# --- Keras: the layer graph -----------------------------------------------------------


def flatten_layers(layer, include_self=False):
    """Every layer inside `layer` (tracked sublayers, nested models included), depth
    first in the order Keras tracks them. `model.layers` lists only the top level."""
    return layer._flatten_layers(include_self=include_self)


def inbound_operations(layer):
    """The layers (operations) whose outputs `layer` was called on, in a functional
    graph, over all its calls."""
    return [t._keras_history.operation for node in layer._inbound_nodes for t in node.input_tensors]


def outbound_operations(layer):
    """The layers (operations) called on `layer`'s outputs, in a functional graph."""
    return [node.operation for node in layer._outbound_nodes]


def functional_class():
    """The class of `keras.Model(inputs, outputs)` (Keras exports no name for it)."""
    from keras.src.models.functional import Functional

    return Functional


def built_input_shape(layer):
    """The input shape a single-input layer was built with, or None (a layer outside a
    functional graph has no symbolic input to read it from)."""
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    return next(iter(shapes.values())) if len(shapes) == 1 else None


def input_signature(model):
    """The input specs (shape with batch None, dtype) that `model.export` traces with."""
    from keras.src.export.export_utils import get_input_signature

    return get_input_signature(model)


# --- Keras: scopes and registries -----------------------------------------------------


def no_autocast():
    """A context in which reading a variable gives its own dtype, not the mixed
    policy's compute dtype (for variables Keras's own `build` created with autocast on)."""
    from keras.src.backend.common.variables import AutocastScope

    return AutocastScope(None)


def in_stateless_or_symbolic_scope():
    """True while Keras traces shapes or runs a stateless (JAX) step."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return in_stateless_scope() or in_symbolic_scope()


def tracing_for_xla():
    """True while TensorFlow traces a function that XLA will compile
    (`tf.function(jit_compile=True)`, Keras's `compile(jit_compile=True)` on TF);
    False on the other backends and outside such a trace."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def tf_op_determinism_enabled():
    """Whether `tf.config.experimental.enable_op_determinism()` was called in this
    process (TensorFlow has no public getter)."""
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return is_op_determinism_enabled()


def register_constraint_name(name, cls):
    """Makes `keras.constraints.get(name)` (so `kernel_constraint=name`) return a `cls`:
    Keras resolves a bare constraint name from its own table only, not from the custom
    objects."""
    from keras.src import constraints as keras_constraints

    keras_constraints.ALL_OBJECTS_DICT.setdefault(name, cls)


# --- Larq and LCE ---------------------------------------------------------------------


def larq_base_quantizer():
    """Larq's quantizer base class (`larq.quantizers._BaseQuantizer`): what Larq's
    layers and `lq.models.summary` recognize as a quantizer."""
    import larq as lq

    return lq.quantizers._BaseQuantizer


def convert_graphdef_to_tflite_flatbuffer(*args):
    """LCE's converter from a frozen GraphDef to a flatbuffer, from its private
    extension module (its public `convert_keras_model` rejects Keras 3 models)."""
    from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer as convert

    return convert(*args)
